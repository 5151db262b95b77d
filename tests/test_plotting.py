"""The course's figure style (prefkit.plotting.style) applied to every plot function of chapters 1–7.

Each plot function is drawn on small synthetic data, and the figures are checked for what a room needs: the same
colour for the same method in every figure and panel, integer ticks on discrete axes, tick labels that do not
overlap (log axes included), legends that cover no data, and tour figures in the requested format. Plausible
regressions each test catches are named in its docstring.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from prefkit.plotting import style  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---- synthetic data for every figure -------------------------------------------------------------------------------
class _FakeRL:
    """What the chapter-3 plots read from a :class:`prefkit.RLResult`: ``history`` and ``curve``."""

    def __init__(self, kl, samples_per_step):
        self.history = [{"step": t, "kl/to_optimal": v, "cost/samples": samples_per_step * t} for t, v in
                        enumerate(kl)]

    def curve(self, key):
        return np.array([h[key] for h in self.history], dtype=np.float64)


def _rl_runs():
    t = np.arange(60)
    return {"exact": _FakeRL(np.exp(-0.2 * t), 0), "reinforce": _FakeRL(np.exp(-0.1 * t) + 1e-3, 24),
            "rloo": _FakeRL(np.exp(-0.12 * t) + 1e-3, 24), "ppo": _FakeRL(np.exp(-0.15 * t) + 2e-3, 24)}


def _lm_histories():
    steps = [0, 50, 100, 150, 200]
    dpo = [{"step": s, "exact/kl_star": 1.0 / (1 + s / 40), "logps/chosen": -3.5 - s / 400,
            "logps/rejected": -3.1 - s / 100} for s in steps]
    rlhf = [{"step": s, "exact/kl_star": 0.6 + 0.45 * np.exp(-s / 30)} for s in steps[:3]]
    online = [{"step": s, "exact/kl_star": 0.9 / (1 + s / 30)} for s in steps]
    rows = [{"policy": "pi* (exact)", "d_logp_chosen": -0.4, "d_logp_rejected": -1.5, "kl_star": 0.0},
            {"policy": "pi*_RM (exact)", "kl_star": 0.59}]
    return {"rlhf": rlhf, "dpo": dpo, "online-dpo": online}, rows


def _figures():
    """(name, figure) for every plot function of chapters 1–7, on synthetic data."""
    from prefkit import random_problem, reward_kl_frontier
    from prefkit.lm.plotting import plot_lm_training
    from prefkit.plotting import bradley_terry as bt
    from prefkit.plotting import closed_form as cf
    from prefkit.plotting import displacement as disp
    from prefkit.plotting import dpo, rlhf

    rng = np.random.default_rng(0)
    sizes = np.array([250, 500, 1000, 2000, 4000, 8000])
    P = random_problem(2, 6, seed=0)
    runs = _rl_runs()
    betas = (0.2, 1.0, 5.0)
    front = reward_kl_frontier(P.pi_ref, P.reward, np.union1d(np.geomspace(0.05, 20, 20), betas))
    points = {m: (front["kl"][::4] * 0.9, front["reward"][::4] * 0.9) for m in ("exact", "reinforce", "rloo", "ppo")}
    steps = 40
    logp = np.log(np.stack([np.tile(np.r_[0.3 + 0.01 * t, 0.3, 0.4 - 0.01 * t, 0.0][None] + 1e-3, (1, 1))
                            for t in range(steps)]))
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    members = [rng.dirichlet(np.ones(5))[None] for _ in range(3)]
    history = [{"step": t, "rewards/margins": 1 - np.exp(-t / 10), "rewards/accuracies": min(1.0, t / 5),
                "loss": np.log(2) * np.exp(-t / 10)} for t in range(40)]
    table = [{"method": "offline DPO", "reward": 0.79, "reward_sd": 0.02, "kl_to_ref": 4.0},
             {"method": "online DPO", "reward": 0.95, "reward_sd": 0.01, "kl_to_ref": 5.2},
             {"method": "RLHF (RM + RLOO)", "reward": 0.84, "reward_sd": 0.02, "kl_to_ref": 4.2},
             {"method": "pi* (exact, r* known)", "reward": 0.97, "kl_to_ref": 5.5}]
    curve = lambda lim: np.c_[np.linspace(1 / 3, lim, 300), np.zeros((300, 2))]  # noqa: E731
    az = {"betas": [0.1, 1.0, 10.0], "dpo_curves": [curve(0.999), curve(0.99), curve(0.66)], "taus": [0.1, 0.5, 2.0],
          "ipo_closed": [[0.95, 0.04, 0.01], [0.54, 0.37, 0.09], [0.38, 0.44, 0.18]]}
    sets = {"rlhf_pi": [0.75, 0.25, 0.0], "land_ref": [0.75, 0.25, 0.0], "land_init": [0.7, 0.22, 0.08],
            "member_masses": [0.5, 0.9], "members": [[0.38, 0.12, 0.5], [0.07, 0.03, 0.9]]}
    ches = rng.normal(size=30)
    drops = ches + 0.3 * rng.normal(size=30)
    removed = ches >= np.quantile(ches, 0.75)
    hist, rows = _lm_histories()
    yield "ch1 recovery", bt.plot_recovery(sizes, 0.25 * np.sqrt(250 / sizes), -0.5)
    yield "ch1 coverage", bt.plot_coverage(rng.normal(size=500))
    yield "ch1 map path", bt.plot_map_path(np.logspace(-4, 1, 8), rng.normal(size=(8, 5)), labels=list("abcde"))
    yield "ch1 ranking", bt.plot_ranking([f"model {k}" for k in range(12)], rng.normal(size=12), np.full(12, .1))
    yield "ch2 optimal policy", cf.plot_optimal_policy(P.pi_ref, P.reward, (0.1, 0.5, 2.0))
    yield "ch2 shift", cf.plot_shift_invariance(P.pi_ref, P.reward, [2.0, 0.0], 0.5)
    yield "ch3 kl curves", rlhf.plot_kl_curves(runs)
    yield "ch3 kl panels", rlhf.plot_kl_panels(runs)
    yield "ch3 frontier", rlhf.plot_frontier(front, points, mark_betas=betas)
    yield "ch3 reward recovery", rlhf.plot_reward_recovery_pair(P.reward + 0.01, P.reward + 0.2 * rng.normal(
        size=P.reward.shape), P.reward, n_sampled=2000)
    yield "ch3 gap", rlhf.plot_gap_decomposition([200, 2000, 20000], [
        {"regret/total": 0.3 / k, "regret/reward_model": 0.29 / k, "shortfall/rl": 1e-3 / k} for k in (1, 10, 100)])
    yield "ch4 losses", dpo.plot_loss_family()
    yield "ch4 training", dpo.plot_training(history)
    yield "ch4 finite sample", dpo.plot_finite_sample(sizes, 0.07 * np.sqrt(250 / sizes), -0.5)
    yield "ch4 beta sweep", dpo.plot_beta_sweep({"betas": np.array([0.1, 0.3, 1, 3]),
                                                  "reward": np.array([1.8, 1.7, 0.8, 0.3]),
                                                  "kl_to_ref": np.array([2.4, 1.9, 0.4, 0.05])})
    yield "ch4 partial coverage", dpo.plot_partial_coverage({"landing": members[0], "members": members,
                                                              "pi_adam": members[1], "pi_star": members[2]})
    yield "ch5 azar", dpo.plot_azar(az)
    yield "ch5 xu", dpo.plot_xu(sets)
    yield "ch5 tajwar", dpo.plot_tajwar(table)
    yield "ch6 trajectory", disp.plot_displacement_trajectory(logp, [[0, 1, 2]], names=["a", "b", "c", "d"])
    yield "ch6 squeeze", disp.plot_squeeze_pair({"peaky": np.array([[.8, .1, .05, .05], [.9, .05, .04, .01]]),
                                                  "flat": np.array([[.25] * 4, [.3, .3, .3, .1]])})
    yield "ch6 ches", disp.plot_ches_scatter(ches, drops, removed=removed)
    yield "ch6 filter", disp.plot_filter_effect(ches, drops, 0.5 * drops, ~removed)
    yield "ch7 lm", plot_lm_training(hist, rows)


@pytest.fixture(scope="module")
def figures():
    style.use("paper")
    matplotlib.rcParams["figure.max_open_warning"] = 0
    figs = list(_figures())
    for _, fig in figs:
        fig.canvas.draw()
    yield figs
    for _, fig in figs:
        plt.close(fig)
    matplotlib.rcdefaults()


# ---- the palette ---------------------------------------------------------------------------------------------------
def test_palette_one_colour_one_meaning():
    """Distinct names have distinct colours, every alias points at a named colour, and a code key ("rloo",
    "online-dpo", "RLHF (RM + RLOO)") gets its method's colour (catches a copy-pasted hex, a dangling alias)."""
    hexes = [to_hex(c) for c in style.COLORS.values()]
    assert len(set(hexes)) == len(hexes), "two names share a colour"
    assert set(style.ALIASES.values()) <= set(style.COLORS)
    assert style.color("rloo") == style.color("RLHF") == style.color("RLHF (RM + RLOO)")
    assert style.color("online-dpo") == style.color("online DPO") != style.color("dpo")
    assert style.color("pi* (exact, r* known)") == style.color("π*")
    with pytest.raises(ValueError, match="no colour"):
        style.color("no such method")
    assert style.color("no such method", "0.5") == "0.5"


