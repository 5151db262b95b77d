"""Bradley-Terry: each function against an exact answer (closed forms, finite differences, choix, papers)."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefkit import (
    ConvergenceWarning,
    bt_fisher_information,
    bt_log_likelihood,
    bt_log_likelihood_gradient,
    bt_probability,
    fit_bradley_terry,
    load_baseball,
    log_sigmoid,
    mle_obstruction,
    sample_comparisons,
    sigmoid,
)
from prefkit.loaders import BASEBALL_HOME_PUBLISHED, BASEBALL_PUBLISHED

GOLDEN = json.loads((Path(__file__).parent / "data" / "bt_golden.json").read_text())["cases"]


def _instance(n_items, n, seed):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n_items)
    return theta, sample_comparisons(theta, n, rng)


# ---------------------------------------------------------------------------------------------------------- m
def test_sigmoid_and_log_sigmoid_are_stable_and_exact():
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 2.0, 40.0, 1000.0])
    s, ls = sigmoid(x), log_sigmoid(x)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(ls))
    mid = np.abs(x) < 50
    np.testing.assert_allclose(s[mid], 1 / (1 + np.exp(-x[mid])), rtol=1e-15)
    np.testing.assert_allclose(ls[mid], -np.log1p(np.exp(-x[mid])), rtol=1e-14)
    assert ls[0] == -1000.0 and ls[-1] == 0.0
    assert sigmoid(0.0) == 0.5 and isinstance(sigmoid(0.0), float)


def test_bt_probability_symmetry_and_shift():
    a, b = 0.3, -1.2
    assert bt_probability(a, b) + bt_probability(b, a) == pytest.approx(1.0, abs=1e-15)
    assert bt_probability(a + 5, b + 5) == pytest.approx(bt_probability(a, b), abs=1e-15)
    assert bt_probability(a, b, order_effect=0.4) == pytest.approx(
        1 / (1 + math.exp(-(a - b + 0.4))), abs=1e-15
    )


def test_log_likelihood_by_hand_and_shift_invariance():
    theta = np.array([0.5, -0.2, 1.0])
    comps = [[0, 1], [2, 0], [1, 2]]
    w = [2.0, 1.0, 0.5]
    by_hand = sum(
        wk * math.log(1 / (1 + math.exp(-(theta[a] - theta[b])))) for (a, b), wk in zip(comps, w, strict=True)
    )
    assert bt_log_likelihood(theta, comps, w) == pytest.approx(by_hand, abs=1e-14)
    assert bt_log_likelihood(theta + 3.7, comps, w) == pytest.approx(by_hand, abs=1e-12)
    wf = [True, False, True]
    by_hand_d = sum(
        wk * math.log(1 / (1 + math.exp(-(theta[a] - theta[b] + (0.3 if f else -0.3)))))
        for (a, b), wk, f in zip(comps, w, wf, strict=True)
    )
    assert bt_log_likelihood(theta, comps, w, winner_first=wf, order_effect=0.3) == pytest.approx(
        by_hand_d, abs=1e-14
    )


def test_gradient_matches_finite_differences():
    theta, comps = _instance(6, 200, seed=1)
    w = np.random.default_rng(2).uniform(0.1, 3.0, len(comps))
    g = bt_log_likelihood_gradient(theta, comps, w)
    h = 1e-6
    fd = np.array(
        [
            (bt_log_likelihood(theta + h * e, comps, w) - bt_log_likelihood(theta - h * e, comps, w))
            / (2 * h)
            for e in np.eye(6)
        ]
    )
    np.testing.assert_allclose(g, fd, atol=1e-6)
    assert abs(g.sum()) < 1e-10  # wins minus expected wins sums to zero


def test_fisher_information_is_minus_hessian_laplacian():
    theta, comps = _instance(5, 100, seed=3)
    L = bt_fisher_information(theta, comps).toarray()
    h = 1e-5
    fd = np.array(
        [
            (
                bt_log_likelihood_gradient(theta + h * e, comps)
                - bt_log_likelihood_gradient(theta - h * e, comps)
            )
            / (2 * h)
            for e in np.eye(5)
        ]
    )
    np.testing.assert_allclose(-fd, L, atol=1e-6)
    np.testing.assert_allclose(L.sum(axis=1), 0.0, atol=1e-12)  # null space: the all-ones vector
    assert np.linalg.eigvalsh(L)[0] > -1e-12


# ---------------------------------------------------------------------------------------------------------- f
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_newton_mm_and_choix_agree(seed):
    theta, comps = _instance(8, 300, seed)
    newton = fit_bradley_terry(comps, 8)
    mm = fit_bradley_terry(comps, 8, method="mm", tol=1e-13)
    assert newton.converged and mm.converged
    np.testing.assert_allclose(newton.strengths, mm.strengths, atol=1e-8)
    assert abs(newton.strengths.mean()) < 1e-12
    assert newton.log_likelihood == pytest.approx(bt_log_likelihood(newton.strengths, comps), abs=1e-9)
    np.testing.assert_allclose(bt_log_likelihood_gradient(newton.strengths, comps), 0.0, atol=1e-8)
    choix = pytest.importorskip("choix")  # the independent reference (requirements-dev.txt)
    ref = choix.ilsr_pairwise(8, comps.tolist(), tol=1e-13, max_iter=10_000)
    np.testing.assert_allclose(newton.strengths, ref - ref.mean(), atol=1e-8)


def test_weights_equal_repeated_rows():
    theta, comps = _instance(5, 100, seed=4)
    counts = np.random.default_rng(5).integers(1, 4, len(comps))
    a = fit_bradley_terry(comps, 5, weights=counts)
    b = fit_bradley_terry(np.repeat(comps, counts, axis=0), 5)
    np.testing.assert_allclose(a.strengths, b.strengths, atol=1e-10)


def test_map_matches_choix_opt_pairwise_and_its_gradient_condition():
    theta, comps = _instance(6, 60, seed=6)
    l2 = 0.3
    fit = fit_bradley_terry(comps, 6, l2=l2)
    # the MAP of ℓ − l2‖θ‖²: gradient ℓ = 2·l2·θ; choix's alpha penalises alpha·‖θ‖² (variance 1/(2·alpha))
    np.testing.assert_allclose(
        bt_log_likelihood_gradient(fit.strengths, comps), 2 * l2 * fit.strengths, atol=1e-9
    )
    choix = pytest.importorskip("choix")
    ref = choix.opt_pairwise(6, comps.tolist(), alpha=l2, tol=1e-12)
    np.testing.assert_allclose(fit.strengths, ref, atol=1e-6)
    assert abs(fit.strengths.mean()) < 1e-12


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden_cases(case):
    for method in ("newton", "mm"):
        fit = fit_bradley_terry(
            case["comparisons"],
            case["n_items"],
            weights=case["weights"],
            method=method,
            winner_first=case.get("winner_first"),
            tol=1e-13,
        )
        if "strengths" in case:
            np.testing.assert_allclose(fit.strengths, case["strengths"], atol=1e-9)
        for i, j, v in case.get("contrasts", []):
            assert fit.strengths[i] - fit.strengths[j] == pytest.approx(v, abs=1e-9)
        for i, j, v in case.get("se_contrasts", []):
            assert fit.contrast_stderr(i, j) == pytest.approx(v, abs=1e-9)
        if "order_effect" in case:
            assert fit.order_effect == pytest.approx(case["order_effect"], abs=1e-9)


def test_covariance_is_pseudo_inverse_in_sum_zero_gauge():
    theta, comps = _instance(6, 200, seed=7)
    fit = fit_bradley_terry(comps, 6)
    L = bt_fisher_information(fit.strengths, comps).toarray()
    np.testing.assert_allclose(fit.covariance, np.linalg.pinv(L), atol=1e-10)
    np.testing.assert_allclose(fit.covariance.sum(axis=1), 0.0, atol=1e-10)
    np.testing.assert_allclose(fit.stderr, np.sqrt(np.diag(np.linalg.pinv(L))), atol=1e-10)


def test_order_effect_newton_matches_mm_and_hand_fisher():
    rng = np.random.default_rng(8)
    theta = rng.standard_normal(6)
    first = rng.integers(0, 6, 400)
    second = (first + rng.integers(1, 6, 400)) % 6
    first_won = rng.random(400) < sigmoid(theta[first] - theta[second] + 0.5)
    comps = np.where(first_won[:, None], np.stack([first, second], 1), np.stack([second, first], 1))
    newton = fit_bradley_terry(comps, 6, winner_first=first_won)
    mm = fit_bradley_terry(comps, 6, winner_first=first_won, method="mm", tol=1e-13)
    np.testing.assert_allclose(newton.strengths, mm.strengths, atol=1e-8)
    assert newton.order_effect == pytest.approx(mm.order_effect, abs=1e-8)

    # δ's standard error from the joint Fisher information, computed by finite differences of ℓ(θ, δ)
    def ll(v):
        return bt_log_likelihood(v[:6], comps, winner_first=first_won, order_effect=v[6])

    v0 = np.concatenate([newton.strengths, [newton.order_effect]])
    h, k = 1e-4, 7
    hess = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            ea, eb = np.eye(k)[a] * h, np.eye(k)[b] * h
            hess[a, b] = (ll(v0 + ea + eb) - ll(v0 + ea - eb) - ll(v0 - ea + eb) + ll(v0 - ea - eb)) / (
                4 * h * h
            )
    cov = np.linalg.pinv(-hess, rcond=1e-10)
    assert newton.order_effect_stderr == pytest.approx(math.sqrt(cov[6, 6]), rel=1e-4)


def test_baseball_reproduces_published_fit():
    """Agresti (2002) Table 10.11 / BradleyTerry2 vignette: Baltimore fixed at 0, estimates and SEs to
    1e-3."""
    published = BASEBALL_PUBLISHED["estimates"]  # the table of data/README.md, kept once in prefkit.loaders
    data = load_baseball()
    fit = fit_bradley_terry(data.comparisons, data.n_items, weights=data.weights)
    b = data.index("Baltimore")
    for team, (est, se) in published.items():
        k = data.index(team)
        assert fit.strengths[k] - fit.strengths[b] == pytest.approx(est, abs=1e-3)
        assert fit.contrast_stderr(k, b) == pytest.approx(se, abs=1e-3)
    # residual deviance 44.053 on 36 df: binomial deviance over the 42 (home, away) rows
    home, away = data.comparisons[data.winner_first], data.comparisons[~data.winner_first]
    hw, aw = data.weights[data.winner_first], data.weights[~data.winner_first]
    p = sigmoid(fit.strengths[home[:, 0]] - fit.strengths[home[:, 1]])
    q = sigmoid(
        fit.strengths[away[:, 1]] - fit.strengths[away[:, 0]]
    )  # P(home wins) for rows with away winners
    dev = 2 * (np.sum(hw * np.log(1 / p)) + np.sum(aw * np.log(1 / (1 - q))))
    # the saturated model: per (home, away) row, observed proportions
    rows = {}
    for (a, b2), w, f in zip(data.comparisons, data.weights, data.winner_first, strict=True):
        key = (a, b2) if f else (b2, a)
        hwin, awin = rows.get(key, (0.0, 0.0))
        rows[key] = (hwin + w, awin) if f else (hwin, awin + w)
    sat = sum(
        x * math.log(x / (x + y)) + y * math.log(y / (x + y)) for x, y in rows.values() if x > 0 and y > 0
    )
    assert dev + 2 * sat == pytest.approx(44.053, abs=1e-3)


def test_baseball_home_advantage_reproduces_published_fit():
    """Agresti (2002) Table 10.11 col. 5 / BradleyTerry2 test-baseball.R: δ = 0.302 and the normalised
    abilities, published to 3 decimals (so matched to 5e-4)."""
    pub = BASEBALL_HOME_PUBLISHED
    data = load_baseball()
    kw = dict(weights=data.weights, winner_first=data.winner_first)
    fit = fit_bradley_terry(data.comparisons, data.n_items, **kw)
    assert fit.order_effect == pytest.approx(pub["home_advantage"], abs=5e-4)
    abilities = np.exp(fit.strengths) / np.exp(fit.strengths).sum()
    np.testing.assert_allclose(np.sort(abilities), pub["abilities_sorted"], atol=5e-4)


# ---------------------------------------------------------------------------------------------------------- e
def test_no_mle_names_the_group():
    comps = [[0, 1], [1, 2], [2, 0], [3, 0], [3, 1], [4, 3], [3, 4]]  # {3, 4} never lost to 0, 1, 2
    assert mle_obstruction(comps) == ([3, 4], "never lost")
    assert mle_obstruction([[0, 1], [1, 0], [0, 2], [1, 2]]) == ([2], "never won")
    with pytest.raises(ValueError, match=r"\{2\} never beat"):
        fit_bradley_terry([[0, 1], [1, 0], [0, 2], [1, 2]])
    with pytest.raises(ValueError, match=r"strongly connected.*\{3, 4\} never lost"):
        fit_bradley_terry(comps)
    with pytest.raises(ValueError, match=r"\{d, e\}"):
        fit_bradley_terry(comps, names=list("abcde"))
    fit = fit_bradley_terry(comps, l2=0.1)  # the MAP is finite
    assert np.all(np.isfinite(fit.strengths)) and np.all(np.isfinite(fit.stderr))
    assert fit.strengths[3] > fit.strengths[0]
    assert mle_obstruction([[0, 1], [1, 0]]) is None


def test_item_without_comparisons_blocks_the_mle():
    with pytest.raises(ValueError, match=r"Item \{2\} was never compared"):
        fit_bradley_terry([[0, 1], [1, 0]], n_items=3)
    with pytest.raises(ValueError, match=r"\{2\} was never compared"):  # weight 0 is no comparison
        fit_bradley_terry([[0, 1], [1, 0], [2, 0], [0, 2]], weights=[1, 1, 0, 0])


def test_order_effect_without_finite_mle():
    with pytest.raises(ValueError, match="order effect"):  # the first position always won
        fit_bradley_terry([[0, 1], [1, 0], [1, 2], [2, 1], [2, 0], [0, 2]], winner_first=[True] * 6)
    with pytest.raises(ValueError, match="confounded"):  # item 0 always first: δ and θ_0 − θ_1 not separable
        fit_bradley_terry([[0, 1], [1, 0]], winner_first=[True, False])


# ---------------------------------------------------------------------------------------------------------- b
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(comparisons=[]), "n_items"),
        (dict(comparisons=[[0, 1], [1, 0]], n_items=1), "out of range"),
        (dict(comparisons=[[0, -1]]), "comparisons"),
        (dict(comparisons=[[0.5, 1]]), "comparisons"),
        (dict(comparisons=[[0, 1, 2]]), "comparisons"),
        (dict(comparisons=[[0, 0], [0, 1]]), "itself"),
        (dict(comparisons=[[0, 1], [1, 0]], weights=[1.0, -1.0]), "weights"),
        (dict(comparisons=[[0, 1], [1, 0]], weights=[1.0, np.nan]), "weights"),
        (dict(comparisons=[[0, 1], [1, 0]], weights=[1.0]), "weights"),
        (dict(comparisons=[[0, 1], [1, 0]], l2=-1), "l2"),
        (dict(comparisons=[[0, 1], [1, 0]], l2=np.nan), "l2"),
        (dict(comparisons=[[0, 1], [1, 0]], method="bfgs"), "method"),
        (dict(comparisons=[[0, 1], [1, 0]], method="mm", l2=1.0), "mm"),
        (dict(comparisons=[[0, 1], [1, 0]], winner_first=[True]), "winner_first"),
        (dict(comparisons=[[0, 1], [1, 0]], names=["a"]), "names"),
        (dict(comparisons=[[0, 1], [1, 0]], tol="a"), "tol"),
        (dict(comparisons=[[0, 1], [1, 0]], tol=-1e-8), "tol"),
        (dict(comparisons=[[0, 1], [1, 0]], tol=0.0), "tol"),
        (dict(comparisons=[[0, 1], [1, 0]], max_iter=True), "max_iter"),
        (dict(comparisons=[[0, 1], [1, 0]], max_iter=2.5), "max_iter"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_bradley_terry(**kwargs)


def test_bad_strengths_and_order_effect_raise_value_error():
    with pytest.raises(ValueError, match="strength_i and strength_j"):
        bt_probability(np.inf, np.inf)  # inf − inf: no probability
    with pytest.raises(ValueError, match="strength_i and strength_j"):
        bt_probability([0.0, -np.inf], -np.inf)
    with pytest.raises(ValueError, match="strength_i"):
        bt_probability(np.nan, 0.0)
    with pytest.raises(ValueError, match="strength_j"):
        bt_probability(0.0, [0.0, np.nan])
    # one infinite strength is a certain outcome, not an error (e.g. an implied reward of −inf)
    np.testing.assert_array_equal(bt_probability([-np.inf, np.inf], 0.0), [0.0, 1.0])
    with pytest.raises(ValueError, match="order_effect"):
        bt_probability(0.0, 0.0, order_effect=np.nan)
    with pytest.raises(ValueError, match="order_effect"):
        bt_log_likelihood([0.0, 0.0], [[0, 1]], winner_first=[True], order_effect="x")


@pytest.mark.parametrize("method", ["newton", "mm"])
@pytest.mark.parametrize("w", [1e-300, 1e-12, 1e-3, 3.0, 1e8, 1e10, 1e12, 1e100, 1e300])
def test_two_items_closed_form_for_extreme_counts(w, method):
    """0 beat 1 w times, 1 beat 0 once: the MLE gap is exactly log w (σ(gap) = w/(w + 1)), however extreme.

    The old stopping rule treated a gradient below 1e-12·(1 + comparisons) as zero and returned 45.24 instead
    of 23.03 for w = 1e10 (54.45 with no step at all for w = 1e12)."""
    fit = fit_bradley_terry([[0, 1], [1, 0]], weights=[w, 1.0], method=method)
    gap = fit.strengths[0] - fit.strengths[1]
    assert fit.converged and fit.n_iter >= 1
    assert gap == pytest.approx(math.log(w), rel=1e-12, abs=1e-9)


def test_fit_is_invariant_to_scaling_all_weights():
    """ℓ(θ; c·w) = c·ℓ(θ; w): the MLE cannot depend on c, and neither may when the fit stops."""
    theta, comps = _instance(30, 600, seed=11)
    w = np.random.default_rng(12).uniform(0.5, 2.0, len(comps))
    base = fit_bradley_terry(comps, 30, weights=w)
    for c in (1e-12, 1e-6, 1e6, 1e12):
        fit = fit_bradley_terry(comps, 30, weights=c * w)
        assert fit.converged
        np.testing.assert_allclose(fit.strengths, base.strengths, atol=1e-9)


def test_sample_comparisons_is_seeded_and_follows_bt():
    theta = np.array([1.0, 0.0, -0.5])
    a = sample_comparisons(theta, 20_000, np.random.default_rng(0))
    b = sample_comparisons(theta, 20_000, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[:, 0] != a[:, 1])
    pair01 = a[np.isin(a[:, 0], [0, 1]) & np.isin(a[:, 1], [0, 1])]
    rate = np.mean(pair01[:, 0] == 0)
    se = math.sqrt(0.25 / len(pair01))
    assert abs(rate - bt_probability(1.0, 0.0)) < 5 * se
    with pytest.raises(ValueError, match="rng"):
        sample_comparisons(theta, 5, 1.5)
    with pytest.raises(ValueError, match="strengths"):
        sample_comparisons([1.0], 5, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------------- f
_weight = st.one_of(st.floats(0, 50), st.sampled_from([0.0, 0.5, 1.0, -1.0, float("nan"), float("inf")]))


@st.composite
def _inputs(draw):
    n = draw(st.integers(1, 6))
    m = draw(st.integers(0, 12))
    hi = draw(st.sampled_from([n - 1, n]))  # sometimes an id out of range
    pairs = draw(
        st.lists(
            st.tuples(st.integers(-1 if draw(st.booleans()) else 0, hi), st.integers(0, hi)),
            min_size=m,
            max_size=m,
        )
    )
    weights = draw(st.one_of(st.none(), st.lists(_weight, min_size=m, max_size=m)))
    wf = draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=m, max_size=m)))
    n_items = draw(st.sampled_from([None, n]))
    l2 = draw(st.sampled_from([0.0, 0.0, 0.1, 2.0]))
    method = draw(st.sampled_from(["newton", "mm"])) if l2 == 0 else "newton"
    return dict(comparisons=pairs, n_items=n_items, weights=weights, winner_first=wf, l2=l2, method=method)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs())
def test_fuzz_fit_is_finite_or_value_error(kw):
    try:
        fit = fit_bradley_terry(**kw, max_iter=None if kw["method"] == "newton" else 20_000)
    except ValueError:
        return
    assert np.all(np.isfinite(fit.strengths))
    assert math.isfinite(fit.log_likelihood)
    assert np.all(np.isfinite(fit.stderr))
    if kw["l2"] == 0:
        assert abs(fit.strengths.mean()) < 1e-9
    if fit.order_effect is not None:
        assert math.isfinite(fit.order_effect) and math.isfinite(fit.order_effect_stderr)


@st.composite
def _uneven(draw):
    """A strongly connected graph (a cycle plus random extra pairs, every pair played both ways) with counts
    spread over 24 orders of magnitude, 1e-12..1e12."""
    n = draw(st.integers(2, 6))
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=8))
    pairs = [(k, (k + 1) % n) for k in range(n)] + [(a, b) for a, b in extra if a != b]
    comps = np.array(pairs + [(b, a) for a, b in pairs])
    log_w = draw(st.lists(st.floats(-12, 12), min_size=len(comps), max_size=len(comps)))
    l2 = draw(st.sampled_from([0.0, 0.0, 1e-3, 1.0]))
    return n, comps, 10.0 ** np.array(log_w), l2


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_uneven())
def test_fuzz_very_uneven_weights(case):
    """With counts from 1e-12 to 1e12, a fit reported as converged has zero gradient relative to curvature.

    The gradient is recomputed here term by term, n_ij·σ(−z) − n_ji·σ(z), each term to relative precision;
    it must be below 1e-6 × the item's curvature Σ t·p·(1 − p) plus 1e-9 × the terms it is the difference of
    (float64 cannot know it better). A fit that could not get there must say ``converged=False``."""
    n, comps, w, l2 = case
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = fit_bradley_terry(comps, n, weights=w, l2=l2)
    except ValueError as exc:  # only the documented divergence message is tolerated
        assert "diverged" in str(exc)
        return
    theta = fit.strengths
    assert np.all(np.isfinite(theta)) and math.isfinite(fit.log_likelihood)
    # converged=False, and only then, comes with a ConvergenceWarning
    assert fit.converged != any(issubclass(c.category, ConvergenceWarning) for c in caught)
    if not fit.converged:
        return
    z = theta[comps[:, 0]] - theta[comps[:, 1]]
    won = w * sigmoid(-z)  # each row: the winner's gain w·(1 − σ(z))
    g = np.bincount(comps[:, 0], won, n) - np.bincount(comps[:, 1], won, n) - 2 * l2 * theta
    terms = np.bincount(comps[:, 0], won, n) + np.bincount(comps[:, 1], won, n)
    curv_e = w * sigmoid(z) * sigmoid(-z)
    curvature = np.bincount(comps[:, 0], curv_e, n) + np.bincount(comps[:, 1], curv_e, n) + 2 * l2
    assert np.all(np.abs(g) <= 1e-6 * curvature + 1e-9 * terms)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6), st.integers(0, 3), st.sampled_from(["newton", "mm"]))
def test_fuzz_degenerate_graphs(n, kind, method):
    """An empty list, a single pair, a disconnected graph, an item that never lost: the documented
    ValueError."""
    if kind == 0:
        comps = np.zeros((0, 2), dtype=int)
    elif kind == 1:
        comps = [[0, 1]]
    elif (
        kind == 2
    ):  # disconnected: 0 and 1 play each other only; items 2.. form their own cycle (or sit alone)
        n = max(n, 3)
        comps = [[0, 1], [1, 0]] + [[k, k + 1] for k in range(2, n - 1)] + ([[n - 1, 2]] if n > 3 else [])
    else:  # item 0 never lost; the others form a cycle
        n = max(n, 3)
        comps = [[0, k] for k in range(1, n)] + [[k, k + 1] for k in range(1, n - 1)] + [[n - 1, 1]]
    with pytest.raises(ValueError, match="does not exist|n_items"):
        fit_bradley_terry(comps, n, method=method)
    if len(comps):
        fit = fit_bradley_terry(comps, n, l2=0.5)
        assert np.all(np.isfinite(fit.strengths)) and np.all(np.isfinite(fit.stderr))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=6), st.integers(0, 10), st.integers(0, 2**31))
def test_fuzz_likelihood_is_finite_for_finite_strengths(strengths, m, seed):
    """sigmoid, log σ, ℓ and its gradient stay finite for any finite strengths (no overflow to NaN)."""
    theta = np.array(strengths)
    comps = sample_comparisons(np.zeros(len(theta)), m, np.random.default_rng(seed))
    assert np.all(np.isfinite(sigmoid(theta))) and np.all(np.isfinite(log_sigmoid(theta)))
    assert math.isfinite(bt_log_likelihood(theta, comps))
    assert np.all(np.isfinite(bt_log_likelihood_gradient(theta, comps)))
    with pytest.raises(ValueError, match="strengths"):
        bt_log_likelihood(np.append(theta, np.nan), comps)


@pytest.mark.parametrize("with_positions", [False, True])
def test_aggregation_dense_and_sorted_paths_agree(with_positions):
    # _aggregate counts pairs with one bincount when n² is small next to m, and by sorting the keys otherwise;
    # the same comparisons among 50 items, declared as 50 or as 3000 items (n² = 9e6 > 2m), take the two paths
    from prefkit.bradley_terry import _aggregate, _prepare

    rng = np.random.default_rng(7)
    comps = sample_comparisons(rng.standard_normal(50), 4000, rng)
    weights = rng.choice([0.0, 0.5, 1.0, 3.0], size=len(comps))
    first = rng.random(len(comps)) < 0.5 if with_positions else None
    small = _aggregate(*_prepare(comps, 50, weights, first))
    large = _aggregate(*_prepare(comps, 3000, weights, first))
    for name in ("i", "j", "n_ij", "n_ji"):
        np.testing.assert_array_equal(getattr(small, name), getattr(large, name))
    np.testing.assert_array_equal(large.indptr[:51], small.indptr)
    assert np.all(large.indptr[51:] == small.indptr[-1])
    # the MAP ignores items without data (they stay at 0) and fits the others exactly as with 50 items
    a = fit_bradley_terry(comps, 50, weights=weights, winner_first=first, l2=0.5)
    b = fit_bradley_terry(comps, 3000, weights=weights, winner_first=first, l2=0.5)
    np.testing.assert_allclose(b.strengths[:50], a.strengths, atol=1e-12)
    assert np.max(np.abs(b.strengths[50:])) < 1e-12


# ------------------------------------------------------------------------------------- the solver's own path
def test_newton_converges_quadratically_in_few_steps():
    """Newton's step count (measured 4–7 on these problems): a conjugate-gradient solve, line search or order-
    effect slope that is wrong but still ends at the MLE (through more, shorter steps) fails here. mutmut found
    such mutants alive: the final estimates alone could not tell them apart."""
    data = load_baseball()
    cases = [dict(comparisons=data.comparisons, n_items=data.n_items, weights=data.weights),
             dict(comparisons=data.comparisons, n_items=data.n_items, weights=data.weights,
                  winner_first=data.winner_first),
             dict(comparisons=data.comparisons, n_items=data.n_items, weights=data.weights,
                  winner_first=data.winner_first, l2=0.05),
             dict(comparisons=sample_comparisons(np.linspace(-6, 6, 30), 20000, 3)),
             dict(comparisons=sample_comparisons(np.random.default_rng(1).normal(size=50) * 2, 5000, 1))]
    for kw in cases:
        fit = fit_bradley_terry(**kw)
        assert fit.converged and fit.n_iter <= 8, (fit.n_iter, sorted(kw))


def test_preconditioned_cg_solves_a_laplacian_system():
    """The inner solver alone: Jacobi-preconditioned CG on a weighted graph Laplacian (singular, the all-ones null
    space; the gauge keeps the residual sum-zero) against the pseudo-inverse, and on a definite system."""
    from prefkit.bradley_terry import _pcg

    rng = np.random.default_rng(0)
    n = 12
    W = np.triu(rng.uniform(0.1, 2.0, (n, n)), 1)
    W = W + W.T
    L = np.diag(W.sum(1)) - W
    b = rng.normal(size=n)
    b -= b.mean()
    x = _pcg(lambda v: L @ v, b, 1.0 / np.diag(L), 1e-13, 200, gauge=True)
    want = np.linalg.pinv(L) @ b
    np.testing.assert_allclose(x - x.mean(), want, atol=1e-10)
    A = L + np.eye(n)
    y = _pcg(lambda v: A @ v, b + 1.0, 1.0 / np.diag(A), 1e-13, 200)
    np.testing.assert_allclose(y, np.linalg.solve(A, b + 1.0), atol=1e-10)
    assert not _pcg(lambda v: A @ v, np.zeros(n), np.ones(n), 1e-13, 200).any()


def test_preconditioned_cg_continues_from_a_warm_start():
    """``x0`` continues a loose solve: the stopping test stays relative to the right-hand side, not to the warm
    start's residual. Continuing a 1e-2 solve to 1e-12 matches the pseudo-inverse; continuing it to 1e-2 again costs
    the one product that computes its residual. Bugs caught: the test made relative to the warm residual (the
    second continuation would iterate again), x0 ignored (a cold restart: more products), or its residual left
    out of the gauge projection."""
    from prefkit.bradley_terry import _pcg

    rng = np.random.default_rng(3)
    n = 40
    W = np.triu(rng.uniform(0.1, 2.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.3), 1)
    W = W + W.T + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)  # a path: connected
    L = np.diag(W.sum(1)) - W
    b = rng.normal(size=n)
    b -= b.mean()
    calls = []

    def matvec(v):
        calls.append(1)
        return L @ v

    loose = _pcg(matvec, b, 1.0 / np.diag(L), 1e-2, 500, gauge=True)
    n_loose = len(calls)
    calls.clear()
    again = _pcg(matvec, b, 1.0 / np.diag(L), 1e-2, 500, gauge=True, x0=loose)
    assert len(calls) == 1 and np.array_equal(again, loose)
    calls.clear()
    tight = _pcg(matvec, b, 1.0 / np.diag(L), 1e-12, 500, gauge=True, x0=loose)
    n_warm = len(calls)
    np.testing.assert_allclose(tight - tight.mean(), np.linalg.pinv(L) @ b, atol=1e-9)
    calls.clear()
    _pcg(matvec, b, 1.0 / np.diag(L), 1e-12, 500, gauge=True)
    assert n_loose + n_warm <= len(calls) + 2, (n_loose, n_warm, len(calls))


def test_newton_tightens_a_loose_last_solve_instead_of_taking_a_confirming_step():
    """A random graph (500 items, 10,000 comparisons, seed 1) where Newton's fourth step already shows quadratic
    convergence but was solved to rtol 3e-6: the solve is continued to the accuracy the stopping rule needs, and the
    fit stops after 4 steps (5 before, the fifth only confirming), within tol of a fit to 1e-14. Bugs caught: the
    continuation dropped (5 steps), or its accuracy not rechecked (an answer off by more than tol)."""
    rng = np.random.default_rng(1)
    n = 500
    strengths = rng.standard_normal(n)
    cycle = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    comps = np.concatenate([cycle, sample_comparisons(strengths, 10_000 - n, rng)])
    comps = comps[rng.permutation(len(comps))]
    fit = fit_bradley_terry(comps, n)
    ref = fit_bradley_terry(comps, n, tol=1e-14)
    assert fit.converged and fit.n_iter == 4, fit.n_iter
    assert np.max(np.abs(fit.strengths - ref.strengths)) <= 1e-10


def test_fit_reports_its_method_and_an_mm_run_cut_short():
    # mutmut found these fields unchecked: the method of the fit, and MM's converged flag when max_iter stops it
    data = load_baseball()
    kw = dict(weights=data.weights, winner_first=data.winner_first)
    assert fit_bradley_terry(data.comparisons, data.n_items, **kw).method == "newton"
    full = fit_bradley_terry(data.comparisons, data.n_items, method="mm", tol=1e-12, **kw)
    assert full.method == "mm" and full.converged
    with pytest.warns(ConvergenceWarning, match=r"\(mm\) stopped after 2 iterations"):
        short = fit_bradley_terry(data.comparisons, data.n_items, method="mm", max_iter=2, **kw)
    assert not short.converged and short.n_iter == 2
    np.testing.assert_allclose(full.strengths - full.strengths.mean(),
                               fit_bradley_terry(data.comparisons, data.n_items, **kw).strengths, atol=1e-8)


# ------------------------------------------------------------------------------- the fast paths (issue 16)
# (the aggregation against counting by hand: tests/test_bradley_terry_aggregate.py)
def test_sigmoid_pair_keeps_relative_precision_in_both_tails():
    """σ(z) and σ(−z) from one exp, against scipy's expit (to 4 ulps, wherever expit does not flush to 0), finite
    where e^{−z} overflows: computing σ(−z) as 1 − σ(z) fails the tail, e^{−z}·σ(z) unguarded gives NaN."""
    from scipy.special import expit

    from prefkit.bradley_terry import _sigmoid_pair

    z = np.concatenate([np.linspace(-800, 800, 40001), [0.0, -0.0, 1e-300, -1e-300, 36.7, -36.7, -709.9, 745.2]])
    p, q = _sigmoid_pair(z, np.empty_like(z), np.empty_like(z))
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(q))
    for got, want in ((p, expit(z)), (q, expit(-z))):
        ok = want > 1e-300
        np.testing.assert_allclose(got[ok], want[ok], rtol=4 * np.finfo(float).eps, atol=0)
        assert np.all(got[~ok] <= 1e-300)


def test_newton_stops_at_quadratic_prediction_within_tol_of_the_mle():
    """The stop on predicted quadratic convergence (Δ_k³/Δ_{k−1}² ≤ tol/10) saves the confirming step but
    must still land within tol of the MLE: checked against MM run to 1e-14 (an independent algorithm), at
    several tolerances. A stop with neither guard (the predicted step, and the inexact solve's error rtol·Δ_k,
    both below tol/10) lands about 1e-8 away at tol 1e-10 and fails; either guard alone suffices here (rtol
    tracks the curvature-scaled gradient, so rtol·Δ_k ≈ Δ_k² is itself a quadratic prediction)."""
    for scale, seed in ((1.5, 5), (1.0, 6)):
        rng = np.random.default_rng(seed)
        comps = sample_comparisons(rng.standard_normal(200) * scale, 40_000, rng)
        ref = fit_bradley_terry(comps, 200, method="mm", tol=1e-14, max_iter=1_000_000).strengths
        for tol in (1e-4, 1e-7, 1e-10):
            fit = fit_bradley_terry(comps, 200, tol=tol)
            assert fit.converged
            assert np.max(np.abs(fit.strengths - ref)) <= tol, (scale, tol)
    # measured: 4 steps with the prediction, 5 without (its fifth step only confirms, Δ ≈ 1e-9 → 1e-16)
    assert fit_bradley_terry(comps, 200).n_iter == 4


def test_fit_does_not_write_into_the_callers_arrays():
    """int64 comparisons are used without a copy (as_index_array(copy=False)): the fit must not modify them."""
    rng = np.random.default_rng(2)
    comps = sample_comparisons(rng.standard_normal(30), 2000, rng)
    weights = rng.random(len(comps)) + 0.1
    before = comps.copy(), weights.copy()
    fit_bradley_terry(comps, 30, weights=weights)
    fit_bradley_terry(comps, 5000, l2=0.1)  # the sorted-keys path (items without data: a MAP)
    np.testing.assert_array_equal(comps, before[0])
    np.testing.assert_array_equal(weights, before[1])


# ------------------------------------------------------------------------- mutation run 5: Newton's internals
def test_newton_crosses_the_far_tail_in_few_steps():
    """Counts 1 : 1e-300 put the MLE gap at log(1e300) ≈ 690.8, deep in σ's tail, where a Newton step moves by about
    1 and the extended line search does the work. Its cap is twice the largest possible MLE gap, from the spread
    log(total / smallest count). Bugs caught (mutmut run 5, each still ends at the MLE but through 10–20× more
    steps, so a longer chain or a lower max_iter stops short): the smallest count taken over one direction only
    (5 → 48 steps), the spread dropped (5 → 88), the cap divided by n or with spread − 2 (l2 = 1e-8: 8 → 18)."""
    half = 0.5 * math.log(1e300)
    fit = fit_bradley_terry([(0, 1), (1, 0)], weights=[1.0, 1e-300])
    assert fit.converged and fit.n_iter <= 8
    np.testing.assert_allclose(fit.strengths, [half, -half], rtol=1e-12)
    chain = fit_bradley_terry([(0, 1), (1, 2), (1, 0), (2, 1)], weights=[1.0, 1.0, 1e-300, 1e-300])
    assert chain.converged and chain.n_iter <= 8
    np.testing.assert_allclose(chain.strengths, [2 * half, 0.0, -2 * half], rtol=1e-12, atol=1e-9)
    # a 1e8 : 1 cycle of six items (6 steps), and a MAP with a tiny l2 that sits far out (8 steps)
    cycle = [(k, k + 1) for k in range(5)] + [(k + 1, k) for k in range(5)] + [(5, 0)]
    fit = fit_bradley_terry(cycle, weights=[1e8] * 5 + [1.0] * 6)
    assert fit.converged and fit.n_iter <= 8
    fit = fit_bradley_terry([(0, 1), (0, 1), (1, 2)], 3, l2=1e-8)
    assert fit.converged and fit.n_iter <= 10


def test_newton_cut_short_by_max_iter_is_not_converged():
    """A Newton run stopped by ``max_iter`` must say converged=False (a bool). Bug caught (mutmut run 5): the flag
    initialised to True (or None) is what a run that ends at max_iter reports."""
    with pytest.warns(ConvergenceWarning, match="stopped after 2 iterations"):
        fit = fit_bradley_terry([(0, 1), (1, 0)], weights=[1.0, 1e-300], max_iter=2)
    assert fit.converged is False and fit.n_iter == 2
    assert fit_bradley_terry([(0, 1), (1, 0)], weights=[1.0, 1e-300]).converged is True
    with pytest.warns(ConvergenceWarning, match="Raise max_iter"):
        assert not fit_bradley_terry([(0, 1), (1, 0), (0, 1)], method="mm", max_iter=1).converged


@pytest.mark.parametrize("w", [1e-310, 1e-320, 5e-324])
def test_subnormal_weight_ratios(w):
    """Counts 1 : w with w subnormal (below 2.2e-308) put the MLE gap at log(1/w), up to 744.4, where the curvature
    σ(z)σ(−z) and the gradient are subnormal too and the gradient underflows to exactly 0 before the step does.
    The gap is then exact to the relative spacing of w (5e-14 at 1e-310, 5e-4 at 1e-320).
    Bug caught: the rescaled CG step was 0 · (1/subnormal curvature) = 0 · ∞ = NaN, and the fit raised "Newton's
    method diverged: the estimate does not exist" although the MLE exists (found by mutation run 5's battery)."""
    fit = fit_bradley_terry([(0, 1), (1, 0)], weights=[1.0, w])
    assert fit.converged
    gap = fit.strengths[0] - fit.strengths[1]
    # float64 holds w only to its spacing 4.9e-324, so log w is known to ±spacing/w (about 1 at w = 5e-324)
    assert abs(gap - (-math.log(w))) <= 1e-9 + 2 * np.spacing(w) / w, (gap, -math.log(w))


