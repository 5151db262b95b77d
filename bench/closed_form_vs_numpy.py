"""Benchmark: prefkit's closed form against the same computation written directly in numpy / scipy, in place.

Functions, each against its peer on the same arrays (an (n_prompts, n_responses) problem, float64 or float32):

* ``optimal_policy``: π* = softmax(log π_ref + r/β) row by row. Peer "numpy softmax": ``z = log(π_ref);
  z += r/β; z -= z.max(-1); exp(z, out=z); z /= z.sum(-1)``.
* ``log_partition``: log Z = logsumexp(log π_ref + r/β). Two peers: ``scipy.special.logsumexp`` (the issue's
  reference) and "numpy logsumexp", the same steps in place (``z = log(π_ref); z += r/β; m = z.max(-1);
  z -= m; exp(z, out=z); log(z.sum(-1)) + m``).
* ``optimal_log_policy``: log π* = scaled − logsumexp(scaled), scaled = log π_ref + r/β. Two peers: "numpy
  log-softmax", the same steps in place with one temporary for the exp (``z = log(π_ref); z += r/β;
  z -= z.max(-1); e = exp(z); z -= log(e.sum(-1))``), and ``scipy.special.log_softmax(log π_ref + r/β)``.
* ``implied_reward``: β·log(π/π_ref). Peer "numpy log-ratio": ``z = π/π_ref; log(z, out=z); z *= β``.

The peers run in the input dtype (float32 arithmetic for float32 arrays) and check nothing. prefkit checks its
inputs (π/π_ref rows are distributions, r and r/β finite, β > 0), masks π_ref = 0, works in chunks of rows
(shifting r/β by its row maximum before anything is added to it: in float64, or for float32 log π* as
(r − max r)/β in float32) and returns float32 for float32 inputs (log Z: float64 always).

Columns: best of ``--repeat`` runs, prefkit and peer interleaved, one thread, timed both by the CPU time of the
process (``time.process_time``: user + system, page faults included; what counts on a shared machine, where
the wall clock also measures the other jobs) and by the wall clock; ratio = prefkit / peer, CPU (wall);
peak extra memory of one call (tracemalloc, which sees numpy's allocations; the output included), also as a
multiple of one input array; max |prefkit − peer|; for float32, the error of each against the float64 answer
for the same float32 numbers (max |x − exact|, x = π*, log Z or the implied reward).

Sizes: ``small`` = 500 × 20,000 (76 MiB per float64 array), ``big`` = 1,000 × 100,000 (763 MiB per float64
array, the issue's size). Run the big size one function at a time on a shared machine, e.g.
``--sizes big --functions optimal_policy``.

Usage: python bench/closed_form_vs_numpy.py [--sizes small,big] [--dtypes float64,float32]
       [--functions optimal_policy,log_partition,optimal_log_policy,implied_reward] [--repeat K]
       [--chunk ENTRIES]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.special import log_softmax, logsumexp  # noqa: E402

SIZES = {"tiny": (50, 2_000), "small": (500, 20_000), "big": (1_000, 100_000)}
FUNCTIONS = ("optimal_policy", "log_partition", "optimal_log_policy", "implied_reward")
BETA = 0.5


# ------------------------------------------------------------------------------------------------ the peers
def numpy_softmax(pi_ref, reward, beta):
    z = np.log(pi_ref)
    z += reward / beta
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def numpy_logsumexp(pi_ref, reward, beta):
    z = np.log(pi_ref)
    z += reward / beta
    m = z.max(axis=-1, keepdims=True)
    z -= m
    np.exp(z, out=z)
    return np.log(z.sum(axis=-1)) + m[:, 0]


def scipy_logsumexp(pi_ref, reward, beta):
    return logsumexp(np.log(pi_ref) + reward / beta, axis=-1)


def numpy_log_softmax(pi_ref, reward, beta):
    z = np.log(pi_ref)
    z += reward / beta
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    z -= np.log(e.sum(axis=-1, keepdims=True))
    return z


def scipy_log_softmax(pi_ref, reward, beta):
    return log_softmax(np.log(pi_ref) + reward / beta, axis=-1)


def numpy_log_ratio(pi, pi_ref, beta):
    z = pi / pi_ref
    np.log(z, out=z)
    z *= beta
    return z


def cases(function):
    """(prefkit function, [(peer name, peer function)], names of the two array arguments)."""
    import prefkit as pk

    if function == "optimal_policy":
        return pk.optimal_policy, [("numpy softmax", numpy_softmax)], ("pi_ref", "reward")
    if function == "log_partition":
        return pk.log_partition, [("scipy logsumexp", scipy_logsumexp), ("numpy logsumexp", numpy_logsumexp)], (
            "pi_ref", "reward")
    if function == "optimal_log_policy":
        return pk.optimal_log_policy, [("numpy log-softmax", numpy_log_softmax),
                                       ("scipy log_softmax", scipy_log_softmax)], ("pi_ref", "reward")
    return pk.implied_reward, [("numpy log-ratio", numpy_log_ratio)], ("pi", "pi_ref")


# ------------------------------------------------------------------------------------------------- measuring
def make_arrays(n, m, names, dtype, seed=0):
    """π_ref (Dirichlet(1) rows), and r ~ N(0, 1) or π (another Dirichlet row), built in float64 and cast."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        if name == "reward":
            a = rng.standard_normal((n, m))
        else:
            a = rng.standard_gamma(1.0, (n, m))
            a /= a.sum(axis=-1, keepdims=True)
        out[name] = a if dtype == np.float64 else a.astype(dtype)
        del a
    return out


