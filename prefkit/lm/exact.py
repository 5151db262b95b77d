"""Exact evaluation of a sequence policy by enumerating every response (chapter 7).

A prompt has V^L responses. Because the model is causal, the next-token distributions at every prefix of
length < L are all read off the V^(L−1) sequences ``[BOS, x, SEP, y_1..y_{L−1}]``: one forward pass of those
gives log π_θ(y|x) = Σ_t log π_θ(y_t | x, y_<t) for all V^L responses (V times cheaper than scoring each
response). With log π_θ and log π_ref as (n_prompts, V^L) float64 tables, every chapter-2 quantity is exact:
π* = optimal_policy(π_ref, r*, β), KL(π_θ‖π*), KL(π_θ‖π_ref), E_{π_θ}[r*] (:func:`exact_metrics`).

When V^L is too large to enumerate (the GPU "scale" preset), :func:`monte_carlo_metrics` estimates the same
numbers from samples; its keys start with ``mc/`` instead of ``exact/`` so the two are never confused.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import logsumexp

from ..closed_form import kl_divergence_logspace, optimal_log_policy
from .task import SyntheticLanguage, all_responses, build_sequences, response_log_probs, sample_responses

__all__ = [
    "enumerate_log_probs",
    "enumerate_all_prompts",
    "token_by_token_log_probs",
    "exact_metrics",
    "monte_carlo_metrics",
    "ExactEvaluator",
    "MAX_ENUMERATE",
]

MAX_ENUMERATE = 2**16
"""Largest V^L enumerated exactly; beyond it the evaluator falls back to Monte Carlo."""


@torch.no_grad()
def enumerate_log_probs(
    model, task: SyntheticLanguage, prompts=None, batch_size: int = 8192, cache: bool = True
) -> np.ndarray:
    """log π_θ(y|x) for every response of each prompt: (n, V^L) float64, responses in base-V index order.

    With ``cache`` (default, for a :class:`prefkit.lm.GPT`) the responses are scored as a tree: the prompt
    [BOS, x, SEP] runs once, then each level t feeds the V children of every length-(t−1) prefix after its
    parent's key/value cache (:meth:`prefkit.lm.GPT.extend`), so every prompt and every prefix is computed
    once: n·(P + 2 + V + … + V^(L−1)) token positions instead of n·V^(L−1)·(P + 2 + L − 1) (the tiny preset:
    590 instead of 4,608 per prompt). ``cache=False`` runs the V^(L−1) full sequences (any module mapping ids
    (B, T) → logits (B, T, ≥V)). Both agree to float rounding.

    Parameters
    ----------
    model : GPT (or, with ``cache=False``, any module mapping ids (B, T) → logits (B, T, ≥V))
    task : SyntheticLanguage
    prompts : prompt ids (n,), default all
    batch_size : sequences per forward pass (cache: leaves of the prefix tree per chunk of prompts)
    cache : score the prefix tree with a key/value cache

    Returns
    -------
    logp : (n, V^L) float64 array; ``np.exp(logp).sum(-1) == 1`` up to float rounding.
    """
    V, L = task.vocab, task.response_len
    if V**L > MAX_ENUMERATE:
        raise ValueError(f"V^L = {V**L} responses exceeds MAX_ENUMERATE={MAX_ENUMERATE}; use monte_carlo_metrics")
    prompts = np.arange(task.n_prompts) if prompts is None else np.asarray(prompts)
    with _eval_mode(model):
        if cache and hasattr(model, "extend"):
            return _enumerate_tree(model, task, prompts, batch_size)
        return _enumerate_sequences(model, task, prompts, batch_size)


@contextlib.contextmanager
def _eval_mode(*models):
    """Every model in eval mode (no dropout) inside the block, each back in its own mode after it: the policy
    π_θ is evaluated, not a dropout sample of it, even when a training loop hands over a model in training mode."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)


