"""Input checks shared by every public function. Each raises ``ValueError`` naming the offending argument, so bad
input never turns into a NaN or a silently wrong answer."""

from __future__ import annotations

import numpy as np

__all__ = []  # private helpers



class ConvergenceWarning(RuntimeWarning):
    """A fit stopped before it met its tolerance (or the loss has no minimiser on the data). Exported as
    ``prefkit.ConvergenceWarning`` and ``prefkit.dpo.ConvergenceWarning``."""


def _is_tensor(x) -> bool:
    """A torch tensor, recognised without importing torch (numpy-only modules stay torch-free)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x):
    """A torch tensor as a numpy array (detached, on the CPU: ``requires_grad`` is no obstacle); else ``x``."""
    if _is_tensor(x):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # no numpy dtype for it
            x = x.float()
        return x.numpy()
    return x


def _real_scalar(v, name: str, what: str) -> float:
    """``v`` as a Python float: a real number (not a bool, not complex, not None, not a string)."""
    if isinstance(v, (bool, np.bool_)) or v is None or isinstance(v, (str, bytes)):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    v = to_numpy(v)
    if isinstance(v, np.ndarray):
        if v.size != 1 or v.ndim > 1:
            raise ValueError(f"{name} must be {what}, got an array of shape {v.shape}")
        v = v.reshape(())[()]
    if isinstance(v, (complex, np.complexfloating)):
        raise ValueError(f"{name} must be a real number, got complex {v!r}")
    if isinstance(v, (np.bool_, bool)):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be {what}, got {v!r}") from None


def check_beta(beta, name: str = "beta") -> float:
    """β must be a finite number > 0 (a bool is rejected, not read as 1)."""
    b = _real_scalar(beta, name, "a positive number")
    if not np.isfinite(b) or b <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {beta!r}")
    return b


def as_real_array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array of real numbers in its own dtype (bool, int, float; no conversion to float64).

    A torch tensor is detached first; None, strings and other objects, ragged lists and complex numbers are a
    ValueError naming ``name``. :func:`as_float_array` is this plus float64 and its shape/finiteness checks.
    """
    if x is None:
        raise ValueError(f"{name} must be an array of numbers, got None")
    x = to_numpy(x)
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError, RuntimeError):  # ragged lists; a list of tensors that require grad
        raise ValueError(f"{name} must be an array of numbers (not ragged), got {type(x).__name__}") from None
    if raw.dtype.kind == "c":
        raise ValueError(f"{name} must be real, got complex values")
    if raw.dtype.kind not in "biuf" and raw.size:
        raise ValueError(f"{name} must be an array of numbers, got dtype {raw.dtype}")
    return raw


