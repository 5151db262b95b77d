"""Reference solutions for chapter 9's exercises (checkers: prefkit/course/ch9_beyond_bradley_terry.py)."""

import numpy as np
from scipy.special import logsumexp


def pl_log_prob(strengths, ranking):
    """log P(y_1 ≻ … ≻ y_K) = Σ_{k<K} [θ_{y_k} − log Σ_{j≥k} exp θ_{y_j}] (Plackett-Luce), in log space."""
    t = np.asarray(strengths, float)[np.asarray(ranking)]
    return float(sum(t[k] - logsumexp(t[k:]) for k in range(len(t) - 1)))


def exploitability(P, pi):
    """max_j P(y_j ≻ π) − ½, with P(y_j ≻ π) = Σ_i P[j, i]·π_i."""
    return float(np.max(P @ pi) - 0.5)


def nash_md_step(pi, P, pi_ref, beta, eta):
    """Munos et al. 2023: π^μ ∝ π^(1−ηβ)·π_ref^(ηβ); π_next ∝ π^μ·exp(η·P(y ≻ π^μ))."""
    log_mix = (1 - eta * beta) * np.log(pi) + eta * beta * np.log(pi_ref)
    mix = np.exp(log_mix - logsumexp(log_mix))
    logits = np.log(mix) + eta * (P @ mix)
    return np.exp(logits - logsumexp(logits))
