"""The KL-regularised objective and its closed-form maximiser (chapter 2).

For one prompt x, classical RLHF's step 2 maximises

    J(π) = E_{y∼π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)).

Its maximiser is the Gibbs policy π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x), with
Z(x) = Σ_y π_ref(y|x)·exp(r(x, y)/β), and the maximum is β·log Z(x) (the Gibbs variational principle; Rafailov
et al. 2023, "Direct Preference Optimization", Appendix A.1). For any π, J(π) = β·log Z(x) − β·KL(π ‖ π*).

Conventions
-----------
* Arrays put responses on the last axis: ``pi_ref[x, y]``, ``reward[x, y]``. Any number of leading axes is
  allowed (a single prompt may be a 1-d array); results keep the leading axes.
* Everything is computed in log space in float64: ``log_Z`` with logsumexp, π* as ``exp(log π_ref + r/β −
  log_Z)``. Results are finite for |r/β| up to 1e6 and for float32 inputs.
* **Where π_ref(y|x) = 0, π*(y|x) = 0** for every reward: the reward there is ignored (it must still be
  finite). Likewise the implied reward is −inf off π_ref's support, and ``kl_divergence(p, q)`` is +inf
  exactly when p puts mass where q has none.
* Bad input raises ``ValueError`` naming the argument: β ≤ 0 (or not finite), a π_ref row that is not a
  distribution, negative probabilities, a shape mismatch, NaN or inf rewards, and r/β overflowing float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._validate import as_float_array, check_beta, check_distribution, check_same_shape, mean_value

__all__ = [
    "optimal_policy",
    "optimal_log_policy",
    "log_partition",
    "implied_reward",
    "kl_divergence",
    "kl_divergence_logspace",
    "kl_regularized_objective",
    "argmax_policy",
    "reward_gap_up_to_shift",
    "rewards_from_preference_probabilities",
    "reward_kl_frontier",
]


def _log(p: np.ndarray) -> np.ndarray:
    """log p with log 0 = −inf, without a warning."""
    with np.errstate(divide="ignore"):
        return np.log(p)


def _check_inputs(pi_ref, reward, beta):
    b = check_beta(beta)
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    with np.errstate(over="ignore"):
        scaled = r / b
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"reward/beta overflows float64 (beta={b!r}); rescale reward or increase beta")
    return p, r, b, scaled


def _shifted_logits(p: np.ndarray, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log π_ref + r/β − m(x), m(x)) with m(x) = max of r/β over π_ref's support; −inf off the support.

    Subtracting m(x) first (allowed: π* is invariant to a per-prompt shift of r) keeps log π_ref from being
    absorbed by round-off when |r/β| is huge compared with it.
    """
    on = p > 0
    m = np.max(np.where(on, scaled, -np.inf), axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = np.where(on, _log(p) + (scaled - m), -np.inf)
    return logits, m


def log_partition(pi_ref, reward, beta) -> np.ndarray:
    """log Z(x) = log Σ_y π_ref(y|x)·exp(r(x, y)/β), by logsumexp over π_ref's support.

    Parameters
    ----------
    pi_ref : (..., n_responses) array, each row a distribution
    reward : (..., n_responses) array of finite rewards r(x, y)
    beta : float > 0

    Returns
    -------
    log_Z : (...) float64 array. β·log_Z is the maximum of the KL-regularised objective (the Gibbs identity,
        Rafailov et al. 2023, App. A.1).

    Raises
    ------
    ValueError
        naming ``beta``, ``pi_ref`` or ``reward`` (see the module docstring).
    """
    p, r, b, z = _check_inputs(pi_ref, reward, beta)  # z = r/β, a fresh array this function owns
    z[p <= 0] = -np.inf  # off π_ref's support
    m = z.max(axis=-1, keepdims=True)
    z -= m  # r/β − m(x) first, so a huge r/β cannot absorb log π_ref's digits
    with np.errstate(divide="ignore"):
        z += np.log(p)  # log π_ref + r/β − m(x) ≤ 0
    np.exp(z, out=z)
    total = z.sum(axis=-1)
    low = total < 1e-280  # every term underflowed (π_ref tiny where r/β is largest): logsumexp for those rows
    with np.errstate(divide="ignore"):
        out = np.log(total) + m[..., 0]
    if np.any(low):
        logits, m_low = _shifted_logits(p[low], r[low] / b)
        out[low] = logsumexp(logits, axis=-1) + m_low[..., 0]
    return out


def optimal_log_policy(pi_ref, reward, beta) -> np.ndarray:
    """log π*(y|x) = log π_ref(y|x) + r(x, y)/β − log Z(x); −inf where π_ref(y|x) = 0.

    Shapes and errors as :func:`optimal_policy`. Use this rather than ``log(optimal_policy(...))`` when π* has
    entries that underflow (small β).
    """
    p, _, _, scaled = _check_inputs(pi_ref, reward, beta)
    logits, _ = _shifted_logits(p, scaled)
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def optimal_policy(pi_ref, reward, beta) -> np.ndarray:
    """The maximiser of E_π[r] − β·KL(π‖π_ref): π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x).

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses) array (any leading shape; responses on the last axis)
        Each row a probability distribution. π* is 0 wherever π_ref is 0.
    reward : array of the same shape, finite
    beta : float > 0

    Returns
    -------
    pi_star : float64 array of the same shape; each row sums to 1.

    Raises
    ------
    ValueError
        naming ``beta`` (≤ 0, not finite, or r/β overflows), ``pi_ref`` (negative entries, a row that is not a
        distribution, NaN) or ``reward`` (NaN/inf, shape mismatch).

    References
    ----------
    Rafailov et al. 2023, "Direct Preference Optimization", Eq. 4 and Appendix A.1.

    Memory: besides the output, one temporary the size of the input (r/β, which the checks need anyway) and a
    boolean mask; the softmax runs in place in the output (log π_ref + r/β − max, exp, divide by the row sum).
    """
    p, r, b, z = _check_inputs(pi_ref, reward, beta)  # z = r/β, a fresh array this function owns
    z[p <= 0] = -np.inf  # off π_ref's support: π* = 0
    z -= z.max(axis=-1, keepdims=True)  # r/β − m(x) first, so a huge r/β cannot absorb log π_ref's digits
    out = _log(p)
    out += z  # log π_ref + r/β − m(x) ≤ 0: exp cannot overflow
    del z
    np.exp(out, out=out)
    total = out.sum(axis=-1, keepdims=True)
    low = total[..., 0] < 1e-280  # every term underflowed or lost digits (π_ref tiny where r/β is largest)
    if np.any(low):  # rare: redo those rows with a logsumexp over the logits
        logits, _ = _shifted_logits(p[low], r[low] / b)
        out[low] = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
        total[low] = 1.0
    out /= total
    return out


def implied_reward(pi, pi_ref, beta) -> np.ndarray:
    """The reward a policy implies: β·log(π(y|x)/π_ref(y|x)).

    For π = π*(r) this is r(x, y) − β·log Z(x): r up to the per-prompt constant β·log Z(x) (Rafailov et al.
    2023, Eq. 5). It is −inf where π(y|x) = 0 (including everywhere off π_ref's support), and finite
    elsewhere.

    Parameters
    ----------
    pi, pi_ref : (..., n_responses) arrays of distributions with the same shape
    beta : float > 0

    Raises
    ------
    ValueError
        naming ``beta``, ``pi`` or ``pi_ref``; also when π puts mass where π_ref has none (the ratio is
        infinite).
    """
    b = check_beta(beta)
    p = check_distribution(pi, "pi")
    q = check_distribution(pi_ref, "pi_ref")
    check_same_shape(p, q, "pi", "pi_ref")
    if np.any((p > 0) & (q == 0)):
        raise ValueError("pi puts mass where pi_ref is 0: the implied reward there is +inf")
    out = np.full(p.shape, -np.inf)
    on = p > 0
    out[on] = b * (np.log(p[on]) - np.log(q[on]))
    return out


def kl_divergence(p, q) -> np.ndarray:
    """KL(p ‖ q) = Σ_y p(y)·log(p(y)/q(y)) along the last axis, one value per row.

    Terms with p(y) = 0 contribute 0. The result is +inf exactly when p puts mass where q is 0 (the value of
    the divergence, not an error); otherwise it is finite and ≥ 0 (clipped at 0 against round-off).

    Parameters
    ----------
    p, q : (..., n_responses) arrays, each row a distribution

    Returns
    -------
    kl : (...) float64 array

    Raises
    ------
    ValueError
        naming ``p`` or ``q``: negative entries, a row that is not a distribution, NaN/inf, shape mismatch.
    """
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    check_same_shape(p, q, "p", "q")
    return kl_divergence_logspace(_log(p), _log(q))


def kl_divergence_logspace(logp, logq) -> np.ndarray:
    """KL(p ‖ q) = Σ_y p(y)·(log p(y) − log q(y)) from log-probabilities, along the last axis, per row.

    The one implementation behind :func:`kl_divergence`; use it directly when p or q has entries that
    underflow in ``exp`` (e.g. π* at small β, from :func:`optimal_log_policy`). ``logp`` = −inf marks p(y) = 0
    (the term is 0); the result is +inf when p(y) > 0 where ``logq`` = −inf; otherwise finite and clipped at 0
    against round-off. Inputs are not checked to be normalised (library-internal callers pass
    log-softmax outputs).

    Parameters
    ----------
    logp, logq : (..., n_responses) float arrays of the same shape (−inf allowed, NaN not)

    Returns
    -------
    kl : (...) float64 array
    """
    logp = as_float_array(logp, "logp", finite=False)
    logq = as_float_array(logq, "logq", finite=False)
    check_same_shape(logp, logq, "logp", "logq")
    if np.any(np.isnan(logp)) or np.any(np.isnan(logq)) or np.any(logp == np.inf) or np.any(logq == np.inf):
        raise ValueError("logp and logq must not contain NaN or +inf")
    on = np.isfinite(logp)
    p = np.exp(np.where(on, logp, -np.inf))
    with np.errstate(invalid="ignore"):
        terms = np.where(on, p * (np.where(on, logp, 0.0) - np.where(on, logq, 0.0)), 0.0)
    bad = on & ~np.isfinite(logq) & (p > 0)
    kl = terms.sum(axis=-1)
    kl = np.where(bad.any(axis=-1), np.inf, kl)
    return np.maximum(kl, 0.0)


def kl_regularized_objective(pi, pi_ref, reward, beta) -> np.ndarray:
    """J(π) = E_{y∼π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)), one value per prompt.

    Its maximum over π is β·log Z(x), attained at π* (:func:`optimal_policy`); for every π,
    J(π) = β·log Z(x) − β·KL(π‖π*). J is −inf when π puts mass where π_ref is 0.

    Parameters
    ----------
    pi, pi_ref, reward : (..., n_responses) arrays of the same shape (pi, pi_ref distributions; reward finite)
    beta : float > 0

    Returns
    -------
    J : (...) float64 array

    Raises
    ------
    ValueError
        naming ``beta``, ``pi``, ``pi_ref`` or ``reward``.

    References
    ----------
    Ouyang et al. 2022, Eq. 2 (without the pretraining term); Rafailov et al. 2023, Eq. 3.
    """
    b = check_beta(beta)
    p = check_distribution(pi, "pi")
    q = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, q, "pi", "pi_ref")
    check_same_shape(p, r, "pi", "reward")
    expected = np.sum(p * r, axis=-1)
    return expected - b * kl_divergence(p, q)


