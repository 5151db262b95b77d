"""A decoder-only transformer in the spirit of nanoGPT (Karpathy), small enough to train on a laptop CPU.

One config dataclass (:class:`GPTConfig`) with documented fields; :class:`GPT` maps token ids (B, T) to
next-token logits (B, T, vocab_size). Pre-LayerNorm blocks (Radford et al. 2019, GPT-2), learned absolute
positions, causal self-attention through ``torch.nn.functional.scaled_dot_product_attention``, tied
input/output embeddings.

Presets: :func:`tiny_config` (about 100k parameters, the CPU default) and :func:`scale_config` (about 25M
parameters, for a GPU).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import check_positive_ints, fields_of

__all__ = ["GPTConfig", "GPT", "tiny_config", "scale_config", "count_parameters"]


@dataclass
class GPTConfig:
    """Hyper-parameters of :class:`GPT`."""

    vocab_size: int = 10
    """Number of token ids, special tokens included (the synthetic language: V content tokens + BOS + SEP)."""
    block_size: int = 16
    """Longest sequence the model accepts (size of the learned position table)."""
    n_layer: int = 2
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 64
    """Width of the residual stream."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches (0 keeps training deterministic)."""
    bias: bool = True
    """Biases in the linear layers and LayerNorms."""

    def __post_init__(self):
        names = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        check_positive_ints("GPTConfig.", **fields_of(self, names))
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_head={self.n_head} must divide n_embd={self.n_embd}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def tiny_config(vocab_size: int = 10, block_size: int = 16) -> GPTConfig:
    """The CPU default: 2 layers, 4 heads, width 64 (about 100k parameters)."""
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=4, n_embd=64)


def scale_config(vocab_size: int = 34, block_size: int = 16) -> GPTConfig:
    """The GPU preset: 8 layers, 8 heads, width 512 (about 25M parameters)."""
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=8, n_head=8, n_embd=512)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


class CausalSelfAttention(nn.Module):
    """softmax(Q Kᵀ/√d + causal mask) V over ``n_head`` heads (Vaswani et al. 2017)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, C = h.shape
        q, k, v = self.qkv(h).split(C, dim=2)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)

    def attend(self, h: torch.Tensor, past: list | None = None) -> tuple[torch.Tensor, list]:
        """Attention of new positions ``h`` (B, T, C) after a cache ``past`` (inference); returns the output
        (B, T, C) and the cache including the new positions.

        The cache is a list of segments (keys, values), each (B_s, nh, T_s, hd) with B_s dividing B: row j of a
        segment is the context of rows j·r … (j+1)·r − 1 of the batch (r = B/B_s), so one prompt's keys serve all
        its continuations without being copied (a prefix tree: segment s holds the tokens of tree level s).
        Without ``past``: causal attention over the T positions, the cache is one segment. With ``past``: T = 1.
        """
        B, T, C = h.shape
        nh, hd = self.n_head, C // self.n_head
        q, k, v = self.qkv(h).split(C, dim=2)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, nh, hd).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if past is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
            return self.proj(y.transpose(1, 2).reshape(B, T, C)), [(k, v)]
        if T != 1:
            raise ValueError("attend: with a cache, feed one new position at a time")
        segments = list(past) + [(k, v)]
        qs = q.reshape(B, nh, hd) / math.sqrt(hd)
        scores = []
        for ks, _ in segments:  # q·k over each segment, the segment's row broadcast over its r children
            Bs = ks.shape[0]
            scores.append(torch.einsum("brhd,bhtd->brht", qs.view(Bs, B // Bs, nh, hd), ks).reshape(B, nh, -1))
        w = torch.softmax(torch.cat(scores, dim=-1), dim=-1)  # (B, nh, T_total)
        y, at = 0, 0
        for ks, vs in segments:
            Bs, Ts = ks.shape[0], ks.shape[2]
            ws = w[..., at : at + Ts].reshape(Bs, B // Bs, nh, Ts)
            y = y + torch.einsum("brht,bhtd->brhd", ws, vs).reshape(B, nh, hd)
            at += Ts
        return self.proj(y.reshape(B, 1, C)), segments


class Block(nn.Module):
    """h ← h + Attn(LN(h)); h ← h + MLP(LN(h)) (pre-LN, GPT-2)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln_1(h))
        return h + self.mlp(self.ln_2(h))

    def extend(self, h: torch.Tensor, past: list | None = None) -> tuple[torch.Tensor, list]:
        """:meth:`forward` of new positions after a key/value cache (see :meth:`CausalSelfAttention.attend`)."""
        a, kv = self.attn.attend(self.ln_1(h), past)
        h = h + a
        return h + self.mlp(self.ln_2(h)), kv


class GPT(nn.Module):
    """Decoder-only transformer: token ids (B, T) → logits (B, T, vocab_size).

    ``hidden(idx)`` gives the final (post-LayerNorm) hidden states (B, T, n_embd), used by the reward model's
    scalar head; ``forward(idx)`` applies the tied unembedding to them.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, n_embd) of the token ids ``idx`` (B, T)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        h = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h)  # (B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size); the unembedding is tied to ``wte``."""
        return self.hidden(idx) @ self.wte.weight.T  # (B, T, V)

    @torch.no_grad()
    def extend(self, idx: torch.Tensor, past: list | None = None) -> tuple[torch.Tensor, list]:
        """Incremental decoding with a key/value cache (inference only): logits (B, T, vocab_size) of the new
        token ids ``idx`` (B, T) that follow the positions cached in ``past`` (None: ``idx`` starts the
        sequence), and the cache of every position so far (per block, a list of key/value segments; see
        :meth:`CausalSelfAttention.attend`). With a cache, T must be 1.

        A batch B that is a multiple r of the cache's batch branches each cached row into r continuations
        (row j continues cached row j // r) without copying the cache: ``extend(prompts)`` then
        ``extend(tokens, cache)`` with V tokens per prompt scores every one-token continuation of every
        prompt. Up to float rounding, the logits are those of :meth:`forward` on the full sequences; this is
        how :func:`prefkit.lm.enumerate_log_probs` computes each prompt and each response prefix once.
        """
        B, T = idx.shape
        T0 = 0 if past is None else sum(k.shape[2] for k, _ in past[0])
        if T0 + T > self.config.block_size:
            raise ValueError(f"sequence length {T0 + T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T0, T0 + T, device=idx.device)
        h = self.wte(idx) + self.wpe(pos)  # (B, T, C); no dropout (inference)
        cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block.extend(h, None if past is None else past[i])
            cache.append(kv)
        return self.ln_f(h) @ self.wte.weight.T, cache  # (B, T, V)
