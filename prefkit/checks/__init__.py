"""Each chapter's tour checks. Importing this package registers them all (see prefkit.tour)."""

from . import (  # noqa: F401
    ch1_bradley_terry,
    ch2_optimal_policy,
    ch3_classical_rlhf,
    ch4_dpo,
    ch5_free_lunch,
    ch6_displacement,
    ch7_tiny_lm,
)
