"""Chapter 1: Bradley-Terry strengths (notebook 01_bradley_terry.ipynb).

The chapter's experiments (how fast the MLE recovers the truth, how often the Wald intervals cover it), its claims,
its tour checks and the checkers of its two exercises (one MM sweep, the standard error of a contrast). The model, the
fit and the loaders are the library's: :mod:`prefkit.bradley_terry`, :mod:`prefkit.loaders`.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_probability
from ..bradley_terry import (
    bt_fisher_information,
    bt_log_likelihood,
    bt_log_likelihood_gradient,
    bt_probability,
    fit_bradley_terry,
    mle_obstruction,
    sample_comparisons,
)
from ..loaders import BASEBALL_HOME_PUBLISHED, BASEBALL_PUBLISHED, load_baseball, load_llmfao
from .claims import Chapter
from .exercises import Mistake, exercise

__all__ = [
    "CHAPTER",
    "NO_MLE_EXAMPLE",
    "finite_difference_gradient",
    "recovery_experiment",
    "coverage_experiment",
    "map_path",
    "baseball_published_errors",
    "baseball_home_errors",
    "grade_mm_update",
    "grade_contrast_stderr",
]

CHAPTER = Chapter(1, "Bradley-Terry", "01_bradley_terry.ipynb")

# ------------------------------------------------------------------------------------------------------------------
# claims, in the order of the notebook
# ------------------------------------------------------------------------------------------------------------------
S1 = "1. The model and its log-likelihood"
S2 = "2. Strengths are identified only up to a shift"
S3 = "3. The MLE: Newton and MM"
S4 = "4. The error shrinks like 1/√N"
S5 = "5. The standard errors are honest: ~95% coverage"
S6 = "6. When the MLE does not exist, and what l2 does"
S7 = "7. Real data"

LOGLIK = CHAPTER.claim("loglik", "log-likelihood = Σ log σ(θ_winner − θ_loser) written out by hand (abs diff)",
                       at_most=1e-9, section=S1)
GRADIENT = CHAPTER.claim("gradient", "gradient of the log-likelihood = central finite differences (max abs diff)",
                         at_most=1e-6, section=S1)
PROB_SUM = CHAPTER.claim("prob_sum", "P(i beats j) + P(j beats i) = 1 (largest error)", at_most=1e-15, section=S1,
                         kind="precision")
SHIFT = CHAPTER.claim("shift", "log-likelihood unchanged when every strength moves by 2.5 (abs diff)",
                      at_most=1e-9, section=S2)
FISHER_ZERO = CHAPTER.claim("fisher_zero", "the Fisher information L has a zero eigenvalue (|smallest eigenvalue|)",
                            at_most=1e-9, section=S2)
FISHER_ONES = CHAPTER.claim("fisher_ones", "its eigenvector is constant: the shift (max deviation from 1/√n)",
                            at_most=1e-9, section=S2)
FISHER_RANK = CHAPTER.claim("fisher_rank", "the next eigenvalue is clearly positive: only the shift is unidentified",
                            at_least=1.0, section=S2)
NEWTON_MM = CHAPTER.claim("newton_mm", "Newton and Hunter's MM reach the same MLE (max abs diff)", at_most=1e-8,
                          section=S3)
GRAD_AT_MLE = CHAPTER.claim("grad_at_mle", "the gradient vanishes at the MLE (max abs)", at_most=1e-8, section=S3)
NEWTON_ITERS = CHAPTER.claim("newton_iters", "Newton's steps to converge (quadratic convergence)", at_most=10,
                             section=S3)
CHOIX = CHAPTER.claim("choix", "Newton = choix.ilsr_pairwise, an independent implementation (max abs diff)",
                      at_most=1e-8, section=S3)
CYCLE = CHAPTER.claim("cycle", "3-cycle 0 > 1 > 2 > 0: all strengths equal (max abs)", at_most=1e-12, section=S3)
TWO_TO_ONE = CHAPTER.claim("two_to_one", "2 wins to 1: θ_a − θ_b = log 2 (abs error)", at_most=1e-12, section=S3)
SLOPE = CHAPTER.claim("slope", "RMS error ∝ N^slope: fitted log-log slope ≈ −1/2", within=(-0.6, -0.4), section=S4)
COVERAGE = CHAPTER.claim("coverage", "95% intervals θ̂ ± 1.96·SE cover the truth: |coverage − 95%| in Monte Carlo SEs",
                         at_most=4.0, section=S5)
Z_SQUARED = CHAPTER.claim("z_squared", "errors over their SE have mean square 1: |mean z² − 1| in Monte Carlo SEs",
                          at_most=4.0, section=S5)
NO_MLE = CHAPTER.claim("no_mle", "no MLE: the fit refuses, naming the unbeaten group {3, 4}", flag=True, section=S6)
MAP_FINITE = CHAPTER.claim("map_finite", "l2 from 1e-4 to 10: every MAP is finite (max |θ| on the path)",
                           at_most=50.0, section=S6)
MAP_GAP = CHAPTER.claim("map_gap", "the unbeaten group's lead grows at every step as l2 → 0 (smallest growth)",
                        at_least=0.01, section=S6)
MAP_STATIONARY = CHAPTER.claim("map_stationary", "l2 = 0.1: the MAP solves ∇ℓ = 2·l2·θ (max abs diff)",
                               at_most=1e-9, section=S6)
BASEBALL = CHAPTER.claim("baseball", "1987 AL East: published estimates and SEs (Agresti) reproduced (max abs diff)",
                         at_most=1e-3, section=S7)
HOME = CHAPTER.claim("home", "home advantage δ = published 0.302 (3 decimals: abs diff)", at_most=5e-4, section=S7)
HOME_ABILITIES = CHAPTER.claim("home_abilities", "abilities with home advantage = published (3 decimals: max abs diff)",
                               at_most=5e-4, section=S7)
HOME_MM = CHAPTER.claim("home_mm", "home advantage: Newton = Hunter's home-field MM (abs diff in δ)", at_most=1e-8,
                        section=S7)
LLMFAO_MM = CHAPTER.claim("llmfao_mm", "LLMFAO with the left-position effect: Newton = MM (max abs diff)",
                          at_most=1e-8, section=S7)
LEFT_BIAS = CHAPTER.claim("left_bias", "LLMFAO's judges favour the left answer: δ / SE(δ)", at_least=2.0, section=S7)

# the data set of section 6: items {3, 4} never lost to anyone in {0, 1, 2}
NO_MLE_EXAMPLE = ((0, 1), (1, 2), (2, 0), (3, 0), (3, 1), (4, 3), (3, 4))


# ------------------------------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------------------------------
def finite_difference_gradient(strengths, comparisons, h=1e-6):
    """Central differences [ℓ(θ + h·e_i) − ℓ(θ − h·e_i)] / 2h of :func:`prefkit.bt_log_likelihood`, shape (n,)."""
    theta = np.asarray(strengths, dtype=float)
    return np.array([(bt_log_likelihood(theta + h * e, comparisons) - bt_log_likelihood(theta - h * e, comparisons))
                     / (2 * h) for e in np.eye(len(theta))])


def _fits(theta, n_comparisons, n_reps, rng):
    """``n_reps`` fits on fresh data sets, and how many draws had no MLE (win graph not strongly connected).

    A draw without an MLE is part of the experiment's outcome, not an error: it is counted and left out, so the
    statistics are conditional on the MLE existing (Zermelo 1929; Ford 1957).
    """
    fits, no_mle = [], 0
    for _ in range(n_reps):
        comps = sample_comparisons(theta, int(n_comparisons), rng)
        if mle_obstruction(comps, len(theta)) is not None:
            no_mle += 1
            continue
        fits.append(fit_bradley_terry(comps, len(theta)))
    return fits, no_mle


def recovery_experiment(n_items, sizes, n_reps, seed=0):
    """RMS error of the MLE against the true strengths as the number of comparisons N grows.

    Strengths are drawn N(0, 1) and centred; for each N in ``sizes``, ``n_reps`` data sets of N comparisons between
    uniform random pairs are drawn and fitted, and the RMS error sqrt(mean over data sets and items of (θ̂_i − θ_i)²)
    is reported. Asymptotically θ̂ − θ ~ N(0, L⁺) with L ∝ N, so the slope of log(error) against log N is −1/2.

    A draw whose win graph is not strongly connected has no MLE: it is counted in ``no_mle`` and left out (the
    error is then conditional on the MLE existing; at N ≥ 250 comparisons among 10 items such draws are rare).

    Parameters
    ----------
    n_items : int ≥ 2.
    sizes : sequence of N (numbers of comparisons).
    n_reps : data sets per N.
    seed : int, seeds ``np.random.default_rng``.

    Returns
    -------
    dict with ``sizes`` (k,), ``rmse`` (k,) (NaN where every draw lacked an MLE), ``no_mle`` (k,) the number of
    draws without an MLE, ``n_reps``, ``slope`` (least-squares slope of log rmse on log N over the finite entries)
    and ``strengths``.
    """
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n_items)
    theta -= theta.mean()
    sizes = np.asarray(sizes, dtype=np.int64)
    rmse = np.full(len(sizes), np.nan)
    no_mle = np.zeros(len(sizes), dtype=np.int64)
    for s, size in enumerate(sizes):
        fits, no_mle[s] = _fits(theta, size, n_reps, rng)
        if fits:
            rmse[s] = np.sqrt(np.mean([(f.strengths - theta) ** 2 for f in fits]))
    ok = np.isfinite(rmse)
    slope = float(np.polyfit(np.log(sizes[ok]), np.log(rmse[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
    return {"sizes": sizes, "rmse": rmse, "no_mle": no_mle, "n_reps": n_reps, "slope": slope, "strengths": theta}


def coverage_experiment(n_items, n_comparisons, n_reps, seed=0, level=0.95):
    """How often the Wald intervals θ̂_i ± z·SE_i contain the true θ_i, over items and repeated data sets.

    The standard errors are sqrt(diag L⁺), the inverse Fisher information in the sum-zero gauge, and the true
    strengths are centred, so both sides live in the same gauge. Asymptotically the coverage is ``level`` and the
    standardised errors z = (θ̂ − θ)/SE have mean square 1. The Monte Carlo standard errors come from the spread
    of the per-data-set values (the intervals of one data set are correlated, so a binomial SE would be wrong).
    A draw without an MLE is counted in ``no_mle`` and left out.

    Returns
    -------
    dict with ``coverage``, ``coverage_se``, ``z`` (n_fits, n_items) standardised errors, ``z2`` (mean of z²),
    ``z2_se``, ``level`` and ``no_mle``.
    """
    from scipy.stats import norm

    level = check_probability(level, "level", open_lo=True, open_hi=True)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n_items)
    theta -= theta.mean()
    fits, no_mle = _fits(theta, n_comparisons, n_reps, rng)
    zs = np.array([(f.strengths - theta) / f.stderr for f in fits]).reshape(len(fits), n_items)
    per_set_cover = np.mean(np.abs(zs) <= norm.ppf(0.5 + level / 2), axis=1)
    per_set_z2 = np.mean(zs**2, axis=1)
    k = max(len(fits), 1)
    return {"coverage": float(np.mean(per_set_cover)), "coverage_se": float(np.std(per_set_cover, ddof=1) / k**0.5),
            "z": zs, "z2": float(np.mean(per_set_z2)), "z2_se": float(np.std(per_set_z2, ddof=1) / k**0.5),
            "level": level, "no_mle": no_mle}


def map_path(comparisons, l2_values):
    """MAP strengths (one row per l2) of :func:`prefkit.fit_bradley_terry` with ``l2``: shape (len(l2_values), n)."""
    return np.array([fit_bradley_terry(comparisons, l2=float(l2)).strengths for l2 in l2_values])


def baseball_published_errors(data, fit):
    """Rows (team, ours, our SE, published, published SE) of the contrasts θ_team − θ_Baltimore, and the largest
    absolute difference, against Agresti's Table 10.11 (:data:`prefkit.loaders.BASEBALL_PUBLISHED`)."""
    contrast, se = fit.contrasts(data.index(BASEBALL_PUBLISHED["reference"]))
    rows = [(team, contrast[data.index(team)], se[data.index(team)], est, s)
            for team, (est, s) in BASEBALL_PUBLISHED["estimates"].items()]
    return rows, max(max(abs(a - c), abs(b - d)) for _, a, b, c, d in rows)


