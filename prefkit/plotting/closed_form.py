"""Figures for chapter 2: the KL-optimal policy π* = π_ref·exp(r/β)/Z against π_ref and r."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..closed_form import optimal_policy

__all__ = ["plot_optimal_policy", "plot_shift_invariance"]


def plot_optimal_policy(pi_ref, reward, betas, *, prompt: int = 0, ax=None, show_reward: bool = True):
    """π*(·|x) for a few β, with π_ref (dashed) and r(x, ·) (grey, right axis). Returns the figure.

    Parameters
    ----------
    pi_ref, reward : (n_prompts, n_responses) arrays
    betas : iterable of β > 0 (or a single β)
    prompt : which prompt x to draw
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
    fig = ax.figure
    pi_ref = np.atleast_2d(np.asarray(pi_ref, dtype=np.float64))
    reward = np.atleast_2d(np.asarray(reward, dtype=np.float64))
    y = np.arange(pi_ref.shape[-1])
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(betas)))
    for beta, c in zip(betas, colors, strict=True):
        ax.plot(y, optimal_policy(pi_ref, reward, beta)[prompt], "-o" if len(y) <= 12 else "-", color=c, ms=4,
                label=rf"$\pi^*$, $\beta$={beta:g}")
    ax.plot(y, pi_ref[prompt], "k--", lw=1.5, label=r"$\pi_{ref}$")
    ax.set_xlabel("response $y$")
    ax.set_ylabel(r"$\pi(y\,|\,x)$")
    if show_reward:
        ax2 = ax.twinx()
        ax2.plot(y, reward[prompt], color="0.6", lw=1, label="$r(x, y)$")
        ax2.set_ylabel("$r(x, y)$", color="0.4")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(r"$\pi^* \propto \pi_{ref}\, e^{r/\beta}$")
    return fig


def plot_shift_invariance(pi_ref, reward, f, beta, *, prompt: int = 0, ax=None):
    """Two rewards r and r + f(x) (left) give the same π* (right). Returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    fig = ax[0].figure
    pi_ref = np.atleast_2d(np.asarray(pi_ref, dtype=np.float64))
    r = np.atleast_2d(np.asarray(reward, dtype=np.float64))
    r2 = r + np.asarray(f, dtype=np.float64).reshape(-1, 1)
    y = np.arange(r.shape[-1])
    ax[0].plot(y, r[prompt], "o-", label="$r$")
    ax[0].plot(y, r2[prompt], "s--", label="$r + f(x)$")
    ax[0].set_xlabel("response $y$")
    ax[0].set_ylabel("reward")
    ax[0].legend(fontsize=8)
    ax[1].plot(y, optimal_policy(pi_ref, r, beta)[prompt], "o-", label=r"$\pi^*(r)$")
    ax[1].plot(y, optimal_policy(pi_ref, r2, beta)[prompt], "x", ms=9, label=r"$\pi^*(r + f)$")
    ax[1].set_xlabel("response $y$")
    ax[1].set_ylabel(r"$\pi^*(y\,|\,x)$")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
