"""Benchmark: prefkit's closed form against one in-place numpy softmax / scipy logsumexp over the same array.

π* = softmax(log π_ref + r/β) row by row (:func:`prefkit.optimal_policy`) and log Z = logsumexp(log π_ref + r/β)
(:func:`prefkit.log_partition`), on an (n_prompts, n_responses) float64 problem; the peers are the same
computation written directly in numpy (log, add, subtract the row max, exp, divide: in place, no input checks) and
``scipy.special.logsumexp``. prefkit also checks its inputs (π_ref rows are distributions, r finite, r/β finite)
and masks π_ref = 0, which the peers do not. Best of ``--repeat`` runs, one BLAS thread; the ratio is the number.

Usage: python bench/closed_form_vs_numpy.py [--prompts N] [--responses M] [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.special import logsumexp  # noqa: E402


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    import prefkit as pk

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=500)
    ap.add_argument("--responses", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pi_ref = rng.dirichlet(np.ones(args.responses), args.prompts)
    reward = rng.normal(size=pi_ref.shape)
    beta = 0.5

    def numpy_softmax():
        z = np.log(pi_ref)
        z += reward / beta
        z -= z.max(axis=-1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)
        return z

    def scipy_lse():
        return logsumexp(np.log(pi_ref) + reward / beta, axis=-1)

    rows = [("optimal_policy", lambda: pk.optimal_policy(pi_ref, reward, beta), "numpy softmax", numpy_softmax),
            ("log_partition", lambda: pk.log_partition(pi_ref, reward, beta), "scipy logsumexp", scipy_lse)]
    print(f"{args.prompts} x {args.responses} float64 ({pi_ref.nbytes / 2**20:.0f} MiB per array), best of "
          f"{args.repeat}")
    for name, fn, peer, peer_fn in rows:
        diff = float(np.max(np.abs(np.asarray(fn()) - np.asarray(peer_fn()))))
        t, tp = best_of(fn, args.repeat), best_of(peer_fn, args.repeat)
        print(f"  {name:<15} {t:7.3f} s   {peer:<16} {tp:7.3f} s   ratio {t / tp:5.2f}   max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
