"""Tour checks for chapter 3: reward models, four RL methods converging to π*, the frontier and the pipeline.

Each claim is measured by a function of :mod:`prefkit.reward_model` / :mod:`prefkit.rl` that notebook 03 calls
too.
"""

import numpy as np

from ..problems import random_problem
from ..reward_model import fit_reward_model, reward_recovery_error
from ..rl import (
    FRONTIER_END_GAP_TOL,
    METHODS,
    convergence_summary,
    frontier_by_method,
    pipeline_sweep,
    reward_kl_frontier,
)
from ..tour import claim, register

CHAPTER = "3 Classical RLHF"


@register(CHAPTER, "reward model recovers r* up to f(x)")
def check_reward_models(ctx):
    P = random_problem(3, 5, seed=ctx.seed)
    prefs, w = P.preference_probabilities()
    out = []
    # MLP: Adam's optimisation error; worst of problem seeds 0-7 is 1.2e-3 at 600 steps, 3.8e-3 at 300 steps
    for model, tol in (("tabular", 1e-5), ("linear", 1e-5), ("mlp", 1e-2 if ctx.fast else 5e-3)):
        rm = fit_reward_model(prefs, 3, 5, model=model, features=P.features, weights=w, l2=0.0, seed=ctx.seed,
                              steps=300 if (model == "mlp" and ctx.fast) else None)
        out.append(claim(f"{model} reward model on exact BT data: RMS error of r_hat vs r* modulo f(x)",
                         reward_recovery_error(rm.reward, P.reward), at_most=tol))
    return out


@register(CHAPTER, "RL methods converge to pi*")
def check_convergence(ctx):
    P = random_problem(3, 5, seed=ctx.seed + 10)
    seeds = (0, 1) if ctx.fast else (0, 1, 2)
    summ = convergence_summary(P.pi_ref, P.reward, 0.5, seeds=seeds, steps=250)
    from ..plotting.rlhf import plot_kl_curves

    ctx.savefig(plot_kl_curves({m: summ[m]["results"][0] for m in METHODS}), "ch3_kl_to_optimal.png")
    # worst over problem seeds 10-17 x 3 RL seeds: exact 3.9e-4, REINFORCE 1.0e-3, RLOO 8.6e-4, PPO 1.6e-3
    return [claim(f"{m}: final KL(pi||pi*) / initial, worst of {len(seeds)} seeds, 250 steps",
                  summ[m]["ratio"], at_most=5e-3) for m in METHODS]


@register(CHAPTER, "reward-KL frontier")
def check_frontier(ctx):
    P = random_problem(3, 5, seed=ctx.seed + 20)
    fb = frontier_by_method(P.pi_ref, P.reward, (0.2, 1.0, 5.0), steps=200, seed=ctx.seed)
    from ..plotting.rlhf import plot_frontier

    front = reward_kl_frontier(P.pi_ref, P.reward, np.geomspace(0.05, 20, 40))
    points = {m: (fb[m]["kl"], fb[m]["reward"]) for m in METHODS}
    ctx.savefig(plot_frontier(front, points), "ch3_frontier.png")
    out = []
    for m in METHODS:
        out.append(claim(f"{m}: every iterate lies on/below the exact frontier: max excess reward",
                         fb[m]["excess"], at_most=1e-9))
        out.append(claim(f"{m}: final E[r] matches the frontier point at its beta: max abs gap",
                         fb[m]["end_gap"], at_most=FRONTIER_END_GAP_TOL[m]))
    return out


@register(CHAPTER, "pipeline gap: reward model vs RL")
def check_pipeline(ctx):
    P = random_problem(4, 6, seed=ctx.seed)
    ns = (200, 20_000)
    sweep = pipeline_sweep(P, 0.5, ns, seeds=(0, 1) if ctx.fast else (0, 1, 2), rl_kwargs={"steps": 400})
    small, large = sweep
    return [
        claim("regret = reward-model part + RL part (max abs error)",
              max(abs(g["regret/total"] - g["regret/reward_model"] - g["regret/rl"]) for g in sweep),
              at_most=1e-12),
        claim("reward-model regret at 20000 pairs / at 200 pairs", large["regret/reward_model"] /
              small["regret/reward_model"], at_most=0.2),
        claim("at 20000 pairs the RL part is a small share of the regret: |RL| / total",
              abs(large["regret/rl"]) / large["regret/total"], at_most=0.2),
        claim("RL converged on r_hat: KL(pi_final || pi*(r_hat)) at 20000 pairs", large["kl/rl"],
              at_most=5e-3),
    ]


