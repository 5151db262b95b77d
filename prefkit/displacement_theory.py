"""Likelihood displacement, the gradient theory: why a DPO step can lower π(y_w) (chapter 6).

Razin, Malladi et al. 2024, "Unintentional Unalignment: Likelihood Displacement in Direct Preference
Optimization" [razin2024]; Ren & Sutherland 2024, "Learning Dynamics of LLM Finetuning" [ren2024].

- :func:`logratio_gradient`: ∇_z[log π_w − log π_l] = e_w − e_l for a tabular softmax (the normaliser cancels),
  so with one pair per prompt π(y_w) can only rise;
- :func:`logp_chosen_velocity`: the first-order rate of log π(y_w) under a gradient step for a log-linear softmax,
  ⟨φ_w − φ̄, φ_w − φ_l⟩ = −CHES − ⟨φ̄, φ_w − φ_l⟩, negative when φ_w and φ_l are alike;
- :func:`squeeze_first_order`: the squeezing effect of a negative gradient on y_l [ren2024].
"""

from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_distribution, check_index, finite_result

__all__ = ["logratio_gradient", "logp_chosen_velocity", "squeeze_first_order"]

def logratio_gradient(logits, chosen: int, rejected: int) -> np.ndarray:
    """∇_z [log softmax(z)_w − log softmax(z)_l], by torch autograd.

    The normaliser log Z(z) appears in both terms and cancels, so the exact answer is e_w − e_l [razin2024]:
    a single pair per prompt moves only its own two logits, and π(y_w) can only rise.

    Parameters
    ----------
    logits : (n_responses,) array of finite logits z.
    chosen, rejected : indices w ≠ l.

    Returns
    -------
    (n_responses,) float64 array.
    """
    import torch

    z = as_float_array(logits, "logits", ndim=1)
    n = z.shape[0]
    w, l = _pair_indices(chosen, rejected, n)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(zt, dim=-1)
    (logp[w] - logp[l]).backward()
    return zt.grad.numpy().copy()


def logp_chosen_velocity(features, logits, chosen: int, rejected: int) -> float:
    """First-order rate of log π(y_w) under a gradient step on log π_w − log π_l, for a log-linear softmax.

    With π = softmax(z), z_y = z0_y + ⟨φ_y, θ⟩, gradient ascent on log π_w − log π_l moves θ along φ_w − φ_l
    (the normaliser cancels), and log π_w changes at the rate

        ⟨∇_θ log π_w, ∇_θ(log π_w − log π_l)⟩ = ⟨φ_w − φ̄, φ_w − φ_l⟩ = −CHES − ⟨φ̄, φ_w − φ_l⟩,

    with φ̄ = Σ_y π_y φ_y and CHES = ⟨φ_w, φ_l⟩ − ‖φ_w‖² the score of :func:`ches_score` with φ the summed
    hidden states. A plain gradient-descent step (``fit_dpo(..., optimizer="sgd")``) multiplies this by
    β·σ(−margin)·lr > 0, so to first order the sign is the sign of the change [razin2024, single-token
    analysis, with φ = token unembeddings]. Adam (fit_dpo's default) rescales each coordinate of the step,
    which breaks this link; the chapter uses plain SGD wherever it claims it.

    Parameters
    ----------
    features : (n_responses, d) array φ.
    logits : (n_responses,) current logits z.

    Returns
    -------
    float: the rate (negative means π(y_w) falls).
    """
    phi = as_float_array(features, "features", ndim=2)
    z = as_float_array(logits, "logits", ndim=1)
    if phi.shape[0] != z.shape[0]:
        raise ValueError(f"shape mismatch: features has {phi.shape[0]} responses but logits has {z.shape[0]}")
    w, l = _pair_indices(chosen, rejected, z.shape[0])
    pi = np.exp(z - np.logaddexp.reduce(z))
    s = float(np.max(np.abs(phi))) if phi.size else 1.0
    s = s if s > 0 else 1.0
    u = phi / s  # the rate is quadratic in φ: rate(φ) = s²·rate(φ/s), and φ/s cannot overflow
    u_bar = pi @ u  # (d,)
    with np.errstate(over="ignore", invalid="ignore"):
        rate = float((u[w] - u_bar) @ (u[w] - u[l])) * s * s
    return finite_result(rate, "the rate overflows float64: features too large")


def _pair_indices(chosen, rejected, n):
    w, l = check_index(chosen, "chosen", n), check_index(rejected, "rejected", n)
    if w == l:
        raise ValueError("chosen and rejected must differ")
    return w, l


def squeeze_first_order(pi, rejected: int) -> np.ndarray:
    """First-order change of log π under one unit gradient step that lowers log π(y_l) on tabular logits.

    Δz = −∇_z log π_l = π − e_l, so Δ log π_y = Δz_y − ⟨π, Δz⟩ = π_y − [y = l] − (‖π‖² − π_l)
    [ren2024, the squeezing effect]. A response gains iff π_y > ‖π‖² − π_l: when y_l is unlikely and
    π is peaky, ‖π‖² ≈ max π², and only the argmax (π_max ≥ ‖π‖²) gains.

    Parameters
    ----------
    pi : (n_responses,) distribution.
    rejected : l.

    Returns
    -------
    (n_responses,) array: d log π / d(step size).
    """
    p = check_distribution(pi, "pi")
    if p.ndim != 1:
        raise ValueError(f"pi must have shape (n_responses,), got {p.shape}")
    n = p.shape[0]
    l = check_index(rejected, "rejected", n)
    e = np.zeros(n)
    e[l] = 1.0
    return p - e - (p @ p - p[l])
