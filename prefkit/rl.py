"""The RL stage of classical RLHF on bandits (chapter 3): :func:`train_rlhf` maximises the KL-regularised objective
by one of four methods (exact policy gradient, REINFORCE, RLOO, PPO-clip).

The objective, its exact gradient and the estimators' losses are in :mod:`prefkit.policy_gradient`; the whole
pipeline (preferences → reward model → RL → gap to π*) is :func:`prefkit.rlhf_pipeline.classical_rlhf`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import (
    as_float_array,
    check_beta,
    check_distribution,
    check_int,
    check_real,
    check_same_shape,
    check_torch_seed,
)
from .closed_form import kl_divergence, kl_divergence_logspace, optimal_log_policy
from .policies import TrainedPolicy, make_policy
from .policy_gradient import (
    kl_penalized_reward,
    ppo_clip_loss,
    reinforce_loss,
    rlhf_objective,
    rloo_advantages,
)

__all__ = ["RLResult", "train_rlhf", "METHODS", "DEFAULT_LR"]

METHODS = ("exact", "reinforce", "rloo", "ppo")
DEFAULT_LR = {"exact": 0.1, "reinforce": 0.1, "rloo": 0.1, "ppo": 0.03}


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
        check_int(v, name, lo)
    if method in ("rloo", "ppo") and k < 2:
        raise ValueError(f"k must be >= 2 for method={method!r}, got {k}")
    if lr is None:
        lr = DEFAULT_LR[method]
    lr = check_real(lr, "lr", lo=0.0, lo_open=True)
    lr_decay = check_real(lr_decay, "lr_decay", lo=0.0)
    baseline_decay = check_real(baseline_decay, "baseline_decay", lo=0.0, hi=1.0)
    clip_eps = check_real(clip_eps, "clip_eps", lo=0.0, lo_open=True, hi=1.0)
    seed = check_torch_seed(seed)
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
        with torch.no_grad():
            if not bool(torch.isfinite(pol.log_probs()[mask]).all()):
                raise ValueError(f"training diverged at step {t}: the policy's log-probabilities became non-finite "
                                 f"(method={method!r}, lr={lr!r}, beta={b!r}); lower lr")
        sched.step()
        if t % record_every == 0 or t == steps:
            record(t)
    return RLResult(model=pol, history=history, pi_star=pi_star, method=method, beta=b)
