"""The tour: run every chapter's checks and print one row per claim (claim · measured · tolerance · pass).

``python -m prefkit tour`` calls :func:`run_tour` and :func:`format_table`. A check is a function ``fn(ctx)`` that a
chapter registers with ``CHAPTER.check(name)``; it measures quantities and returns the judged claims (a list of
:class:`~prefkit.course.claims.Claim`, or a dict ``{ClaimSpec: measured}``), and may save figures with
``ctx.savefig``. Every claim a chapter defines must be measured by some check: a claim the tour never measured is
reported as an error.
"""

from __future__ import annotations

import json
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from ..plotting import style
from .claims import Claim, ClaimSpec, chapters

__all__ = ["TourContext", "CheckTime", "run_tour", "format_table", "format_durations", "unmeasured", "matches"]


@dataclass
class TourContext:
    """What a check receives: whether to run fast, where to write figures (and how), and a base seed."""

    figdir: Path | None = None
    fast: bool = False
    seed: int = 0
    dpi: int = 150
    figure_format: str = "png"

    def savefig(self, fig, name: str) -> Path | None:
        """Save ``fig`` as ``figdir/name`` (the suffix follows ``figure_format``) and close it."""
        import matplotlib.pyplot as plt

        path = None
        if self.figdir is not None:
            self.figdir.mkdir(parents=True, exist_ok=True)
            path = (self.figdir / name).with_suffix("." + self.figure_format)
            fig.savefig(path, dpi=self.dpi, bbox_inches="tight")
        plt.close(fig)
        return path


@dataclass
class CheckError:
    chapter: str
    check: str
    error: str

    def __str__(self) -> str:
        return f"{self.chapter} / {self.check}: {self.error}"


def _as_claims(out) -> list[Claim]:
    if isinstance(out, dict):
        return [spec.judge(m) for spec, m in out.items()]
    out = list(out)
    for c in out:
        if not isinstance(c, Claim):
            raise TypeError(f"a check must return Claims or {{ClaimSpec: measured}}, got {type(c).__name__}")
    return out


@dataclass
class CheckTime:
    """How long one check took: wall-clock and CPU seconds (of the process that ran it)."""

    chapter: str
    check: str
    wall_s: float
    cpu_s: float


def _run_check(ctx: TourContext, fn) -> tuple[list[Claim], str | None, float, float]:
    """Run one check in the course's figure style: (claims, error text or None, wall s, CPU s)."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with style.context("paper"):  # the course's figure style (sizes, fonts) for every tour figure
            out, err = _as_claims(fn(ctx)), None
    except Exception as exc:  # a crashing check is reported, never hidden
        out, err = [], f"{type(exc).__name__}: {exc}"
    return out, err, time.perf_counter() - t0, time.process_time() - c0


def _worker_start() -> None:
    """A worker process of a parallel tour: one BLAS thread, as the tour's own process."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _worker_checks(ctx: TourContext, indices: list[tuple[int, int]]):
    """Run checks ``(i, j)`` (check ``j`` of chapter ``i``, indices into :func:`chapters`) one after another in a
    worker process; one result per check."""
    return [_run_check(ctx, chapters()[i].checks[j][1]) for i, j in indices]


def _tasks(todo) -> list[list[tuple]]:
    """The worker tasks of a parallel tour: one per check ``(i, j, chapter, name)``, except that the checks of one
    group (:meth:`Chapter.check`'s ``group``) form one task, in chapter order; slow tasks (one of whose checks is
    ``slow``) first, chapter order otherwise."""
    tasks: dict = {}
    for i, j, ch, name, *_ in todo:
        tasks.setdefault(ch.groups.get(name) or (i, j), []).append((i, j, ch, name))
    return sorted(tasks.values(), key=lambda task: not any(ch.is_slow(name) for _, _, ch, name in task))


