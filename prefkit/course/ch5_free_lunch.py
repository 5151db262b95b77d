"""Chapter 5: Is DPO a free lunch? (notebook 05_free_lunch.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(5, "Is DPO a free lunch?", "05_free_lunch.ipynb")
