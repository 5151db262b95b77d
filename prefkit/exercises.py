"""Checkers for the notebooks' exercises (chapters 2–5; chapter 1's are in prefkit.course.ch1_bradley_terry).

Each ``check_*`` takes a student's function, compares it with an exact answer computed by the chapter's own
module (a closed form, the library's implementation, torch autograd, or a brute-force fit) and raises
``AssertionError`` with a hint on the first mismatch. The reference solutions live apart, in
``solutions/chN_*.py``, so an instructor can remove them without breaking the notebooks: a notebook imports a
reference solution only when the student's stub is still unimplemented.
"""

from __future__ import annotations

import numpy as np
import torch

from .closed_form import log_partition, optimal_policy
from .rl import reinforce_loss, rloo_advantages

__all__ = [
    "check_log_partition",
    "check_optimal_policy",
    "check_reinforce_loss",
    "check_rloo_advantages",
]


# ---------------------------------------------------------------------------------------------------------
# Chapter 2: the optimal policy


def _policy_cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.dirichlet(np.ones(6), size=3)
        yield "random instance", p, rng.normal(size=(3, 6)), float(rng.uniform(0.1, 3))
    p = np.array([[0.5, 0.0, 0.5], [0.2, 0.8, 0.0]])
    yield "pi_ref with zeros", p, np.array([[1.0, 50.0, 0.0], [0.0, 1.0, 9.0]]), 0.5
    yield "r/beta = 1e6 (a naive exp overflows)", np.full((1, 3), 1 / 3), np.array([[1e6, 0.0, -1e6]]), 1.0


def check_log_partition(fn) -> bool:
    """Check log Z(x) = log Σ_y π_ref(y|x)·exp(r(x, y)/β) against :func:`prefkit.log_partition`.

    Parameters
    ----------
    fn : callable
        ``fn(pi_ref (n_prompts, n_responses), reward (same), beta) -> log_Z (n_prompts,)``.

    Returns
    -------
    bool
        True; raises ``AssertionError`` on random instances, π_ref with zeros, or r/β = 1e6 (naive exp
        overflows).
    """
    for name, p, r, beta in _policy_cases():
        got = np.asarray(fn(p, r, beta), dtype=float)
        want = log_partition(p, r, beta)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape} (one per prompt)"
        assert np.all(np.isfinite(got)), f"{name}: got non-finite values {got}; use logsumexp"
        assert np.allclose(got, want, rtol=1e-10, atol=1e-10), f"{name}: got {got}, expected {want}"
    print("check_log_partition: all cases pass")
    return True


def check_optimal_policy(fn) -> bool:
    """Check π* = π_ref·exp(r/β)/Z against :func:`prefkit.optimal_policy` (same cases as
    :func:`check_log_partition`).

    Parameters
    ----------
    fn : callable
        ``fn(pi_ref, reward, beta) -> pi_star`` (n_prompts, n_responses).

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch or on mass where π_ref is 0.
    """
    for name, p, r, beta in _policy_cases():
        got = np.asarray(fn(p, r, beta), dtype=float)
        want = optimal_policy(p, r, beta)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        assert np.all(np.isfinite(got)), f"{name}: non-finite values; work in log space"
        assert np.allclose(got, want, atol=1e-10), f"{name}: got {got}, expected {want}"
        assert np.all(got[p == 0] == 0), f"{name}: pi* must be 0 where pi_ref is 0"
    print("check_optimal_policy: all cases pass")
    return True


# ---------------------------------------------------------------------------------------------------------
# Chapter 3: classical RLHF


def check_reinforce_loss(fn) -> bool:
    """Check the REINFORCE surrogate −mean(logp·A), A a constant, against :func:`prefkit.reinforce_loss`.

    Parameters
    ----------
    fn : callable
        ``fn(logp, advantages) -> scalar loss`` (torch tensors of any equal shape).

    Returns
    -------
    bool
        True; raises ``AssertionError`` if the value differs, the gradient w.r.t. logp is not −A/N, or a
        gradient flows into A.
    """
    g = torch.Generator().manual_seed(0)
    for shape in [(5,), (3, 4)]:
        logp = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        adv = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        got = fn(logp, adv)
        want = reinforce_loss(logp, adv)
        assert got.ndim == 0, f"shape {tuple(shape)}: the loss must be a scalar (take the mean)"
        assert torch.allclose(got, want), f"loss {got.item():.6g}, expected {want.item():.6g}"
        got.backward()
        assert torch.allclose(logp.grad, -adv.detach() / logp.numel()), "gradient w.r.t. logp is not −A/N"
        assert adv.grad is None or torch.all(adv.grad == 0), "no gradient may flow into A: detach it"
    print("check_reinforce_loss: all cases pass")
    return True


def check_rloo_advantages(fn) -> bool:
    """Check RLOO advantages A_i = r_i − mean_{j≠i} r_j against :func:`prefkit.rloo_advantages`.

    Parameters
    ----------
    fn : callable
        ``fn(rewards (B, k)) -> advantages (B, k)`` (torch).

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch for k = 2, 3, 8.
    """
    g = torch.Generator().manual_seed(1)
    for k in (2, 3, 8):
        r = torch.randn(4, k, generator=g, dtype=torch.float64)
        got, want = fn(r), rloo_advantages(r)
        assert got.shape == want.shape, f"k={k}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        assert torch.allclose(got, want), f"k={k}: got {got}, expected {want}"
    print("check_rloo_advantages: all cases pass")
    return True