def timed(fn, args):
    """(wall-clock seconds, CPU seconds of this process, output) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0, out


def peak_extra_bytes(fn, args):
    """Peak bytes allocated during one call (numpy reports its buffers to tracemalloc), the output included."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out = fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del out
    return peak


def max_abs_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    fin = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(fin, np.isfinite(a)) or not np.array_equal(fin, np.isfinite(b)):
        return float("inf")  # one is finite where the other is not
    return float(np.max(np.abs(a[fin] - b[fin]))) if fin.any() else 0.0


def run_one(size, dtype, function, repeat):
    import prefkit as pk

    n, m = SIZES[size]
    fn, peers, names = cases(function)
    arrays = make_arrays(n, m, names, dtype)
    args = (arrays[names[0]], arrays[names[1]], BETA)
    in_bytes = arrays[names[0]].nbytes
    rows = []
    ours = fn(*args)
    exact = None
    if dtype != np.float64:  # the float64 answer for the same float32 numbers
        exact = fn(args[0].astype(np.float64), args[1].astype(np.float64), BETA)
    mem_ours = peak_extra_bytes(fn, args)
    for peer_name, peer in peers:
        theirs = peer(*args)
        diff = max_abs_diff(ours, theirs)
        err_ours = max_abs_diff(ours, exact) if exact is not None else None
        err_peer = max_abs_diff(theirs, exact) if exact is not None else None
        del theirs
        mem_peer = peak_extra_bytes(peer, args)
        t_ours, t_peer, c_ours, c_peer = (float("inf"),) * 4
        for _ in range(repeat):  # interleaved, best of `repeat`
            t, c, out = timed(fn, args)
            del out
            t_ours, c_ours = min(t_ours, t), min(c_ours, c)
            t, c, out = timed(peer, args)
            del out
            t_peer, c_peer = min(t_peer, t), min(c_peer, c)
        rows.append(dict(size=f"{n:,} × {m:,}", dtype=np.dtype(dtype).name, function=function, t_ours=t_ours,
                         peer=peer_name, t_peer=t_peer, c_ours=c_ours, c_peer=c_peer, mem_ours=mem_ours,
                         mem_peer=mem_peer,
                         in_bytes=in_bytes, diff=diff, err_ours=err_ours, err_peer=err_peer,
                         out_dtype=np.asarray(ours).dtype.name))
    del ours, exact, arrays, args
    gc.collect()
    assert pk is not None
    return rows


def _mib(b, in_bytes):
    return f"{b / 2**20:,.0f} MiB ({b / in_bytes:.2f}×)"


def print_table(rows):
    print("| size | dtype | function | prefkit CPU (wall) | peer CPU (wall) | ratio CPU (wall) | prefkit peak extra "
          "memory | peer peak extra memory | max \\|prefkit − peer\\| | error vs float64: prefkit / peer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = "—" if r["err_ours"] is None else f"{r['err_ours']:.1e} / {r['err_peer']:.1e}"
        print(f"| {r['size']} | {r['dtype']} → {r['out_dtype']} | `{r['function']}` | {r['c_ours']:.3f} s "
              f"({r['t_ours']:.3f} s) | {r['peer']} {r['c_peer']:.3f} s ({r['t_peer']:.3f} s) | "
              f"**{r['c_ours'] / r['c_peer']:.2f}** ({r['t_ours'] / r['t_peer']:.2f}) | "
              f"{_mib(r['mem_ours'], r['in_bytes'])} | {_mib(r['mem_peer'], r['in_bytes'])} | {r['diff']:.1e} | "
              f"{err} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small",
                    help="comma-separated: tiny (50 x 2,000, smoke test), small (500 x 20,000), big (1,000 x 100,000)")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--functions", default=",".join(FUNCTIONS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=None, help="override prefkit.closed_form._CHUNK_ENTRIES")
    args = ap.parse_args()
    import prefkit.closed_form as cf

    if args.chunk:
        cf._CHUNK_ENTRIES = args.chunk
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"best of {args.repeat}, interleaved, one thread; chunk {cf._CHUNK_ENTRIES:,} entries; beta = {BETA}; "
          f"load average at start {' '.join(load)}; numpy {np.__version__}\n")
    rows = []
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            for function in args.functions.split(","):
                rows += run_one(size, np.dtype(dtype).type, function, args.repeat)
    print_table(rows)
    with open("/proc/loadavg") as f:
        print(f"\nload average at end {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
