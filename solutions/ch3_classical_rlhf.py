"""Chapter 3 exercises: reference solutions and their checkers (for instructors; notebook 03 imports them).

Exercise 1: implement the REINFORCE loss −mean(logp·A) with A treated as a constant.
Exercise 2: implement RLOO advantages A_i = r_i − mean_{j≠i} r_j.
Each ``check_*`` compares values and autograd gradients with :mod:`prefkit.rl` and raises ``AssertionError``
with a hint on the first mismatch.
"""

import torch

import prefkit

__all__ = ["reinforce_loss", "rloo_advantages", "check_reinforce_loss", "check_rloo_advantages"]


def reinforce_loss(logp, advantages):
    """Reference solution: the score-function surrogate; detach A so no gradient flows into it."""
    return -(logp * advantages.detach()).mean()


def rloo_advantages(rewards):
    """Reference solution: each sample's baseline is the mean of the other k − 1 rewards."""
    k = rewards.shape[-1]
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)


def check_reinforce_loss(fn) -> bool:
    """Check a student's ``fn(logp, advantages) -> scalar loss`` (value and gradients). Returns True or
    raises."""
    g = torch.Generator().manual_seed(0)
    for shape in [(5,), (3, 4)]:
        logp = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        adv = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        got = fn(logp, adv)
        want = prefkit.reinforce_loss(logp, adv)
        assert got.ndim == 0, f"shape {tuple(shape)}: the loss must be a scalar (take the mean)"
        assert torch.allclose(got, want), f"loss {got.item():.6g}, expected {want.item():.6g}"
        got.backward()
        assert torch.allclose(logp.grad, -adv.detach() / logp.numel()), "gradient w.r.t. logp is not −A/N"
        assert adv.grad is None or torch.all(adv.grad == 0), "no gradient may flow into A: detach it"
    print("check_reinforce_loss: all cases pass")
    return True


def check_rloo_advantages(fn) -> bool:
    """Check a student's ``fn(rewards (B, k)) -> advantages (B, k)``. Returns True or raises."""
    g = torch.Generator().manual_seed(1)
    for k in (2, 3, 8):
        r = torch.randn(4, k, generator=g, dtype=torch.float64)
        got = fn(r)
        want = prefkit.rloo_advantages(r)
        assert got.shape == want.shape, f"k={k}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        assert torch.allclose(got, want), f"k={k}: got {got}, expected {want}"
    print("check_rloo_advantages: all cases pass")
    return True
