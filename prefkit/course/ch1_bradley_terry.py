"""Chapter 1: Bradley-Terry (notebook 01_bradley_terry.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(1, "Bradley-Terry", "01_bradley_terry.ipynb")
