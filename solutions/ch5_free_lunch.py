"""Chapter 5 exercises: reference solutions, for instructors. Notebook 05's exercise cells check these only while
the student's stub is unimplemented and solutions/ is present; the checkers are ``grade_ipo_all_pairs`` and
``grade_ipo_weighted_gap`` in :mod:`prefkit.course.ch5_free_lunch`.

Exercise 1: IPO's optimum when every pair of n responses is observed equally often, i ≻ j with probability
P[i, j], from any π_ref.
Exercise 2: IPO's optimal gap h_ac on Azar's deterministic triangle when the pair (y_a, y_c) has weight w and the
other two pairs weight 1.
"""

import numpy as np

__all__ = ["ipo_all_pairs", "ipo_weighted_gap"]


def ipo_all_pairs(pi_ref, P, tau):
    """Reference solution. With both orders of the pair {i, j} weighted P_ij and P_ji, the loss is
    Σ_{i<j} (u_i − u_j − t_ij)² + const with t_ij = (P_ij − ½)/τ. On the complete graph the normal equations
    n·u_i − Σ_j u_j = Σ_j t_ij have the zero-sum solution u_i = (1/n)·Σ_{j≠i} t_ij, so
    π ∝ π_ref·exp(u) with u_i = Σ_{j≠i} (P_ij − ½)/(nτ)."""
    P = np.asarray(P, dtype=float)
    n = len(P)
    off = ~np.eye(n, dtype=bool)
    u = np.where(off, P - 0.5, 0.0).sum(axis=1) / (n * tau)
    pi = np.asarray(pi_ref, dtype=float) * np.exp(u - u.max())
    return pi / pi.sum()


def ipo_weighted_gap(w, tau):
    """Reference solution. By symmetry u_b = 0 and u_a = −u_c = s; the loss
    2·(s − 1/(2τ))² + w·(2s − 1/(2τ))² is minimal at s = (1 + w)/(2τ(1 + 2w)), so
    h_ac = 2s = (1 + w)/(τ(1 + 2w)) (w = 1: 2/(3τ), the triangle; w = 0: 1/τ, the chain; w → ∞: 1/(2τ))."""
    return (1 + w) / (tau * (1 + 2 * w))
