"""Chapter 6: Likelihood displacement (notebook 06_likelihood_displacement.ipynb). Placeholder: its claims and checks move here."""

from .claims import Chapter

CHAPTER = Chapter(6, "Likelihood displacement", "06_likelihood_displacement.ipynb")