def baseball_home_errors(home_fit):
    """(|δ̂ − 0.302|, max |ability − published|, sorted abilities e^θ/Σe^θ) against the published home-advantage
    fit (:data:`prefkit.loaders.BASEBALL_HOME_PUBLISHED`, 3 decimals)."""
    abilities = np.exp(home_fit.strengths - home_fit.strengths.max())
    abilities = np.sort(abilities / abilities.sum())
    pub = BASEBALL_HOME_PUBLISHED
    return (abs(home_fit.order_effect - pub["home_advantage"]),
            float(np.max(np.abs(abilities - np.array(pub["abilities_sorted"])))), abilities)


# ------------------------------------------------------------------------------------------------------------------
# tour checks
# ------------------------------------------------------------------------------------------------------------------
@CHAPTER.check("likelihood, gradient, shift")
def tour_likelihood(ctx):
    rng = np.random.default_rng(ctx.seed)
    theta = rng.standard_normal(8)
    comps = sample_comparisons(theta, 500, rng)
    by_hand = sum(np.log(1 / (1 + np.exp(-(theta[w] - theta[lo])))) for w, lo in comps)
    g = bt_log_likelihood_gradient(theta, comps)
    a, b = rng.standard_normal(50) * 5, rng.standard_normal(50) * 5
    eigval, eigvec = np.linalg.eigh(bt_fisher_information(theta, comps).toarray())
    return {
        LOGLIK: abs(bt_log_likelihood(theta, comps) - by_hand),
        GRADIENT: np.max(np.abs(g - finite_difference_gradient(theta, comps))),
        PROB_SUM: np.max(np.abs(bt_probability(a, b) + bt_probability(b, a) - 1)),
        SHIFT: abs(bt_log_likelihood(theta + 2.5, comps) - bt_log_likelihood(theta, comps)),
        FISHER_ZERO: abs(eigval[0]),
        FISHER_ONES: np.max(np.abs(np.abs(eigvec[:, 0]) - 1 / np.sqrt(8))),
        FISHER_RANK: eigval[1],
    }


