"""GRPO and its relatives on bandits (chapter 10): group-relative advantages, the KL estimators k1/k2/k3, TRL's
GRPO loss, a sampled training loop, and the *exact* expected update with its fixed points.

GRPO (Shao et al. 2024, "DeepSeekMath", §4.1) samples a group of G responses y_1..y_G ~ π_θ(·|x) per prompt,
scores them, and uses the group-relative advantage

    A_i = (r_i − mean_j r_j) / (std_j r_j + ε)          (TRL ``scale_rewards="group"``, ε = 1e-4, std with ddof 1)
    A_i =  r_i − mean_j r_j                              (``scale_rewards="none"``: Dr. GRPO, Liu et al. 2025)

in the PPO-clip surrogate, with a KL penalty β·k3 added to the *loss*, where
k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1 (Schulman 2020, "Approximating KL divergence").

On a bandit every response is one action (one token), so TRL's loss aggregations ``"grpo"``, ``"bnpo"`` and
``"dapo"`` are all the mean over the B·G samples and ``"dr_grpo"`` divides the same sum by B·G·max_completion_length
with max_completion_length = 1: the length normalisation that Dr. GRPO removes does not exist here, and only the
division by the standard deviation separates the two variants.

What the exact expected update shows (:func:`expected_grpo_direction`, by enumerating every group):

- The leave-in mean: E[(1/G) Σ_i (r_i − mean_j r_j) ∇log π(y_i)] = (G−1)/G · ∇E_π[r], exactly (the sample's own
  reward in its baseline costs a factor (G−1)/G; G/(G−1)·A is RLOO's leave-one-out advantage, which is unbiased).
- k3 *as a value* is unbiased for KL(π‖π_ref) under y ~ π, but k3 *as a loss*, differentiated through log π at
  samples from π, has expected gradient Σ_y (π(y) − π_ref(y))·∇log π(y) = ∇KL(π_ref‖π): the gradient of the
  *forward* KL, not of the KL(π‖π_ref) in the objective (Tang & Munos 2025, "On a few pitfalls in KL divergence
  gradient estimation for RL"; Liu et al. 2025, "Rethinking KL regularization in RLHF"). k2 = ½(log π/π_ref)² as a
  loss has expected gradient ∇KL(π‖π_ref) (the same as k1 in the reward); k1 as a loss has expected gradient 0.
- Hence Dr. GRPO with TRL's k3 loss is stationary at the *forward-KL* optimum argmax_π E_π[r] − β'·KL(π_ref‖π),
  π = β'·π_ref/(λ − r), with β' = β·G/(G−1) (:func:`forward_kl_optimal_policy`), not at π* of β; with the std
  division the reward part is divided by a per-prompt reward scale, so the stationary point is the forward-KL
  optimum of a per-prompt β_eff(x) ≈ β·std_π(r|x) (exactly so for two responses; :func:`effective_beta`).
- With the KL as a detached penalty in the reward (R = r − β·k1, as in PPO/RLOO, chapter 3), π* is a stationary
  point of every variant: at π* the penalised reward β·log Z(x) is the same for every response, so every group's
  advantages vanish.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq, root
from scipy.special import gammaln

from ._validate import (
    as_float_array,
    check_beta,
    check_distribution,
    check_int,
    check_real,
    check_same_shape,
    check_tensor,
    finite_result,
    mean_value,
)
from .closed_form import kl_divergence, kl_divergence_logspace, optimal_log_policy
from .policies import TrainedPolicy, make_policy

__all__ = [
    "SCALE_REWARDS",
    "KL_ESTIMATORS",
    "KL_PLACEMENTS",
    "group_advantages",
    "kl_estimate",
    "grpo_loss",
    "GRPOResult",
    "train_grpo",
    "kl_estimator_moments",
    "kl_estimator_expected_gradient",
    "expected_grpo_direction",
    "grpo_fixed_point",
    "forward_kl_optimal_policy",
    "effective_beta",
]

SCALE_REWARDS = ("group", "batch", "none")
KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PLACEMENTS = ("loss", "reward")
TRL_EPS = 1e-4  # TRL adds 1e-4 to the group std before dividing
REWARD_MAX = 1e100  # train_grpo's range for |reward|: group stds, squares and means stay within float64


def _check_choice(v, name, choices):
    if v not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {v!r}")
    return v


# ------------------------------------------------------------------------------------------------------------------
# the pieces of the loss (torch, any batch shape; samples of a group on the last axis)
# ------------------------------------------------------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, scale_rewards: str = "group", eps: float = TRL_EPS) -> torch.Tensor:
    """GRPO's group-relative advantages over the last axis (a group of G ≥ 2 samples of one prompt).

    A_i = r_i − mean_j r_j, divided by (std + ε) where std is the group's (``"group"``), the whole batch's
    (``"batch"``) or not at all (``"none"``, Dr. GRPO). The std has Bessel's correction (ddof = 1, torch's default,
    as in TRL). Shao et al. 2024, Eq. 3 (outcome supervision); Liu et al. 2025, "Understanding R1-Zero-like
    training: a critical perspective", §3.2 (Dr. GRPO).

    Parameters
    ----------
    rewards : (..., G) tensor
    scale_rewards : "group" (TRL's default), "batch" or "none"
    eps : float ≥ 0 added to the std (TRL: 1e-4)

    Returns
    -------
    (..., G) tensor; each group's advantages sum to 0 (the mean includes the sample itself).
    """
    check_tensor(rewards, "rewards")
    _check_choice(scale_rewards, "scale_rewards", SCALE_REWARDS)
    eps = check_real(eps, "eps", lo=0.0)
    if rewards.ndim < 1 or rewards.shape[-1] < 2:
        raise ValueError(f"rewards must hold G >= 2 samples per group on the last axis, got shape "
                         f"{tuple(rewards.shape)}")
    top = float(rewards.detach().abs().max()) if rewards.numel() else 0.0
    if 0.0 < top and not 1e-150 < top < 1e150:  # the std's squares would over/underflow: r/c, c a power of 2
        c = 2.0 ** (math.frexp(top)[1] - 1)  # (exact), then × c
        if scale_rewards == "none":
            adv = _advantages(rewards / c, scale_rewards, eps) * c
        else:  # (r − mean)/(std + ε) = (r/c − mean)/(std(r/c) + ε/c)
            adv = _advantages(rewards / c, scale_rewards, eps / c)
    else:
        adv = _advantages(rewards, scale_rewards, eps)
    return finite_result(adv, "the advantages of these rewards overflow float64 (differences beyond 1.8e308): "
                              "rescale rewards")


def _advantages(rewards, scale_rewards, eps):
    adv = rewards - rewards.mean(dim=-1, keepdim=True)  # (..., G)
    if scale_rewards == "none":
        return adv
    den = (rewards.std(dim=-1, keepdim=True) if scale_rewards == "group" else rewards.std()) + eps
    # with eps = 0 a group of equal rewards has std 0: no signal, A = 0 (not 0/0)
    return adv / torch.where(den > 0, den, torch.full_like(den, math.inf))


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Schulman's single-sample estimators of KL(π‖π_ref) at y ~ π, elementwise (Schulman 2020).

    With log ρ = log π_ref(y) − log π(y):  k1 = −log ρ;  k2 = ½(log ρ)²;  k3 = ρ − 1 − log ρ (TRL's ``per_token_kl``).
    k1 and k3 are unbiased for KL(π‖π_ref) under y ~ π; k3 ≥ 0; k2 is biased.
    """
    check_tensor(logp, "logp")
    check_tensor(ref_logp, "ref_logp")
    _check_choice(estimator, "estimator", KL_ESTIMATORS)
    if logp.shape != ref_logp.shape:
        raise ValueError(f"shape mismatch: logp {tuple(logp.shape)}, ref_logp {tuple(ref_logp.shape)}")
    return finite_result(_kl_estimate(logp, ref_logp, estimator),
                         f"the {estimator} estimate overflows float64 for these logp and ref_logp (ref_logp − logp "
                         f"too large: k3 = exp(ref_logp − logp) overflows beyond 709)")


def _kl_estimate(logp, ref_logp, estimator):
    log_rho = ref_logp - logp
    if estimator == "k1":
        return -log_rho
    if estimator == "k2":
        return 0.5 * log_rho**2
    return torch.expm1(log_rho) - log_rho  # ρ − 1 − log ρ; expm1 keeps it ≥ 0 where ρ rounds to 1 (log ρ ~ 1e-16)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              beta: float, *, epsilon_low: float = 0.2, epsilon_high: float | None = None,
              kl_estimator: str = "k3") -> tuple[torch.Tensor, dict]:
    """TRL's GRPO loss on one-action responses: mean over samples of −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·k.

    ρ = exp(logp − old_logp) (1 on fresh samples, with gradient ∇log π); k = :func:`kl_estimate` of ``logp`` against
    ``ref_logp``, *differentiated* (TRL's KL-in-the-loss). β = 0 drops the KL term (TRL skips the reference then).

    Parameters
    ----------
    logp : tensor (any shape, e.g. (B, G)), log π_θ of the sampled responses, differentiable
    old_logp, ref_logp, advantages : tensors of the same shape (old_logp and advantages are detached inside)
    beta : float ≥ 0
    epsilon_low, epsilon_high : clipping (TRL's ``epsilon``, ``epsilon_high`` defaults to ``epsilon_low``)
    kl_estimator : "k3" (TRL), "k2" or "k1"

    Returns
    -------
    (loss, metrics): metrics with TRL's names ``kl`` (mean k over the samples) and ``clip_ratio`` (the fraction of
    samples whose ratio is clipped in the direction of its advantage).
    """
    for name, t in (("logp", logp), ("old_logp", old_logp), ("ref_logp", ref_logp), ("advantages", advantages)):
        check_tensor(t, name)
        if t.shape != logp.shape:
            raise ValueError(f"shape mismatch: {name} has shape {tuple(t.shape)}, logp {tuple(logp.shape)}")
    b = check_real(beta, "beta", lo=0.0)
    lo = check_real(epsilon_low, "epsilon_low", lo=0.0, hi=1.0)
    hi = lo if epsilon_high is None else check_real(epsilon_high, "epsilon_high", lo=0.0)
    adv = advantages.detach()
    ratio = torch.exp(logp - old_logp.detach())
    per_sample = -torch.min(ratio * adv, torch.clamp(ratio, 1 - lo, 1 + hi) * adv)
    k = kl_estimate(logp, ref_logp, kl_estimator)
    if b > 0:
        per_sample = per_sample + b * k
    clipped = ((ratio < 1 - lo) & (adv < 0)) | ((ratio > 1 + hi) & (adv > 0))
    kl = float(k.detach().mean())
    if not math.isfinite(kl):  # the mean of huge finite estimates, without overflow
        kl = mean_value(k.detach().cpu().double().numpy())
    metrics = {"kl": kl, "clip_ratio": float(clipped.double().mean())}
    loss = per_sample.mean()
    if not bool(torch.isfinite(loss.detach())) and bool(torch.isfinite(per_sample.detach()).all()):
        top = per_sample.detach().abs().max()  # the mean of huge finite terms: max|x|·mean(x/max|x|)
        loss = top * (per_sample / top).mean()
    msg = ("the GRPO loss overflows float64 for these inputs: the ratio exp(logp − old_logp) times advantages, "
           "or beta times the KL estimate of logp against ref_logp, is beyond 1.8e308")
    return finite_result(loss, msg), metrics