def run_tour(ctx: TourContext, only: str | None = None, echo=print, jobs: int = 1,
             durations: list | None = None) -> tuple[list[Claim], list[CheckError]]:
    """Run every chapter's checks (or those whose chapter label or check name contains ``only``).

    Returns the claims, in chapter and check order, and the errors (a check that raised is reported, never hidden;
    its claims count as failed). ``jobs`` > 1 runs the checks in that many worker processes, the checks marked
    ``slow`` first, and the checks of one ``group`` one after another in one process; every check seeds its own
    generators from ``ctx.seed``, so the claims do not depend on ``jobs`` (only the order of the progress lines
    does). ``durations``, a list, receives one
    :class:`CheckTime` per check, in chapter order.
    """
    todo = [(i, j, ch, name, fn) for i, ch in enumerate(chapters()) for j, (name, fn) in enumerate(ch.checks)
            if not only or matches(only, ch, name)]
    results: dict[tuple[int, int], tuple] = {}

    def done(i, j, ch, name, r):
        results[i, j] = r
        echo(f"  {ch.label:<30.30} {name:<44.44} {len(r[0]):>2} claims {r[2]:5.1f}s")

    if jobs <= 1 or len(todo) <= 1:
        for i, j, ch, name, fn in todo:
            done(i, j, ch, name, _run_check(ctx, fn))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        slow_first = _tasks(todo)
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited torch/OpenMP state
        with ProcessPoolExecutor(min(jobs, len(slow_first)), mp_context=spawn, initializer=_worker_start) as pool:
            futures = {pool.submit(_worker_checks, ctx, [(i, j) for i, j, _, _ in task]): task for task in slow_first}
            for fut in as_completed(futures):
                task = futures[fut]
                try:
                    rs = fut.result()
                except Exception as exc:  # the worker process itself died
                    rs = [([], f"{type(exc).__name__}: {exc}", 0.0, 0.0)] * len(task)
                for (i, j, ch, name), r in zip(task, rs, strict=True):
                    specs = {s.id: s for s in ch.claims.values()}  # the parent's ClaimSpec objects, not copies
                    done(i, j, ch, name, ([Claim(specs.get(c.spec.id, c.spec), c.measured) for c in r[0]], *r[1:]))
    claims: list[Claim] = []
    errors: list[CheckError] = []
    for i, j, ch, name, _ in todo:
        out, err, wall, cpu = results[i, j]
        claims.extend(out)
        if err is not None:
            errors.append(CheckError(ch.label, name, err))
        if durations is not None:
            durations.append(CheckTime(ch.label, name, wall, cpu))
    return claims, errors


def format_durations(durations: list[CheckTime], n: int) -> str:
    """The ``n`` slowest checks (wall-clock), as pytest's ``--durations`` prints the slowest tests."""
    rows = sorted(durations, key=lambda d: -d.wall_s)[:n]
    lines = [f"slowest {len(rows)} checks (wall s, CPU s):"]
    lines += [f"  {d.wall_s:6.1f} {d.cpu_s:6.1f}  {d.chapter:<30.30} {d.check}" for d in rows]
    return "\n".join(lines)


def matches(only: str, ch, check_name: str) -> bool:
    """``--only``: a number selects that chapter; other text, chapters and checks whose title or name holds it."""
    if only.strip().isdigit():
        return int(only) == ch.number
    return only in ch.label or only in check_name


def unmeasured(claims: list[Claim]) -> list[ClaimSpec]:
    """The defined claims that no check measured (each is an error when the whole tour ran)."""
    seen = {c.spec.id for c in claims}
    return [s for ch in chapters() for s in ch.claims.values() if s.id not in seen]


def _groups(claims: list[Claim]):
    """Claims grouped as (heading, claims): by chapter and section; precision rows under their own heading."""
    titles = {ch.number: ch.title for ch in chapters()}
    order: dict[tuple, list[Claim]] = {}
    for c in claims:
        s = c.spec
        precision = s.kind == "precision"
        key = (s.chapter, precision, "" if precision else s.section)  # one precision heading per chapter
        order.setdefault(key, []).append(c)
    out = []
    for (number, precision, section), cs in sorted(order.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        head = f"Chapter {number}: {titles.get(number, '')}"
        head += " · numerical precision" if precision else (f" · {section}" if section else "")
        out.append((head, cs))
    return out


def format_table(claims: list[Claim], fmt: str = "text", width: int = 100) -> str:
    """The tour's table in ``fmt`` ``"text"`` (fits ``width`` columns), ``"markdown"`` or ``"json"``."""
    if fmt == "json":
        return json.dumps([c.as_dict() for c in claims], indent=1, ensure_ascii=False)
    if fmt == "markdown":
        lines = []
        for head, cs in _groups(claims):
            lines += [f"**{head}**", "", "| claim | measured | tolerance | pass |", "|---|---|---|---|"]
            for c in cs:
                text = c.text.replace("|", "\\|")
                lines.append(f"| {text} | {c.measured_str()} | {c.spec.tolerance_str()} | "
                             f"{'yes' if c.passed else '**NO**'} |")
            lines.append("")
        return "\n".join(lines)
    if fmt != "text":
        raise ValueError(f"fmt must be 'text', 'markdown' or 'json', got {fmt!r}")
    wm, wt, wp = 9, 16, 4
    wc = width - wm - wt - wp - 6
    lines = [f"{'claim':<{wc}}  {'measured':>{wm}}  {'tolerance':<{wt}}  pass", "-" * width]
    for head, cs in _groups(claims):
        lines.append(head)
        for c in cs:
            parts = textwrap.wrap(c.text, wc - 2) or [""]
            mark = "yes" if c.passed else "NO"
            lines.append(f"  {parts[0]:<{wc - 2}}  {c.measured_str():>{wm}}  {c.spec.tolerance_str():<{wt}}  {mark}")
            lines.extend("    " + p for p in parts[1:])
    return "\n".join(line.rstrip() for line in lines)
