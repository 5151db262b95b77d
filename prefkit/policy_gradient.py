"""Policy-gradient pieces for KL-regularised RL (chapter 3): the objective, its exact gradient, and the sampled
estimators' losses.

Each prompt x is a one-step episode. A policy π_θ maximises

    J(θ) = mean_x { E_{y∼π_θ}[r(x, y)] − β·KL(π_θ(·|x) ‖ π_ref(·|x)) },

whose maximiser is π* = π_ref·exp(r/β)/Z (:func:`prefkit.optimal_policy`). For a tabular softmax with logits
z_x, ∇_{z_x} J = π ⊙ (A − E_π[A]) with A = r − β·(log π − log π_ref) (:func:`exact_policy_gradient`). The
sampled methods estimate it with the score function E_{y∼π}[∇ log π(y)·(A(y) − b)], where A(y) is the
*per-sample KL-penalised reward* r(x, y) − β·(log π(y|x) − log π_ref(y|x)) (:func:`kl_penalized_reward`;
Ouyang et al. 2022; Stiennon et al. 2020) and b a baseline that does not change the expectation
(:func:`rloo_advantages`).

The torch pieces (:func:`rloo_advantages`, :func:`reinforce_loss`, :func:`ppo_clip_loss`) take any batch shape and
are reused by the tiny-LM chapter; :func:`prefkit.rl.train_rlhf` puts them together on bandits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validate import (
    as_float_array,
    check_beta,
    check_distribution,
    check_real,
    check_same_shape,
    check_tensor,
    finite_result,
)

__all__ = [
    "rloo_advantages",
    "reinforce_loss",
    "ppo_clip_loss",
    "kl_penalized_reward",
    "rlhf_objective",
    "exact_policy_gradient",
]


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE-leave-one-out advantages: A_i = r_i − mean_{j≠i} r_j, over the last axis.

    Parameters
    ----------
    rewards : (B, k) tensor, k ≥ 2 samples per prompt (any leading shape; samples on the last axis)

    Returns
    -------
    (B, k) tensor, equal to k/(k−1)·(r_i − mean_j r_j). Each sample's baseline is the mean reward of the other
    k − 1 samples, so it is independent of the sample and the estimator stays unbiased (Kool et al. 2019;
    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs", Eq. 6). Advantages sum to 0 over the last axis.
    """
    rewards = check_tensor(rewards, "rewards")
    if rewards.ndim < 1 or rewards.shape[-1] < 2:
        raise ValueError(f"rewards must have k >= 2 samples on the last axis, got shape "
                         f"{tuple(rewards.shape)}")
    k = rewards.shape[-1]
    # A_i = k/(k−1)·(r_i − mean r), with the rewards divided by their largest |r| first: the sum of k rewards of
    # 1e308 would overflow (and give −inf or NaN advantages); the scale is a constant, so gradients are unchanged
    s = rewards.detach().abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(rewards.dtype).tiny) \
        if rewards.is_floating_point() else torch.ones(())
    u = rewards / s
    adv = (u - u.mean(dim=-1, keepdim=True)) * (k / (k - 1)) * s
    return finite_result(adv, "the advantages overflow: rewards differ by more than the float range")