# ------------------------------------------------------------------------------------------------------------------
# the sampled training loop
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class GRPOResult(TrainedPolicy):
    """The output of :func:`train_grpo`.

    ``history``: per-step dicts with TRL's metric names ``reward`` (mean sampled reward r), ``reward_std`` (mean
    over prompts of the group std of the rewards that were normalised), ``frac_reward_zero_std`` (fraction of groups
    whose rewards are all equal, which give no gradient), ``kl`` (mean sampled KL estimate), ``clip_ratio``; and the
    exact ``kl/to_ref`` = mean_x KL(π_θ‖π_ref), ``kl/to_optimal`` = mean_x KL(π_θ‖π*) (π* of the stated β),
    ``reward/expected`` = mean_x E_π[r], ``time/wall``, and ``policy`` (the (n_prompts, n_responses) array).
    Entry 0 is the initial policy (no sampled metrics).
    """

    pi_star: np.ndarray | None = None
    beta: float = 0.0
    config: dict | None = None


def train_grpo(pi_ref, reward, beta, *, group_size: int = 8, steps: int = 300, lr: float = 0.05,
               scale_rewards: str = "group", kl_estimator: str = "k3", kl_in: str = "loss", eps: float = TRL_EPS,
               epsilon: float = 0.2, num_iterations: int = 1, seed: int = 0, optimizer: str = "adam",
               lr_decay: float = 0.0, features=None, record_every: int = 1, policy=None) -> GRPOResult:
    """GRPO on a contextual bandit: each step samples ``group_size`` responses per prompt from π_θ, forms
    :func:`group_advantages` and takes ``num_iterations`` optimiser steps on :func:`grpo_loss`.

    Parameters
    ----------
    pi_ref, reward : (n_prompts, n_responses) arrays
    beta : float ≥ 0, the KL coefficient
    group_size : G ≥ 2 (TRL's ``num_generations``)
    scale_rewards : "group" (GRPO), "batch", "none" (Dr. GRPO)
    kl_estimator, kl_in : the KL estimator and where it goes: ``"loss"`` (TRL: β·k added to the loss and
        differentiated) or ``"reward"`` (the detached penalty r − β·k before the advantages, as PPO/RLOO do)
    eps : added to the std (TRL: 1e-4); epsilon : PPO clipping; num_iterations : optimiser steps per batch (TRL's
        μ; ratio and clipping only act from the second)
    lr, optimizer ("adam" or "sgd"), lr_decay : learning rate lr/(1 + lr_decay·t) at step t
    features : (n_prompts, n_responses, d) for a log-linear policy (default tabular); policy : continue training it
    seed : seeds the ``torch.Generator`` that draws the groups
    """
    b = check_real(beta, "beta", lo=0.0)
    p_ref = check_distribution(pi_ref, "pi_ref")
    if p_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p_ref.shape}")
    r = as_float_array(reward, "reward")
    check_same_shape(p_ref, r, "pi_ref", "reward")
    G = check_int(group_size, "group_size", 2)
    for name, v, lo_ in (("steps", steps, 0), ("num_iterations", num_iterations, 1), ("record_every", record_every, 1),
                         ("seed", seed, 0)):
        check_int(v, name, lo_)
    _check_choice(scale_rewards, "scale_rewards", SCALE_REWARDS)
    _check_choice(kl_estimator, "kl_estimator", KL_ESTIMATORS)
    _check_choice(kl_in, "kl_in", KL_PLACEMENTS)
    _check_choice(optimizer, "optimizer", ("adam", "sgd"))
    lr = check_real(lr, "lr", lo=0.0, lo_open=True)
    lr_decay = check_real(lr_decay, "lr_decay", lo=0.0)
    eps = check_real(eps, "eps", lo=0.0)
    epsilon = check_real(epsilon, "epsilon", lo=0.0, hi=1.0)
    if features is not None and policy is not None:
        raise ValueError("give features or policy, not both")
    if np.max(np.abs(r)) > REWARD_MAX:
        raise ValueError(f"reward must lie within ±{REWARD_MAX:g} (the sampled group statistics square it); "
                         f"rescale reward and beta together, got max |reward| = {np.max(np.abs(r)):.3g}")

    log_pi_star = optimal_log_policy(p_ref, r, b) if b > 0 else None
    pol = make_policy(p_ref, features) if policy is None else policy
    with np.errstate(divide="ignore"):
        ref_logp = torch.as_tensor(np.log(p_ref))
    r_t = torch.as_tensor(r)
    params = [q for q in pol.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + lr_decay * t))
    gen = torch.Generator().manual_seed(int(seed))
    rows = torch.arange(p_ref.shape[0])[:, None]
    history: list[dict] = []
    t0 = time.perf_counter()

    def record(step: int, sampled: dict) -> None:
        with torch.no_grad():
            lp = pol.log_probs().numpy()
        pi_now = np.exp(lp)
        h = {"step": step, **sampled,
             "kl/to_ref": float(np.mean(kl_divergence(pi_now, p_ref))),
             "reward/expected": float(np.mean(np.sum(pi_now * r, axis=-1))),
             "time/wall": time.perf_counter() - t0, "policy": pi_now}
        if log_pi_star is not None:
            h["kl/to_optimal"] = float(np.mean(kl_divergence_logspace(lp, log_pi_star)))
        history.append(h)

    record(0, {})
    for t in range(1, steps + 1):
        try:
            m, loss, std, y = _grpo_step(pol, opt, rows, r_t, ref_logp, G, gen, b, kl_in, kl_estimator, scale_rewards,
                                         eps, epsilon, num_iterations)
        except ValueError as exc:
            raise ValueError(f"train_grpo diverged at step {t}: {exc}; lower lr, or rescale reward and beta") from None
        sched.step()
        if t % record_every == 0 or t == steps:
            record(t, {"reward": float(r_t[rows, y].mean()), "reward_std": float(std.mean()),
                       "frac_reward_zero_std": float(torch.isclose(std, torch.zeros_like(std)).double().mean()),
                       "kl": m["kl"], "clip_ratio": m["clip_ratio"], "loss": float(loss.detach())})
    config = {"group_size": G, "scale_rewards": scale_rewards, "kl_estimator": kl_estimator, "kl_in": kl_in,
              "eps": eps, "lr": lr, "steps": steps}
    return GRPOResult(model=pol, history=history, pi_star=None if log_pi_star is None else np.exp(log_pi_star),
                      beta=b, config=config)