def _enumerate_tree(model, task: SyntheticLanguage, prompts: np.ndarray, batch_size: int) -> np.ndarray:
    """The prefix tree with a key/value cache (see :func:`enumerate_log_probs`)."""
    V, L = task.vocab, task.response_len
    dev = next(model.parameters()).device
    pt_all = torch.as_tensor(task.prompt_tokens(), device=dev)  # (n_prompts, P + 2)
    out = np.empty((len(prompts), V**L))
    per = max(1, batch_size // V ** (L - 1))
    tokens = torch.arange(V, device=dev)
    for start in range(0, len(prompts), per):
        chunk = torch.as_tensor(prompts[start : start + per], device=dev)
        logits, kv = model.extend(pt_all[chunk])  # the prompt, once: (n, P + 2, ·)
        lp = F.log_softmax(logits[:, -1, :V].double(), dim=-1)  # (n, V): log π(y_1 | x)
        for _ in range(1, L):  # feed every y_t after its cached prefix (base-V order: prefix j has children j·V + v)
            rows = lp.numel()  # the n·V^t prefixes (y_1..y_t): row j ends in y_t = j mod V after prefix j // V
            logits, kv = model.extend(tokens.repeat(rows // V)[:, None], kv)  # (rows, 1, ·): π(y_{t+1} | x, y_≤t)
            step = F.log_softmax(logits[:, -1, :V].double(), dim=-1).view(len(chunk), -1, V)  # (n, V^t, V)
            lp = (lp.reshape(len(chunk), -1, 1) + step).reshape(len(chunk), -1)  # (n, V^(t+1))
        out[start : start + len(chunk)] = lp.cpu().numpy()
    return out


def _enumerate_sequences(model, task: SyntheticLanguage, prompts: np.ndarray, batch_size: int) -> np.ndarray:
    """Every length-(L−1) prefix as a full sequence, one forward pass each (see :func:`enumerate_log_probs`)."""
    V, L = task.vocab, task.response_len
    dev = next(model.parameters()).device
    prefixes = torch.as_tensor(all_responses(V, L - 1) if L > 1 else np.zeros((1, 0), int), device=dev)  # (M, L-1)
    M = prefixes.shape[0]
    Y = torch.as_tensor(all_responses(V, L), device=dev)  # (N, L)
    owner = torch.arange(V**L, device=dev) // V  # the length-(L−1) prefix of each response
    P1 = task.prompt_len + 1
    out = np.empty((len(prompts), V**L))
    per = max(1, batch_size // M)
    for start in range(0, len(prompts), per):
        chunk = prompts[start : start + per]
        pr = np.repeat(chunk, M)
        seq = build_sequences(task, pr, prefixes.repeat(len(chunk), 1), device=dev)  # (len·M, P+2+L−1)
        logits = model(seq)[:, P1:, :V]  # (len·M, L, V)
        logsm = F.log_softmax(logits.double(), dim=-1).view(len(chunk), M, L, V)
        g = logsm[:, owner]  # (len, N, L, V)
        lp = g.gather(-1, Y.view(1, -1, L, 1).expand(len(chunk), -1, -1, -1)).squeeze(-1).sum(-1)  # (len, N)
        out[start : start + len(chunk)] = lp.cpu().numpy()
    return out


def enumerate_all_prompts(model, task: SyntheticLanguage, batch_size: int = 8192) -> np.ndarray:
    """:func:`enumerate_log_probs` for every prompt, (n_prompts, V^L) float64; under ``torchrun`` the prompts
    are split over the processes and the table gathered (every rank must call it; one process: the same as
    ``enumerate_log_probs(model, task)``)."""
    from . import distributed

    n, world = task.n_prompts, distributed.world_size()
    if world == 1 or n < world:
        return enumerate_log_probs(model, task, batch_size=batch_size)
    mine = np.arange(n)[distributed.shard(n)]
    lp = enumerate_log_probs(model, task, prompts=mine, batch_size=batch_size)
    return distributed.gather(torch.from_numpy(lp), n).numpy()


def exact_metrics(logp, ref_logp, reward, beta) -> dict:
    """Exact chapter-2 quantities of π_θ, averaged over prompts (uniform prompt distribution).

    Parameters
    ----------
    logp, ref_logp : (n_prompts, n_responses) float64 log π_θ, log π_ref
    reward : (n_prompts, n_responses) true reward r*
    beta : float > 0

    Returns
    -------
    dict with ``exact/reward`` = E_x E_{π_θ}[r*], ``exact/kl_ref`` = E_x KL(π_θ‖π_ref), ``exact/kl_star`` =
    E_x KL(π_θ‖π*) with π* = π_ref·exp(r*/β)/Z (Rafailov et al. 2023, App. A.1), ``exact/objective`` = E r* −
    β·KL(π_θ‖π_ref) = β·log Z − β·KL(π_θ‖π*) (Gibbs), ``exact/objective_max`` = β·E log Z.
    """
    # renormalise in log space (float32 models sum to 1 only to ~1e-6); KLs from logs, so a π* with entries
    # that underflow in exp (small β) still gives finite, exact KLs
    logp = np.asarray(logp, dtype=np.float64)
    logp = logp - logsumexp(logp, axis=-1, keepdims=True)
    ref_logp = np.asarray(ref_logp, dtype=np.float64)
    ref_logp = ref_logp - logsumexp(ref_logp, axis=-1, keepdims=True)
    log_star = optimal_log_policy(np.exp(ref_logp), reward, beta)
    er = float(np.mean((np.exp(logp) * reward).sum(-1)))
    kl_ref = float(np.mean(kl_divergence_logspace(logp, ref_logp)))
    kl_star = float(np.mean(kl_divergence_logspace(logp, log_star)))
    log_Z = logsumexp(ref_logp + np.asarray(reward) / beta, axis=-1)
    return {
        "exact/reward": er,
        "exact/kl_ref": kl_ref,
        "exact/kl_star": kl_star,
        "exact/objective": er - beta * kl_ref,
        "exact/objective_max": float(beta * np.mean(log_Z)),
    }


@torch.no_grad()
def monte_carlo_metrics(
    model, ref_model, task: SyntheticLanguage, beta: float, n_samples: int = 256, seed: int = 0
) -> dict:
    """Monte-Carlo estimates (keys ``mc/...``) of the same quantities when V^L is too large to enumerate.

    With y ~ π_θ: E r* ≈ mean r*, KL(π_θ‖π_ref) ≈ mean(log π_θ − log π_ref). With y' ~ π_ref, log Z ≈ log mean
    exp(r*(y')/β) (biased low for finite samples), and KL(π_θ‖π*) ≈ mean(log π_θ − log π_ref − r*/β) + log Z.
    ``n_samples`` responses per prompt.
    """
    g = torch.Generator().manual_seed(seed)
    rs, kls, kls_star = [], [], []
    with _eval_mode(model, ref_model):  # π_θ and π_ref themselves, not dropout samples of them
        for x in range(task.n_prompts):
            prompt = np.full(n_samples, x)
            y = sample_responses(model, task, prompt, generator=g)
            y_ref = sample_responses(ref_model, task, prompt, generator=g)
            lr = (response_log_probs(model, task, prompt, y)
                  - response_log_probs(ref_model, task, prompt, y)).double()
            r = torch.as_tensor(task.true_reward(prompt, y.cpu().numpy()))
            r_ref = torch.as_tensor(task.true_reward(prompt, y_ref.cpu().numpy()))
            log_Z = torch.logsumexp(r_ref / beta, 0) - np.log(n_samples)
            rs.append(r.mean().item())
            kls.append(lr.mean().item())
            kls_star.append((lr.cpu() - r / beta).mean().item() + log_Z.item())
    er, kl = float(np.mean(rs)), float(np.mean(kls))
    return {
        "mc/reward": er,
        "mc/kl_ref": kl,
        "mc/kl_star": float(np.mean(kls_star)),
        "mc/objective": er - beta * kl,
    }


class ExactEvaluator:
    """Holds what does not change during training (log π_ref, r*, π*, log π_init) and evaluates a model.

    ``evaluate(model, preferences=None)`` returns :func:`exact_metrics` and, given preference pairs as (m, 3)
    (prompt, chosen index, rejected index), the :func:`prefkit.displacement_step` keys measured against the
    log-policy at construction time. Falls back to :func:`monte_carlo_metrics` when V^L > MAX_ENUMERATE.
    """

    def __init__(self, ref_model, task: SyntheticLanguage, beta: float, init_model=None, batch_size: int = 8192):
        self.task, self.beta, self.batch_size = task, float(beta), batch_size
        self.ref_model = ref_model
        self.exact = task.n_responses <= MAX_ENUMERATE
        if self.exact:
            self.ref_logp = enumerate_all_prompts(ref_model, task, batch_size=batch_size)
            self.reward = task.true_reward_table()
            self.star_logp = optimal_log_policy(np.exp(self.ref_logp), self.reward, beta)
            self.init_logp = (
                self.ref_logp if init_model is None else enumerate_all_prompts(init_model, task, batch_size)
            )

    def log_policy(self, model) -> np.ndarray:
        """log π_θ for every prompt and response (n_prompts, V^L); split over the processes under torchrun."""
        return enumerate_all_prompts(model, self.task, batch_size=self.batch_size)

    def evaluate(self, model, preferences=None) -> dict:
        if not self.exact:
            return monte_carlo_metrics(model, self.ref_model, self.task, self.beta)
        logp = self.log_policy(model)
        out = exact_metrics(logp, self.ref_logp, self.reward, self.beta)
        if preferences is not None and len(preferences):
            from ..displacement_tracking import displacement_step

            out.update(displacement_step(logp, self.init_logp, preferences))
        return out


@torch.no_grad()
def token_by_token_log_probs(model, task: SyntheticLanguage, prompt, responses) -> np.ndarray:
    """The slow reference: Σ_t log π_θ(y_t | x, y_<t) with one forward pass per prefix, (B,) float64."""
    prompt = np.asarray(prompt)
    y = np.asarray(responses)
    pt = task.prompt_tokens()
    dev = next(model.parameters()).device
    out = np.zeros(len(prompt))
    with _eval_mode(model):
        for i in range(len(prompt)):
            for t in range(task.response_len):
                seq = torch.as_tensor(np.concatenate([pt[prompt[i]], y[i, :t]]), device=dev)[None]
                logits = model(seq)[0, -1, : task.vocab].double()
                out[i] += torch.log_softmax(logits, -1)[int(y[i, t])].item()
    return out
