"""Chapter 3: Classical RLHF (notebook 03_classical_rlhf.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(3, "Classical RLHF", "03_classical_rlhf.ipynb")
