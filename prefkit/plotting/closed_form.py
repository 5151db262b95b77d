"""Figures for chapter 2: the KL-optimal policy π* = π_ref·exp(r/β)/Z against π_ref and r."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..closed_form import optimal_policy
from . import style

__all__ = ["plot_optimal_policy", "plot_shift_invariance"]


def plot_optimal_policy(pi_ref, reward, betas, *, prompt: int = 0, ax=None, show_reward: bool = True):
    """π*(·|x) for a few β (shades from small to large β), with π_ref (grey, dashed) and r(x, ·) (a panel below,
    sharing the response axis). Returns the figure.

    Parameters
    ----------
    pi_ref, reward : (n_prompts, n_responses) arrays
    betas : iterable of β > 0 (or a single β)
    prompt : which prompt x to draw
    ax : optional axes for π (the reward panel is then left out)
    """
    pi_ref = np.atleast_2d(np.asarray(pi_ref, dtype=np.float64))
    reward = np.atleast_2d(np.asarray(reward, dtype=np.float64))
    y = np.arange(pi_ref.shape[-1])
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    ax_r = None
    if ax is None:
        if show_reward:
            fig, (ax, ax_r) = plt.subplots(2, 1, figsize=style.figsize(7.2, 4.6), sharex=True, layout="constrained",
                                           height_ratios=(3, 1))
        else:
            fig, ax = plt.subplots(figsize=style.figsize(7.2, 3.4), layout="constrained")
    fig = ax.figure
    marker = "-o" if len(y) <= 12 else "-"
    for beta, c in zip(betas, style.shades(len(betas), "plasma"), strict=True):
        ax.plot(y, optimal_policy(pi_ref, reward, beta)[prompt], marker, color=c, ms=4,
                label=rf"$\pi^*$, $\beta$ = {beta:g}")
    ax.plot(y, pi_ref[prompt], "--", color=style.color("π_ref"), lw=2, label=r"$\pi_{\mathrm{ref}}$")
    ax.set_ylabel(r"probability $\pi(y\,|\,x)$")
    ax.set_title(r"$\pi^*(y|x) \propto \pi_{\mathrm{ref}}(y|x)\, e^{r(x, y)/\beta}$")
    style.legend_outside(ax)
    last = ax
    if ax_r is not None:
        ax_r.plot(y, reward[prompt], marker, color="0.35", ms=3, lw=1.2)
        ax_r.set_ylabel("reward\n$r(x, y)$")
        last = ax_r
    else:
        ax.set_xlabel("response $y$")
    last.set_xlabel("response $y$")
    style.integer_ticks(last, "x")
    return fig


def plot_shift_invariance(pi_ref, reward, f, beta, *, prompt: int = 0, ax=None):
    """Two rewards r and r + f(x) (left) give the same π* (right). Returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=style.figsize(9.0, 3.4), layout="constrained")
    fig = ax[0].figure
    pi_ref = np.atleast_2d(np.asarray(pi_ref, dtype=np.float64))
    r = np.atleast_2d(np.asarray(reward, dtype=np.float64))
    r2 = r + np.asarray(f, dtype=np.float64).reshape(-1, 1)
    y = np.arange(r.shape[-1])
    c1, c2 = style.shades(2, "plasma")
    ax[0].plot(y, r[prompt], "o-", color=c1, label="$r$")
    ax[0].plot(y, r2[prompt], "s--", color=c2, label="$r + f(x)$")
    ax[0].set_ylabel(r"reward $r(x, y)$")
    ax[0].set_title("two rewards, shifted by $f(x)$")
    ax[1].plot(y, optimal_policy(pi_ref, r, beta)[prompt], "o-", color=c1, label=r"$\pi^*$ of $r$")
    ax[1].plot(y, optimal_policy(pi_ref, r2, beta)[prompt], "x", color=c2, ms=10, mew=2, label=r"$\pi^*$ of $r + f$")
    ax[1].set_ylabel(r"$\pi^*(y\,|\,x)$")
    ax[1].set_title(rf"the same $\pi^*$ ($\beta$ = {beta:g})")
    for a in ax:
        a.set_xlabel("response $y$")
        style.integer_ticks(a, "x")
        a.legend()
    return fig
