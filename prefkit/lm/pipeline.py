"""The chapter-7 pipeline SFT → preference data → reward model → RLHF and DPO (and online DPO, GRPO), evaluated
exactly.

:class:`LMConfig` holds every knob (one field each, documented); :func:`run_pipeline` runs the stages in
memory and returns the models, histories and the summary rows; the CLI (``python -m prefkit lm ...``), the
notebook and the tour all call it, so they measure the same thing. Checkpointing lives in the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .._validate import check_beta, check_int
from ..closed_form import kl_divergence_logspace, optimal_log_policy
from ..grpo import SCALE_REWARDS
from ._validate import check_positive_ints, check_seed, fields_of
from .exact import MAX_ENUMERATE, ExactEvaluator
from .model import GPT, count_parameters, scale_config, tiny_config
from .task import SyntheticLanguage
from .train import (
    Preferences,
    RewardModel,
    TrainResult,
    _device_of,
    clone,
    make_preferences,
    resolve_device,
    train_dpo_lm,
    train_grpo_lm,
    train_online_dpo_lm,
    train_reward_model,
    train_rlhf_lm,
    train_sft,
    trainable_copy,
)

__all__ = [
    "LMConfig",
    "PipelineResult",
    "build_task",
    "build_model",
    "STAGES",
    "train_stage",
    "run_pipeline",
    "summary_rows",
    "format_summary",
]


@dataclass
class LMConfig:
    """Every knob of the chapter-7 pipeline."""

    preset: str = "tiny"
    """"tiny" (≈100k-parameter model, V=8, L=4, 16 prompts: exact enumeration, CPU), "small" (the same model
    on V=4, L=3, 8 prompts: 64 responses, for tests and the tour) or "scale" (≈25M parameters, V=32, L=4, 256
    prompts:
    Monte-Carlo evaluation, meant for a GPU)."""
    beta: float = 1.0
    """KL coefficient β of RLHF, DPO and π* ∝ π_ref·exp(r*/β)."""
    seed: int = 0
    """Seed of the task, the initialisation, the data and the sampling."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""
    bf16: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    dtype: str = "float32"
    """Parameter dtype of the models: "float32", or "float64" (CPU; exact comparisons such as one process
    against several under ``torchrun``)."""
    sft_steps: int = 1000
    sft_batch_size: int = 128
    sft_lr: float = 3e-3
    pairs_per_prompt: int = 512
    """Preference pairs sampled from π_ref per prompt (BT-labelled on r*)."""
    rm_steps: int = 1000
    rm_batch_size: int = 128
    rm_lr: float = 1e-3
    rlhf_method: str = "rloo"
    """"rloo" or "ppo"."""
    rlhf_steps: int = 500
    rlhf_k: int = 8
    """Samples per prompt for RLOO's leave-one-out baseline."""
    rlhf_lr: float = 2e-3
    dpo_loss_type: str = "sigmoid"
    """Any chapter-4 loss type of :func:`prefkit.losses.preference_loss`."""
    dpo_label_smoothing: float = 0.0
    """ε of the loss types that take one (``robust``, ``exo_pair`` needs ε > 0, cDPO for ``sigmoid``)."""
    dpo_f_divergence: str = "reverse_kl"
    """TRL's ``f_divergence_type`` of the offline DPO stage (:func:`prefkit.f_divergence.f_dpo_loss`):
    "reverse_kl" (DPO), "forward_kl", "js_divergence" or "alpha_divergence"."""
    dpo_f_alpha: float = 0.5
    """α of ``"alpha_divergence"`` (TRL's ``f_alpha_divergence_coef``)."""
    dpo_per_token: bool = True
    """TRL's per-token log-ratios for ``ipo``, ``sigmoid_norm`` and ``sft``; False: sequence log-ratios."""
    dpo_steps: int = 800
    dpo_batch_size: int = 128
    dpo_lr: float = 3e-4
    online_dpo_steps: int = 300
    online_dpo_lr: float = 3e-4
    grpo_steps: int = 300
    grpo_lr: float = 1e-3
    grpo_group_size: int = 8
    """G, the samples per prompt whose scores are compared."""
    grpo_scale_rewards: str = "group"
    """"group" (TRL: divide by the group's std), "batch" or "none" (Dr. GRPO)."""
    grpo_per_token: bool = True
    """TRL's per-token ratio and k3; False: one action per response (chapter 10's bandit over V^L responses)."""
    eval_every: int = 100
    """Exact evaluation (and displacement tracking) every this many steps."""
    progress: bool = True
    """tqdm progress bars."""

    def __post_init__(self):
        if self.preset not in ("tiny", "small", "scale"):
            raise ValueError(f"preset must be 'tiny', 'small' or 'scale', got {self.preset!r}")
        check_beta(self.beta)
        check_seed(self.seed)
        if self.rlhf_method not in ("rloo", "ppo"):
            raise ValueError(f"rlhf_method must be 'rloo' or 'ppo', got {self.rlhf_method!r}")
        from ..losses import LOSSES

        if self.dpo_loss_type not in LOSSES:  # fail now, not after minutes of SFT and reward modelling
            raise ValueError(f"dpo_loss_type must be one of {sorted(LOSSES)}, got {self.dpo_loss_type!r}")
        from ..f_divergence import f_dpo_loss

        z = torch.zeros(2, dtype=torch.float64)
        try:  # the loss type, ε (exo_pair needs ε > 0) and f together (only some loss types take an f other than
            # the reverse KL, which is plain preference_loss), checked before any training
            f_dpo_loss(z, z, z, z, self.beta, self.dpo_loss_type, self.dpo_label_smoothing,
                       f_divergence_type=self.dpo_f_divergence, alpha=self.dpo_f_alpha)
        except ValueError as e:
            raise ValueError(f"dpo_loss_type={self.dpo_loss_type!r}, dpo_label_smoothing={self.dpo_label_smoothing!r}"
                             f", dpo_f_divergence={self.dpo_f_divergence!r} (alpha {self.dpo_f_alpha!r}): {e}"
                             ) from None
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        counts = (
            "sft_steps",
            "sft_batch_size",
            "pairs_per_prompt",
            "rm_steps",
            "rm_batch_size",
            "rlhf_steps",
        )
        counts += ("dpo_steps", "dpo_batch_size", "online_dpo_steps", "grpo_steps", "eval_every")
        check_positive_ints(**fields_of(self, counts))
        check_int(self.rlhf_k, "rlhf_k", 2)
        check_int(self.grpo_group_size, "grpo_group_size", 2)
        if self.grpo_scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"grpo_scale_rewards must be one of {SCALE_REWARDS}, got {self.grpo_scale_rewards!r}")
        for name in ("sft_lr", "rm_lr", "rlhf_lr", "dpo_lr", "online_dpo_lr", "grpo_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")

    @classmethod
    def fast(cls, **kw) -> LMConfig:
        """The CI/notebook fast setting: every stage a fraction of the default."""
        base = dict(
            sft_steps=500,
            pairs_per_prompt=256,
            rm_steps=200,
            rlhf_steps=150,
            dpo_steps=400,
            online_dpo_steps=100,
            grpo_steps=150,
            eval_every=100,
        )
        base.update(kw)
        return cls(**base)

    @classmethod
    def tour(cls, seed: int = 0, fast: bool = False, **kw) -> LMConfig:
        """The quick setting of chapter 7's tour and of its notebook's fast run: the "small" preset (V=4, L=3, 8
        prompts) with the same ~100k-parameter model, 80–200 steps per stage and small batches (about 10 s on one
        core). ``fast`` is accepted for symmetry with the tour's ``--fast`` and changes nothing.
        """
        del fast
        base = dict(
            preset="small",
            seed=seed,
            sft_steps=150,
            sft_batch_size=64,
            pairs_per_prompt=256,
            rm_steps=80,
            rm_batch_size=64,
            rlhf_steps=100,
            dpo_steps=200,
            dpo_batch_size=48,
            eval_every=50,
            progress=False,
        )
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        return asdict(self)