def test_weights_below_the_float_range_of_the_largest_are_named():
    """A weight 1e-600 times the largest is 0 in float64 once the counts are divided by the largest: the win graph
    can lose strong connectivity that way, and the error must say so rather than blame the comparisons alone."""
    with pytest.raises(ValueError, match="1 positive weight is below 5e-324 times the largest"):
        fit_bradley_terry([(0, 1), (1, 0)], weights=[1e300, 1e-300])


def test_gauge_projection_keeps_rounding_on_the_busy_items():
    """Counts from 1e-4 to 1e10 (a case hypothesis found): item 4's gradient is known to 1e-16, items 0–2's only to
    1e-8 (rounding of 1e8-sized terms). Bug caught: CG's gauge projection r − mean(r) spread items 0–2's rounding
    onto item 4, and Newton stopped "converged" at tol 1e-10 with item 4 off by 1e-6 (gradient 1.4e-9 against a
    curvature of 1e-3). With the projection weighted by the diagonal, item 4's gradient is at rounding level."""
    comps = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [0, 2], [1, 0], [2, 1], [3, 2], [4, 3], [0, 4], [2, 0]])
    w = np.array([1, 1, 1, 1e-4, 1, 1e8, 1e8, 1e10, 1, 1, 1e-3, 1.0])
    fit = fit_bradley_terry(comps, 5, weights=w)
    assert fit.converged
    z = fit.strengths[comps[:, 0]] - fit.strengths[comps[:, 1]]
    won = w * sigmoid(-z)
    g = np.bincount(comps[:, 0], won, 5) - np.bincount(comps[:, 1], won, 5)
    assert abs(g[4]) <= 1e-12, g  # was 1.4e-9


