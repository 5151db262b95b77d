"""One figure style for the whole course: a named colour for each method and policy, sizes for a page or a
projector, and the small habits every figure follows (words on axes, integer ticks on discrete axes, legends off
the data, a reference line where a curve has a known target).

    from prefkit.plotting import style
    style.use("talk")                       # projector: larger fonts and lines, 150 dpi on screen, 200 saved
    ax.plot(x, y, color=style.color("DPO"), label=style.label("dpo"))
    style.reference_line(ax, target, "π* (exact)")
    style.legend_outside(ax)

A colour means one thing in every figure: :data:`COLORS` maps each method, policy and role to its colour, and
:data:`ALIASES` maps the names the code uses ("rloo", "online-dpo", "pi_ref") to those keys. A sequence that is not
a method (several β, several items, several responses) is drawn in shades of one colour map (:func:`shades`).
"""

from __future__ import annotations

import contextlib

__all__ = ["COLORS", "ALIASES", "LABELS", "CONTEXTS", "color", "label", "shades", "use", "context", "figsize",
           "integer_ticks", "log_ticks", "legend_outside", "legend_below", "reference_line"]

# Colour-blind-safe Okabe-Ito palette for the main methods, Paul Tol's colours for the rest, greys for policies
# that are references rather than methods. Distinct keys have distinct colours (tests/test_plotting.py checks it).
COLORS = {
    "π_ref": "#7f7f7f",           # the reference policy (the SFT model): grey
    "π*": "#000000",              # the exact optimum π* ∝ π_ref·exp(r*/β), and every exact target: black
    "π*_RM": "#4d4d4d",           # the optimum of a learned reward model, π_ref·exp(r_φ/β)/Z: dark grey
    "exact gradient": "#332288",  # indigo
    "REINFORCE": "#56B4E9",       # sky blue
    "RLHF": "#0072B2",            # blue (RLOO is our RLHF estimator of record: the same colour, see ALIASES)
    "PPO": "#009E73",             # bluish green
    "GRPO": "#117733",            # dark green
    "DPO": "#D55E00",             # vermillion
    "online DPO": "#E69F00",      # orange
    "IPO": "#CC79A7",             # reddish purple
    "RPO": "#AA4499",             # purple
    "best-of-n": "#F0E442",       # yellow
    "reward model": "#44AA99",    # teal (also the proxy reward of over-optimisation)
    "MLE": "#CC6677",             # rose: a fitted Bradley-Terry model (chapter 1)
    "CHES filter": "#6699CC",     # DPO retrained on the pairs a CHES filter kept (chapter 6)
    "removed": "#EE3377",         # the pairs a filter removes (chapter 6): magenta
    "chosen": "#999933",          # y_w: olive
    "rejected": "#882255",        # y_l: wine
    "neither": "#661100",         # mass on the responses in neither role: brown
    "top gainer": "#DDAA33",      # the response whose probability rose most: ochre
    "loss": "#5E3C99",            # a preference loss other than DPO's or IPO's (chapter 4): violet
}

# Names the code uses for the same things (keys of histories, method arguments, older labels).
ALIASES = {
    "pi_ref": "π_ref", "ref": "π_ref", "SFT": "π_ref", "sft": "π_ref", "before": "π_ref",
    "pi*": "π*", "pi_star": "π*", "pi* (exact)": "π*", "gold": "π*", "exact target": "π*",
    "pi*_RM": "π*_RM", "pi*_RM (exact)": "π*_RM",
    "exact": "exact gradient", "reinforce": "REINFORCE", "RLOO": "RLHF", "rloo": "RLHF", "rlhf": "RLHF",
    "ppo": "PPO", "grpo": "GRPO", "dpo": "DPO", "offline DPO": "DPO", "online-dpo": "online DPO",
    "online_dpo": "online DPO", "ipo": "IPO", "rpo": "RPO", "proxy": "reward model", "rm": "reward model",
    "y_w": "chosen", "y_l": "rejected",
}

# Words for the keys the code uses, for legends.
LABELS = {
    "exact": "exact gradient", "reinforce": "REINFORCE", "rloo": "RLOO", "ppo": "PPO", "grpo": "GRPO",
    "rlhf": "RLHF", "dpo": "DPO", "online-dpo": "online DPO", "online_dpo": "online DPO", "ipo": "IPO",
    "sft": "SFT", "rm": "reward model", "pi_ref": "π_ref", "pi*": "π*",
}

