"""Chapter 9 figures: Plackett-Luce fits, preference matrices, policies side by side, Nash-MD convergence."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import style

__all__ = ["plot_strength_recovery", "plot_preference_matrix", "plot_policies", "plot_convergence"]

# The course's colours (prefkit.plotting.style) for the policies every chapter shares; two colours of this chapter's own
COLORS = {"π_ref": style.color("π_ref"), "RLHF / DPO": style.color("DPO"), "von Neumann winner": "#88CCEE",
          "regularised Nash": "#117733", "π* (chapter 2)": style.color("π*")}


def _ax(ax, size=(5, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
    return ax.figure, ax


def plot_strength_recovery(true_strengths, estimates: dict, ax=None):
    """Estimated against true strengths (both centred), one series per method, with ±2·SE bars.

    ``estimates`` maps a label to (strengths, stderr).
    """
    fig, ax = _ax(ax)
    t = np.asarray(true_strengths, float)
    t = t - t.mean()
    lo, hi = t.min() - 0.3, t.max() + 0.3
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", label="θ̂ = θ")
    for k, ((name, (est, se)), c) in enumerate(zip(estimates.items(), style.shades(len(estimates)), strict=True)):
        ax.errorbar(t + 0.02 * k, est, yerr=2 * np.asarray(se), fmt="o", ms=4, capsize=2, label=name, color=c)
    ax.set_xlabel(r"true strength $\theta_i$")
    ax.set_ylabel(r"estimate $\hat\theta_i$ (±2 SE)")
    ax.legend(loc="upper left", frameon=False)
    return fig


def plot_preference_matrix(P, labels=None, ax=None, title=None):
    """P[i, j] = P(row ≻ column) as a heatmap with the numbers written in; red > ½, blue < ½."""
    fig, ax = _ax(ax, (4, 3.6))
    P = np.asarray(P, float)
    n = len(P)
    labels = labels or [f"y{i}" for i in range(n)]
    im = ax.imshow(P, cmap="RdBu_r", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{P[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("loses (column)")
    ax.set_ylabel("wins (row)")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label=r"$P(\mathrm{row} \succ \mathrm{column})$", shrink=0.8)
    return fig


def plot_policies(policies: dict, labels=None, ax=None, title=None):
    """Policies over the same responses as grouped bars (one colour per method, as in every chapter-9 figure)."""
    fig, ax = _ax(ax, (6, 3.5))
    names = list(policies)
    n = len(next(iter(policies.values())))
    labels = labels or [f"y{i}" for i in range(n)]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ax.bar(np.arange(n) + (k - (len(names) - 1) / 2) * width, policies[name], width,
               label=name, color=COLORS.get(name) or style.color(name, default="#BBBBBB"))
    ax.set_xticks(range(n), labels)
    ax.set_ylabel(r"$\pi(y)$")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_convergence(curves: dict, ax=None, ylabel=r"KL$(\pi^*_\beta \,\|\, \pi_t)$", reference=None):
    """Log-log curves of a distance against the step t; ``curves`` maps a label to (t, values).

    ``reference`` = (t, values, label) adds a dashed reference line (a rate).
    """
    fig, ax = _ax(ax, (5, 3.8))
    for (name, (t, v)), c in zip(curves.items(), style.shades(len(curves)), strict=True):
        ax.loglog(t, v, color=c, label=name)
    if reference is not None:
        t, v, lab = reference
        ax.loglog(t, v, color="0.4", ls="--", lw=1, label=lab)
    ax.set_xlabel("Nash-MD step $t$")
    ax.set_ylabel(ylabel)
    style.legend_outside(ax)
    return fig
