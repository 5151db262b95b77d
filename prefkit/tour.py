"""The tour: a registry of numerical claims, each measured against an exact answer.

Every chapter adds checks with :func:`register`. A check is a function ``fn(ctx) -> list[Claim]``; it measures a
quantity, compares it with a tolerance and may draw figures into ``ctx.figdir``. ``python -m prefkit tour`` runs them
all and prints the table claim · measured · tolerance · pass. Notebooks state the same claims with :func:`expect`,
which raises ``AssertionError`` when a claim fails.
"""

from __future__ import annotations

import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["Claim", "TourContext", "expect", "claim", "register", "registry", "run_tour", "format_table"]


@dataclass
class Claim:
    """One checked statement: ``measured`` compared with ``tolerance`` by ``op``.

    ``op`` is one of ``"<="`` (measured ≤ tolerance), ``">="`` (measured ≥ tolerance) and ``"in"`` (tolerance is a
    closed interval ``(lo, hi)``).
    """

    claim: str
    measured: float
    op: str
    tolerance: float | tuple[float, float]
    chapter: str = ""

    @property
    def passed(self) -> bool:
        m = float(self.measured)
        if math.isnan(m):
            return False
        if self.op == "<=":
            return m <= self.tolerance
        if self.op == ">=":
            return m >= self.tolerance
        if self.op == "in":
            lo, hi = self.tolerance
            return lo <= m <= hi
        raise ValueError(f"unknown op {self.op!r}")

    def tolerance_str(self) -> str:
        if self.op == "in":
            lo, hi = self.tolerance
            return f"in [{_fmt(lo)}, {_fmt(hi)}]"
        return f"{self.op} {_fmt(self.tolerance)}"

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"[{mark}] {self.claim}: measured {_fmt(self.measured)} {self.tolerance_str()}"

    def _ipython_display_(self):
        """In a notebook, :func:`expect` has already printed the claim: show nothing more."""


def _fmt(x) -> str:
    x = float(x)
    if x == 0 or (1e-3 <= abs(x) < 1e5):
        return f"{x:.4g}"
    return f"{x:.2e}"


def claim(claim: str, measured: float, *, at_most=None, at_least=None, within=None, chapter: str = "") -> Claim:
    """Build a :class:`Claim`; give exactly one of ``at_most``, ``at_least`` or ``within=(lo, hi)``."""
    given = [(k, v) for k, v in (("<=", at_most), (">=", at_least), ("in", within)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of at_most, at_least, within")
    op, tol = given[0]
    if op == "in":
        tol = (float(tol[0]), float(tol[1]))
    return Claim(claim, float(measured), op, tol, chapter)


def expect(claim_text: str, measured: float, *, at_most=None, at_least=None, within=None, quiet=False) -> Claim:
    """Check a claim now: print it and raise ``AssertionError`` if it fails. Used by notebooks."""
    c = claim(claim_text, measured, at_most=at_most, at_least=at_least, within=within)
    if not quiet:
        print(c)
    assert c.passed, str(c)
    return c


@dataclass
class TourContext:
    """What a check receives: whether to run fast, where to write figures, and a base seed."""

    figdir: Path | None = None
    fast: bool = False
    seed: int = 0

    def savefig(self, fig, name: str) -> Path | None:
        """Save ``fig`` as ``figdir/name`` (png) and close it; returns the path, or None without a figdir."""
        import matplotlib.pyplot as plt

        path = None
        if self.figdir is not None:
            self.figdir.mkdir(parents=True, exist_ok=True)
            path = self.figdir / name
            fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path


@dataclass
class _Entry:
    chapter: str
    name: str
    fn: Callable[[TourContext], list[Claim]]
    order: int = field(default=0)


_REGISTRY: list[_Entry] = []


def register(chapter: str, name: str | None = None):
    """Decorator: add ``fn(ctx) -> list[Claim]`` to the tour under ``chapter`` (e.g. ``"1 Bradley-Terry"``)."""

    def deco(fn):
        _REGISTRY.append(_Entry(chapter, name or fn.__name__, fn, len(_REGISTRY)))
        return fn

    return deco


def registry() -> list[_Entry]:
    """All registered checks, importing every chapter's check module first."""
    from . import checks  # noqa: F401  (registers on import)

    return sorted(_REGISTRY, key=lambda e: (e.chapter, e.order))


def run_tour(ctx: TourContext, only: str | None = None, echo=print) -> tuple[list[Claim], list[str]]:
    """Run every registered check (or those whose chapter or name contains ``only``).

    Returns the claims and a list of errors (a check that raised counts as a failed claim).
    """
    claims: list[Claim] = []
    errors: list[str] = []
    for entry in registry():
        if only and only not in entry.chapter and only not in entry.name:
            continue
        t0 = time.perf_counter()
        try:
            out = entry.fn(ctx)
        except Exception as exc:  # a crashing check is reported, never hidden
            errors.append(f"{entry.chapter} / {entry.name}: {type(exc).__name__}: {exc}")
            out = [Claim(f"{entry.name} ran", float("nan"), "<=", 0.0)]
        for c in out:
            c.chapter = c.chapter or entry.chapter
        claims.extend(out)
        echo(f"  {entry.chapter:<28} {entry.name:<40} {len(out):>2} claims  {time.perf_counter() - t0:5.1f}s")
    return claims, errors


def format_table(claims: list[Claim], claim_width: int = 72) -> str:
    """The tour's table: chapter · claim · measured · tolerance · pass (long claims wrap at ``claim_width``)."""
    rows = [("chapter", "claim", "measured", "tolerance", "pass")]
    for c in claims:
        rows.append((c.chapter.split()[0], c.claim, _fmt(c.measured), c.tolerance_str(), "yes" if c.passed else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    widths[1] = min(widths[1], claim_width)
    lines = []
    for i, r in enumerate(rows):
        # a long claim wraps onto continuation lines instead of being cut: its end often names the tolerance
        parts = textwrap.wrap(r[1], widths[1]) or [""]
        cells = [r[0].ljust(widths[0]), parts[0].ljust(widths[1]), r[2].rjust(widths[2]),
                 r[3].ljust(widths[3]), r[4]]
        lines.append("  ".join(cells).rstrip())
        lines.extend(" " * (widths[0] + 2) + "  " + p for p in parts[1:])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
