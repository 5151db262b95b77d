"""prefkit: a numerical laboratory for preference learning.

Classical RLHF and DPO on problems small enough that every quantity has an exact answer, with the theory checked
against those answers. One module per idea; this namespace re-exports every public name (see ``__all__``).

Note: ``prefkit.optimal_policy`` is the *function* π* (the module of the same name is reached with
``from prefkit.optimal_policy import ...`` or ``importlib.import_module("prefkit.optimal_policy")``).
"""

import importlib as _importlib

_MODULES = (
    "bradley_terry",
    "loaders",
    "optimal_policy",
    "problems",
    "policies",
    "reward_model",
    "rl",
    "losses",
    "dpo",
    "free_lunch",
    "displacement_tracking",
    "displacement",
    "exercises",
)

__all__ = ["Claim", "expect"]
for _name in _MODULES:
    _mod = _importlib.import_module(f"{__name__}.{_name}")
    for _public in _mod.__all__:
        globals()[_public] = getattr(_mod, _public)
    __all__ += list(_mod.__all__)
del _name, _mod, _public

from .tour import Claim, expect  # noqa: E402

__version__ = "0.1.0"