def test_newton_that_stalls_at_rounding_warns():
    """Weights spread over 200 orders of magnitude: float64 rounding of the largest gradient terms exceeds the
    smallest, and Newton cannot meet tol. It must not say converged silently: a ConvergenceWarning and
    converged=False. Bug caught: a fit that ends at max_iter without a word."""
    n = 5
    comps = [(a, b) for a in range(n) for b in range(n) if a != b]
    w = 10.0 ** np.random.default_rng(0).uniform(-100, 100, len(comps))
    with pytest.warns(ConvergenceWarning, match="stopped after 100 iterations"):
        fit = fit_bradley_terry(comps, n_items=n, weights=w)
    assert fit.converged is False and np.all(np.isfinite(fit.strengths))


def test_order_effect_obstruction_in_every_direction():
    """The order-effect existence check (a linear program, then a level assignment along a BFS tree) on designs the
    tour's data never produce. Bugs caught (mutmut run 5): variables bounded ≥ 0 (the LP's default bounds) miss
    "the second position always won" (δ → −∞); a threshold above 1 misses a design where one comparison alone can
    grow (the LP's optimum is then exactly 1); e_first + e_second for e_first − e_second in the LP; a BFS tree edge
    walked backwards (+1 for −1) or a sum of levels for their difference miss a confounded chain 2 → 1 → 0. Each
    then reached Newton, which diverged with a message that does not say why."""
    tri = [[0, 1], [1, 0], [1, 2], [2, 1], [2, 0], [0, 2]]
    with pytest.raises(ValueError, match="separating direction"):  # the second position always won
        fit_bradley_terry(tri, winner_first=[False] * 6)
    # 0 and 1 split their games with 0 first; the one game with 1 first, 1 won: only that term can grow (δ up)
    with pytest.raises(ValueError, match="separating direction"):
        fit_bradley_terry([[0, 1], [1, 0], [1, 0]], winner_first=[True, False, True])
    # (1 first, 0 second) and (2 first, 1 second), each won both ways: δ = θ_0 − θ_1 = θ_1 − θ_2 is not separable
    with pytest.raises(ValueError, match="confounded"):
        fit_bradley_terry([[1, 0], [0, 1], [2, 1], [1, 2]], winner_first=[True, False, True, False])
    fit = fit_bradley_terry(tri + [[0, 1]], winner_first=[True, False] * 3 + [False])  # positions vary: a fit
    assert fit.converged and np.isfinite(fit.order_effect)


