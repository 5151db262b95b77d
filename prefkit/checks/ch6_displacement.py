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
        claim("unconstrained features: first-order rate vs one SGD step of size 1e-4 (relative error)",
              m["first_step_error"], at_most=1e-3),
        # the pair is selected for a negative rate, so only the measured drop is informative
        claim("unconstrained features (logits = W h): change of log pi(y_w) after 100 SGD steps (pair picked "
              "for a negative first-order rate)", m["dlogp_chosen"], at_most=-1.0),
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
        claim("CHES vs drop of log pi(y_w), pairs trained alone, plain SGD: Spearman rank correlation",
              m["spearman"], at_least=0.6),
        claim("pairs trained alone: share of the per-pair displacement held by the 25% highest-CHES pairs",
              m["top_share"], at_least=0.7),
    ]
    if ctx.figdir is not None:
        from ..plotting.displacement import plot_ches_scatter

        ctx.savefig(plot_ches_scatter(m["ches"], m["drops"]), "ch6_ches_scatter.png")
    return out


@register(CH, "CHES filter, retrained with shared theta")
def check_ches_filter(ctx):
    m = D.measure_ches_filter(n_pairs=40 if ctx.fast else 80, seed=ctx.seed)
    return [
        claim("shared theta, plain SGD, 20 steps: share of the displacement removed by dropping the 25% "
              "highest-CHES pairs and retraining", m["removed_share"], at_least=0.6),
        claim("... minus the share removed by dropping a random 25%", m["removed_share"] -
              m["random_removed_share"], at_least=0.05),
        claim("kept pairs: mean change of log pi(y_w), filtered run minus full run",
              m["kept_dlogp_filtered"] - m["kept_dlogp_full"], at_least=0.0),
    ]


@register(CH, "mitigations: RPO, IPO, larger beta")
def check_mitigations(ctx):
    m = D.measure_mitigations(n_pairs=40 if ctx.fast else 80, steps=80 if ctx.fast else 200, seed=ctx.seed)
    return [
        claim("shared-theta population: plain DPO's mean change of log pi(y_w)",
              m["by_method"]["DPO"]["dlogp_chosen"], at_most=-1.0),
        claim("RPO (DPO + SFT): gain in mean log pi(y_w) over plain DPO, kept pairs", m["rpo_gain_kept"],
              at_least=1.0),
        claim("IPO: gain in mean log pi(y_w) over plain DPO, kept pairs", m["ipo_gain_kept"], at_least=1.0),
        claim("larger beta (1 vs 0.1): gain in mean log pi(y_w) over plain DPO, kept pairs",
              m["large_beta_gain_kept"], at_least=1.0),
        claim("IPO: mean log-ratio margin h", m["by_method"]["IPO"]["logratio_margin"], at_least=0.5),
        claim("larger beta: mean log-ratio margin h", m["by_method"]["DPO, large beta"]["logratio_margin"],
              at_least=0.5),
        claim("IPO: preference accuracy (h > 0)", m["by_method"]["IPO"]["accuracy"], at_least=0.5),
        claim("larger beta: preference accuracy (h > 0)", m["by_method"]["DPO, large beta"]["accuracy"],
              at_least=0.5),
        claim("RPO: its margin over plain DPO's (RPO gives up the margin)", m["rpo_margin_ratio"],
              at_most=0.2),
    ]
