"""Checkpoints of the tiny LM: written atomically, read with ``torch.load(..., weights_only=True)``.

A checkpoint is a plain dict ``{"kind", "model_config", "task", "state_dict", "meta"}`` of tensors and
primitives, so it loads without unpickling arbitrary objects. It is written to a temporary file in the same
folder and moved into place with ``os.replace``: a crash never leaves a half-written checkpoint under the
final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .model import GPT, GPTConfig
from .task import SyntheticLanguage

__all__ = ["save_checkpoint", "load_checkpoint", "load_model"]

_KEYS = ("kind", "model_config", "task", "state_dict", "meta")


def save_checkpoint(
    path, model, task: SyntheticLanguage, kind: str = "policy", meta: dict | None = None
) -> Path:
    """Write ``model`` (a GPT, or a RewardModel with ``.trunk``) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    meta = dict(meta or {})
    if hasattr(model, "pool"):
        meta["pool"] = model.pool
    payload = {
        "kind": kind,
        "model_config": cfg.to_dict(),
        "task": task.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Read a checkpoint dict; a missing file raises ``FileNotFoundError`` and a corrupt one ``ValueError``,
    both naming the file. With ``kind``, a checkpoint of another kind is a ``ValueError`` too."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist (run the stage that writes it first)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {str(path)!r} is corrupt or not a prefkit checkpoint: {exc}") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _KEYS):
        raise ValueError(f"checkpoint {str(path)!r} is not a prefkit checkpoint (missing keys)")
    if kind is not None and payload["kind"] != kind:
        raise ValueError(f"checkpoint {str(path)!r} holds a {payload['kind']!r}, expected a {kind!r}")
    return payload


def load_model(path, device="cpu", kind: str = "policy"):
    """Rebuild the model stored at ``path``: returns (model, task, meta)."""
    payload = load_checkpoint(path, kind=kind)
    cfg = GPTConfig(**payload["model_config"])
    task = SyntheticLanguage(**payload["task"])
    if kind == "reward_model":
        from .train import RewardModel

        model = RewardModel(GPT(cfg), pool=payload["meta"].get("pool", "sum"))
    else:
        model = GPT(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {str(path)!r} does not match its model config: {exc}") from None
    return model.to(device), task, payload["meta"]