def test_newton_extends_along_the_order_effect_in_few_steps():
    """A MAP with a tiny l2 whose order effect sits far out (δ ≈ 5.7 at l2 = 1e-4, 11.4 at 1e-8: the first position
    won every game but one), where the extended line search carries δ. Bugs caught (mutmut run 5): −δ for +δ in
    the directional slope's z or dz, or in the point where _extend_step takes it, and −g_δ·Δδ in the slope at a
    step's end (7 → 12–95 steps, and at l2 = 1e-8 one of them never converges)."""
    comps, first = [(0, 1), (1, 2), (2, 0), (1, 0)], [True, True, True, False]
    for l2, most in ((1e-4, 9), (1e-8, 11)):
        fit = fit_bradley_terry(comps, 3, l2=l2, winner_first=first)
        assert fit.converged and fit.n_iter <= most, (l2, fit.n_iter)
        np.testing.assert_allclose(fit.strengths[0], -fit.strengths[1], rtol=1e-12)
        assert abs(fit.strengths[2]) < 1e-12 and fit.order_effect > 5


def test_newton_backtracks_a_step_that_overshoots():
    """Weights 1e14 : 3e8 : 4e-5 with l2 = 0.3 (a MAP), and a cycle with uneven weights and positions: here a full
    Newton step overshoots and the line search halves it (measured 8 and 7 steps; found by a random search, no other
    test ever backtracked). Bugs caught (mutmut run 5): backtracking along −Δθ (8 → 54 steps) or to step/Δθ, the
    trial point's objective taken without δ, and a break for the continue after a backtrack (the run stops there)."""
    fit = fit_bradley_terry([[0, 4], [2, 0], [2, 1]], 5, weights=[1e14, 3e8, 4e-5], l2=0.3)
    assert fit.converged and fit.n_iter <= 9
    comps = [[2, 0], [1, 0], [2, 0], [2, 1], [1, 2], [0, 1], [0, 2], [2, 1], [1, 2]]
    weights = [3.3e-27, 2.0e-2, 5.8e-4, 1.2e-4, 1.4e-3, 4.2e-7, 2.0e-23, 3.2e-4, 3.4e-27]
    first = [True, True, False, True, False, True, True, False, False]
    fit = fit_bradley_terry(comps, 3, weights=weights, l2=4.3e-6, winner_first=first)
    assert fit.converged and fit.n_iter <= 8


