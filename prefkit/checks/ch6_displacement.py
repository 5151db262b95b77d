"""Tour checks for chapter 6, likelihood displacement (Razin et al. 2024; Ren & Sutherland 2024).

Each check calls the same ``prefkit.displacement.measure_*`` function as notebook 06.
"""

from .. import displacement as D
from ..tour import claim, register

CH = "6 Likelihood displacement"


@register(CH, "tabular, one pair per prompt: pi(y_w) only rises")
def check_tabular_one_pair(ctx):
    m = D.measure_tabular_one_pair(steps=50 if ctx.fast else 100, seed=ctx.seed)
    return [
        claim("tabular: autograd grad of log pi_w - log pi_l wrt logits = e_w - e_l (max abs err)",
              m["grad_error"], at_most=1e-12),
        claim("tabular, one pair per prompt: smallest one-step change of log pi(y_w)", m["min_step_change"],
              at_least=-1e-12),
    ]


@register(CH, "tabular chain a>b>c: pi(b) falls")
def check_tabular_chain(ctx):
    m = D.measure_tabular_chain()
    return [claim("tabular chain a>b, b>c: change of log pi(b), b chosen in (b,c)", m["dlogp_b"],
                  at_most=-0.5)]


@register(CH, "unconstrained features: pi(y_w) falls")
def check_unconstrained(ctx):
    m = D.measure_unconstrained_features(seed=ctx.seed)
    return [
        claim("unconstrained features (logits = W h): first-order rate of log pi(y_w) at pi_ref", m["rate"],
              at_most=0.0),
        claim("unconstrained features: change of log pi(y_w) after DPO", m["dlogp_chosen"], at_most=-1.0),
    ]


@register(CH, "No > Never raises Yes")
def check_yes_no_never(ctx):
    m = D.measure_yes_no_never()
    if ctx.figdir is not None:
        from ..plotting.displacement import plot_displacement_trajectory

        run = m["run"]
        ctx.savefig(plot_displacement_trajectory(run.logp, run.problem.preferences, names=run.problem.names,
                                                 title='"No" > "Never" raises "Yes"'), "ch6_yes_no_never.png")
    return [
        claim('"No" > "Never": change of log pi("No")', m["dlogp_no"], at_most=-1.0),
        claim('"No" > "Never": pi("Yes") after DPO (0.011 before; top gainer)', m["p_yes_end"], at_least=0.5),
        claim('"No" > "Never": the top gainer is "Yes" (1 = yes)', float(m["top_gainer"] == "Yes"),
              at_least=1),
    ]


@register(CH, "squeezing: negative gradient feeds the argmax")
def check_squeeze(ctx):
    m = D.measure_squeeze()
    return [
        claim("squeezing: first-order formula vs a 1e-6 step (max abs err)", m["first_order_error"],
              at_most=1e-5),
        claim("squeezing, peaky pi: argmax's share of the probability gained", m["peaky_argmax_share"],
              at_least=0.999),
        claim("squeezing, flat pi: argmax's share of the probability gained", m["flat_argmax_share"],
              at_most=0.8),
    ]


@register(CH, "CHES predicts displacement")
def check_ches(ctx):
    m = D.measure_ches_population(n_pairs=40 if ctx.fast else 80, seed=ctx.seed)
    out = [
        claim("CHES vs drop of log pi(y_w): Spearman rank correlation", m["spearman"], at_least=0.6),
        claim("share of the displacement held by the 25% highest-CHES pairs", m["top_share"], at_least=0.6),
    ]
    if ctx.figdir is not None:
        from ..plotting.displacement import plot_ches_scatter

        ctx.savefig(plot_ches_scatter(m["ches"], m["drops"]), "ch6_ches_scatter.png")
    return out


@register(CH, "mitigations: RPO, IPO, larger beta")
def check_mitigations(ctx):
    m = D.measure_mitigations(n_pairs=40 if ctx.fast else 80, steps=80 if ctx.fast else 200, seed=ctx.seed)
    return [
        claim("shared-theta population: plain DPO's mean change of log pi(y_w)",
              m["by_method"]["DPO"]["dlogp_chosen"], at_most=-1.0),
        claim("RPO (DPO + SFT): gain in mean log pi(y_w) over plain DPO", m["rpo_gain"], at_least=1.0),
        claim("IPO: gain in mean log pi(y_w) over plain DPO", m["ipo_gain"], at_least=1.0),
        claim("larger beta (1 vs 0.1): gain in mean log pi(y_w) over plain DPO", m["large_beta_gain"],
              at_least=1.0),
    ]
