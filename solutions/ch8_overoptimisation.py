"""Chapter 8 exercises: reference solutions, for instructors.
The checkers are :func:`prefkit.course.ch8_overoptimisation.grade_best_of_n`, ``grade_kl_bound`` and
``grade_gold_peak``; notebook 08's exercise cells (``attempt``) check these solutions while a student's stub is not
done, where this folder is present.

Exercise 1: the best-of-n distribution from π_ref's CDF along the reward order, ties shared ∝ π_ref.
Exercise 2: the KL "formula" of best-of-n, log n − (n − 1)/n (an upper bound: Beirami et al. 2024).
Exercise 3: where Gao et al.'s gold curves peak: α/(2β) for d(α − βd), exp(α/β − 1) for d(α − β log d).
"""

import numpy as np

__all__ = ["best_of_n", "kl_bound", "gold_peak"]


def best_of_n(pi_ref, reward, n):
    """Reference solution: π_bon(y) = π_ref(y)·(F(≤ℓ)^n − F(<ℓ)^n)/(F(≤ℓ) − F(<ℓ)), ℓ = r(y), per prompt."""
    pi_ref, reward = np.asarray(pi_ref, dtype=float), np.asarray(reward, dtype=float)
    out = np.zeros_like(pi_ref)
    for x in range(pi_ref.shape[0]):
        for y in range(pi_ref.shape[1]):
            if pi_ref[x, y] == 0:
                continue
            le = pi_ref[x, reward[x] <= reward[x, y]].sum()  # F(≤ℓ)
            lt = pi_ref[x, reward[x] < reward[x, y]].sum()  # F(<ℓ)
            out[x, y] = pi_ref[x, y] * (le**n - lt**n) / (le - lt)
    return out


def kl_bound(n):
    """Reference solution: log n − (n − 1)/n."""
    return np.log(n) - (n - 1) / n


def gold_peak(alpha, beta, form):
    """Reference solution: the d where d(α − βd) (``"bon"``) or d(α − β log d) (``"rl"``) has zero slope."""
    if form == "bon":
        return alpha / (2 * beta)
    return np.exp(alpha / beta - 1)
