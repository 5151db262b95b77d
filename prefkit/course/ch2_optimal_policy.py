"""Chapter 2: The KL-optimal policy (notebook 02_optimal_policy.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(2, "The KL-optimal policy", "02_optimal_policy.ipynb")
