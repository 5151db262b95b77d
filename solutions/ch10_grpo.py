"""Chapter 10 exercises: reference solutions, for instructors.
The checkers are :func:`prefkit.course.ch10_grpo.grade_group_advantages` and ``grade_k3``; notebook 10's exercise
cells (``attempt``) check these solutions while a student's stub is not done, where this folder is present.

Exercise 1: GRPO's group advantages, (r − mean_group)/(std_group + 1e-4) with ddof 1, or r − mean_group (Dr. GRPO).
Exercise 2: Schulman's k3 estimator, ρ − 1 − log ρ with ρ = π_ref/π.
"""

import numpy as np

__all__ = ["group_advantages", "k3"]


def group_advantages(rewards, scale):
    """Reference solution: per group (last axis), subtract the mean; with ``scale``, divide by std (ddof 1) + 1e-4."""
    rewards = np.asarray(rewards, dtype=float)
    adv = rewards - rewards.mean(axis=-1, keepdims=True)
    if scale:
        adv = adv / (rewards.std(axis=-1, ddof=1, keepdims=True) + 1e-4)
    return adv


def k3(logp, ref_logp):
    """Reference solution: log ρ = ref_logp − logp; k3 = exp(log ρ) − 1 − log ρ."""
    log_rho = np.asarray(ref_logp, dtype=float) - np.asarray(logp, dtype=float)
    return np.expm1(log_rho) - log_rho
