"""Run-time settings shared by the notebooks, the tour and the tests.

``PREFKIT_FAST=1`` in the environment selects the *fast setting*: small N and few steps, used by CI to execute
every notebook quickly. Without it, notebooks use their full sizes.
"""

import os

__all__ = ["is_fast", "size"]


def is_fast() -> bool:
    """True when ``PREFKIT_FAST`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get("PREFKIT_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def size(full, fast):
    """Pick ``fast`` in the fast setting and ``full`` otherwise: ``n = size(100_000, 2_000)``."""
    return fast if is_fast() else full