def reinforce_loss(logp: torch.Tensor, advantages: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The REINFORCE surrogate loss: −logp·A, with A treated as a constant.

    ``loss_pi = -(logp * adv).mean()`` (Williams 1992; Spinning Up's VPG). Its gradient is minus the
    score-function estimate E[∇ log π(y)·A(y)] of the policy gradient.

    Parameters
    ----------
    logp : tensor (any shape), log π_θ(y|x) of the sampled responses, differentiable
    advantages : tensor of the same shape (detached inside)
    reduction : "mean" (default), "sum" or "none" (per-sample losses)
    """
    check_tensor(logp, "logp", nonempty=True)
    check_tensor(advantages, "advantages", nonempty=True)
    if logp.shape != advantages.shape:
        raise ValueError(f"shape mismatch: logp has shape {tuple(logp.shape)} but advantages has shape "
                         f"{tuple(advantages.shape)}")
    return finite_result(_reduce(-(logp * advantages.detach()), reduction),
                         "the loss overflows: logp times advantages exceeds the float range")


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2,
                  reduction: str = "mean") -> torch.Tensor:
    """PPO's clipped surrogate loss (Schulman et al. 2017, Eq. 7), negated for minimisation.

    ratio = exp(logp − old_logp);  loss = −min(ratio·A, clip(ratio, 1 − ε, 1 + ε)·A).

    Parameters
    ----------
    logp : tensor, log π_θ(y|x) of the sampled responses under the current policy (differentiable)
    old_logp : tensor of the same shape, under the policy that sampled them (detached inside)
    advantages : tensor of the same shape (detached inside)
    clip_eps : float in (0, 1)
    reduction : "mean" (default), "sum" or "none"

    At ratio = 1 (the first epoch on fresh samples) its gradient equals :func:`reinforce_loss`'s (its value is
    −mean A).
    """
    check_tensor(logp, "logp", nonempty=True)
    check_tensor(old_logp, "old_logp", nonempty=True)
    check_tensor(advantages, "advantages", nonempty=True)
    if logp.shape != old_logp.shape or logp.shape != advantages.shape:
        raise ValueError(f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
                         f"advantages {tuple(advantages.shape)}")
    eps = check_real(clip_eps, "clip_eps", lo=0.0, lo_open=True, hi=1.0)
    adv = advantages.detach()
    log_ratio = logp - old_logp.detach()
    # Where A ≥ 0 the min is clip(ratio)·A as soon as ratio > 1 + ε (value constant, gradient 0), so capping the
    # log-ratio there changes nothing but keeps exp from overflowing (ratio = inf meeting A = 0 gave NaN).
    cap = math.log1p(eps) + 1.0
    log_ratio = torch.where(adv >= 0, torch.clamp(log_ratio, max=cap), log_ratio)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * adv
    return finite_result(_reduce(-torch.minimum(unclipped, clipped), reduction),
                         "the loss overflows: logp − old_logp is so large that ratio·advantages exceeds the "
                         "float range (negative advantages)")


def kl_penalized_reward(reward, logp, ref_logp, beta):
    """The per-sample KL-penalised reward r(x, y) − β·(log π(y|x) − log π_ref(y|x)) (Ouyang et al. 2022, Eq.
    2).

    Works on numpy arrays or torch tensors of one shape. Its expectation under π is J(π) of
    :func:`prefkit.kl_regularized_objective`.
    """
    b = check_beta(beta)
    if any(isinstance(t, torch.Tensor) for t in (reward, logp, ref_logp)):
        r, lp, ref = (t if isinstance(t, torch.Tensor) else torch.as_tensor(as_float_array(t, n))
                      for t, n in ((reward, "reward"), (logp, "logp"), (ref_logp, "ref_logp")))
        for t, n in ((r, "reward"), (lp, "logp"), (ref, "ref_logp")):
            check_tensor(t, n)
        _same_shapes((r, "reward"), (lp, "logp"), (ref, "ref_logp"))
        out = r - b * (lp - ref.to(lp))
    else:
        r, lp, ref = as_float_array(reward, "reward"), as_float_array(logp, "logp"), as_float_array(ref_logp,
                                                                                                   "ref_logp")
        _same_shapes((r, "reward"), (lp, "logp"), (ref, "ref_logp"))
        with np.errstate(over="ignore", invalid="ignore"):
            out = r - b * (lp - ref)
    return finite_result(out, "the penalised reward overflows: reward, logp, ref_logp or beta too large")


def _same_shapes(*named):
    """No broadcasting: every array must have the shape of the first."""
    (a0, n0) = named[0]
    for a, n in named[1:]:
        if tuple(a.shape) != tuple(a0.shape):
            raise ValueError(f"shape mismatch: {n0} has shape {tuple(a0.shape)} but {n} has shape {tuple(a.shape)}")


def rlhf_objective(logp: torch.Tensor, ref_logp: torch.Tensor, reward: torch.Tensor, beta) -> torch.Tensor:
    """J per prompt, differentiable: Σ_y π(y|x)·[r(x, y) − β·(log π(y|x) − log π_ref(y|x))], shape
    (n_prompts,).

    Off π_ref's support (ref_logp = −inf, where the policy's logp is −inf too) the term is 0.
    """
    b = check_beta(beta)
    for t, n in ((logp, "logp"), (ref_logp, "ref_logp"), (reward, "reward")):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{n} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise ValueError(f"{n} must be real, got a complex tensor")
    _same_shapes((logp, "logp"), (ref_logp, "ref_logp"), (reward, "reward"))
    check_tensor(reward, "reward", nonempty=True)
    if bool(torch.isnan(logp).any() | torch.isnan(ref_logp).any() | (logp.detach() == float("inf")).any()
            | (ref_logp.detach() == float("inf")).any()):
        raise ValueError("logp and ref_logp must be log-probabilities (-inf allowed; no NaN or +inf)")
    if bool((torch.isinf(logp.detach()) & torch.isfinite(ref_logp.detach())).any()):
        raise ValueError("logp is -inf where ref_logp is finite: the policy must keep pi_ref's support")
    mask = torch.isfinite(ref_logp)
    safe_logp = torch.where(mask, logp, torch.zeros_like(logp))
    safe_ref = torch.where(mask, ref_logp, torch.zeros_like(ref_logp))
    pi = torch.where(mask, safe_logp.exp(), torch.zeros_like(logp))
    return (pi * (reward - b * (safe_logp - safe_ref))).sum(dim=-1)


def exact_policy_gradient(pi, pi_ref, reward, beta) -> np.ndarray:
    """∇_z J for a tabular softmax policy π = softmax(z): π ⊙ (A − E_π[A]), A = r − β·(log π − log π_ref).

    Parameters
    ----------
    pi, pi_ref, reward : (n_prompts, n_responses) arrays (pi on π_ref's support)
    beta : float > 0

    Returns
    -------
    (n_prompts, n_responses) array: the gradient of J(x) with respect to the logits z_x (0 off π's support).
    """
    b = check_beta(beta)
    p = check_distribution(pi, "pi")
    q = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, q, "pi", "pi_ref")
    check_same_shape(p, r, "pi", "reward")
    if np.any((p > 0) & (q == 0)):
        raise ValueError("pi puts mass where pi_ref is 0")
    on = p > 0
    A = np.zeros(p.shape)
    A[on] = r[on] - b * (np.log(p[on]) - np.log(q[on]))
    mean_A = np.sum(p * A, axis=-1, keepdims=True)
    return np.where(on, p * (A - mean_A), 0.0)
