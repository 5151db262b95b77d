"""The classical RLHF pipeline on a bandit (chapter 3): r* → preferences → reward model r̂ → RL on r̂ → π_final,
and how far π_final is from π*(r*), split into a reward-model part and an RL part.

:func:`classical_rlhf` runs the stages (:func:`prefkit.reward_model.fit_reward_model`, then
:func:`prefkit.rl.train_rlhf`); :func:`gap_decomposition` measures the result against the exact optima
π*(r*) and π*(r̂) (:func:`prefkit.optimal_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_float_array, check_beta, check_distribution, check_int, check_same_shape, check_torch_seed
from .closed_form import kl_divergence_logspace, optimal_log_policy, optimal_policy
from .reward_model import RewardModelResult, fit_reward_model
from .rl import RLResult, train_rlhf

__all__ = ["gap_decomposition", "RLHFPipelineResult", "classical_rlhf"]


def gap_decomposition(pi_final, pi_ref, reward_true, reward_model, beta) -> dict:
    """How far a trained policy is from π*(r*), split into a reward-model part and an RL part.

    With J the true objective (reward r*), π* = π*(r*) and π̂* = π*(r̂) (the best policy for the reward
    model), the Gibbs identity J(π) = β·log Z − β·KL(π‖π*) makes the regret of a policy a KL:

        regret(π) = J(π*) − J(π) = β·KL(π‖π*),

    and it splits exactly into

        regret(π_final) = [J(π*) − J(π̂*)]  +  [J(π̂*) − J(π_final)]
                        =  β·KL(π̂*‖π*)      +  β·(KL(π_final‖π*) − KL(π̂*‖π*))
                          (reward-model part ≥ 0)  (RL part; can be < 0 when imperfect RL lands nearer π*).

    The split is an accounting identity (the RL part is what remains after the reward-model part), so it adds up
    whatever RL did. What RL itself achieved is ``kl/rl`` = KL(π_final‖π̂*): by the Gibbs identity under r̂,
    β·KL(π_final‖π̂*) = J_r̂(π̂*) − J_r̂(π_final), the shortfall of RL on the reward it was given. ``kl/reward_model``
    = KL(π̂*‖π*). All values are means over prompts.

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
class RLHFPipelineResult:
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
    reward_model: RewardModelResult
    rl: RLResult
    gap: dict
    pi_star_true: np.ndarray
    pi_star_model: np.ndarray

    @property
    def pi(self) -> np.ndarray:
        return self.rl.pi


def classical_rlhf(problem, beta, n_pairs: int, *, seed: int = 0, reward_model: str = "tabular",
                   method: str = "rloo", rm_kwargs: dict | None = None, rl_kwargs: dict | None = None,
                   use_features: bool = False) -> RLHFPipelineResult:
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

    from .problems import Problem

    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a prefkit.Problem, got {type(problem).__name__}")
    n_pairs = check_int(n_pairs, "n_pairs", 1)
    for kw, name in ((rm_kwargs, "rm_kwargs"), (rl_kwargs, "rl_kwargs")):
        if kw is not None and not isinstance(kw, dict):
            raise ValueError(f"{name} must be a dict of keyword arguments, got {type(kw).__name__}")
    torch_seed = check_torch_seed(seed)
    rng = np.random.default_rng(torch_seed)
    prefs = problem.sample_preferences(n_pairs, rng)
    rm = fit_reward_model(prefs, problem.n_prompts, problem.n_responses, model=reward_model,
                          features=problem.features, seed=torch_seed, **(rm_kwargs or {}))
    kw = {"seed": torch_seed, **(rl_kwargs or {})}
    feats = problem.features if use_features else None
    rl = train_rlhf(problem.pi_ref, rm.reward, beta, method=method, features=feats, **kw)
    gap = gap_decomposition(rl.pi, problem.pi_ref, problem.reward, rm.reward, beta)
    return RLHFPipelineResult(prefs, rm, rl, gap, optimal_policy(problem.pi_ref, problem.reward, beta),
                          optimal_policy(problem.pi_ref, rm.reward, beta))
