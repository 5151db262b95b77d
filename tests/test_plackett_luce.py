"""Plackett-Luce: each function against an exact answer (brute force, finite differences, Bradley-Terry, choix)."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefkit import (
    all_rankings,
    fit_bradley_terry,
    fit_plackett_luce,
    pl_fisher_information,
    pl_log_likelihood,
    pl_log_likelihood_gradient,
    pl_log_probability,
    pl_mle_obstruction,
    sample_comparisons,
    sample_rankings,
)


def _brute_log_prob(theta, r):
    t = np.asarray(theta)[list(r)]
    return sum(t[k] - np.log(np.sum(np.exp(t[k:]))) for k in range(len(t) - 1))


def test_probabilities_sum_to_one_and_match_brute_force():
    theta = np.array([0.3, -1.0, 2.0, 0.5])
    R = all_rankings(4, 4)
    lp = pl_log_probability(theta, R)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-14)
    for r, v in zip(R, lp, strict=True):
        assert v == pytest.approx(_brute_log_prob(theta, r), abs=1e-13)
    ragged = [[2, 0], [1, 3, 0], [3, 2, 1, 0]]
    np.testing.assert_allclose(pl_log_probability(theta, ragged), [_brute_log_prob(theta, r) for r in ragged],
                               atol=1e-13)


def test_no_overflow_at_huge_strengths():
    theta = np.array([1000.0, -1000.0, 500.0])
    assert pl_log_probability(theta, [[0, 2, 1]])[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(pl_log_probability(theta, [[1, 2, 0]])[0])


def test_length_two_is_bradley_terry_to_1e10():
    rng = np.random.default_rng(3)
    theta = rng.standard_normal(15)
    comps = sample_comparisons(theta, 2000, rng)
    w = rng.uniform(0.2, 2.0, len(comps))
    a = fit_plackett_luce(comps, 15, weights=w)
    b = fit_bradley_terry(comps, 15, weights=w)
    assert np.max(np.abs(a.strengths - b.strengths)) < 1e-10
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(a.covariance, b.covariance, atol=1e-10)


def test_newton_mm_and_choix_agree():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(10)
    R = sample_rankings(theta, 800, rng, length=4)
    f = fit_plackett_luce(R)
    g = fit_plackett_luce(R, method="mm", tol=1e-13)
    c = np.asarray(choix.ilsr_rankings(10, [tuple(r) for r in R.tolist()], tol=1e-12))
    assert f.converged and g.converged
    assert np.max(np.abs(f.strengths - g.strengths)) < 1e-9
    assert np.max(np.abs(f.strengths - (c - c.mean()))) < 1e-6
    assert abs(f.strengths.mean()) < 1e-14


def test_l2_is_the_map():
    rng = np.random.default_rng(1)
    R = sample_rankings(rng.standard_normal(6), 200, rng, length=3)
    f = fit_plackett_luce(R, l2=0.7)
    g = pl_log_likelihood_gradient(f.strengths, R) - 2 * 0.7 * f.strengths
    assert np.max(np.abs(g)) < 1e-8
    with pytest.raises(ValueError, match="mm"):
        fit_plackett_luce(R, l2=0.7, method="mm")


def test_fisher_is_minus_hessian_and_covariance_is_its_pseudo_inverse():
    rng = np.random.default_rng(2)
    R = sample_rankings(rng.standard_normal(5), 300, rng, length=4)
    t = rng.standard_normal(5)
    h = 1e-6
    fd = -np.array([(pl_log_likelihood_gradient(t + h * e, R) - pl_log_likelihood_gradient(t - h * e, R)) / (2 * h)
                    for e in np.eye(5)])
    np.testing.assert_allclose(pl_fisher_information(t, R), fd, atol=1e-5)
    f = fit_plackett_luce(R)
    F = pl_fisher_information(f.strengths, R)
    np.testing.assert_allclose(f.covariance, np.linalg.pinv(F), atol=1e-10)


def _rankings_strategy():
    return st.integers(0, 10_000).map(lambda s: np.random.default_rng(s))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=_rankings_strategy(), n=st.integers(3, 7))
def test_gradient_equals_finite_differences(rng, n):
    full = sample_rankings(rng.normal(0, 2, n), 40, rng)
    ragged = [r[: rng.integers(2, n + 1)] for r in full]
    w = rng.uniform(0, 3, len(ragged))
    t = rng.normal(0, 2, n)
    h = 1e-6
    fd = np.array([(pl_log_likelihood(t + h * e, ragged, w) - pl_log_likelihood(t - h * e, ragged, w)) / (2 * h)
                   for e in np.eye(n)])
    g = pl_log_likelihood_gradient(t, ragged, w)
    assert np.max(np.abs(g - fd)) <= 1e-6 * max(1.0, np.max(np.abs(g)))
    assert abs(g.sum()) < 1e-9 * max(1.0, np.abs(g).max())  # shift invariance: ∇ℓ ⟂ 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=_rankings_strategy(), n=st.integers(3, 6), shift=st.floats(-50, 50))
def test_shift_invariance_and_permutation_equivariance(rng, n, shift):
    theta = rng.standard_normal(n)
    R = sample_rankings(theta, 60, rng, length=min(3, n))
    assert pl_log_likelihood(theta + shift, R) == pytest.approx(pl_log_likelihood(theta, R), rel=1e-12, abs=1e-9)
    if pl_mle_obstruction(R, n) is not None:
        with pytest.raises(ValueError, match="strongly connected"):
            fit_plackett_luce(R, n)
        return
    f = fit_plackett_luce(R, n)
    perm = rng.permutation(n)  # rename item i as perm[i]
    g = fit_plackett_luce(perm[R], n)
    np.testing.assert_allclose(g.strengths[perm], f.strengths, atol=1e-9)
    np.testing.assert_allclose(g.stderr[perm], f.stderr, atol=1e-8)


def test_existence_names_the_group():
    with pytest.raises(ValueError, match=r"Item 0 was never ranked below"):
        fit_plackett_luce([[0, 1, 2], [0, 2], [1, 2], [2, 1]])
    with pytest.raises(ValueError, match=r"Items \{0, 1\} were never ranked below"):
        fit_plackett_luce([[0, 1, 2], [1, 0, 3], [2, 3], [3, 2]])
    with pytest.raises(ValueError, match="appear in no ranking"):
        fit_plackett_luce([[0, 1], [1, 0]], n_items=3)
    assert pl_mle_obstruction([[0, 1, 2], [2, 1, 0]]) is None
    fit_plackett_luce([[0, 1], [1, 0]], n_items=3, l2=0.1)  # the MAP exists


def test_existence_is_the_strong_connectivity_of_all_pairs_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = 4
        R = sample_rankings(rng.standard_normal(n), int(rng.integers(1, 4)), rng, length=int(rng.integers(2, 4)))
        reach = np.eye(n, dtype=bool)
        for r in R:
            for a, b in itertools.combinations(r, 2):
                reach[a, b] = True
        for k in range(n):  # transitive closure
            reach |= reach[:, [k]] & reach[[k], :]
        assert (pl_mle_obstruction(R, n) is None) == bool(reach.all())


@pytest.mark.parametrize("bad, match", [
    ([[0]], "at least 2"), ([[0, 0, 1]], "twice"), ([[0, -1]], "negative"), ([], "empty"),
    ([[0, 1.5]], "integer"), ([[0, 5]], "out of range"),
])
def test_input_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        fit_plackett_luce(bad, n_items=3 if match == "out of range" else None)


def test_input_validation_of_arguments():
    R = [[0, 1, 2], [2, 1, 0]]
    for kw, name in (({"weights": [1.0]}, "weights"), ({"l2": -1}, "l2"), ({"method": "bfgs"}, "method"),
                     ({"tol": 0}, "tol"), ({"max_iter": 0}, "max_iter")):
        with pytest.raises(ValueError, match=name):
            fit_plackett_luce(R, **kw)
    rng = np.random.default_rng(0)
    for kw, name in (({"length": 1}, "length"), ({"length": 9}, "length")):
        with pytest.raises(ValueError, match=name):
            sample_rankings(np.zeros(3), 5, rng, **kw)
    with pytest.raises(ValueError, match="rng"):
        sample_rankings(np.zeros(3), 5, 1.5)


def test_sampler_matches_pl_probabilities():
    rng = np.random.default_rng(7)
    theta = np.array([1.0, 0.0, -0.5])
    R = sample_rankings(theta, 60_000, rng)
    perms = all_rankings(3, 3)
    freq = np.array([np.mean(np.all(R == p, axis=1)) for p in perms])
    prob = np.exp(pl_log_probability(theta, perms))
    se = np.sqrt(prob * (1 - prob) / len(R))
    assert np.max(np.abs(freq - prob) / se) < 4.5
    sub = sample_rankings(theta, 30_000, rng, length=2)  # uniform pairs, then BT
    assert np.mean(np.isin(sub[:, 0], [0]) & np.isin(sub[:, 1], [2])) == pytest.approx(
        np.exp(pl_log_probability(theta, [[0, 2]]))[0] / 3, abs=0.01)


def test_information_product_is_the_dense_information_times_v():
    """The matrix-free Newton's F·v (suffix sums s_k = p_kᵀv, prefix sums a_j over the stages holding position j;
    issue 16) against the assembled F = Σ_r w_r Σ_k [diag(p_k) − p_k p_kᵀ] on ragged rankings (lengths 2 to 7),
    uneven weights with zeros, strengths up to ±300 and an item in no ranking: every column F·e_i and a random
    F·v to 1e-10 of max|F|, and the system's diagonal and gradient exactly as the dense pass gives them.
    Catches a product that drops a term: the last-ranked item's cross term (a_{L−1} left as s_{L−1} = v_{y_L}
    instead of ρ_{L−2}·a_{L−2}), a suffix sum that stops one position early, a weight applied to one of the
    two terms only, or a preconditioner that is the expected choices E rather than F's diagonal E − Σ_k p_k²
    (each checked by hand)."""
    from prefkit.plackett_luce import _information, _information_product, _NewtonSystem, _prepare, _stages, _wins

    rng = np.random.default_rng(11)
    n = 9
    theta = rng.normal(0, 2, n)
    theta[3], theta[5] = 300.0, -300.0
    full = sample_rankings(rng.normal(0, 2, n - 1), 80, rng)  # item 8 appears in no ranking
    ragged = [r[: rng.integers(2, n)] for r in full]
    w = rng.uniform(0, 3, len(ragged)) * (rng.random(len(ragged)) > 0.1)
    data = _prepare(ragged, n, w)
    F = _information(theta, data)
    scale = np.max(np.abs(F))
    columns = np.array([_information_product(theta, data, e) for e in np.eye(n)]).T
    assert np.max(np.abs(columns - F)) <= 1e-10 * scale
    v = rng.standard_normal(n)
    assert np.max(np.abs(_information_product(theta, data, v) - F @ v)) <= 1e-10 * scale * np.max(np.abs(v))
    system = _NewtonSystem(_stages(theta, data)[1], n, _wins(data))
    np.testing.assert_allclose(system.diagonal, np.diag(F), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(system.gradient, pl_log_likelihood_gradient(theta, ragged, w)[:n], rtol=0,
                               atol=1e-12 * max(1.0, np.max(np.abs(system.gradient))))
    assert abs(np.sum(columns)) <= 1e-10 * scale  # F·1 = 0: the rows of F sum to zero


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("bt_start", [True, False])
def test_matrix_free_newton_reaches_the_mle_and_the_map(monkeypatch, l2, bt_start):
    """Newton solves each step by CG on Hessian-vector products (issue 16; the dense and sparse assembled
    systems are gone). From the Bradley-Terry start and from θ = 0 (the start where pairs are few), with
    uneven weights: the MLE equals MM's (tol 1e-13, an independent algorithm) to 1e-10, and the MAP passes an
    exact certificate, a Newton step on the dense penalised Hessian below 1e-10. A CG that drops the l2 term in
    the product or the step's rescaling fails here (checked by hand); the preconditioner and the gauge
    projection only change how fast CG gets there (the right-hand side already sums to 0), so a wrong one
    passes."""
    import prefkit.plackett_luce as pl

    if not bt_start:
        monkeypatch.setattr(pl, "_bt_start", lambda data: None)
    rng = np.random.default_rng(4)
    R = sample_rankings(rng.standard_normal(60), 3000, rng, length=4)
    w = rng.uniform(0.01, 5.0, len(R))
    fit = fit_plackett_luce(R, 60, weights=w, l2=l2)
    assert fit.converged and fit.n_iter <= (4 if bt_start and l2 == 0 else 7)  # measured: 4 and 7
    if l2 == 0:
        ref = fit_plackett_luce(R, 60, weights=w, method="mm", tol=1e-13).strengths
        np.testing.assert_allclose(fit.strengths, ref, atol=1e-10, rtol=0)
    else:
        g = pl_log_likelihood_gradient(fit.strengths, R, w) - 2 * l2 * fit.strengths
        H = pl_fisher_information(fit.strengths, R, w) + 2 * l2 * np.eye(60)
        assert np.max(np.abs(np.linalg.solve(H, g))) < 1e-10


def test_newton_starts_from_the_bradley_terry_fit_on_ordered_pairs():
    """Under PL, P(i above j) is Bradley-Terry whatever else is ranked, so the BT fit on every ordered pair is a
    consistent start: Newton then needs 4 steps here (8 from θ = 0; a start with the pairs reversed or from the
    adjacent pairs only needs more), and still lands on the MLE (MM to 1e-13, an independent algorithm)."""
    from prefkit.plackett_luce import _bt_start, _prepare

    rng = np.random.default_rng(0)
    theta = rng.standard_normal(300)
    R = sample_rankings(theta, 30_000, rng, length=5)
    fit = fit_plackett_luce(R, 300)
    ref = fit_plackett_luce(R, 300, method="mm", tol=1e-13).strengths
    np.testing.assert_allclose(fit.strengths, ref, atol=1e-9, rtol=0)
    assert fit.n_iter <= 4
    start = _bt_start(_prepare(R, 300))
    # two consistent estimators differ by sampling noise (SE ≈ 0.06 here; max over 300 items 0.11), θ spans ±3
    assert np.max(np.abs((start - start.mean()) - ref)) < 0.3


def test_uniform_subsets_for_many_items_are_uniform_and_distinct():
    """sample_rankings' path for n·n_items > 16M (a million rankings of 10,000 items would need a 75 GB sort):
    rows of distinct items, each item equally likely (chi-square against uniform, 0.1% level), seeded, and both
    branches (rejection where length² ≪ k, sorting by blocks otherwise)."""
    from scipy.stats import chisquare

    from prefkit.plackett_luce import _uniform_subsets

    for k, length in ((1000, 5), (12, 6)):
        rows = _uniform_subsets(k, length, 30_000, np.random.default_rng(0), block=7_000)
        assert rows.shape == (30_000, length) and rows.min() >= 0 and rows.max() < k
        s = np.sort(rows, axis=1)
        assert not np.any(s[:, 1:] == s[:, :-1])
        assert chisquare(np.bincount(rows.ravel(), minlength=k)).pvalue > 1e-3
        assert chisquare(np.bincount(rows[:, 0], minlength=k)).pvalue > 1e-3  # first slot uniform too
        np.testing.assert_array_equal(rows, _uniform_subsets(k, length, 30_000, np.random.default_rng(0),
                                                             block=7_000))
