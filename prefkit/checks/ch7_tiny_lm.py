"""Tour checks for chapter 7: a tiny transformer LM, evaluated exactly by enumerating every response.

The pipeline claims call :func:`prefkit.lm.run_pipeline` and :func:`prefkit.lm.dpo_kl_reduction`, as
notebook 07 does in its fast setting (:meth:`prefkit.lm.LMConfig.tour`: the "small" preset, V=4, L=3, with the
same ~100k-parameter model and 100–200 steps per stage, about 6 s on an idle core; its docstring records the
margins over seeds 0–6). The notebook's full setting uses the default V=8, L=4 with the same tolerances.
"""

from ..tour import claim, register

CH = "7 Tiny transformer LM"


@register(CH, "enumeration is exact")
def check_enumeration(ctx):
    from ..lm import enumeration_errors

    e = enumeration_errors(seed=ctx.seed)
    return [
        claim(
            "sum over all V^L responses of enumerated pi_theta(y|x), max |sum - 1|",
            e["sum_error"],
            at_most=1e-12,
        ),
        claim(
            "enumerated log pi_theta(y|x) vs token-by-token computation (max abs err)",
            e["logp_error"],
            at_most=1e-10,
        ),
    ]


@register(CH, "SFT -> RM -> RLHF and DPO, exact KLs")
def check_pipeline(ctx):
    import torch

    from ..lm import LMConfig, dpo_kl_reduction, plot_lm_training, run_pipeline

    cfg = LMConfig.tour(seed=ctx.seed, fast=ctx.fast)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a ~100k-parameter model runs fastest on one thread
    try:
        res = run_pipeline(cfg, stages=("sft", "rm", "rlhf", "dpo"), echo=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    rows = {r["policy"]: r for r in res.rows}
    ctx.savefig(plot_lm_training(res.histories, res.rows), "ch7_tiny_lm.png")
    return [
        claim("DPO: exact KL(pi||pi*) / KL(pi_ref||pi*) after training", dpo_kl_reduction(res), at_most=0.35),
        claim(
            "RLHF (RLOO on r_phi): exact KL(pi||pi*_RM) / KL(pi_ref||pi*_RM)",
            rows["rlhf"]["kl_star_rm"] / rows["pi_ref (SFT)"]["kl_star_rm"],
            at_most=0.2,
        ),
        claim(
            "DPO gain in exact expected true reward, E_pi_DPO[r*] - E_pi_ref[r*]",
            rows["dpo"]["reward"] - rows["pi_ref (SFT)"]["reward"],
            at_least=1.0,
        ),
        claim(
            "displacement: DPO lowers mean log pi(y_w) on its own pairs",
            rows["dpo"]["d_logp_chosen"],
            at_most=-0.1,
        ),
        claim(
            "... and so does the exact pi* (y_w drawn from pi_ref is rarely best)",
            rows["pi* (exact)"]["d_logp_chosen"],
            at_most=-0.1,
        ),
    ]
