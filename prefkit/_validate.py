"""Input checks shared by every public function. Each raises ``ValueError`` naming the offending argument, so bad
input never turns into a NaN or a silently wrong answer."""

from __future__ import annotations

import numpy as np

__all__ = []  # private helpers


def check_beta(beta, name: str = "beta") -> float:
    """β must be a finite number > 0 (a bool is rejected, not read as 1)."""
    if isinstance(beta, (bool, np.bool_)):
        raise ValueError(f"{name} must be a positive number, got {beta!r}")
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {beta!r}") from None
    if not np.isfinite(b) or b <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {beta!r}")
    return b


def as_float_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None, finite: bool = True) -> np.ndarray:
    """``x`` as a float64 array; checks the number of dimensions and, if ``finite``, rejects NaN and inf."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if a.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {a.shape}")
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


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
    """``x`` as an int64 array of indices in ``[0, n)``; with ``ncols``, of shape (m, ncols)."""
    a = np.asarray(x)
    if a.size == 0:
        a = a.reshape(0, ncols) if ncols else a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must contain integer indices")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"{name} must contain integer indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if ncols is not None and (a.ndim != 2 or a.shape[1] != ncols):
        raise ValueError(f"{name} must have shape (m, {ncols}), got {a.shape}")
    if np.any(a < 0):
        raise ValueError(f"{name} contains negative indices")
    if n is not None and np.any(a >= n):
        raise ValueError(f"{name} contains index {int(a.max())}, out of range for {n} items")
    return a


def check_weights(weights, m: int, name: str = "weights") -> np.ndarray:
    """Optional non-negative finite weights of shape (m,); None means all ones."""
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
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo is not None and (x < lo or (lo_open and x == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and x >= hi:
        raise ValueError(f"{name} must be < {hi}, got {v!r}")
    return x


def check_int(v, name: str, lo: int) -> int:
    """An integer (not a bool, not a float) ≥ ``lo``; ValueError naming ``name``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def check_tensor(t, name: str):
    """``t`` must be a torch tensor with finite entries; ValueError naming ``name``. Returns ``t``.

    torch is imported here, not at module level, so the numpy-only modules that use this file stay torch-free.
    """
    import torch

    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not torch.all(torch.isfinite(t)):
        raise ValueError(f"{name} contains NaN or inf")
    return t
