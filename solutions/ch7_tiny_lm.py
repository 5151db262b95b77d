"""Chapter 7 exercise solutions (for instructors). The checker is
:func:`prefkit.course.ch7_tiny_lm.grade_kl_to_optimal` (exercise ``ch7.kl_to_optimal``)."""

import numpy as np
from scipy.special import logsumexp


def kl_to_optimal(logp, ref_logp, reward, beta):
    """KL(π_θ‖π*) per prompt from enumerated log-policies, with π* = π_ref·exp(r/β)/Z.

    log π* = log π_ref + r/β − log Z, log Z = logsumexp(log π_ref + r/β), and
    KL(π_θ‖π*) = Σ_y π_θ(y)·(log π_θ(y) − log π*(y)).
    """
    log_star = ref_logp + reward / beta
    log_star = log_star - logsumexp(log_star, axis=-1, keepdims=True)
    return np.sum(np.exp(logp) * (logp - log_star), axis=-1)
