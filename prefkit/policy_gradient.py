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

import numpy as np
import torch

from ._validate import (
    as_float_array,
    check_beta,
    check_distribution,
    check_real,
    check_same_shape,
    check_tensor,
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
    baseline = (rewards.sum(dim=-1, keepdim=True) - rewards) / (k - 1)  # (B, k)
    return rewards - baseline


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
    check_tensor(logp, "logp")
    check_tensor(advantages, "advantages")
    if logp.shape != advantages.shape:
        raise ValueError(f"shape mismatch: logp has shape {tuple(logp.shape)} but advantages has shape "
                         f"{tuple(advantages.shape)}")
    return _reduce(-(logp * advantages.detach()), reduction)


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
    check_tensor(logp, "logp")
    check_tensor(old_logp, "old_logp")
    check_tensor(advantages, "advantages")
    if logp.shape != old_logp.shape or logp.shape != advantages.shape:
        raise ValueError(f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
                         f"advantages {tuple(advantages.shape)}")
    eps = check_real(clip_eps, "clip_eps", lo=0.0, lo_open=True, hi=1.0)
    adv = advantages.detach()
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * adv
    return _reduce(-torch.minimum(unclipped, clipped), reduction)


def kl_penalized_reward(reward, logp, ref_logp, beta):
    """The per-sample KL-penalised reward r(x, y) − β·(log π(y|x) − log π_ref(y|x)) (Ouyang et al. 2022, Eq.
    2).

    Works on numpy arrays or torch tensors of one shape. Its expectation under π is J(π) of
    :func:`prefkit.kl_regularized_objective`.
    """
    b = check_beta(beta)
    return reward - b * (logp - ref_logp)


def rlhf_objective(logp: torch.Tensor, ref_logp: torch.Tensor, reward: torch.Tensor, beta) -> torch.Tensor:
    """J per prompt, differentiable: Σ_y π(y|x)·[r(x, y) − β·(log π(y|x) − log π_ref(y|x))], shape
    (n_prompts,).

    Off π_ref's support (ref_logp = −inf, where the policy's logp is −inf too) the term is 0.
    """
    b = check_beta(beta)
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
