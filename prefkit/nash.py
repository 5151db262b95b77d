"""Preferences that no reward explains: the von Neumann winner and the KL-regularised Nash equilibrium (NLHF).

A preference matrix P over n responses gives P[i, j] = P(y_i ≻ y_j) with P[i, j] + P[j, i] = 1 (so P[i, i] = ½).
Bradley-Terry says P[i, j] = σ(r_i − r_j) for some reward r; a Condorcet cycle (i beats j, j beats k, k beats i,
each with probability > ½) rules every reward out. For a policy (a distribution) π,

    P(y ≻ π) = Σ_j P[y, j]·π_j = (P π)_y,        P(π ≻ π') = πᵀ P π'.

* The **von Neumann winner** (Kreweras 1965; Fishburn 1984; Dudík et al. 2015) is a Nash equilibrium of the
  symmetric two-player zero-sum game with payoff P − ½: max_π min_j Σ_i π_i (P[i, j] − ½). The value is 0, so
  π is a winner iff it is unexploitable: min_j (πᵀ(P − ½))_j ≥ 0, i.e. no response beats it more than half the
  time. :func:`nash_equilibrium` solves the linear program with scipy's HiGHS.
* The **regularised Nash equilibrium** of Munos et al. (2023), "Nash learning from human feedback" (NLHF), §4:
  the game P_β(π ≻ π') = P(π ≻ π') − β·KL(π‖π_ref) + β·KL(π'‖π_ref) has a unique Nash equilibrium π*_β, and it
  is symmetric: π*_β(y) ∝ π_ref(y)·exp(P(y ≻ π*_β)/β), the Gibbs policy of the "reward" P(· ≻ π*_β) at the
  same β. :func:`regularized_nash` solves that fixed point by Newton's method.
* **Nash-MD** (Munos et al. 2023, §6): π_{t+1}(y) ∝ π_t^μ(y)·exp(η·P(y ≻ π_t^μ)), with the geometric mixture
  π_t^μ(y) ∝ π_t(y)^{1−ηβ}·π_ref(y)^{ηβ}. With a constant η its last iterate converges geometrically to within
  O(η/β) of π*_β (their Theorem 1: KL(π*_β‖π_T) ≤ (1 − ηβ)^T KL(π*_β‖π_0) + 2η/β).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.special import logsumexp

from ._validate import as_float_array, check_beta, check_distribution, check_int, check_real
from .closed_form import kl_divergence, log_partition

__all__ = ["nash_equilibrium", "exploitability", "regularized_nash", "nash_md_step", "nash_md"]


def check_preference_matrix(P, name: str = "P", atol: float = 1e-9) -> np.ndarray:
    """P as float64 (n, n) with entries in [0, 1] and P + Pᵀ = 1 (within ``atol``); ValueError naming ``name``."""
    a = as_float_array(P, name, ndim=2)
    n = a.shape[0]
    if a.shape != (n, n) or n < 1:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {a.shape}")
    if np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"{name} must hold probabilities in [0, 1]")
    bad = np.abs(a + a.T - 1.0) > atol
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} is not a preference matrix: {name}[{i}, {j}] + {name}[{j}, {i}] = "
                         f"{a[i, j] + a[j, i]:.6g}, not 1 (P[i, j] is P(y_i ≻ y_j); the diagonal is ½)")
    return a


def _check_nash_beta(beta) -> float:
    """β > 0 with 1/β finite (the game's payoffs P/β must fit in float64)."""
    b = check_beta(beta)
    if not np.isfinite(1.0 / b):
        raise ValueError(f"beta={beta!r} is too small: 1/beta overflows float64")
    return b


def _check_policy(pi, n: int, name: str) -> np.ndarray:
    p = check_distribution(pi, name)
    if p.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match P, got {p.shape}")
    return p


def exploitability(P, pi, *, pi_ref=None, beta=None) -> float:
    """How much the best reply beats π: max_j P(y_j ≻ π) − ½ = −min_j (πᵀ(P − ½))_j. Zero iff π is a winner.

    With ``pi_ref`` and ``beta``: the same for the regularised game of Munos et al. (2023),

        max_π' P_β(π' ≻ π) − ½ = β·log Σ_y π_ref(y)·exp(P(y ≻ π)/β) + β·KL(π‖π_ref) − ½,

    (the max over π' is the Gibbs identity of chapter 2), which is ≥ 0 and zero exactly at π*_β.

    Parameters
    ----------
    P : (n, n) preference matrix, P[i, j] = P(y_i ≻ y_j).
    pi : (n,) distribution.
    pi_ref : (n,) distribution, with ``beta`` > 0; both or neither.

    Returns
    -------
    float ≥ 0 (up to round-off).
    """
    A = check_preference_matrix(P)
    n = A.shape[0]
    p = _check_policy(pi, n, "pi")
    wins = A @ p  # (n,): P(y ≻ π) for each y
    if (pi_ref is None) != (beta is None):
        raise ValueError("give both pi_ref and beta (the regularised game), or neither")
    if beta is None:
        return float(np.max(wins) - 0.5)
    b = _check_nash_beta(beta)
    mu = _check_policy(pi_ref, n, "pi_ref")
    return float(b * log_partition(mu, wins, b) + b * kl_divergence(p, mu) - 0.5)


def nash_equilibrium(P) -> np.ndarray:
    """The von Neumann winner: a maximin strategy of the symmetric zero-sum game with payoff P − ½.

    Solves the linear program max_{π, v} v subject to Σ_i π_i (P[i, j] − ½) ≥ v for every j, π ≥ 0, Σπ = 1
    (scipy ``linprog``, HiGHS), then polishes it: on the support S of π and the set J of replies that tie with
    it, π_S solves the linear equations Σ_{i∈S} π_i (P[i, j] − ½) = 0 (j ∈ J), Σπ_S = 1 exactly (least
    squares), kept if it is at least as unexploitable. Rock-paper-scissors gives the uniform policy to
    round-off.

    Parameters
    ----------
    P : (n, n) preference matrix, P[i, j] + P[j, i] = 1.

    Returns
    -------
    (n,) distribution π with ``exploitability(P, π)`` ≈ 0 (the game's value is 0). If the winner is not
    unique (a degenerate P) the LP returns one of them.

    References
    ----------
    Kreweras (1965); Fishburn (1984), "Probabilistic social choice based on simple voting comparisons";
    Dudík et al. (2015), "Contextual dueling bandits"; Munos et al. (2023), "Nash learning from human feedback".
    """
    A = check_preference_matrix(P) - 0.5
    n = A.shape[0]
    if n == 1:
        return np.ones(1)
    c = np.zeros(n + 1)
    c[-1] = -1.0  # maximise v
    a_ub = np.hstack([-A.T, np.ones((n, 1))])  # v − Σ_i π_i A[i, j] ≤ 0
    a_eq = np.concatenate([np.ones(n), [0.0]])[None, :]
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0],
                  bounds=[(0, None)] * n + [(None, None)], method="highs")
    if res.status != 0:  # pragma: no cover - the LP is always feasible and bounded
        raise RuntimeError(f"linprog failed: {res.message}")
    pi = np.clip(res.x[:n], 0.0, None)
    pi /= pi.sum()
    # polish on the support
    S = np.flatnonzero(pi > 1e-9)
    J = np.flatnonzero(pi @ A < 1e-8)
    M = np.vstack([A[np.ix_(S, J)].T, np.ones((1, len(S)))])
    rhs = np.concatenate([np.zeros(len(J)), [1.0]])
    sol, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    if np.all(sol >= 0):
        cand = np.zeros(n)
        cand[S] = sol
        cand /= cand.sum()
        if np.min(cand @ A) >= np.min(pi @ A) - 1e-15:
            pi = cand
    return pi


