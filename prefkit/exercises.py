"""Checkers for the notebooks' exercises (chapters 2–5; chapter 1's are in prefkit.course.ch1_bradley_terry).

Each ``check_*`` takes a student's function, compares it with an exact answer computed by the chapter's own
module (a closed form, the library's implementation, torch autograd, or a brute-force fit) and raises
``AssertionError`` with a hint on the first mismatch. The reference solutions live apart, in
``solutions/chN_*.py``, so an instructor can remove them without breaking the notebooks: a notebook imports a
reference solution only when the student's stub is still unimplemented.
"""

from __future__ import annotations

__all__ = []  # every chapter's checkers moved to prefkit.course.chN_<name> (grade_*); this file can go
