"""A tiny decoder-only transformer that carries the toy experiments to sequences (chapter 7).

Module map: ``model`` (GPTConfig, GPT, presets) · ``task`` (the seeded synthetic language, r*, sampling,
log-probs) · ``exact`` (enumeration of all V^L responses: π_θ, π_ref, π*, exact KLs; Monte-Carlo fallback) ·
``train`` (SFT, reward model, RLHF, DPO, online DPO, GRPO loops) · ``checkpoint`` (atomic save, weights-only load) ·
``distributed`` (the same loops under ``torchrun`` with DDP) · ``pipeline`` (LMConfig, run_pipeline, the summary
table) · ``plotting`` · ``cli`` (``python -m prefkit lm ...``).

The chapter's experiments and claims are in :mod:`prefkit.course.ch7_tiny_lm`.
"""

from .checkpoint import atomic_write, load_checkpoint, load_model, load_preferences, save_checkpoint, save_preferences
from .exact import (
    MAX_ENUMERATE,
    ExactEvaluator,
    enumerate_all_prompts,
    enumerate_log_probs,
    exact_metrics,
    monte_carlo_metrics,
    token_by_token_log_probs,
)
from .model import GPT, GPTConfig, count_parameters, scale_config, tiny_config
from .pipeline import (
    STAGES,
    LMConfig,
    PipelineResult,
    build_model,
    build_task,
    format_summary,
    run_pipeline,
    summary_rows,
    train_stage,
)
from .plotting import plot_lm_training
from .task import (
    SyntheticLanguage,
    all_responses,
    build_sequences,
    index_to_response,
    response_index,
    response_log_probs,
    response_token_log_probs,
    sample_responses,
)
from .train import (
    Preferences,
    RewardModel,
    TrainResult,
    adamw,
    autocast,
    clone,
    completion_log_probs,
    dpo_logps,
    make_preferences,
    resolve_device,
    reward_model_accuracy,
    train_dpo_lm,
    train_grpo_lm,
    train_online_dpo_lm,
    train_reward_model,
    train_rlhf_lm,
    train_sft,
    trainable_copy,
)

__all__ = [
    # model
    "GPTConfig", "GPT", "tiny_config", "scale_config", "count_parameters",
    # task
    "SyntheticLanguage", "response_index", "index_to_response", "all_responses", "build_sequences",
    "response_log_probs", "response_token_log_probs", "sample_responses",
    # exact evaluation
    "enumerate_log_probs", "enumerate_all_prompts", "token_by_token_log_probs", "exact_metrics",
    "monte_carlo_metrics", "ExactEvaluator",
    "MAX_ENUMERATE",
    # training loops
    "TrainResult", "RewardModel", "Preferences", "resolve_device", "autocast", "train_sft", "make_preferences",
    "train_reward_model", "train_rlhf_lm", "train_dpo_lm", "train_online_dpo_lm", "train_grpo_lm", "dpo_logps",
    "clone", "trainable_copy", "reward_model_accuracy", "completion_log_probs", "adamw",
    # checkpoints
    "save_checkpoint", "load_checkpoint", "load_model", "save_preferences", "load_preferences", "atomic_write",
    # pipeline
    "LMConfig", "PipelineResult", "build_task", "build_model", "STAGES", "train_stage", "run_pipeline",
    "summary_rows", "format_summary",
    # plotting
    "plot_lm_training",
]
