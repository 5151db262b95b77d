"""Chapter 2 exercises: reference solutions, for instructors.
The checkers are :func:`prefkit.course.ch2_optimal_policy.grade_log_partition` and ``grade_optimal_policy``;
notebook 02's exercise cell (``attempt``) checks these solutions
while a student's stub is not done, where this folder is present.

Exercise 1: implement log Z(x) = log Σ_y π_ref(y|x)·exp(r(x, y)/β) stably (logsumexp over π_ref's support).
Exercise 2: implement π* = π_ref·exp(r/β)/Z in log space.
"""

import numpy as np

__all__ = ["log_partition", "optimal_policy"]


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
