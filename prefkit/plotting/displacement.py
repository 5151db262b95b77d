"""Plots for chapter 6, likelihood displacement. Each takes data (and an optional ax), returns the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_displacement_trajectory", "plot_ches_scatter", "plot_squeeze", "plot_filter_effect"]


def plot_displacement_trajectory(logp, preferences, *, pair: int = 0, names=None, title: str = "", axes=None):
    """The four quantities every DPO-family loop records, for one pair, along training.

    Panels: log π(y_w|x) and log π(y_l|x); the mass on the responses in neither role, 1 − π(y_w) − π(y_l); and
    π(y|x) of the top gainer (the response whose probability rose most by the end) next to π(y_w|x).

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
    name = (lambda i: names[i]) if names is not None else (lambda i: f"y={i}")
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    else:
        fig = axes[0].figure
    a0, a1, a2 = axes
    a0.plot(steps, lp[:, w], label=rf"$\log\pi(y_w)$ ({name(w)})", color="C2")
    a0.plot(steps, lp[:, l], label=rf"$\log\pi(y_l)$ ({name(l)})", color="C3")
    a0.axhline(lp[0, w], color="C2", ls=":", lw=1)
    a0.set_xlabel("step")
    a0.set_ylabel(r"$\log\pi_\theta$")
    a0.legend(fontsize=8)
    a1.plot(steps, 1 - p[:, w] - p[:, l], color="C0")
    a1.set_xlabel("step")
    a1.set_ylabel(r"$1-\pi(y_w)-\pi(y_l)$")
    a1.set_title("mass on neither", fontsize=9)
    a2.plot(steps, p[:, top], color="C1", label=f"top gainer: {name(top)}")
    a2.plot(steps, p[:, w], color="C2", ls="--", label=rf"$\pi(y_w)$ ({name(w)})")
    a2.set_xlabel("step")
    a2.set_ylabel(r"$\pi_\theta(y|x)$")
    a2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_ches_scatter(ches, drops, *, removed=None, ax=None):
    """CHES against the measured drop of log π(y_w) per pair; ``removed`` marks pairs a CHES filter drops."""
    ches = np.asarray(ches, dtype=np.float64)
    drops = np.asarray(drops, dtype=np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
    else:
        fig = ax.figure
    mask = np.zeros(ches.shape, bool) if removed is None else np.asarray(removed, bool)
    ax.scatter(ches[~mask], drops[~mask], s=12, color="C0", label="kept")
    if mask.any():
        ax.scatter(ches[mask], drops[mask], s=12, color="C3", label="highest CHES (filtered)")
        ax.legend(fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("CHES")
    ax.set_ylabel(r"drop of $\log\pi(y_w)$")
    fig.tight_layout()
    return fig


def plot_squeeze(pi_before, pi_after, *, rejected: int, ax=None, title: str = ""):
    """Bar chart of π before and after a negative gradient on y_l: the argmax takes the freed mass."""
    a = np.asarray(pi_before, dtype=np.float64)
    b = np.asarray(pi_after, dtype=np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    else:
        fig = ax.figure
    idx = np.arange(a.shape[0])
    ax.bar(idx - 0.2, a, width=0.4, label="before")
    ax.bar(idx + 0.2, b, width=0.4, label="after")
    ax.annotate(r"$y_l$", (rejected, max(a[rejected], b[rejected])), ha="center", va="bottom")
    ax.set_xlabel("response $y$")
    ax.set_ylabel(r"$\pi(y)$")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_filter_effect(ches, drops_full, drops_filtered, keep, *, ax=None):
    """Per pair, CHES against the drop of log π(y_w) with one shared θ: the kept pairs trained with all pairs and
    trained on the filtered data, and the removed pairs trained with all (``keep``: (m,) bool mask)."""
    ches = np.asarray(ches, dtype=np.float64)
    keep = np.asarray(keep, bool)
    full = np.asarray(drops_full, dtype=np.float64)
    filt = np.asarray(drops_filtered, dtype=np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
    else:
        fig = ax.figure
    ax.scatter(ches[keep], full[keep], s=12, label="kept pair, trained with all")
    ax.scatter(ches[keep], filt[keep], s=12, label="kept pair, filtered data")
    ax.scatter(ches[~keep], full[~keep], s=12, color="C3", label="removed pair, trained with all")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("CHES")
    ax.set_ylabel(r"drop of $\log\pi(y_w)$, shared θ")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
