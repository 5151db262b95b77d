"""Figures for chapter 8: best-of-n against its KL bound, and gold vs proxy reward against d = √KL."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import style

__all__ = ["plot_kl_bound", "plot_gold_proxy", "plot_peak_vs_data"]

_COLORS = {"best-of-n": style.color("best-of-n"), "π*_β": style.color("RLHF"), "DPO": style.color("DPO")}


def plot_kl_bound(ns, bound, kls: dict, *, ax=None):
    """Exact KL(π_bon‖π_ref) of several problems (``kls``: label -> array over ``ns``) against log n − (n−1)/n."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.plot(ns, bound, "k--", lw=1.2, label="log n − (n−1)/n (bound)")
    for (label, kl), c in zip(kls.items(), ("#0072B2", "#D55E00", "#009E73", "#CC79A7"), strict=False):
        ax.plot(ns, kl, "o-", ms=3, color=c, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("n (draws)")
    ax.set_ylabel(r"KL($\pi_{bon}\,\|\,\pi_{ref}$)")
    style.legend_outside(ax)
    return ax.figure


def plot_gold_proxy(curves, *, fits=None, ax=None):
    """Gold (solid) and proxy (dashed) reward gain against d = √KL for each :class:`RewardCurve`; optional
    :class:`GaoFit` per curve (dotted)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    fits = fits or [None] * len(curves)
    for c, f in zip(curves, fits, strict=True):
        col = _COLORS.get(c.method, "0.3")
        ax.plot(c.d, c.gold_gain, "-", color=col, label=f"{c.method}: gold $r^*$")
        ax.plot(c.d, c.proxy_gain, "--", color=col, alpha=0.7, label=f"{c.method}: proxy $r_\\phi$")
        if f is not None:
            dd = np.linspace(0, c.d.max(), 200)
            ax.plot(dd, f(dd), ":", color=col, lw=1.2, label=f"Gao fit ({f.form}), R²={f.r2:.2f}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel(r"$d = \sqrt{\mathrm{KL}(\pi\,\|\,\pi_{ref})}$")
    ax.set_ylabel("reward gain over $\\pi_{ref}$")
    style.legend_outside(ax, fontsize=8)
    return ax.figure


def plot_peak_vs_data(results: dict, *, ax=None):
    """Best-of-n gold gain against d for several data sizes (``results``: N -> RewardCurve), peaks marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    cols = plt.cm.viridis(np.linspace(0.15, 0.85, len(results)))
    for (N, c), col in zip(results.items(), cols, strict=True):
        ax.plot(c.d, c.gold_gain, color=col, label=f"N = {N}")
        i = int(np.argmax(c.gold_gain))
        ax.plot(c.d[i], c.gold_gain[i], "o", color=col)
    ax.set_xlabel(r"$d = \sqrt{\mathrm{KL}}$")
    ax.set_ylabel("gold reward gain (best-of-n)")
    style.legend_outside(ax)
    return ax.figure
