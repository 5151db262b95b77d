"""Chapter 7 on two processes: ``torchrun --nproc_per_node=2`` (DDP over gloo) gives the numbers of one process.

Every stage of ``python -m prefkit lm`` (sft, rm, dpo, rlhf with PPO, online-dpo, grpo) and the pipeline run twice on
the fast setting with a few steps, in float64: once in this process, once under ``torchrun`` with the same command
lines (this file is the worker: ``python -m torch.distributed.run --nproc_per_node=2 tests/test_lm_ddp.py DIR``).
Each rank works on its half of the same global batch, so the histories (the loss at every step, the exact KLs),
the summary table and the checkpoints must agree to float64 rounding. A plausible bug breaks it: each rank
drawing a different batch, the loss averaged twice (gradients half as large), a rank sampling its own responses,
metrics logged from one rank's shard only, or rank 1 writing a checkpoint concurrently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--preset", "small", "--dtype", "float64", "--device", "cpu", "--no-progress", "--fast",
          "--eval-every", "1", "--pairs-per-prompt", "4"]
STAGES = [
    ["sft", "--steps", "6", "--batch-size", "8"],
    ["rm", "--steps", "4", "--batch-size", "8"],
    ["dpo", "--steps", "4", "--batch-size", "8"],
    ["rlhf", "--steps", "3", "--k", "2", "--method", "ppo"],
    ["online-dpo", "--steps", "3"],
    ["grpo", "--steps", "3", "--group-size", "2", "--scale-rewards", "batch"],
]
REL = ABS = 1e-9  # float64: sums over the ranks in another order (measured worst gap 4e-11)


def _pipeline_config():
    from prefkit.lm import LMConfig

    few = dict(sft_steps=6, sft_batch_size=8, rm_steps=4, rm_batch_size=8, rlhf_steps=3, dpo_steps=4, dpo_batch_size=8,
               online_dpo_steps=3, grpo_steps=3, grpo_group_size=2, pairs_per_prompt=4)
    return LMConfig(preset="small", device="cpu", dtype="float64", progress=False, rlhf_k=2, eval_every=1, **few)


def run_all(workdir: Path) -> int:
    """Every stage, then the pipeline (its config set in code: the CLI gives the pipeline no step counts)."""
    from prefkit.lm import cli

    for argv in STAGES:
        rc = cli.main(argv + COMMON + ["--workdir", str(workdir / "stages")])
        if rc:
            return rc
    config, cfg = cli._config, _pipeline_config()
    cli._config = lambda args, *a: cfg
    try:
        return cli.main(["pipeline", "--workdir", str(workdir / "pipeline"), "--online-dpo", "--grpo"])
    finally:
        cli._config = config


def _compare(a, b, where, worst):
    """Recursively: same structure, same strings, numbers within REL/ABS; records the worst gap relative to
    max(|x|, 1)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _compare(a[k], b[k], f"{where}.{k}", worst)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare(x, y, f"{where}[{i}]", worst)
    elif isinstance(a, float) and isinstance(b, float):
        gap = abs(a - b)
        assert gap <= ABS + REL * abs(a), f"{where}: one process {a!r}, two processes {b!r}"
        worst[0] = max(worst[0], gap / max(abs(a), 1.0))
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def test_shards_cover_the_global_batch_once():
    """Each rank's contiguous shard: together they cover 0..n-1 once, in rank order, sizes differing by ≤ 1."""
    from prefkit.lm import distributed

    for n in range(1, 20):
        for world in range(1, min(n, 5) + 1):
            bounds = [distributed._bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    # one process: every helper is the identity
    assert distributed.world_size() == 1 and distributed.shard(7) == slice(0, 7)
    t = torch.arange(3.0, requires_grad=True)
    assert distributed.shard_loss(t.sum(), 3, 3).item() == 3.0 and torch.equal(distributed.gather(t, 3), t.detach())
    assert distributed.global_means([torch.tensor(0.25), 2.0], 3, 3) == [0.25, 2.0]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_processes_give_the_numbers_of_one(tmp_path):
    from prefkit.lm import load_checkpoint

    one, two = tmp_path / "one", tmp_path / "two"
    torch_threads = torch.get_num_threads()
    assert run_all(one) == 0
    assert torch.get_num_threads() == torch_threads
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("PREFKIT_FAST", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, str(two)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "2 processes (DDP)" in out
    for stage in ("sft", "rm", "dpo", "rlhf", "online-dpo", "grpo"):  # rank 0 reports, once per stage
        assert sum(ln.startswith(f"{stage}: ") and "wrote" in ln for ln in out.splitlines()) == 1, stage

    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) == files  # and no *.tmp left
    assert any(f.name == "summary.json" for f in files)
    worst = [0.0]
    for f in files:
        if f.suffix == ".json":
            _compare(json.loads((one / f).read_text()), json.loads((two / f).read_text()), str(f), worst)
        elif f.name != "prefs.pt":
            a, b = load_checkpoint(one / f), load_checkpoint(two / f)
            assert a["task"] == b["task"] and a["model_config"] == b["model_config"] and a["meta"] == b["meta"]
            for k, v in a["state_dict"].items():
                assert v.dtype == torch.float64
                np.testing.assert_allclose(b["state_dict"][k].numpy(), v.numpy(), rtol=REL, atol=ABS,
                                           err_msg=f"{f} {k}")
    # the loss trajectory: every step of every stage was logged (--eval-every 1)
    dpo = json.loads((two / "stages" / "history_dpo.json").read_text())
    assert [h["step"] for h in dpo] == [0, 1, 2, 3, 4, "final"]
    print(f"two processes vs one: worst gap {worst[0]:.2e} (relative to max(|x|, 1)) over every logged number; "
          f"torchrun {wall:.1f}s")


if __name__ == "__main__":  # the torchrun worker
    sys.exit(run_all(Path(sys.argv[1])))
