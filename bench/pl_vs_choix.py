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

With ``--grid``: the scaling table instead. n ∈ {100, 1k, 10k} items × m ∈ {10k, 100k, 1M} rankings of 5
(``--quick``: the first two of each), each timed in a fresh forked child (best of ``--repeat``; peak memory as in
bench/bt_vs_choix.py): prefkit Newton; the floor, reading the (m, 5) array from a .npy file and one
``np.bincount`` over its entries (one pass over the data: nothing can fit θ with less); choix.ilsr_rankings
where n ≤ 1k and m ≤ 100k (a Python loop over the rankings in every iteration; limited by ``--timeout``), with
max |θ_prefkit − θ_choix|; and the growth exponents of prefkit's time in m and in n.

Usage: python bench/pl_vs_choix.py [--quick] [--repeat N] [--grid [--timeout S] [--items N ...] [--no-peers]]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SIZES = [(20, 1_000, 4), (100, 10_000, 5), (100, 10_000, 10), (500, 50_000, 5)]
GRID_ITEMS = [100, 1_000, 10_000]
GRID_RANKINGS = [10_000, 100_000, 1_000_000]
GRID_LENGTH = 5


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


def _grid_floor(n, path):
    R = np.load(path)
    return np.bincount(R.ravel(), minlength=n)


def _grid_prefkit(n, rankings):
    from prefkit import fit_plackett_luce

    theta = fit_plackett_luce(rankings, n).strengths
    return theta - theta.mean()


def _grid_ilsr(n, as_list):
    import choix

    theta = choix.ilsr_rankings(n, as_list, tol=1e-10, max_iter=10_000)
    return theta - theta.mean()


def grid(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _timing import best_of

    items = GRID_ITEMS[:2] if args.quick else GRID_ITEMS
    if args.items:
        items = [n for n in items if n in args.items]
    rankings_sizes = GRID_RANKINGS[:2] if args.quick else GRID_RANKINGS
    _grid_prefkit(5, make_instance(5, 50, GRID_LENGTH)[1])  # warm-up
    load_start = os.getloadavg()
    rows, times = [], {}
    tmp = tempfile.mkdtemp(prefix="pl_bench_")
    for n in items:
        for m in rankings_sizes:
            _, R = make_instance(n, m, GRID_LENGTH)
            path = os.path.join(tmp, "rankings.npy")
            np.save(path, R)
            pk = best_of(_grid_prefkit, n, R, repeat=args.repeat, timeout=args.timeout)
            fl = best_of(_grid_floor, n, path, repeat=args.repeat, timeout=args.timeout)
            if not isinstance(pk, tuple):  # e.g. no MLE: an item never ranked below another (too few rankings)
                print(f"{n:,} / {m:,}: prefkit failed: {pk}", file=sys.stderr)
                rows.append([f"{n:,} / {m:,}", f"no fit: {str(pk)[:70]}…", "", "", ""])
                continue
            times[n, m] = pk[0]
            row = [f"{n:,} / {m:,}", f"{pk[0]:.3f} s", f"{pk[2] / 2**20:,.0f} MiB",
                   f"{fl[0]:.3f} s ({pk[0] / fl[0]:.1f}×)" if isinstance(fl, tuple) else "failed"]
            if n <= 1_000 and m <= 100_000 and not args.no_peers:
                as_list = [tuple(r) for r in R.tolist()]
                ch = best_of(_grid_ilsr, n, as_list, repeat=1, timeout=args.timeout)
                if isinstance(ch, tuple):
                    row.append(f"{ch[0]:.2f} s, **{ch[0] / pk[0]:.1f}×**, {ch[2] / 2**20:,.0f} MiB, "
                               f"Δθ {np.max(np.abs(ch[1] - pk[1])):.0e}")
                else:
                    row.append(f"> {args.timeout:.0f} s (stopped)" if ch is None else f"failed: {ch[:60]}")
            else:
                row.append("—")
            rows.append(row)
            print("  " + " | ".join(row), file=sys.stderr, flush=True)
    load_end = os.getloadavg()
    print(f"Plackett-Luce MLE, rankings of {GRID_LENGTH} (uniform subsets, PL order), seed 0; best of "
          f"{args.repeat}; one thread")
    print()
    print("| items / rankings | prefkit Newton | peak memory | floor: read + one pass (prefkit ÷ floor) "
          "| choix ilsr_rankings: time, ÷ prefkit, memory, max Δθ |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("Growth exponents of prefkit's time (least-squares slope of log time):")
    for n in items:
        ms = [m for m in rankings_sizes if (n, m) in times]
        if len(ms) > 1:
            print(f"- against log m at n = {n:,}: "
                  f"{np.polyfit(np.log(ms), np.log([times[n, m] for m in ms]), 1)[0]:.2f}")
    for m in rankings_sizes:
        ns = [n for n in items if (n, m) in times]
        if len(ns) > 1:
            print(f"- against log n at m = {m:,}: "
                  f"{np.polyfit(np.log(ns), np.log([times[n, m] for n in ns]), 1)[0]:.2f}")
    print()
    print("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}; at end: {:.2f} {:.2f} {:.2f}".format(
        *load_start, *load_end))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two smallest sizes only")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--opt-max", type=int, default=2_000,
                        help="run choix.opt_rankings only on instances with at most this many rankings (it takes "
                             "30 s at 20 items x 1000 rankings)")
    parser.add_argument("--grid", action="store_true", help="the scaling table (items x rankings) instead")
    parser.add_argument("--timeout", type=float, default=600.0, help="--grid: seconds allowed to each run")
    parser.add_argument("--items", type=int, nargs="*", help="--grid: only these numbers of items")
    parser.add_argument("--no-peers", action="store_true",
                        help="--grid: prefkit and the floor only (e.g. to time an older prefkit on the same machine)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if args.grid:
        return grid(args)
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
