"""Chapter 4 exercises: reference solutions, for instructors. Notebook 04's exercise cells check these only while
the student's stub is unimplemented and solutions/ is present; the checkers are ``grade_dpo_loss`` and
``grade_dpo_grad`` in :mod:`prefkit.course.ch4_dpo`.

Exercise 1: implement the per-pair DPO loss −log σ(β·[(logp_w − ref_w) − (logp_l − ref_l)]) in numpy, stably.
Exercise 2: implement its gradient with respect to logp_chosen, −β·σ(−margin) (Rafailov et al. 2023, §4).
"""

import numpy as np

__all__ = ["dpo_loss", "dpo_grad_logp_chosen"]


def dpo_loss(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta):
    """Reference solution: −log σ(m) = log(1 + e^{−m}) = logaddexp(0, −m), with m = β·Δ log-ratio."""
    logratio_chosen = np.asarray(logp_chosen) - ref_logp_chosen
    logratio_rejected = np.asarray(logp_rejected) - ref_logp_rejected
    margin = beta * (logratio_chosen - logratio_rejected)
    return np.logaddexp(0.0, -margin)


def dpo_grad_logp_chosen(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta):
    """Reference solution: ∂loss/∂logp_chosen = −β·σ(−m), computed as −β·exp(−logaddexp(0, m))."""
    logratio_chosen = np.asarray(logp_chosen) - ref_logp_chosen
    logratio_rejected = np.asarray(logp_rejected) - ref_logp_rejected
    margin = beta * (logratio_chosen - logratio_rejected)
    return -beta * np.exp(-np.logaddexp(0.0, margin))
