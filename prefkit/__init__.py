"""prefkit: a numerical laboratory for preference learning.

Classical RLHF and DPO on problems small enough that every quantity has an exact answer, with the theory checked
against those answers. One module per idea; this namespace re-exports every public name (see ``__all__``).
"""

from . import (
    bradley_terry,
    displacement,
    displacement_tracking,
    dpo,
    free_lunch,
    loaders,
    losses,
    optimal_policy,
    policies,
    problems,
    reward_model,
    rl,
)
from .bradley_terry import *  # noqa: F403
from .displacement import *  # noqa: F403
from .displacement_tracking import *  # noqa: F403
from .dpo import *  # noqa: F403
from .free_lunch import *  # noqa: F403
from .loaders import *  # noqa: F403
from .losses import *  # noqa: F403
from .optimal_policy import *  # noqa: F403
from .policies import *  # noqa: F403
from .problems import *  # noqa: F403
from .reward_model import *  # noqa: F403
from .rl import *  # noqa: F403
from .tour import Claim, expect

__version__ = "0.1.0"

__all__ = ["Claim", "expect"] + [
    name
    for mod in (bradley_terry, loaders, optimal_policy, problems, policies, reward_model, rl, losses, dpo,
                free_lunch, displacement, displacement_tracking)
    for name in mod.__all__
]
