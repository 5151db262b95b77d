"""Each chapter's tour checks. Importing this package registers them all (see prefkit.tour)."""

from . import (  # noqa: F401
    ch7_tiny_lm,
)
