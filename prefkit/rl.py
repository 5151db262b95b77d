"""The RL stage of classical RLHF on bandits (chapter 3): policy-gradient estimators and four trainers.

Each prompt x is a one-step episode. The policy π_θ (a :mod:`prefkit.policies` module) maximises

    J(θ) = mean_x { E_{y∼π_θ}[r(x, y)] − β·KL(π_θ(·|x) ‖ π_ref(·|x)) },

whose maximiser is π* = π_ref·exp(r/β)/Z (:func:`prefkit.optimal_policy`). For a tabular softmax with logits
z_x, ∇_{z_x} J = π ⊙ (A − E_π[A]) with A = r − β·(log π − log π_ref) (:func:`exact_policy_gradient`). The
sampled methods estimate it with the score function E_{y∼π}[∇ log π(y)·(A(y) − b)], where A(y) is the
*per-sample KL-penalised reward* r(x, y) − β·(log π(y|x) − log π_ref(y|x)) (Ouyang et al. 2022; Stiennon et
al. 2020) and b a baseline that does not change the expectation.

The pure torch pieces (:func:`rloo_advantages`, :func:`reinforce_loss`, :func:`ppo_clip_loss`) take any batch
shape and are reused by the tiny-LM chapter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import as_float_array, check_beta, check_distribution, check_real, check_same_shape
from .closed_form import kl_divergence, kl_divergence_logspace, optimal_log_policy, optimal_policy
from .policies import TrainedPolicy, make_policy

__all__ = [
    "rloo_advantages",
    "reinforce_loss",
    "ppo_clip_loss",
    "kl_penalized_reward",
    "rlhf_objective",
    "exact_policy_gradient",
    "RLResult",
    "train_rlhf",
    "METHODS",
    "DEFAULT_LR",
    "reward_kl_frontier",
    "PipelineResult",
    "classical_rlhf",
    "gap_decomposition",
    "convergence_summary",
    "frontier_excess",
    "frontier_by_method",
    "pipeline_sweep",
]

METHODS = ("exact", "reinforce", "rloo", "ppo")
DEFAULT_LR = {"exact": 0.1, "reinforce": 0.1, "rloo": 0.1, "ppo": 0.03}


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_tensor(t, name: str) -> torch.Tensor:
    """``t`` must be a torch tensor with finite entries (ValueError naming ``name``); shared with
    :mod:`prefkit.reward_model`."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not torch.all(torch.isfinite(t)):
        raise ValueError(f"{name} contains NaN or inf")
    return t


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
    rewards = _check_tensor(rewards, "rewards")
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
    _check_tensor(logp, "logp")
    _check_tensor(advantages, "advantages")
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
    _check_tensor(logp, "logp")
    _check_tensor(old_logp, "old_logp")
    _check_tensor(advantages, "advantages")
    if logp.shape != old_logp.shape or logp.shape != advantages.shape:
        raise ValueError(f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
                         f"advantages {tuple(advantages.shape)}")
    eps = float(clip_eps)
    if not 0 < eps < 1:
        raise ValueError(f"clip_eps must be in (0, 1), got {clip_eps!r}")
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


@dataclass
class RLResult(TrainedPolicy):
    """The output of :func:`train_rlhf`.

    Attributes
    ----------
    model : the trained :mod:`prefkit.policies` module
    policy, pi : the final policy as a (n_prompts, n_responses) array
    history : list of per-step dicts with keys
        ``step``; ``kl/to_optimal`` = mean_x KL(π_θ‖π*) (π* of the reward optimised, at the same β);
        ``kl/to_ref`` = mean_x KL(π_θ‖π_ref); ``reward/expected`` = mean_x E_π[r]; ``objective`` = mean_x
        J(π_θ); ``cost/samples`` (cumulative policy samples), ``cost/reward_queries`` (cumulative reward
        evaluations; the exact method reads all n_prompts·n_responses rewards each step), ``cost/grad_steps``
        (cumulative optimiser steps), ``time/wall`` (seconds since the start). Entry 0 is the initial policy,
        before any step.
    pi_star : (n_prompts, n_responses) array, π* of the reward optimised
    method, beta : what was run
    """

    pi_star: np.ndarray | None = None
    method: str = ""
    beta: float = 0.0

    @property
    def final_kl(self) -> float:
        """KL(π_final‖π*) averaged over prompts."""
        return float(self.history[-1]["kl/to_optimal"])


