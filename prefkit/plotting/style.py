"""One figure style for the whole course: a named colour for each method and policy, sizes for a page or a
projector, and the small habits every figure follows (words on axes, integer ticks on discrete axes, legends off
the data, a reference line where a curve has a known target).

    from prefkit.plotting import style
    style.use("talk")                       # projector: larger fonts and lines, 150 dpi
    ax.plot(x, y, color=style.color("DPO"), label="DPO")
    style.reference_line(ax, target, "π* (exact)")
    style.legend_outside(ax)
"""

from __future__ import annotations

__all__ = ["COLORS", "CONTEXTS", "color", "use", "integer_ticks", "legend_outside", "reference_line"]

# A colour means one thing in every figure of the course (colour-blind-safe Okabe-Ito palette, plus greys).
COLORS = {
    "π_ref": "#7f7f7f",        # the reference policy: grey
    "π*": "#000000",           # the exact optimum: black
    "π*_RM": "#4d4d4d",        # the optimum of a learned reward model: dark grey
    "RLHF": "#0072B2",         # blue
    "REINFORCE": "#56B4E9",    # sky blue
    "RLOO": "#0072B2",         # blue (RLOO is our RLHF estimator of record)
    "PPO": "#009E73",          # green
    "GRPO": "#117733",         # dark green
    "exact gradient": "#332288",
    "DPO": "#D55E00",          # vermillion
    "online DPO": "#E69F00",   # orange
    "IPO": "#CC79A7",          # purple-pink
    "RPO": "#882255",
    "best-of-n": "#F0E442",    # yellow
    "reward model": "#44AA99",
    "gold": "#000000",
    "proxy": "#E69F00",
    "chosen": "#009E73",       # y_w
    "rejected": "#D55E00",     # y_l
    "neither": "#0072B2",      # mass on responses in neither role
}

CONTEXTS = {
    # figure size (inches), base font size, line width, dpi
    "paper": {"figure.figsize": (6.4, 4.0), "font.size": 10, "lines.linewidth": 1.6, "figure.dpi": 150,
              "savefig.dpi": 150},
    "talk": {"figure.figsize": (8.0, 5.0), "font.size": 14, "lines.linewidth": 2.4, "figure.dpi": 150,
             "savefig.dpi": 200},
}


def color(name: str) -> str:
    """The course's colour for a method or policy name (a key of :data:`COLORS`)."""
    try:
        return COLORS[name]
    except KeyError:
        raise ValueError(f"no colour for {name!r}; named colours: {', '.join(COLORS)}") from None


def use(context: str = "paper") -> None:
    """Set matplotlib's sizes and resolution for ``"paper"`` (a page, a notebook) or ``"talk"`` (a projector)."""
    import matplotlib as mpl

    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {tuple(CONTEXTS)}, got {context!r}")
    mpl.rcParams.update(CONTEXTS[context])
    mpl.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
                         "axes.titlesize": "medium", "axes.labelsize": "medium"})


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks only at whole numbers (responses, actions, steps are discrete)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def legend_outside(ax, **kwargs):
    """The legend to the right of the axes, off the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def reference_line(ax, value: float, label: str, *, axis: str = "y", **kwargs):
    """A dashed line at a curve's known target (an exact optimum, a bound), labelled for the legend."""
    kw = {"color": COLORS["π*"], "ls": "--", "lw": 1.0, "label": label} | kwargs
    return ax.axhline(value, **kw) if axis == "y" else ax.axvline(value, **kw)