@CHAPTER.check("Newton = MM = choix, golden cases")
def tour_solvers(ctx):
    rng = np.random.default_rng(ctx.seed + 1)
    theta = rng.standard_normal(20)
    comps = sample_comparisons(theta, 2000, rng)
    while mle_obstruction(comps, 20) is not None:  # (never at this size; a redraw keeps any seed valid)
        comps = sample_comparisons(theta, 2000, rng)
    newton = fit_bradley_terry(comps, 20)
    mm = fit_bradley_terry(comps, 20, method="mm", tol=1e-13)
    cycle = fit_bradley_terry([[0, 1], [1, 2], [2, 0]])
    two = fit_bradley_terry([[0, 1], [1, 0]], weights=[2.0, 1.0])
    out = {
        NEWTON_MM: np.max(np.abs(newton.strengths - mm.strengths)),
        GRAD_AT_MLE: np.max(np.abs(bt_log_likelihood_gradient(newton.strengths, comps))),
        NEWTON_ITERS: newton.n_iter,
        CYCLE: np.max(np.abs(cycle.strengths)),
        TWO_TO_ONE: abs(two.strengths[0] - two.strengths[1] - np.log(2)),
    }
    try:
        import choix
    except ImportError:  # an optional reference: the claim is then reported as not measured
        return out
    ref = choix.ilsr_pairwise(20, comps.tolist(), tol=1e-13, max_iter=10_000)
    out[CHOIX] = np.max(np.abs(newton.strengths - (ref - ref.mean())))
    return out