def regularized_nash(P, pi_ref, beta, *, tol: float = 1e-13, max_iter: int = 200) -> np.ndarray:
    """The Nash equilibrium π*_β of the KL-regularised preference game (Munos et al. 2023, NLHF, §4).

    π*_β is the unique π with

        π(y) = π_ref(y)·exp(P(y ≻ π)/β) / Σ_y' π_ref(y')·exp(P(y' ≻ π)/β),      P(y ≻ π) = (P π)_y,

    i.e. π*_β is chapter 2's optimal policy for the reward P(· ≻ π*_β) at the same β. Solved by Newton's method
    on u = log π over π_ref's support (the equations u − log π_ref − P e^u/β − c = 0, Σ e^u = 1), with a
    backtracking line search on the residual and a continuation from β' = max(β, 1) down to β (halving). Off
    π_ref's support π*_β is 0.

    Parameters
    ----------
    P : (n, n) preference matrix; pi_ref : (n,) distribution; beta : float > 0.
    tol : stop when the largest residual |u − log π_ref − Pπ/β − c| is below tol.

    Returns
    -------
    (n,) distribution. ``exploitability(P, π, pi_ref=pi_ref, beta=beta)`` is 0 up to round-off.
    """
    A = check_preference_matrix(P)
    n = A.shape[0]
    mu = _check_policy(pi_ref, n, "pi_ref")
    b = _check_nash_beta(beta)
    tol = check_real(tol, "tol", lo=0.0, lo_open=True)
    check_int(max_iter, "max_iter", 1)
    on = np.flatnonzero(mu > 0)
    Ps, log_mu = A[np.ix_(on, on)], np.log(mu[on])
    s = len(on)
    u = log_mu.copy()
    betas = [b]
    while betas[-1] < 1.0:
        betas.append(2 * betas[-1])
    for bt in reversed(betas):
        def resid(u, bt=bt):
            r = u - log_mu - Ps @ np.exp(u) / bt
            return r - r.mean(), np.exp(logsumexp(u)) - 1.0  # c = the mean removes the free constant

        r, e = resid(u)
        # the residual holds P·π/β, of size 1/β: rounding alone leaves ~eps/β, so the test is relative to it
        tol_bt = tol * max(1.0, 1.0 / bt)
        for _ in range(max_iter):
            norm = max(float(np.max(np.abs(r))), abs(e))
            if norm < tol_bt:
                break
            pi = np.exp(u)
            # Jacobian of (u − log μ − P e^u/β − c, Σ e^u − 1) in (u, c)
            J = np.zeros((s + 1, s + 1))
            J[:s, :s] = np.eye(s) - Ps * pi[None, :] / bt
            J[:s, s] = -1.0
            J[s, :s] = pi
            full = u - log_mu - Ps @ pi / bt
            c = float(full.mean())
            step = np.linalg.solve(J, -np.concatenate([full - c, [e]]))
            du = step[:s]
            t = 1.0
            while t > 1e-12:
                r_new, e_new = resid(u + t * du)
                if max(float(np.max(np.abs(r_new))), abs(e_new)) < (1 - 1e-4 * t) * norm:
                    break
                t *= 0.5
            else:
                break  # no step lowers the residual: round-off level for this β
            u = u + t * du
            r, e = r_new, e_new
        u = u - logsumexp(u)
    out = np.zeros(n)
    out[on] = np.exp(u)
    return out / out.sum()