def test_newton_stops_at_float64s_limit_without_claiming_convergence():
    """tol = 1e-300 cannot be met: once the gradient is rounding noise and the steps have stopped shrinking three
    times, Newton stops with converged=False (measured 8 and 10 steps), at the MLE to rounding. Bugs caught (mutmut
    run 5; no other test reached this stop): a ``return`` for its ``break`` (the fit crashes), the stall test turned
    off (None, or False without δ) or loosened to ``or`` (it then also fires on a run that converges: the second
    case, converged in 14 steps, reported converged=False after 13), and thresholds that never see rounding."""
    d = load_baseball()
    for kw in ({}, {"winner_first": d.winner_first}):
        fit = fit_bradley_terry(d.comparisons, d.n_items, weights=d.weights, tol=1e-300, **kw)
        assert fit.converged is False and fit.n_iter <= 15, (sorted(kw), fit.n_iter)
        ref = fit_bradley_terry(d.comparisons, d.n_items, weights=d.weights, **kw)
        np.testing.assert_allclose(fit.strengths, ref.strengths, atol=1e-12)
    comps = [[2, 1], [0, 3], [3, 0], [0, 1], [0, 2], [3, 2], [3, 1], [3, 1], [3, 0], [1, 3]]
    weights = [4.61185659e16, 5.20057924e-9, 3.30475181e5, 1.99515052e-4, 9.99104426e9, 1.98564428e13,
               9.67891119e-4, 3.15297478e14, 1.05028743e-5, 4.55958126e3]  # from a random search
    first = [False, True, True, True, False, True, True, True, True, False]
    assert fit_bradley_terry(comps, 4, weights=weights, l2=2.4137027174857413e-07, winner_first=first).converged


def test_newton_never_returns_nan_strengths():
    """Counts 1 : 1e-320 (a subnormal ratio; the MLE gap log(1e320) ≈ 736.8 exists): the fit is finite or a
    ValueError, never NaN. Newton currently overflows on the way and raises ("diverged"). Bug caught (mutmut run 5):
    the divergence check with ``or`` (θ infinite but δ finite passes it), after which the fit returned NaN strengths
    with converged=False."""
    try:
        with np.errstate(all="ignore"):  # the overflow on the way is expected
            fit = fit_bradley_terry([(0, 1), (1, 0)], weights=[1.0, 1e-320])
    except ValueError:
        return
    assert np.all(np.isfinite(fit.strengths))
