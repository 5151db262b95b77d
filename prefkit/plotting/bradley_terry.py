"""Chapter 1 figures: recovery rate, coverage, the MAP path of a non-existent MLE, rankings with errors.

Each function takes data and an optional ``ax`` and returns the figure.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_recovery", "plot_coverage", "plot_map_path", "plot_ranking"]


def _axes(ax, figsize=(5, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def plot_recovery(sizes, rmse, slope, ax=None):
    """RMS error of θ̂ against N on log–log axes, with the fitted slope and a 1/√N reference line."""
    fig, ax = _axes(ax)
    sizes, rmse = np.asarray(sizes, float), np.asarray(rmse, float)
    ax.loglog(sizes, rmse, "o-", label=f"MLE, fitted slope {slope:.3f}")
    ax.loglog(sizes, rmse[0] * np.sqrt(sizes[0] / sizes), "k--", lw=1, label=r"$\propto 1/\sqrt{N}$")
    ax.set_xlabel(r"comparisons $N$")
    ax.set_ylabel(r"RMS error $\|\hat\theta - \theta\|/\sqrt{n}$")
    ax.legend()
    return fig


def plot_coverage(z, level=0.95, ax=None):
    """Histogram of standardized errors (θ̂ − θ)/SE against the N(0, 1) density; the ±z interval marked."""
    from scipy.stats import norm

    fig, ax = _axes(ax)
    z = np.asarray(z, float).ravel()
    ax.hist(z, bins=40, density=True, alpha=0.6, label=r"$(\hat\theta_i - \theta_i)/\mathrm{SE}_i$")
    x = np.linspace(-4, 4, 200)
    ax.plot(x, norm.pdf(x), "k", lw=1, label=r"$\mathcal{N}(0, 1)$")
    q = norm.ppf(0.5 + level / 2)
    inside = np.mean(np.abs(z) <= q)
    for s in (-q, q):
        ax.axvline(s, color="gray", ls=":")
    ax.set_title(f"{level:.0%} intervals cover {inside:.1%}")
    ax.set_xlabel("standardized error")
    ax.legend()
    return fig


def plot_map_path(l2_values, strengths, labels=None, ax=None):
    """MAP strengths (one row per l2 value) against l2 on a log axis: finite, and shrinking as l2 grows."""
    fig, ax = _axes(ax)
    strengths = np.asarray(strengths, float)
    for k in range(strengths.shape[1]):
        ax.semilogx(l2_values, strengths[:, k], label=None if labels is None else labels[k])
    ax.set_xlabel(r"$\ell_2$ (prior variance $1/(2\ell_2)$)")
    ax.set_ylabel(r"MAP strength $\hat\theta_i$")
    if labels is not None:
        ax.legend(fontsize=8)
    return fig


def plot_ranking(names, strengths, stderr, top=None, ax=None, z=1.96):
    """Items sorted by strength, with ±z·SE error bars (default 95%)."""
    strengths, stderr = np.asarray(strengths, float), np.asarray(stderr, float)
    order = np.argsort(strengths)
    if top is not None:
        order = order[-top:]
    fig, ax = _axes(ax, figsize=(5.5, 0.2 * len(order) + 1))
    y = np.arange(len(order))
    ax.errorbar(strengths[order], y, xerr=z * stderr[order], fmt="o", ms=3, capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels([names[k] for k in order], fontsize=7)
    ax.set_xlabel(r"strength $\hat\theta$ (sum-zero gauge), 95% interval")
    return fig