@CHAPTER.check("1/sqrt(N) recovery, 95% coverage")
def tour_statistics(ctx):
    rec = recovery_experiment(10, [250, 500, 1000, 2000, 4000, 8000], n_reps=20 if ctx.fast else 100,
                              seed=ctx.seed)
    cov = coverage_experiment(10, 2000, n_reps=100 if ctx.fast else 400, seed=ctx.seed + 1)
    if ctx.figdir is not None:
        from ..plotting.bradley_terry import plot_coverage, plot_recovery

        ctx.savefig(plot_recovery(rec["sizes"], rec["rmse"], rec["slope"]), "ch1_recovery.png")
        ctx.savefig(plot_coverage(cov["z"]), "ch1_coverage.png")
    return {
        SLOPE: rec["slope"],
        COVERAGE: abs(cov["coverage"] - cov["level"]) / cov["coverage_se"],
        Z_SQUARED: abs(cov["z2"] - 1) / cov["z2_se"],
    }


@CHAPTER.check("existence of the MLE, l2")
def tour_existence(ctx):
    try:
        fit_bradley_terry(NO_MLE_EXAMPLE)
        message = ""
    except ValueError as exc:
        message = str(exc)
    path = map_path(NO_MLE_EXAMPLE, np.logspace(-4, 1, 16))
    gap = path[:, [3, 4]].mean(axis=1) - path[:, [0, 1, 2]].mean(axis=1)
    fit = fit_bradley_terry(NO_MLE_EXAMPLE, l2=0.1)
    grad = bt_log_likelihood_gradient(fit.strengths, NO_MLE_EXAMPLE) - 2 * 0.1 * fit.strengths
    return {
        NO_MLE: "{3, 4} never lost" in message and mle_obstruction(NO_MLE_EXAMPLE) == ([3, 4], "never lost"),
        MAP_FINITE: np.max(np.abs(path)),
        MAP_GAP: np.min(gap[:-1] - gap[1:]),
        MAP_STATIONARY: np.max(np.abs(grad)),
    }


