"""Figures for chapters 4–5: DPO's recovery of π*, its solution sets, and the free-lunch counter-examples.

Each function takes the data a library function returned and an optional ``ax`` (or ``axes``), and returns the
figure. Colours and habits: :mod:`.style` (DPO, IPO, RLHF, π* and π_ref in their course colours everywhere).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import style

__all__ = ["plot_loss_family", "plot_finite_sample", "plot_beta_sweep", "plot_partial_coverage", "plot_azar",
           "plot_xu", "plot_tajwar", "plot_training", "LOSS_NAMES", "METRIC_LABELS"]

# Words for TRL's loss_type names (the keys of :data:`prefkit.losses.LOSSES`).
LOSS_NAMES = {
    "sigmoid": "DPO (sigmoid)", "ipo": "IPO", "hinge": "hinge (SLiC)", "robust": "robust DPO", "bco_pair": "BCO",
    "sppo_hard": "SPPO (hard)", "nca_pair": "NCA", "apo_zero": "APO-zero", "exo_pair": "EXO", "aot": "AOT",
    "aot_unpaired": "AOT (unpaired)", "apo_down": "APO-down", "discopop": "DiscoPOP",
    "sigmoid_norm": "DPO, length-normalised", "sft": "SFT (NLL of the chosen)",
}
_LOSS_COLOR = {"sigmoid": "DPO", "ipo": "IPO", "sft": "SFT"}

# Words for the TRL-named metrics of a DPO history.
METRIC_LABELS = {
    "loss": "DPO loss",
    "rewards/margins": r"reward margin $\beta\,(\log\frac{\pi}{\pi_{ref}}(y_w) - \log\frac{\pi}{\pi_{ref}}(y_l))$",
    "rewards/accuracies": "share of pairs with a positive margin",
    "rewards/chosen": r"implied reward of $y_w$, $\beta \log\frac{\pi}{\pi_{ref}}(y_w)$",
    "rewards/rejected": r"implied reward of $y_l$, $\beta \log\frac{\pi}{\pi_{ref}}(y_l)$",
    "logps/chosen": r"$\log\pi(y_w)$", "logps/rejected": r"$\log\pi(y_l)$",
    "mass/neither": r"mass on neither, $1 - \pi(y_w) - \pi(y_l)$",
    "grad_norm": "gradient norm",
}


def _ax(ax, size=(6.0, 3.6)):
    if ax is None:
        _, ax = plt.subplots(figsize=style.figsize(*size), layout="constrained")
    return ax.figure, ax


def _loss_curves(beta, label_smoothing, h):
    import torch

    from ..losses import LOSSES, preference_loss

    zero = torch.zeros(len(h), dtype=torch.float64)
    out = {}
    for name in LOSSES:
        loss = preference_loss(torch.as_tensor(h / 2), torch.as_tensor(-h / 2), zero, zero, beta, name,
                               label_smoothing if name in ("robust", "exo_pair") else 0.0)
        out[name] = loss.numpy()
    return out


def plot_loss_family(beta=1.0, label_smoothing=0.1, *, h=None, ax=None):
    """Each loss of :data:`prefkit.losses.LOSSES` as a function of the log-ratio gap h, with the rejected
    log-ratio held at −h/2 and the chosen at +h/2.

    Without ``ax``: one small panel per loss, DPO's curve dashed in each for comparison (readable in a room).
    With ``ax``: every loss on that axes, the legend outside it."""
    h = np.linspace(-4, 4, 201) if h is None else np.asarray(h, float)
    curves = _loss_curves(beta, label_smoothing, h)
    xlabel = r"log-ratio gap $h$ (chosen $+h/2$, rejected $-h/2$)"
    if ax is not None:
        fig = ax.figure
        others = style.shades(len(curves) - len(_LOSS_COLOR), "viridis")
        for name, loss in curves.items():
            c = style.color(_LOSS_COLOR[name]) if name in _LOSS_COLOR else others.pop(0)
            ax.plot(h, loss, color=c, lw=2.4 if name in _LOSS_COLOR else None, label=LOSS_NAMES.get(name, name))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("per-pair loss")
        ax.set_ylim(-0.5, 5)
        style.legend_outside(ax, ncol=1 if len(curves) <= 10 else 2)
        return fig
    ncol = 5
    nrow = -(-len(curves) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=style.figsize(11.0, 2.0 * nrow + 0.8), sharex=True, sharey=True,
                             layout="constrained")
    for a, (name, loss) in zip(axes.flat, curves.items(), strict=False):
        if name != "sigmoid":
            a.plot(h, curves["sigmoid"], "--", color=style.color("DPO"), lw=1.2)
        a.plot(h, loss, color=style.color(_LOSS_COLOR.get(name, "loss")), lw=2.2)
        a.axhline(0, color=style.color("π_ref"), lw=0.6)
        a.set_title(LOSS_NAMES.get(name, name), fontsize="medium")
        a.set_ylim(-0.5, 5)
    for a in axes.flat[len(curves):]:
        a.set_axis_off()
    fig.supxlabel(xlabel)
    fig.supylabel(rf"per-pair loss ($\beta$ = {beta:g})")
    fig.legend(handles=[plt.Line2D([], [], color=style.color("loss"), lw=2.2, label="the panel's loss"),
                        plt.Line2D([], [], color=style.color("DPO"), ls="--", lw=1.2, label="DPO, for comparison")],
               loc="outside upper center", ncol=2)
    return fig


def plot_finite_sample(sizes, errors, slope=None, *, ax=None):
    """TV(π̂_N, π*) against N on log-log axes, with the fitted slope and the N^{-1/2} rate through the first point."""
    fig, ax = _ax(ax)
    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    ax.loglog(sizes, errors, "o-", color=style.color("DPO"),
              label="DPO fit" + (f" (fitted slope {slope:.2f})" if slope is not None else ""))
    ax.loglog(sizes, errors[0] * np.sqrt(sizes[0] / sizes), "--", color=style.color("π*"), lw=1.2,
              label=r"rate $\propto N^{-1/2}$ (slope $-\frac{1}{2}$)")
    style.log_ticks(ax, sizes, "x")
    style.log_ticks(ax, axis="y")
    ax.set_xlabel("preference pairs $N$")
    ax.set_ylabel(r"distance to $\pi^*$, TV$(\hat\pi_N, \pi^*)$")
    ax.legend(loc="lower left")
    return fig


def plot_beta_sweep(sweep, *, axes=None):
    """Expected true reward (left) and KL(π‖π_ref) (right) of the population-DPO fit against β (from
    :func:`prefkit.course.ch4_dpo.beta_sweep`), one panel each."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(9.0, 3.4), sharex=True, layout="constrained")
    fig = axes[0].figure
    b = np.asarray(sweep["betas"], float)
    for a, key, ylabel in ((axes[0], "reward", r"expected true reward $E_\pi[r^*]$"),
                           (axes[1], "kl_to_ref", r"distance from the reference, KL$(\pi\,\|\,\pi_{\mathrm{ref}})$")):
        a.semilogx(b, sweep[key], "o-", color=style.color("DPO"), label=r"DPO fit ($= \pi^*_\beta$)")
        style.log_ticks(a, b, "x")
        a.set_xlabel(r"$\beta$")
        a.set_ylabel(ylabel)
    axes[0].legend()
    return fig


