"""Benchmark: prefkit's Bradley-Terry MLE against evalica and choix, and against the floor, over a grid of sizes.

Instances: n items with N(0, 1) strengths; m comparisons: a cycle of n wins (so that the MLE exists even at
100k items / 100k comparisons) and m − n between uniform random pairs, outcomes drawn from BT
(``prefkit.sample_comparisons``, one seed). Grid: n ∈ {1k, 10k, 100k} × m ∈ {100k, 1M, 10M} (``--quick``: 1k and
10k items, 100k and 1M comparisons). On each instance, in the same run, each timed in its own forked child
process (wall clock, after a warm-up on a tiny instance), best of ``--repeat`` runs:

* **floor**: the time to read the comparisons (``np.load`` of the (m, 2) int64 array saved as .npy; the file is
  in the page cache after the first run) plus the time to aggregate them into pair counts the cheapest way
  numpy knows: one ``np.bincount`` over the keys winner·n + loser when the n² bins are few next to the
  comparisons (n² ≤ max(2m, 2²⁰), prefkit's own threshold), otherwise ``np.unique(keys, return_counts=True)``
  (a sort). Nothing can fit the MLE without doing at least this.
* **prefkit**: ``fit_bradley_terry(comparisons, n)`` with the default settings (Newton), from the loaded array.
* **evalica**: ``evalica.bradley_terry`` (evalica 0.4.2; tolerance 1e-8, limit 1000), skipped where its
  dense n×n matrices would not fit in memory (n = 100k: 80 GB).
* **choix**: ``choix.ilsr_pairwise`` (choix 0.4.1; tol 1e-8), once, at n = 1k only (it solves a dense n×n
  system per iteration: minutes at 10k items), fed a list of tuples (its documented input; converted before the
  clock starts); ``--timeout`` limits it.

Reported: time, peak memory (the child's peak resident set, VmHWM reset through /proc/self/clear_refs just
before the call, minus its resident set at that moment: what the call allocated, in numpy or Rust alike), the
ratio of each peer's time to prefkit's, prefkit's time ÷ the floor's, max |θ_prefkit − θ_peer| after centering
(the same MLE?), prefkit's optimality certificate max_i |∂ℓ/∂θ_i| / L_ii (the gradient over the curvature, ≈ the
distance to the optimum of one Jacobi step), and the growth exponents: the least-squares slope of log(time)
against log(m) at each n, and against log(n) at each m.

Usage: python bench/bt_vs_choix.py [--quick] [--timeout SECONDS] [--repeat N] [--seed S] [--items N ...]
       [--comparisons M ...] [--peers evalica choix]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from _timing import _measure, in_child

ITEMS = [1_000, 10_000, 100_000]
COMPARISONS = [100_000, 1_000_000, 10_000_000]
EVALICA_MAX_ITEMS = 10_000  # evalica builds dense n×n float64 matrices: 80 GB at 100k items
CHOIX_MAX_ITEMS = 1_000


def make_instance(n_items, n_comparisons, seed=0):
    """A cycle of wins 0 ≻ 1 ≻ … ≻ n−1 ≻ 0 (so the MLE exists at every size: the win graph is strongly
    connected), then n_comparisons − n_items comparisons of uniform random pairs drawn from BT, shuffled."""
    from prefkit import sample_comparisons

    rng = np.random.default_rng(seed)
    strengths = rng.standard_normal(n_items)
    cycle = np.stack([np.arange(n_items), (np.arange(n_items) + 1) % n_items], axis=1)
    comps = np.concatenate([cycle, sample_comparisons(strengths, max(n_comparisons - n_items, 0), rng)])
    return strengths, comps[rng.permutation(len(comps))]


def run_floor(n, path):
    """Read the comparisons and count each (winner, loser) pair: what any fit must at least do."""
    comps = np.load(path)
    key = comps[:, 0] * n + comps[:, 1]
    if n * n <= max(2 * len(comps), 1 << 20):
        counts = np.bincount(key, minlength=n * n)
    else:
        counts = np.unique(key, return_counts=True)
    return counts


def run_prefkit(n, comps):
    from prefkit import fit_bradley_terry

    return fit_bradley_terry(comps, n).strengths


def run_choix(n, comps):
    import choix

    return choix.ilsr_pairwise(n, comps, tol=1e-8, max_iter=1000)  # comps: list of (winner, loser) tuples


def run_evalica(n, comps):
    import evalica

    res = evalica.bradley_terry(
        comps[:, 0], comps[:, 1], [evalica.Winner.X] * len(comps), tolerance=1e-8, limit=1000
    )
    scores = res.scores.reindex(np.arange(n)).to_numpy()
    return np.log(scores)


RUNNERS = {"floor": run_floor, "prefkit": run_prefkit, "choix": run_choix, "evalica": run_evalica}


def measure(name, n, data):
    """(seconds, centered strengths or None, peak extra memory in bytes) of one runner. Run it in a child."""
    if name == "choix":
        data = [tuple(c) for c in data.tolist()]  # choix's documented input, built before the clock starts
    dt, out, peak = _measure(RUNNERS[name], (n, data))
    if name == "floor":
        return dt, None, peak
    theta = np.asarray(out, dtype=np.float64)
    return dt, theta - theta.mean(), peak


def best_of(name, n, data, repeat, timeout):
    runs = []
    for _ in range(repeat):
        r = in_child(measure, name, n, data, timeout=timeout)
        if not isinstance(r, tuple):
            return r
        runs.append(r[1])  # measure's own triple (its timing excludes the conversion for choix)
    return min(runs, key=lambda x: x[0])


def certificate(n, comps, theta):
    """max_i |∂ℓ/∂θ_i| / L_ii at θ: the gradient over the curvature (≈ one Jacobi step to the optimum)."""
    from prefkit import bt_fisher_information, bt_log_likelihood_gradient

    grad = np.abs(bt_log_likelihood_gradient(theta, comps))
    return float(np.max(grad / bt_fisher_information(theta, comps).diagonal()))


def fmt_mem(b):
    return f"{b / 2**20:,.0f} MiB" if b >= 2**20 else f"{b / 2**10:,.0f} KiB"


def slope(x, y):
    """Least-squares slope of log y against log x (the growth exponent)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(lx, ly, 1)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k items, 100k and 1M comparisons")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed to each peer per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (best is kept; choix runs once)")
    ap.add_argument("--items", type=int, nargs="*", help="only these numbers of items")
    ap.add_argument("--comparisons", type=int, nargs="*", help="only these numbers of comparisons")
    ap.add_argument("--peers", nargs="*", default=["evalica", "choix"], help="peers to run (default both)")
    args = ap.parse_args(argv)
    items = [n for n in (ITEMS[:2] if args.quick else ITEMS) if not args.items or n in args.items]
    comparisons = [m for m in (COMPARISONS[:2] if args.quick else COMPARISONS)
                   if not args.comparisons or m in args.comparisons]

    _, small = make_instance(20, 500, seed=123)  # warm-up (imports, first-call overheads)
    for name in ("prefkit", "evalica", "choix"):
        try:
            RUNNERS[name](20, small)
        except ImportError as e:
            print(f"{name} is not installed ({e}); its rows are skipped", file=sys.stderr)

    load_start = os.getloadavg()
    rows, times = [], {}
    tmp = tempfile.mkdtemp(prefix="bt_bench_")
    for n in items:
        for m in comparisons:
            _, comps = make_instance(n, m, args.seed)
            path = os.path.join(tmp, "comparisons.npy")
            np.save(path, comps)
            out = {"floor": best_of("floor", n, path, args.repeat, args.timeout),
                   "prefkit": best_of("prefkit", n, comps, args.repeat, args.timeout)}
            if n <= EVALICA_MAX_ITEMS and "evalica" in args.peers:
                out["evalica"] = best_of("evalica", n, comps, args.repeat, args.timeout)
            if n <= CHOIX_MAX_ITEMS and "choix" in args.peers:
                out["choix"] = best_of("choix", n, comps, 1, args.timeout)
            pk = out["prefkit"]
            if not isinstance(pk, tuple):
                print(f"{n:,} / {m:,}: prefkit failed: {pk}", file=sys.stderr)
                continue
            times[n, m] = pk[0]
            cert = certificate(n, comps, pk[1])
            fl = out["floor"]
            row = {"size": f"{n:,} / {m:,}", "prefkit": f"{pk[0]:.3f} s", "mem": fmt_mem(pk[2]),
                   "floor": f"{fl[0]:.3f} s ({pk[0] / fl[0]:.1f}×)" if isinstance(fl, tuple) else "failed",
                   "cert": f"{cert:.0e}"}
            for peer in ("evalica", "choix"):
                r = out.get(peer, "skipped")
                if isinstance(r, tuple):
                    diff = np.max(np.abs(r[1] - pk[1]))
                    row[peer] = f"{r[0]:.2f} s, **{r[0] / pk[0]:.1f}×**, {fmt_mem(r[2])}, Δθ {diff:.0e}"
                elif r is None:
                    row[peer] = f"> {args.timeout:.0f} s (stopped)"
                elif r == "skipped":
                    row[peer] = "—"
                else:
                    row[peer] = f"failed: {r[:60]}"
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()

    print()
    print(f"Bradley-Terry MLE, N(0,1) strengths, uniform pairs (seed {args.seed}); best of {args.repeat}; "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print()
    print("| items / comparisons | prefkit | peak memory | floor: read + aggregate (prefkit ÷ floor) "
          "| evalica: time, ÷ prefkit, memory, max Δθ | choix ilsr: time, ÷ prefkit, memory, max Δθ "
          "| prefkit max |g_i|/L_ii |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['prefkit']} | {r['mem']} | {r['floor']} | {r['evalica']} | {r['choix']} "
              f"| {r['cert']} |")
    print()
    print("Growth exponents of prefkit's time (least-squares slope of log time):")
    for n in items:
        ms = [m for m in comparisons if (n, m) in times]
        if len(ms) > 1:
            print(f"- against log m at n = {n:,}: {slope(ms, [times[n, m] for m in ms]):.2f}")
    for m in comparisons:
        ns = [n for n in items if (n, m) in times]
        if len(ns) > 1:
            print(f"- against log n at m = {m:,}: {slope(ns, [times[n, m] for n in ns]):.2f}")
    print()
    print("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}; at end: {:.2f} {:.2f} {:.2f} "
          "(a shared machine: absolute times vary, the ratios less so)".format(*load_start, *load_end))
    return 0


if __name__ == "__main__":
    sys.exit(main())
