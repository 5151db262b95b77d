"""Tour checks for chapter 2: the closed-form KL-optimal policy π* = π_ref·exp(r/β)/Z.

Each claim is measured by a function of :mod:`prefkit.closed_form` that notebook 02 calls too.
"""

import numpy as np

from ..closed_form import (
    beta_limit_errors,
    brute_force_objective_gap,
    bt_identifiability_error,
    gibbs_identity_error,
    implied_reward_shift_error,
    large_beta_rate,
    log_partition,
    optimal_policy,
    shift_invariance_error,
)
from ..problems import random_problem, three_response_toy
from ..tour import claim, register

CHAPTER = "2 Optimal policy"


def _instances(ctx):
    n = 2 if ctx.fast else 4
    return [random_problem(3, 5, seed=ctx.seed + i, support=0.8, reward_scale=2.0) for i in range(n)]


@register(CHAPTER, "pi* maximises J (brute force)")
def check_brute_force(ctx):
    gaps = [brute_force_objective_gap(P.pi_ref, P.reward, 0.5, n_starts=3 if ctx.fast else 5, seed=ctx.seed)
            for P in _instances(ctx)]
    return [
        claim("no BFGS run from random starts beats J(pi*) on random instances",
              max(g["excess"] for g in gaps), at_most=1e-10),
        claim("the best BFGS run reaches J(pi*) = beta log Z", max(g["distance"] for g in gaps),
              at_most=1e-6),
    ]


@register(CHAPTER, "Gibbs identity and implied reward")
def check_gibbs(ctx):
    errs, shifts = [], []
    for P in _instances(ctx):
        for beta in (0.05, 0.5, 5.0):
            errs.append(gibbs_identity_error(P.pi_ref, P.reward, beta))
            shifts.append(implied_reward_shift_error(P.pi_ref, P.reward, beta))
    return [
        claim("max_pi J = beta log Z(x) (Gibbs identity), max abs error", max(errs), at_most=1e-12),
        claim("r - implied_reward(pi*) = beta log Z(x) on pi_ref's support, max abs error", max(shifts),
              at_most=1e-11),
    ]


@register(CHAPTER, "beta limits")
def check_limits(ctx):
    P = _instances(ctx)[0]
    # β small relative to the smallest reward gap g between the best and second-best response, so that the
    # distance to the argmax policy, ≈ e^(−g/β), is small but far above round-off and the bound is exercised.
    top2 = np.sort(np.where(P.pi_ref > 0, P.reward, -np.inf), axis=-1)[:, -2:]
    beta_small = float(np.min(top2[:, 1] - top2[:, 0])) / 15.0
    e = beta_limit_errors(P.pi_ref, P.reward, beta_small=beta_small, beta_large=1e6)
    return [
        claim("beta = 1e6: max |pi* - pi_ref|", e["large"], at_most=1e-5),
        claim("the error falls like 1/beta: error(beta=1e5) / error(beta=1e6) - 10",
              abs(large_beta_rate(P.pi_ref, P.reward, 1e5, 10.0) - 10.0), at_most=1e-3),
        claim("beta = (smallest reward gap)/15: max |pi* - argmax policy| minus its exact bound "
              "sum pi_ref e^(-gap/beta) / pi_ref(argmax) (round-off)", e["small"] - e["small_bound"],
              at_most=1e-15),
        claim("... and the bound is tight there: error / bound", e["small"] / e["small_bound"],
              within=(0.5, 1.0 + 1e-9)),
    ]


@register(CHAPTER, "f(x) invariance and extremes")
def check_invariance(ctx):
    P = _instances(ctx)[1]
    e = shift_invariance_error(P.pi_ref, P.reward, [7.0, -300.0, 1e4], 0.5)
    from ..plotting.closed_form import plot_optimal_policy

    ctx.savefig(plot_optimal_policy(P.pi_ref, P.reward, (0.1, 0.5, 2.0)), "ch2_optimal_policy.png")
    toy = three_response_toy()
    p32, r32 = toy.pi_ref.astype(np.float32), (toy.reward * 1e6).astype(np.float32)
    big = optimal_policy(p32, r32, 1.0)
    log_Z = log_partition(p32, r32, 1.0)
    finite = float(np.all(np.isfinite(big)) and np.all(np.isfinite(log_Z)))
    idents = [bt_identifiability_error(Q.reward) for Q in _instances(ctx)]
    return [
        claim("r and r + f(x), |f| up to 1e4, give the same pi*: max abs difference (round-off of r + f)",
              e["policy"], at_most=1e-10),
        claim("r and r + f(x) give the same BT probabilities: max abs difference", e["preferences"],
              at_most=1e-10),
        claim("conversely, logit P(y > y0) rebuilds r up to f(x): reward_gap_up_to_shift / round-off bound "
              "2 eps (1 + e^max|r - r0|)", max(i["error"] / i["bound"] for i in idents), at_most=1.0),
        claim("float32 inputs with r/beta = 1e6 give finite pi* and log Z (1 = yes)", finite, at_least=1.0),
        claim("float32 r/beta = 1e6: |log Z - (1e6 + log(1/3))| (float32 rounding of 1/3: <= 2^-24 relative)",
              float(abs(log_Z[0] - (1e6 + np.log(1.0 / 3.0)))), at_most=2.0 ** -23),
    ]
