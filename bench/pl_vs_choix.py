"""Benchmark: prefkit's Plackett-Luce MLE against choix's ranking estimators (``ilsr_rankings``, ``opt_rankings``).

Instances: n items with N(0, 1) strengths, m rankings of ``length`` items each (a uniform random subset, ordered by
Plackett-Luce via the Gumbel trick, :func:`prefkit.sample_rankings`). On each instance, in the same run:

* the reference: prefkit's MM (Hunter 2004, §5; a different algorithm from the Newton solver being timed) run to
  tol=1e-13, so "same MLE" is checked against an independent fit;
* prefkit Newton (default settings), prefkit MM (tol=1e-10), choix.ilsr_rankings (tol=1e-10) and
  choix.opt_rankings (tol=1e-10), each timed best of ``--repeat`` runs (wall clock, after a warm-up);
  opt_rankings (scipy BFGS on a Python-level objective) runs once, and only up to ``--opt-max`` rankings;
* max |θ − θ_ref| over items after centring every estimate to mean 0 (the MLE criterion is 1e-6).

choix receives the rankings as a list of tuples (its documented input; converted before the clock starts).
Run with one BLAS thread (the script sets it) so that the comparison is per core.

Usage: python bench/pl_vs_choix.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SIZES = [(20, 1_000, 4), (100, 10_000, 5), (100, 10_000, 10), (500, 50_000, 5)]


def make_instance(n_items, n_rankings, length, seed=0):
    from prefkit import sample_rankings

    rng = np.random.default_rng(seed)
    strengths = rng.standard_normal(n_items)
    return strengths, sample_rankings(strengths, n_rankings, rng, length=length)


def run_prefkit(n, rankings, as_list):
    from prefkit import fit_plackett_luce

    return fit_plackett_luce(rankings, n).strengths


def run_prefkit_mm(n, rankings, as_list):
    from prefkit import fit_plackett_luce

    return fit_plackett_luce(rankings, n, method="mm").strengths


def run_ilsr(n, rankings, as_list):
    import choix

    return choix.ilsr_rankings(n, as_list, tol=1e-10, max_iter=10_000)


def run_opt(n, rankings, as_list):
    import choix

    return choix.opt_rankings(n, as_list, tol=1e-10)


RUNNERS = {"prefkit newton": run_prefkit, "prefkit mm": run_prefkit_mm, "choix ilsr_rankings": run_ilsr,
           "choix opt_rankings": run_opt}


def timed(fn, *args, repeat=3):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, np.asarray(out, float) - np.mean(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two smallest sizes only")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--opt-max", type=int, default=2_000,
                        help="run choix.opt_rankings only on instances with at most this many rankings (it takes "
                             "30 s at 20 items x 1000 rankings)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    from prefkit import fit_plackett_luce

    sizes = SIZES[:2] if args.quick else SIZES
    warm = make_instance(5, 50, 3)[1]
    for fn in RUNNERS.values():
        fn(5, warm, [tuple(r) for r in warm.tolist()])
    print(f"{'items':>6} {'rankings':>9} {'length':>6}  {'method':<22} {'time (s)':>9} {'ratio':>7} "
          f"{'max |θ−θ_ref|':>14}")
    for n, m, length in sizes:
        _, rankings = make_instance(n, m, length)
        as_list = [tuple(r) for r in rankings.tolist()]
        ref = fit_plackett_luce(rankings, n, method="mm", tol=1e-13).strengths
        base = None
        for name, fn in RUNNERS.items():
            rep = args.repeat
            if name == "choix opt_rankings":
                if m > args.opt_max:
                    print(f"{n:>6} {m:>9} {length:>6}  {name:<22} {'skipped':>9} (more than --opt-max rankings)")
                    continue
                rep = 1
            t, est = timed(fn, n, rankings, as_list, repeat=rep)
            base = t if base is None else base
            err = float(np.max(np.abs(est - ref)))
            print(f"{n:>6} {m:>9} {length:>6}  {name:<22} {t:>9.3f} {t / base:>7.1f} {err:>14.1e}"
                  + ("" if err < 1e-6 else "  (differs from the MLE by more than 1e-6)"), flush=True)
    print("ratio: time / prefkit newton's time on the same instance (higher: prefkit faster)")


if __name__ == "__main__":
    main()