def _grpo_step(pol, opt, rows, r_t, ref_logp, G, gen, b, kl_in, kl_estimator, scale_rewards, eps, epsilon,
               num_iterations):
    """One step of :func:`train_grpo`: sample the groups, form the advantages, take ``num_iterations`` optimiser
    steps; ValueError when the loss or the logits stop being finite."""
    with torch.no_grad():
        logp_all = pol.log_probs()
        y = torch.multinomial(logp_all.exp(), G, replacement=True, generator=gen)  # (n_prompts, G)
        old_logp = logp_all[rows, y]  # (n_prompts, G)
        R = r_t[rows, y]
        if kl_in == "reward" and b > 0:
            R = R - b * kl_estimate(old_logp, ref_logp[rows, y], kl_estimator)
        adv = group_advantages(R, scale_rewards, eps)  # (n_prompts, G)
        std = R.std(dim=-1)
    for _ in range(num_iterations):
        loss, m = grpo_loss(pol.log_probs()[rows, y], old_logp, ref_logp[rows, y], adv,
                            b if kl_in == "loss" else 0.0, epsilon_low=epsilon, kl_estimator=kl_estimator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for q in pol.parameters():
        finite_result(q.detach(), "the policy's parameters are no longer finite")
    return m, loss, std, y


# ------------------------------------------------------------------------------------------------------------------
# exact expectations over the discrete support (numpy, float64)
# ------------------------------------------------------------------------------------------------------------------
_NO_REWARD = object()
MAX_GROUPS = 2_000_000  # expected_grpo_direction enumerates C(G + n − 1, G) groups per prompt


def _support_rows(pi, pi_ref, reward=_NO_REWARD):
    p = check_distribution(pi, "pi")
    q = check_distribution(pi_ref, "pi_ref")
    check_same_shape(p, q, "pi", "pi_ref")
    if p.ndim != 2:
        raise ValueError(f"pi must have shape (n_prompts, n_responses), got {p.shape}")
    if np.any((p > 0) != (q > 0)):
        raise ValueError("pi must have the same support as pi_ref (GRPO's policies keep π_ref's support)")
    if reward is not _NO_REWARD:
        r = as_float_array(reward, "reward")
        check_same_shape(p, r, "pi", "reward")
        return p, q, r
    return p, q


def _k_and_coef(p_row, q_row, estimator):
    """k(y) and ∂k/∂log π(y) on the support, by autograd of :func:`kl_estimate` (one call per prompt)."""
    logp = torch.tensor(np.log(p_row), requires_grad=True)
    k = _kl_estimate(logp, torch.tensor(np.log(q_row)), estimator)
    (coef,) = torch.autograd.grad(k.sum(), logp)
    return k.detach().numpy(), coef.numpy()


def _k3_moments(p_row, q_row):
    """(Σ π·k3, Σ π·k3²) without overflow where ρ = π_ref/π is beyond float64: π·k3 = π_ref − π − π·log ρ and
    π·k3² = exp(log π + 2·log k3), log k3 = log ρ + log1p(−(1 + log ρ)/ρ)."""
    log_rho = np.log(q_row) - np.log(p_row)
    mean = float(np.sum(q_row - p_row - p_row * log_rho))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        k = np.exp(log_rho) - 1.0 - log_rho
        big = log_rho > 30.0
        log_k = log_rho + np.log1p(-(1.0 + log_rho) * np.exp(-np.where(big, log_rho, 30.0)))
        second = float(np.sum(np.where(big, np.exp(np.log(p_row) + 2.0 * log_k), p_row * np.where(big, 0.0, k) ** 2)))
    return mean, second


def kl_estimator_moments(pi, pi_ref) -> dict:
    """Exact mean and variance of k1, k2, k3 under y ~ π, per prompt, by summing over the discrete support.

    Returns ``{"k1": {"mean": (n_prompts,), "var": (n_prompts,)}, "k2": ..., "k3": ...}``: mean = Σ_y π(y)·k(y),
    var = Σ_y π(y)·k(y)² − mean². E[k1] = E[k3] = KL(π‖π_ref) (Schulman 2020).
    """
    p, q = _support_rows(pi, pi_ref)
    out = {e: {"mean": np.zeros(p.shape[0]), "var": np.zeros(p.shape[0])} for e in KL_ESTIMATORS}
    for x in range(p.shape[0]):
        s = p[x] > 0
        for e in KL_ESTIMATORS:
            k, _ = _k_and_coef(p[x, s], q[x, s], e)
            mean = float(np.sum(p[x, s] * k))
            with np.errstate(over="ignore", invalid="ignore"):
                var = float(np.sum(p[x, s] * (k - mean) ** 2))
            if not (math.isfinite(mean) and math.isfinite(var)) and e == "k3":  # π_ref/π beyond float64
                mean, second = _k3_moments(p[x, s], q[x, s])
                var = max(second - mean**2, 0.0)
            out[e]["mean"][x] = mean
            out[e]["var"][x] = finite_result(var, f"the variance of {e} at prompt {x} is beyond float64: pi(y) is "
                                                  f"too small against pi_ref(y)")
    return out


def kl_estimator_expected_gradient(pi, pi_ref, estimator: str = "k3") -> np.ndarray:
    """E_{y∼π}[∇_z k(y)] for a tabular softmax π = softmax(z), differentiating k through log π only (the samples are
    held fixed, as a loss does): Σ_y π(y)·(∂k/∂log π)(y)·(e_y − π).

    Closed forms: k3 → π − π_ref = ∇_z KL(π_ref‖π); k2 → π ⊙ (log(π/π_ref) − KL(π‖π_ref)) = ∇_z KL(π‖π_ref); k1 → 0.
    (Tang & Munos 2025; Liu et al. 2025.) Returns an (n_prompts, n_responses) array, 0 off the support.
    """
    p, q = _support_rows(pi, pi_ref)
    _check_choice(estimator, "estimator", KL_ESTIMATORS)
    out = np.zeros(p.shape)
    for x in range(p.shape[0]):
        s = p[x] > 0
        _, c = _k_and_coef(p[x, s], q[x, s], estimator)
        with np.errstate(over="ignore", invalid="ignore"):
            w = p[x, s] * c
        if not np.all(np.isfinite(w)):  # k3: π·(1 − π_ref/π) = π − π_ref, where π_ref/π overflows
            w = np.where(np.isfinite(w), w, p[x, s] - q[x, s])
        out[x, s] = w - p[x, s] * w.sum()
    return out


def _groups(m: int, G: int, p_row: np.ndarray):
    """Every multiset of G responses out of m, as sorted sequences (K, G), with its multinomial probability (K,)."""
    seqs = np.array(list(itertools.combinations_with_replacement(range(m), G)), dtype=np.int64)  # (K, G)
    counts = np.stack([np.bincount(s, minlength=m) for s in seqs])  # (K, m)
    logpmf = gammaln(G + 1) - gammaln(counts + 1).sum(-1) + (counts * np.log(p_row)).sum(-1)
    return seqs, np.exp(logpmf)


def expected_grpo_direction(pi, pi_ref, reward, beta, group_size: int, *, scale_rewards: str = "group",
                            kl_estimator: str = "k3", kl_in: str = "loss", eps: float = TRL_EPS) -> np.ndarray:
    """The exact expected GRPO update direction −E[∇_z loss] per prompt, for a tabular softmax π = softmax(z), on
    fresh samples (ratio 1, so clipping is inactive), by enumerating every group of ``group_size`` responses.

    d(z) = E_groups[(1/G) Σ_i A_i·(e_{y_i} − π)] − β·E_{y∼π}[∇_z k(y)]·[kl_in = "loss"],

    with A = :func:`group_advantages` of the group's rewards (r, or r − β·k(y) detached when ``kl_in="reward"``)
    and the KL part from :func:`kl_estimator_expected_gradient`. There are C(G+n−1, G) groups per prompt (n the
    support size); a group's probability is multinomial. ``scale_rewards="batch"`` couples prompts and is refused.

    Returns
    -------
    (n_prompts, n_responses) array (sums to 0 over responses; 0 off the support). A stationary policy has d = 0.
    """
    p, q, r = _support_rows(pi, pi_ref, reward)
    b = check_real(beta, "beta", lo=0.0)
    G = check_int(group_size, "group_size", 2)
    _check_choice(scale_rewards, "scale_rewards", ("group", "none"))
    _check_choice(kl_estimator, "kl_estimator", KL_ESTIMATORS)
    _check_choice(kl_in, "kl_in", KL_PLACEMENTS)
    eps = check_real(eps, "eps", lo=0.0)
    m_max = int(np.max(np.sum(p > 0, axis=-1))) if p.size else 0
    if math.comb(G + m_max - 1, G) > MAX_GROUPS:
        raise ValueError(f"group_size={G} with {m_max} responses gives C(G + n − 1, G) > {MAX_GROUPS} groups to "
                         f"enumerate; choose a smaller group_size")
    out = np.zeros(p.shape)
    for x in range(p.shape[0]):
        s = np.flatnonzero(p[x] > 0)
        ps = p[x, s]
        k, _ = _k_and_coef(ps, q[x, s], kl_estimator)
        with np.errstate(over="ignore", invalid="ignore"):
            R = r[x, s] - (b * k if kl_in == "reward" and b > 0 else 0.0)  # (m,)
        finite_result(R, "reward − beta·k overflows float64 (pi too small against pi_ref, or beta too large)")
        seqs, prob = _groups(len(s), G, ps)
        A = group_advantages(torch.as_tensor(R[seqs]), scale_rewards, eps).numpy()  # (K, G)
        # Σ_i A_i e_{y_i}; the term −π·Σ_i A_i vanishes because a group's advantages sum to 0 (leave-in mean)
        sumA = np.zeros((len(seqs), len(s)))
        np.add.at(sumA, (np.arange(len(seqs))[:, None], seqs), A)
        d = prob @ (sumA - A.sum(-1, keepdims=True) * ps) / G
        out[x, s] = d
    if kl_in == "loss" and b > 0:
        with np.errstate(over="ignore", invalid="ignore"):
            out -= b * kl_estimator_expected_gradient(p, q, kl_estimator)
    return finite_result(out, "the expected GRPO direction overflows float64: beta (times the KL gradient) is too "
                              "large")


_POLISH_EVERY = 100  # grpo_fixed_point's flow tries the root-find from where it is every this many steps


def grpo_fixed_point(pi_ref, reward, beta, group_size: int, *, scale_rewards: str = "group",
                     kl_estimator: str = "k3", kl_in: str = "loss", eps: float = TRL_EPS, start=None,
                     tol: float = 1e-10, flow_steps: int = 3000) -> np.ndarray:
    """The stationary policy of the expected GRPO update: solves :func:`expected_grpo_direction` = 0 for each
    prompt's logits (scipy's ``root``, Powell hybrid, on the free logits with the first fixed at 0).

    Parameters
    ----------
    start : (n_prompts, n_responses) policy to start from (default: π* of β if β > 0, else π_ref)
    tol : the largest |d_y|/π(y) accepted (relative, so a small π(y) is pinned down too); a root-find that ends
        above it raises ``ValueError`` (naming tol, start and flow_steps)
    flow_steps : when the root-find from ``start`` fails, follow the expected update from π_ref for at most this
        many damped steps (z ← z + 0.2·d/π, the stationary point that training reaches), trying the root-find
        from π_ref itself first and then every 100 steps, and stop at the first that meets tol (0: no fallback)

    Returns
    -------
    (n_prompts, n_responses) array, the stationary π (0 off π_ref's support).
    """
    q = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(q, r, "pi_ref", "reward")
    b = check_real(beta, "beta", lo=0.0)
    tol = check_real(tol, "tol", lo=0.0, lo_open=True)
    check_int(group_size, "group_size", 2)
    check_int(flow_steps, "flow_steps", 0)
    _check_choice(scale_rewards, "scale_rewards", ("group", "none"))
    _check_choice(kl_estimator, "kl_estimator", KL_ESTIMATORS)
    _check_choice(kl_in, "kl_in", KL_PLACEMENTS)
    check_real(eps, "eps", lo=0.0)
    if q.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {q.shape}")
    if start is None:
        start = np.exp(optimal_log_policy(q, r, b)) if b > 0 else q
    start = check_distribution(start, "start")
    check_same_shape(q, start, "pi_ref", "start")
    if np.any((start <= 0) & (q > 0)):
        raise ValueError("start must be > 0 wherever pi_ref is (the search runs on its logits)")
    kw = {"scale_rewards": scale_rewards, "kl_estimator": kl_estimator, "kl_in": kl_in, "eps": eps}
    out = np.zeros(q.shape)
    x = 0
    try:
        for x in range(q.shape[0]):
            s = np.flatnonzero(q[x] > 0)
            if len(s) == 1:
                out[x, s] = 1.0
                continue
            z0 = np.log(start[x, s])
            z0 = z0[1:] - z0[0]

            def policy_of(zf):
                z = np.concatenate([[0.0], np.clip(zf, -30.0, 30.0)])  # keep every π(y) > 0 while searching
                e = np.exp(z - z.max())
                return e / e.sum()

            def resid(zf, qs=q[x, s][None], rs=r[x, s][None]):
                pr = policy_of(zf)
                d = expected_grpo_direction(pr[None], qs, rs, b, group_size, **kw)[0]
                return d[1:] / np.maximum(pr[1:], 1e-300)  # d_y/π_y: scale-free, well conditioned near small π

            best, message = None, ""
            if len(s) == 2:  # one free logit: bracket the sign change of d_1/π_1 and bisect (robust)
                grid = np.linspace(-40.0, 40.0, 161)
                vals = np.array([resid(np.array([g]))[0] for g in grid])
                change = np.flatnonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) <= 0)
                if len(change):
                    i = int(np.argmin(np.abs(grid[change] - z0[0])))  # the sign change nearest the start
                    lo, hi = grid[change[i]], grid[change[i] + 1]
                    zs = lo if vals[change[i]] == 0 else brentq(lambda g: resid(np.array([g]))[0], lo, hi, xtol=1e-14,
                                                                rtol=4 * np.finfo(float).eps, maxiter=500)
                    best = policy_of(np.array([zs]))
            else:
                sol = root(resid, z0, method="hybr", tol=1e-15)
                message = sol.message
                pr = policy_of(sol.x)
                d = expected_grpo_direction(pr[None], q[x, s][None], r[x, s][None], b, group_size, **kw)[0]
                if np.all(np.isfinite(pr)) and np.max(np.abs(d) / pr) <= tol:
                    best = pr
                elif flow_steps > 0:  # follow the expected update (damped, in the natural d/π direction) from
                    # π_ref, polishing with the root-find from π_ref itself and then every _POLISH_EVERY steps
                    zf = np.log(q[x, s][1:] / q[x, s][0])
                    for k in range(flow_steps + 1):
                        g = resid(zf)
                        if k % _POLISH_EVERY == 0 or k == flow_steps or np.max(np.abs(g)) <= tol:
                            sol = root(resid, zf, method="hybr", tol=1e-15)
                            for cand in (sol.x, zf):
                                pr = policy_of(cand)
                                d = expected_grpo_direction(pr[None], q[x, s][None], r[x, s][None], b, group_size,
                                                            **kw)[0]
                                if np.all(np.isfinite(pr)) and np.max(np.abs(d) / pr) <= tol:
                                    best = pr
                                    break
                            if best is not None or k == flow_steps:
                                break
                        zf = zf + 0.2 * g
            if best is None:
                raise ValueError(f"no stationary point found for prompt {x} within tol ({message}); try another "
                                 f"start, a larger tol or more flow_steps")
            d = expected_grpo_direction(best[None], q[x, s][None], r[x, s][None], b, group_size, **kw)[0]
            if np.max(np.abs(d) / best) > tol:
                raise ValueError(f"no stationary point found for prompt {x}: largest |d|/π = "
                                 f"{np.max(np.abs(d) / best):.3g} > tol; try another start or more flow_steps")
            out[x, s] = best
    except ValueError as exc:
        if "no stationary point" in str(exc):
            raise
        raise ValueError(f"no stationary point found for prompt {x}: the search left float64 ({exc}); check beta "
                         f"and reward, or try another start, tol or flow_steps") from None
    return out


