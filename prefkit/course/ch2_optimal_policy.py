"""Chapter 2: the KL-optimal policy in closed form (notebook 02_optimal_policy.ipynb).

The chapter's experiments (a brute-force maximiser of J, the error of each identity, the two limits of β, the
round-off bound of rebuilding r from Bradley-Terry probabilities), its claims, its tour checks and the checkers of
its two exercises (log Z and π* in log space). The closed form itself is the library's: :mod:`prefkit.closed_form`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from .._validate import as_float_array, check_beta, check_distribution, check_int, check_same_shape
from ..bradley_terry import bt_probability
from ..closed_form import (
    argmax_policy,
    implied_reward,
    kl_divergence,
    kl_regularized_objective,
    log_partition,
    optimal_policy,
    reward_gap_up_to_shift,
    rewards_from_preference_probabilities,
)
from ..problems import random_problem, tajwar_bandit, three_response_toy
from .claims import Chapter
from .exercises import Mistake, exercise

__all__ = [
    "CHAPTER",
    "random_instances",
    "brute_force_objective_gap",
    "gibbs_identity_error",
    "objective_identity_error",
    "beta_small_bound",
    "beta_limit_errors",
    "large_beta_rate",
    "GAP_EXAMPLE",
    "OFF_SUPPORT_EXAMPLE",
    "off_support_mass",
    "implied_reward_shift_error",
    "shift_invariance_error",
    "bt_identifiability_error",
    "float32_overflow_errors",
    "TAJWAR_BETAS",
    "tajwar_window_mass",
    "grade_log_partition",
    "grade_optimal_policy",
]

CHAPTER = Chapter(2, "The KL-optimal policy", "02_optimal_policy.ipynb")

# ------------------------------------------------------------------------------------------------------------------
# claims, in the order of the notebook
# ------------------------------------------------------------------------------------------------------------------
S2 = "2. No optimiser beats the closed form"
S3 = "3. The Gibbs identity"
S4 = "4. The two limits of β"
S5 = "5. Inverting it: the implied reward, and rewards that differ by f(x)"
S6 = "6. Numerics: huge r/β, float32, zeros in π_ref"
S7 = "7. π* against β on the Tajwar et al. (2024) bandit"

BRUTE_EXCESS = CHAPTER.claim("brute_excess", "no BFGS run from random starts finds a higher J than π* (largest excess)",
                             at_most=1e-10, section=S2)
BRUTE_REACH = CHAPTER.claim("brute_reach", "the best BFGS run reaches J(π*) = β·log Z (largest gap)", at_most=1e-6,
                            section=S2)
GIBBS = CHAPTER.claim("gibbs", "the maximum of J equals β·log Z(x) (Gibbs identity): largest error", at_most=1e-12,
                      section=S3, kind="precision")
OBJECTIVE_KL = CHAPTER.claim("objective_kl", "for any π, J(π) = β·log Z − β·KL(π‖π*): largest error", at_most=1e-12,
                             section=S3, kind="precision")
LARGE_BETA = CHAPTER.claim("large_beta", "β = 10⁶: π* is π_ref (largest |π* − π_ref|)", at_most=1e-5, section=S4)
LARGE_BETA_RATE = CHAPTER.claim("large_beta_rate", "|π* − π_ref| falls like 1/β: |error(β=10⁵)/error(β=10⁶) − 10|",
                                at_most=1e-3, section=S4)
SMALL_BETA_BOUND = CHAPTER.claim("small_beta_bound", "small β: |π* − argmax policy| minus its exact bound from the "
                                 "reward gaps", at_most=1e-15, section=S4)
SMALL_BETA_TIGHT = CHAPTER.claim("small_beta_tight", "… and the bound is tight there: error / bound",
                                 within=(0.5, 1.0 + 1e-9), section=S4)
OFF_SUPPORT = CHAPTER.claim("off_support", "a response π_ref never gives keeps π* = 0, even with the best reward",
                            at_most=0.0, section=S4)
IMPLIED_SHIFT = CHAPTER.claim("implied_shift", "r − implied reward of π* = β·log Z(x) on π_ref's support: largest "
                              "error", at_most=1e-11, section=S5, kind="precision")
SHIFT_POLICY = CHAPTER.claim("shift_policy", "r and r + f(x), |f| up to 10⁴, give the same π* (largest difference)",
                             at_most=1e-10, section=S5, kind="precision")
SHIFT_PREFERENCES = CHAPTER.claim("shift_preferences", "r and r + f(x) give the same Bradley-Terry probabilities "
                                  "(largest difference)", at_most=1e-10, section=S5, kind="precision")
BT_IDENTIFIABLE = CHAPTER.claim("bt_identifiable", "BT probabilities rebuild r up to f(x): error / round-off bound "
                                "2ε(1 + e^max|r − r₀|)", at_most=1.0, section=S5, kind="precision")
FLOAT32_SUM = CHAPTER.claim("float32_sum", "float32 inputs, r/β = 10⁶: π* is a distribution (|Σπ* − 1|)",
                            at_most=1e-12, section=S6, kind="precision")
FLOAT32_LOG_Z = CHAPTER.claim("float32_log_z", "float32 inputs, r/β = 10⁶: |log Z − (10⁶ + log ⅓)| (float32 stores ⅓ "
                              "to 2⁻²⁴)", at_most=2.0 ** -23, section=S6, kind="precision")
TAJWAR_MASS = CHAPTER.claim("tajwar_mass", "Tajwar bandit: π*'s mass on actions 60–80 grows as β falls (smallest "
                            "step)", at_least=0.01, section=S7)
TAJWAR_PEAK = CHAPTER.claim("tajwar_peak", "… and at β = 0.05 almost all of it is there (π_ref puts 1.3% there)",
                            at_least=0.999, section=S7)


# ------------------------------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------------------------------
def random_instances(n: int, seed: int = 0):
    """``n`` random problems (3 prompts, 5 responses, about 20% of π_ref zero, rewards of scale 2), seeds
    ``seed``, ``seed + 1``, …: the instances on which the chapter checks the closed form."""
    return [random_problem(3, 5, seed=seed + i, support=0.8, reward_scale=2.0) for i in range(check_int(n, "n", 1))]


def brute_force_objective_gap(pi_ref, reward, beta, *, n_starts: int = 5, seed: int = 0) -> dict:
    """Maximise J over the simplex numerically (BFGS on softmax logits, random starts) and compare with π*.

    For each prompt, ``n_starts`` BFGS runs from logits ~ N(0, 3²) maximise J(softmax(z)) over π_ref's
    support, with J and its gradient π ⊙ (A − E_π[A]), A = r − β(log π − log π_ref), evaluated in log space.

    Returns
    -------
    dict with ``excess`` = max over prompts of J(best found) − J(π*) (≤ 0 up to round-off when π* is right: no
    optimiser beats the maximiser) and ``distance`` = max over prompts of |J(best found) − J(π*)| (the optimiser
    does reach the closed-form value).
    """
    from scipy.optimize import minimize

    check_int(n_starts, "n_starts", 1)
    b = check_beta(beta)
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    p2, r2 = p.reshape(-1, p.shape[-1]), r.reshape(-1, r.shape[-1])
    star = kl_regularized_objective(optimal_policy(p2, r2, b), p2, r2, b)
    rng = np.random.default_rng(seed)
    excess, distance = -np.inf, 0.0
    for x in range(p2.shape[0]):
        on = p2[x] > 0
        px, rx = p2[x, on] / p2[x, on].sum(), r2[x, on]

        def neg_J(z, px=px, rx=rx):
            logq = z - logsumexp(z)
            q = np.exp(logq)
            A = rx - b * (logq - np.log(px))
            J = float(np.sum(q * A))
            return -J, -(q * (A - J))

        best = max(-minimize(neg_J, 3.0 * rng.normal(size=on.sum()), jac=True, method="BFGS",
                             options={"gtol": 1e-12, "maxiter": 5000}).fun for _ in range(n_starts))
        excess = max(excess, best - star[x])
        distance = max(distance, abs(best - star[x]))
    return {"excess": float(excess), "distance": float(distance)}


def gibbs_identity_error(pi_ref, reward, beta) -> float:
    """max over prompts of |J(π*) − β·log Z(x)| (the Gibbs variational principle: max_π J = β·log Z)."""
    J = kl_regularized_objective(optimal_policy(pi_ref, reward, beta), pi_ref, reward, beta)
    return float(np.max(np.abs(J - float(beta) * log_partition(pi_ref, reward, beta))))


def objective_identity_error(pi, pi_ref, reward, beta) -> float:
    """max over prompts of |J(π) − (β·log Z(x) − β·KL(π‖π*))| for a given policy π (any π on π_ref's support)."""
    b = check_beta(beta)
    lhs = kl_regularized_objective(pi, pi_ref, reward, b)
    rhs = b * log_partition(pi_ref, reward, b) - b * kl_divergence(pi, optimal_policy(pi_ref, reward, b))
    return float(np.max(np.abs(lhs - rhs)))


def beta_small_bound(pi_ref, reward, beta) -> float:
    """An exact upper bound on max|π*(β) − argmax policy| from the reward gaps: max over prompts of S(x)/π_ref(M),

        S(x) = Σ_{y ∉ M} π_ref(y|x)·exp(−(max r − r(x, y))/β),

    with M the maximisers of r(x, ·) on π_ref's support. Proof: for y ∉ M, π*(y) = π_ref(y)e^{−g_y/β}/(π_ref(M) + S)
    ≤ S/π_ref(M); for y ∈ M, π_ref(y)/π_ref(M) − π*(y) = π_ref(y)·S/(π_ref(M)(π_ref(M) + S)) ≤ S/π_ref(M).
    So the β → 0 error is ≈ exp(−gap/β) times mass ratios. Computed in log space.
    """
    b = check_beta(beta)
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    masked = np.where(p > 0, r, -np.inf)
    top = masked.max(axis=-1, keepdims=True)
    best = masked == top
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    log_mass_M = logsumexp(np.where(best, logp, -np.inf), axis=-1)
    rest = np.where((p > 0) & ~best, logp - (top - np.where(p > 0, r, 0.0)) / b, -np.inf)
    with np.errstate(divide="ignore"):
        log_S = logsumexp(rest, axis=-1)
    return float(np.max(np.exp(log_S - log_mass_M)))


def beta_limit_errors(pi_ref, reward, *, beta_small: float = 1e-3, beta_large: float = 1e6) -> dict:
    """How close π* is to its limits.

    Returns
    -------
    dict with ``large`` = max|π*(β_large) − π_ref| (β → ∞), ``small`` = max|π*(β_small) − argmax policy| (β → 0:
    π_ref restricted to the maximisers of r, :func:`prefkit.argmax_policy`), and ``small_bound`` =
    :func:`beta_small_bound` at β_small, the exact bound that ``small`` must respect (up to round-off).
    """
    large = optimal_policy(pi_ref, reward, beta_large) - np.asarray(pi_ref)
    small = optimal_policy(pi_ref, reward, beta_small) - argmax_policy(pi_ref, reward)
    return {"large": float(np.max(np.abs(large))), "small": float(np.max(np.abs(small))),
            "small_bound": beta_small_bound(pi_ref, reward, beta_small)}


def large_beta_rate(pi_ref, reward, beta_large: float = 1e5, factor: float = 10.0) -> float:
    """max|π*(β) − π_ref| / max|π*(factor·β) − π_ref| at β = ``beta_large``; → ``factor`` as β → ∞.

    To first order in 1/β, π*(y) − π_ref(y) = π_ref(y)·(r(y) − E_{π_ref}[r])/β + O(1/β²), so the error falls
    like 1/β: the ratio is ``factor``·(1 + O(1/β)).
    """
    b = check_beta(beta_large, "beta_large")
    f = check_beta(factor, "factor")
    p = check_distribution(pi_ref, "pi_ref")
    e1 = np.max(np.abs(optimal_policy(p, reward, b) - p))
    e2 = np.max(np.abs(optimal_policy(p, reward, f * b) - p))
    return float(e1 / e2)


#: (π_ref, r): two best responses 0.014 apart, so at β = 1e-3 the distance to the argmax policy (~3e-7) is far
#: above round-off and the exact bound is tight.
GAP_EXAMPLE = (np.array([[0.5, 0.2, 0.3]]), np.array([[1.0, 0.986, 0.0]]))

#: (π_ref, r): the best response (reward 100) is one π_ref never gives.
OFF_SUPPORT_EXAMPLE = (np.array([[0.5, 0.5, 0.0]]), np.array([[0.0, 1.0, 100.0]]))


def off_support_mass(beta: float = 1e-3) -> float:
    """π*(y) of :data:`OFF_SUPPORT_EXAMPLE`'s off-support response (reward 100, π_ref = 0) at ``beta``: exactly 0."""
    p, r = OFF_SUPPORT_EXAMPLE
    return float(optimal_policy(p, r, beta)[0, 2])


def implied_reward_shift_error(pi_ref, reward, beta) -> float:
    """max over the support of |r − implied_reward(π*) − β·log Z(x)|: the implied reward is r − β·log Z(x)."""
    p = check_distribution(pi_ref, "pi_ref")
    ir = implied_reward(optimal_policy(pi_ref, reward, beta), pi_ref, beta)
    shift = float(beta) * log_partition(pi_ref, reward, beta)[..., None]
    d = np.asarray(reward, dtype=np.float64) - ir - shift
    return float(np.max(np.abs(d[p > 0])))


def shift_invariance_error(pi_ref, reward, f, beta) -> dict:
    """Rewards r and r + f(x) give the same π* and the same Bradley-Terry probabilities.

    ``f`` has shape (n_prompts,) (one shift per prompt). Returns ``policy`` = max|π*(r + f) − π*(r)| and
    ``preferences`` = max over all pairs of |σ(r_i + f − r_j − f) − σ(r_i − r_j)| (Rafailov et al. 2023, Lemma 1).
    """
    r = as_float_array(reward, "reward")
    f_arr = as_float_array(f, "f")
    if f_arr.shape != r.shape[:-1]:
        raise ValueError(f"f must have shape {r.shape[:-1]} (one shift per prompt), got {f_arr.shape}")
    r2 = r + f_arr[..., None]
    pol = np.max(np.abs(optimal_policy(pi_ref, r2, beta) - optimal_policy(pi_ref, r, beta)))
    bt = np.max(np.abs(bt_probability(r2[..., :, None], r2[..., None, :])
                       - bt_probability(r[..., :, None], r[..., None, :])))
    return {"policy": float(pol), "preferences": float(bt)}


def bt_identifiability_error(reward) -> dict:
    """Rebuild r from its BT probabilities against response 0 (:func:`prefkit.rewards_from_preference_probabilities`)
    and measure the distance to r modulo f(x): BT probabilities determine r up to f(x), so it is 0 up to round-off.

    Returns
    -------
    dict with ``error`` = reward_gap_up_to_shift(logit P(y ≻ y_0), r) and ``bound`` = 2ε·(1 + e^{D}), D =
    max |r(x, y) − r(x, y_0)|, ε = float64 epsilon: the round-off of logit at P = σ(D), since P carries a relative
    error of ~ε and d logit/dP = 1/(P(1 − P)).
    """
    r = as_float_array(reward, "reward")
    if r.ndim == 0:
        raise ValueError("reward must have at least one dimension")
    P = bt_probability(r, r[..., :1])
    err = reward_gap_up_to_shift(rewards_from_preference_probabilities(P), r)
    D = float(np.max(np.abs(r - r[..., :1]))) if r.size else 0.0
    return {"error": err, "bound": 2.0 * np.finfo(np.float64).eps * (1.0 + np.exp(D))}


def float32_overflow_errors() -> dict:
    """π* and log Z of the three-response toy (uniform π_ref, r = (1, 0, −1)·10⁶, β = 1) from float32 inputs.

    A naive exp(r/β) overflows at r/β ≈ 710 (float64) or 89 (float32). Returns ``pi``, ``log_Z``, ``sum_error`` =
    |Σπ* − 1| and ``log_Z_error`` = |log Z − (10⁶ + log ⅓)| (the exact value up to O(e^−10⁶); float32 stores ⅓ with
    a relative error ≤ 2⁻²⁴, so log Z may be off by that much). NaN if anything overflowed.
    """
    toy = three_response_toy()
    p32, r32 = toy.pi_ref.astype(np.float32), (toy.reward * 1e6).astype(np.float32)
    pi = optimal_policy(p32, r32, 1.0)
    log_Z = log_partition(p32, r32, 1.0)
    return {"pi": pi, "log_Z": log_Z, "sum_error": float(abs(pi.sum() - 1.0)),
            "log_Z_error": float(abs(log_Z[0] - (1e6 + np.log(1.0 / 3.0))))}


#: β values of the Tajwar-bandit figure, largest first.
TAJWAR_BETAS = (1.0, 0.2, 0.1, 0.05)


def tajwar_window_mass(betas=TAJWAR_BETAS, window=(60, 81)) -> np.ndarray:
    """π*'s mass on actions ``window[0]`` … ``window[1] − 1`` of :func:`prefkit.tajwar_bandit` at each β."""
    bandit = tajwar_bandit()
    lo, hi = window
    return np.array([optimal_policy(bandit.pi_ref, bandit.reward, b)[0, lo:hi].sum() for b in betas])


# ------------------------------------------------------------------------------------------------------------------
# tour checks
# ------------------------------------------------------------------------------------------------------------------
def _instances(ctx):
    return random_instances(2 if ctx.fast else 4, seed=ctx.seed)


@CHAPTER.check("π* maximises J (brute force)")
def tour_brute_force(ctx):
    gaps = [brute_force_objective_gap(P.pi_ref, P.reward, 0.5, n_starts=3 if ctx.fast else 5, seed=ctx.seed + i)
            for i, P in enumerate(_instances(ctx))]
    return {BRUTE_EXCESS: max(g["excess"] for g in gaps), BRUTE_REACH: max(g["distance"] for g in gaps)}


@CHAPTER.check("Gibbs identity")
def tour_gibbs(ctx):
    rng = np.random.default_rng(ctx.seed + 100)
    errs, idents = [], []
    for P in _instances(ctx):
        pi_any = optimal_policy(P.pi_ref, 3.0 * rng.normal(size=P.pi_ref.shape), 1.0)  # some policy on the support
        for beta in (0.05, 0.5, 5.0):
            errs.append(gibbs_identity_error(P.pi_ref, P.reward, beta))
            idents.append(objective_identity_error(pi_any, P.pi_ref, P.reward, beta))
    return {GIBBS: max(errs), OBJECTIVE_KL: max(idents)}


@CHAPTER.check("limits of β")
def tour_beta_limits(ctx):
    P = _instances(ctx)[0]
    # β small relative to the smallest gap g between the best and second-best response, so that the distance to the
    # argmax policy, ≈ e^(−g/β), is small but far above round-off and the bound is exercised; plus the notebook's
    # fixed example (gap 0.014, β = 1e-3).
    top2 = np.sort(np.where(P.pi_ref > 0, P.reward, -np.inf), axis=-1)[:, -2:]
    beta_small = float(np.min(top2[:, 1] - top2[:, 0])) / 15.0
    e = beta_limit_errors(P.pi_ref, P.reward, beta_small=beta_small, beta_large=1e6)
    g = beta_limit_errors(*GAP_EXAMPLE, beta_small=1e-3)
    return {
        LARGE_BETA: e["large"],
        LARGE_BETA_RATE: abs(large_beta_rate(P.pi_ref, P.reward, 1e5, 10.0) - 10.0),
        SMALL_BETA_BOUND: max(e["small"] - e["small_bound"], g["small"] - g["small_bound"]),
        SMALL_BETA_TIGHT: min(e["small"] / e["small_bound"], g["small"] / g["small_bound"]),
        OFF_SUPPORT: off_support_mass(1e-3),
    }


@CHAPTER.check("implied reward and f(x) invariance")
def tour_invariance(ctx):
    from ..plotting.closed_form import plot_optimal_policy

    instances = _instances(ctx)
    P = instances[1]
    f = np.random.default_rng(ctx.seed + 200).uniform(-1e4, 1e4, size=P.n_prompts)
    e = shift_invariance_error(P.pi_ref, P.reward, f, 0.5)
    ctx.savefig(plot_optimal_policy(P.pi_ref, P.reward, (0.1, 0.5, 2.0)), "ch2_optimal_policy.png")
    idents = [bt_identifiability_error(Q.reward) for Q in instances]
    return {
        IMPLIED_SHIFT: max(implied_reward_shift_error(Q.pi_ref, Q.reward, b) for Q in instances
                           for b in (0.05, 0.5, 5.0)),
        SHIFT_POLICY: e["policy"],
        SHIFT_PREFERENCES: e["preferences"],
        BT_IDENTIFIABLE: max(i["error"] / i["bound"] for i in idents),
    }


@CHAPTER.check("numerics and the Tajwar bandit")
def tour_numerics(ctx):
    o = float32_overflow_errors()
    mass = tajwar_window_mass()
    return {FLOAT32_SUM: o["sum_error"], FLOAT32_LOG_Z: o["log_Z_error"], TAJWAR_MASS: float(np.min(np.diff(mass))),
            TAJWAR_PEAK: float(mass[-1])}


# ------------------------------------------------------------------------------------------------------------------
# exercises: log Z and π* in log space
# ------------------------------------------------------------------------------------------------------------------
def _random_cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        yield rng.dirichlet(np.ones(6), size=3), rng.normal(size=(3, 6)), float(rng.uniform(0.1, 3))


# π_ref with zeros (moderate rewards); r/β = 1e6 on π_ref's support; r/β = 1e6 on a response π_ref never gives
ZEROS_CASE = (np.array([[0.5, 0.0, 0.5], [0.2, 0.8, 0.0]]), np.array([[1.0, 50.0, 0.0], [0.0, 1.0, 9.0]]), 0.5)
OVERFLOW_CASE = (np.full((1, 3), 1 / 3), np.array([[1e6, 0.0, -1e6]]), 1.0)
MASK_CASE = (np.array([[0.5, 0.0, 0.5]]), np.array([[0.0, 1e6, 0.0]]), 1.0)


def _call(fn, case, what: str) -> np.ndarray:
    p, r, beta = case
    with np.errstate(all="ignore"):
        out = fn(p.copy(), r.copy(), beta)
    try:
        got = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise Mistake(f"{what} must return an array of numbers, got {type(out).__name__}") from None
    return got


def _close(a, b, tol=1e-10) -> bool:
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and np.allclose(a, b, rtol=tol, atol=tol)


@exercise("ch2.log_partition", stub="my_log_partition", solution="ch2_optimal_policy:log_partition",
          title="log Z in log space")
def grade_log_partition(fn):
    """Check ``fn(pi_ref, reward, beta) -> log_Z`` (one value per prompt) against :func:`prefkit.log_partition`.

    Rejects, naming the mistake: the wrong shape; Z without π_ref (Σ exp(r/β)); r·β instead of r/β; a naive exp that
    overflows at r/β = 1e6; a maximum taken over responses π_ref never gives (log Z = −inf when such a response has
    r/β = 1e6).
    """
    for p, r, beta in _random_cases():
        got = _call(fn, (p, r, beta), "my_log_partition")
        want = log_partition(p, r, beta)
        if got.shape != want.shape:
            raise Mistake(f"returns shape {got.shape} for 3 prompts: log Z has one value per prompt, shape (3,) "
                          "(sum over the responses, the last axis, without keepdims)")
        if _close(got, want):
            continue
        if _close(got, logsumexp(r / beta, axis=-1)):
            raise Mistake("π_ref is missing: Z(x) = Σ_y π_ref(y|x)·exp(r(x, y)/β), not Σ_y exp(r(x, y)/β)")
        if _close(got, logsumexp(np.log(p) + r * beta, axis=-1)):
            raise Mistake("r is multiplied by β: the exponent is r/β")
        raise Mistake(f"log Z is wrong on a random instance (largest error {np.max(np.abs(got - want)):.3g}): it is "
                      "log Σ_y π_ref(y|x)·exp(r(x, y)/β), one value per prompt")
    got = _call(fn, OVERFLOW_CASE, "my_log_partition")
    if not np.all(np.isfinite(got)):
        raise Mistake("log Z is not finite at r/β = 1e6: a naive exp(r/β) overflows (float64 stops near 710); subtract "
                      "the largest r/β before exp (logsumexp)")
    if not _close(got, log_partition(*OVERFLOW_CASE)):
        raise Mistake("log Z is wrong at r/β = 1e6: after subtracting the maximum m, add m back outside the log")
    got = _call(fn, ZEROS_CASE, "my_log_partition")
    if not _close(got, log_partition(*ZEROS_CASE)):
        raise Mistake("log Z is wrong when π_ref has zeros: responses with π_ref(y|x) = 0 contribute nothing to Z")
    got = _call(fn, MASK_CASE, "my_log_partition")
    if not _close(got, log_partition(*MASK_CASE)):
        raise Mistake("a response with π_ref = 0 and r/β = 1e6 breaks log Z (it should be log(0.5 + 0.5) = 0): that "
                      "response must not count, so take the maximum over π_ref's support only (mask π_ref = 0 "
                      "before the max)")


@exercise("ch2.optimal_policy", stub="my_optimal_policy", solution="ch2_optimal_policy:optimal_policy",
          title="π* in log space")
def grade_optimal_policy(fn):
    """Check ``fn(pi_ref, reward, beta) -> pi_star`` against :func:`prefkit.optimal_policy`.

    Rejects, naming the mistake: the wrong shape; softmax(r/β) without π_ref; rows that do not sum to 1 (no
    division by Z); mass where π_ref = 0; a naive exp that overflows at r/β = 1e6; a maximum taken over responses
    π_ref never gives.
    """
    for p, r, beta in _random_cases():
        got = _call(fn, (p, r, beta), "my_optimal_policy")
        want = optimal_policy(p, r, beta)
        if got.shape != want.shape:
            raise Mistake(f"returns shape {got.shape}: π* has the shape of π_ref, {want.shape}")
        if _close(got, want):
            continue
        if _close(got, softmax(r / beta, axis=-1)):
            raise Mistake("π_ref is missing: π* = π_ref·exp(r/β)/Z, not softmax(r/β)")
        if np.all(np.isfinite(got)) and not np.allclose(got.sum(-1), 1.0, atol=1e-9):
            raise Mistake("the rows of π* do not sum to 1: divide by Z(x) = Σ_y π_ref(y|x)·exp(r(x, y)/β)")
        raise Mistake(f"π* is wrong on a random instance (largest error {np.max(np.abs(got - want)):.3g}): it is "
                      "π_ref·exp(r/β)/Z(x)")
    got = _call(fn, OVERFLOW_CASE, "my_optimal_policy")
    if not np.all(np.isfinite(got)):
        raise Mistake("π* is not finite at r/β = 1e6: a naive exp(r/β) overflows; work in log space, log π* = "
                      "log π_ref + r/β − log Z, subtracting the largest r/β before exp")
    if not _close(got, optimal_policy(*OVERFLOW_CASE)):
        raise Mistake("π* is wrong at r/β = 1e6 (it should put all its mass on the first response)")
    p0 = ZEROS_CASE[0]
    got = _call(fn, ZEROS_CASE, "my_optimal_policy")
    if got.shape == p0.shape and np.any(got[p0 == 0] != 0):
        raise Mistake("π* puts mass on a response π_ref never gives: π*(y|x) = 0 wherever π_ref(y|x) = 0, whatever "
                      "the reward (mask π_ref = 0: log 0 = −inf)")
    if not _close(got, optimal_policy(*ZEROS_CASE)):
        raise Mistake("π* is wrong when π_ref has zeros: those responses get 0 and the rest is renormalised")
    got = _call(fn, MASK_CASE, "my_optimal_policy")
    if not _close(got, optimal_policy(*MASK_CASE)):
        raise Mistake("a response with π_ref = 0 and r/β = 1e6 breaks π* (it should be (0.5, 0, 0.5)): take the "
                      "maximum over π_ref's support only (mask π_ref = 0 before the max)")

# --- the slides against what was measured (the notebook's closing table) -------------------------------------------
CHAPTER.slide("π*(y|x) = π_ref(y|x)·exp(r(x,y)/β)/Z(x) maximises E[r] − β·KL(π‖π_ref).",
              ["brute_excess", "brute_reach", "gibbs"], "agrees: no optimiser beats it, and max J = β·log Z")
CHAPTER.slide("Equivalently, r = β·log(π*/π_ref) + β·log Z(x).", ["implied_shift", "shift_policy"],
              "agrees; and r is determined only up to a function of x, which preferences cannot see either")