def argmax_policy(pi_ref, reward) -> np.ndarray:
    """The β → 0 limit of π*: π_ref restricted to the maximisers of r on π_ref's support, renormalised.

    π*(y) = π_ref(y)·exp((r(y) − max r)/β)/Σ(...) → π_ref(y)·1[y ∈ M]/π_ref(M), with M the set of maximisers
    (ties detected exactly, ``r == max``); with a unique maximiser this is the one-hot argmax. Shapes as
    :func:`optimal_policy`.
    """
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    masked = np.where(p > 0, r, -np.inf)
    best = np.where(masked == masked.max(axis=-1, keepdims=True), p, 0.0)
    return best / best.sum(axis=-1, keepdims=True)


def reward_gap_up_to_shift(reward, reward_true, pi_ref=None) -> float:
    """How far two rewards are from being equal up to a per-prompt shift f(x).

    Returns max over prompts x of [max_y d(x, y) − min_y d(x, y)] / 2 with d = reward − reward_true, taken
    over π_ref's support when ``pi_ref`` is given. This is min_f max_{x,y} |reward − reward_true − f(x)|: it
    is 0 exactly when the rewards differ by some f(x), i.e. when they give the same π* and the same
    Bradley-Terry probabilities (Rafailov et al. 2023, Lemma 1) — the only thing preferences can identify.

    This is the worst-case (max-norm) distance modulo f(x); :func:`prefkit.reward_model.reward_recovery_error`
    is the RMS distance modulo f(x) (the minimising f differs: mid-range here, mean there). Both are 0 on the
    same pairs of rewards; the RMS one is the natural summary of a fitted reward model, this one the bound to
    state for exact identities.
    """
    a = as_float_array(reward, "reward")
    b = as_float_array(reward_true, "reward_true")
    check_same_shape(a, b, "reward", "reward_true")
    d = a - b
    if pi_ref is not None:
        p = check_distribution(pi_ref, "pi_ref")
        check_same_shape(p, a, "pi_ref", "reward")
        hi = np.where(p > 0, d, -np.inf).max(axis=-1)
        lo = np.where(p > 0, d, np.inf).min(axis=-1)
    else:
        hi, lo = d.max(axis=-1), d.min(axis=-1)
    return float(np.max((hi - lo) / 2.0)) if d.size else 0.0


