"""The DPO family of preference losses (chapter 4), as a table of small functions.

Every loss here is a function of the two log-ratios of a preference pair (x, y_w, y_l),

    logratio_chosen   = log π_θ(y_w|x) − log π_ref(y_w|x)      (B,)
    logratio_rejected = log π_θ(y_l|x) − log π_ref(y_l|x)      (B,)

and of β (and, for some, the label-smoothing ε). Each computes the per-pair formula of TRL's
``DPOTrainer`` (trl 1.16, ``_compute_loss``) for sequence-level log-probs with the default
``f_divergence_type="reverse_kl"``, so that ``preference_loss(...).mean()`` is TRL's loss for that
``loss_type``. The table :data:`LOSSES` maps TRL's ``loss_type`` names to the functions;
:func:`preference_loss` validates the input and looks the loss up.

Differences from TRL, all deliberate and documented at the function:

* ``sigmoid`` with ``label_smoothing`` ε > 0 is the conservative DPO of Mitchell (2023), which TRL's
  ``sigmoid`` used until it moved label smoothing out (trl 1.16 ignores ε for ``sigmoid``). With ε = 0 it
  is exactly TRL's.
* ``ipo`` is Azar et al.'s Eq. 17 on sequence log-ratios. TRL divides each log-ratio by the number of
  completion tokens first; pass ``length_chosen``/``length_rejected`` to get TRL's per-token form (see
  :func:`ipo_loss`).
* ``bco_pair`` is TRL 1.16's form, without the running-mean reward shift δ of the BCO paper and of older
  TRL.

The margin (β times the difference of log-ratios) is called ``margin``, never ``logits``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_beta

__all__ = ["LOSSES", "preference_loss", "dpo_rewards", "preference_metrics", "check_label_smoothing"]


# ------------------------------------------------------------------------------------------------------------
# The table. Each entry: f(logratio_chosen, logratio_rejected, beta, label_smoothing) -> (B,) per-pair losses.
# ------------------------------------------------------------------------------------------------------------

def sigmoid_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """DPO: −log σ(margin), with margin = β·(logratio_chosen − logratio_rejected).

    Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7. With label smoothing ε > 0 this is
    conservative DPO (cDPO; Mitchell 2023, "A note on DPO with noisy preferences", Eq. 3), the BT
    likelihood when each label is flipped with probability ε:  −(1 − ε)·log σ(margin) − ε·log
    σ(−margin). Shapes: (B,), (B,) -> (B,).
    """
    margin = beta * (logratio_chosen - logratio_rejected)  # (B,)
    loss = -F.logsigmoid(margin)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-margin)
    return loss


def ipo_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """IPO: (h − 1/(2τ))², with h = logratio_chosen − logratio_rejected and τ = ``beta``.

    Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    Eq. 17. Here h uses the log-ratios as given. TRL averages each log-ratio over the completion's
    tokens before taking h (:func:`preference_loss` does this when given
    ``length_chosen``/``length_rejected``): the squared loss then does not grow with response length,
    but its optimum is a *per-token* gap of 1/(2τ), so a sequence pair of lengths (n_w, n_l) is pushed
    to logratio_w/n_w − logratio_l/n_l = 1/(2τ) rather than logratio_w − logratio_l = 1/(2τ). For
    single-token responses (length 1) the two forms agree. Shapes: (B,), (B,) -> (B,).
    """
    h = logratio_chosen - logratio_rejected  # (B,)
    return (h - 1 / (2 * beta)) ** 2


def hinge_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """SLiC hinge: max(0, 1 − margin), with margin = β·(logratio_chosen − logratio_rejected).

    Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", Eq. 1 (calibration
    loss with δ = 1/β, on log-ratios as in TRL). Shapes: (B,), (B,) -> (B,).
    """
    margin = beta * (logratio_chosen - logratio_rejected)
    return torch.relu(1 - margin)


def robust_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """Robust DPO (rDPO): [−(1 − ε)·log σ(margin) + ε·log σ(−margin)] / (1 − 2ε).

    Chowdhury et al. 2024, "Provably Robust DPO: Aligning Language Models with Noisy Feedback", Eq. 8:
    an unbiased estimate of the clean DPO loss when labels flip with probability ε < 1/2. (It is not
    cDPO: cDPO is ``sigmoid`` with ε > 0.) With ε = 0 it equals ``sigmoid``. Shapes: (B,), (B,) -> (B,).
    """
    margin = beta * (logratio_chosen - logratio_rejected)
    eps = label_smoothing
    return (-(1 - eps) * F.logsigmoid(margin) + eps * F.logsigmoid(-margin)) / (1 - 2 * eps)


def bco_pair_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """Paired BCO: −log σ(β·logratio_chosen) − log σ(−β·logratio_rejected).

    Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment", Eq. 6 without
    the running-mean reward shift δ (as in trl 1.16). Each response is classified on its own implied
    reward. Shapes: (B,), (B,) -> (B,).
    """
    return -F.logsigmoid(beta * logratio_chosen) - F.logsigmoid(-beta * logratio_rejected)


def sppo_hard_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """SPPO with hard labels: (logratio_chosen − 1/(2β))² + (logratio_rejected + 1/(2β))².

    Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment", Eq. 4.7 with the
    win probability set to 1 for y_w and 0 for y_l (as in TRL). Shapes: (B,), (B,) -> (B,).
    """
    return (logratio_chosen - 0.5 / beta) ** 2 + (logratio_rejected + 0.5 / beta) ** 2


def nca_pair_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """Paired NCA: −log σ(r_w) − ½·log σ(−r_w) − ½·log σ(−r_l), with r = β·logratio.

    Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards", Eq. 11 for
    K = 2. Shapes: (B,), (B,) -> (B,).
    """
    r_w, r_l = beta * logratio_chosen, beta * logratio_rejected
    return -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)


def apo_zero_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """APO-zero: (1 − σ(β·logratio_chosen)) + σ(β·logratio_rejected).

    D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions", Eq. 7:
    raise the chosen likelihood and lower the rejected one, each anchored at π_ref. Shapes: (B,), (B,)
    -> (B,).
    """
    return (1 - torch.sigmoid(beta * logratio_chosen)) + torch.sigmoid(beta * logratio_rejected)


def exo_pair_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """EXO for pairs: KL(q_θ ‖ p_ε) over {y_w, y_l}, with q_θ = softmax of β·logratio and p_ε = (1 − ε, ε).

    Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment", Eq. 16 (K = 2):
    σ(m)·[log σ(m) − log(1 − ε)] + σ(−m)·[log σ(−m) − log ε], with m = margin. Needs ε > 0 (TRL raises
    otherwise; the paper suggests ε = 1e-3). Shapes: (B,), (B,) -> (B,).
    """
    margin = beta * (logratio_chosen - logratio_rejected)
    log_q_w, log_q_l = F.logsigmoid(margin), F.logsigmoid(-margin)
    return (torch.exp(log_q_w) * (log_q_w - np.log1p(-label_smoothing))
            + torch.exp(log_q_l) * (log_q_l - np.log(label_smoothing)))


LOSSES: dict[str, Callable] = {
    "sigmoid": sigmoid_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "robust": robust_loss,
    "bco_pair": bco_pair_loss,
    "sppo_hard": sppo_hard_loss,
    "nca_pair": nca_pair_loss,
    "apo_zero": apo_zero_loss,
    "exo_pair": exo_pair_loss,
}
"""TRL ``loss_type`` name -> f(logratio_chosen, logratio_rejected, beta, label_smoothing) -> (B,)."""


# ------------------------------------------------------------------------------------------------------------
# Validation and the public entry points.
# ------------------------------------------------------------------------------------------------------------

def check_label_smoothing(label_smoothing, loss_type: str = "sigmoid") -> float:
    """ε must be a finite number in [0, 0.5); ``exo_pair`` needs ε > 0."""
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"label_smoothing must be a number in [0, 0.5), got {label_smoothing!r}") from None
    if not (np.isfinite(eps) and 0.0 <= eps < 0.5):
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing!r}")
    if loss_type == "exo_pair" and eps == 0.0:
        raise ValueError("label_smoothing must be > 0 for loss_type='exo_pair' (the EXO paper suggests 1e-3)")
    return eps


def _check_loss_type(loss_type) -> str:
    if not isinstance(loss_type, str) or loss_type not in LOSSES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {sorted(LOSSES)}")
    return loss_type


def _as_tensor(x, name: str) -> torch.Tensor:
    """A real tensor (float64 unless already floating); complex, non-numeric or NaN/inf -> ValueError."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        t = x if x.is_floating_point() else x.to(torch.float64)
    else:
        a = np.asarray(x)
        if np.iscomplexobj(a):
            raise ValueError(f"{name} must be real, got complex values")
        try:
            t = torch.as_tensor(np.asarray(a, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an array of numbers") from None
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _check_logps(names_values) -> list[torch.Tensor]:
    ts = [_as_tensor(v, n) for n, v in names_values]
    (n0, _), t0 = names_values[0], ts[0]
    for (n, _), t in zip(names_values[1:], ts[1:], strict=True):
        if t.shape != t0.shape:
            raise ValueError(f"shape mismatch: {n0} has shape {tuple(t0.shape)} "
                             f"but {n} has shape {tuple(t.shape)}")
    return ts


def _per_token(logratio: torch.Tensor, length, name: str) -> torch.Tensor:
    n = _as_tensor(length, name)
    if n.shape != logratio.shape:
        raise ValueError(f"shape mismatch: {name} has shape {tuple(n.shape)}, "
                         f"the log-probs {tuple(logratio.shape)}")
    if bool((n < 0).any()):
        raise ValueError(f"{name} must be non-negative token counts")
    return logratio / n.to(logratio).clamp(min=1.0)  # TRL clamps empty completions to length 1


def preference_loss(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta, loss_type="sigmoid",
                    label_smoothing=0.0, *, length_chosen=None, length_rejected=None) -> torch.Tensor:
    """Per-pair preference losses of the DPO family, differentiable in the policy log-probs.

    loss_i = LOSSES[loss_type](logratio_chosen_i, logratio_rejected_i, β, ε), where
    logratio_chosen = logp_chosen − ref_logp_chosen and logratio_rejected = logp_rejected − ref_logp_rejected.
    ``preference_loss(...).mean()`` is TRL DPOTrainer's loss for sequence-level log-probs.

    Parameters
    ----------
    logp_chosen, logp_rejected : (B,) tensors
        log π_θ(y_w|x), log π_θ(y_l|x) (summed over tokens for sequences). Arrays are converted to
        float64.
    ref_logp_chosen, ref_logp_rejected : (B,) tensors
        The same under π_ref (no gradient needed).
    beta : float > 0
        β (τ for IPO).
    loss_type : str
        A key of :data:`LOSSES`: ``sigmoid`` (DPO), ``ipo``, ``hinge`` (SLiC), ``robust`` (rDPO),
        ``bco_pair``, ``sppo_hard``, ``nca_pair``, ``apo_zero``, ``exo_pair``.
    label_smoothing : float in [0, 0.5)
        ε, used by ``sigmoid`` (cDPO), ``robust`` and ``exo_pair`` (which needs ε > 0); ignored by the
        others.
    length_chosen, length_rejected : (B,) token counts, optional, ``ipo`` only
        Give both to average each log-ratio per token first, as TRL does for IPO (see :func:`ipo_loss`).

    Returns
    -------
    (B,) tensor of per-pair losses.

    Raises
    ------
    ValueError
        β ≤ 0, unknown ``loss_type``, ε outside [0, 0.5) (or ε = 0 for ``exo_pair``), shapes that
        differ, NaN/inf log-probs, lengths given for a loss other than ``ipo``, or a loss that overflows
        (β so small that 1/β is inf).
    """
    loss_type = _check_loss_type(loss_type)
    b = check_beta(beta)
    eps = check_label_smoothing(label_smoothing, loss_type)
    lp_w, lp_l, ref_w, ref_l = _check_logps([("logp_chosen", logp_chosen), ("logp_rejected", logp_rejected),
                                             ("ref_logp_chosen", ref_logp_chosen),
                                             ("ref_logp_rejected", ref_logp_rejected)])
    logratio_chosen = lp_w - ref_w.to(lp_w)  # (B,), ref cast to the policy's dtype and device
    logratio_rejected = lp_l - ref_l.to(lp_l)  # (B,)
    if length_chosen is not None or length_rejected is not None:
        if loss_type != "ipo":
            raise ValueError(f"length_chosen/length_rejected are for loss_type='ipo' only, not {loss_type!r}")
        if length_chosen is None or length_rejected is None:
            raise ValueError("give both length_chosen and length_rejected, or neither")
        logratio_chosen = _per_token(logratio_chosen, length_chosen, "length_chosen")
        logratio_rejected = _per_token(logratio_rejected, length_rejected, "length_rejected")
    losses = LOSSES[loss_type](logratio_chosen, logratio_rejected, b, eps)
    if not bool(torch.isfinite(losses).all()):  # e.g. IPO's 1/(2τ) overflows for a subnormal τ
        raise ValueError(f"the {loss_type!r} loss is not finite at beta={b:g} for these log-probs: beta is too "
                         f"small, or the log-ratios too large, for float arithmetic")
    return losses


def dpo_rewards(logp, ref_logp, beta):
    """DPO's rewards: β times the log-ratio, β·(log π_θ(y|x) − log π_ref(y|x)), for chosen or rejected responses.

    Rafailov et al. 2023, Eq. 5 without the β·log Z(x) term; TRL logs them as ``rewards/chosen`` and
    ``rewards/rejected``. (:func:`prefkit.closed_form.implied_reward` is the same quantity for a whole policy
    table, −inf off π_ref's support.)

    Works on torch tensors (returns a tensor, differentiable) or arrays (returns a float64 array);
    shapes must match.
    """
    b = check_beta(beta)
    if isinstance(logp, torch.Tensor) or isinstance(ref_logp, torch.Tensor):
        lp, ref = _check_logps([("logp", logp), ("ref_logp", ref_logp)])
        return b * (lp - ref.to(lp))
    lp, ref = (t.numpy() for t in _check_logps([("logp", logp), ("ref_logp", ref_logp)]))
    return b * (lp - ref)


def preference_metrics(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta,
                       weights=None) -> dict:
    """TRL DPOTrainer's logged metrics for a batch, as floats: (weighted) means over the pairs.

    ``rewards/chosen`` = mean β·logratio_chosen, ``rewards/rejected`` = mean β·logratio_rejected,
    ``rewards/margins`` = mean of their difference, ``rewards/accuracies`` = fraction with chosen reward
    strictly greater, ``logps/chosen`` and ``logps/rejected`` = mean policy log-probs. Inputs as in
    :func:`preference_loss`; ``weights``: optional non-negative (B,) weights (population data enter as
    weights p and 1 − p).
    """
    b = check_beta(beta)
    lp_w, lp_l, ref_w, ref_l = (t.detach().to(torch.float64) for t in _check_logps(
        [("logp_chosen", logp_chosen), ("logp_rejected", logp_rejected), ("ref_logp_chosen", ref_logp_chosen),
         ("ref_logp_rejected", ref_logp_rejected)]))
    if weights is None:
        w = torch.ones_like(lp_w)
    else:
        w = _as_tensor(weights, "weights").detach().to(torch.float64)
        if w.shape != lp_w.shape:
            raise ValueError(f"shape mismatch: weights has shape {tuple(w.shape)}, "
                             f"the log-probs {tuple(lp_w.shape)}")
        if bool((w < 0).any()):
            raise ValueError("weights must be non-negative")
    total = float(w.sum())
    if total <= 0:
        raise ValueError("preference_metrics needs at least one pair with positive weight")

    def mean(t):
        return float((w * t).sum() / total)

    r_w, r_l = b * (lp_w - ref_w), b * (lp_l - ref_l)
    return {
        "rewards/chosen": mean(r_w),
        "rewards/rejected": mean(r_l),
        "rewards/margins": mean(r_w - r_l),
        "rewards/accuracies": mean((r_w > r_l).to(torch.float64)),
        "logps/chosen": mean(lp_w),
        "logps/rejected": mean(lp_l),
    }
