"""Tour checks (being written)."""

from ..tour import claim, register  # noqa: F401
