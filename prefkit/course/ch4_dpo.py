"""Chapter 4: DPO (notebook 04_dpo.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(4, "DPO", "04_dpo.ipynb")
