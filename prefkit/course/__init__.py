"""The course: the chapters of prefkit, built on the library.

The library (everything in ``prefkit`` outside this package) holds reusable math and training and never imports the
course. The course is the only part that knows chapters exist:

- ``claims.py``: :class:`Chapter` and :class:`ClaimSpec`; each claim's id, text, tolerance and notebook section,
  written once; :func:`expect` judges a measurement in a notebook; :func:`slides_table` closes a chapter with
  what the slides say against what was measured.
- ``tour.py``: runs every chapter's checks (``python -m prefkit tour``).
- ``exercises.py``: exercise checkers and :func:`attempt`, which a notebook's exercise cell calls.
- ``grading.py``: ``python -m prefkit grade`` and ``python -m prefkit student``.
- ``chN_<name>.py``: chapter N's experiments, claims, tour checks and exercise checkers.
"""

from .claims import CHAPTERS, Chapter, Claim, ClaimSpec, chapter, chapters, claim_spec, expect, slides_table
from .exercises import Mistake, attempt

__all__ = ["CHAPTERS", "Chapter", "Claim", "ClaimSpec", "chapter", "chapters", "claim_spec", "expect", "slides_table",
           "Mistake", "attempt"]
