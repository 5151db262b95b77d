"""``python -m prefkit lm {sft,rm,rlhf,dpo,online-dpo,pipeline}``: the chapter-7 pipelines from the command
line.

Each stage reads the checkpoints it needs from ``--workdir`` and writes its own (atomically), plus a JSON
history ``history_<stage>.json``:

    sft          -> sft.pt                          (pi_ref)
    rm           -> prefs.pt (if missing), rm.pt    needs sft.pt
    rlhf         -> rlhf.pt                         needs sft.pt, rm.pt
    dpo          -> prefs.pt (if missing), dpo.pt   needs sft.pt
    online-dpo   -> online_dpo.pt                   needs sft.pt, rm.pt
    pipeline     -> all of the above in memory, then the summary table (RLHF vs DPO vs pi*, exact KLs,
                    displacement) and summary.json

Every stage prints TRL-named metrics and the exact KLs at its evaluation steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .exact import MAX_ENUMERATE

__all__ = ["main", "build_parser"]

STAGES = ("sft", "rm", "rlhf", "dpo", "online-dpo", "pipeline")


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
        default="tiny",
        help="tiny: ~100k params, V=8, L=4, exact evaluation (CPU); small: same model, V=4, L=3 (tests); "
        "scale: ~25M params, V=32, L=4, Monte-Carlo evaluation (GPU)",
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
    p.add_argument("--eval-every", type=_positive_int, default=None)
    p.add_argument("--online-dpo", action="store_true", help="pipeline: also run online DPO")
    p.add_argument("--fast", action="store_true", help="the fast setting (small step counts)")
    p.add_argument("--no-bf16", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for torch (default: 1 for the tiny/small presets, whose matmuls are too small to "
        "split; torch's default for scale)",
    )
    return p


def _config(args):
    from .pipeline import LMConfig

    kw = dict(
        preset=args.preset,
        beta=args.beta,
        seed=args.seed,
        device=args.device,
        bf16=not args.no_bf16,
        rlhf_method=args.method,
        dpo_loss_type=args.loss_type,
        progress=not args.no_progress,
    )
    stage_keys = {"sft": "sft", "rm": "rm", "rlhf": "rlhf", "dpo": "dpo", "online-dpo": "online_dpo"}
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
    if args.eval_every is not None:
        kw["eval_every"] = args.eval_every
    return LMConfig.fast(**kw) if args.fast else LMConfig(**kw)


def _write_json(path: Path, obj) -> None:
    from .checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, default=float).encode()))


_PRINTED = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "objective/kl",
    "objective/scores",
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
    for h in history:
        print(
            f"[{stage}] step {h.get('step', '?'):>5}  "
            + "  ".join(f"{k}={h[k]:.4f}" for k in _PRINTED if k in h and isinstance(h[k], float))
        )


def _run_pipeline(args, cfg, work: Path, t0: float) -> int:
    from .checkpoint import save_checkpoint
    from .pipeline import format_summary, run_pipeline

    stages = ("sft", "rm", "rlhf", "dpo") + (("online-dpo",) if args.online_dpo else ())
    res = run_pipeline(cfg, stages=stages)
    for name, hist in res.histories.items():
        _write_json(work / f"history_{name.replace('-', '_')}.json", hist)
    for name in ("sft", "rlhf", "dpo", "online-dpo"):
        if name in res.models:
            save_checkpoint(work / f"{name.replace('-', '_')}.pt", res.models[name], res.task)
    if "rm" in res.models:
        save_checkpoint(work / "rm.pt", res.models["rm"], res.task, kind="reward_model")
    _write_json(work / "summary.json", res.rows)
    print(
        f"model: {res.info['n_params']:,} parameters on {res.info['device']}; "
        f"SFT throughput {res.info['sft_tokens_per_s']:,.0f} tokens/s"
    )
    print(format_summary(res.rows, cfg.beta, exact=res.task.n_responses <= MAX_ENUMERATE))
    print(f"total {time.perf_counter() - t0:.1f}s; checkpoints and histories in {work}/")
    return 0


def _run_stage(args) -> int:
    from .checkpoint import load_model, load_preferences, save_checkpoint, save_preferences
    from .exact import ExactEvaluator
    from .pipeline import build_task, train_stage
    from .train import clone, make_preferences, resolve_device

    cfg = _config(args)
    work = Path(args.workdir)
    dev = resolve_device(cfg.device)
    if args.threads is not None or cfg.preset != "scale":
        torch.set_num_threads(args.threads or 1)
    print(
        f"prefkit lm {args.stage}: device={dev}, preset={cfg.preset}, beta={cfg.beta}, workdir={work}, "
        f"torch threads={torch.get_num_threads()}"
    )
    t0 = time.perf_counter()
    if args.stage == "pipeline":
        return _run_pipeline(args, cfg, work, t0)

    name = args.stage.replace("-", "_")
    if args.stage == "sft":
        task = build_task(cfg)
        out = train_stage("sft", cfg, task)
        save_checkpoint(work / "sft.pt", out.model, task, meta={"beta": cfg.beta})
        if (work / "prefs.pt").is_file() or (work / "rm.pt").is_file():
            print(f"note: {work}/prefs.pt and rm.pt (if any) come from an earlier pi_ref; delete them to redo")
    else:
        ref, task, _ = load_model(work / "sft.pt", dev)
        ref = clone(ref)
        if (work / "prefs.pt").is_file():
            prefs = load_preferences(work / "prefs.pt", task)
        else:
            prefs = make_preferences(ref, task, cfg.pairs_per_prompt, seed=cfg.seed + 1)
            save_preferences(work / "prefs.pt", prefs, task)
        rm = None
        if args.stage in ("rlhf", "online-dpo"):
            rm, _, _ = load_model(work / "rm.pt", dev, kind="reward_model")
            rm.eval()
        evaluator = ExactEvaluator(ref, task, cfg.beta)
        out = train_stage(args.stage, cfg, task, ref=ref, prefs=prefs, rm=rm, evaluator=evaluator)
        if args.stage == "rm":
            save_checkpoint(work / "rm.pt", out.model, task, kind="reward_model")
        else:
            save_checkpoint(work / f"{name}.pt", out.model, task, meta={"beta": cfg.beta})
            prefs_idx = prefs.as_indices(task.vocab) if evaluator.exact else None
            out.history.append({"step": "final", **evaluator.evaluate(out.model, prefs_idx)})
    _write_json(work / f"history_{name}.json", out.history)
    _print_eval(out.history, name)
    print(
        f"{args.stage}: {time.perf_counter() - t0:.1f}s, {out.tokens_per_s:,.0f} tokens/s; "
        f"wrote {work / (name + '.pt')}"
    )
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m prefkit lm``; returns the exit status (2: bad arguments, with a message)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed "error: argument --beta: ..."
        return int(exc.code or 0)
    threads = torch.get_num_threads()
    try:
        return _run_stage(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prefkit lm {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # leave torch as it was (main may run inside a notebook or a test)
