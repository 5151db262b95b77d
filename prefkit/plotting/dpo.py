"""Figures for chapters 4–5: DPO's recovery of π*, its solution sets, and the free-lunch counter-examples.

Each function takes the data a library function returned and an optional ``ax``, and returns the figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_loss_family", "plot_finite_sample", "plot_beta_sweep", "plot_partial_coverage", "plot_azar",
           "plot_xu", "plot_tajwar", "plot_training"]


def _ax(ax, size=(5.0, 3.2)):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax.figure, ax


def plot_loss_family(beta=1.0, label_smoothing=0.1, *, h=None, ax=None):
    """Each loss of :data:`prefkit.losses.LOSSES` as a function of the log-ratio gap h, with the rejected
    log-ratio held at −h/2 and the chosen at +h/2."""
    import torch

    from ..losses import LOSSES, preference_loss

    fig, ax = _ax(ax, (5.5, 3.4))
    h = np.linspace(-4, 4, 201) if h is None else np.asarray(h, float)
    zero = torch.zeros(len(h), dtype=torch.float64)
    for name in LOSSES:
        loss = preference_loss(torch.as_tensor(h / 2), torch.as_tensor(-h / 2), zero, zero, beta, name,
                               label_smoothing if name in ("robust", "exo_pair") else 0.0)
        ax.plot(h, loss.numpy(), label=name)
    ax.set_xlabel(r"log-ratio gap $h$ (chosen $+h/2$, rejected $-h/2$)")
    ax.set_ylabel("per-pair loss")
    ax.set_ylim(-0.5, 5)
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_finite_sample(sizes, errors, slope=None, *, ax=None):
    """TV(π̂_N, π*) against N on log-log axes, with the fitted slope and an N^{-1/2} guide."""
    fig, ax = _ax(ax)
    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    ax.loglog(sizes, errors, "o-", label="DPO fit" + (f" (slope {slope:.2f})" if slope is not None else ""))
    ax.loglog(sizes, errors[0] * np.sqrt(sizes[0] / sizes), "k--", lw=1, label=r"$\propto N^{-1/2}$")
    ax.set_xlabel("preference pairs $N$")
    ax.set_ylabel(r"TV$(\hat\pi_N, \pi^*)$")
    ax.legend(fontsize=8)
    return fig


def plot_beta_sweep(sweep, *, ax=None):
    """Expected true reward and KL(π‖π_ref) of the population-DPO fit against β (from
    :func:`prefkit.course.ch4_dpo.beta_sweep`)."""
    fig, ax = _ax(ax)
    b = sweep["betas"]
    ax.semilogx(b, sweep["reward"], "o-", color="C0", label=r"$E_\pi[r^*]$")
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(r"$E_\pi[r^*]$", color="C0")
    ax2 = ax.twinx()
    ax2.semilogx(b, sweep["kl_to_ref"], "s--", color="C1", label=r"KL$(\pi\|\pi_{ref})$")
    ax2.set_ylabel(r"KL$(\pi\|\pi_{ref})$", color="C1")
    return fig


def plot_partial_coverage(demo, *, ax=None):
    """Members of the DPO solution set (grey), the landing point of gradient methods, Adam's fit and π*."""
    fig, ax = _ax(ax)
    y = np.arange(demo["landing"].shape[-1])
    for k, m in enumerate(demo["members"]):
        ax.plot(y, m[0], "-", color="0.75", lw=1, label="members of the DPO set" if k == 0 else None)
    ax.plot(y, demo["landing"][0], "o-", color="C0", label="landing point (GD, L-BFGS, Newton)")
    ax.plot(y, demo["pi_adam"][0], "x--", color="C3", label="Adam")
    ax.plot(y, demo["pi_star"][0], "k:", label=r"$\pi^*$ (all pairs)")
    ax.set_xlabel("response $y$")
    ax.set_ylabel(r"$\pi(y)$")
    ax.legend(fontsize=7)
    return fig


def plot_azar(az, *, axes=None):
    """Left: π(y_a) along DPO training for each β. Right: IPO's closed-form optimum against τ."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.2))
    fig = axes[0].figure
    for beta, curve in zip(az["betas"], az["dpo_curves"], strict=True):
        axes[0].plot(curve[:, 0], label=rf"DPO, $\beta$={beta:g}")
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel(r"$\pi(y_a)$")
    axes[0].legend(fontsize=8)
    closed = np.array(az["ipo_closed"])
    for k, name in enumerate(("$y_a$", "$y_b$", "$y_c$")):
        axes[1].semilogx(az["taus"], closed[:, k], "o-", label=f"IPO $\\pi$({name})")
    axes[1].set_xlabel(r"$\tau$")
    axes[1].set_ylabel("IPO optimum")
    axes[1].legend(fontsize=8)
    return fig


def plot_xu(sets, *, ax=None):
    """Policies on Xu et al.'s example as stacked bars of π(y1), π(y2), π(y3) (from
    :func:`prefkit.course.ch5_free_lunch.xu_solution_sets`): RLHF's one solution, the DPO runs from π_ref and from
    another start π0, and members of DPO's solution set with more mass on y3. Every bar minimises the DPO loss."""
    fig, ax = _ax(ax, (6.5, 3.2))
    bars = [("RLHF\n(any fitted RM)", sets["rlhf_pi"]), ("DPO run\nfrom π_ref", sets["land_ref"]),
            ("DPO run\nfrom π0", sets["land_init"])]
    bars += [(f"DPO optimum\nπ(y3)={t:g}", m) for t, m in zip(sets["member_masses"], sets["members"], strict=True)]
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for k, color in enumerate(("C0", "C1", "C3")):
        h = np.array([p[k] for _, p in bars])
        ax.bar(x, h, 0.6, bottom=bottom, color=color, label=f"$\\pi(y_{k + 1})$")
        bottom += h
    ax.set_xticks(x, [name for name, _ in bars], fontsize=7)
    ax.set_ylabel("probability")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_tajwar(table, *, ax=None):
    """True reward and KL to π_ref per method (rows of :func:`prefkit.course.ch5_free_lunch.tajwar_comparison`)."""
    fig, ax = _ax(ax, (6.0, 3.2))
    names = [r["method"] for r in table]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [r["reward"] for r in table], 0.4, yerr=[r.get("reward_sd", 0) for r in table],
           color="C0", label=r"$E_\pi[r^*]$")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, [r["kl_to_ref"] for r in table], 0.4, color="C1", label=r"KL$(\pi\|\pi_{ref})$")
    ax.set_xticks(x, [n.replace(" (", "\n(") for n in names], fontsize=7)
    ax.set_ylabel(r"$E_\pi[r^*]$", color="C0")
    ax2.set_ylabel(r"KL$(\pi\|\pi_{ref})$", color="C1")
    return fig


def plot_training(history, keys=("rewards/margins", "rewards/accuracies", "loss"), *, ax=None):
    """Curves of TRL-named metrics from a :class:`prefkit.dpo.DPOResult` history."""
    fig, ax = _ax(ax)
    steps = [h["step"] for h in history]
    for k in keys:
        ax.plot(steps, [h[k] for h in history], label=k)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    return fig