def test_use_sets_contexts():
    """"talk" has larger fonts and lines than "paper"; both render at ≥150 dpi; a typo is a ValueError."""
    with style.context("paper"):
        paper = dict(matplotlib.rcParams)
    with style.context("talk"):
        talk = dict(matplotlib.rcParams)
    assert talk["font.size"] > paper["font.size"] and talk["lines.linewidth"] > paper["lines.linewidth"]
    assert min(paper["figure.dpi"], talk["figure.dpi"], paper["savefig.dpi"]) >= 150
    with pytest.raises(ValueError, match="context"):
        style.use("poster")


# ---- every figure --------------------------------------------------------------------------------------------------
def _method_of(label: str):
    """The course name a legend label stands for, if it is exactly a method or policy name."""
    label = label.strip()
    if not label or label.startswith("_"):
        return None
    try:
        style.color(label)
    except ValueError:
        return None
    return label


def _labelled_colours(fig):
    out = []
    for ax in fig.axes:
        for art in list(ax.lines) + list(ax.collections) + list(ax.patches):
            lab = art.get_label()
            if not lab or lab.startswith("_"):
                continue
            if isinstance(art, Line2D):
                c = art.get_color()
            elif isinstance(art, Rectangle):
                c = art.get_facecolor()
            else:
                c = art.get_facecolor()[0] if len(art.get_facecolor()) else art.get_edgecolor()[0]
            out.append((lab, to_hex(c)))
    return out


