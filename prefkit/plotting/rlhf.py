"""Figures for chapter 3: RL convergence to π*, the reward–KL frontier, reward-model recovery, the gap
split. Colours and habits: :mod:`.style` (one colour per method in every panel)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import style

__all__ = ["plot_kl_curves", "plot_kl_panels", "plot_frontier", "plot_reward_recovery",
           "plot_reward_recovery_pair", "plot_gap_decomposition", "X_LABELS"]

# Words for the history keys of :class:`prefkit.RLResult` that can go on the x axis.
X_LABELS = {
    "step": "iteration",
    "cost/samples": "policy samples drawn (cumulative)",
    "cost/reward_queries": "reward queries (cumulative)",
    "cost/grad_steps": "optimiser steps (cumulative)",
    "time/wall": "wall-clock time (s)",
}


def _new(ax, size):
    if ax is None:
        _, ax = plt.subplots(figsize=style.figsize(*size), layout="constrained")
    return ax.figure, ax


def plot_kl_curves(results: dict, *, x: str = "step", ax=None, legend: bool = True):
    """KL(π_θ‖π*) against ``x`` (a history key: "step", "cost/samples", ... named in words by :data:`X_LABELS`)
    for each :class:`prefkit.RLResult` in ``results`` (a dict method → result), log scale, each method in its
    course colour. Returns the figure."""
    fig, ax = _new(ax, (6.4, 3.6))
    for k, (name, res) in enumerate(results.items()):
        kl = np.maximum(res.curve("kl/to_optimal"), 1e-16)
        ax.semilogy(res.curve(x), kl, color=style.color(name, f"C{k}"), label=style.label(name))
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(r"gap to $\pi^*$: KL$(\pi_\theta \,\|\, \pi^*)$")
    if legend:
        style.legend_outside(ax)
    return fig


def plot_kl_panels(results: dict, *, axes=None):
    """Two panels of :func:`plot_kl_curves`: against the iteration (every method), and against the policy samples
    drawn (the sampling methods; the exact gradient draws none). One legend for both. Returns the figure."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(10.5, 3.6), sharey=True, layout="constrained")
    fig = axes[0].figure
    plot_kl_curves(results, ax=axes[0], legend=False)
    sampled = {m: r for m, r in results.items() if np.any(r.curve("cost/samples") > 0)}
    plot_kl_curves(sampled, x="cost/samples", ax=axes[1], legend=False)
    axes[1].set_ylabel("")
    style.legend_outside(axes[1], handles=axes[0].get_legend_handles_labels()[0])
    return fig


def plot_frontier(frontier: dict, points: dict | None = None, *, mark_betas=(), ax=None):
    """The exact reward–KL frontier (``frontier`` from :func:`prefkit.reward_kl_frontier`), its two ends and the
    β in ``mark_betas`` marked on it (each must be one of ``frontier["beta"]``), and, optionally, trained
    policies' points ``points`` = {method: (kl_array, reward_array)}. Returns the figure."""
    fig, ax = _new(ax, (7.0, 4.0))
    b, kl, rew = (np.asarray(frontier[k], dtype=np.float64) for k in ("beta", "kl", "reward"))
    ax.plot(kl, rew, "-", color=style.color("π*"), lw=2.2, label=r"exact frontier $\pi^*_\beta$")
    lo, hi = int(np.argmax(b)), int(np.argmin(b))
    arrow = {"arrowstyle": "-", "color": style.color("π_ref"), "lw": 0.8}
    ax.annotate(rf"end: $\beta$ = {b[lo]:g} (close to $\pi_{{\mathrm{{ref}}}}$)", (kl[lo], rew[lo]),
                xytext=(0.3, 0.15), textcoords="axes fraction", va="center", fontsize="small", arrowprops=arrow)
    ax.annotate(rf"end: $\beta$ = {b[hi]:g} (towards $\arg\max_y r$)", (kl[hi], rew[hi]), xytext=(0.98, 0.72),
                textcoords="axes fraction", ha="right", va="center", fontsize="small", arrowprops=arrow)
    ax.plot(kl[[lo, hi]], rew[[lo, hi]], "s", color=style.color("π*"), ms=6)
    for j, beta in enumerate(np.atleast_1d(np.asarray(mark_betas, dtype=np.float64))):
        i = np.flatnonzero(np.isclose(b, beta))
        if i.size == 0:
            raise ValueError(f"mark_betas: β = {beta:g} is not one of frontier['beta']; include it when tracing")
        i = int(i[0])
        ax.plot(kl[i], rew[i], "D", color=style.color("π*"), mfc="white", mew=1.5, ms=8, zorder=4,
                label=None if j else r"$\pi^*_\beta$ at the $\beta$ the methods ran at")
        ax.annotate(rf"$\beta$ = {beta:g}", (kl[i], rew[i]), xytext=(10, -4), textcoords="offset points", va="top",
                    fontsize="small")
    for k, (name, (pk, pr)) in enumerate((points or {}).items()):
        ax.plot(pk, pr, "o", ms=5, alpha=0.75, color=style.color(name, f"C{k}"), label=style.label(name))
    ax.set_xlabel(r"distance from the reference, KL$(\pi \,\|\, \pi_{\mathrm{ref}})$")
    ax.set_ylabel(r"expected reward $E_\pi[r]$")
    style.legend_outside(ax)
    return fig


