"""Reward over-optimisation (Goodhart's law), measured exactly: gold and proxy reward against d = √KL (chapter 8).

Optimise a *proxy* reward (a reward model fitted to finite preference data) and measure the *gold* reward (the
true r*) as the policy moves away from π_ref. Gao et al. 2022 ("Scaling laws for reward model overoptimization")
measure the distance by d = √KL(π‖π_ref) and fit the gold reward gain R(d) = E_π[r*] − E_π_ref[r*] by

    best-of-n:   R_bon(d) = d·(α − β·d)          (peak at d = α / (2β))
    RL:          R_RL(d)  = d·(α − β·log d)      (peak at d = exp(α/β − 1))

Both are linear in (α, β), so :func:`fit_gao` solves them by linear least squares and reports R² honestly.
(Their β is the forms' curvature, not the KL coefficient.) On a tabular problem the curves themselves are exact:
:func:`best_of_n_curve` sweeps n with :func:`prefkit.best_of_n.best_of_n_policy`, and :func:`kl_optimal_curve`
sweeps the KL coefficient of π*_β ∝ π_ref·exp(proxy/β) (:func:`prefkit.closed_form.optimal_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_float_array, check_beta, check_distribution, check_int, check_same_shape
from .best_of_n import best_of_n_kl, best_of_n_policy
from .closed_form import kl_divergence_logspace, optimal_log_policy

__all__ = ["gao_bon", "gao_rl", "GaoFit", "fit_gao", "RewardCurve", "best_of_n_curve", "kl_optimal_curve",
           "policy_curve"]


def gao_bon(d, alpha: float, beta: float) -> np.ndarray:
    """Gao et al. 2022's best-of-n form R_bon(d) = d·(α − β·d), with d = √KL."""
    d = np.asarray(d, dtype=np.float64)
    return d * (alpha - beta * d)


def gao_rl(d, alpha: float, beta: float) -> np.ndarray:
    """Gao et al. 2022's RL form R_RL(d) = d·(α − β·log d), with d = √KL (0 at d = 0)."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


@dataclass(frozen=True)
class GaoFit:
    """A least-squares fit of Gao et al.'s form ``form`` ("bon" or "rl"): α, β, R² and the fitted peak d."""

    form: str
    alpha: float
    beta: float
    r2: float

    @property
    def peak_d(self) -> float:
        """Where the fitted curve peaks: α/(2β) (bon) or exp(α/β − 1) (rl); inf when β ≤ 0 (no peak)."""
        if self.beta <= 0:
            return float("inf")
        if self.form == "bon":
            return self.alpha / (2 * self.beta)
        return float(np.exp(min(self.alpha / self.beta - 1.0, 700.0)))

    def __call__(self, d) -> np.ndarray:
        return (gao_bon if self.form == "bon" else gao_rl)(d, self.alpha, self.beta)


