"""Claims: each numerical statement of the course, written once.

A :class:`ClaimSpec` holds a claim's id (``"ch2.gibbs"``), its text in plain words, its tolerance, and the notebook
section it belongs to. The chapter modules of :mod:`prefkit.course` define them; the tour
(``python -m prefkit tour``) and the notebooks both judge measurements against the same object:

    # in prefkit/course/ch2_optimal_policy.py
    GIBBS = CHAPTER.claim("gibbs", "the maximum of J equals β·log Z(x) (Gibbs identity): largest error",
                          at_most=1e-12, section="3. The Gibbs identity", kind="precision")

    # in notebooks/02_optimal_policy.ipynb
    expect("ch2.gibbs", max(errs))

A claim must be able to fail: its tolerance is tight enough that a plausible bug in the formula behind it would break
it. Tolerances that depend on the data (a standard error, a bound) are written as a ratio in ``measured``, so the
tolerance itself stays a fixed number.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Claim", "ClaimSpec", "Chapter", "CHAPTERS", "SlideRow", "chapter", "chapters", "claim_spec", "all_claims",
           "expect", "slides_table"]

# The chapters of the course, in reading order: module names inside prefkit.course.
CHAPTERS = (
    "ch1_bradley_terry",
    "ch2_optimal_policy",
    "ch3_classical_rlhf",
    "ch4_dpo",
    "ch5_free_lunch",
    "ch6_displacement",
    "ch7_tiny_lm",
    "ch8_overoptimisation",
    "ch9_beyond_bradley_terry",
    "ch10_grpo",
)

KINDS = ("science", "precision")


def _fmt(x) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if x == 0 or (1e-3 <= abs(x) < 1e5):
        return f"{x:.4g}"
    return f"{x:.2e}"


@dataclass(frozen=True)
class ClaimSpec:
    """A claim as written once: ``id``, ``text``, comparison ``op`` with ``tolerance``, and its notebook ``section``.

    ``op`` is ``"<="`` (measured ≤ tolerance), ``">="`` (measured ≥ tolerance) or ``"in"`` (tolerance is a closed
    interval ``(lo, hi)``). ``kind`` is ``"science"`` (what the chapter teaches) or ``"precision"`` (a numerical
    check: round-off, stability); the tour lists them under separate headings. ``flag=True`` marks a yes/no claim
    whose measured value is 1 (yes) or 0 (no).
    """

    id: str
    text: str
    op: str
    tolerance: float | tuple[float, float]
    section: str = ""
    kind: str = "science"
    flag: bool = False

    @property
    def chapter(self) -> int:
        return int(self.id.split(".")[0][2:])

    def tolerance_str(self) -> str:
        if self.flag:
            return "yes" if self.op == ">=" else "no"
        if self.op == "in":
            lo, hi = self.tolerance
            return f"in [{_fmt(lo)}, {_fmt(hi)}]"
        return f"{'≤' if self.op == '<=' else '≥'} {_fmt(self.tolerance)}"

    def passes(self, measured: float) -> bool:
        m = float(measured)
        if math.isnan(m):
            return False
        if self.op == "<=":
            return m <= self.tolerance
        if self.op == ">=":
            return m >= self.tolerance
        lo, hi = self.tolerance
        return lo <= m <= hi

    def judge(self, measured) -> "Claim":
        """The :class:`Claim` this spec makes of one measurement (a bool counts as 1/0)."""
        return Claim(self, float(measured))


@dataclass
class Claim:
    """One measurement judged against its :class:`ClaimSpec`."""

    spec: ClaimSpec
    measured: float

    @property
    def passed(self) -> bool:
        return self.spec.passes(self.measured)

    # the fields a table or a JSON record shows
    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def text(self) -> str:
        return self.spec.text

    def measured_str(self) -> str:
        if self.spec.flag:
            return "yes" if self.measured >= 0.5 else "no"
        return _fmt(self.measured)

    def as_dict(self) -> dict:
        s = self.spec
        tol = list(s.tolerance) if s.op == "in" else s.tolerance
        return {"id": s.id, "chapter": s.chapter, "section": s.section, "kind": s.kind, "claim": s.text,
                "measured": self.measured if math.isfinite(self.measured) else None, "op": s.op,
                "tolerance": tol, "passed": self.passed}

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"[{mark}] {self.spec.text}: measured {self.measured_str()}, {self.spec.tolerance_str()}"

    def _ipython_display_(self):
        """In a notebook, :func:`expect` has already printed the claim: show nothing more."""


@dataclass(frozen=True)
class SlideRow:
    """What the slides say, the claims of the chapter that test it, and prefkit's verdict in words.

    ``verdict`` is written by the chapter's author from what the claims establish: "agrees", "agrees, with a
    condition: …", or "not here: …" where the toys do not reproduce the slides' statement.
    """

    says: str
    claims: tuple[str, ...]
    verdict: str


@dataclass
class Chapter:
    """One chapter's claims, tour checks and slide rows. Each chapter module creates one, named ``CHAPTER``."""

    number: int
    title: str
    notebook: str
    claims: dict[str, ClaimSpec] = field(default_factory=dict)
    checks: list[tuple[str, Callable]] = field(default_factory=list)
    slides: list[SlideRow] = field(default_factory=list)
    slow: set[str] = field(default_factory=set)
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.number} {self.title}"

    def claim(self, key: str, text: str, *, at_most=None, at_least=None, within=None, section: str = "",
              kind: str = "science", flag: bool = False) -> ClaimSpec:
        """Define the claim ``ch<N>.<key>``; give exactly one of ``at_most``, ``at_least`` or ``within=(lo, hi)``.

        A yes/no claim is ``flag=True`` with no tolerance: it passes when the measured value is 1 (true).
        """
        if flag:
            if any(v is not None for v in (at_most, at_least, within)):
                raise ValueError("a flag claim takes no tolerance")
            at_least = 1.0
        given = [(k, v) for k, v in (("<=", at_most), (">=", at_least), ("in", within)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of at_most, at_least, within")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        op, tol = given[0]
        tol = (float(tol[0]), float(tol[1])) if op == "in" else float(tol)
        cid = f"ch{self.number}.{key}"
        if key in self.claims:
            raise ValueError(f"claim {cid} is defined twice")
        spec = ClaimSpec(cid, text, op, tol, section, kind, flag)
        self.claims[key] = spec
        return spec

    def slide(self, says: str, claims, verdict: str) -> SlideRow:
        """Add a row to the chapter's closing table (:func:`slides_table`): what the slides say (``says``), the keys
        of this chapter's claims that test it, and the verdict those claims support."""
        keys = (claims,) if isinstance(claims, str) else tuple(claims)
        unknown = [k for k in keys if k not in self.claims]
        if not keys or unknown:
            raise ValueError(f"a slide row needs claims of chapter {self.number}; unknown: {unknown or 'none given'}")
        row = SlideRow(says, tuple(f"ch{self.number}.{k}" for k in keys), verdict)
        self.slides.append(row)
        return row

    def check(self, name: str, slow: bool = False, group: str | None = None):
        """Decorator: add ``fn(ctx) -> list[Claim]`` (or a dict {ClaimSpec: measured}) to the tour. ``slow=True``
        (a check of many seconds) starts it first when the tour runs its checks in parallel (``--jobs``). Checks
        of any chapter that name the same ``group`` run one after another in the same process, in chapter order,
        so a result they share (chapter 7's trained pipeline) can be computed once there."""

        def deco(fn):
            self.checks.append((name, fn))
            if slow:
                self.slow.add(name)
            if group is not None:
                self.groups[name] = group
            return fn

        return deco

    def is_slow(self, name: str) -> bool:
        """Whether the check ``name`` was registered with ``slow=True``."""
        return name in self.slow


def _module(name: str):
    return importlib.import_module(f"{__package__}.{name}")


def chapter(number: int) -> Chapter:
    """The :class:`Chapter` object of chapter ``number`` (imports only that chapter's module)."""
    for name in CHAPTERS:
        if name.startswith(f"ch{number}_"):
            return _module(name).CHAPTER
    raise ValueError(f"there is no chapter {number}; chapters are 1..{len(CHAPTERS)}")


def chapters() -> list[Chapter]:
    """Every chapter, in reading order (imports every chapter module)."""
    return [_module(name).CHAPTER for name in CHAPTERS]


def claim_spec(claim_id: str) -> ClaimSpec:
    """The :class:`ClaimSpec` with id ``"ch<N>.<key>"``."""
    try:
        prefix, key = claim_id.split(".", 1)
        number = int(prefix[2:]) if prefix.startswith("ch") else None
    except ValueError:
        number = None
    if number is None:
        raise ValueError(f"claim id must look like 'ch2.gibbs', got {claim_id!r}")
    ch = chapter(number)
    if key not in ch.claims:
        raise ValueError(f"no claim {claim_id!r}; chapter {number} defines: {', '.join(sorted(ch.claims))}")
    return ch.claims[key]


def all_claims() -> list[ClaimSpec]:
    """Every defined claim of every chapter."""
    return [spec for ch in chapters() for spec in ch.claims.values()]


def expect(claim_id: str, measured, *, quiet: bool = False) -> Claim:
    """Judge ``measured`` against the registered claim ``claim_id`` now: print it, and raise ``AssertionError`` if
    it fails. This is how a notebook states a claim; its text and tolerance come from the chapter module."""
    c = claim_spec(claim_id).judge(measured)
    _MEASURED[claim_id] = c
    if not quiet:
        print(c)
    assert c.passed, str(c)
    return c


# What expect() judged in this process (a notebook's kernel): slides_table shows these measurements.
_MEASURED: dict[str, Claim] = {}


class SlidesTable:
    """A chapter's closing table: the slides' statements, what was measured here, and whether they agree.

    Shown as markdown in a notebook and as text by ``print``. Each measurement is the one :func:`expect` judged in
    this process; a claim not yet measured here says so, and a failed claim overrides the written verdict."""

    def __init__(self, ch: Chapter):
        self.chapter = ch

    def rows(self) -> list[tuple[str, list[str], str]]:
        out = []
        for row in self.chapter.slides:
            measured, verdict = [], row.verdict
            for cid in row.claims:
                c = _MEASURED.get(cid)
                spec = claim_spec(cid)
                if c is None:
                    measured.append(f"{spec.text}: not measured in this run")
                    continue
                measured.append(f"{spec.text}: {c.measured_str()} ({spec.tolerance_str()})")
                if not c.passed:
                    verdict = f"NO: claim {cid} failed"
            out.append((row.says, measured, verdict))
        return out

    def _repr_markdown_(self) -> str:
        lines = [f"**Chapter {self.chapter.number}: the slides against what prefkit measured**", "",
                 "| the slides say | prefkit measured | agrees? |", "|---|---|---|"]
        for says, measured, verdict in self.rows():
            cell = "<br>".join(m.replace("|", "\\|") for m in measured)
            lines.append(f"| {says} | {cell} | {verdict} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        out = [f"Chapter {self.chapter.number}: the slides against what prefkit measured"]
        for says, measured, verdict in self.rows():
            out += [f"- the slides say: {says}", *(f"    measured: {m}" for m in measured), f"    agrees? {verdict}"]
        return "\n".join(out)


def slides_table(number: int) -> SlidesTable:
    """Chapter ``number``'s closing table (its :meth:`Chapter.slide` rows with this run's measurements)."""
    ch = chapter(number)
    if not ch.slides:
        raise ValueError(f"chapter {number} has no slide rows")
    return SlidesTable(ch)
