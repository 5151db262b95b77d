"""A tiny decoder-only transformer that carries the toy experiments to sequences (chapter 7).

Module map: ``model`` (GPTConfig, GPT, presets) · ``task`` (the seeded synthetic language, r*, sampling,
log-probs) · ``exact`` (enumeration of all V^L responses: π_θ, π_ref, π*, exact KLs; Monte-Carlo fallback) ·
``train`` (SFT, reward model, RLHF, DPO, online DPO loops) · ``checkpoint`` (atomic save, weights-only load) ·
``pipeline`` (LMConfig, run_pipeline, the summary table) · ``cli`` (``python -m prefkit lm ...``).
"""

from . import checkpoint, exact, model, pipeline, plotting, task, train  # noqa: E402, I001
from .checkpoint import *  # noqa: F403
from .exact import *  # noqa: F403
from .model import *  # noqa: F403
from .pipeline import *  # noqa: F403
from .plotting import *  # noqa: F403
from .task import *  # noqa: F403
from .train import *  # noqa: F403

__all__ = [name for mod in (model, task, exact, train, checkpoint, pipeline, plotting) for name in mod.__all__]
