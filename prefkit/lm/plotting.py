"""Figures of chapter 7: exact KL trajectories and chosen/rejected log-prob trajectories (displacement)."""

from __future__ import annotations

__all__ = ["plot_lm_training"]


def plot_lm_training(histories: dict, rows: list | None = None, axes=None):
    """Two panels from :func:`prefkit.lm.run_pipeline` histories.

    Left: exact KL(π_θ‖π*) against the training step for each of "rlhf", "dpo", "online-dpo" present. Right:
    DPO's mean log π(y_w|x) and log π(y_l|x) over the offline pairs (``logps/chosen`` and ``logps/rejected``
    of :func:`prefkit.displacement_step`), with π*'s values as dashed lines when ``rows`` (the summary) is
    given. Returns the figure.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    else:
        fig = axes[0].figure
    for name in ("rlhf", "dpo", "online-dpo"):
        h = [r for r in histories.get(name, []) if "exact/kl_star" in r]
        if h:
            axes[0].plot([r["step"] for r in h], [r["exact/kl_star"] for r in h], marker="o", ms=3, label=name)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel(r"exact KL$(\pi_\theta \,\|\, \pi^*)$")
    axes[0].set_ylim(bottom=0)
    axes[0].legend()
    h = [r for r in histories.get("dpo", []) if "logps/chosen" in r and "exact/kl_star" in r]
    if h:
        steps = [r["step"] for r in h]
        star = {r["policy"]: r for r in rows or []}.get("pi* (exact)", {})
        for key, d_key, color, y in (
            ("logps/chosen", "d_logp_chosen", "C2", "y_w"),
            ("logps/rejected", "d_logp_rejected", "C3", "y_l"),
        ):
            axes[1].plot(steps, [r[key] for r in h], marker="o", ms=3, color=color, label=rf"$\log\pi({y})$")
            if d_key in star:  # where the exact π* puts the same pairs
                axes[1].axhline(
                    h[0][key] + star[d_key], color=color, ls="--", lw=1, label=rf"$\pi^*$: $\log\pi^*({y})$"
                )
        axes[1].set_xlabel("DPO step")
        axes[1].set_ylabel("mean log-prob over the pairs")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
