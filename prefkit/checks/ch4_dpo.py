"""Tour checks for chapter 4: the change of variables, DPO recovering π*, finite samples, β and coverage.

Each claim is measured by a function of :mod:`prefkit.dpo` that notebook 04 calls too.
"""

import numpy as np

from ..dpo import (
    beta_sweep,
    change_of_variables_steps,
    finite_sample_errors,
    fit_error_slope,
    partial_coverage_demo,
    population_recovery_error,
)
from ..problems import random_problem
from ..tour import claim, register

CHAPTER = "4 DPO"


def chapter_problem(seed=0):
    """The chapter's instance: 3 prompts, 5 responses, one of them off π_ref's support per prompt."""
    return random_problem(3, 5, seed=seed, reward_scale=2.0, support=0.8)


@register(CHAPTER, "Z cancels: the change of variables")
def check_change_of_variables(ctx):
    d = change_of_variables_steps(chapter_problem(ctx.seed), 0.3)
    return [
        claim("r* - beta log(pi*/pi_ref) = beta log Z(x), max abs error", d["implied_shift_error"],
              at_most=1e-12),
        claim("BT probabilities from the implied reward = from r* (Z cancels), max abs diff", d["bt_error"],
              at_most=1e-12),
        claim("DPO loss of pi* = BT negative log-likelihood of r*, abs diff", d["loss_error"], at_most=1e-12),
        claim("gradient of the population DPO loss at pi*, max abs", d["grad_at_pi_star"], at_most=1e-12),
    ]


@register(CHAPTER, "population DPO recovers pi*")
def check_population(ctx):
    P = chapter_problem(ctx.seed)
    tv = max(population_recovery_error(P, beta) for beta in (0.1, 0.5, 2.0))
    Q = random_problem(3, 5, seed=ctx.seed + 1, reward_scale=2.0)  # r* linear in the features
    tv_ll = population_recovery_error(Q, 0.5, features=Q.features, pairs="pi_ref")
    return [
        claim("tabular DPO (L-BFGS) on exact BT data, beta in {0.1, 0.5, 2}: max TV(pi_DPO, pi*)", tv,
              at_most=1e-4),
        claim("log-linear DPO, realizable r*: TV(pi_DPO, pi*)", tv_ll, at_most=1e-4),
    ]


@register(CHAPTER, "finite samples: error ~ N^-1/2")
def check_finite_samples(ctx):
    P = random_problem(1, 4, seed=1, reward_scale=1.5)
    sizes = [250, 500, 1000, 2000, 4000, 8000, 16000]
    errs = finite_sample_errors(P, 0.5, sizes, n_seeds=8 if ctx.fast else 16, seed=ctx.seed)
    from ..plotting.dpo import plot_finite_sample

    ctx.savefig(plot_finite_sample(sizes, errs, fit_error_slope(sizes, errs)), "ch4_finite_sample.png")
    return [claim("slope of log TV(pi_hat_N, pi*) against log N (theory -0.5)", fit_error_slope(sizes, errs),
                  within=(-0.75, -0.3))]


@register(CHAPTER, "beta sweep")
def check_beta_sweep(ctx):
    s = beta_sweep(chapter_problem(ctx.seed), [0.1, 0.3, 1.0, 3.0])
    return [
        claim("at every beta, TV(pi_DPO, pi*_beta), max", s["tv"].max(), at_most=1e-4),
        claim("at every beta, beta*Δlog-ratio recovers Δr*, max abs error", s["reward_gap"].max(),
              at_most=1e-4),
        claim("KL(pi_DPO || pi_ref) falls as beta grows: largest increase", np.diff(s["kl_to_ref"]).max(),
              at_most=0.0),
    ]


@register(CHAPTER, "partial coverage: a set of optima")
def check_partial(ctx):
    d = partial_coverage_demo(random_problem(1, 5, seed=2, reward_scale=2.0), 0.5, [(0, 1), (1, 2)])
    from ..plotting.dpo import plot_partial_coverage

    ctx.savefig(plot_partial_coverage(d), "ch4_partial_coverage.png")
    return [
        claim("pairs cover {0,1,2} only: free offsets in the solution set", d["n_free"], within=(2, 2)),
        claim("random members of the solution set: loss spread", d["member_loss_spread"], at_most=1e-12),
        claim("... yet they differ: largest TV between members", d["member_tv"], at_least=0.1),
        claim("L-BFGS lands on the min-norm point (closed form): TV", d["tv_lbfgs"], at_most=1e-6),
        claim("gradient descent lands there too: TV", d["tv_sgd"], at_most=1e-6),
        claim("Adam reaches the optimal loss (gap)", abs(d["loss_gap_adam"]), at_most=1e-8),
        claim("... at a different member: TV(Adam, min-norm point)", d["tv_adam"], at_least=1e-3),
    ]
