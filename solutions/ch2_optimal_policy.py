"""Chapter 2 exercises: reference solutions and their checkers (for instructors; notebook 02 imports them).

Exercise 1: implement log Z(x) = log Σ_y π_ref(y|x)·exp(r(x, y)/β) stably (logsumexp over π_ref's support).
Exercise 2: implement π* = π_ref·exp(r/β)/Z in log space.
Each ``check_*`` compares a student's function with :mod:`prefkit.optimal_policy` on random instances, on an
instance with π_ref = 0 entries and on one with r/β = 1e6 (where a naive exp overflows), and raises
``AssertionError`` with a hint on the first mismatch.
"""

import numpy as np

import prefkit

__all__ = ["log_partition", "optimal_policy", "check_log_partition", "check_optimal_policy"]


def log_partition(pi_ref, reward, beta):
    """Reference solution: log Z by logsumexp, with log 0 = −inf masking responses off π_ref's support."""
    pi_ref, reward = np.asarray(pi_ref, dtype=float), np.asarray(reward, dtype=float)
    with np.errstate(divide="ignore"):
        logits = np.where(pi_ref > 0, np.log(pi_ref) + reward / beta, -np.inf)
    m = logits.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[..., 0]


def optimal_policy(pi_ref, reward, beta):
    """Reference solution: π* = exp(log π_ref + r/β − log Z)."""
    pi_ref, reward = np.asarray(pi_ref, dtype=float), np.asarray(reward, dtype=float)
    with np.errstate(divide="ignore"):
        logits = np.where(pi_ref > 0, np.log(pi_ref) + reward / beta, -np.inf)
    return np.exp(logits - log_partition(pi_ref, reward, beta)[..., None])


def _cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.dirichlet(np.ones(6), size=3)
        yield "random instance", p, rng.normal(size=(3, 6)), float(rng.uniform(0.1, 3))
    p = np.array([[0.5, 0.0, 0.5], [0.2, 0.8, 0.0]])
    yield "pi_ref with zeros", p, np.array([[1.0, 50.0, 0.0], [0.0, 1.0, 9.0]]), 0.5
    yield "r/beta = 1e6 (a naive exp overflows)", np.full((1, 3), 1 / 3), np.array([[1e6, 0.0, -1e6]]), 1.0


def check_log_partition(fn) -> bool:
    """Check a student's ``fn(pi_ref, reward, beta) -> log_Z`` (shape (n_prompts,)). Returns True or
    raises."""
    for name, p, r, beta in _cases():
        got = np.asarray(fn(p, r, beta), dtype=float)
        want = prefkit.log_partition(p, r, beta)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape} (one per prompt)"
        assert np.all(np.isfinite(got)), f"{name}: got non-finite values {got}; use logsumexp"
        assert np.allclose(got, want, rtol=1e-10, atol=1e-10), f"{name}: got {got}, expected {want}"
    print("check_log_partition: all cases pass")
    return True


def check_optimal_policy(fn) -> bool:
    """Check a student's ``fn(pi_ref, reward, beta) -> pi_star``. Returns True or raises."""
    for name, p, r, beta in _cases():
        got = np.asarray(fn(p, r, beta), dtype=float)
        want = prefkit.optimal_policy(p, r, beta)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        assert np.all(np.isfinite(got)), f"{name}: non-finite values; work in log space"
        assert np.allclose(got, want, atol=1e-10), f"{name}: got {got}, expected {want}"
        assert np.all(got[p == 0] == 0), f"{name}: pi* must be 0 where pi_ref is 0"
    print("check_optimal_policy: all cases pass")
    return True
