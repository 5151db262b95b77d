"""Figures of chapter 7: exact KL trajectories and chosen/rejected log-prob trajectories (displacement)."""

from __future__ import annotations

__all__ = ["plot_lm_training"]

_METHODS = (("rlhf", "RLHF"), ("dpo", "DPO"), ("online-dpo", "online DPO"))


def plot_lm_training(histories: dict, rows: list | None = None, axes=None):
    """Two panels from :func:`prefkit.lm.run_pipeline` histories, in the course colours
    (:mod:`prefkit.plotting.style`).

    Left: exact KL(π_θ‖π*) against the training step for each of "rlhf", "dpo", "online-dpo" present, with the
    targets as reference lines when ``rows`` (the summary) is given: DPO should reach π* (KL = 0), RLHF the optimum
    of its reward model, π*_RM, so it should end at KL(π*_RM‖π*), not at 0. Right: DPO's mean log π(y_w|x) and
    log π(y_l|x) over the offline pairs (``logps/chosen`` and ``logps/rejected`` of
    :func:`prefkit.displacement_step`), with π*'s values as dashed lines. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from ..plotting import style

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(11.0, 4.4), layout="constrained")
    fig = axes[0].figure
    by_policy = {r["policy"]: r for r in rows or []}
    for key, name in _METHODS:
        h = [r for r in histories.get(key, []) if "exact/kl_star" in r]
        if h:
            axes[0].plot([r["step"] for r in h], [r["exact/kl_star"] for r in h], marker="o", ms=4,
                         color=style.color(name), label=name)
    if rows is not None:
        style.reference_line(axes[0], 0.0, r"$\pi^*$ (where DPO should end)")
        star_rm = by_policy.get("pi*_RM (exact)", {})
        if "kl_star" in star_rm and histories.get("rlhf"):
            style.reference_line(axes[0], star_rm["kl_star"], r"$\pi^*_{RM}$: KL$(\pi^*_{RM}\|\pi^*)$, where RLHF"
                                 "\nshould end (its reward model's optimum)", color=style.color("RLHF"), ls=":")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel(r"gap to $\pi^*$: exact KL$(\pi_\theta \,\|\, \pi^*)$")
    axes[0].set_ylim(bottom=-0.03)
    style.legend_below(axes[0], ncol=2)
    h = [r for r in histories.get("dpo", []) if "logps/chosen" in r and "exact/kl_star" in r]
    if h:
        steps = [r["step"] for r in h]
        star = by_policy.get("pi* (exact)", {})
        for key, d_key, role, y in (
            ("logps/chosen", "d_logp_chosen", "chosen", "y_w"),
            ("logps/rejected", "d_logp_rejected", "rejected", "y_l"),
        ):
            c = style.color(role)
            axes[1].plot(steps, [r[key] for r in h], marker="o", ms=4, color=c, label=rf"DPO: $\log\pi({y})$")
            if d_key in star:  # where the exact π* puts the same pairs
                style.reference_line(axes[1], h[0][key] + star[d_key], rf"$\pi^*$: $\log\pi^*({y})$", color=c)
        axes[1].set_xlabel("DPO step")
        axes[1].set_ylabel("mean log-probability over the pairs")
        style.legend_below(axes[1], ncol=2)
    return fig
