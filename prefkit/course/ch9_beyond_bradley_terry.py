"""Chapter 9: Beyond Bradley-Terry (notebook 09_beyond_bradley_terry.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(9, "Beyond Bradley-Terry", "09_beyond_bradley_terry.ipynb")
