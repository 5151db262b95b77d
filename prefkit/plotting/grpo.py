"""Figures for chapter 10: where each GRPO variant stops, GRPO's per-prompt effective β, the variance of the KL
estimators, and a sampled run against its exact fixed point."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import style

__all__ = ["plot_fixed_points", "plot_effective_beta", "plot_k3_variance", "plot_training"]

# one colour per variant: GRPO (std division) in the course's GRPO colour, Dr. GRPO in PPO's green family
_VARIANTS = {
    "GRPO, k3 loss (TRL)": style.color("GRPO"),
    "Dr. GRPO, k3 loss": style.color("PPO"),
    "Dr. GRPO, k2 loss": style.color("REINFORCE"),
    "Dr. GRPO, k1 in reward": style.color("RLOO"),
}


def plot_fixed_points(pi_ref, pi_star, fixed: dict, *, ax=None):
    """Bars of π_ref, π* and each variant's exact fixed point (``fixed``: label -> π) for one prompt."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.6))
    rows = {"π_ref": (pi_ref, style.color("π_ref")), "π*": (pi_star, style.color("π*"))}
    rows |= {k: (v, _VARIANTS.get(k, "0.5")) for k, v in fixed.items()}
    n = len(pi_ref)
    width = 0.8 / len(rows)
    for i, (label, (p, c)) in enumerate(rows.items()):
        ax.bar(np.arange(n) + (i - (len(rows) - 1) / 2) * width, p, width, color=c, label=label)
    ax.set_xticks(np.arange(n), [f"y{j}" for j in range(n)])
    ax.set_xlabel("response")
    ax.set_ylabel(r"$\pi(y\,|\,x)$")
    style.legend_outside(ax, fontsize=8)
    return ax.figure


def plot_effective_beta(sigma: dict, ratio: dict, *, ax=None):
    """β_eff(x)/β against std_π(r|x) at GRPO's fixed point, one colour per group size G (dicts keyed by G), with the
    large-G limit β_eff = β·std as a reference line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.8))
    cols = plt.cm.Greens(np.linspace(0.4, 0.95, len(sigma)))
    top = 0.0
    for (G, s), c in zip(sigma.items(), cols, strict=True):
        ax.plot(s, ratio[G], "o", color=c, label=f"G = {G}")
        top = max(top, float(np.max(s)))
    xs = np.linspace(0, top * 1.05, 50)
    ax.plot(xs, xs, "--", color=style.color("π*"), lw=1.0, label=r"$\beta_{eff} = \beta\cdot$std (G → ∞)")
    ax.set_xlabel(r"std$_\pi(r\,|\,x)$ at the fixed point")
    ax.set_ylabel(r"$\beta_{eff}(x)\,/\,\beta$")
    style.legend_outside(ax)
    return ax.figure


def plot_k3_variance(path: dict, *, ax=None):
    """Exact Var k1 and Var k3 against the exact KL(π‖π_ref) along a path of policies (log-log)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    ok = path["kl"] > 0
    ax.loglog(path["kl"][ok], path["var_k1"][ok], "-", color=style.color("REINFORCE"),
              label="Var k1 = Var log(π/π_ref)")
    ax.loglog(path["kl"][ok], path["var_k3"][ok], "-", color=style.color("GRPO"), label="Var k3 (TRL)")
    ax.set_xlabel(r"KL($\pi\,\|\,\pi_{ref}$)")
    ax.set_ylabel(r"variance under $y \sim \pi$")
    style.legend_outside(ax)
    return ax.figure


def plot_training(run, fixed_point, pi_star, *, ax=None):
    """Total variation of a sampled GRPO run to its exact fixed point and to π* of the stated β, against steps."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    recorded = [h for h in getattr(run, "history", []) if "policy" in h]
    if not recorded:
        raise ValueError("run must be a GRPOResult whose history records the policy")
    steps = [h["step"] for h in recorded]
    tv_fp = [float(np.mean(0.5 * np.abs(h["policy"] - fixed_point).sum(-1))) for h in recorded]
    tv_star = [float(np.mean(0.5 * np.abs(h["policy"] - pi_star).sum(-1))) for h in recorded]
    ax.plot(steps, tv_fp, color=style.color("GRPO"), label="TV to GRPO's exact fixed point")
    ax.plot(steps, tv_star, color=style.color("π*"), ls=":", label=r"TV to $\pi^*$ of the stated $\beta$")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("mean TV over prompts")
    style.integer_ticks(ax)
    style.legend_outside(ax)
    return ax.figure
