"""CHES, the centered hidden embedding similarity of a preference pair [razin2024] (chapter 6).

Razin, Malladi et al. 2024, "Unintentional Unalignment: Likelihood Displacement in Direct Preference
Optimization", and their ``ches/ches.py``. A high CHES (the rejected response's hidden states look like the
chosen one's) predicts that DPO lowers π(y_w).
"""

from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_int, finite_result, to_numpy

__all__ = ["ches_score", "ches_per_pair", "response_hidden_states"]


def _hidden(h, name):
    a = as_float_array(h, name, ndim=(2, 3))
    if a.shape[-2] == 0:
        raise ValueError(f"{name} has no positions (T = 0): a response needs at least one token")
    if a.shape[-1] == 0:
        raise ValueError(f"{name} has hidden size d = 0")
    return a


def ches_score(hidden_chosen, hidden_rejected, *, length_normalized: bool = False):
    """Centered hidden embedding similarity (CHES) of a pair [razin2024; their ``ches/ches.py``].

        CHES(x, y_w, y_l) = ⟨Σ_k h_w,k, Σ_k h_l,k⟩ − ‖Σ_k h_w,k‖²

    and, length-normalised, ⟨Σ_k h_w,k, Σ_k h_l,k⟩ / (|y_w|·|y_l|) − ‖Σ_k h_w,k‖² / |y_w|², i.e. the same with
    means in place of sums. h_k is the last hidden state at each prefix of the response: the position of
    the last prompt token and each response position except the final one, so there are T = |y| of them, one
    per predicted
    token. A high CHES (responses whose hidden states are alike) predicts that DPO lowers π(y_w).

    Parameters
    ----------
    hidden_chosen : (T_w, d) or (B, T_w, d) array.
    hidden_rejected : (T_l, d) or (B, T_l, d) array; T_l may differ from T_w, d and B may not.
    length_normalized : use means instead of sums.

    Returns
    -------
    float for (T, d) inputs, (B,) array for batched inputs.

    Raises
    ------
    ValueError
        if the hidden sizes d (or batch sizes) differ, an input is empty, or contains NaN/inf.
    """
    hw = _hidden(hidden_chosen, "hidden_chosen")
    hl = _hidden(hidden_rejected, "hidden_rejected")
    if hw.ndim != hl.ndim:
        raise ValueError(f"hidden_chosen has shape {hw.shape} but hidden_rejected has shape {hl.shape}; "
                         "give both as (T, d) or both as (B, T, d)")
    if hw.shape[-1] != hl.shape[-1]:
        raise ValueError(f"hidden size mismatch: hidden_chosen has d = {hw.shape[-1]} but "
                         f"hidden_rejected has d = {hl.shape[-1]}")
    if hw.ndim == 3 and hw.shape[0] != hl.shape[0]:
        raise ValueError(f"batch size mismatch: hidden_chosen has B = {hw.shape[0]}, hidden_rejected "
                         f"B = {hl.shape[0]}")
    if not isinstance(length_normalized, (bool, np.bool_)):
        raise ValueError(f"length_normalized must be True or False, got {length_normalized!r}")
    # rescale by the largest entry s: CHES is quadratic, CHES(h) = s²·CHES(h/s), and h/s cannot overflow
    s = max(float(np.max(np.abs(hw))), float(np.max(np.abs(hl))))
    s = s if s > 0 else 1.0
    agg = np.mean if length_normalized else np.sum
    sw = agg(hw / s, axis=-2)  # (..., d)
    sl = agg(hl / s, axis=-2)  # (..., d)
    with np.errstate(over="ignore", invalid="ignore"):
        out = (np.sum(sw * sl, axis=-1) - np.sum(sw * sw, axis=-1)) * s * s
    finite_result(out, "CHES overflows float64: hidden_chosen/hidden_rejected entries are too large (about "
                       f"{s:.3g}; CHES is of order T²·d·s²)")
    return float(out) if out.ndim == 0 else out


def response_hidden_states(hidden, prompt_length: int) -> np.ndarray:
    """The (T, d) rows of a sequence's hidden states that CHES sums [razin2024, ``ches/ches.py``].

    For a sequence (prompt ‖ response) of length L with hidden states ``hidden`` (L, d), these are the
    states that predict the response tokens: from the last prompt token (index prompt_length − 1) to the
    second-to-last position, so T = L − prompt_length = |y| rows.

    Raises
    ------
    ValueError
        if ``prompt_length`` < 1 or the response is empty (prompt_length ≥ L).
    """
    h = as_float_array(hidden, "hidden", ndim=2)
    p = check_int(prompt_length, "prompt_length", 1)
    if p >= h.shape[0]:
        raise ValueError(f"prompt_length={p} leaves no response positions in hidden of length {h.shape[0]}")
    return h[p - 1:-1]


def ches_per_pair(hidden_chosen, hidden_rejected, *, length_normalized: bool = False) -> np.ndarray:
    """:func:`ches_score` of each pair of two equally long lists of (T_i, d) arrays; returns (m,)."""
    hidden_chosen, hidden_rejected = _pairs_list(hidden_chosen, "hidden_chosen"), _pairs_list(hidden_rejected,
                                                                                               "hidden_rejected")
    if len(hidden_chosen) != len(hidden_rejected):
        raise ValueError(f"hidden_chosen has {len(hidden_chosen)} pairs but hidden_rejected has "
                         f"{len(hidden_rejected)}")
    return np.array([ches_score(a, b, length_normalized=length_normalized)
                     for a, b in zip(hidden_chosen, hidden_rejected, strict=True)], dtype=np.float64)


def _pairs_list(x, name):
    """A list of per-pair arrays (a list, a tuple, or an array whose first axis runs over the pairs)."""
    x = to_numpy(x)
    if isinstance(x, np.ndarray) and x.ndim >= 1:
        return list(x)
    if not isinstance(x, (list, tuple)):
        raise ValueError(f"{name} must be a list of (T, d) arrays, one per pair, got {type(x).__name__}")
    return list(x)
