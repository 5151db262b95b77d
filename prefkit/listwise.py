"""DPO on rankings: the Plackett-Luce (listwise) loss on the implied rewards β·log(π/π_ref).

Rafailov et al. (2023), "Direct Preference Optimization", Appendix A.3: with K responses ranked best first,
y_1 ≻ … ≻ y_K, and the implied reward s(y) = β·log(π_θ(y|x)/π_ref(y|x)) (the β·log Z(x) term cancels in every
ratio), maximum likelihood under Plackett-Luce is the loss

    L(θ) = −Σ_{k=1}^{K−1} [ s(y_k) − log Σ_{j≥k} exp(s(y_j)) ].

At K = 2 it is DPO's −log σ(s(y_w) − s(y_l)) (:func:`prefkit.losses.preference_loss`). With exact PL data from
r* (every ordered K-tuple weighted by its PL probability), the tabular minimiser is π* of r* at the same β.

Rankings for a tabular policy are an (m, K + 1) int array of rows (prompt, y_1, …, y_K), best first.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validate import (
    as_float_array,
    as_index_array,
    check_beta,
    check_distribution,
    check_int,
    check_real,
    check_weights,
)
from .dpo import DPOResult
from .losses import _as_tensor
from .plackett_luce import all_rankings, pl_log_probability
from .policies import make_policy

__all__ = ["listwise_loss", "ranking_probabilities", "fit_listwise_dpo"]


def listwise_loss(logps, ref_logps, beta) -> torch.Tensor:
    """Per-ranking listwise DPO losses (Rafailov et al. 2023, App. A.3), differentiable in ``logps``.

    loss_b = −Σ_{k<K} [s_{b,k} − logsumexp_{j≥k} s_{b,j}],   s = β·(logps − ref_logps).

    Parameters
    ----------
    logps : (B, K) tensor, log π_θ(y_k|x) of the K responses of each ranking, best first (K ≥ 2).
    ref_logps : (B, K) tensor, the same under π_ref.
    beta : float > 0.

    Returns
    -------
    (B,) tensor. At K = 2 it equals ``preference_loss(logps[:, 0], logps[:, 1], ref_logps[:, 0],
    ref_logps[:, 1], beta)`` (DPO's sigmoid loss).
    """
    b = check_beta(beta)
    lp = _as_tensor(logps, "logps")
    ref = _as_tensor(ref_logps, "ref_logps")
    if lp.ndim != 2 or lp.shape[1] < 2:
        raise ValueError(f"logps must have shape (B, K) with K >= 2, got {tuple(lp.shape)}")
    if ref.shape != lp.shape:
        raise ValueError(f"shape mismatch: ref_logps has shape {tuple(ref.shape)} but logps {tuple(lp.shape)}")
    s = b * (lp - ref.to(lp))  # (B, K) implied rewards
    suffix = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)  # (B, K): log Σ_{j≥k} e^{s_j}
    return -(s[:, :-1] - suffix[:, :-1]).sum(-1)


def ranking_probabilities(pi_ref, reward, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact Plackett-Luce ranking data on r*: every prompt x, every ordered k-tuple of distinct responses on
    π_ref's support, with weight (1/n_prompts)·(1/#k-subsets)·P_PL(y_1 ≻ … ≻ y_k | r*(x, ·)).

    The k-subset is uniform, then ranked by Plackett-Luce on r* restricted to it. Weights sum to 1.

    Returns
    -------
    (rankings (m, k + 1) int64 rows (prompt, y_1, …, y_k), weights (m,)).
    """
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    if p.ndim != 2 or r.shape != p.shape:
        raise ValueError(f"pi_ref and reward must have the same shape (n_prompts, n_responses), got {p.shape} "
                         f"and {r.shape}")
    k = check_int(k, "k", 2)
    rows, weights = [], []
    for x in range(p.shape[0]):
        on = np.flatnonzero(p[x] > 0)
        if len(on) < k:
            raise ValueError(f"k={k} is larger than the support of pi_ref for prompt {x} ({len(on)} responses)")
        tuples = on[all_rankings(len(on), k)]  # (n!/(n−k)!, k)
        prob = np.exp(pl_log_probability(r[x], tuples))  # Σ over one subset's orderings = 1
        n_subsets = len(tuples) / np.prod(np.arange(1, k + 1))
        rows.append(np.column_stack([np.full(len(tuples), x), tuples]))
        weights.append(prob / n_subsets / p.shape[0])
    return np.concatenate(rows).astype(np.int64), np.concatenate(weights)


def fit_listwise_dpo(pi_ref, rankings, beta, *, weights=None, steps: int = 500, tol: float = 1e-12) -> DPOResult:
    """Fit a tabular policy by the listwise DPO loss, full batch, with L-BFGS (strong-Wolfe line search).

    Minimises Σ_i w_i·listwise_loss_i / Σ_i w_i over free logits z[x, y] (initialised at log π_ref).

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses) array, each row a distribution.
    rankings : (m, K + 1) int array of rows (prompt, y_1, …, y_K), best first.
    beta : float > 0.
    weights : (m,) non-negative, optional (exact data: :func:`ranking_probabilities`).
    steps : maximum L-BFGS iterations; tol : stop when the max-abs gradient is below tol.

    Returns
    -------
    :class:`prefkit.dpo.DPOResult` with ``loss_type="plackett_luce"``; ``history`` holds the final ``loss`` and
    ``grad_norm``.
    """
    b = check_beta(beta)
    p = check_distribution(pi_ref, "pi_ref")
    if p.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p.shape}")
    R = as_index_array(rankings, "rankings")
    if R.ndim != 2 or R.shape[1] < 3:
        raise ValueError(f"rankings must have shape (m, K + 1) with K >= 2, got {R.shape}")
    if np.any(R[:, 0] >= p.shape[0]) or np.any(R[:, 1:] >= p.shape[1]):
        raise ValueError("rankings has a prompt or response index out of range for pi_ref")
    s = np.sort(R[:, 1:], axis=1)
    if np.any(s[:, 1:] == s[:, :-1]):
        raise ValueError("rankings: a row lists a response twice")
    if np.any(p[R[:, [0]], R[:, 1:]] == 0):
        raise ValueError("rankings uses a response with pi_ref = 0")
    w = check_weights(weights, len(R))
    if w.sum() <= 0:
        raise ValueError("weights must not all be zero")
    steps = check_int(steps, "steps", 1)
    tol = check_real(tol, "tol", lo=0.0)
    pol = make_policy(p)
    x = torch.as_tensor(R[:, :1])
    y = torch.as_tensor(R[:, 1:])
    ref = torch.as_tensor(np.log(p[R[:, [0]], R[:, 1:]]))  # (m, K)
    w_t = torch.as_tensor(w / w.sum())
    opt = torch.optim.LBFGS(pol.parameters(), lr=1.0, max_iter=steps, tolerance_grad=tol, tolerance_change=0.0,
                            history_size=50, line_search_fn="strong_wolfe")

    def objective():
        logp = pol.log_probs()  # (n_prompts, n_responses)
        return (w_t * listwise_loss(logp[x, y], ref, b)).sum()

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    loss = closure()
    gnorm = float(pol.logits.grad.abs().max())
    history = [{"step": opt.state[opt._params[0]].get("n_iter", 0), "loss": float(loss.detach()), "grad_norm": gnorm}]
    return DPOResult(model=pol, history=history, beta=b, loss_type="plackett_luce", converged=gnorm <= max(tol, 1e-8))
