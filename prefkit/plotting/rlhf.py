"""Figures for chapter 3: RL convergence to π*, the reward–KL frontier, reward-model recovery, the gap
split."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_kl_curves", "plot_frontier", "plot_reward_recovery", "plot_gap_decomposition"]


def plot_kl_curves(results: dict, *, x: str = "step", ax=None):
    """KL(π_θ‖π*) against ``x`` ("step", "cost/samples", ...) for each :class:`prefkit.RLResult` in
    ``results`` (a dict name → result), log scale. Returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
    fig = ax.figure
    for name, res in results.items():
        kl = np.maximum(res.curve("kl/to_optimal"), 1e-16)
        ax.semilogy(res.curve(x), kl, label=name)
    ax.set_xlabel(x)
    ax.set_ylabel(r"KL$(\pi_\theta \,\|\, \pi^*)$")
    ax.legend(fontsize=8)
    return fig


def plot_frontier(frontier: dict, points: dict | None = None, *, ax=None):
    """The exact reward–KL frontier (``frontier`` from :func:`prefkit.reward_kl_frontier`) and, optionally,
    trained policies' points ``points`` = {name: (kl_array, reward_array)}. Returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
    fig = ax.figure
    ax.plot(frontier["kl"], frontier["reward"], "k-", lw=2, label=r"exact $\pi^*_\beta$")
    for name, (kl, rew) in (points or {}).items():
        ax.plot(kl, rew, "o", ms=5, alpha=0.8, label=name)
    ax.set_xlabel(r"KL$(\pi \,\|\, \pi_{ref})$")
    ax.set_ylabel(r"$E_\pi[r]$")
    ax.legend(fontsize=8)
    return fig


def plot_reward_recovery(reward_hat, reward_true, *, ax=None, label: str = ""):
    """r̂ against r*, each centred per prompt (the shift f(x) preferences cannot identify removed). Returns
    the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.6, 3.4))
    fig = ax.figure
    a = np.asarray(reward_hat, dtype=np.float64)
    b = np.asarray(reward_true, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    ax.plot(b.ravel(), a.ravel(), "o", ms=4, alpha=0.7, label=label or None)
    lim = [min(a.min(), b.min()), max(a.max(), b.max())]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel(r"$r^* - \bar r^*(x)$")
    ax.set_ylabel(r"$\hat r - \bar{\hat r}(x)$")
    if label:
        ax.legend(fontsize=8)
    return fig


def plot_gap_decomposition(n_pairs, gaps, *, ax=None):
    """Regret of the final policy, J(π*) − J(π_final), against the number of preference pairs, with the part due to
    the reward model, J(π*) − J(π*(r̂)), and RL's part. ``gaps`` is a list of dicts with ``regret/total``,
    ``regret/reward_model`` and either ``shortfall/rl`` (RL's shortfall on the reward it was given, measured
    directly) or ``regret/rl`` (the remainder, from :func:`prefkit.gap_decomposition`). Returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
    fig = ax.figure
    n = np.asarray(n_pairs, dtype=np.float64)
    rm = np.array([g["regret/reward_model"] for g in gaps])
    key, label = ("shortfall/rl", "RL shortfall on r̂") if "shortfall/rl" in gaps[0] else ("regret/rl", "|RL|")
    rl = np.array([g[key] for g in gaps])
    tot = np.array([g["regret/total"] for g in gaps])
    ax.loglog(n, tot, "ko-", label="total")
    ax.loglog(n, rm, "s--", label="reward model")
    ax.loglog(n, np.maximum(np.abs(rl), 1e-12), "^:", label=label)
    ax.set_xlabel("preference pairs")
    ax.set_ylabel(r"regret $\beta\,$KL")
    ax.legend(fontsize=8)
    return fig