def nash_md_step(pi, P, pi_ref, beta, eta) -> np.ndarray:
    """One Nash-MD step (Munos et al. 2023, §6, Eq. 9), computed in log space:

        π^μ(y) ∝ π(y)^{1−ηβ}·π_ref(y)^{ηβ}          (geometric mixture with the reference)
        π_next(y) ∝ π^μ(y)·exp(η·P(y ≻ π^μ))          (mirror-descent step against the mixture)

    Parameters
    ----------
    pi, pi_ref : (n,) distributions (π's support within π_ref's); P : (n, n) preference matrix;
    beta : float > 0; eta : step size with 0 < η·β ≤ 1.

    Returns
    -------
    (n,) distribution π_next.
    """
    A = check_preference_matrix(P)
    n = A.shape[0]
    p = _check_policy(pi, n, "pi")
    mu = _check_policy(pi_ref, n, "pi_ref")
    b = _check_nash_beta(beta)
    eta = check_real(eta, "eta", lo=0.0, lo_open=True)
    if eta * b > 1 + 1e-12:
        raise ValueError(f"eta·beta must be <= 1 (the mixture weight), got eta={eta!r}, beta={b!r}")
    return _md_step(p, A, mu, b, eta)


def _md_step(p, A, mu, b, eta):
    with np.errstate(divide="ignore"):
        lp, lmu = np.log(p), np.log(mu)
    mix = (1 - eta * b) * np.where(p > 0, lp, -np.inf) + eta * b * lmu
    if eta * b == 1.0:
        mix = lmu.copy()
    mix = np.where(mu > 0, mix, -np.inf)
    mix -= logsumexp(mix)
    logits = mix + eta * (A @ np.exp(mix))
    return np.exp(logits - logsumexp(logits))


def nash_md(P, pi_ref, beta, *, eta, steps: int, pi0=None) -> np.ndarray:
    """Nash-MD iterates π_0, π_1, …, π_steps (:func:`nash_md_step`), exact (full information, no sampling).

    Parameters
    ----------
    P, pi_ref, beta : as :func:`regularized_nash`.
    eta : a step size (constant), or an array of ``steps`` step sizes η_0, η_1, …; each with 0 < η·β ≤ 1.
        With a constant η the iterates converge geometrically, at rate about 1 − ηβ, to a point O(η/β) from
        π*_β; η_t = 1/(β(t + 1)) removes that bias at the price of a rate 1/t (Munos et al. 2023, Theorem 1).
    steps : number of steps ≥ 0.
    pi0 : (n,) start, default π_ref.

    Returns
    -------
    (steps + 1, n) array of iterates.
    """
    A = check_preference_matrix(P)
    n = A.shape[0]
    mu = _check_policy(pi_ref, n, "pi_ref")
    b = _check_nash_beta(beta)
    steps = check_int(steps, "steps", 0)
    etas = as_float_array(eta, "eta", ndim=(0, 1))
    if etas.ndim == 0:
        etas = np.full(steps, float(etas))
    if etas.shape != (steps,):
        raise ValueError(f"eta must be a number or an array of {steps} step sizes, got shape {etas.shape}")
    if np.any(etas <= 0) or np.any(etas * b > 1 + 1e-12):
        raise ValueError("each eta must satisfy 0 < eta·beta <= 1")
    p = mu.copy() if pi0 is None else _check_policy(pi0, n, "pi0")
    out = np.zeros((steps + 1, n))
    out[0] = p
    for t in range(steps):
        p = _md_step(p, A, mu, b, float(etas[t]))
        out[t + 1] = p
    return out