def plot_partial_coverage(demo, *, ax=None):
    """Members of the DPO solution set (thin), the landing point of gradient methods, Adam's fit and π*."""
    fig, ax = _ax(ax, (7.2, 4.4))
    y = np.arange(demo["landing"].shape[-1])
    for k, m in enumerate(demo["members"]):
        ax.plot(y, m[0], "-", color=style.color("DPO"), alpha=0.25, lw=1,
                label="other minimisers of the DPO loss" if k == 0 else None)
    ax.plot(y, demo["landing"][0], "o-", color=style.color("DPO"), lw=2.4,
            label="DPO by GD, L-BFGS, Newton (landing point)")
    ax.plot(y, demo["pi_adam"][0], "x--", color=style.color("DPO"), ms=9, mew=2, label="DPO by Adam")
    ax.plot(y, demo["pi_star"][0], "s:", color=style.color("π*"), label=r"$\pi^*$ (of the reward on all pairs)")
    ax.set_xlabel("response $y$")
    ax.set_ylabel(r"$\pi(y\,|\,x)$")
    style.integer_ticks(ax, "x")
    style.legend_below(ax, ncol=2)
    return fig


def plot_azar(az, *, axes=None):
    """Left: π(y_a) along DPO training for each β, heading to 1. Right: IPO's closed-form optimum against τ."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(11.0, 3.6), layout="constrained")
    fig = axes[0].figure
    betas = az["betas"]
    for (beta, curve), c in zip(zip(betas, az["dpo_curves"], strict=True), style.shades(len(betas), "plasma"),
                                strict=True):
        axes[0].plot(curve[:, 0], color=c, label=rf"$\beta$ = {beta:g}")
    style.reference_line(axes[0], 1.0, r"$\pi(y_a) = 1$: where DPO heads")
    axes[0].set_title("DPO, trained with Adam")
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel(r"$\pi(y_a)$")
    axes[0].set_ylim(top=1.05)
    style.legend_outside(axes[0])
    closed = np.array(az["ipo_closed"])
    for k, (name, c) in enumerate(zip(("a", "b", "c"), style.shades(3), strict=True)):
        axes[1].semilogx(az["taus"], closed[:, k], "o-", color=c, label=rf"$\pi(y_{name})$")
    style.log_ticks(axes[1], az["taus"], "x")
    axes[1].set_title("IPO (closed-form optimum)")
    axes[1].set_xlabel(r"IPO's regularisation $\tau$")
    axes[1].set_ylabel("probability at IPO's optimum")
    style.legend_outside(axes[1])
    return fig


def plot_xu(sets, *, ax=None):
    """Policies on Xu et al.'s example as stacked bars of π(y1), π(y2), π(y3) (from
    :func:`prefkit.course.ch5_free_lunch.xu_solution_sets`): RLHF's one solution, the DPO runs from π_ref and from
    another start π0, and members of DPO's solution set with more mass on y3. Every bar minimises the DPO loss;
    the colour under each label names the method (RLHF or DPO)."""
    fig, ax = _ax(ax, (8.4, 3.8))
    bars = [("RLHF\n(any fitted RM)", "RLHF", sets["rlhf_pi"]),
            ("DPO run\nfrom $\\pi_{\\mathrm{ref}}$", "DPO", sets["land_ref"]),
            ("DPO run\nfrom $\\pi_0$", "DPO", sets["land_init"])]
    bars += [(f"DPO optimum\n$\\pi(y_3)$ = {t:g}", "DPO", m)
             for t, m in zip(sets["member_masses"], sets["members"], strict=True)]
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for k, c in enumerate(style.shades(3)):
        hk = np.array([p[k] for *_, p in bars])
        ax.bar(x, hk, 0.6, bottom=bottom, color=c, label=f"$\\pi(y_{k + 1})$")
        bottom += hk
    ax.set_xticks(x, [name for name, *_ in bars], fontsize="small")
    for tick, (_, method, _) in zip(ax.get_xticklabels(), bars, strict=True):
        tick.set_color(style.color(method))
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    style.legend_outside(ax)
    return fig


def plot_tajwar(table, *, axes=None):
    """True reward (left, ±1 SD over seeds) and KL to π_ref (right) per method (rows of
    :func:`prefkit.course.ch5_free_lunch.tajwar_comparison`), one panel per quantity, each bar in its method's
    colour."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(10.0, 3.6), sharex=True, layout="constrained")
    fig = axes[0].figure
    names = [r["method"] for r in table]
    x = np.arange(len(names))
    colors = [style.color(n, "0.5") for n in names]
    axes[0].bar(x, [r["reward"] for r in table], 0.6, yerr=[r.get("reward_sd", 0) for r in table], capsize=3,
                color=colors)
    axes[0].set_ylabel(r"expected true reward $E_\pi[r^*]$")
    axes[1].bar(x, [r["kl_to_ref"] for r in table], 0.6, color=colors)
    axes[1].set_ylabel(r"distance from the reference, KL$(\pi\|\pi_{\mathrm{ref}})$")
    labels = [n.replace("pi*", "π*").replace(" (", "\n(") for n in names]
    for a in axes:
        a.set_xticks(x, labels, fontsize="small")
    return fig


def plot_training(history, keys=("rewards/margins", "rewards/accuracies", "loss"), *, axes=None):
    """Curves of TRL-named metrics from a :class:`prefkit.dpo.DPOResult` history, one panel per metric (they have
    different scales), the metric named in words (:data:`METRIC_LABELS`)."""
    if axes is None:
        fig, axes = plt.subplots(1, len(keys), figsize=style.figsize(3.6 * len(keys), 3.2), sharex=True,
                                 layout="constrained", squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    steps = [h["step"] for h in history]
    for a, k in zip(axes, keys, strict=True):
        a.plot(steps, [h[k] for h in history], color=style.color("DPO"))
        a.set_title(METRIC_LABELS.get(k, k), fontsize="medium")
        a.set_xlabel("optimiser step")
        if k == "rewards/accuracies":
            a.set_ylim(-0.02, 1.02)
    return fig