def build_task(cfg: LMConfig) -> SyntheticLanguage:
    """The synthetic language of the preset."""
    if cfg.preset == "scale":
        return SyntheticLanguage(vocab=32, response_len=4, prompt_len=4, n_prompts=256, seed=cfg.seed)
    if cfg.preset == "small":
        return SyntheticLanguage(vocab=4, response_len=3, prompt_len=3, n_prompts=8, seed=cfg.seed)
    return SyntheticLanguage(seed=cfg.seed)


def build_model(cfg: LMConfig, task: SyntheticLanguage, device=None) -> GPT:
    """A freshly initialised GPT of the preset (seeded)."""
    torch.manual_seed(cfg.seed)
    mk = scale_config if cfg.preset == "scale" else tiny_config
    model = GPT(mk(vocab_size=task.vocab_size, block_size=task.seq_len))
    return model.to(device=device or "cpu", dtype=getattr(torch, cfg.dtype))


@dataclass
class PipelineResult:
    """Models, per-stage histories and summary rows of a pipeline run."""

    cfg: LMConfig
    task: SyntheticLanguage
    models: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


STAGES = ("sft", "rm", "rlhf", "dpo", "online-dpo", "grpo")
"""The training stages, in pipeline order."""


def train_stage(
    stage: str,
    cfg: LMConfig,
    task: SyntheticLanguage,
    *,
    ref=None,
    prefs: Preferences | None = None,
    rm: RewardModel | None = None,
    evaluator: ExactEvaluator | None = None,
) -> TrainResult:
    """Run one stage's training loop with the settings of ``cfg``; the pipeline and the CLI both call it.

    ``"sft"`` trains a fresh :func:`build_model`; ``"rm"`` a :class:`RewardModel` whose trunk starts at
    ``ref`` (π_ref), on ``prefs``, with 64 held-out pairs per prompt; ``"rlhf"``, ``"dpo"`` and
    ``"online-dpo"``, ``"grpo"`` a policy initialised at ``ref`` (RLHF, online DPO and GRPO score with ``rm``; DPO fits
    ``prefs``), evaluated by ``evaluator`` every ``cfg.eval_every`` steps. Returns the loop's
    :class:`TrainResult`.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    common = dict(seed=cfg.seed, bf16=cfg.bf16, progress=cfg.progress)
    if stage == "sft":
        return train_sft(
            build_model(cfg, task, resolve_device(cfg.device)),
            task,
            steps=cfg.sft_steps,
            batch_size=cfg.sft_batch_size,
            lr=cfg.sft_lr,
            eval_every=cfg.eval_every if task.n_responses <= MAX_ENUMERATE else 0,
            **common,
        )
    if ref is None:
        raise ValueError(f"stage {stage!r} needs ref (the SFT model)")
    if stage in ("rm", "dpo") and prefs is None:
        raise ValueError(f"stage {stage!r} needs prefs")
    if stage in ("rlhf", "online-dpo", "grpo") and rm is None:
        raise ValueError(f"stage {stage!r} needs rm (a trained reward model)")
    dev = next(ref.parameters()).device
    if stage == "rm":
        held = make_preferences(ref, task, 64, seed=cfg.seed + 2)
        rm_init = RewardModel(trainable_copy(ref)).to(dev)
        steps = dict(steps=cfg.rm_steps, batch_size=cfg.rm_batch_size, lr=cfg.rm_lr)
        return train_reward_model(rm_init, task, prefs, eval_pairs=held, **steps, **common)
    common.update(evaluator=evaluator, eval_every=cfg.eval_every)
    policy = trainable_copy(ref)
    if stage == "rlhf":
        kw = dict(method=cfg.rlhf_method, steps=cfg.rlhf_steps, k=cfg.rlhf_k, lr=cfg.rlhf_lr)
        return train_rlhf_lm(policy, ref, rm, task, cfg.beta, **kw, **common)
    if stage == "dpo":
        kw = dict(steps=cfg.dpo_steps, batch_size=cfg.dpo_batch_size, lr=cfg.dpo_lr)
        kw.update(label_smoothing=cfg.dpo_label_smoothing, per_token=cfg.dpo_per_token,
                  f_divergence_type=cfg.dpo_f_divergence, alpha=cfg.dpo_f_alpha)
        return train_dpo_lm(policy, ref, task, prefs, cfg.beta, loss_type=cfg.dpo_loss_type, **kw, **common)
    if stage == "grpo":
        kw = dict(steps=cfg.grpo_steps, lr=cfg.grpo_lr, group_size=cfg.grpo_group_size,
                  scale_rewards=cfg.grpo_scale_rewards, per_token=cfg.grpo_per_token)
        return train_grpo_lm(policy, ref, rm, task, cfg.beta, **kw, **common)
    kw = dict(steps=cfg.online_dpo_steps, lr=cfg.online_dpo_lr, per_token=cfg.dpo_per_token)
    return train_online_dpo_lm(policy, ref, rm, task, cfg.beta, loss_type=cfg.dpo_loss_type, **kw, **common)


def run_pipeline(cfg: LMConfig | None = None, stages=("sft", "rm", "rlhf", "dpo"), echo=print) -> PipelineResult:
    """SFT → preferences → reward model → RLHF and DPO (optionally online DPO), with exact evaluation.

    ``stages`` is a subset of ``("sft", "rm", "rlhf", "dpo", "online-dpo", "grpo")`` ("sft" always runs);
    "rlhf", "online-dpo" and "grpo" need "rm". Each stage is :func:`train_stage`. Returns a
    :class:`PipelineResult` whose ``rows`` are :func:`summary_rows`.
    """
    from . import distributed

    cfg = cfg or LMConfig()
    if not distributed.is_main():  # under torchrun every rank trains; rank 0 reports
        echo = lambda *a, **k: None  # noqa: E731
    bad = set(stages) - set(STAGES)
    if bad:
        raise ValueError(f"unknown stages {sorted(bad)}")
    if {"rlhf", "online-dpo", "grpo"} & set(stages) and "rm" not in stages:
        raise ValueError("stages 'rlhf', 'online-dpo' and 'grpo' need the 'rm' stage")
    task = build_task(cfg)
    res = PipelineResult(cfg, task)

    r = train_stage("sft", cfg, task)
    res.histories["sft"], res.timings["sft"] = r.history, r.wall_s
    res.info.update(
        n_params=count_parameters(r.model), device=str(_device_of(r.model)), sft_tokens_per_s=r.tokens_per_s
    )
    ref = res.models["sft"] = clone(r.model)
    echo(
        f"sft: {cfg.sft_steps} steps in {r.wall_s:.1f}s ({r.tokens_per_s:,.0f} tokens/s)"
        + (f", KL(pi_data||pi_ref) = {r.history[-1]['sft/kl_data']:.4f}" if r.history else "")
    )
    evaluator = ExactEvaluator(ref, task, cfg.beta)
    prefs = res.models["prefs"] = make_preferences(ref, task, cfg.pairs_per_prompt, seed=cfg.seed + 1)
    prefs_idx = prefs.as_indices(task.vocab) if evaluator.exact else None
    echo(f"preferences: {len(prefs)} pairs sampled from pi_ref, labelled by Bradley-Terry on r*")

    rm = None
    for stage in STAGES[1:]:
        if stage not in stages:
            continue
        r = train_stage(stage, cfg, task, ref=ref, prefs=prefs, rm=rm, evaluator=evaluator)
        res.models[stage], res.histories[stage], res.timings[stage] = r.model, r.history, r.wall_s
        if stage == "rm":
            rm = r.model.eval()
            h = r.history[-1]
            echo(
                f"reward model: {cfg.rm_steps} steps in {r.wall_s:.1f}s, "
                f"held-out accuracy {h['eval/accuracy']:.3f}, "
                f"agreement with r* {h['eval/true_accuracy']:.3f}"
            )
        else:
            what = {"rlhf": f"rlhf ({cfg.rlhf_method})", "dpo": f"dpo ({cfg.dpo_loss_type})",
                    "grpo": f"grpo (scale_rewards={cfg.grpo_scale_rewards})"}.get(stage, stage)
            steps = getattr(cfg, stage.replace("-", "_") + "_steps")
            echo(f"{what}: {steps} steps in {r.wall_s:.1f}s")
    rm_table = rm.table(task) if (rm is not None and evaluator.exact) else None
    res.rows = summary_rows(evaluator, res.models, prefs_idx, rm_table)
    return res


def summary_rows(evaluator: ExactEvaluator, models: dict, prefs_idx=None, rm_table=None) -> list[dict]:
    """One row per policy (π_ref, each trained policy, π*, and π*_RM ∝ π_ref·exp(r_φ/β) given the reward
    model's table): E r*, KL(π‖π_ref), KL(π‖π*), J, KL(π‖π*_RM), and the displacement measured on the offline
    preference pairs (Δ mean log π(y_w), Δ mean log π(y_l), Δ mass on neither, all since π_ref)."""
    from .exact import exact_metrics

    pre = "exact/" if evaluator.exact else "mc/"
    star_rm = None
    if rm_table is not None:
        star_rm = optimal_log_policy(np.exp(evaluator.ref_logp), rm_table, evaluator.beta)

    def row(name, logp, m):
        r = {
            "policy": name,
            "reward": m[pre + "reward"],
            "kl_ref": m[pre + "kl_ref"],
            "kl_star": m[pre + "kl_star"],
            "objective": m[pre + "objective"],
        }
        if star_rm is not None and logp is not None:
            r["kl_star_rm"] = float(np.mean(kl_divergence_logspace(logp, star_rm)))
        if prefs_idx is not None and logp is not None:
            x, w, l = prefs_idx.T
            ref = evaluator.ref_logp
            r.update(
                {
                    "d_logp_chosen": float(np.mean(logp[x, w] - ref[x, w])),
                    "d_logp_rejected": float(np.mean(logp[x, l] - ref[x, l])),
                    "d_mass_neither": float(
                        np.mean(np.exp(ref[x, w]) + np.exp(ref[x, l]) - np.exp(logp[x, w]) - np.exp(logp[x, l]))
                    ),
                }
            )
        return r

    rows = []
    for name in STAGES:  # every policy stage, in pipeline order
        if name == "rm" or name not in models:
            continue
        label = "pi_ref (SFT)" if name == "sft" else name
        if not evaluator.exact:
            rows.append(row(label, None, evaluator.evaluate(models[name])))
            continue
        logp = evaluator.log_policy(models[name])
        rows.append(row(label, logp, exact_metrics(logp, evaluator.ref_logp, evaluator.reward, evaluator.beta)))
    if evaluator.exact:
        for label, logp in (("pi* (exact)", evaluator.star_logp), ("pi*_RM (exact)", star_rm)):
            if logp is not None:
                rows.append(row(label, logp, exact_metrics(logp, evaluator.ref_logp, evaluator.reward, evaluator.beta)))
    return rows


def _cell(v) -> str:
    """A table number with 4 decimals; "-0.0000" (a tiny negative) reads 0.0000, a missing value "n/a"."""
    if v is None or not np.isfinite(v):
        return "n/a"
    text = f"{v:.4f}"
    return "0.0000" if text == "-0.0000" else text


def format_summary(rows: list[dict], beta: float, exact: bool = True) -> str:
    """The summary table as text, with a legend (d columns: change since π_ref on the offline preference
    pairs)."""
    tag = "exact" if exact else "Monte-Carlo"
    cols = [
        ("E[r*]", "reward"),
        ("KL(pi||pi_ref)", "kl_ref"),
        ("KL(pi||pi*)", "kl_star"),
        ("J", "objective"),
        ("KL(pi||pi*_RM)", "kl_star_rm"),
        ("d logp(y_w)", "d_logp_chosen"),
        ("d logp(y_l)", "d_logp_rejected"),
        ("d mass(other)", "d_mass_neither"),
    ]
    cols = [(h, k) for h, k in cols if any(k in r for r in rows)]
    cells = [[_cell(r.get(k)) for _, k in cols] for r in rows]
    width = [max([len(h)] + [len(c[j]) for c in cells]) for j, (h, _) in enumerate(cols)]
    name_w = max([len("policy")] + [len(r["policy"]) for r in rows])
    lines = [
        f"summary ({tag} evaluation over all responses), beta = {beta:g}",
        f"{'policy':<{name_w}}  " + "  ".join(f"{h:>{w}}" for (h, _), w in zip(cols, width, strict=True)),
    ]
    for r, c in zip(rows, cells, strict=True):
        lines.append(f"{r['policy']:<{name_w}}  " + "  ".join(f"{x:>{w}}" for x, w in zip(c, width, strict=True)))
    lines.append("J = E[r*] - beta*KL(pi||pi_ref), the objective RLHF and DPO maximise (largest at pi*)")
    if any(k.startswith("d_") for _, k in cols):
        lines.append("d = change since pi_ref, averaged over the offline preference pairs; "
                     "other = responses in neither role")
    return "\n".join(lines)
