"""Argument checks shared by the chapter-7 config dataclasses and training loops (private)."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def check_positive_ints(owner: str = "", /, **values) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not a positive integer (bools rejected).

    ``owner`` prefixes the name in the message, e.g. ``"GPTConfig."``.
    """
    for name, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v < 1:
            raise ValueError(f"{owner}{name} must be a positive integer, got {v!r}")


def fields_of(obj, names) -> dict:
    """``{name: getattr(obj, name)}`` for the given names (for :func:`check_positive_ints` on a dataclass)."""
    return {n: getattr(obj, n) for n in names}


def check_seed(seed) -> None:
    """A seed must be a non-negative integer (``np.random.default_rng`` rejects negative ones)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