def plot_reward_recovery(reward_hat, reward_true, *, ax=None, label: str = ""):
    """r̂ against r*, each centred per prompt (the shift f(x) preferences cannot identify removed), with the line
    r̂ = r* of an exact recovery. Returns the figure."""
    fig, ax = _new(ax, (4.2, 3.8))
    a = np.asarray(reward_hat, dtype=np.float64)
    b = np.asarray(reward_true, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    lim = [min(a.min(), b.min()), max(a.max(), b.max())]
    ax.plot(lim, lim, "--", color=style.color("π*"), lw=1.2, label=r"exact: $\hat r = r^*$")
    ax.plot(b.ravel(), a.ravel(), "o", ms=5, alpha=0.75, color=style.color("reward model"),
            label=f"reward model{f', {label}' if label else ''}")
    ax.set_xlabel(r"true reward $r^*$, centred per prompt")
    ax.set_ylabel(r"fitted reward $\hat r$, centred per prompt")
    ax.legend(loc="upper left")
    return fig


def plot_reward_recovery_pair(reward_exact, reward_sampled, reward_true, *, n_sampled: int | None = None, axes=None):
    """:func:`plot_reward_recovery` side by side: the fit on the exact preference probabilities, and the fit on
    sampled pairs. Returns the figure."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(8.4, 4.0), sharex=True, sharey=True,
                                 layout="constrained")
    fig = axes[0].figure
    plot_reward_recovery(reward_exact, reward_true, ax=axes[0])
    plot_reward_recovery(reward_sampled, reward_true, ax=axes[1])
    axes[0].set_title("fitted on the exact preference probabilities")
    axes[1].set_title(f"fitted on {n_sampled:,} sampled pairs" if n_sampled else "fitted on sampled pairs")
    axes[1].set_ylabel("")
    axes[1].get_legend().remove()
    return fig


def plot_gap_decomposition(n_pairs, gaps, *, ax=None):
    """Regret of the final policy, J(π*) − J(π_final), against the number of preference pairs, with the part due to
    the reward model, J(π*) − J(π*_RM), π*_RM = π*(r̂), and RL's part. ``gaps`` is a list of dicts with
    ``regret/total``, ``regret/reward_model`` and either ``shortfall/rl`` (RL's shortfall on the reward it was
    given, measured directly) or ``regret/rl`` (the remainder, from :func:`prefkit.gap_decomposition`). Returns the
    figure."""
    fig, ax = _new(ax, (7.2, 3.8))
    n = np.asarray(n_pairs, dtype=np.float64)
    rm = np.array([g["regret/reward_model"] for g in gaps])
    key, label = (("shortfall/rl", r"RL's shortfall on $\hat r$: $J_{\hat r}(\pi^*_{RM}) - J_{\hat r}(\pi_{RL})$")
                  if "shortfall/rl" in gaps[0] else ("regret/rl", "|RL's part| (the remainder)"))
    rl = np.array([g[key] for g in gaps])
    tot = np.array([g["regret/total"] for g in gaps])
    ax.loglog(n, tot, "o-", color=style.color("RLHF"), lw=5, ms=11, alpha=0.45,
              label=r"final RLHF policy: $J(\pi^*) - J(\pi_{RL})$")
    ax.loglog(n, rm, "s--", color=style.color("π*_RM"), label=r"reward model: $J(\pi^*) - J(\pi^*_{RM})$")
    ax.loglog(n, np.maximum(np.abs(rl), 1e-12), "^:", color=style.color("RLHF"), alpha=0.7, label=label)
    style.log_ticks(ax, n, "x")
    ax.set_xlabel("preference pairs the reward model is fitted on")
    ax.set_ylabel(r"regret (below the best $J$)")
    style.legend_below(ax, ncol=1)
    return fig