def test_same_method_same_colour_everywhere(figures):
    """A label drawn in several figures or panels has one colour, and a method's label has the course colour
    (catches chapter 3's REINFORCE turning from one colour to another between panels, and a plot falling back to
    matplotlib's colour cycle)."""
    seen: dict[str, set] = {}
    for name, fig in figures:
        for lab, c in _labelled_colours(fig):
            seen.setdefault(lab, set()).add(c)
            method = _method_of(lab)
            if method is not None:
                assert c == to_hex(style.color(method)), f"{name}: {lab!r} drawn in {c}"
    multi = {lab: cs for lab, cs in seen.items() if len(cs) > 1}
    assert not multi, f"labels drawn in more than one colour: {multi}"
    # the methods of chapter 3 and 7 are all there, by name
    for m in ("REINFORCE", "RLOO", "PPO", "exact gradient", "RLHF", "DPO", "online DPO"):
        assert m in seen, m


def test_no_default_colour_cycle(figures):
    """No labelled line uses matplotlib's default colour cycle (C0, C1, ...), which means "no course colour"."""
    cycle = {to_hex(f"C{k}") for k in range(10) if k != 7}  # C7 is the grey of π_ref
    for name, fig in figures:
        for lab, c in _labelled_colours(fig):
            assert c not in cycle, f"{name}: {lab!r} in a default cycle colour"