def forward_kl_optimal_policy(pi_ref, reward, beta) -> np.ndarray:
    """argmax_π E_π[r] − β·KL(π_ref‖π) per prompt (the *forward* KL): π(y) = β·π_ref(y)/(λ(x) − r(x, y)).

    Stationarity of the Lagrangian gives r(y) + β·π_ref(y)/π(y) = λ; λ > max_y r(y) on the support is the unique root
    of Σ_y β·π_ref(y)/(λ − r(y)) = 1 (decreasing in λ; found by brentq between r_max + β·π_ref(y_max) and
    r_max + β, in the scale-free unknowns (λ − r_max)/β and (r_max − r)/β, so no reward or β overflows).
    Wang et al. 2023, "Beyond reverse KL", Theorem 1 with f(u) = −log u. It is the stationary point of
    Dr. GRPO with TRL's k3 loss at β·G/(G−1) (see the module docstring). The maximum is taken over
    policies on π_ref's support (π(y) = 0 wherever π_ref(y) = 0, as the formula gives): KL(π_ref‖π) alone would not
    keep mass off it, but a policy trained from π_ref by sampling (GRPO) never puts any there.
    """
    q = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(q, r, "pi_ref", "reward")
    b = check_beta(beta)
    if q.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {q.shape}")
    out = np.zeros(q.shape)
    for x in range(q.shape[0]):
        s = q[x] > 0
        qs, rs = q[x, s], r[x, s]
        j = int(np.argmax(rs))
        # in the scale-free unknowns u = (λ − r_max)/β ∈ [π_ref(y_max), 1] and d = (r_max − r)/β ≥ 0 (no overflow:
        # a d beyond float64 is +inf and gives π(y) = 0, its limit): Σ_y π_ref(y)/(u + d(y)) = 1, π = π_ref/(u + d)
        with np.errstate(over="ignore"):
            gap = rs[j] - rs
            d = np.where(np.isfinite(gap), gap / b, (0.5 * rs[j] - 0.5 * rs) / b * 2.0)

        def f(u, qs=qs, d=d):
            return float(np.sum(qs / (u + d))) - 1.0

        lo, hi = qs[j], 1.0
        if f(lo) <= 0:
            u = lo
        elif f(hi) >= 0:
            u = hi
        else:
            u = brentq(f, lo, hi, xtol=1e-16, rtol=4 * np.finfo(float).eps, maxiter=500)
        pi_s = qs / (u + d)
        out[x, s] = pi_s / pi_s.sum()
    return out


