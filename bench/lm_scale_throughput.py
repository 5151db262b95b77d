"""Throughput of the chapter-7 "scale" preset (≈25M parameters) on a GPU: SFT and DPO tokens per second.

Prepared for a session with a GPU (none was available when it was written, so no GPU numbers are recorded
yet). It trains the scale preset's SFT for ``--steps`` steps with bf16 autocast, then DPO on preference pairs
sampled from the SFT model, and prints tokens/s of each (plus fp32 for comparison). Without CUDA it says so
and exits 0, unless ``--device cpu`` is given (very slow: a few hundred tokens/s on 2 shared cores).

Run: ``python bench/lm_scale_throughput.py [--steps 300] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from prefkit.lm import (  # noqa: E402
    LMConfig,
    build_model,
    build_task,
    clone,
    count_parameters,
    make_preferences,
    resolve_device,
    train_dpo_lm,
    train_sft,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = ap.parse_args(argv)
    if args.device == "auto" and not torch.cuda.is_available():
        print("lm_scale_throughput: no CUDA device; skipped (pass --device cpu to run it on the CPU anyway)")
        return 0
    dev = resolve_device(args.device)
    cfg = LMConfig(preset="scale", progress=False, device=str(dev))
    task = build_task(cfg)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"scale preset on {name}: V={task.vocab}, L={task.response_len}, {task.n_prompts} prompts")
    for bf16 in (True, False) if dev.type == "cuda" else (False,):
        model = build_model(cfg, task, dev)
        r = train_sft(model, task, steps=args.steps, batch_size=256, lr=3e-4, bf16=bf16, progress=False)
        prec = "bf16" if bf16 else "fp32"
        print(f"  {count_parameters(model):,} params, {prec}: SFT {r.tokens_per_s:,.0f} tokens/s")
        ref = clone(model)
        prefs = make_preferences(ref, task, 16, seed=1)
        r = train_dpo_lm(
            model, ref, task, prefs, 1.0, steps=args.steps, batch_size=128, lr=1e-5, bf16=bf16, progress=False
        )
        print(
            f"  {'bf16' if bf16 else 'fp32'}: DPO {r.tokens_per_s:,.0f} tokens/s "
            f"({args.steps / r.wall_s:.1f} steps/s, batch 128 pairs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
