"""Exercises: a function for the student to fill in, and a checker that names the mistake when it is wrong.

Each chapter module registers its exercises with :func:`exercise`. A notebook cell holds the student's stub and calls
:func:`attempt`:

    def my_log_partition(pi_ref, reward, beta):
        raise NotImplementedError  # your code here

    attempt("ch2.log_partition", my_log_partition)

- an unfilled stub prints that it is not done, and the notebook goes on; where the instructor's reference solutions
  are present (``solutions/`` of a clone, or the folder named by ``PREFKIT_SOLUTIONS``) the cell checks the
  reference instead, so CI proves the checker and the solution agree;
- a wrong answer prints the checker's hint (a :class:`Mistake` names what is wrong), and the notebook goes on;
- a right answer prints that it passes.

``python -m prefkit grade`` runs the same checkers on a submitted notebook's functions (see
:mod:`prefkit.course.grading`). Checkers raise :class:`Mistake` with a hint that names the mistake (a missing sign,
no centring, a naive ``exp``), never a bare dump of arrays.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Mistake", "Exercise", "exercise", "exercises_of", "attempt", "run_checker", "solutions_dir"]


class Mistake(AssertionError):
    """A wrong answer; the message is the hint shown to the student (what is wrong, and where to look)."""


@dataclass(frozen=True)
class Exercise:
    """``id`` (``"ch2.log_partition"``), the notebook's stub name, the reference ``solution`` as
    ``"<file in solutions/>:<function>"``, and the ``checker`` (raises :class:`Mistake` on a wrong answer)."""

    id: str
    stub: str
    solution: str
    checker: Callable
    title: str = ""


_EXERCISES: dict[str, Exercise] = {}


def exercise(exercise_id: str, *, stub: str, solution: str, title: str = ""):
    """Decorator: register ``checker(fn)`` as the checker of exercise ``exercise_id``."""

    def deco(checker):
        _EXERCISES[exercise_id] = Exercise(exercise_id, stub, solution, checker, title)
        return checker

    return deco


def _get(exercise_id: str) -> Exercise:
    from .claims import chapter

    try:
        number = int(exercise_id.split(".")[0][2:])
    except ValueError:
        raise ValueError(f"exercise id must look like 'ch2.log_partition', got {exercise_id!r}") from None
    chapter(number)  # importing the chapter module registers its exercises
    if exercise_id not in _EXERCISES:
        raise ValueError(f"no exercise {exercise_id!r}; chapter {number} has: "
                         f"{', '.join(e.id for e in exercises_of(number))}")
    return _EXERCISES[exercise_id]


def exercises_of(number: int) -> list[Exercise]:
    """The exercises of chapter ``number``, in the order the chapter registers them."""
    from .claims import chapter

    chapter(number)
    return [e for e in _EXERCISES.values() if e.id.startswith(f"ch{number}.")]


def solutions_dir() -> Path | None:
    """Where the reference solutions are, or None when they are absent (a student edition).

    ``PREFKIT_SOLUTIONS`` names the folder (an empty value or ``none`` means absent); otherwise ``solutions/`` next to
    the ``prefkit`` package (a clone with an editable install), or in the working directory or one of its parents.
    """
    env = os.environ.get("PREFKIT_SOLUTIONS")
    if env is not None:
        p = Path(env)
        return p if env.strip().lower() not in ("", "none") and p.is_dir() else None
    here = Path(__file__).resolve().parents[2]
    for base in (here, *Path.cwd().resolve().parents, Path.cwd().resolve()):
        if (base / "solutions").is_dir() and any((base / "solutions").glob("ch*_*.py")):
            return base / "solutions"
    return None


def _reference(ex: Exercise):
    folder = solutions_dir()
    if folder is None:
        return None
    filename, func = ex.solution.split(":")
    path = folder / f"{filename}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"prefkit_solutions_{filename}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, func)


def run_checker(exercise_id: str, fn) -> tuple[str, str]:
    """Run exercise ``exercise_id``'s checker on ``fn``: ``("pass" | "todo" | "fail" | "error", message)``."""
    ex = _get(exercise_id)
    if fn is None:
        return "todo", f"{ex.stub} is not defined"
    try:
        ex.checker(fn)
    except NotImplementedError:
        return "todo", f"{ex.stub} is not done yet"
    except Mistake as e:
        return "fail", str(e)
    except Exception as e:  # the student's code raised: say where
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (line {tb[-1].lineno} of {tb[-1].name})" if tb else ""
        return "error", f"{ex.stub} raised {type(e).__name__}: {e}{where}"
    return "pass", f"{ex.stub} passes"


def attempt(exercise_id: str, fn) -> str:
    """Check the student's ``fn`` for exercise ``exercise_id`` and print the verdict; returns the status.

    Never raises for the student's answer (the notebook goes on). When the stub is not done and the reference
    solutions are present, the reference is checked instead, and a reference that fails raises ``AssertionError``.
    """
    ex = _get(exercise_id)
    status, message = run_checker(exercise_id, fn)
    marks = {"pass": "✓", "todo": "…", "fail": "✗", "error": "✗"}
    print(f"{marks[status]} {ex.id}: {message}")
    if status == "todo":
        ref = _reference(ex)
        if ref is None:
            print("  (no reference solutions here: fill in the stub and run this cell again)")
        else:
            ref_status, ref_message = run_checker(exercise_id, ref)
            assert ref_status == "pass", f"the reference solution fails {ex.id}: {ref_message}"
            print(f"  the reference solution ({ex.solution.replace(':', '.py: ')}) passes the checker")
    return status