def rewards_from_preference_probabilities(prob_beats_first) -> np.ndarray:
    """Rebuild a reward from Bradley-Terry probabilities: r̂(x, y) = logit P(y ≻ y_0 | x).

    Under BT, P(y ≻ y_0 | x) = σ(r(x, y) − r(x, y_0)), so logit P = r(x, y) − r(x, y_0): the preference
    probabilities against one reference response y_0 pin r down up to the per-prompt shift f(x) = −r(x, y_0)
    (the converse of Rafailov et al. 2023, Lemma 1).

    Parameters
    ----------
    prob_beats_first : (..., n_responses) array of P(y ≻ y_0 | x), each strictly in (0, 1)

    Returns
    -------
    r_hat : array of the same shape (r̂(x, y_0) = logit(1/2) = 0)
    """
    from scipy.special import logit

    P = as_float_array(prob_beats_first, "prob_beats_first")
    if np.any(P <= 0) or np.any(P >= 1):
        raise ValueError("prob_beats_first must lie strictly in (0, 1); the reward difference is infinite "
                         "otherwise")
    return logit(P)


def reward_kl_frontier(pi_ref, reward, betas) -> dict:
    """The exact reward–KL frontier traced by β: for each β, (KL(π*_β‖π_ref), E_{π*_β}[r]), averaged over
    prompts.

    π*_β maximises E[r] − β·KL, so no policy reaches a higher expected reward at the same KL: the curve is the
    Pareto frontier that every RL method's (KL, reward) point lies on or below.

    Parameters
    ----------
    pi_ref, reward : (n_prompts, n_responses) arrays
    betas : 1-d array of β > 0

    Returns
    -------
    dict with arrays ``beta``, ``kl``, ``reward`` (each of length len(betas)).
    """
    bs = as_float_array(betas, "betas", ndim=1, nonempty=True)
    for b in bs:
        check_beta(b, "betas")
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    kls, rews = [], []
    for beta in bs:
        try:
            log_ps = optimal_log_policy(p, r, beta)
        except ValueError as exc:  # name the argument of this function
            raise ValueError(f"betas: {exc}") from None
        kls.append(mean_value(kl_divergence_logspace(log_ps, _log(p))))
        rews.append(mean_value(np.sum(np.exp(log_ps) * r, axis=-1)))
    return {"beta": bs, "kl": np.array(kls), "reward": np.array(rews)}
