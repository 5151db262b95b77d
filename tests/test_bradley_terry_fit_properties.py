"""The fit objects' properties (mutation run 10): covariance, standard errors, contrasts, repr, overflow messages.

``BradleyTerryFit`` and ``PlackettLuceFit`` compute their covariance in a property, which mutmut 3.8 skipped. Each
test here compares the property with the information matrix assembled by hand, row by row, in float64:

* Bradley-Terry: F = Σ_rows w·σ(z)σ(−z)·x xᵀ, z = θ_first − θ_second (+ δ), x = e_first − e_second (+ e_δ);
* Plackett-Luce: F = Σ_rankings w·Σ_stages [diag(p) − p pᵀ], p the softmax of the items not yet chosen;

the covariance is pinv(F) (the sum-zero gauge: F's null vector is (1, …, 1, 0)) or, with l2 > 0, the inverse
of F + 2·l2 on the strengths' diagonal (δ is not penalised).
"""

import math
import warnings

import numpy as np
import pytest

from prefkit import bt_log_likelihood, fit_bradley_terry, fit_plackett_luce, sample_rankings, sigmoid


def _sig_pair(z):
    """σ(z)·σ(−z) to relative precision in both tails."""
    e = np.exp(-np.abs(z))
    return e / (1 + e) ** 2


def _bt_information(theta, comps, w, winner_first=None, delta=0.0):
    n = len(theta)
    k = n + (winner_first is not None)
    f = np.zeros((k, k))
    for r, ((a, b), wr) in enumerate(zip(comps, w, strict=True)):
        first, second = (a, b) if winner_first is None or winner_first[r] else (b, a)
        x = np.zeros(k)
        x[first], x[second] = 1.0, -1.0
        z = theta[first] - theta[second]
        if winner_first is not None:
            x[n] = 1.0
            z += delta
        f += wr * _sig_pair(z) * np.outer(x, x)
    return f


def _covariance(f, n, l2):
    if l2 == 0:
        return np.linalg.pinv(f, rcond=1e-12, hermitian=True)
    pen = np.zeros(len(f))
    pen[:n] = 2 * l2
    return np.linalg.inv(f + np.diag(pen))


