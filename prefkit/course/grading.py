"""``python -m prefkit grade NOTEBOOK...``: execute submitted notebooks and run each chapter's checkers on the
student's functions; ``python -m prefkit student OUT_DIR``: write the student edition of the notebooks.

Grading executes a notebook with nbclient in the fast setting (``PREFKIT_FAST=1``) with the reference solutions
hidden (``PREFKIT_SOLUTIONS=none``), lets its cells raise (``allow_errors``), then runs one extra cell that calls every
exercise checker of the notebook's chapter on the function the student defined (``my_...``). A notebook that cannot
be read, times out or kills its kernel gets an ``error`` row for each exercise; the other notebooks go on.

We chose nbclient over nbgrader or otter-grader: both need their own course layout and notebook metadata (nbgrader a
database and a release/collect cycle, otter its own assignment format), while prefkit's checkers already name the
mistake; nbclient is what nbmake runs on, so grading executes a notebook exactly as CI does.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GradeRow", "grade_notebook", "grade", "format_grades", "write_student_edition", "chapter_of"]

_MARK = "PREFKIT-GRADES:"


@dataclass
class GradeRow:
    notebook: str
    exercise: str
    status: str  # pass | fail | todo | error
    hint: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def chapter_of(nb, path: Path) -> int:
    """A notebook's chapter: its ``metadata.prefkit.chapter``, else the number its file name starts with."""
    meta = nb.get("metadata", {}).get("prefkit", {})
    if "chapter" in meta:
        return int(meta["chapter"])
    m = re.match(r"(\d+)_", path.name)
    if not m:
        raise ValueError(f"{path}: cannot tell its chapter (no metadata.prefkit.chapter, name not NN_*.ipynb)")
    return int(m.group(1))


def _grading_cell(number: int) -> str:
    return (
        "import json as _json\n"
        "from prefkit.course.exercises import exercises_of as _exs, run_checker as _run\n"
        f"_rows = [(e.id, *_run(e.id, globals().get(e.stub))) for e in _exs({number})]\n"
        f"print({_MARK!r} + _json.dumps(_rows))\n"
    )


def grade_notebook(path, *, timeout: int = 300) -> list[GradeRow]:
    """Execute one notebook and check its exercises; never raises for a broken submission."""
    import nbformat
    from nbclient import NotebookClient

    from .exercises import exercises_of

    path = Path(path)
    name = path.name
    try:
        nb = nbformat.read(path, as_version=4)
        number = chapter_of(nb, path)
        exs = exercises_of(number)
    except Exception as e:  # unreadable file, unknown chapter
        return [GradeRow(name, "-", "error", f"cannot read the notebook: {type(e).__name__}: {e}")]
    nb.cells.append(nbformat.v4.new_code_cell(_grading_cell(number)))
    env_before = {k: os.environ.get(k) for k in ("PREFKIT_FAST", "PREFKIT_SOLUTIONS", "MPLBACKEND")}
    os.environ.update(PREFKIT_FAST="1", PREFKIT_SOLUTIONS="none", MPLBACKEND="Agg")
    try:
        client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        client.execute()
    except Exception as e:  # timeout, dead kernel
        reason = f"the notebook did not finish: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return [GradeRow(name, ex.id, "error", reason) for ex in exs]
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for out in nb.cells[-1].get("outputs", []):
        text = out.get("text", "")
        if _MARK in text:
            rows = json.loads(text.split(_MARK, 1)[1])
            return [GradeRow(name, eid, status, hint) for eid, status, hint in rows]
    return [GradeRow(name, ex.id, "error", "the grading cell did not run (the kernel stopped?)") for ex in exs]


def grade(paths, *, timeout: int = 300) -> list[GradeRow]:
    """Grade several notebooks, one after the other; a crash in one does not stop the others."""
    rows = []
    for p in paths:
        rows.extend(grade_notebook(p, timeout=timeout))
    return rows


def format_grades(rows: list[GradeRow]) -> str:
    """A table notebook · exercise · result · hint."""
    head = ("notebook", "exercise", "result", "hint")
    data = [(r.notebook, r.exercise, "pass" if r.passed else r.status.upper(), "" if r.passed else r.hint)
            for r in rows]
    w = [max(len(x[i]) for x in [head, *data]) for i in range(3)]
    lines = [f"{head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  {head[3]}", "-" * (sum(w) + 12)]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in data]
    n = sum(r.passed for r in rows)
    lines.append(f"{n}/{len(rows)} exercises pass")
    return "\n".join(lines)


def write_csv(rows: list[GradeRow], path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "exercise", "status", "hint"])
        for r in rows:
            w.writerow([r.notebook, r.exercise, r.status, r.hint])


def write_student_edition(out_dir, notebooks_dir=None) -> list[Path]:
    """Write every notebook with outputs cleared into ``out_dir``; no reference solution is copied.

    Refuses to write into the notebooks folder itself, and checks that no exercise stub holds more than
    ``raise NotImplementedError`` (so no hint that gives the answer away reaches a student).
    """
    import nbformat

    from .exercises import _EXERCISES, exercises_of

    src = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    out = Path(out_dir)
    if out.resolve() == src.resolve():
        raise ValueError(f"out_dir {out} is the notebooks folder itself; choose another folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        exercises_of(chapter_of(nb, path))
        stubs = {e.stub for e in _EXERCISES.values()}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.outputs, cell.execution_count = [], None
            for stub in stubs:
                body = _stub_body(cell.source, stub)
                if body is not None and body != "raise NotImplementedError  # your code here":
                    raise ValueError(f"{path.name}: the stub {stub} holds more than a docstring and "
                                     f"`raise NotImplementedError  # your code here`: {body[:80]!r}")
        nb.metadata.pop("widgets", None)
        target = out / path.name
        nbformat.write(nb, target)
        written.append(target)
    if not written:
        raise ValueError(f"no notebooks (NN_*.ipynb) in {src}")
    return written


def _stub_body(source: str, stub: str) -> str | None:
    """The body of ``def stub(...)`` in ``source`` without its docstring, stripped; None if it is not there."""
    m = re.search(rf"^def {stub}\((?:.|\n)*?\)(?: -> .*?)?:\n((?:[ \t]+.*\n?|\n)+)", source, flags=re.M)
    if m is None:
        return None
    body = re.sub(r'^\s*(\"\"\"|\'\'\')(.|\n)*?\1', "", m.group(1), count=1)
    return "\n".join(line.strip() for line in body.splitlines() if line.strip())


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the clone prefkit is installed from, or of the working directory."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (base / "notebooks").is_dir():
            return base / "notebooks"
    raise ValueError("no notebooks/ folder found next to prefkit or in the working directory; pass --notebooks DIR")