def fit_gao(d, gain, form: str = "bon") -> GaoFit:
    """Fit R(d) = d·(α − β·d) (``form="bon"``) or d·(α − β·log d) (``"rl"``) to (d, gain) by least squares.

    Both forms are linear in (α, β): columns [d, −d²] or [d, −d·log d], no intercept (R(0) = 0).

    Parameters
    ----------
    d : (k,) array of √KL ≥ 0
    gain : (k,) gold reward gains E_π[r*] − E_π_ref[r*]
    form : "bon" or "rl"

    Returns
    -------
    :class:`GaoFit` with R² = 1 − Σ(gain − fit)² / Σ(gain − mean gain)².

    References
    ----------
    Gao, Schulman and Hilton 2022, "Scaling laws for reward model overoptimization" (the forms of their Figure 1 fits).
    """
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    d = as_float_array(d, "d", ndim=1)
    g = as_float_array(gain, "gain", ndim=1)
    check_same_shape(d, g, "d", "gain")
    if np.any(d < 0):
        raise ValueError("d must be >= 0 (it is a square root of a KL)")
    if len(d) < 3:
        raise ValueError(f"need at least 3 points to fit two parameters honestly, got {len(d)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        second = -d**2 if form == "bon" else np.where(d > 0, -d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    A = np.stack([d, second], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(A, g, rcond=None)
    resid = g - A @ np.array([alpha, beta])
    ss_tot = float(np.sum((g - g.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    return GaoFit(form, float(alpha), float(beta), r2)


@dataclass
class RewardCurve:
    """Gold and proxy reward of a family of policies, against their KL from π_ref (means over prompts).

    Attributes
    ----------
    knob : (k,) the swept parameter (n for best-of-n, β for π*_β)
    kl : (k,) mean over prompts of KL(π‖π_ref); ``d`` = √kl
    gold, proxy : (k,) mean over prompts of E_π[r*] and E_π[r_proxy]
    gold_ref, proxy_ref : the same at π_ref
    """

    knob: np.ndarray
    kl: np.ndarray
    gold: np.ndarray
    proxy: np.ndarray
    gold_ref: float
    proxy_ref: float
    method: str = ""

    @property
    def d(self) -> np.ndarray:
        return np.sqrt(self.kl)

    @property
    def gold_gain(self) -> np.ndarray:
        return self.gold - self.gold_ref

    @property
    def proxy_gain(self) -> np.ndarray:
        return self.proxy - self.proxy_ref


def _check_rewards(pi_ref, gold, proxy):
    p = check_distribution(pi_ref, "pi_ref")
    g = as_float_array(gold, "gold")
    q = as_float_array(proxy, "proxy")
    check_same_shape(p, g, "pi_ref", "gold")
    check_same_shape(p, q, "pi_ref", "proxy")
    return p, g, q


def _mean_reward(pi, r) -> float:
    return float(np.mean(np.sum(pi * r, axis=-1)))


def policy_curve(pi_ref, gold, proxy, policies, knob, method: str = "") -> RewardCurve:
    """A :class:`RewardCurve` for given policies (k, n_prompts, n_responses), e.g. DPO fits over a β sweep."""
    p, g, q = _check_rewards(pi_ref, gold, proxy)
    pols = [check_distribution(pi, "policies") for pi in policies]
    with np.errstate(divide="ignore"):
        log_ref = np.log(p)
        kl = np.array([float(np.mean(kl_divergence_logspace(np.log(pi), log_ref))) for pi in pols])
    return RewardCurve(np.asarray(knob), kl, np.array([_mean_reward(pi, g) for pi in pols]),
                       np.array([_mean_reward(pi, q) for pi in pols]), _mean_reward(p, g), _mean_reward(p, q),
                       method)


def best_of_n_curve(pi_ref, gold, proxy, ns) -> RewardCurve:
    """Best-of-n on the ``proxy`` reward for each n in ``ns``: exact gold and proxy reward and exact KL.

    Parameters
    ----------
    pi_ref, gold, proxy : (n_prompts, n_responses) arrays (π_ref distributions; gold = r*, proxy = r_φ)
    ns : iterable of ints ≥ 1
    """
    p, g, q = _check_rewards(pi_ref, gold, proxy)
    ns = np.array([check_int(n, "ns", 1) for n in ns])
    pols = [best_of_n_policy(p, q, int(n)) for n in ns]
    kl = np.array([float(np.mean(best_of_n_kl(p, q, int(n)))) for n in ns])
    return RewardCurve(ns, kl, np.array([_mean_reward(pi, g) for pi in pols]),
                       np.array([_mean_reward(pi, q) for pi in pols]), _mean_reward(p, g), _mean_reward(p, q),
                       "best-of-n")


def kl_optimal_curve(pi_ref, gold, proxy, betas) -> RewardCurve:
    """π*_β ∝ π_ref·exp(proxy/β) for each β in ``betas``: exact gold and proxy reward and exact KL.

    This is what KL-regularised RL on the proxy converges to (Rafailov et al. 2023, App. A.1); Gao et al. 2022's
    RL curves are its finite-training approximation.
    """
    p, g, q = _check_rewards(pi_ref, gold, proxy)
    betas = np.array([check_beta(b, "betas") for b in betas])
    with np.errstate(divide="ignore"):
        log_ref = np.log(p)
    logs = [optimal_log_policy(p, q, b) for b in betas]
    kl = np.array([float(np.mean(kl_divergence_logspace(lp, log_ref))) for lp in logs])
    pols = [np.exp(lp) for lp in logs]
    return RewardCurve(betas, kl, np.array([_mean_reward(pi, g) for pi in pols]),
                       np.array([_mean_reward(pi, q) for pi in pols]), _mean_reward(p, g), _mean_reward(p, q),
                       "π*_β")