@CHAPTER.check("real data: baseball, LLMFAO")
def tour_real_data(ctx):
    data = load_baseball()
    _, err = baseball_published_errors(data, fit_bradley_terry(data.comparisons, data.n_items, weights=data.weights))
    kw = dict(weights=data.weights, winner_first=data.winner_first)
    home = fit_bradley_terry(data.comparisons, data.n_items, **kw)
    home_mm = fit_bradley_terry(data.comparisons, data.n_items, method="mm", tol=1e-13, **kw)
    err_delta, err_abilities, _ = baseball_home_errors(home)
    llm = load_llmfao()
    kw = dict(weights=llm.weights, winner_first=llm.winner_first)
    newton = fit_bradley_terry(llm.comparisons, llm.n_items, **kw)
    mm = fit_bradley_terry(llm.comparisons, llm.n_items, method="mm", tol=1e-13, **kw)
    if ctx.figdir is not None:
        from ..plotting.bradley_terry import plot_ranking

        ctx.savefig(plot_ranking(llm.names, newton.strengths, newton.stderr, top=25), "ch1_llmfao_ranking.png")
    return {
        BASEBALL: err,
        HOME: err_delta,
        HOME_ABILITIES: err_abilities,
        HOME_MM: abs(home.order_effect - home_mm.order_effect),
        LLMFAO_MM: max(np.max(np.abs(newton.strengths - mm.strengths)), abs(newton.order_effect - mm.order_effect)),
        LEFT_BIAS: newton.order_effect / newton.order_effect_stderr,
    }


