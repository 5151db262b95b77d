"""Shared by the benchmarks: time one call in a fresh forked child, with its peak memory and a time limit."""

from __future__ import annotations

import multiprocessing as mp
import time


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _measure(fn, args):
    """(seconds, fn(*args), peak extra resident memory in bytes) in this process.

    The peak is the peak resident set (VmHWM, reset through /proc/self/clear_refs just before the call) minus
    the resident set at that moment: what the call allocated, in numpy, Rust or C alike.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    except OSError:
        pass
    rss0 = _status_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    return dt, out, max(_status_kib("VmHWM") - rss0, 0) * 1024


def _child(fn, args, queue):
    try:
        queue.put(_measure(fn, args))
    except Exception as e:  # an import error or out of memory: reported, not fatal
        queue.put(repr(e))


def in_child(fn, *args, timeout=600.0):
    """Run fn(*args) in a forked child: (seconds, result, peak bytes); None past ``timeout`` s; a str if it failed.

    The result travels back by pickling, so keep it small (an array of strengths, not a fit object).
    """
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    t0 = time.perf_counter()
    result = None
    while time.perf_counter() - t0 < timeout:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:
            if not proc.is_alive():
                break
    if result is None:
        proc.terminate()
    proc.join()
    return result


def best_of(fn, *args, repeat=3, timeout=600.0):
    """The fastest of ``repeat`` runs in fresh children (or the first failure: None or a message)."""
    runs = []
    for _ in range(repeat):
        r = in_child(fn, *args, timeout=timeout)
        if not isinstance(r, tuple):
            return r
        runs.append(r)
    return min(runs, key=lambda x: x[0])
