"""Checkpoints of the tiny LM: written atomically, read with ``torch.load(..., weights_only=True)``.

A checkpoint is a plain dict ``{"kind", "model_config", "task", "state_dict", "meta"}`` of tensors and
primitives, so it loads without unpickling arbitrary objects. It is written to a temporary file in the same
folder and moved into place with ``os.replace``: a crash never leaves a half-written checkpoint under the
final name. The temporary file's name carries the writer's process id (``sft.pt.<pid>.<random>.tmp``), so
:func:`clean_stale_tmp` can remove those left by a process that was killed.

Every checkpoint stores its model's shape (``model_config``), its task (vocabulary, lengths, seed) and, in
``meta``, the preset and dtype it was trained with, so a later stage can refuse an incompatible one.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import torch

from .model import GPT, GPTConfig
from .task import SyntheticLanguage

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "save_preferences",
    "load_preferences",
    "atomic_write",
    "clean_stale_tmp",
]

_KEYS = ("kind", "model_config", "task", "state_dict", "meta")


def atomic_write(path, write) -> Path:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, then ``os.replace`` it onto ``path``.

    A crash or an exception never leaves a half-written file under the final name (the temporary file is
    removed). Creates the folder if needed; returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_TMP = re.compile(r"^(?P<name>[^/]+\.(?:pt|json))\.(?:(?P<pid>\d+)\.)?[^.]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell): keep its file
    return True


def clean_stale_tmp(folder, min_age_s: float = 600.0) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` leaves when its process is killed (SIGKILL,
    power loss); returns the removed paths.

    A file ``<name>.pt.<pid>.<random>.tmp`` (or ``.json``) is stale when process ``pid`` no longer runs; one
    without a process id (written by an older prefkit) when it is older than ``min_age_s`` seconds. Other
    files are never touched.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for f in folder.glob("*.tmp"):
        m = _TMP.match(f.name)
        if m is None or not f.is_file():
            continue
        pid = m.group("pid")
        try:
            stale = (not _pid_alive(int(pid))) if pid else now - f.stat().st_mtime > min_age_s
            if stale:
                f.unlink()
                removed.append(f)
        except FileNotFoundError:  # removed meanwhile (by its writer's os.replace)
            continue
    return removed


def _torch_load(path: Path, what: str):
    """``torch.load(path, weights_only=True)``; a missing file is a FileNotFoundError and an unreadable one a
    ValueError, both naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist (run the stage that writes it first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = lines[-1] if lines else type(exc).__name__
        raise ValueError(
            f"{what} {str(path)!r} is corrupt or not a prefkit file (torch.load(weights_only=True): {why})"
        ) from None


def save_checkpoint(path, model, task: SyntheticLanguage, kind: str = "policy", meta: dict | None = None) -> Path:
    """Write ``model`` (a GPT, or a RewardModel with ``.trunk``) to ``path`` atomically; returns the path."""
    cfg = model.config
    meta = dict(meta or {})
    if hasattr(model, "pool"):
        meta["pool"] = model.pool
    meta.setdefault("dtype", str(next(model.parameters()).dtype).removeprefix("torch."))
    payload = {
        "kind": kind,
        "model_config": cfg.to_dict(),
        "task": task.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Read a checkpoint dict; a missing file raises ``FileNotFoundError`` and a corrupt one ``ValueError``,
    both naming the file. With ``kind``, a checkpoint of another kind is a ``ValueError`` too."""
    path = Path(path)
    payload = _torch_load(path, "checkpoint")
    if not isinstance(payload, dict) or any(k not in payload for k in _KEYS):
        raise ValueError(f"checkpoint {str(path)!r} is not a prefkit checkpoint (missing keys)")
    if kind is not None and payload["kind"] != kind:
        raise ValueError(f"checkpoint {str(path)!r} holds a {payload['kind']!r}, expected a {kind!r}")
    return payload


def load_model(path, device="cpu", kind: str = "policy"):
    """Rebuild the model stored at ``path``: returns (model, task, meta)."""
    payload = load_checkpoint(path, kind=kind)
    try:
        cfg = GPTConfig(**payload["model_config"])
        task = SyntheticLanguage(**payload["task"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} holds an invalid config: {exc}") from None
    if cfg.vocab_size != task.vocab_size or cfg.block_size < task.seq_len:
        raise ValueError(
            f"checkpoint {str(path)!r}: its model (vocab_size={cfg.vocab_size}, block_size={cfg.block_size}) does "
            f"not fit its task (vocabulary of {task.vocab_size} ids, sequences of {task.seq_len})"
        )
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(payload["meta"].get("dtype"), torch.float32)
    if kind == "reward_model":
        from .train import RewardModel

        model = RewardModel(GPT(cfg), pool=payload["meta"].get("pool", "sum"))
    else:
        model = GPT(cfg)
    model = model.to(dtype)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {str(path)!r} does not match its model config: {exc}") from None
    return model.to(device), task, payload["meta"]


def save_preferences(path, prefs, task: SyntheticLanguage) -> Path:
    """Write preference pairs (a :class:`prefkit.lm.Preferences`) and the task they were sampled for,
    atomically."""
    payload = {"kind": "preferences", "task": task.to_dict(), **prefs.to_dict()}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_preferences(path, task: SyntheticLanguage, source: str = "sft.pt"):
    """Read pairs written by :func:`save_preferences`; ``ValueError`` naming the file when it is corrupt or
    was sampled for another task than ``task`` (read from ``source``; e.g. a workdir reused with another
    ``--preset`` or ``--seed``)."""
    from .train import Preferences

    path = Path(path)
    payload = _torch_load(path, "preference file")
    keys = ("kind", "task", "prompt", "chosen", "rejected")
    if not isinstance(payload, dict) or any(k not in payload for k in keys) or payload["kind"] != "preferences":
        raise ValueError(f"preference file {str(path)!r} is not a prefkit preference file")
    if payload["task"] != task.to_dict():
        raise ValueError(
            f"preference file {str(path)!r} was sampled for another task than {source}'s "
            f"({_task_words(payload['task'])} vs {_task_words(task.to_dict())}); delete it (it is resampled from "
            "pi_ref) or use another --workdir"
        )
    prefs = Preferences.from_dict(payload)
    m, L = len(prefs.prompt), task.response_len
    ok = prefs.chosen.shape == (m, L) and prefs.rejected.shape == (m, L) and m > 0
    ok = ok and prefs.prompt.min() >= 0 and prefs.prompt.max() < task.n_prompts
    ok = ok and min(prefs.chosen.min(), prefs.rejected.min()) >= 0
    if not (ok and max(prefs.chosen.max(), prefs.rejected.max()) < task.vocab):
        raise ValueError(f"preference file {str(path)!r} holds pairs that do not fit its task")
    return prefs


def _task_words(task: dict) -> str:
    """A task in a few words, for messages: "V=8, L=4, 16 prompts, seed 0"."""
    try:
        return f"V={task['vocab']}, L={task['response_len']}, {task['n_prompts']} prompts, seed {task['seed']}"
    except (KeyError, TypeError):
        return "an unreadable task"