DISCRETE_X = {"ch2 optimal policy", "ch2 shift", "ch4 partial coverage", "ch6 squeeze"}


def test_discrete_axes_have_integer_ticks(figures):
    """Responses are whole numbers: no 0.5 ticks on their axes (catches a lost MaxNLocator(integer=True))."""
    for name, fig in figures:
        if name not in DISCRETE_X:
            continue
        for ax in fig.axes:
            if "response" not in ax.get_xlabel() and not ax.get_shared_x_axes().get_siblings(ax)[1:]:
                continue
            lo, hi = sorted(ax.get_xlim())
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and np.allclose(ticks, np.round(ticks)), f"{name}: x ticks {ticks}"


def _boxes_overlap(a, b, pad=0.5):
    return a.x0 < b.x1 - pad and b.x0 < a.x1 - pad and a.y0 < b.y1 - pad and b.y0 < a.y1 - pad


def test_tick_labels_do_not_overlap(figures):
    """On every axis, no two visible tick labels overlap (catches chapter 1's crowded log-axis minor labels)."""
    r = None
    for name, fig in figures:
        r = fig.canvas.get_renderer()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t for t in axis.get_ticklabels(minor=False) + axis.get_ticklabels(minor=True)
                          if t.get_visible() and t.get_text()]
                boxes = [t.get_window_extent(r) for t in labels]
                for i in range(len(boxes)):
                    for j in range(i + 1, len(boxes)):
                        assert not _boxes_overlap(boxes[i], boxes[j]), \
                            f"{name}: tick labels {labels[i].get_text()!r} and {labels[j].get_text()!r} overlap"
    assert r is not None


def _data_points(ax):
    """Display coordinates of the data an axes draws: lines (densely along each segment), scatter points, bars."""
    pts = []
    for line in ax.lines:
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=np.float64))
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy) > 1:
            s = np.linspace(0, 1, 25)[:, None, None]
            xy = (xy[:-1][None] * (1 - s) + xy[1:][None] * s).reshape(-1, 2)
        pts.append(xy)
    for coll in ax.collections:
        offs = coll.get_offsets()
        if len(offs):
            pts.append(coll.get_offset_transform().transform(offs))
    for patch in ax.patches:
        e = patch.get_window_extent()
        if e.width > 0 and e.height > 0:
            pts.append(np.array([[e.x0, e.y0], [e.x1, e.y1], [(e.x0 + e.x1) / 2, (e.y0 + e.y1) / 2]]))
    pts = np.concatenate(pts) if pts else np.zeros((0, 2))
    box = ax.get_window_extent()  # only what is drawn: data outside the axes is clipped
    return pts[(pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)]


def test_legends_cover_no_data(figures):
    """No legend box contains a data point or a piece of a curve of any axes of its figure (catches chapter 4's
    legend over the losses, a legend moved back inside the axes with loc="best" on crowded data)."""
    for name, fig in figures:
        r = fig.canvas.get_renderer()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        for leg in legends:
            box = leg.get_window_extent(r)
            for ax in fig.axes:
                pts = _data_points(ax)
                inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1))
                assert not inside.any(), f"{name}: the legend covers {inside.sum()} data points"


def test_axis_labels_are_words(figures):
    """Every axis with data has a y label (or a title naming its quantity), and no label is a raw history key like
    "cost/samples" (catches a plot that writes ``ax.set_xlabel(x)`` with the key it was given)."""
    raw = re.compile(r"^[a-z_]+/[a-z_]+$")
    for name, fig in figures:
        for ax in fig.axes:
            if not ax.has_data() or not ax.get_visible() or not ax.axison:
                continue
            for lab in (ax.get_xlabel(), ax.get_ylabel()):
                assert not raw.match(lab), f"{name}: raw key {lab!r} on an axis"
            shared = len(ax.get_shared_y_axes().get_siblings(ax)) > 1
            named = ax.get_ylabel() or ax.get_title() or shared or fig.get_supylabel()
            assert named, f"{name}: an axis without a y label"


