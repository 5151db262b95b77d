"""``python -m prefkit lm {sft,rm,rlhf,dpo,online-dpo,grpo,pipeline}``: the chapter-7 pipelines from the command
line.

Each stage reads the checkpoints it needs from ``--workdir`` and writes its own (atomically), plus a JSON
history ``history_<stage>.json``:

    sft          -> sft.pt                          (pi_ref)
    rm           -> prefs.pt (if missing), rm.pt    needs sft.pt
    rlhf         -> rlhf.pt                         needs sft.pt, rm.pt
    dpo          -> prefs.pt (if missing), dpo.pt   needs sft.pt
    online-dpo   -> online_dpo.pt                   needs sft.pt, rm.pt
    grpo         -> grpo.pt                         needs sft.pt, rm.pt
    pipeline     -> all of the above in memory, then the summary table (RLHF vs DPO vs pi*, exact KLs,
                    displacement) and summary.json

Every stage prints TRL-named metrics and the exact KLs at its evaluation steps; progress bars on a terminal,
one line per stage otherwise.

Several processes: the same command under torchrun, e.g. ``torchrun --nproc_per_node=2 -m prefkit lm dpo``,
trains with DistributedDataParallel (gloo on CPU, NCCL on GPU) on the same global batch, with the numbers of
one process; rank 0 prints and writes.

Safety: the workdir is checked before training; checkpoints record their preset, task and model shape and a
later stage refuses an incompatible one; a diverging run (NaN or inf loss or weights) stops and writes
nothing; PREFKIT_FAST=1 selects --fast; stale temporary files of killed runs are removed; Ctrl-C names the
last complete checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .exact import MAX_ENUMERATE

__all__ = ["main", "build_parser"]

STAGES = ("sft", "rm", "rlhf", "dpo", "online-dpo", "grpo", "pipeline")


def _int_at_least(lo: int, what: str):
    """An argparse type: an integer ≥ ``lo`` (the message names the argument via argparse)."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {s!r}")
        return v

    return parse


_positive_int = _int_at_least(1, "positive")
_nonnegative_int = _int_at_least(0, "non-negative")


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from ..f_divergence import F_DIVERGENCES
    from ..grpo import SCALE_REWARDS
    from ..losses import LOSSES

    p = argparse.ArgumentParser(
        prog="python -m prefkit lm",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stage", choices=STAGES, help="which pipeline stage to run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    p.add_argument(
        "--preset",
        choices=("tiny", "small", "scale"),
        default=None,
        help="tiny (default): ~100k params, V=8, L=4, exact evaluation (CPU); small: same model, V=4, L=3 "
        "(tests); scale: ~25M params, V=32, L=4, Monte-Carlo evaluation (GPU). Later stages take sft.pt's",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="parameter dtype (default float32; float64 for exact comparisons on CPU). Later stages take sft.pt's",
    )
    p.add_argument("--workdir", default="runs/lm", help="folder for checkpoints and histories (default runs/lm)")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of everything (default 0)")
    p.add_argument("--beta", type=_positive_float, default=1.0, help="KL coefficient β (default 1.0)")
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps of this stage")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate of this stage")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--pairs-per-prompt", type=_positive_int, default=None)
    p.add_argument("--method", choices=("rloo", "ppo"), default="rloo", help="RLHF optimiser (default rloo)")
    p.add_argument("--k", type=_positive_int, default=None, help="RLHF samples per prompt (>= 2)")
    p.add_argument("--loss-type", choices=sorted(LOSSES), default="sigmoid", help="DPO loss (chapter 4)")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="ε of the DPO loss (robust, exo_pair (needs ε > 0), cDPO for sigmoid; default 0)")
    p.add_argument("--f-divergence", choices=F_DIVERGENCES,
                   default="reverse_kl", help="DPO's f (TRL's f_divergence_type; Wang et al. 2023; default "
                   "reverse_kl = DPO); another f works with sigmoid, sigmoid_norm, hinge, ipo, exo_pair, robust, "
                   "discopop, sft")
    p.add_argument("--f-alpha", type=float, default=0.5, metavar="ALPHA",
                   help="α of alpha_divergence (TRL's f_alpha_divergence_coef; default 0.5)")
    p.add_argument("--sequence-level", action="store_true",
                   help="ipo/sigmoid_norm/sft on sequence log-ratios, GRPO with one action per response "
                   "(default: per token, as TRL)")
    p.add_argument("--eval-every", type=_positive_int, default=None)
    p.add_argument("--group-size", type=_int_at_least(2, "at least 2"), default=None,
                   help="GRPO samples per prompt G (default 8)")
    p.add_argument("--scale-rewards", choices=SCALE_REWARDS, default="group",
                   help="GRPO advantages: divide by the group's std (TRL's default), the batch's, or none (Dr. GRPO)")
    p.add_argument("--online-dpo", action="store_true", help="pipeline: also run online DPO")
    p.add_argument("--grpo", action="store_true", help="pipeline: also run GRPO")
    p.add_argument("--fast", action="store_true", help="the fast setting (small step counts); also PREFKIT_FAST=1")
    p.add_argument("--no-bf16", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown on a terminal only)")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for torch (default: 1 for the tiny/small presets, whose matmuls are too small to "
        "split; torch's default for scale)",
    )
    return p


