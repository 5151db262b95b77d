"""A seeded synthetic language with a known data distribution and a known true reward (chapter 7).

Tokens ``0..V-1`` are content tokens; ``V`` is BOS and ``V+1`` is SEP, so the model's vocabulary has V + 2
ids. A sequence is ``[BOS, x_1..x_P, SEP, y_1..y_L]``: a prompt x of P content tokens and a response y of
exactly L. Responses are numbered in base V, first token most significant: ``index(y) = Σ_t y_t·V^(L−1−t)``,
so a prompt has V^L responses and tabular arrays are ``logp[x, index(y)]`` like every other chapter.

**Data distribution** (what SFT imitates; known exactly). Autoregressive, per position t:

    logit_t(v | x, y_<t) = copy·1[v = x_t] + repeat·1[v = y_{t−1}] + noise·g_x[t, v],

with g ~ N(0, 1) drawn from the seed, so the data mostly *copies the prompt*.

**True reward**: r*(x, y) = s·Σ_t 1[y_t = (x_t + 1) mod V] (s = 2 by default), counting the positions that
*shift* the prompt by one. It disagrees with the data, so alignment has work to do and π* ∝ π_ref·exp(r*/β) is
far from π_ref. Preference labels are Bradley-Terry on r*; s = 2 makes a one-position difference a 0.88/0.12
label rather than 0.73/0.27, so a few thousand pairs carry enough signal.

Defaults: V = 8, L = 4 (4,096 responses per prompt), P = 4, 16 prompts. V = 16, L = 4 (65,536 responses) also
enumerates exactly, but costs 8× more CPU per evaluation; the default keeps the whole pipeline within minutes
on 2 cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_positive_ints, check_seed, fields_of

__all__ = [
    "SyntheticLanguage",
    "response_index",
    "index_to_response",
    "all_responses",
    "build_sequences",
    "response_log_probs",
    "response_token_log_probs",
    "sample_responses",
]


@dataclass
class SyntheticLanguage:
    """The task: prompts, a data distribution π_data(y|x) and a true reward r*(x, y)."""

    vocab: int = 8
    """V, the number of content tokens."""
    response_len: int = 4
    """L, the fixed response length (V^L responses per prompt)."""
    prompt_len: int = 4
    """P, the prompt length (must be ≥ L: the reward compares y_t with x_t)."""
    n_prompts: int = 16
    """Number of distinct prompts (drawn without repetition from the seed)."""
    copy: float = 2.0
    """Data logit bonus for copying the prompt token x_t."""
    repeat: float = 0.5
    """Data logit bonus for repeating the previous response token."""
    noise: float = 1.0
    """Scale of the seeded per-prompt Gaussian logit noise."""
    reward_scale: float = 2.0
    """s in r*(x, y) = s·Σ_t 1[y_t = (x_t + 1) mod V]."""
    seed: int = 0
    """Seed of the prompts and the noise."""

    def __post_init__(self):
        check_positive_ints(**fields_of(self, ("vocab", "response_len", "prompt_len", "n_prompts")))
        check_seed(self.seed)
        if self.vocab < 2:
            raise ValueError(f"vocab must be ≥ 2, got {self.vocab}")
        if self.prompt_len < self.response_len:
            raise ValueError(f"prompt_len ({self.prompt_len}) must be ≥ response_len ({self.response_len})")
        if self.n_prompts > self.vocab**self.prompt_len:
            raise ValueError(f"n_prompts={self.n_prompts} exceeds the {self.vocab**self.prompt_len} possible prompts")
        for name in ("copy", "repeat", "noise", "reward_scale"):
            if not np.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be finite")
        rng = np.random.default_rng(self.seed)
        codes = rng.choice(self.vocab**self.prompt_len, size=self.n_prompts, replace=False)
        self.prompts = index_to_response(codes, self.vocab, self.prompt_len)  # (n_prompts, P)
        self._g = rng.standard_normal((self.n_prompts, self.response_len, self.vocab))  # (n_prompts, L, V)

    # ---- token layout ----------------------------------------------------------------------------
    @property
    def bos(self) -> int:
        return self.vocab

    @property
    def sep(self) -> int:
        return self.vocab + 1

    @property
    def vocab_size(self) -> int:
        """Model vocabulary: V content tokens + BOS + SEP."""
        return self.vocab + 2

    @property
    def seq_len(self) -> int:
        """Length of a full sequence [BOS, x, SEP, y]."""
        return self.prompt_len + 2 + self.response_len

    @property
    def n_responses(self) -> int:
        return self.vocab**self.response_len

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()}

    def prompt_tokens(self) -> np.ndarray:
        """(n_prompts, P + 2) int array [BOS, x, SEP]."""
        n = self.n_prompts
        return np.concatenate([np.full((n, 1), self.bos), self.prompts, np.full((n, 1), self.sep)], axis=1)

    # ---- the known distributions -----------------------------------------------------------------
    def data_logits(self, prompt, prev) -> np.ndarray:
        """logit_t(v | x, y_<t) for every t: (..., L, V) given prompt ids (...,) and previous tokens (..., L).

        ``prev[..., t]`` is y_{t−1} (ignored at t = 0).
        """
        prompt = np.asarray(prompt)
        prev = np.asarray(prev)
        V, L = self.vocab, self.response_len
        v = np.arange(V)
        x = self.prompts[prompt][..., :L]  # (..., L)
        logit = self.copy * (v == x[..., None]) + self.noise * self._g[prompt]  # (..., L, V)
        rep = (v == prev[..., None]) * self.repeat  # (..., L, V)
        rep[..., 0, :] = 0.0
        return logit + rep

    def data_log_probs(self) -> np.ndarray:
        """Exact log π_data(y|x), (n_prompts, V^L), rows sum to 1 in probability."""
        Y = all_responses(self.vocab, self.response_len)  # (N, L)
        prev = np.concatenate([np.zeros((len(Y), 1), int), Y[:, :-1]], axis=1)  # (N, L)
        out = np.empty((self.n_prompts, len(Y)))
        for x in range(self.n_prompts):
            logit = self.data_logits(np.full(len(Y), x), prev)  # (N, L, V)
            logsm = logit - np.logaddexp.reduce(logit, axis=-1, keepdims=True)
            out[x] = np.take_along_axis(logsm, Y[..., None], axis=-1)[..., 0].sum(-1)
        return out

    def sample_data(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n draws (prompt uniform, y ~ π_data(·|x)): returns prompts (n,) and responses (n, L)."""
        prompt = rng.integers(self.n_prompts, size=n)
        y = np.zeros((n, self.response_len), dtype=np.int64)
        prev = np.zeros((n, self.response_len), dtype=np.int64)
        for t in range(self.response_len):
            logit = self.data_logits(prompt, prev)[:, t]  # (n, V)
            p = np.exp(logit - logit.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            y[:, t] = (rng.random((n, 1)) > np.cumsum(p, -1)).sum(-1).clip(max=self.vocab - 1)
            if t + 1 < self.response_len:
                prev[:, t + 1] = y[:, t]
        return prompt, y

    def true_reward(self, prompt, responses) -> np.ndarray:
        """r*(x, y) = s·Σ_t 1[y_t = (x_t + 1) mod V] for prompt ids (...,) and responses (..., L)."""
        x = self.prompts[np.asarray(prompt)][..., : self.response_len]
        return self.reward_scale * ((np.asarray(responses) == (x + 1) % self.vocab).sum(-1)).astype(np.float64)

    def true_reward_table(self) -> np.ndarray:
        """r*(x, y) for every prompt and response: (n_prompts, V^L)."""
        Y = all_responses(self.vocab, self.response_len)
        return np.stack([self.true_reward(np.full(len(Y), x), Y) for x in range(self.n_prompts)])


def response_index(responses, V: int) -> np.ndarray:
    """Base-V index Σ_t y_t·V^(L−1−t) of responses (..., L)."""
    y = np.asarray(responses, dtype=np.int64)
    L = y.shape[-1]
    return (y * V ** np.arange(L - 1, -1, -1)).sum(-1)


def index_to_response(index, V: int, L: int) -> np.ndarray:
    """Inverse of :func:`response_index`: indices (...,) → responses (..., L)."""
    idx = np.asarray(index, dtype=np.int64)
    return (idx[..., None] // V ** np.arange(L - 1, -1, -1)) % V


def all_responses(V: int, L: int) -> np.ndarray:
    """All V^L responses in index order, (V^L, L)."""
    return index_to_response(np.arange(V**L), V, L)


def build_sequences(task: SyntheticLanguage, prompt, responses, device=None) -> torch.Tensor:
    """Token ids [BOS, x, SEP, y] (B, P + 2 + L') for prompt ids (B,) and (partial) responses (B, L')."""
    pt = torch.as_tensor(task.prompt_tokens(), device=device)[torch.as_tensor(prompt, device=device)]
    return torch.cat([pt, torch.as_tensor(responses, device=device, dtype=pt.dtype)], dim=1)


def response_token_log_probs(model, task: SyntheticLanguage, prompt, responses) -> torch.Tensor:
    """log π_θ(y_t | x, y_<t) for every response position t, one forward pass: (B, L) differentiable.

    The policy's next-token distribution at a response position is the softmax over the V *content* tokens
    (the special tokens are never emitted), so the V^L response probabilities of a prompt sum to exactly 1.
    """
    y = torch.as_tensor(responses)
    dev = next(model.parameters()).device
    y = y.to(dev)
    seq = build_sequences(task, prompt, y, device=dev)  # (B, T)
    P1 = task.prompt_len + 1
    logits = model(seq[:, :-1])[:, P1:, : task.vocab]  # (B, L, V): position P+1+t predicts y_t
    logp = F.log_softmax(logits.double() if logits.dtype == torch.float64 else logits.float(), dim=-1)
    return logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)  # (B, L)


def response_log_probs(model, task: SyntheticLanguage, prompt, responses) -> torch.Tensor:
    """log π_θ(y|x) = Σ_t log π_θ(y_t | x, y_<t) (:func:`response_token_log_probs` summed): (B,) differentiable."""
    return response_token_log_probs(model, task, prompt, responses).sum(-1)


@torch.no_grad()
def sample_responses(
    model, task: SyntheticLanguage, prompt, generator: torch.Generator | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """y ~ π_θ(·|x) token by token (softmax over the content tokens): (B, L) long tensor."""
    dev = next(model.parameters()).device
    prompt = torch.as_tensor(prompt, device=dev)
    y = torch.zeros((len(prompt), 0), dtype=torch.long, device=dev)
    for _ in range(task.response_len):
        seq = build_sequences(task, prompt, y, device=dev)
        logits = model(seq)[:, -1, : task.vocab].float() / temperature  # (B, V)
        probs = torch.softmax(logits, dim=-1)
        if not bool(torch.isfinite(probs).all()):
            raise ValueError("sample_responses: the model's next-token probabilities are NaN or inf (its weights "
                             "diverged, e.g. a learning rate too large)")
        nxt = torch.multinomial(
            probs.cpu() if generator is not None and generator.device.type == "cpu" else probs,
            1,
            generator=generator,
        ).to(dev)
        y = torch.cat([y, nxt], dim=1)
    return y
