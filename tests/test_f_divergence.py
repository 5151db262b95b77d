"""prefkit.f_divergence: the f-regularised optimum and f-DPO (Wang et al. 2023) against exact answers.

Each test names, in a comment, the plausible bug it catches.
"""

import warnings

import numpy as np
import pytest
import torch

from prefkit.closed_form import kl_divergence, optimal_policy
from prefkit.course.ch4_dpo import brute_force_f_optimum  # SLSQP on the simplex, no closed form
from prefkit.dpo import total_variation
from prefkit.f_divergence import (
    F_DIVERGENCES,
    f_divergence_value,
    f_dpo_loss,
    f_function,
    f_normalizer,
    f_optimal_policy,
    f_regularized_objective,
    f_score,
    fit_f_dpo,
)
from prefkit.losses import preference_loss

# (f_divergence_type, alpha): TRL's four, with several alphas (TRL's coefficient; a <= 1)
CASES = [("reverse_kl", 0.5), ("forward_kl", 0.5), ("js_divergence", 0.5), ("alpha_divergence", 0.5),
         ("alpha_divergence", 0.2), ("alpha_divergence", 0.9), ("alpha_divergence", -0.5)]
IDS = [f"{f}-{a}" for f, a in CASES]


def _problem(seed, n_prompts=3, n=5):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(n), n_prompts), rng.normal(0.0, 1.5, (n_prompts, n))


def _exact_bt_data(reward):
    """Every ordered pair of every prompt, weighted by its Bradley-Terry probability under `reward`."""
    n_prompts, n = reward.shape
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    prefs = np.array([(x, a, b) for x in range(n_prompts) for a, b in zip(i, j, strict=True)])
    gap = reward[prefs[:, 0], prefs[:, 1]] - reward[prefs[:, 0], prefs[:, 2]]
    return prefs, 1.0 / (1.0 + np.exp(-gap))


# --- the generator f and its derivative ----------------------------------------------------------------------

@pytest.mark.parametrize("f,a", CASES, ids=IDS)
def test_score_is_the_derivative_of_f(f, a):
    # catches: f and f' from different conventions (TRL's a vs Wang et al.'s alpha = 1 - a), a sign slip, a
    # missing normalisation f(1) = f'(1) = 0 (which would shift every score by a constant and break IPO per token)
    u = np.geomspace(0.05, 20.0, 41)
    h = 1e-6 * u
    fd = (f_function(u + h, f, a) - f_function(u - h, f, a)) / (2 * h)
    np.testing.assert_allclose(f_score(np.log(u), f, a), fd, rtol=1e-7, atol=1e-8)
    assert abs(float(f_function(1.0, f, a))) < 1e-15 and abs(float(f_score(0.0, f, a))) < 1e-15
    assert np.all(np.diff(f_score(np.log(u), f, a)) > 0)  # f convex: f' increasing