def train_rlhf(pi_ref, reward, beta, *, method: str = "rloo", features=None, steps: int = 300,
               lr: float | None = None, k: int = 8, seed: int = 0, optimizer: str = "adam",
               clip_eps: float = 0.2, ppo_epochs: int = 4, baseline_decay: float = 0.9, lr_decay: float = 0.0,
               record_every: int = 1, policy=None) -> RLResult:
    """Maximise J(π_θ) = mean_x E_π[r] − β·KL(π_θ‖π_ref) on a bandit, by one of four methods.

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses) array, each row a distribution
    reward : (n_prompts, n_responses) array; the reward being optimised (r* or a reward model's r̂)
    beta : float > 0, the KL coefficient
    method : one of :data:`METHODS`
        ``"exact"``: gradient ascent on the exact J (enumerating every response; autograd of
        :func:`rlhf_objective`, which for a tabular policy equals :func:`exact_policy_gradient`).
        ``"reinforce"``: k samples per prompt, A = KL-penalised reward minus a per-prompt running-mean
        baseline (exponential moving average of past batches with decay ``baseline_decay``; past batches only,
        so unbiased).
        ``"rloo"``: k ≥ 2 samples per prompt, leave-one-out baseline (:func:`rloo_advantages`).
        ``"ppo"``: k ≥ 2 samples per prompt from the current policy, RLOO advantages of the KL-penalised
        reward (no critic: a bandit has one step), then ``ppo_epochs`` optimiser steps on
        :func:`ppo_clip_loss`.
    features : (n_prompts, n_responses, d) array, optional; gives a log-linear policy instead of a tabular one
    steps : number of iterations (each samples once; PPO takes ``ppo_epochs`` optimiser steps per iteration)
    lr : learning rate (default: :data:`DEFAULT_LR` of the method — Adam 0.1, PPO 0.03 since it takes
        ``ppo_epochs`` steps per batch); ``lr_decay`` > 0 uses lr/(1 + lr_decay·t) at iteration t (for
        stochastic methods)
    k : samples per prompt per iteration (sampled methods)
    seed : seeds the ``torch.Generator`` that draws the samples
    optimizer : "adam" or "sgd"
    clip_eps, ppo_epochs : PPO's clipping ε and optimiser steps per batch
    record_every : record the history every this many iterations (and at the last)
    policy : an existing :mod:`prefkit.policies` module to continue training (default: a fresh one at π_ref)

    Returns
    -------
    :class:`RLResult` (``.policy`` array, ``.model`` module, ``.history``, ``.pi_star``)

    References
    ----------
    Williams 1992 (REINFORCE); Kool et al. 2019 and Ahmadian et al. 2024 (RLOO); Schulman et al. 2017 (PPO);
    Ouyang et al. 2022 (KL penalty in the reward).
    """
    b = check_beta(beta)
    p_ref = check_distribution(pi_ref, "pi_ref")
    if p_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p_ref.shape}")
    r = as_float_array(reward, "reward")
    check_same_shape(p_ref, r, "pi_ref", "reward")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, v, lo in (("steps", steps, 0), ("k", k, 1), ("ppo_epochs", ppo_epochs, 1),
                        ("record_every", record_every, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if method in ("rloo", "ppo") and k < 2:
        raise ValueError(f"k must be >= 2 for method={method!r}, got {k}")
    if lr is None:
        lr = DEFAULT_LR[method]
    lr = check_real(lr, "lr", lo=0.0, lo_open=True)
    lr_decay = check_real(lr_decay, "lr_decay", lo=0.0)
    baseline_decay = check_real(baseline_decay, "baseline_decay", lo=0.0, hi=1.0)
    clip_eps = check_real(clip_eps, "clip_eps", lo=0.0, lo_open=True, hi=1.0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if features is not None and policy is not None:
        raise ValueError("give features or policy, not both (policy already fixes the parametrisation)")
    if policy is not None and not hasattr(policy, "log_probs"):
        raise ValueError(f"policy must be a prefkit.policies module with log_probs(), got "
                         f"{type(policy).__name__}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")

    log_pi_star = optimal_log_policy(p_ref, r, b)
    pi_star = np.exp(log_pi_star)
    pol = make_policy(p_ref, features) if policy is None else policy
    with np.errstate(divide="ignore"):
        ref_logp = torch.as_tensor(np.log(p_ref))
    r_t = torch.as_tensor(r)
    mask = torch.isfinite(ref_logp)
    params = [q for q in pol.parameters() if q.requires_grad]
    opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + lr_decay * t))
    gen = torch.Generator().manual_seed(int(seed))
    n_prompts, n_responses = p_ref.shape
    rows = torch.arange(n_prompts)[:, None]
    baseline = None
    counts = {"samples": 0, "reward_queries": 0, "grad_steps": 0}
    history: list[dict] = []
    t0 = time.perf_counter()

    def record(step: int) -> None:
        with torch.no_grad():
            logp = pol.log_probs()
            lp = logp.numpy()
            J = rlhf_objective(logp, ref_logp, r_t, b).numpy()
        pi_now = np.exp(lp)
        history.append({
            "step": step,
            "kl/to_optimal": float(np.mean(kl_divergence_logspace(lp, log_pi_star))),
            "kl/to_ref": float(np.mean(kl_divergence(pi_now, p_ref))),
            "reward/expected": float(np.mean(np.sum(pi_now * r, axis=-1))),
            "objective": float(np.mean(J)),
            "cost/samples": counts["samples"],
            "cost/reward_queries": counts["reward_queries"],
            "cost/grad_steps": counts["grad_steps"],
            "time/wall": time.perf_counter() - t0,
        })

    record(0)
    for t in range(1, steps + 1):
        if method == "exact":
            loss = -rlhf_objective(pol.log_probs(), ref_logp, r_t, b).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            counts["reward_queries"] += int(mask.sum())
            counts["grad_steps"] += 1
        else:
            with torch.no_grad():
                probs = pol.log_probs().exp()
                y = torch.multinomial(probs, k, replacement=True, generator=gen)  # (n_prompts, k)
                old_logp = pol.log_probs()[rows, y]  # (n_prompts, k)
                R = kl_penalized_reward(r_t[rows, y], old_logp, ref_logp[rows, y], b)  # (n_prompts, k)
            counts["samples"] += n_prompts * k
            counts["reward_queries"] += n_prompts * k
            if method == "reinforce":
                if baseline is None:
                    baseline = torch.zeros(n_prompts, 1, dtype=torch.float64)
                adv = R - baseline
                baseline = baseline_decay * baseline + (1 - baseline_decay) * R.mean(dim=-1, keepdim=True)
            else:
                adv = rloo_advantages(R)
            epochs = ppo_epochs if method == "ppo" else 1
            for _ in range(epochs):
                logp_y = pol.log_probs()[rows, y]
                if method == "ppo":
                    loss = ppo_clip_loss(logp_y, old_logp, adv, clip_eps)
                else:
                    loss = reinforce_loss(logp_y, adv)
                opt.zero_grad()
                loss.backward()
                opt.step()
                counts["grad_steps"] += 1
        sched.step()
        if t % record_every == 0 or t == steps:
            record(t)
    return RLResult(model=pol, history=history, pi_star=pi_star, method=method, beta=b)


def reward_kl_frontier(pi_ref, reward, betas) -> dict:
    """The exact reward–KL frontier traced by β: for each β, (KL(π*_β‖π_ref), E_{π*_β}[r]), averaged over
    prompts.

    π*_β maximises E[r] − β·KL, so no policy reaches a higher expected reward at the same KL: the curve is the
    Pareto frontier that every RL method's (KL, reward) point lies on or below.

    Returns
    -------
    dict with arrays ``beta``, ``kl``, ``reward`` (each of length len(betas)).
    """
    bs = as_float_array(betas, "betas", ndim=1)
    kls, rews = [], []
    for beta in bs:
        ps = optimal_policy(pi_ref, reward, beta)
        kls.append(float(np.mean(kl_divergence(ps, pi_ref))))
        rews.append(float(np.mean(np.sum(ps * np.asarray(reward, dtype=np.float64), axis=-1))))
    return {"beta": bs, "kl": np.array(kls), "reward": np.array(rews)}


def gap_decomposition(pi_final, pi_ref, reward_true, reward_model, beta) -> dict:
    """How far a trained policy is from π*(r*), split into a reward-model part and an RL part.

    With J the true objective (reward r*), π* = π*(r*) and π̂* = π*(r̂) (the best policy for the reward
    model), the Gibbs identity J(π) = β·log Z − β·KL(π‖π*) makes the regret of a policy a KL:

        regret(π) = J(π*) − J(π) = β·KL(π‖π*),

    and it splits exactly into

        regret(π_final) = [J(π*) − J(π̂*)]  +  [J(π̂*) − J(π_final)]
                        =  β·KL(π̂*‖π*)      +  β·(KL(π_final‖π*) − KL(π̂*‖π*))
                          (reward-model part ≥ 0)  (RL part; can be < 0 when imperfect RL lands nearer π*).

    It also reports the two KLs of the brief: ``kl/rl`` = KL(π_final‖π̂*), how far RL is from the optimum of
    the reward it was given, and ``kl/reward_model`` = KL(π̂*‖π*). All values are means over prompts.

    Returns
    -------
    dict with ``regret/total``, ``regret/reward_model``, ``regret/rl`` (``total = reward_model + rl``
    exactly), ``kl/total`` = KL(π_final‖π*), ``kl/rl``, ``kl/reward_model``.
    """
    b = check_beta(beta)
    p_final = check_distribution(pi_final, "pi_final")
    p_ref = check_distribution(pi_ref, "pi_ref")
    check_same_shape(p_final, p_ref, "pi_final", "pi_ref")
    check_same_shape(p_ref, as_float_array(reward_true, "reward_true"), "pi_ref", "reward_true")
    check_same_shape(p_ref, as_float_array(reward_model, "reward_model"), "pi_ref", "reward_model")
    log_star = optimal_log_policy(pi_ref, reward_true, b)
    log_hat = optimal_log_policy(pi_ref, reward_model, b)
    with np.errstate(divide="ignore"):
        log_final = np.log(p_final)
    kl_total = float(np.mean(kl_divergence_logspace(log_final, log_star)))
    kl_rm = float(np.mean(kl_divergence_logspace(log_hat, log_star)))
    kl_rl = float(np.mean(kl_divergence_logspace(log_final, log_hat)))
    return {
        "regret/total": b * kl_total,
        "regret/reward_model": b * kl_rm,
        "regret/rl": b * (kl_total - kl_rm),
        "kl/total": kl_total,
        "kl/rl": kl_rl,
        "kl/reward_model": kl_rm,
    }


@dataclass
class PipelineResult:
    """The output of :func:`classical_rlhf`: every stage and the gap decomposition.

    Attributes
    ----------
    preferences : (n_pairs, 3) int array sampled from π_ref under Bradley-Terry on r*
    reward_model : :class:`prefkit.reward_model.RewardModelResult` (``.reward`` is r̂)
    rl : :class:`RLResult` of RL on r̂
    gap : dict from :func:`gap_decomposition`
    pi_star_true, pi_star_model : π*(r*) and π*(r̂)
    """

    preferences: np.ndarray
    reward_model: object
    rl: RLResult
    gap: dict
    pi_star_true: np.ndarray
    pi_star_model: np.ndarray

    @property
    def pi(self) -> np.ndarray:
        return self.rl.pi


def classical_rlhf(problem, beta, n_pairs: int, *, seed: int = 0, reward_model: str = "tabular",
                   method: str = "rloo", rm_kwargs: dict | None = None, rl_kwargs: dict | None = None,
                   use_features: bool = False) -> PipelineResult:
    """The classical RLHF pipeline on a :class:`prefkit.problems.Problem`: r* → preferences → r̂ → RL →
    π_final.

    1. Sample ``n_pairs`` preference pairs from π_ref labelled by Bradley-Terry on r*
       (``problem.sample_preferences``).
    2. Fit a reward model r̂ (:func:`prefkit.reward_model.fit_reward_model`, ``reward_model`` kind).
    3. Run :func:`train_rlhf` on r̂ at ``beta`` with ``method`` (log-linear policy in the problem's features
       if ``use_features``).
    4. Compare π_final with π*(r*): :func:`gap_decomposition`.

    ``seed`` seeds the preference sampling and the RL sampler; extra options go in ``rm_kwargs`` /
    ``rl_kwargs``.
    """
    from .reward_model import fit_reward_model

    rng = np.random.default_rng(seed)
    prefs = problem.sample_preferences(n_pairs, rng)
    rm = fit_reward_model(prefs, problem.n_prompts, problem.n_responses, model=reward_model,
                          features=problem.features, seed=seed, **(rm_kwargs or {}))
    kw = {"seed": seed, **(rl_kwargs or {})}
    feats = problem.features if use_features else None
    rl = train_rlhf(problem.pi_ref, rm.reward, beta, method=method, features=feats, **kw)
    gap = gap_decomposition(rl.pi, problem.pi_ref, problem.reward, rm.reward, beta)
    return PipelineResult(prefs, rm, rl, gap, optimal_policy(problem.pi_ref, problem.reward, beta),
                          optimal_policy(problem.pi_ref, rm.reward, beta))


# ------------------------------------------ chapter 3's claims, measured (shared by the tour and notebook 03)


def convergence_summary(pi_ref, reward, beta, *, methods=METHODS, seeds=(0, 1, 2), steps: int = 250,
                        k: int = 8, features=None, **kwargs) -> dict:
    """Run each method from several seeds; per method, the worst final KL(π‖π*) and worst final/initial ratio.

    Returns
    -------
    dict method → {"final_kl": max over seeds of KL(π_final‖π*), "ratio": max over seeds of final/initial KL,
    "results": list of :class:`RLResult`}.
    """
    out = {}
    for m in methods:
        res = [train_rlhf(pi_ref, reward, beta, method=m, steps=steps, k=k, seed=s, features=features,
                          **kwargs) for s in seeds]
        kl0 = res[0].history[0]["kl/to_optimal"]
        out[m] = {"final_kl": max(r.final_kl for r in res), "ratio": max(r.final_kl / kl0 for r in res),
                  "results": res}
    return out


def frontier_excess(pi_ref, reward, kl, expected_reward, betas=None) -> float:
    """How far (KL, reward) points lie above the exact frontier; ≤ 0 (up to round-off) for every policy.

    For any π and every β, the Gibbs identity gives E_π[r] = β·log Z + β·KL(π‖π_ref) − β·KL(π‖π*)
    ≤ β·log Z + β·KL(π‖π_ref) (prompt means). Returns max over points of E_π[r] − min_β (β·mean log Z + β·KL),
    the minimum taken over ``betas`` (default a log grid 1e-3..1e3).
    """
    from .closed_form import log_partition

    bs = np.geomspace(1e-3, 1e3, 121) if betas is None else as_float_array(betas, "betas", ndim=1)
    kl = np.atleast_1d(as_float_array(kl, "kl"))
    R = np.atleast_1d(as_float_array(expected_reward, "expected_reward"))
    if kl.ndim != 1 or R.ndim != 1 or kl.shape != R.shape:
        raise ValueError(f"kl and expected_reward must be 1-d of the same length, got shapes {kl.shape} and "
                         f"{R.shape}")
    if np.any(kl < 0):
        raise ValueError("kl must be >= 0")
    bound = np.min([b_ * np.mean(log_partition(pi_ref, reward, b_)) + b_ * kl for b_ in bs], axis=0)
    return float(np.max(R - bound))


#: Tolerances for :func:`frontier_by_method`'s ``end_gap`` (|E_{π_final}[r] − E_{π*_β}[r]| after 200
#: iterations at β ∈ {0.2, 1, 5} on ``random_problem(3, 5)``): about 2× the worst of problem seeds 20–25
#: (exact 6.8e-3, REINFORCE 1.0e-2, RLOO 1.0e-2, PPO 2.6e-2). Shared by the tour and notebook 03.
FRONTIER_END_GAP_TOL = {"exact": 0.015, "reinforce": 0.02, "rloo": 0.02, "ppo": 0.05}


def frontier_by_method(pi_ref, reward, betas, *, methods=METHODS, steps: int = 200, seed: int = 0,
                       every: int = 10, **kwargs) -> dict:
    """Train each method at each β and place its iterates against the exact reward–KL frontier.

    For every method and β in ``betas``, :func:`train_rlhf` runs ``steps`` iterations from π_ref; every
    ``every``-th iterate contributes a point (KL(π_θ‖π_ref), E_{π_θ}[r]) (prompt means).

    Returns
    -------
    dict method → {``"kl"``, ``"reward"``: the points (1-d arrays); ``"excess"``: :func:`frontier_excess` of
    the points (≤ 0 up to round-off for every policy); ``"end_gap"``: max over β of |E_{π_final}[r] −
    E_{π*_β}[r]|, how close the final iterate is to the frontier point of its own β; ``"final_kl"``: max over
    β of KL(π_final‖π*_β)}.
    """
    bs = as_float_array(betas, "betas", ndim=1)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    front = reward_kl_frontier(pi_ref, reward, bs)
    out = {}
    for m in methods:
        kls, rews, gaps, finals = [], [], [], []
        for i, beta in enumerate(bs):
            res = train_rlhf(pi_ref, reward, beta, method=m, steps=steps, seed=seed, **kwargs)
            h = res.history
            kls += [e["kl/to_ref"] for e in h[::every]] + [h[-1]["kl/to_ref"]]
            rews += [e["reward/expected"] for e in h[::every]] + [h[-1]["reward/expected"]]
            gaps.append(abs(h[-1]["reward/expected"] - front["reward"][i]))
            finals.append(res.final_kl)
        out[m] = {"kl": np.array(kls), "reward": np.array(rews),
                  "excess": frontier_excess(pi_ref, reward, kls, rews), "end_gap": float(max(gaps)),
                  "final_kl": float(max(finals))}
    return out


def pipeline_sweep(problem, beta, n_pairs_list, *, seeds=(0, 1, 2), **kwargs) -> list[dict]:
    """Run :func:`classical_rlhf` for each number of preference pairs and seed; the gap dicts averaged over
    seeds.

    Returns a list (one per entry of ``n_pairs_list``) of dicts with the keys of :func:`gap_decomposition`.
    """
    out = []
    for n in n_pairs_list:
        gaps = [classical_rlhf(problem, beta, int(n), seed=s, **kwargs).gap for s in seeds]
        out.append({key: float(np.mean([g[key] for g in gaps])) for key in gaps[0]})
    return out
