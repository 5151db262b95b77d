"""Throughput of the chapter-7 "scale" preset (≈25M parameters): SFT and DPO tokens/s and peak memory, on 1 and 2
processes (``torchrun``, DistributedDataParallel over gloo on CPU, NCCL on GPU).

Each configuration runs in fresh processes: ``torchrun --nproc_per_node=P bench/lm_scale_throughput.py --worker``
trains the scale preset's SFT for ``--steps`` steps (after a one-step warm-up run) on a global batch of
``--batch`` sequences, then DPO (also after a warm-up) on ``--batch``/2 pairs sampled from the SFT model, with the
library's own loops (:func:`prefkit.lm.train_sft`, :func:`prefkit.lm.train_dpo_lm`). Tokens/s count the global
batch (all processes together); memory is each process's peak resident set (CPU) or peak allocated GPU memory.

CPU rows: 1 process × 1 thread, 1 process × 2 threads, 2 processes × 1 thread (the same cores used two ways).
GPU rows (bf16 autocast; ``--compile`` adds ``torch.compile``) run only where CUDA is available and are printed as
"not measured" otherwise. The table is Markdown, for the README.

Measured 2026-12-02, 2 shared cores, load average ≈1.5 (steps 5): at batch 32, 1 × 1: SFT 647 / DPO 691 tokens/s,
1 × 2: 1,212 / 1,260, 2 × 1: 685 / 693; at batch 128, 904 / 885, 1,714 / 1,677, 1,205 / 1,135. On a CPU, two
threads in one process beat two processes: DDP all-reduces the 25M gradients (100 MB) over gloo every step, which
a larger batch amortises (2 processes: 1.06× one process at batch 32, 1.33× at 128).

Run: ``python bench/lm_scale_throughput.py [--steps 5] [--batch 32] [--device cpu|cuda|auto]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def worker(args) -> int:
    """One configuration, under torchrun (or alone): prints ``RESULT {json}`` on rank 0."""
    import torch

    from prefkit.lm import (
        LMConfig,
        build_model,
        build_task,
        clone,
        make_preferences,
        resolve_device,
        train_dpo_lm,
        train_sft,
        trainable_copy,
    )
    from prefkit.lm import distributed as D

    D.init_from_env(args.device)
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    cfg = LMConfig(preset="scale", progress=False, device=str(dev), bf16=args.bf16)
    task = build_task(cfg)
    model = build_model(cfg, task, dev)
    if args.compile:
        model = torch.compile(model)
    train_sft(model, task, steps=1, batch_size=args.batch, lr=3e-4, bf16=args.bf16, progress=False)  # warm-up
    sft = train_sft(model, task, steps=args.steps, batch_size=args.batch, lr=3e-4, bf16=args.bf16, progress=False)
    ref = clone(model)
    prefs = make_preferences(ref, task, 2, seed=1)
    kw = dict(batch_size=args.batch // 2, lr=1e-5, bf16=args.bf16, progress=False)
    train_dpo_lm(trainable_copy(ref), ref, task, prefs, 1.0, steps=1, **kw)  # warm-up
    dpo = train_dpo_lm(trainable_copy(ref), ref, task, prefs, 1.0, steps=args.steps, **kw)
    if dev.type == "cuda":
        mem = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    world = D.world_size()
    mems = D.gather(torch.tensor([[mem]], dtype=torch.float64, device=dev), world).flatten().tolist()
    if D.is_main():
        print("RESULT " + json.dumps({"sft": sft.tokens_per_s, "dpo": dpo.tokens_per_s, "mem": mems,
                                      "world": world, "threads": torch.get_num_threads(), "device": str(dev)}))
    return 0


def run_config(procs: int, threads: int, args, extra=()) -> dict | None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           os.path.abspath(__file__), "--worker", "--threads", str(threads), "--steps", str(args.steps),
           "--batch", str(args.batch), "--device", args.device_run, *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(f"  {procs} process(es) × {threads} thread(s): failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    res = json.loads(lines[-1][len("RESULT "):])
    res["wall"] = wall
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32, help="global SFT batch in sequences (DPO: half as many pairs)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    import torch

    cuda = torch.cuda.is_available() and args.device != "cpu"
    rows = []
    head = ("| device | processes × threads | precision | SFT tokens/s | DPO tokens/s | peak memory per process |"
            "\n|---|---|---|---|---|---|")
    print(f"scale preset (≈25M parameters, V=32, L=4), global batch {args.batch} sequences (DPO {args.batch // 2} "
          f"pairs), {args.steps} timed steps after a warm-up; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    if args.device in ("auto", "cpu"):
        args.device_run = "cpu"
        for procs, threads in ((1, 1), (1, 2), (2, 1)):
            r = run_config(procs, threads, args)
            if r is None:
                rows.append(f"| CPU | {procs} × {threads} | fp32 | failed | failed | |")
                continue
            mem = " + ".join(f"{m:,.0f}" for m in r["mem"]) + " MiB"
            rows.append(f"| CPU | {procs} × {threads} | fp32 | {r['sft']:,.0f} | {r['dpo']:,.0f} | {mem} |")
            print(rows[-1], flush=True)
    gpu_cfgs = [(1, "bf16", ()), (2, "bf16", ()), (1, "bf16 + torch.compile", ("--compile",)),
                (2, "bf16 + torch.compile", ("--compile",))]
    for procs, prec, extra in gpu_cfgs:
        if not cuda or torch.cuda.device_count() < procs:
            rows.append(f"| GPU | {procs} × 1 | {prec} | not measured | not measured | not measured |")
            continue
        args.device_run = "cuda"
        r = run_config(procs, 1, args, ("--bf16", *extra))
        if r is None:
            rows.append(f"| GPU | {procs} × 1 | {prec} | failed | failed | |")
        else:
            mem = " + ".join(f"{m:,.0f}" for m in r["mem"]) + " MiB"
            rows.append(f"| GPU {torch.cuda.get_device_name(0)} | {procs} × 1 | {prec} | {r['sft']:,.0f} | "
                        f"{r['dpo']:,.0f} | {mem} |")
    print(head)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
