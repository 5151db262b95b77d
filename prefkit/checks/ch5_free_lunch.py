"""Tour checks for chapter 5: Azar et al.'s deterministic toy (DPO vs IPO), Xu et al.'s unseen response,
Tajwar et al.'s bandit and the cost table.

Each claim is measured by a function of :mod:`prefkit.free_lunch` that notebook 05 calls too.
"""

import numpy as np

from ..free_lunch import azar_experiment, format_table, tajwar_comparison, xu_example
from ..tour import claim, register

CHAPTER = "5 Free lunch"


@register(CHAPTER, "Azar: DPO -> deterministic, IPO closed form")
def check_azar(ctx):
    az = azar_experiment(steps=500)
    part = az["partial"]
    from ..plotting.dpo import plot_azar

    ctx.savefig(plot_azar(az), "ch5_azar.png")
    return [
        claim("DPO loss along pi(y_a) -> 1 only falls, every beta: max L(s+0.1)/L(s)",
              az["dpo_ray_max_ratio"], at_most=0.999),
        claim("DPO training: pi(y_a) never falls, every beta (min step change)", az["dpo_monotone"],
              at_least=-1e-12),
        claim("DPO, beta in {0.1, 1}: pi(y_a) after 500 Adam steps", min(az["dpo_pi_a"][:2]), at_least=0.99),
        claim("L-BFGS on DPO stops with a vanishing gradient (max abs) ...", az["dpo_lbfgs_grad"],
              at_most=1e-6),
        claim("... at pi(y_b) + pi(y_c)", float(az["dpo_lbfgs_pi"][1:].sum()), at_most=1e-12),
        claim("... yet fit_dpo reports converged=False with a warning (flags, 1 = ok)",
              float(not az["dpo_lbfgs_converged"] and az["dpo_lbfgs_warned"]
                    and az["dpo_obstruction"] is not None), within=(1, 1)),
        claim("IPO: L-BFGS fit vs closed form pi ∝ (e^{1/3tau}, 1, e^{-1/3tau}), max TV over tau",
              max(az["ipo_fit_tv"]), at_most=1e-8),
        claim("IPO: brute-force minimiser vs closed form, max TV", max(az["ipo_brute_tv"]), at_most=1e-6),
        claim("only (a,b) observed: DPO (beta=0.1) drains unobserved y_c, pi(y_c)", part["dpo_pi_c"][0],
              at_most=1e-6),
        claim("only (a,b) observed: IPO fit vs closed form pi(y_c) = 1/(1+2cosh(1/(4tau))), max abs diff",
              max(abs(p - 1 / (1 + 2 * np.cosh(1 / (4 * t))))
                  for p, t in zip(part["ipo_pi_c_fit"], az["taus"], strict=True)), at_most=1e-8),
        claim("... so IPO (tau=0.1) keeps the unobserved action: pi(y_c)", part["ipo_pi_c_fit"][0],
              at_least=0.07),
    ]


@register(CHAPTER, "Xu: DPO puts mass on unseen y3")
def check_xu(ctx):
    xu = xu_example(0.1)
    lo, hi = xu["dpo_set_pi3_range"]
    return [
        claim("DPO (log-linear, data on (y1,y2) only): pi(y3)", xu["dpo_pi3"], at_least=0.9),
        claim("RLHF optimum with a reward model that never saw y3: pi(y3)", xu["rlhf_pi3"], at_most=0.01),
        claim("reward model (no ridge) recovers r*(y1) - r*(y2) on the one observed pair: abs error",
              xu["rm_gap_error"], at_most=1e-6),
        claim("RLHF's policy meets DPO's optimality condition: |beta*dlog(pi/pi_ref) - dr*| on (y1,y2)",
              xu["rlhf_implied_gap_error"], at_most=1e-6),
        claim("... so it is a DPO optimum too: DPO loss gap", abs(xu["rlhf_dpo_loss_gap"]), at_most=1e-10),
        claim("pi(y3) over the DPO solution set spans (0, 1): range", hi - lo, at_least=0.999),
    ]


@register(CHAPTER, "Tajwar: on-policy wins; cost table")
def check_tajwar(ctx):
    table = tajwar_comparison(1000, 0.5, seeds=(0, 1) if ctx.fast else (0, 1, 2))
    r = {row["method"]: row for row in table}
    off, on, rl = r["offline DPO"], r["online DPO"], r["RLHF (RM + RLOO)"]
    from ..plotting.dpo import plot_tajwar

    ctx.savefig(plot_tajwar(table), "ch5_tajwar.png")
    if ctx.figdir is not None:
        (ctx.figdir / "ch5_cost_table.md").write_text(format_table(table) + "\n")
    return [
        claim("online iterative DPO: true reward (pi* reaches 0.974)", on["reward"], at_least=0.9),
        claim("online minus offline DPO, same 1000 labels: true reward", on["reward"] - off["reward"],
              at_least=0.1),
        claim("online DPO minus RLHF (linear RM + RLOO): true reward", on["reward"] - rl["reward"],
              at_least=0.05),
        claim("no method beats pi* on J = E[10 r*] - beta KL (best method minus pi*)",
              max(row["objective"] for row in table[:3]) - table[3]["objective"], at_most=0.0),
    ]  # the cost columns (samples, reward-model queries, steps, wall time) are reported counts, not claims