CONTEXTS = {
    # figure size (inches), base font size, line width, resolution on screen and saved
    "paper": {"figure.figsize": (6.4, 4.0), "font.size": 10, "lines.linewidth": 1.6, "lines.markersize": 5,
              "figure.dpi": 150, "savefig.dpi": 150},
    "talk": {"figure.figsize": (8.0, 5.0), "font.size": 15, "lines.linewidth": 2.6, "lines.markersize": 7,
             "figure.dpi": 150, "savefig.dpi": 200},
}
_COMMON = {"axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
           "axes.titlesize": "medium", "axes.labelsize": "medium", "legend.fontsize": "small",
           "xtick.labelsize": "small", "ytick.labelsize": "small", "savefig.bbox": "tight"}


def _key(name: str) -> str:
    """A key of COLORS for ``name``: itself, its alias, or (for "RLHF (RM + RLOO)") the words before " (" ."""
    for n in (name, str(name).split(" (")[0]):
        for k in (n, ALIASES.get(n), ALIASES.get(n.lower())):
            if k in COLORS:
                return k
    return name


def color(name: str, default: str | None = None) -> str:
    """The course's colour for a method, policy or role (a key of :data:`COLORS` or :data:`ALIASES`); ``default``
    (when given) for a name the course does not know, else ValueError."""
    try:
        return COLORS[_key(name)]
    except KeyError:
        if default is not None:
            return default
        raise ValueError(f"no colour for {name!r}; named colours: {', '.join(COLORS)}") from None


def label(name: str) -> str:
    """Words for a method key the code uses ("rloo" → "RLOO", "online-dpo" → "online DPO"); other names as given."""
    return LABELS.get(name, name)


def shades(n: int, cmap: str = "viridis"):
    """``n`` colours from one colour map, for a sequence that is not a set of methods (β values, items, responses)."""
    import matplotlib as mpl
    import numpy as np

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [mpl.colormaps[cmap](v) for v in np.linspace(0.1, 0.85, n)]


def _params(context: str) -> dict:
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {tuple(CONTEXTS)}, got {context!r}")
    return CONTEXTS[context] | _COMMON


def use(context: str = "paper") -> None:
    """Set matplotlib's sizes and resolution for ``"paper"`` (a page, a notebook) or ``"talk"`` (a projector)."""
    import matplotlib as mpl

    mpl.rcParams.update(_params(context))


@contextlib.contextmanager
def context(context: str = "paper"):
    """:func:`use` for the figures made inside a ``with`` block only."""
    import matplotlib as mpl

    with mpl.rc_context(_params(context)):
        yield


def figsize(width: float, height: float) -> tuple[float, float]:
    """A figure size given for the "paper" context (6.4 inches wide by default), scaled to the current context's
    default width, so that a figure keeps its layout when fonts grow for a talk."""
    import matplotlib as mpl

    scale = mpl.rcParams["figure.figsize"][0] / 6.4
    return (width * scale, height * scale)


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks only at whole numbers (responses, actions, items are discrete)."""
    from matplotlib.ticker import MaxNLocator

    for a in ("x", "y") if axis == "both" else (axis,):
        (ax.xaxis if a == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def log_ticks(ax, values=None, axis: str = "x") -> None:
    """On a log axis, label only ``values`` (for example the sizes that were run), or the numbers 1, 2, 5 times a
    power of ten when ``values`` is None, in plain numbers; minor ticks get no labels, so no two labels overlap."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    if values is None:
        a.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    else:
        a.set_major_locator(FixedLocator(sorted(float(v) for v in values)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1000 else f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def legend_outside(ax, **kwargs):
    """The legend to the right of the axes, off the data."""
    return ax.legend(**({"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0} | kwargs))


def legend_below(ax, ncol: int = 3, **kwargs):
    """The legend under the axes (below the x label), off the data: for wide figures with many entries."""
    return ax.legend(**({"loc": "upper center", "bbox_to_anchor": (0.5, -0.22), "ncol": ncol,
                         "borderaxespad": 0.0} | kwargs))


def reference_line(ax, value: float, label: str, *, axis: str = "y", **kwargs):
    """A dashed line at a curve's known target (an exact optimum, a bound), labelled for the legend."""
    import matplotlib as mpl

    kw = {"color": COLORS["π*"], "ls": "--", "lw": 0.75 * mpl.rcParams["lines.linewidth"], "label": label} | kwargs
    return ax.axhline(value, **kw) if axis == "y" else ax.axvline(value, **kw)