def _bt_data(n, m, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    theta = 0.7 * rng.standard_normal(n)
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n
    first_won = rng.random(m) < sigmoid(theta[first] - theta[second] + 0.4)
    comps = np.where(first_won[:, None], np.stack([first, second], 1), np.stack([second, first], 1))
    w = scale * rng.uniform(0.5, 2.0, m)
    return comps, w, first_won


def _check_bt_fit(fit, comps, w, winner_first, l2):
    n = fit.n_items
    delta = fit.order_effect if winner_first is not None else 0.0
    cov = _covariance(_bt_information(fit.strengths, comps, w, winner_first, delta), n, l2)
    np.testing.assert_allclose(fit.covariance, cov[:n, :n], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.stderr, np.sqrt(np.diag(cov)[:n]), rtol=1e-9)
    if winner_first is None:
        assert fit.order_effect_stderr is None
    else:
        assert fit.order_effect_stderr == pytest.approx(math.sqrt(cov[n, n]), rel=1e-9)
    for i in range(n):
        for j in range(n):
            se = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0))
            assert fit.contrast_stderr(i, j) == pytest.approx(se, rel=1e-8, abs=1e-12)
    ref = n - 2
    est, se = fit.contrasts(ref)
    np.testing.assert_allclose(est, fit.strengths - fit.strengths[ref], atol=1e-14)
    d = np.diag(cov)[:n]
    np.testing.assert_allclose(se, np.sqrt(np.clip(d + d[ref] - 2 * cov[:n, ref], 0, None)), rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------------------------------------ Bradley-Terry
@pytest.mark.parametrize("order_effect", [False, True])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_bt_covariance_matches_the_hand_information_with_scaled_weights(l2, order_effect):
    """Weights up to 10 (the fit divides them by the largest, then scales the covariance back), with and
    without the penalty and the order effect: covariance, stderr, δ's stderr, every contrast and contrasts()."""
    comps, w, first_won = _bt_data(6, 160, seed=21, scale=5.0)
    wf = first_won if order_effect else None
    fit = fit_bradley_terry(comps, 6, weights=w, l2=l2, winner_first=wf, tol=1e-13)
    assert fit.converged
    _check_bt_fit(fit, comps, w, wf, l2)
    if l2 > 0:  # the MAP's covariance is not the MLE's: the penalty is in it (and only on the strengths)
        unpenalised = _covariance(
            _bt_information(fit.strengths, comps, w, wf, fit.order_effect if order_effect else 0.0), 6, 0.0
        )
        for i, j in [(0, 1), (2, 5), (4, 3)]:  # a gauge-free quantity: the prior shrinks every contrast's SE
            se = math.sqrt(unpenalised[i, i] + unpenalised[j, j] - 2 * unpenalised[i, j])
            assert fit.contrast_stderr(i, j) < se - 1e-4


@pytest.mark.parametrize("never", ["first", "second"])
def test_bt_order_effect_covariance_when_the_last_item_is_never_first_or_never_second(never):
    """The order effect's column of F is Σ over edges by first item minus by second item: it must have one
    entry per item also when the last item is never the first (home) item, or never the second."""
    rng = np.random.default_rng(22)
    n, m = 4, 300
    theta = np.array([0.3, -0.2, 0.1, -0.2])
    if never == "first":
        first = rng.integers(0, n - 1, m)
        second = (first + rng.integers(1, n, m)) % n
    else:
        second = rng.integers(0, n - 1, m)
        first = (second + rng.integers(1, n, m)) % n
    first_won = rng.random(m) < sigmoid(theta[first] - theta[second] + 0.5)
    comps = np.where(first_won[:, None], np.stack([first, second], 1), np.stack([second, first], 1))
    w = np.ones(m)
    fit = fit_bradley_terry(comps, n, weights=w, winner_first=first_won, tol=1e-13)
    assert fit.converged
    _check_bt_fit(fit, comps, w, first_won, 0.0)

    # δ's variance also from finite differences of ℓ(θ, δ) (the library's likelihood, not its information)
    def ll(v):
        return bt_log_likelihood(v[:n], comps, w, winner_first=first_won, order_effect=v[n])

    v0 = np.concatenate([fit.strengths, [fit.order_effect]])
    h, k = 1e-4, n + 1
    hess = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            ea, eb = np.eye(k)[a] * h, np.eye(k)[b] * h
            hess[a, b] = (ll(v0 + ea + eb) - ll(v0 + ea - eb) - ll(v0 - ea + eb) + ll(v0 - ea - eb)) / (4 * h * h)
    cov = np.linalg.pinv(-hess, rcond=1e-10)
    assert fit.order_effect_stderr == pytest.approx(math.sqrt(cov[n, n]), rel=1e-4)


def test_bt_covariance_scales_as_one_over_the_weights():
    """Multiplying every weight by c leaves θ̂ and divides the covariance by c (the information is linear)."""
    comps, w, first_won = _bt_data(5, 120, seed=23)
    base = fit_bradley_terry(comps, 5, weights=w, winner_first=first_won, tol=1e-13)
    for c in (1e-3, 7.0):
        fit = fit_bradley_terry(comps, 5, weights=c * w, winner_first=first_won, tol=1e-13)
        np.testing.assert_allclose(fit.covariance, base.covariance / c, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(fit.stderr, base.stderr / math.sqrt(c), rtol=1e-7)
        assert fit.order_effect_stderr == pytest.approx(base.order_effect_stderr / math.sqrt(c), rel=1e-7)
        assert fit.contrast_stderr(0, 3) == pytest.approx(base.contrast_stderr(0, 3) / math.sqrt(c), rel=1e-7)


@pytest.mark.parametrize(
    ("fit", "data", "ll_message", "cov_message"),
    [
        (fit_bradley_terry, [(0, 1), (1, 0), (0, 1), (1, 0), (1, 2), (2, 1)],
         "log-likelihood of these weights overflows float64",
         "the covariance overflows float64 for weights this small"),
        (fit_plackett_luce, [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)] * 2,
         "^the log-likelihood of these weights overflows float64$",
         "^the covariance overflows float64 for weights this small; use stderr$"),
    ],
    ids=["bradley_terry", "plackett_luce"],
)
def test_overflow_is_a_value_error_without_runtime_warnings(fit, data, ll_message, cov_message):
    """Weights near 1e308: ℓ overflows; weights 1e-310: the covariance overflows but stderr does not. Each is
    the documented ValueError, not a RuntimeWarning first."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = fit(data, 3, weights=[1e308] * len(data))
        with pytest.raises(ValueError, match=ll_message):
            _ = big.log_likelihood
        small = fit(data, 3, weights=[1e-310] * len(data))
        with pytest.raises(ValueError, match=cov_message):
            _ = small.covariance
        unit = fit(data, 3)
        np.testing.assert_allclose(small.stderr, unit.stderr / math.sqrt(1e-310), rtol=1e-9)


def test_bt_contrast_stderr_names_the_bad_index():
    fit = fit_bradley_terry([(0, 1), (1, 2), (2, 0)], 3)
    with pytest.raises(ValueError, match=r"^i=3 is out of range for 3 entries"):
        fit.contrast_stderr(3, 0)
    with pytest.raises(ValueError, match=r"^j=-1 is out of range for 3 entries"):
        fit.contrast_stderr(0, -1)
    with pytest.raises(ValueError, match=r"^ref=5 is out of range"):
        fit.contrasts(5)


def test_bt_se_clips_a_rounding_negative_variance_to_zero():
    """A variance a few ulps below 0 (cancellation in C_ii + C_jj − 2·C_ij) is a standard error of 0, not NaN."""
    fit = fit_bradley_terry([(0, 1), (1, 0)], 2, weights=[4.0, 4.0])  # weights divided by 4: scale 4
    np.testing.assert_array_equal(fit._se(np.array([-1e-17, 4.0])), [0.0, 1.0])
    assert fit.contrast_stderr(1, 1) == 0.0


@pytest.mark.parametrize("w", [1e-8, 3e-16, 1e-17, 1e-30, 1e-100])
def test_bt_stderr_with_very_uneven_weights(w):
    """Two items, weights 1 (0 beat 1) and w (1 beat 0): the MLE gap is log(1/w) and the contrast's variance is
    1/(t·σ(z)σ(−z)) = (1 + w)/w exactly; each strength's is a quarter of it (sum-zero gauge). A bug found by
    mutation run 10, fixed: the information used t·p·(1 − p), and 1 − p cancels for |z| > 30 (w = 3e-16 gave an SE
    16% too large; w = 1e-17 raised "singular"); then inv(F + uuᵀ) − uuᵀ lost an information of 3e-16 against the
    unit-size uuᵀ. F's own scale now replaces the unit one."""
    fit = fit_bradley_terry([(0, 1), (1, 0)], 2, weights=[1.0, w])
    se = math.sqrt((1 + w) / w)
    assert fit.contrast_stderr(0, 1) == pytest.approx(se, rel=1e-9)
    np.testing.assert_allclose(fit.stderr, [se / 2, se / 2], rtol=1e-9)


def test_bt_stderr_against_the_hand_information_with_uneven_weights():
    """Five items, an order effect and weights from 1e-12 to 1: against pinv of the information assembled by hand
    (each row's σ(z)σ(−z) to relative precision), to 1e-9 relative (measured: 2e-16). Bugs caught: the gauge term
    scaled by F's scale on one side of (F/c + uuᵀ)⁻¹/c − uuᵀ/c and not the other."""
    rng = np.random.default_rng(4)
    n = 5
    comps = np.array([(a, b) for a in range(n) for b in range(n) if a != b] * 2)
    wf = rng.random(len(comps)) < 0.5
    w = 10.0 ** rng.uniform(-12, 0, len(comps))
    fit = fit_bradley_terry(comps, n, weights=w, winner_first=wf)
    f = _bt_information(fit.strengths, comps, w / w.max(), wf, fit.order_effect)
    cov = np.linalg.pinv(f, rcond=1e-15, hermitian=True) / w.max()
    np.testing.assert_allclose(fit.stderr, np.sqrt(np.diag(cov))[:n], rtol=1e-9)
    assert fit.order_effect_stderr == pytest.approx(math.sqrt(cov[n, n]), rel=1e-9)


def test_bt_stderr_of_a_single_item_is_zero():
    """One item, no comparisons: θ = 0 in the sum-zero gauge, exactly, so its variance is 0 (hypothesis found the
    F's-own-scale fix dividing by F's largest diagonal entry, 0 here)."""
    fit = fit_bradley_terry(np.zeros((0, 2), dtype=int), 1)
    np.testing.assert_array_equal(fit.stderr, [0.0])
    np.testing.assert_array_equal(fit.covariance, [[0.0]])


def test_bt_stderr_refuses_information_beyond_float64_instead_of_returning_zero():
    """An order effect identified only by a comparison whose information is 1e-79 of the rest: the variances are
    about 1e91 (computed with mpmath at 250 digits) and float64 cannot resolve them. Before the fix the standard
    errors came back as exactly 0 (a negative variance clipped), silently; now it is the "singular" error."""
    comps = [(0, 1), (1, 0), (1, 0), (0, 1)]
    fit = fit_bradley_terry(comps, 2, weights=[1e-14, 1e-14, 1, 3e-14], winner_first=[True, True, False, False])
    assert fit.converged
    with pytest.raises(ValueError, match="singular"):
        _ = fit.stderr


def test_bt_repr_shows_the_order_effect_only_when_fitted():
    comps = [(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0), (0, 1)]
    plain = fit_bradley_terry(comps, 3)
    assert repr(plain) == (
        f"BradleyTerryFit(n_items=3, method='newton', l2=0.0, log_likelihood={plain.log_likelihood:.6g}, "
        f"n_iter={plain.n_iter}, converged=True)"
    )
    home = fit_bradley_terry(comps, 3, winner_first=[True, False, True, True, False, True, True])
    assert abs(home.order_effect) > 0.5
    assert repr(home) == (
        f"BradleyTerryFit(n_items=3, method='newton', l2=0.0, log_likelihood={home.log_likelihood:.6g}, "
        f"order_effect={home.order_effect:.4g}, n_iter={home.n_iter}, converged=True)"
    )


# ------------------------------------------------------------------------------------------------ Plackett-Luce
def _pl_information(theta, rankings, w):
    n = len(theta)
    f = np.zeros((n, n))
    for r, wr in zip(rankings, w, strict=True):
        r = list(r)
        for k in range(len(r) - 1):
            s = r[k:]
            p = np.exp(theta[s] - theta[s].max())
            p /= p.sum()
            f[np.ix_(s, s)] += wr * (np.diag(p) - np.outer(p, p))
    return f


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_pl_covariance_and_stderr_match_the_hand_information_with_scaled_weights(l2):
    """Rankings of lengths 3 and 4, weights up to 8 (divided by the largest inside the fit), enough of them that
    every variance is below 1."""
    rng = np.random.default_rng(31)
    n = 5
    theta = 0.8 * rng.standard_normal(n)
    rankings = [list(r) for r in sample_rankings(theta, 150, rng, length=3)]
    rankings += [list(r) for r in sample_rankings(theta, 100, rng, length=4)]
    w = 4.0 * rng.uniform(0.5, 2.0, len(rankings))
    fit = fit_plackett_luce(rankings, n, weights=w, l2=l2, tol=1e-13)
    assert fit.converged
    cov = _covariance(_pl_information(fit.strengths, rankings, w), n, l2)
    if l2 == 0:
        assert np.all(np.diag(cov) < 0.2)  # below 1: a standard error clipped from below at 1 would show
    np.testing.assert_allclose(fit.covariance, cov, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(fit.stderr, np.sqrt(np.diag(cov)), rtol=1e-9)
    if l2 == 0:
        np.testing.assert_allclose(fit.covariance.sum(axis=1), 0.0, atol=1e-12)


def test_pl_repr():
    fit = fit_plackett_luce([(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)], 3)
    assert repr(fit) == (
        f"PlackettLuceFit(n_items=3, method='newton', l2=0.0, log_likelihood={fit.log_likelihood:.6g}, "
        f"n_iter={fit.n_iter}, converged=True)"
    )
