"""Reference solutions to the exercises of notebook 06 (likelihood displacement). The checkers are
``grade_ches``, ``grade_squeeze_rate`` and ``grade_catastrophe`` in :mod:`prefkit.course.ch6_displacement`; a
notebook's ``attempt(...)`` checks these only while the student's stub is not done."""

import numpy as np


def ches_solution(hidden_chosen, hidden_rejected, prompt_length, length_normalized=False):
    """CHES = ⟨Σ_k h_w,k, Σ_k h_l,k⟩ − ‖Σ_k h_w,k‖² over the states that predict the response tokens, rows
    prompt_length − 1 … L − 2 of each (prompt ‖ response) sequence (means instead of sums when length-normalised)."""
    p = int(prompt_length)
    agg = np.mean if length_normalized else np.sum
    sw = agg(np.asarray(hidden_chosen, float)[p - 1:-1], axis=0)
    sl = agg(np.asarray(hidden_rejected, float)[p - 1:-1], axis=0)
    return float(sw @ sl - sw @ sw)


def squeeze_rate_solution(pi, rejected):
    """Δ log π_y per unit step of −∇ log π_l on logits: π_y − [y = l] − (‖π‖² − π_l)."""
    pi = np.asarray(pi, float)
    e = np.zeros_like(pi)
    e[rejected] = 1.0
    return pi - e - (pi @ pi - pi[rejected])


def catastrophe_solution():
    """Tokens 1 and 2 nearly share an unembedding; token 0 points along W_1 − W_2 and starts unlikely."""
    W = np.array([[0.0, -3.0],   # token 0 ("Yes"): along W_1 − W_2
                  [2.0, 0.2],    # token 1 ("No")
                  [2.0, 0.8],    # token 2 ("Never")
                  [0.5, 0.5]])
    h0 = np.array([1.5, 0.0])
    return W, h0
