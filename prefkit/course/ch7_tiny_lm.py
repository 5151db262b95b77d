"""Chapter 7: A tiny transformer LM (notebook 07_tiny_lm.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(7, "A tiny transformer LM", "07_tiny_lm.ipynb")
