"""Chapter 4 exercises: reference solutions and their checkers (for instructors; notebook 04 imports them).

Exercise 1: implement the per-pair DPO loss −log σ(β·[(logp_w − ref_w) − (logp_l − ref_l)]) in numpy, stably.
Exercise 2: implement its gradient with respect to logp_chosen, −β·σ(−margin) (Rafailov et al. 2023, §4).
Each ``check_*`` compares a student's function with :func:`prefkit.preference_loss` (and torch autograd) on
random batches, including margins of ±800 where a naive log(sigmoid) overflows, and raises ``AssertionError``
with a hint.
"""

import numpy as np
import torch

import prefkit

__all__ = ["dpo_loss", "dpo_grad_logp_chosen", "check_dpo_loss", "check_dpo_grad"]


def dpo_loss(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta):
    """Reference solution: −log σ(m) = log(1 + e^{−m}) = logaddexp(0, −m), with m = β·Δ log-ratio."""
    logratio_chosen = np.asarray(logp_chosen) - ref_logp_chosen
    logratio_rejected = np.asarray(logp_rejected) - ref_logp_rejected
    margin = beta * (logratio_chosen - logratio_rejected)
    return np.logaddexp(0.0, -margin)


def dpo_grad_logp_chosen(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta):
    """Reference solution: ∂loss/∂logp_chosen = −β·σ(−m), computed as −β·exp(−logaddexp(0, m))."""
    logratio_chosen = np.asarray(logp_chosen) - ref_logp_chosen
    logratio_rejected = np.asarray(logp_rejected) - ref_logp_rejected
    margin = beta * (logratio_chosen - logratio_rejected)
    return -beta * np.exp(-np.logaddexp(0.0, margin))


def _cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        yield "random batch", [-np.abs(rng.normal(0, 3, 8)) for _ in range(4)], float(rng.uniform(0.05, 2))
    big = np.array([0.0, 0.0])
    yield "margins of ±800 (a naive log(sigmoid) overflows)", [big, np.array([-800.0, 800.0]), big, big], 1.0


def check_dpo_loss(fn) -> bool:
    """Check ``fn(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta) -> (B,) losses``."""
    for name, (lw, ll, rw, rl), beta in _cases():
        got = np.asarray(fn(lw, ll, rw, rl, beta), dtype=float)
        want = prefkit.preference_loss(lw, ll, rw, rl, beta).numpy()
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape} (one per pair)"
        assert np.all(np.isfinite(got)), f"{name}: non-finite losses {got}; use np.logaddexp(0, -margin)"
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12), f"{name}: got {got}, expected {want}"
    print("check_dpo_loss: all cases pass")
    return True


def check_dpo_grad(fn) -> bool:
    """Check ``fn(...) -> (B,)`` gradient of the summed loss w.r.t. logp_chosen against torch autograd."""
    for name, (lw, ll, rw, rl), beta in _cases():
        t = torch.tensor(lw, dtype=torch.float64, requires_grad=True)
        prefkit.preference_loss(t, ll, rw, rl, beta).sum().backward()
        got = np.asarray(fn(lw, ll, rw, rl, beta), dtype=float)
        assert np.allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-14), \
            f"{name}: got {got}, autograd says {t.grad.numpy()} (hint: the sign, and sigma(-margin))"
    print("check_dpo_grad: all cases pass")
    return True