# ------------------------------------------------------------------------------------------------------------------
# exercise checkers
# ------------------------------------------------------------------------------------------------------------------
def _bt_instance(seed, n=6, m=300):
    """A random data set whose MLE exists: comparisons (m, 2) and the win matrix wins[i, j] = n_ij."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n)
    comps = sample_comparisons(theta, m, rng)
    while mle_obstruction(comps, n) is not None:
        comps = sample_comparisons(theta, m, rng)
    wins = np.zeros((n, n))
    np.add.at(wins, (comps[:, 0], comps[:, 1]), 1.0)
    return comps, wins


def _mm_sweep(theta, wins, *, games=None, won=None):
    """Hunter's MM sweep log W_i − log Σ_j games_ij/(γ_i + γ_j), not centred; ``games``/``won`` replace
    n_ij + n_ji and W_i to reproduce a mistake."""
    gamma = np.exp(theta - theta.max())
    games = wins + wins.T if games is None else games
    won = wins.sum(axis=1) if won is None else won
    with np.errstate(divide="ignore"):
        return np.log(won) - np.log((games / (gamma[:, None] + gamma[None, :])).sum(axis=1)) + theta.max()


def _same(a, b, atol=1e-9):
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and np.allclose(a, b, atol=atol, rtol=0)


@exercise("ch1.mm_update", stub="my_mm_update", solution="ch1_bradley_terry:mm_update", title="one MM sweep")
def grade_mm_update(fn):
    """Check one sweep of Hunter's (2004) MM algorithm, returned in the sum-zero gauge.

    γ_i ← W_i / Σ_{j≠i} (n_ij + n_ji)/(γ_i + γ_j), γ = e^θ, W_i = Σ_j n_ij; the new θ = log γ centred to mean 0.
    ``fn(strengths (n,), wins (n, n)) -> new strengths (n,)`` with ``wins[i, j]`` = n_ij.

    Raises :class:`Mistake` naming the mistake: not centred; n_ji left out of the denominator; losses counted as
    wins; γ returned instead of θ; exp(θ) overflowing at θ ≈ 800; a sweep that lowers ℓ or does not reach the MLE.
    """
    for seed in range(3):
        comps, wins = _bt_instance(seed)
        n = len(wins)
        theta = np.random.default_rng(10 + seed).standard_normal(n)
        for shift in (0.0, 800.0):  # the update is scale-free: θ + 800 has the same answer; a naive exp overflows
            got = np.asarray(fn(theta + shift, wins.copy()), dtype=float)
            if got.shape != (n,):
                raise Mistake(f"my_mm_update returned shape {got.shape}; it must return the n = {n} new strengths")
            want = _mm_sweep(theta, wins)
            want -= want.mean()
            if not np.all(np.isfinite(got)):
                if shift:
                    raise Mistake(f"non-finite strengths at θ ≈ {shift:g}: exp(θ) overflows; the update is "
                                  "scale-free, so compute γ = exp(θ − max θ)")
                raise Mistake("non-finite strengths: look for a division by zero or the log of 0")
            if _same(got, want):
                continue
            centred = got - got.mean()
            if _same(centred, want):
                raise Mistake("the update is right but not centred: return θ − mean(θ), the sum-zero gauge (the "
                              f"mean of your answer is {got.mean():.3g})")
            if np.all(got > 0) and _same(np.log(got) - np.mean(np.log(got)), want):
                raise Mistake("you returned γ = e^θ: return the strengths θ = log γ, centred")
            for wrong, hint in (
                (_mm_sweep(theta, wins, games=wins), "the denominator must count every game between i and j, "
                 "n_ij + n_ji (wins + wins.T); yours counts n_ij only"),
                (_mm_sweep(theta, wins, won=wins.sum(axis=0)), "W_i is the number of wins of i, the row sum "
                 "wins[i].sum(); you used the column sum (its losses)"),
            ):
                if _same(centred, wrong - wrong.mean()):
                    raise Mistake(hint)
            raise Mistake("one sweep differs from Hunter's update γ_i ← W_i / Σ_j (n_ij + n_ji)/(γ_i + γ_j) "
                          f"(largest difference {np.max(np.abs(got - want)):.2e} on data set {seed})")
        # the MM property: every sweep raises the likelihood, and the sweeps converge to the MLE
        ll = bt_log_likelihood(theta, comps)
        for _ in range(3000):
            nxt = np.asarray(fn(theta, wins.copy()), dtype=float)
            ll_next = bt_log_likelihood(nxt, comps)
            if ll_next < ll - 1e-9:
                raise Mistake("a sweep lowered the log-likelihood: an MM sweep must never lower it")
            done = np.max(np.abs(nxt - theta)) < 1e-12
            theta, ll = nxt, ll_next
            if done:
                break
        err = np.max(np.abs(theta - fit_bradley_terry(comps, n).strengths))
        if err > 1e-8:
            raise Mistake(f"repeated sweeps did not reach the MLE of fit_bradley_terry (max abs diff {err:.2e})")


@exercise("ch1.contrast_stderr", stub="my_contrast_stderr", solution="ch1_bradley_terry:contrast_stderr",
          title="standard error of a contrast")
def grade_contrast_stderr(fn):
    """Check SE(θ_i − θ_j) from a covariance C of the strengths (any gauge).

    ``fn(covariance (n, n), i, j) -> float``. Compared with the two-item closed form sqrt(1/n_ab + 1/n_ba) (6 wins to
    3), with :meth:`prefkit.BradleyTerryFit.contrast_stderr` on a random fit, and in a second gauge (θ_0 = 0).

    Raises :class:`Mistake` naming the mistake: the −2·C_ij term forgotten (the diagonal only), its sign flipped,
    no square root (the variance), SE(θ_i) alone, or an answer that depends on the gauge.
    """
    cases = []
    fit = fit_bradley_terry([[0, 1], [1, 0]], weights=[6.0, 3.0])
    cases.append(("two items, 6 wins to 3", fit.covariance, 0, 1, np.sqrt(1 / 6 + 1 / 3)))
    comps, _ = _bt_instance(5)
    fit = fit_bradley_terry(comps)
    c = fit.covariance
    k = fit.n_items
    proj = np.eye(k) - np.outer(np.ones(k), np.eye(k)[0])  # θ ↦ θ − θ_0: another gauge, the same contrasts
    c0 = proj @ c @ proj.T
    for i, j in [(0, 1), (2, 5), (4, 4)]:
        cases.append((f"items ({i}, {j}), sum-zero gauge", c, i, j, fit.contrast_stderr(i, j)))
    cases.append(("items (2, 4), gauge θ_0 = 0", c0, 2, 4, fit.contrast_stderr(2, 4)))
    for name, cov, i, j, want in cases:
        got = fn(cov.copy(), i, j)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise Mistake(f"{name}: my_contrast_stderr must return one number, got {type(got).__name__}") from None
        if not np.isfinite(got):
            raise Mistake(f"{name}: got {got}; a standard error is a finite number ≥ 0")
        if abs(got - want) <= 1e-10:
            continue
        v = cov[i, i] + cov[j, j]
        for wrong, hint in (
            (np.sqrt(v), "you used the diagonal only, sqrt(C_ii + C_jj): θ̂_i and θ̂_j are correlated, so the "
             "covariance term −2·C_ij belongs under the root"),
            (np.sqrt(max(v + 2 * cov[i, j], 0.0)),
             "sign of the covariance term: Var(θ_i − θ_j) = C_ii + C_jj − 2·C_ij"),
            (v - 2 * cov[i, j], "you returned the variance C_ii + C_jj − 2·C_ij: the SE is its square root"),
            (np.sqrt(cov[i, i]), "that is SE(θ_i) alone; the contrast θ_i − θ_j also involves C_jj and C_ij"),
        ):
            if abs(got - wrong) <= 1e-10:
                raise Mistake(f"{name}: {hint}")
        raise Mistake(f"{name}: got {got:.6g}, expected {want:.6g}; "
                      + ("the answer must not depend on the gauge" if "gauge θ_0" in name else
                         "check the formula for Var(θ_i − θ_j)"))

# --- the slides against what was measured (the notebook's closing table) -------------------------------------------
CHAPTER.slide("Stage 1 fits a reward by maximum likelihood under Bradley-Terry, P(y₁ ≻ y₂) = σ(r(y₁) − r(y₂)).",
              ["newton_mm", "choix", "baseball"],
              "agrees: the MLE is computed exactly, equals an independent implementation (choix) and reproduces "
              "published estimates")
CHAPTER.slide("(unstated) The fitted reward is the reward.", ["shift", "fisher_zero", "no_mle"],
              "with two conditions the slides leave out: strengths are identified only up to a shift, and the MLE "
              "exists only when every group of items has lost at least once to the rest")
