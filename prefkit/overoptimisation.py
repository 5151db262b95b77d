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

from ._validate import (
    as_float_array,
    check_beta,
    check_distribution,
    check_int,
    check_real,
    check_same_shape,
    finite_result,
    mean_value,
    to_numpy,
)
from .best_of_n import best_of_n_kl, best_of_n_policy
from .closed_form import kl_divergence_logspace, optimal_log_policy

__all__ = ["gao_bon", "gao_rl", "GaoFit", "fit_gao", "RewardCurve", "best_of_n_curve", "kl_optimal_curve",
           "policy_curve"]


def gao_bon(d, alpha: float, beta: float) -> np.ndarray:
    """Gao et al. 2022's best-of-n form R_bon(d) = d·(α − β·d), with d = √KL."""
    d, alpha, beta = _check_gao(d, alpha, beta)
    with np.errstate(over="ignore", invalid="ignore"):
        out = d * (alpha - beta * d)
    return finite_result(out, "gao_bon overflows float64: d, alpha or beta too large")


def gao_rl(d, alpha: float, beta: float) -> np.ndarray:
    """Gao et al. 2022's RL form R_RL(d) = d·(α − β·log d), with d = √KL (0 at d = 0)."""
    d, alpha, beta = _check_gao(d, alpha, beta)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)
    return finite_result(out, "gao_rl overflows float64: d, alpha or beta too large")


def _check_gao(d, alpha, beta):
    d = as_float_array(d, "d")
    if np.any(d < 0):
        raise ValueError("d must be >= 0 (it is a square root of a KL)")
    return d, check_real(alpha, "alpha"), check_real(beta, "beta")


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
    # rescale the columns and the gains to a largest entry of 1, so no sum of squares overflows or underflows
    a_scale = np.max(np.abs(A), axis=0)
    a_scale[a_scale == 0] = 1.0
    g_scale = float(np.max(np.abs(g)))
    if g_scale == 0 or np.all(g == g[0]):
        raise ValueError("gain is constant: R² is undefined (nothing to fit)")
    g1 = g / g_scale
    (a1, b1), *_ = np.linalg.lstsq(A / a_scale, g1, rcond=None)
    resid = g1 - (A / a_scale) @ np.array([a1, b1])
    ss_tot = float(np.sum((g1 - g1.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot
    with np.errstate(over="ignore"):
        alpha, beta = a1 * g_scale / a_scale[0], b1 * g_scale / a_scale[1]
    finite_result([alpha, beta, r2], "the fitted alpha, beta overflow float64: gain too large for d")
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
    return mean_value(np.sum(pi * r, axis=-1))


def _sequence(x, name):
    """A non-empty list of the entries of ``x`` (a list, tuple or array); ValueError naming ``name``."""
    x = to_numpy(x)
    if isinstance(x, np.ndarray):
        x = list(x) if x.ndim else None
    if not isinstance(x, (list, tuple)) or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty sequence, got {x!r}")
    return list(x)


def policy_curve(pi_ref, gold, proxy, policies, knob, method: str = "") -> RewardCurve:
    """A :class:`RewardCurve` for given policies (k, n_prompts, n_responses), e.g. DPO fits over a β sweep."""
    p, g, q = _check_rewards(pi_ref, gold, proxy)
    pols = [check_distribution(pi, "policies") for pi in _sequence(policies, "policies")]
    for pi in pols:
        check_same_shape(pi, p, "policies", "pi_ref")
    knob = as_float_array(knob, "knob", ndim=1)
    if knob.shape != (len(pols),):
        raise ValueError(f"knob must have one value per policy ({len(pols)}), got shape {knob.shape}")
    with np.errstate(divide="ignore"):
        log_ref = np.log(p)
        kl = np.array([mean_value(kl_divergence_logspace(np.log(pi), log_ref)) for pi in pols])
    if not np.all(np.isfinite(kl)):
        raise ValueError("policies put mass where pi_ref is 0: their KL from pi_ref is infinite")
    return RewardCurve(knob, kl, np.array([_mean_reward(pi, g) for pi in pols]),
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
    ns = np.array([check_int(n, "ns", 1) for n in _sequence(ns, "ns")])
    pols = [best_of_n_policy(p, q, int(n)) for n in ns]
    kl = np.array([mean_value(best_of_n_kl(p, q, int(n))) for n in ns])
    return RewardCurve(ns, kl, np.array([_mean_reward(pi, g) for pi in pols]),
                       np.array([_mean_reward(pi, q) for pi in pols]), _mean_reward(p, g), _mean_reward(p, q),
                       "best-of-n")


def kl_optimal_curve(pi_ref, gold, proxy, betas) -> RewardCurve:
    """π*_β ∝ π_ref·exp(proxy/β) for each β in ``betas``: exact gold and proxy reward and exact KL.

    This is what KL-regularised RL on the proxy converges to (Rafailov et al. 2023, App. A.1); Gao et al. 2022's
    RL curves are its finite-training approximation.
    """
    p, g, q = _check_rewards(pi_ref, gold, proxy)
    betas = np.array([check_beta(b, "betas") for b in _sequence(betas, "betas")])
    with np.errstate(divide="ignore"):
        log_ref = np.log(p)
    try:
        logs = [optimal_log_policy(p, q, b) for b in betas]
    except ValueError as exc:  # name this function's arguments (proxy plays the reward)
        raise ValueError(f"proxy/betas: {exc}") from None
    kl = np.array([mean_value(kl_divergence_logspace(lp, log_ref)) for lp in logs])
    pols = [np.exp(lp) for lp in logs]
    return RewardCurve(betas, kl, np.array([_mean_reward(pi, g) for pi in pols]),
                       np.array([_mean_reward(pi, q) for pi in pols]), _mean_reward(p, g), _mean_reward(p, q),
                       "π*_β")
