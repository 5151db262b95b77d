"""Chapter 1 exercises: reference solutions, for instructors. The checkers are
:func:`prefkit.course.ch1_bradley_terry.grade_mm_update` and ``grade_contrast_stderr``; notebook 01's ``attempt`` checks
these references only while a student's stub is still unimplemented, and the notebook runs without this file.

Exercise 1 (ch1.mm_update): one sweep of Hunter's (2004) MM algorithm for Bradley-Terry strengths,
    γ_i ← W_i / Σ_{j≠i} (n_ij + n_ji)/(γ_i + γ_j),   γ = e^θ,  W_i = Σ_j n_ij.
Exercise 2 (ch1.contrast_stderr): the standard error of a contrast from the covariance,
    SE(θ_i − θ_j) = sqrt(C_ii + C_jj − 2·C_ij).
"""

import numpy as np

__all__ = ["mm_update", "contrast_stderr"]


def mm_update(strengths, wins):
    """Reference solution. ``wins[i, j]`` = n_ij, times i beat j (n, n). Returns the new θ in the sum-zero gauge
    (centred to mean 0)."""
    theta = np.asarray(strengths, dtype=float)
    wins = np.asarray(wins, dtype=float)
    gamma = np.exp(theta - theta.max())  # the update is scale-free; rescaling avoids overflow
    games = wins + wins.T  # n_ij + n_ji
    denom = (games / (gamma[:, None] + gamma[None, :])).sum(axis=1)  # the diagonal has no games
    new = np.log(wins.sum(axis=1)) - np.log(denom)
    return new - new.mean()


def contrast_stderr(covariance, i, j):
    """Reference solution: sqrt(C_ii + C_jj − 2·C_ij)."""
    c = np.asarray(covariance, dtype=float)
    return float(np.sqrt(c[i, i] + c[j, j] - 2 * c[i, j]))
