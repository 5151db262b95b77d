"""Data parallelism for the chapter-7 loops: the same command under ``torchrun``, the same numbers.

``torchrun --nproc_per_node=2 -m prefkit lm <stage> ...`` runs every stage with PyTorch's
DistributedDataParallel (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training"), gloo on CPU and NCCL on GPU; the command line is the one of a single process.

Why the numbers are those of one process on the same global batch:

- every rank draws the *global* batch from the same seeded generators (numpy and torch), then works on its
  contiguous shard :func:`shard` of the rows;
- its loss is its shard's mean times ``n_local·world/n_global`` (:func:`shard_loss`), so the gradient that DDP
  averages over the ranks is the gradient of the global batch's mean loss;
- responses sampled from the policy (RLHF, online DPO) are sampled for the whole global batch on every rank
  (the parameters are identical on every rank after each all-reduced step, and so are the generators), so the
  samples are those of one process;
- logged metrics are computed on the gathered global batch (:func:`gather`, :func:`global_sums`); exact
  evaluation splits the prompts over the ranks and gathers the table (:func:`gather`).

Only float rounding differs (sums in another order): in float64 the loss trajectories agree to ~1e-12
(``tests/test_lm_ddp.py``). Only rank 0 prints and writes files (:func:`is_main`).

With one process (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) every function here is the
identity and the loops compute exactly what they computed before.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

__all__ = [
    "init_from_env",
    "world_size",
    "rank",
    "is_main",
    "barrier",
    "shard",
    "check_batch",
    "shard_loss",
    "wrap",
    "gather",
    "global_means",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(device: str = "auto") -> int:
    """Join the process group that ``torchrun`` describes in the environment; returns the world size.

    Does nothing (returns 1) without ``WORLD_SIZE > 1`` in the environment, and returns the current world
    size when a group is already initialised. Backend: NCCL when the run uses CUDA (``device`` "cuda", or
    "auto" with a GPU; each rank then uses GPU ``LOCAL_RANK``), else gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 1
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    atexit.register(_destroy)
    return dist.get_world_size()


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def is_main() -> bool:
    """True on rank 0, the rank that prints and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op with one process)."""
    if _active():
        dist.barrier()


def _bounds(n: int, r: int, world: int) -> tuple[int, int]:
    q, m = divmod(n, world)
    lo = r * q + min(r, m)
    return lo, lo + q + (r < m)


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (sizes differ by at most one; rank order)."""
    return slice(*_bounds(n, rank(), world_size()))


def check_batch(n: int, name: str) -> None:
    """Every rank needs at least one row: ``n`` (the global batch, named ``name``) ≥ the world size."""
    if n < world_size():
        raise ValueError(f"{name}={n} is smaller than the number of processes ({world_size()}); every process "
                         "needs at least one row of the global batch")


def shard_loss(local_mean: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
    """The loss each rank back-propagates: its shard's mean × n_local·world/n_global.

    DDP averages the ranks' gradients, so the result is the gradient of the global mean
    (1/n_global)·Σ_i loss_i. The identity with one process.
    """
    if not _active():
        return local_mean
    return local_mean * (n_local * world_size() / n_global)


def wrap(model):
    """``DistributedDataParallel(model)`` when running in a process group, else ``model`` itself.

    No ``device_ids``: the loops build their inputs on the model's device (the GPT has no buffers to sync).
    """
    if not _active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def _comm_device(t: torch.Tensor) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather(t: torch.Tensor, n_global: int) -> torch.Tensor:
    """Concatenate every rank's shard (rows :func:`shard` of ``n_global``) in rank order, detached.

    ``t`` holds this rank's rows along the first axis; returns the (n_global, ...) tensor on ``t``'s device.
    The identity (detached) with one process.
    """
    t = t.detach()
    if not _active():
        return t
    world = world_size()
    sizes = [b - a for a, b in (_bounds(n_global, r, world) for r in range(world))]
    if t.shape[0] != sizes[rank()]:
        raise ValueError(f"gather: this rank holds {t.shape[0]} rows, expected {sizes[rank()]} of {n_global}")
    dev = _comm_device(t)
    pad = torch.zeros((max(sizes),) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
    pad[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).to(t.device)


def global_means(values, n_local: int, n_global: int) -> list[float]:
    """Means over the global batch of per-rank means ``values`` (floats or 0-d tensors) over ``n_local`` rows,
    in one all-reduce: Σ_ranks value·n_local / n_global. With one process: the values as floats."""
    vals = [float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in values]
    if not _active():
        return vals
    vec = torch.tensor(vals, dtype=torch.float64) * n_local
    if dist.get_backend() == "nccl":
        vec = vec.cuda()
    dist.all_reduce(vec)
    return (vec / n_global).cpu().tolist()
