"""Differentiable policies over a discrete response set, shared by the RL loops (ch. 3), DPO (ch. 4–5) and the
displacement experiments (ch. 6).

Every policy is a ``torch.nn.Module`` whose :meth:`log_probs` returns log π_θ(y|x) as a float64 tensor of shape
(n_prompts, n_responses), responses on the last axis. Where π_ref(y|x) = 0 the reference log-prob is −inf and the
policy keeps probability exactly 0 there (the support of π_θ is the support of π_ref).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import as_float_array, check_distribution

__all__ = ["TabularPolicy", "LogLinearPolicy", "make_policy", "TrainedPolicy"]


def _ref_logp(pi_ref) -> torch.Tensor:
    p = check_distribution(pi_ref, "pi_ref")
    if p.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p.shape}")
    with np.errstate(divide="ignore"):
        return torch.as_tensor(np.log(p), dtype=torch.float64)


class TabularPolicy(torch.nn.Module):
    """π_θ(y|x) = softmax(z_x)_y with one free logit per (prompt, response), initialised at log π_ref.

    Off π_ref's support the logit is fixed at −inf (masked), so π_θ stays 0 there.
    """

    def __init__(self, pi_ref):
        super().__init__()
        ref = _ref_logp(pi_ref)
        self.register_buffer("mask", torch.isfinite(ref))
        self.logits = torch.nn.Parameter(torch.where(self.mask, ref, torch.zeros_like(ref)))

    def log_probs(self) -> torch.Tensor:  # (n_prompts, n_responses)
        z = self.logits.masked_fill(~self.mask, float("-inf"))
        return torch.log_softmax(z, dim=-1)


class LogLinearPolicy(torch.nn.Module):
    """π_θ(y|x) ∝ π_ref(y|x)·exp(θᵀφ(x, y)), with one parameter vector θ ∈ R^d shared by all prompts.

    ``features`` φ has shape (n_prompts, n_responses, d). θ starts at 0, so π_θ starts at π_ref.
    """

    def __init__(self, pi_ref, features, theta=None):
        super().__init__()
        ref = _ref_logp(pi_ref)
        phi = as_float_array(features, "features", ndim=3)
        if phi.shape[:2] != tuple(ref.shape):
            raise ValueError(f"shape mismatch: features has shape {phi.shape} but pi_ref has shape "
                             f"{tuple(ref.shape)}; expected (n_prompts, n_responses, d)")
        if phi.shape[2] == 0:
            raise ValueError("features has no columns (d = 0): a log-linear policy needs at least one feature "
                             "(with none, π stays π_ref)")
        self.register_buffer("ref_logp", ref)
        self.register_buffer("features", torch.as_tensor(phi))
        d = phi.shape[-1]
        theta0 = torch.zeros(d, dtype=torch.float64) if theta is None else torch.as_tensor(
            as_float_array(theta, "theta", ndim=1))
        if theta0.shape != (d,):
            raise ValueError(f"theta must have shape ({d},), got {tuple(theta0.shape)}")
        self.theta = torch.nn.Parameter(theta0.clone())

    def log_probs(self) -> torch.Tensor:  # (n_prompts, n_responses)
        return torch.log_softmax(self.ref_logp + self.features @ self.theta, dim=-1)


def make_policy(pi_ref, features=None) -> torch.nn.Module:
    """A :class:`TabularPolicy` at π_ref, or a :class:`LogLinearPolicy` at π_ref when ``features`` is given."""
    return TabularPolicy(pi_ref) if features is None else LogLinearPolicy(pi_ref, features)


@dataclass
class TrainedPolicy:
    """What a training loop returns: the trained module and its per-step history.

    ``model`` is the torch module; ``policy`` (alias ``pi``) and ``logp`` read π_θ and log π_θ off it as
    (n_prompts, n_responses) float64 arrays; ``curve(key)`` is one logged metric along training.
    """

    model: torch.nn.Module
    history: list = field(default_factory=list)

    @property
    def pi(self) -> np.ndarray:
        """π_θ as a (n_prompts, n_responses) array of probabilities."""
        with torch.no_grad():
            return self.model.log_probs().exp().numpy()

    @property
    def policy(self) -> np.ndarray:
        """π_θ as a (n_prompts, n_responses) array of probabilities (the same as ``.pi``)."""
        return self.pi

    @property
    def logp(self) -> np.ndarray:
        """log π_θ, (n_prompts, n_responses), −inf off π_ref's support."""
        with torch.no_grad():
            return self.model.log_probs().numpy()

    def curve(self, key: str) -> np.ndarray:
        """One metric along training as an array, e.g. ``result.curve("kl/to_optimal")``."""
        return np.array([h[key] for h in self.history], dtype=np.float64)
