"""Each chapter's tour checks. Importing this package registers them all (see prefkit.tour)."""

from . import (  # noqa: F401
    ch2_optimal_policy,
    ch3_classical_rlhf,
    ch7_tiny_lm,
)
