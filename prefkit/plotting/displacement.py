"""Plots for chapter 6, likelihood displacement. Each takes data (and an optional ax), returns the figure.

Colours (:mod:`.style`): y_w "chosen", y_l "rejected", the rest "neither", the top gainer its own; plain DPO, the
CHES-filtered DPO and the removed pairs in theirs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import style

__all__ = ["plot_displacement_trajectory", "plot_ches_scatter", "plot_squeeze", "plot_squeeze_pair",
           "plot_filter_effect"]


def _new(ax, size):
    if ax is None:
        _, ax = plt.subplots(figsize=style.figsize(*size), layout="constrained")
    return ax.figure, ax


def plot_displacement_trajectory(logp, preferences, *, pair: int = 0, names=None, title: str = "", axes=None):
    """The four quantities every DPO-family loop records, for one pair, along training.

    Panels: log π(y_w|x) and log π(y_l|x) (with the start of log π(y_w) as a reference line); the mass on the
    responses in neither role, 1 − π(y_w) − π(y_l); and π(y|x) of the top gainer (the response whose probability
    rose most by the end) next to π(y_w|x). One legend under the panels.

    Parameters
    ----------
    logp : (steps + 1, n_prompts, n_responses) log π_θ along training (e.g. ``DisplacementRun.logp``).
    preferences : (m, 3) int array; ``pair`` picks the row to draw.
    names : optional response names.
    axes : optional sequence of 3 axes.
    """
    logp = np.asarray(logp, dtype=np.float64)
    x, w, l = (int(v) for v in np.asarray(preferences).reshape(-1, 3)[pair])
    lp = logp[:, x, :]  # (steps + 1, n_responses)
    p = np.exp(lp)
    steps = np.arange(lp.shape[0])
    top = int(np.argmax(p[-1] - p[0]))
    name = (lambda i: f"“{names[i]}”") if names is not None else (lambda i: f"y = {i}")
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=style.figsize(12.0, 3.8), sharex=True, layout="constrained")
    fig = axes[0].figure
    a0, a1, a2 = axes
    cw, cl = style.color("chosen"), style.color("rejected")
    a0.plot(steps, lp[:, w], color=cw, label=rf"chosen $y_w$ = {name(w)}")
    a0.plot(steps, lp[:, l], color=cl, label=rf"rejected $y_l$ = {name(l)}")
    a0.axhline(lp[0, w], color=cw, ls=":", lw=1.2, label=r"$\log\pi(y_w)$ at the start")
    a0.set_ylabel(r"log-probability $\log\pi_\theta(y|x)$")
    a0.set_title("the pair")
    a1.plot(steps, 1 - p[:, w] - p[:, l], color=style.color("neither"), label="mass on neither")
    a1.set_ylabel(r"$1-\pi(y_w)-\pi(y_l)$")
    a1.set_title("mass on the other responses")
    a2.plot(steps, p[:, top], color=style.color("top gainer"), label=f"top gainer: {name(top)}")
    a2.plot(steps, p[:, w], color=cw, ls="--", label=r"$\pi(y_w)$, dashed, for comparison")
    a2.set_ylabel(r"probability $\pi_\theta(y|x)$")
    a2.set_title("who gains the mass")
    for a in axes:
        a.set_xlabel("DPO step")
    handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="outside lower center", ncol=3)
    if title:
        fig.suptitle(title)
    return fig


def plot_ches_scatter(ches, drops, *, removed=None, ax=None):
    """CHES against the drop of log π(y_w) per pair, all pairs trained together with plain DPO. ``removed`` marks
    the pairs a CHES filter would remove (the highest CHES): they are still in this run, and the legend says so."""
    ches = np.asarray(ches, dtype=np.float64)
    drops = np.asarray(drops, dtype=np.float64)
    fig, ax = _new(ax, (6.4, 4.2))
    mask = np.zeros(ches.shape, bool) if removed is None else np.asarray(removed, bool)
    kept = "pairs the filter keeps" if mask.any() else "pairs"
    ax.scatter(ches[~mask], drops[~mask], s=22, color=style.color("DPO"), label=f"{kept} (plain DPO, all pairs)")
    if mask.any():
        ax.scatter(ches[mask], drops[mask], s=36, marker="x", color=style.color("removed"),
                   label=f"highest CHES ({mask.mean():.0%}): the filter removes them;\nhere still trained, with all")
    ax.axhline(0, color=style.color("π_ref"), lw=0.8)
    ax.set_xlabel("CHES score of the pair")
    ax.set_ylabel(r"drop of $\log\pi(y_w)$ (above 0: displaced)")
    style.legend_below(ax, ncol=1)
    return fig


def plot_squeeze(pi_before, pi_after, *, rejected: int, ax=None, title: str = ""):
    """Bar chart of π before and after a negative gradient on y_l: the argmax takes the freed mass."""
    a = np.asarray(pi_before, dtype=np.float64)
    b = np.asarray(pi_after, dtype=np.float64)
    fig, ax = _new(ax, (5.6, 3.4))
    idx = np.arange(a.shape[0])
    ax.bar(idx - 0.2, a, width=0.4, color=style.color("π_ref"), label="before")
    ax.bar(idx + 0.2, b, width=0.4, color=style.color("DPO"), label=r"after the negative gradient on $y_l$")
    ax.annotate(r"$y_l$", (rejected, max(a[rejected], b[rejected])), xytext=(0, 3), textcoords="offset points",
                ha="center", va="bottom", color=style.color("rejected"))
    ax.set_xlabel("response $y$")
    ax.set_ylabel(r"$\pi(y)$")
    style.integer_ticks(ax, "x")
    if title:
        ax.set_title(title)
    return fig


def plot_squeeze_pair(trajectories: dict, *, axes=None):
    """:func:`plot_squeeze` for each policy in ``trajectories`` (name → (steps + 1, n) array of π along the run,
    y_l the last response), side by side, one legend under them."""
    if axes is None:
        fig, axes = plt.subplots(1, len(trajectories), figsize=style.figsize(10.0, 3.8), sharey=True,
                                 layout="constrained", squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for a, (key, p) in zip(axes, trajectories.items(), strict=True):
        p = np.asarray(p, dtype=np.float64)
        plot_squeeze(p[0], p[-1], rejected=p.shape[-1] - 1, ax=a, title=f"a {key} π")
    axes[-1].set_ylabel("")
    fig.legend(handles=axes[0].get_legend_handles_labels()[0], loc="outside lower center", ncol=2)
    return fig


def plot_filter_effect(ches, drops_full, drops_filtered, keep, *, ax=None):
    """Per pair, CHES against the drop of log π(y_w) with one shared θ: the kept pairs trained with all pairs and
    trained on the filtered data, and the removed pairs trained with all (``keep``: (m,) bool mask)."""
    ches = np.asarray(ches, dtype=np.float64)
    keep = np.asarray(keep, bool)
    full = np.asarray(drops_full, dtype=np.float64)
    filt = np.asarray(drops_filtered, dtype=np.float64)
    fig, ax = _new(ax, (6.4, 4.6))
    ax.scatter(ches[keep], full[keep], s=22, color=style.color("DPO"),
               label="kept pairs, trained with all pairs (plain DPO)")
    ax.scatter(ches[keep], filt[keep], s=22, marker="s", color=style.color("CHES filter"),
               label="kept pairs, trained without the removed ones (filtered)")
    ax.scatter(ches[~keep], full[~keep], s=36, marker="x", color=style.color("removed"),
               label="removed pairs (highest CHES), trained with all pairs")
    ax.axhline(0, color=style.color("π_ref"), lw=0.8)
    ax.set_xlabel("CHES score of the pair")
    ax.set_ylabel(r"drop of $\log\pi(y_w)$, shared $\theta$ (above 0: displaced)")
    style.legend_below(ax, ncol=1)
    return fig
