"""Command line.

  python -m prefkit tour        run every numerical check, print the table, write the figures
  python -m prefkit student DIR write the student edition of the notebooks (outputs cleared, no solutions)
  python -m prefkit grade NB... execute submitted notebooks and check their exercises
  python -m prefkit lm ...      the tiny-transformer pipelines (see `python -m prefkit lm --help`)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _tour(args) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The checks work on tiny arrays: one thread each is fastest, and several threads per process only
    # fight over the cores (measured under load: a DPO check took 34 s with the default threads, 3 s with one).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # numpy/scipy's BLAS
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torch, when a chapter imports it
    from .course.claims import chapters
    from .course.tour import TourContext, format_durations, format_table, matches, run_tour, unmeasured

    if args.jobs < 1 or args.durations < 0:
        raise ValueError(f"--jobs must be at least 1 and --durations at least 0, got {args.jobs} and "
                         f"{args.durations}")
    figdir = None if args.no_figures else Path(args.figures).resolve()
    ctx = TourContext(figdir=figdir, fast=args.fast, seed=args.seed, dpi=args.dpi, figure_format=args.figure_format)
    log = sys.stderr
    labels = [ch.label for ch in chapters()]
    if args.only and not any(matches(args.only, ch, name) for ch in chapters() for name, _ in ch.checks):
        print(f"no check matches --only {args.only!r}; give a chapter number, or text of a chapter title or a "
              f"check name. Chapters: {'; '.join(labels)}")
        return 2
    n_checks = sum(not args.only or matches(args.only, ch, name) for ch in chapters() for name, _ in ch.checks)
    jobs = min(args.jobs, n_checks)  # the processes that run checks (one: the tour's own)
    print(f"prefkit tour: running every check ({'fast' if args.fast else 'full'} setting, seed {args.seed}, "
          f"{jobs} process{'es' if jobs > 1 else ''})", file=log)
    t0 = time.perf_counter()
    durations = []
    claims, errors = run_tour(ctx, only=args.only, echo=lambda s: print(s, file=log, flush=True), jobs=jobs,
                              durations=durations)
    if not args.only:
        errors += [f"claim {s.id} is defined but no check measured it" for s in unmeasured(claims)]
    print(format_table(claims, fmt=args.format))
    n_fail = sum(not c.passed for c in claims)
    out = log if args.format != "text" else sys.stdout
    for e in errors:
        print(f"ERROR in {e}", file=out)
    if args.durations:
        print(format_durations(durations, args.durations), file=out)
    print(f"{len(claims) - n_fail}/{len(claims)} claims passed in {time.perf_counter() - t0:.0f} s "
          f"({jobs} process{'es' if jobs > 1 else ''}); "
          f"{'no figures written (--no-figures)' if figdir is None else f'figures written to {figdir}/'}", file=out)
    return 1 if (n_fail or errors or not claims) else 0


def _student(args) -> int:
    from .course.grading import write_student_edition

    written = write_student_edition(args.out_dir, args.notebooks)
    print(f"wrote {len(written)} notebooks (outputs cleared, no reference solutions) to {Path(args.out_dir)}/")
    return 0


def _grade(args) -> int:
    from .course.grading import format_grades, grade, write_csv

    missing = [p for p in args.notebooks if not Path(p).is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = grade(args.notebooks, timeout=args.timeout)
    print(format_grades(rows))
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lm"]:
        from .lm.cli import main as lm_main

        return lm_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m prefkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tour", help="run every numerical check, print the table, write the figures")
    t.add_argument("--figures", default="figures", help="folder for the chapter figures (default: ./figures)")
    t.add_argument("--no-figures", action="store_true",
                   help="write no figures, only the table (most checks then skip their plots: about 15%% less CPU)")
    t.add_argument("--only", default=None, help="a chapter number, or text of a chapter title or a check name")
    t.add_argument("--fast", action="store_true", default=None,
                   help="use the fast setting (default: on when PREFKIT_FAST=1)")
    t.add_argument("--seed", type=int, default=0, help="base seed for every check (default 0)")
    t.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="how to print the table")
    t.add_argument("--dpi", type=int, default=150, help="figure resolution (default 150)")
    t.add_argument("--figure-format", choices=("png", "svg", "pdf"), default="png", help="figure file format")
    t.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="run the checks in this many processes (default: 2, or 1 on one core); the table is "
                        "the same for any number")
    t.add_argument("--durations", type=int, default=0, metavar="N",
                   help="after the table, list the N slowest checks (wall-clock and CPU seconds)")
    s = sub.add_parser("student", help="write the student edition of the notebooks into OUT_DIR")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--notebooks", default=None, help="the notebooks folder (default: the clone's notebooks/)")
    g = sub.add_parser("grade", help="execute submitted notebooks and check their exercises")
    g.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    g.add_argument("--csv", default=None, help="also write the table as CSV to this file")
    g.add_argument("--timeout", type=int, default=300, help="seconds per cell before a notebook is stopped")
    sub.add_parser("lm", help="tiny transformer LM pipelines; see `python -m prefkit lm --help`", add_help=False)
    args = parser.parse_args(argv)
    try:
        if args.command == "tour":
            if args.fast is None:
                from .config import is_fast

                args.fast = is_fast()
            return _tour(args)
        if args.command == "student":
            return _student(args)
        if args.command == "grade":
            return _grade(args)
    except ValueError as e:
        print(f"python -m prefkit {args.command}: {e}", file=sys.stderr)
        return 2
    return 2


def _exit(code: int) -> None:
    """Exit with ``code``. An interrupted run (130, after its one-line message) leaves through ``os._exit``.
    Under CPU load, about one run in 25 of ``python -m prefkit lm dpo`` ended with status -2 (killed by SIGINT)
    although prefkit had caught the interrupt, printed its message and returned 130. The cause inside the
    interpreter was not pinned down: CPython keeps an "unhandled KeyboardInterrupt" flag that makes it re-raise
    SIGINT at exit, and code run through ``PyRun_String`` (which C extensions use) sets it even when the
    exception is caught later. ``os._exit`` skips that step; every checkpoint is already written atomically, so
    skipping the interpreter's cleanup loses nothing."""
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