def as_float_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None, finite: bool = True,
                   nonempty: bool = False) -> np.ndarray:
    """``x`` as a float64 array; checks the number of dimensions and, if ``finite``, rejects NaN and inf.

    A torch tensor is detached first (``requires_grad`` is fine); None, strings, ragged lists and complex
    numbers (whose imaginary part numpy would drop with only a warning) are a ValueError naming ``name``; with
    ``nonempty``, so is an array with no entries.
    """
    a = as_real_array(x, name).astype(np.float64, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if a.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {a.shape}")
    if nonempty and a.size == 0:
        raise ValueError(f"{name} is empty, got shape {a.shape}")
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def check_seed(seed, name: str = "seed", *, allow_none: bool = False) -> np.random.Generator:
    """A seed (an integer ≥ 0) or a ``np.random.Generator`` (used as is), as a Generator; None (fresh entropy)
    only with ``allow_none``.

    Floats (even 1.0), bools, negative integers and other objects are a ValueError naming ``name``.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None and allow_none:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be an integer >= 0 or a numpy Generator (np.random.default_rng(0)), "
                         f"got {seed!r}")
    return np.random.default_rng(int(seed))


def check_probability(v, name: str, *, open_lo: bool = False, open_hi: bool = False) -> float:
    """A probability-like number in [0, 1] (open at either end on request); ValueError naming ``name``."""
    x = _real_scalar(v, name, "a number in [0, 1]")
    lo_ok = x > 0 if open_lo else x >= 0
    hi_ok = x < 1 if open_hi else x <= 1
    if not (np.isfinite(x) and lo_ok and hi_ok):
        raise ValueError(f"{name} must lie in {'(' if open_lo else '['}0, 1{')' if open_hi else ']'}, got {v!r}")
    return x


def normalize_weights(w: np.ndarray, name: str = "weights") -> np.ndarray:
    """Non-negative finite weights divided by their largest entry, so their sum neither overflows nor underflows.

    For functions that depend on the weights only through their ratios (a weighted mean, a likelihood's
    maximiser). All-zero weights are a ValueError naming ``name``.
    """
    top = float(np.max(w)) if w.size else 0.0
    if top <= 0:
        raise ValueError(f"{name} must not all be zero")
    return w / top


def check_distribution(p, name: str, *, atol: float = 1e-6) -> np.ndarray:
    """``p`` as float64, each row along the last axis a probability distribution (≥ 0, sums to 1 within atol)."""
    a = as_float_array(p, name)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    if np.any(a < 0):
        raise ValueError(f"{name} has negative probabilities")
    s = a.sum(axis=-1)
    bad = np.abs(s - 1.0) > atol
    if np.any(bad):
        idx = np.argwhere(np.atleast_1d(bad))[0]
        raise ValueError(f"{name} is not a distribution: row {tuple(idx.tolist())} sums to "
                         f"{np.atleast_1d(s)[tuple(idx)]:.6g}, not 1")
    return a


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {name_a} has shape {a.shape} but {name_b} has shape {b.shape}")


def as_index_array(x, name: str, *, n: int | None = None, ncols: int | None = None) -> np.ndarray:
    """``x`` as an int64 array of indices in ``[0, n)``; with ``ncols``, of shape (m, ncols).

    Integer-valued floats are accepted; NaN, fractions, complex numbers, None, strings, ragged lists and negative
    indices (no wrap-around: −1 is an error, not the last item) are a ValueError naming ``name``.
    """
    if x is None:
        raise ValueError(f"{name} must be an array of integer indices, got None")
    x = to_numpy(x)
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be an array of integer indices (not ragged)") from None
    if a.size == 0:
        a = a.reshape(0, ncols) if ncols else a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must contain integer indices")
        if a.size and np.max(np.abs(a)) >= 2**62:
            raise ValueError(f"{name} contains an index too large for int64")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"{name} must contain integer indices, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)  # no copy when already int64: callers never write into it
    if ncols is not None and (a.ndim != 2 or a.shape[1] != ncols):
        raise ValueError(f"{name} must have shape (m, {ncols}), got {a.shape}")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} contains negative indices (no wrap-around: −1 is not the last item)")
    if n is not None and np.any(a >= n):
        raise ValueError(f"{name} contains index {int(a.max())}, out of range for {n} items")
    return a


def check_index(v, name: str, n: int) -> int:
    """One integer index in [0, n) (no −1 wrap-around; a float such as 1.0 is not an index); ValueError naming
    ``name``."""
    v = to_numpy(v)
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an integer index, got {v!r}")
    if not 0 <= v < n:
        raise ValueError(f"{name}={v} is out of range for {n} entries (no wrap-around: −1 is not the last one)")
    return int(v)


def check_weights(weights, m: int, name: str = "weights") -> np.ndarray:
    """Optional non-negative finite weights of shape (m,); None means all ones. Returned as given (callers that
    depend only on the ratios divide by :func:`normalize_weights`)."""
    if weights is None:
        return np.ones(m)
    w = as_float_array(weights, name, ndim=1)
    if w.shape != (m,):
        raise ValueError(f"{name} must have shape ({m},), got {w.shape}")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    return w


def check_real(v, name: str, *, lo: float | None = None, lo_open: bool = False, hi: float | None = None) -> float:
    """A finite real number (not a bool) with lo ≤ v (lo < v if ``lo_open``) and v < hi; ValueError naming ``name``."""
    x = _real_scalar(v, name, "a number")
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo is not None and (x < lo or (lo_open and x == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and x >= hi:
        raise ValueError(f"{name} must be < {hi}, got {v!r}")
    return x


def check_int(v, name: str, lo: int, hi: int | None = None) -> int:
    """An integer (not a bool, not a float) with lo ≤ v (≤ hi if given); ValueError naming ``name``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be an integer <= {hi}, got {v!r}")
    return int(v)


def finite_result(x, what: str):
    """``x`` if every entry is finite; else a ValueError saying ``what`` overflowed (``what`` names the
    arguments responsible). For results whose exact value is beyond float64 even when computed with care."""
    if _is_tensor(x):  # on the tensor's own device: no copy to the host
        import torch

        ok = bool(torch.isfinite(x.detach()).all())
    else:
        ok = bool(np.all(np.isfinite(x)))
    if not ok:
        raise ValueError(what)
    return x


def check_tensor(t, name: str, *, nonempty: bool = False):
    """``t`` must be a real torch tensor with finite entries (and, with ``nonempty``, at least one); ValueError
    naming ``name``. Returns ``t``.

    torch is imported here, not at module level, so the numpy-only modules that use this file stay torch-free.
    """
    import torch

    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex():
        raise ValueError(f"{name} must be real, got a complex tensor")
    if t.dtype == torch.bool:
        raise ValueError(f"{name} must hold numbers, got a bool tensor")
    if nonempty and t.numel() == 0:
        raise ValueError(f"{name} is empty, got shape {tuple(t.shape)}")
    if not bool(torch.all(torch.isfinite(t.detach()))):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def check_path(path, name: str = "path"):
    """A file path (str or os.PathLike) as a ``pathlib.Path``; anything else is a ValueError naming ``name``."""
    import os
    from pathlib import Path

    if isinstance(path, (bool, np.bool_)) or not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ValueError(f"{name} must be a file path (str or pathlib.Path), got {path!r}")
    return Path(path)


def read_text_file(path, *, allow_empty: bool = False) -> str:
    """The text of a UTF-8 data file (a leading BOM, as Excel writes, is dropped; CRLF is kept for the parser).

    ValueError naming the file for: a missing file, a directory, a 0-byte file (unless ``allow_empty``), a
    UTF-16/UTF-32 file (by its BOM), and bytes that are not UTF-8 (with the physical line and column).
    """

    p = check_path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not a data file")
    if not p.is_file():
        raise ValueError(f"no such data file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if not data and not allow_empty:
        raise ValueError(f"{p}: the file is empty (0 bytes)")
    for bom, enc in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                     (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            raise ValueError(f"{p}: the file is {enc}-encoded; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"{p}, line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {col}); "
                         f"save the file as UTF-8") from None


def check_torch_seed(seed, name: str = "seed") -> int:
    """An integer seed for ``torch.Generator().manual_seed``: a seed ≥ 0 as is, a numpy Generator draws one
    (so an int or a Generator is accepted everywhere); other values are a ValueError naming ``name``."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**62))
    check_seed(seed, name)
    return int(seed)


def mean_value(x) -> float:
    """The mean of finite numbers without overflow: max|x|·mean(x/max|x|) (np.mean([1e308, 1e308]) is inf)."""
    a = np.asarray(x, dtype=np.float64)
    top = float(np.max(np.abs(a))) if a.size else 0.0
    if top == 0.0 or not np.isfinite(top):
        return float(np.mean(a)) if a.size else 0.0
    return float(top * np.mean(a / top))
