"""Tour checks for chapter 1 (Bradley-Terry). The notebook states the same claims through the same
functions."""

from __future__ import annotations

import numpy as np

from ..bradley_terry import (
    bt_fisher_information,
    bt_log_likelihood,
    bt_log_likelihood_gradient,
    coverage_experiment,
    fit_bradley_terry,
    mle_obstruction,
    recovery_experiment,
    sample_comparisons,
)
from ..loaders import BASEBALL_HOME_PUBLISHED, BASEBALL_PUBLISHED, load_baseball, load_llmfao
from ..tour import claim, register

CHAPTER = "1 Bradley-Terry"


@register(CHAPTER, "likelihood, gradient, shift")
def check_likelihood(ctx):
    rng = np.random.default_rng(ctx.seed)
    theta = rng.standard_normal(8)
    comps = sample_comparisons(theta, 500, rng)
    g = bt_log_likelihood_gradient(theta, comps)
    h = 1e-6
    fd = np.array(
        [
            (bt_log_likelihood(theta + h * e, comps) - bt_log_likelihood(theta - h * e, comps)) / (2 * h)
            for e in np.eye(8)
        ]
    )
    shift = abs(bt_log_likelihood(theta + 2.5, comps) - bt_log_likelihood(theta, comps))
    eig = np.linalg.eigvalsh(bt_fisher_information(theta, comps).toarray())
    return [
        claim(
            "gradient of log-lik = finite differences (max abs diff)", np.max(np.abs(g - fd)), at_most=1e-6
        ),
        claim("log-lik unchanged by a shift of all strengths", shift, at_most=1e-9),
        claim("Fisher information has a zero eigenvalue (shift not identified)", abs(eig[0]), at_most=1e-9),
    ]


@register(CHAPTER, "Newton = MM = golden cases")
def check_solvers(ctx):
    rng = np.random.default_rng(ctx.seed + 1)
    theta = rng.standard_normal(20)
    comps = sample_comparisons(theta, 2000, rng)
    newton = fit_bradley_terry(comps, 20)
    mm = fit_bradley_terry(comps, 20, method="mm", tol=1e-13)
    cycle = fit_bradley_terry([[0, 1], [1, 2], [2, 0]])
    two = fit_bradley_terry([[0, 1], [1, 0]], weights=[2.0, 1.0])
    return [
        claim(
            "Newton and MM reach the same MLE (max abs diff)",
            np.max(np.abs(newton.strengths - mm.strengths)),
            at_most=1e-8,
        ),
        claim("Newton iterations to converge (quadratic convergence)", newton.n_iter, at_most=10),
        claim("3-cycle: all strengths equal (max abs)", np.max(np.abs(cycle.strengths)), at_most=1e-12),
        claim(
            "2 wins to 1: θ_a − θ_b = log 2 (abs error)",
            abs(two.strengths[0] - two.strengths[1] - np.log(2)),
            at_most=1e-12,
        ),
    ]


@register(CHAPTER, "1/sqrt(N) recovery, 95% coverage")
def check_statistics(ctx):
    sizes = [250, 500, 1000, 2000, 4000, 8000]
    rec = recovery_experiment(10, sizes, n_reps=5 if ctx.fast else 20, seed=ctx.seed)
    cov = coverage_experiment(10, 2000, n_reps=50 if ctx.fast else 200, seed=ctx.seed)
    if ctx.figdir is not None:
        from ..plotting.bradley_terry import plot_coverage, plot_recovery

        ctx.savefig(plot_recovery(rec["sizes"], rec["rmse"], rec["slope"]), "ch1_recovery.png")
        ctx.savefig(plot_coverage(cov["z"]), "ch1_coverage.png")
    return [
        claim("MLE error ∝ N^slope: log-log slope ≈ −1/2", rec["slope"], within=(-0.6, -0.4)),
        claim(
            "95% intervals θ̂ ± 1.96·SE cover the truth (fraction)",
            cov["coverage"],
            within=(0.90, 0.99) if ctx.fast else (0.92, 0.97),
        ),
    ]


@register(CHAPTER, "existence of the MLE, l2")
def check_existence(ctx):
    comps = [[0, 1], [1, 2], [2, 0], [3, 0], [3, 1], [4, 3], [3, 4]]  # {3, 4} never lost to 0, 1, 2
    group, _ = mle_obstruction(comps)
    try:
        fit_bradley_terry(comps)
        raised = 0.0
    except ValueError:
        raised = 1.0
    fit = fit_bradley_terry(comps, l2=0.1)
    grad = bt_log_likelihood_gradient(fit.strengths, comps) - 2 * 0.1 * fit.strengths
    return [
        claim("no MLE: fit raises ValueError naming group {3, 4}", raised * (group == [3, 4]), at_least=1.0),
        claim("l2 = 0.1: finite MAP (max |θ|)", np.max(np.abs(fit.strengths)), at_most=10.0),
        claim("l2 = 0.1: stationarity ∇ℓ = 2·l2·θ (max abs)", np.max(np.abs(grad)), at_most=1e-9),
    ]


@register(CHAPTER, "real data: baseball, LLMFAO")
def check_real_data(ctx):
    data = load_baseball()
    fit = fit_bradley_terry(data.comparisons, data.n_items, weights=data.weights)
    contrast, se = fit.contrasts(data.index(BASEBALL_PUBLISHED["reference"]))
    err = max(
        max(abs(contrast[data.index(t)] - est), abs(se[data.index(t)] - s))
        for t, (est, s) in BASEBALL_PUBLISHED["estimates"].items()
    )
    home = fit_bradley_terry(
        data.comparisons, data.n_items, weights=data.weights, winner_first=data.winner_first
    )
    abilities = np.exp(home.strengths - home.strengths.max())
    abilities = np.sort(abilities / abilities.sum())
    err_home = max(
        abs(home.order_effect - BASEBALL_HOME_PUBLISHED["home_advantage"]),
        float(np.max(np.abs(abilities - np.array(BASEBALL_HOME_PUBLISHED["abilities_sorted"])))),
    )
    llm = load_llmfao()
    kw = dict(weights=llm.weights, winner_first=llm.winner_first)
    newton = fit_bradley_terry(llm.comparisons, llm.n_items, **kw)
    mm = fit_bradley_terry(llm.comparisons, llm.n_items, method="mm", tol=1e-13, **kw)
    if ctx.figdir is not None:
        from ..plotting.bradley_terry import plot_ranking

        ctx.savefig(plot_ranking(llm.names, newton.strengths, newton.stderr), "ch1_llmfao_ranking.png")
    return [
        claim("baseball: published estimates and SEs (max abs diff)", err, at_most=1e-3),
        claim(
            "baseball + home advantage: published δ, abilities (3 dp; max abs diff)",
            err_home,
            at_most=5e-4,
        ),
        claim(
            "LLMFAO with order effect: Newton = MM (max abs diff)",
            max(np.max(np.abs(newton.strengths - mm.strengths)), abs(newton.order_effect - mm.order_effect)),
            at_most=1e-8,
        ),
        claim(
            "LLMFAO judges favour the left answer: δ / SE(δ)",
            newton.order_effect / newton.order_effect_stderr,
            at_least=2.0,
        ),
    ]