def effective_beta(pi, pi_ref, reward) -> np.ndarray:
    """Per prompt, the β' whose :func:`forward_kl_optimal_policy` has the same expected reward as ``pi``.

    E_π[r] of the forward-KL optimum falls strictly from max r (β' → 0) to E_{π_ref}[r] (β' → ∞), so β' is unique
    (brentq on log β'). For two responses the family is the whole simplex edge, so the optimum at β' *is* π; for
    more responses compare them (the gap says how far π is from any single-β forward-KL optimum).

    Returns
    -------
    (n_prompts,) array; ValueError if E_π[r] is outside (E_{π_ref}[r], max r) for some prompt.
    """
    p, q, r = _support_rows(pi, pi_ref, reward)
    out = np.zeros(p.shape[0])
    for x in range(p.shape[0]):
        # β'(c·r) = c·β'(r): solve for r/c with c a power of 2 near max|r| (exact), so no reward overflows
        top = float(np.max(np.abs(r[x]))) if r.shape[1] else 0.0
        c = 2.0 ** (math.frexp(top)[1] - 1) if top > 0 else 1.0
        rx = r[x:x + 1] / c
        target = float(np.sum(p[x] * rx[0]))

        def gap(logb, qx=q[x:x + 1], rx=rx, target=target):
            return float(np.sum(forward_kl_optimal_policy(qx, rx, math.exp(logb))[0] * rx[0])) - target

        lo, hi = -30.0, 30.0
        if not (gap(lo) > 0 > gap(hi)):
            raise ValueError(f"pi's expected reward at prompt {x} is not between π_ref's and the best response's "
                             f"(strictly, within e^±30 of β' in units of max|reward|)")
        out[x] = math.exp(brentq(gap, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)) * c
    return finite_result(out, "the effective beta overflows float64: reward is too large")
