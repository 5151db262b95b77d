"""Chapter 1 figures: recovery rate, coverage, the MAP path of a non-existent MLE, rankings with errors.

Each function takes data and an optional ``ax`` and returns the figure. Colours and habits: :mod:`.style`.
"""

from __future__ import annotations

import numpy as np

from . import style

__all__ = ["plot_recovery", "plot_coverage", "plot_map_path", "plot_ranking"]


def _axes(ax, size=(5.6, 3.6)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=style.figsize(*size), layout="constrained")
    return ax.figure, ax


def plot_recovery(sizes, rmse, slope, ax=None):
    """RMS error of θ̂ against N on log–log axes, with the fitted slope and the 1/√N rate through the first point."""
    fig, ax = _axes(ax)
    sizes, rmse = np.asarray(sizes, float), np.asarray(rmse, float)
    ax.loglog(sizes, rmse, "o-", color=style.color("MLE"), label=f"MLE (fitted slope {slope:.2f})")
    ax.loglog(sizes, rmse[0] * np.sqrt(sizes[0] / sizes), color=style.color("π*"), ls="--", lw=1.2,
              label=r"rate $\propto 1/\sqrt{N}$ (slope $-\frac{1}{2}$)")
    style.log_ticks(ax, sizes, "x")
    style.log_ticks(ax, axis="y")
    ax.set_xlabel(r"number of comparisons $N$")
    ax.set_ylabel(r"RMS error of the strengths, $\|\hat\theta - \theta\|/\sqrt{n}$")
    ax.legend(loc="lower left")
    return fig


def plot_coverage(z, level=0.95, ax=None):
    """Histogram of standardized errors (θ̂ − θ)/SE against the N(0, 1) density; the ±z interval marked."""
    from scipy.stats import norm

    fig, ax = _axes(ax, size=(7.0, 3.6))
    z = np.asarray(z, float).ravel()
    ax.hist(z, bins=40, density=True, color=style.color("MLE"), alpha=0.6,
            label=r"MLE: $(\hat\theta_i - \theta_i)/\mathrm{SE}_i$")
    x = np.linspace(-4, 4, 200)
    ax.plot(x, norm.pdf(x), color=style.color("π*"), lw=1.5, label=r"exact: $\mathcal{N}(0, 1)$ density")
    q = norm.ppf(0.5 + level / 2)
    inside = np.mean(np.abs(z) <= q)
    for k, s in enumerate((-q, q)):
        ax.axvline(s, color=style.color("π_ref"), ls=":", label=rf"$\pm{q:.2f}$: {level:.0%} interval" if k else None)
    ax.set_title(f"{level:.0%} intervals cover {inside:.1%} of the true strengths")
    ax.set_xlabel(r"standardized error $(\hat\theta_i - \theta_i)/\mathrm{SE}_i$")
    ax.set_ylabel("density")
    style.legend_outside(ax)
    return fig


def plot_map_path(l2_values, strengths, labels=None, ax=None):
    """MAP strengths (one row per l2 value) against l2 on a log axis: finite, and shrinking as l2 grows."""
    fig, ax = _axes(ax)
    strengths = np.asarray(strengths, float)
    for k, c in enumerate(style.shades(strengths.shape[1])):
        ax.semilogx(l2_values, strengths[:, k], color=c, label=None if labels is None else labels[k])
    ax.axhline(0, color=style.color("π_ref"), lw=0.8)
    ax.set_xlabel(r"prior strength $\ell_2$ (prior variance $1/(2\ell_2)$)")
    ax.set_ylabel(r"MAP strength $\hat\theta_i$")
    if labels is not None:
        style.legend_outside(ax)
    return fig


def plot_ranking(names, strengths, stderr, top=None, ax=None, z=1.96, item: str = "item"):
    """Items sorted by strength, with ±z·SE error bars (default 95%); ``item`` names what is ranked."""
    strengths, stderr = np.asarray(strengths, float), np.asarray(stderr, float)
    order = np.argsort(strengths)
    if top is not None:
        order = order[-top:]
    fig, ax = _axes(ax, size=(6.4, 0.24 * len(order) + 1.2))
    y = np.arange(len(order))
    ax.errorbar(strengths[order], y, xerr=z * stderr[order], fmt="o", ms=4, capsize=2, color=style.color("MLE"))
    ax.set_yticks(y, [names[k] for k in order], fontsize="small")
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.grid(axis="x", color="0.9")
    ax.set_xlabel(rf"strength $\hat\theta$ (sum-zero gauge), {_level(z):.0%} interval")
    ax.set_ylabel(item if top is None else f"{item} (the {len(order)} strongest)")
    return fig


def _level(z):
    from scipy.stats import norm

    return 2 * norm.cdf(z) - 1
