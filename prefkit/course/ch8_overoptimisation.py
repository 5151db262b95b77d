"""Chapter 8: Over-optimisation and best-of-n (notebook 08_overoptimisation.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(8, "Over-optimisation and best-of-n", "08_overoptimisation.ipynb")
