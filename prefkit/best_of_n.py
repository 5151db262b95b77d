"""Best-of-n sampling over discrete responses, exactly (chapter 8).

Best-of-n draws n responses i.i.d. from π_ref(·|x), scores them with a reward r(x, y) and returns the highest,
breaking ties uniformly at random among the drawn responses. Order the distinct reward levels of a prompt's
responses (on π_ref's support) and let F be π_ref's CDF along that order. The best of n lies at level ℓ exactly
when all n draws are at levels ≤ ℓ but not all below ℓ:

    P(best-of-n picks level ℓ) = F(≤ℓ)^n − F(<ℓ)^n

(Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy"). A tie at the top is broken
uniformly over the drawn copies, each of which is a draw from π_ref restricted to the level, so tied responses
share their level's mass in proportion to π_ref:

    π_bon(y|x) = π_ref(y|x) · [F(≤ℓ)^n − F(<ℓ)^n] / [F(≤ℓ) − F(<ℓ)],   ℓ = r(x, y).

The KL divergence to π_ref is then exact, Σ_ℓ P_ℓ·log(P_ℓ / π_ref(ℓ)), and never exceeds the formula used across
the literature, log n − (n − 1)/n (Stiennon et al. 2020, Gao et al. 2022), which Beirami et al. prove is an upper
bound: it is attained only in the continuous limit (no response carries a visible share of π_ref's mass), and it is
far too large when a few responses carry most of the mass (the KL is then at most log(1/ε), ε = π_ref's mass at the
top reward level, since π_bon/π_ref ≤ min(n, 1/ε) everywhere).

Numerics: F(≤ℓ)^n − F(<ℓ)^n is computed from the upper tails, as exp(n·log1p(−T_>ℓ))·(−expm1(n·(log1p(−T_≥ℓ) −
log1p(−T_>ℓ)))), so it stays accurate when both powers are close to 1 or both underflow, for any n.
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import as_float_array, check_distribution, check_int, check_same_shape

__all__ = ["best_of_n_policy", "best_of_n_log_policy", "best_of_n_kl", "best_of_n_kl_bound"]


def _check(pi_ref, reward, n):
    n = check_int(n, "n", 1)
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    return p, r, n


def _levels(p_row: np.ndarray, r_row: np.ndarray, n: int):
    """For one prompt: (on, inverse, level mass, log P(level)) over the distinct reward levels on the support."""
    on = p_row > 0
    q = p_row[on] / p_row[on].sum()  # renormalised: check_distribution allows a sum off by 1e-6
    levels, inverse = np.unique(r_row[on], return_inverse=True)  # ascending
    mass = np.bincount(inverse, weights=q, minlength=len(levels))  # π_ref(level)
    # log F(≤ℓ): from the lower cumulative sum where F is small, from the upper tail T_>ℓ where F is near 1
    # (log1p(−T) keeps 1 − F accurate); F(<ℓ) is F(≤ the level below), so the P_ℓ telescope to exactly 1
    cum_le = np.cumsum(mass)
    tail_gt = np.append(np.cumsum(mass[::-1])[::-1][1:], 0.0)  # T_>ℓ = mass at levels above ℓ
    with np.errstate(divide="ignore"):
        log_le = np.where(cum_le < 0.5, np.log(cum_le), np.log1p(-np.minimum(tail_gt, 1.0)))
    log_lt = np.append(-np.inf, log_le[:-1])  # nothing lies below the lowest level
    # log(F(≤ℓ)^n − F(<ℓ)^n) = n·log F(≤ℓ) + log(1 − exp(n·(log F(<ℓ) − log F(≤ℓ))))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_P = n * log_le + np.log(-np.expm1(n * (log_lt - log_le)))
    log_P = np.where(np.isneginf(log_le), -np.inf, log_P)  # F(≤ℓ) underflowed: P_ℓ = 0
    return on, q, inverse, mass, log_P


def best_of_n_log_policy(pi_ref, reward, n) -> np.ndarray:
    """log π_bon(y|x) of :func:`best_of_n_policy`, computed in log space (−inf off π_ref's support).

    Use it rather than ``np.log(best_of_n_policy(...))`` when entries underflow (large n, many responses).
    Shapes and errors as :func:`best_of_n_policy`.
    """
    p, r, n = _check(pi_ref, reward, n)
    p2, r2 = p.reshape(-1, p.shape[-1]), r.reshape(-1, r.shape[-1])
    out = np.full(p2.shape, -np.inf)
    for i in range(p2.shape[0]):
        on, q, inverse, mass, log_P = _levels(p2[i], r2[i], n)
        out[i, on] = np.log(q) + (log_P - np.log(mass))[inverse]
    return out.reshape(p.shape)


def best_of_n_policy(pi_ref, reward, n) -> np.ndarray:
    """The exact distribution of the best of n draws from π_ref under ``reward`` (ties shared ∝ π_ref).

    π_bon(y|x) = π_ref(y|x)·[F(≤ℓ)^n − F(<ℓ)^n] / [F(≤ℓ) − F(<ℓ)] with ℓ = r(x, y) and F π_ref's CDF along the
    reward order (Beirami et al. 2024). n = 1 gives π_ref; as n → ∞ the mass goes to the top reward level,
    shared ∝ π_ref among tied responses.

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses) array (any leading shape; responses on the last axis), each row a
        distribution. Responses with π_ref = 0 are never drawn (their reward is ignored).
    reward : array of the same shape, finite; only its order within a row matters (exact float ties are ties)
    n : int ≥ 1, the number of draws

    Returns
    -------
    pi_bon : float64 array of the same shape; each row sums to 1.

    Raises
    ------
    ValueError
        naming ``n`` (not an integer ≥ 1), ``pi_ref`` (not a distribution) or ``reward`` (NaN/inf, shape).

    References
    ----------
    Stiennon et al. 2020, "Learning to summarize from human feedback"; Beirami et al. 2024,
    "Theoretical guarantees on the best-of-n alignment policy" (the pmf).
    """
    return np.exp(best_of_n_log_policy(pi_ref, reward, n))


def best_of_n_kl(pi_ref, reward, n) -> np.ndarray:
    """The exact KL(π_bon ‖ π_ref), one value per prompt: Σ_ℓ P_ℓ·log(P_ℓ / π_ref(ℓ)) over reward levels ℓ.

    Within a level π_bon/π_ref is constant, so the sum runs over levels; P_ℓ = F(≤ℓ)^n − F(<ℓ)^n. It never
    exceeds :func:`best_of_n_kl_bound` (Beirami et al. 2024), nor log(1/ε) with ε = π_ref's mass at the top level.

    Parameters
    ----------
    pi_ref, reward, n : as :func:`best_of_n_policy`

    Returns
    -------
    kl : (...) float64 array (the leading shape of ``pi_ref``), ≥ 0
    """
    p, r, n = _check(pi_ref, reward, n)
    p2, r2 = p.reshape(-1, p.shape[-1]), r.reshape(-1, r.shape[-1])
    out = np.empty(p2.shape[0])
    for i in range(p2.shape[0]):
        _, _, _, mass, log_P = _levels(p2[i], r2[i], n)
        P = np.exp(log_P)
        terms = np.where(P > 0, P * (log_P - np.log(mass)), 0.0)
        out[i] = max(float(terms.sum()), 0.0)
    return out.reshape(p.shape[:-1])


def best_of_n_kl_bound(n):
    """log n − (n − 1)/n: the KL of best-of-n as the literature states it, an upper bound on the true KL.

    Stiennon et al. 2020 and Gao et al. 2022 ("Scaling laws for reward model overoptimization")
    use it as the KL of best-of-n. It is exact only for a continuous reward distribution (then F(Y) ~ Beta(n, 1),
    π_bon/π_ref = n·F^(n−1) and E log of it is log n − (n − 1)/n); for discrete responses Beirami et al. 2024
    ("Theoretical guarantees on the best-of-n alignment policy") prove it is an upper bound for every n and π_ref,
    close to the truth when every response carries a small share of π_ref's mass and loose when a few responses
    carry most of it (with two equally likely responses the KL stays below log 2 while the bound grows like log n).
    :func:`best_of_n_kl` gives the exact value.

    Parameters
    ----------
    n : int ≥ 1, or an array of them

    Returns
    -------
    float, or a float64 array of n's shape
    """
    if np.ndim(n) == 0:
        k = check_int(n, "n", 1)
        return math.log(k) - (k - 1) / k  # math.log: n may be a Python int beyond int64
    a = np.asarray(n)
    if a.dtype.kind not in "iu" or np.any(a < 1):
        raise ValueError(f"n must contain integers >= 1, got {n!r}")
    a = a.astype(np.float64)
    return np.log(a) - (a - 1) / a
