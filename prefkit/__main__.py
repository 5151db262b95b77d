"""Command line: ``python -m prefkit tour`` runs every numerical check; ``python -m prefkit lm ...`` runs the
tiny-transformer pipelines (see ``python -m prefkit lm --help``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _tour(args) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The checks work on tiny tensors: one thread each is fastest, and several threads per process only
    # fight over the cores (measured under load: a DPO check took 34 s with the default threads, 3 s with one).
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy/scipy's BLAS as well
    from .tour import TourContext, format_table, registry, run_tour

    figdir = Path(args.figures).resolve()
    ctx = TourContext(figdir=figdir, fast=args.fast, seed=args.seed)
    print(f"prefkit tour: running every registered check ({'fast' if args.fast else 'full'} setting)")
    t0 = time.perf_counter()
    if args.only and not any(args.only in e.chapter or args.only in e.name for e in registry()):
        chapters = sorted({e.chapter for e in registry()})
        print(f"no check matches --only {args.only!r}; it matches the text of a chapter or a check name. "
              f"Chapters: {', '.join(chapters)}")
        return 2
    claims, errors = run_tour(ctx, only=args.only)
    print()
    print(format_table(claims))
    n_fail = sum(not c.passed for c in claims)
    print()
    for e in errors:
        print(f"ERROR in check {e}")
    print(f"{len(claims) - n_fail}/{len(claims)} claims passed in {time.perf_counter() - t0:.0f}s. "
          f"Figures written to {figdir}/")
    return 1 if (n_fail or errors or not claims) else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m prefkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tour", help="run every numerical check, print the table, write the figures")
    t.add_argument("--figures", default="figures", help="folder for the chapter figures (default: ./figures)")
    t.add_argument("--only", default=None, help="run only checks whose chapter or name contains this text")
    t.add_argument("--fast", action="store_true", default=None,
                   help="use the fast setting (default: on when PREFKIT_FAST=1)")
    t.add_argument("--seed", type=int, default=0, help="base seed for every check (default 0)")
    sub.add_parser("lm", help="tiny transformer LM pipelines; see `python -m prefkit lm --help`", add_help=False)
    if argv[:1] == ["lm"]:
        from .lm.cli import main as lm_main

        return lm_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "tour":
        if args.fast is None:
            from .config import is_fast

            args.fast = is_fast()
        return _tour(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