def test_frontier_marks_beta_and_its_ends(figures):
    """Chapter 3's frontier names both ends with their β and the β the methods ran at (catches the unlabelled
    curve of before); a β that is not on the traced frontier is a ValueError, not a silently missing mark."""
    fig = dict(figures)["ch3 frontier"]
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for b in ("0.05", "20", "0.2", "1", "5"):
        assert f"= {b}" in texts, b
    assert "end" in texts
    from prefkit import random_problem, reward_kl_frontier
    from prefkit.plotting.rlhf import plot_frontier

    P = random_problem(1, 4, seed=0)
    with pytest.raises(ValueError, match="mark_betas"):
        plot_frontier(reward_kl_frontier(P.pi_ref, P.reward, [0.1, 1.0]), mark_betas=[0.5])
    plt.close("all")


def test_chapter7_reference_line_at_rlhf_target(figures):
    """Chapter 7's left panel has a horizontal line at KL(π*_RM‖π*), where RLHF should end, and one at 0 (π*)."""
    ax = dict(figures)["ch7 lm"].axes[0]
    levels = {round(float(line.get_ydata()[0]), 6) for line in ax.lines if len(set(line.get_ydata())) == 1}
    assert {0.0, 0.59} <= levels


def test_ches_scatter_says_removed_or_kept(figures):
    """Chapter 6's highest-CHES pairs are labelled as removed by the filter, and as trained in that run."""
    labels = [t.get_text() for t in dict(figures)["ch6 ches"].axes[0].get_legend().get_texts()]
    assert any("removes" in t and "trained" in t for t in labels), labels


def test_talk_context_scales_the_figure():
    """In the "talk" context a figure is wider and its fonts larger than in "paper" (style.figsize follows it)."""
    from prefkit.plotting.dpo import plot_finite_sample

    sizes = np.array([100, 1000])
    with style.context("paper"):
        f1 = plot_finite_sample(sizes, [0.1, 0.03])
    with style.context("talk"):
        f2 = plot_finite_sample(sizes, [0.1, 0.03])
    assert f2.get_figwidth() > f1.get_figwidth()
    assert f2.axes[0].xaxis.label.get_fontsize() > f1.axes[0].xaxis.label.get_fontsize()
    plt.close("all")


# ---- the tour writes figures as asked --------------------------------------------------------------------------------
def test_chapters_save_figures_only_through_the_tour_context():
    """Every chapter 1–7 module writes figures with ``ctx.savefig`` (which honours --dpi and --figure-format), never
    with a bare ``fig.savefig``/``plt.savefig`` (catches a check that hard-codes PNG)."""
    for path in sorted((ROOT / "prefkit" / "course").glob("ch[1-7]_*.py")):
        text = path.read_text()
        bare = [m.group(0) for m in re.finditer(r"[\w\)\]]+\.savefig\(", text) if not m.group(0).startswith("ctx.")]
        assert not bare, f"{path.name}: {bare}"


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_tour_writes_the_requested_format(tmp_path, fmt):
    """The tour's figure of chapter 2 comes out in the format asked for, and nothing in PNG."""
    from prefkit.course.tour import TourContext, run_tour

    ctx = TourContext(figdir=tmp_path, fast=True, figure_format=fmt, dpi=150)
    claims, errors = run_tour(ctx, only="implied reward", echo=lambda *a: None)
    assert not errors
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written and all(n.endswith("." + fmt) for n in written), written
    head = (tmp_path / written[0]).read_bytes()[:200]
    assert (b"<svg" in head or b"<?xml" in head) if fmt == "svg" else head.startswith(b"%PDF")