def test_scores_are_trls_formulas():
    # catches: a score that differs from TRL 1.16's by a constant or a convention (written out from TRL's code;
    # tests/test_losses_trl.py runs TRL itself)
    ell = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(f_score(ell, "reverse_kl"), ell, rtol=1e-15)
    np.testing.assert_allclose(f_score(ell, "forward_kl"), 1 - np.exp(-ell), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(f_score(ell, "js_divergence"), np.log(2) - np.logaddexp(0, -ell), rtol=1e-13,
                               atol=1e-15)
    for a in (0.5, 0.2, -0.5):
        np.testing.assert_allclose(f_score(ell, "alpha_divergence", a), (np.exp((a - 1) * ell) - 1) / (a - 1),
                                   rtol=1e-13, atol=1e-15)


def test_divergences_are_the_named_ones():
    # catches: the generator of the wrong divergence (e.g. forward and reverse KL swapped, JS without the factor 2)
    pi_ref, _ = _problem(1)
    pi = np.random.default_rng(2).dirichlet(np.ones(5), 3)
    np.testing.assert_allclose(f_divergence_value(pi, pi_ref, "reverse_kl"), kl_divergence(pi, pi_ref), rtol=1e-12)
    np.testing.assert_allclose(f_divergence_value(pi, pi_ref, "forward_kl"), kl_divergence(pi_ref, pi), rtol=1e-12)
    m = (pi + pi_ref) / 2
    np.testing.assert_allclose(f_divergence_value(pi, pi_ref, "js_divergence"),
                               kl_divergence(pi, m) + kl_divergence(pi_ref, m), rtol=1e-12)
    np.testing.assert_allclose(f_divergence_value(pi, pi_ref, "alpha_divergence", 0.0), kl_divergence(pi_ref, pi),
                               rtol=1e-12)
    # Wang et al.'s alpha-divergence with alpha_paper = 1 - a: (1 - sum pi^a pi_ref^(1-a)) / (a (1 - a))
    a = 0.3
    want = (1 - (pi ** a * pi_ref ** (1 - a)).sum(-1)) / (a * (1 - a))
    np.testing.assert_allclose(f_divergence_value(pi, pi_ref, "alpha_divergence", a), want, rtol=1e-12)


# --- the f-regularised optimum --------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.2, 1.0, 5.0])
def test_reverse_kl_optimum_is_the_gibbs_policy(beta):
    # catches: the reverse-KL branch not being chapter 2's closed form; alpha -> 1 not reaching the reverse KL;
    # alpha = 0 not being the forward KL
    pi_ref, r = _problem(3)
    pi_star = optimal_policy(pi_ref, r, beta)
    assert total_variation(f_optimal_policy(pi_ref, r, beta, "reverse_kl"), pi_star) < 1e-14
    assert total_variation(f_optimal_policy(pi_ref, r, beta, "alpha_divergence", 1.0), pi_star) < 1e-14
    assert total_variation(f_optimal_policy(pi_ref, r, beta, "alpha_divergence", 1 - 1e-5), pi_star) < 1e-4
    assert total_variation(f_optimal_policy(pi_ref, r, beta, "alpha_divergence", 0.0),
                           f_optimal_policy(pi_ref, r, beta, "forward_kl")) < 1e-12


@pytest.mark.parametrize("f,a", CASES, ids=IDS)
@pytest.mark.parametrize("beta", [0.2, 1.0, 5.0])
def test_optimum_satisfies_the_stationarity_condition(f, a, beta):
    # catches: a wrong inverse of f', a root-finder stopping early, the normaliser solved for the wrong equation
    pi_ref, r = _problem(4)
    pi = f_optimal_policy(pi_ref, r, beta, f, a)
    lam = f_normalizer(pi_ref, r, beta, f, a)
    np.testing.assert_allclose(pi.sum(-1), 1.0, rtol=1e-14)
    # r(y) − β f'(π(y)/π_ref(y)) = λ(x) for every y (Wang et al. 2023, Theorem 1)
    resid = r - beta * f_score(np.log(pi / pi_ref), f, a) - lam[:, None]
    assert np.max(np.abs(resid)) < 1e-9 * max(1.0, beta)


@pytest.mark.parametrize("f,a", CASES, ids=IDS)
@pytest.mark.parametrize("beta", [0.3, 2.0])
def test_optimum_maximises_the_f_regularised_objective(f, a, beta):
    # catches: normalising π_ref·(f')^{-1}(r/β) by its sum instead of solving for λ(x) (right only for the
    # reverse KL), and any other stationary point that is not the maximiser
    pi_ref, r = _problem(5, n_prompts=2, n=4)
    pi = f_optimal_policy(pi_ref, r, beta, f, a)
    j_opt = f_regularized_objective(pi, pi_ref, r, beta, f, a)
    rng = np.random.default_rng(6)
    for _ in range(200):  # random directions on the simplex, large and small steps
        q = rng.dirichlet(np.ones(4) * rng.choice([0.3, 1.0, 5.0]), 2)
        for t in (1e-4, 1e-2, 0.3, 1.0):
            assert np.all(f_regularized_objective((1 - t) * pi + t * q, pi_ref, r, beta, f, a) <= j_opt + 1e-13)
    for x in range(2):  # a generic constrained optimiser, which knows nothing of the closed form
        q = brute_force_f_optimum(pi_ref[x], r[x], beta, f, a)
        j_brute = f_regularized_objective(q, pi_ref[x], r[x], beta, f, a)[0]
        assert j_brute <= j_opt[x] + 1e-12
        assert j_opt[x] - j_brute < 1e-8
        assert total_variation(q, pi[x]) < 1e-4
    if f != "reverse_kl":  # the plausible bug above really loses objective here
        g = {"forward_kl": lambda v: 1 / (1 - v), "js_divergence": lambda v: np.exp(v) / (2 - np.exp(v)),
             "alpha_divergence": lambda v: (1 + (a - 1) * v) ** (1 / (a - 1))}[f]
        v = (r - r.max(-1, keepdims=True)) / beta  # inside the domain of (f')^{-1}
        naive = pi_ref * g(v)
        naive /= naive.sum(-1, keepdims=True)
        assert np.max(j_opt - f_regularized_objective(naive, pi_ref, r, beta, f, a)) > 1e-6


def test_forward_kl_optimum_leaves_the_reference_support():
    # catches: assuming π ≪ π_ref for every f. The forward KL charges only β·f'(∞) = β per unit of mass where
    # π_ref = 0, so a response outside the support with a high enough reward takes mass; the reverse KL never.
    pi_ref = np.array([[0.5, 0.5, 0.0]])
    r = np.array([[0.0, 0.2, 3.0]])
    beta = 1.0
    for f, a in [("forward_kl", 0.5), ("js_divergence", 0.5), ("alpha_divergence", 0.5)]:
        pi = f_optimal_policy(pi_ref, r, beta, f, a)
        assert pi[0, 2] > 0.1
        q = brute_force_f_optimum(pi_ref[0], r[0], beta, f, a)
        assert total_variation(q, pi[0]) < 1e-4
        j = f_regularized_objective(pi, pi_ref, r, beta, f, a)[0]
        assert f_regularized_objective(q, pi_ref, r, beta, f, a)[0] <= j + 1e-12
        on_support = f_optimal_policy(pi_ref[:, :2], r[:, :2], beta, f, a)
        assert j > f_regularized_objective(np.append(on_support, 0.0), pi_ref, r, beta, f, a)[0] + 1e-3
    assert f_optimal_policy(pi_ref, r, beta, "reverse_kl")[0, 2] == 0.0
    # f-DPO sees only log-ratios on the support: on exact data it lands on the support-restricted stationary point,
    # TV 0.65 from the forward-KL optimum (catches: claiming f-DPO recovers the optimum whatever π_ref's zeros)
    prefs, w = _exact_bt_data(r[:, :2])
    fit = fit_f_dpo(pi_ref, prefs, beta, weights=w, f_divergence_type="forward_kl")
    restricted = np.append(f_optimal_policy(pi_ref[:, :2], r[:, :2], beta, "forward_kl"), 0.0)
    assert total_variation(fit.policy, restricted) < 1e-8
    assert total_variation(fit.policy, f_optimal_policy(pi_ref, r, beta, "forward_kl")) > 0.5
    # a low reward outside the support takes no mass
    assert f_optimal_policy(pi_ref, np.array([[0.0, 0.2, 0.5]]), beta, "forward_kl")[0, 2] == 0.0


# --- f-DPO ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("f,a", CASES, ids=IDS)
@pytest.mark.parametrize("beta", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_f_dpo_on_exact_data_recovers_the_f_optimum(f, a, beta, seed):
    # the f-analogue of Rafailov et al.'s Theorem 1 (chapter 4 for the reverse KL). Catches: an implied reward
    # other than β·f'(π/π_ref) (e.g. the log-ratio for every f: the fit would land on π*, measured TV 0.01-0.1
    # away), a score with the wrong α convention, a loss whose minimiser is not the f-optimum. Measured TV
    # <= 3e-8 over these cases.
    pi_ref, r = _problem(10 + seed)
    prefs, w = _exact_bt_data(r)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fit must converge
        fit = fit_f_dpo(pi_ref, prefs, beta, weights=w, f_divergence_type=f, alpha=a)
    target = f_optimal_policy(pi_ref, r, beta, f, a)
    assert total_variation(fit.policy, target) < 1e-6
    if f != "reverse_kl":  # the recovered policy is not chapter 2's π*: the divergence matters
        assert total_variation(target, optimal_policy(pi_ref, r, beta)) > 1e-3
    assert len(repr(fit)) < 200


def test_f_dpo_loss_reverse_kl_is_preference_loss_and_sft_ignores_f():
    # catches: the reverse KL not being plain DPO; sft (which TRL allows with any f) being transformed
    rng = np.random.default_rng(0)
    lw, ll, rw, rl = (torch.as_tensor(-np.abs(rng.normal(0, 2, 6))) for _ in range(4))
    for lt in ("sigmoid", "ipo", "bco_pair", "aot"):
        eps = 0.0
        np.testing.assert_array_equal(f_dpo_loss(lw, ll, rw, rl, 0.4, lt, eps),
                                      preference_loss(lw, ll, rw, rl, 0.4, lt, eps))
    np.testing.assert_array_equal(f_dpo_loss(lw, ll, rw, rl, 0.4, "sft", f_divergence_type="forward_kl"),
                                  preference_loss(lw, ll, rw, rl, 0.4, "sft"))
    s_w, s_l = f_score(lw - rw, "js_divergence"), f_score(ll - rl, "js_divergence")
    np.testing.assert_allclose(f_dpo_loss(lw, ll, rw, rl, 0.4, f_divergence_type="js_divergence"),
                               -torch.nn.functional.logsigmoid(0.4 * (s_w - s_l)), rtol=1e-15)


def test_bad_input_raises():
    # catches: silently accepting settings where the theory (or TRL) does not apply
    pi_ref, r = _problem(0)
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="alpha"):
        f_optimal_policy(pi_ref, r, 1.0, "alpha_divergence", 1.5)
    with pytest.raises(ValueError, match="alpha"):
        f_dpo_loss(z, z, z, z, 1.0, f_divergence_type="alpha_divergence", alpha=2.0)
    with pytest.raises(ValueError, match="f_divergence_type"):
        f_optimal_policy(pi_ref, r, 1.0, "hellinger")
    with pytest.raises(ValueError, match="only defined"):
        f_dpo_loss(z, z, z, z, 1.0, "bco_pair", f_divergence_type="forward_kl")
    with pytest.raises(ValueError, match="overflows"):
        f_dpo_loss(torch.tensor([-800.0]), z[:1], z[:1], z[:1], 1.0, f_divergence_type="forward_kl")
    with pytest.raises(ValueError, match="beta"):
        f_optimal_policy(pi_ref, r, 0.0, "forward_kl")
    with pytest.raises(ValueError, match="alpha"):
        f_optimal_policy(pi_ref, r, 1.0, "alpha_divergence", float("nan"))
    with pytest.raises(ValueError, match="logratio"):
        f_score([0.0, float("nan")], "js_divergence")
    with pytest.raises(ValueError, match="logratio"):
        f_score([-800.0], "forward_kl")
    with pytest.raises(ValueError, match="u"):
        f_function([1e308], "reverse_kl")
    with pytest.raises(ValueError, match="u"):
        f_function([-0.5], "forward_kl")
    assert set(F_DIVERGENCES) == {"reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"}


def test_divergence_is_infinite_exactly_where_the_theory_says():
    # catches: a finite D_f where π leaves π_ref's support under the reverse KL, or where π = 0 on the support
    # under the forward KL; and an infinite one where the perspective of f is finite (JS, forward KL off support)
    pi_ref = np.array([[0.5, 0.5, 0.0]])
    off = np.array([[0.4, 0.4, 0.2]])
    zero_on = np.array([[1.0, 0.0, 0.0]])
    assert np.isinf(f_divergence_value(off, pi_ref, "reverse_kl")[0])
    # KL(π_ref ‖ π) = Σ π_ref log(π_ref/π) does not see π's mass off π_ref's support
    np.testing.assert_allclose(f_divergence_value(off, pi_ref, "forward_kl"), [np.log(0.5 / 0.4)], rtol=1e-12)
    assert np.isinf(f_divergence_value(zero_on, pi_ref, "forward_kl")[0])
    assert np.isfinite(f_divergence_value(zero_on, pi_ref, "js_divergence")[0])
    assert np.isfinite(f_divergence_value(off, pi_ref, "js_divergence")[0])


# ------------------------------------------------------------------------------------------- extreme input (issue 11)
def test_alpha_one_is_the_reverse_kl_everywhere():
    # bug caught: f'(∞) = 1/(1 − alpha) evaluated eagerly for every f: ZeroDivisionError at alpha = 1
    pi, q = np.array([[0.2, 0.3, 0.5]]), np.array([[0.5, 0.25, 0.25]])
    for f in F_DIVERGENCES:
        assert np.all(np.isfinite(f_divergence_value(pi, q, f, alpha=1.0)))
    np.testing.assert_allclose(f_divergence_value(pi, q, "alpha_divergence", alpha=1.0), kl_divergence(pi, q))


def test_f_divergence_overflow_names_its_arguments():
    pi, q = np.array([[0.01, 0.49, 0.5]]), np.array([[0.5, 0.25, 0.25]])
    with pytest.raises(ValueError, match="alpha"):
        f_divergence_value(pi, q, "alpha_divergence", alpha=-775.0)


@pytest.mark.parametrize("f", ["forward_kl", "js_divergence", "alpha_divergence"])
def test_f_optimum_at_extreme_beta_and_reward(f):
    # bug caught: brentq's "f(a) and f(b) must have different signs" when β is tiny against the reward gaps (the
    # optimum is the best response alone) or when λ − r loses β to rounding at huge rewards
    q = np.array([[0.2, 0.3, 0.5]])
    r = np.array([[1.0, 0.0, -1.0]])
    for beta, scale in ((5e-324, 1.0), (1e-300, 1.0), (0.5, 1e300)):
        np.testing.assert_allclose(f_optimal_policy(q, r * scale, beta, f), [[1.0, 0.0, 0.0]], atol=1e-12)
    base = f_optimal_policy(q, r, 0.5, f)
    np.testing.assert_allclose(f_optimal_policy(q, r * 1e300, 0.5e300, f), base, atol=1e-10)
    np.testing.assert_allclose(f_normalizer(q, r * 1e300, 0.5e300, f), f_normalizer(q, r, 0.5, f) * 1e300,
                               rtol=1e-10)