def _config(args, preset: str = "tiny", dtype: str = "float32"):
    """The LMConfig of the command line; ``preset`` and ``dtype`` where the command line gives none."""
    from ..config import is_fast
    from .pipeline import LMConfig

    kw = dict(
        preset=args.preset or preset,
        dtype=args.dtype or dtype,
        beta=args.beta,
        seed=args.seed,
        device=args.device,
        bf16=not args.no_bf16,
        rlhf_method=args.method,
        dpo_loss_type=args.loss_type,
        dpo_label_smoothing=args.label_smoothing,
        dpo_per_token=not args.sequence_level,
        dpo_f_divergence=args.f_divergence,
        dpo_f_alpha=args.f_alpha,
        grpo_scale_rewards=args.scale_rewards,
        grpo_per_token=not args.sequence_level,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    stage_keys = {"sft": "sft", "rm": "rm", "rlhf": "rlhf", "dpo": "dpo", "online-dpo": "online_dpo", "grpo": "grpo"}
    if args.stage in stage_keys:
        s = stage_keys[args.stage]
        if args.steps is not None:
            kw[f"{s}_steps"] = args.steps
        if args.lr is not None:
            kw[f"{s}_lr"] = args.lr
        if args.batch_size is not None and s in ("sft", "rm", "dpo"):
            kw[f"{s}_batch_size"] = args.batch_size
    elif args.steps is not None or args.lr is not None or args.batch_size is not None:
        raise ValueError("--steps, --lr and --batch-size apply to one stage; the pipeline uses each stage's default")
    if args.pairs_per_prompt is not None:
        kw["pairs_per_prompt"] = args.pairs_per_prompt
    if args.k is not None:
        kw["rlhf_k"] = args.k
    if args.group_size is not None:
        kw["grpo_group_size"] = args.group_size
    if args.eval_every is not None:
        kw["eval_every"] = args.eval_every
    return LMConfig.fast(**kw) if (args.fast or is_fast()) else LMConfig(**kw)


def _strict(obj):
    """``obj`` with numpy scalars as Python numbers and NaN/inf as None, so ``json.dumps(allow_nan=False)``
    writes strict JSON (RFC 8259 has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return _strict(obj.item())
    return obj


def _write_json(path: Path, obj) -> None:
    from .checkpoint import atomic_write

    text = json.dumps(_strict(obj), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def _check_workdir(work: Path) -> None:
    """Fail before any training when ``work`` cannot hold the results (not a folder, not writable)."""
    if work.exists() and not work.is_dir():
        raise ValueError(f"--workdir {str(work)!r} is not a folder")
    try:
        work.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=work, prefix=".prefkit-write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(
            f"--workdir {str(work)!r} is not writable ({exc.strerror or exc}); nothing was trained"
        ) from None
    from .checkpoint import clean_stale_tmp

    if distributed.is_main():
        removed = clean_stale_tmp(work)
        if removed:
            print(f"removed {len(removed)} stale temporary file(s) of an interrupted run: "
                  + ", ".join(f.name for f in removed))


_CHECKPOINTS = ("sft.pt", "rm.pt", "rlhf.pt", "dpo.pt", "online_dpo.pt", "grpo.pt")


def _last_checkpoint(work: Path) -> str:
    """Words naming the newest complete checkpoint in ``work`` (every checkpoint is written atomically)."""
    found = [work / n for n in _CHECKPOINTS if (work / n).is_file()]
    if not found:
        return f"no checkpoint was written in {work}/"
    last = max(found, key=lambda f: f.stat().st_mtime)
    when = time.strftime("%H:%M:%S", time.localtime(last.stat().st_mtime))
    return f"the last complete checkpoint is {last} (written {when})"


_PRINTED = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "objective/kl",
    "objective/scores",
    "reward",
    "kl",
    "exact/reward",
    "exact/kl_ref",
    "exact/kl_star",
    "mc/reward",
    "mc/kl_ref",
    "mc/kl_star",
    "mass/neither_gain",
    "sft/kl_data",
    "accuracy",
    "eval/accuracy",
    "eval/true_accuracy",
)


def _print_eval(history, stage):
    if not history:
        return
    for h in history:
        print(
            f"[{stage}] step {h.get('step', '?'):>5}  "
            + "  ".join(f"{k}={h[k]:.4f}" for k in _PRINTED if k in h and isinstance(h[k], float))
        )


def _run_pipeline(args, cfg, work: Path, t0: float) -> int:
    from .checkpoint import save_checkpoint
    from .pipeline import STAGES, format_summary, run_pipeline

    stages = ("sft", "rm", "rlhf", "dpo") + (("online-dpo",) if args.online_dpo else ())
    stages += ("grpo",) if args.grpo else ()
    res = run_pipeline(cfg, stages=stages)
    meta = {"beta": cfg.beta, "preset": cfg.preset}
    if distributed.is_main():  # every rank trained the same models; rank 0 writes them
        for name, hist in res.histories.items():
            _write_json(work / f"history_{name.replace('-', '_')}.json", hist)
        for name in STAGES:  # the policies; the reward model below
            if name != "rm" and name in res.models:
                save_checkpoint(work / f"{name.replace('-', '_')}.pt", res.models[name], res.task, meta=meta)
        if "rm" in res.models:
            save_checkpoint(work / "rm.pt", res.models["rm"], res.task, kind="reward_model", meta=meta)
        _write_json(work / "summary.json", res.rows)
    distributed.barrier()
    print(
        f"model: {res.info['n_params']:,} parameters on {res.info['device']}; "
        f"SFT throughput {res.info['sft_tokens_per_s']:,.0f} tokens/s"
    )
    print(format_summary(res.rows, cfg.beta, exact=res.task.n_responses <= MAX_ENUMERATE))
    print(f"total {time.perf_counter() - t0:.1f}s; checkpoints and histories in {work}/")
    return 0


def _sft_settings(args, work: Path) -> tuple[str, str]:
    """The preset and dtype of ``sft.pt`` (for the later stages); ``--preset``/``--dtype`` must agree."""
    from .checkpoint import load_checkpoint

    path = work / "sft.pt"
    meta = load_checkpoint(path)["meta"]
    preset, dtype = meta.get("preset", args.preset or "tiny"), meta.get("dtype", "float32")
    for flag, given, stored in (("--preset", args.preset, preset), ("--dtype", args.dtype, dtype)):
        if given is not None and given != stored:
            raise ValueError(
                f"{flag} {given} differs from {str(path)!r}, which was trained with {flag} {stored}; omit {flag} "
                "on the later stages (they take sft.pt's) or use another --workdir"
            )
    return preset, dtype


def _check_same_task(path: Path, task, meta: dict, sft_path: Path, sft_task, sft_meta: dict) -> None:
    """Refuse a checkpoint trained for another task or preset than sft.pt, naming both files."""
    from .checkpoint import _task_words

    a, b = meta.get("preset"), sft_meta.get("preset")
    if task.to_dict() != sft_task.to_dict() or (a and b and a != b):
        raise ValueError(
            f"{str(path)!r} (preset {a}, {_task_words(task.to_dict())}) was trained for another task than "
            f"{str(sft_path)!r} (preset {b}, {_task_words(sft_task.to_dict())}); rerun the stage that writes "
            f"{path.name} or use another --workdir"
        )


def _run_stage(args) -> int:
    from .checkpoint import load_model, load_preferences, save_checkpoint, save_preferences
    from .exact import ExactEvaluator
    from .pipeline import build_task, train_stage
    from .train import clone, make_preferences, resolve_device

    work = Path(args.workdir)
    later = args.stage not in ("sft", "pipeline")
    cfg = _config(args)  # bad arguments fail here, before any file is read
    if later:
        cfg = _config(args, *_sft_settings(args, work))
    dev = resolve_device(cfg.device)
    _check_workdir(work)
    if args.threads is not None or cfg.preset != "scale":
        torch.set_num_threads(args.threads or 1)
    world = distributed.world_size()
    print(
        f"prefkit lm {args.stage}: device={dev}, preset={cfg.preset}, beta={cfg.beta}, workdir={work}, "
        f"torch threads={torch.get_num_threads()}" + (f", {world} processes (DDP)" if world > 1 else "")
    )
    t0 = time.perf_counter()
    if args.stage == "pipeline":
        return _run_pipeline(args, cfg, work, t0)

    name = args.stage.replace("-", "_")
    meta = {"beta": cfg.beta, "preset": cfg.preset}
    new_prefs = None
    if args.stage == "sft":
        task = build_task(cfg)
        out = train_stage("sft", cfg, task)
        if (work / "prefs.pt").is_file() or (work / "rm.pt").is_file():
            print(f"note: {work}/prefs.pt and rm.pt (if any) come from an earlier pi_ref; delete them to redo")
    else:
        sft_path = work / "sft.pt"
        ref, task, sft_meta = load_model(sft_path, dev)
        ref = clone(ref)
        if (work / "prefs.pt").is_file():
            prefs = load_preferences(work / "prefs.pt", task, source=str(sft_path))
        else:
            prefs = new_prefs = make_preferences(ref, task, cfg.pairs_per_prompt, seed=cfg.seed + 1)
        rm = None
        if args.stage in ("rlhf", "online-dpo", "grpo"):
            rm_path = work / "rm.pt"
            rm, rm_task, rm_meta = load_model(rm_path, dev, kind="reward_model")
            _check_same_task(rm_path, rm_task, rm_meta, sft_path, task, sft_meta)
            rm.eval()
        evaluator = ExactEvaluator(ref, task, cfg.beta)
        out = train_stage(args.stage, cfg, task, ref=ref, prefs=prefs, rm=rm, evaluator=evaluator)
        if args.stage != "rm":
            prefs_idx = prefs.as_indices(task.vocab) if evaluator.exact else None
            out.history.append({"step": "final", **evaluator.evaluate(out.model, prefs_idx)})
    if distributed.is_main():  # written only now: a stage that fails or diverges writes nothing
        if new_prefs is not None:
            save_preferences(work / "prefs.pt", new_prefs, task)
        kind = "reward_model" if args.stage == "rm" else "policy"
        save_checkpoint(work / f"{name}.pt", out.model, task, kind=kind, meta=meta)
        _write_json(work / f"history_{name}.json", out.history)
    distributed.barrier()
    _print_eval(out.history, name)
    print(
        f"{args.stage}: {time.perf_counter() - t0:.1f}s, {out.tokens_per_s:,.0f} tokens/s; "
        f"wrote {work / (name + '.pt')}"
    )
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m prefkit lm``; returns the exit status (2: bad arguments or a failed run,
    with a one-line message; 130: interrupted). Under ``torchrun`` every rank runs it; rank 0 prints."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed "error: argument --beta: ..."
        return int(exc.code or 0)
    threads = torch.get_num_threads()
    try:
        distributed.init_from_env(args.device)
        quiet = not distributed.is_main()
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            return _run_stage(args)
    except (ValueError, FileNotFoundError) as exc:
        if distributed.is_main():
            print(f"prefkit lm {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if distributed.is_main():
            print(f"prefkit lm {args.stage}: interrupted; {_last_checkpoint(Path(args.workdir))}", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)  # leave torch as it was (main may run inside a notebook or a test)
