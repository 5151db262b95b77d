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
* ``aot`` and ``aot_unpaired`` sort over the batch, so output k belongs to the k-th sorted position, not to
  pair k; the mean is TRL's loss, per-pair weights are meaningless (TRL refuses WPO weighting for them).
* ``discopop`` computes its exponential term as exp(−m + log σ(m/τ)): TRL's exp(−m)·σ(m/τ) wherever that is
  finite, and finite where TRL's is inf·0 = NaN (very negative margins).
* ``sft`` returns pair i's share of TRL's batch value, −log π_θ(y_w,i)·B/Σ_j n_w,j (TRL repeats the batch
  value B times); the means, and so the gradients, agree.
* TRL's ``f_divergence_type`` (the implied reward β·f'(π/π_ref) in place of β·log(π/π_ref)) is
  :func:`prefkit.f_divergence.f_dpo_loss`, not an argument here. TRL's α-divergence cannot run in float64
  (its clamp table has no float64 entry: KeyError) and clamps (α − 1)·logratio at 80 in float32.

Checked against TRL 1.16's own ``DPOTrainer._compute_loss`` on the same random log-probs, for every loss type
and f-divergence they share, in ``tests/test_losses_trl.py`` (skipped where trl is not installed).

The margin (β times the difference of log-ratios) is called ``margin``, never ``logits``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import as_float_array, check_beta, finite_result

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


def aot_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0, *, logp_chosen, logp_rejected,
             ref_logp_chosen, ref_logp_rejected):
    """AOT (paired): cDPO's loss on sorted gaps, −(1 − ε)·log σ(β·δ_(k)) − ε·log σ(−β·δ_(k)).

    Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport", the paired
    objective with the logistic loss and hard sorting, as in TRL. The policy's gaps
    g_i = log π_θ(y_w,i) − log π_θ(y_l,i) and the reference's g_ref,i = log π_ref(y_w,i) − log π_ref(y_l,i)
    are each sorted over the batch, and δ_(k) = g_(k) − g_ref,(k) compares the k-th smallest policy gap with
    the k-th smallest reference gap (first-order stochastic dominance of the policy's gap distribution over
    the reference's, in the one-dimensional optimal-transport coupling). Output k belongs to the k-th sorted
    *position*, not to pair k, so only the mean (TRL's loss) means something; per-pair weights cannot be
    applied (TRL refuses WPO weighting for the same reason). Needs the raw log-probs, which
    :func:`preference_loss` passes; the two log-ratios alone do not determine δ. Shapes: (B,) -> (B,).
    """
    gap, _ = torch.sort(logp_chosen - logp_rejected, dim=0)  # (B,) policy gaps, ascending
    ref_gap, _ = torch.sort(ref_logp_chosen - ref_logp_rejected, dim=0)  # (B,) reference gaps, ascending
    delta = gap - ref_gap
    return -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(-beta * delta)


def aot_unpaired_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """AOT (unpaired): −(1 − ε)·log σ(β·δ_(k)) − ε·log σ(−β·δ_(k)), δ_(k) = c_(k) − r_(k).

    Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport", the unpaired
    objective with the logistic loss and hard sorting, as in TRL: the chosen log-ratios c and the rejected
    log-ratios r are sorted over the batch separately and compared quantile by quantile, so the chosen
    responses' log-ratio distribution is pushed to dominate the rejected ones'. As for :func:`aot_loss`,
    output k belongs to sorted position k, not to pair k: only the mean is TRL's loss.
    Shapes: (B,), (B,) -> (B,).
    """
    c_sorted, _ = torch.sort(logratio_chosen, dim=0)
    r_sorted, _ = torch.sort(logratio_rejected, dim=0)
    delta = c_sorted - r_sorted
    return -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(-beta * delta)


def apo_down_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """APO-down: σ(β·logratio_chosen) + (1 − σ(margin)), margin = β·(logratio_chosen − logratio_rejected).

    D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions", Eq. 8: for
    data whose chosen responses are worse than the model's own, lower the chosen likelihood and the
    rejected one more. Shapes: (B,), (B,) -> (B,).
    """
    margin = beta * (logratio_chosen - logratio_rejected)
    return torch.sigmoid(beta * logratio_chosen) + (1 - torch.sigmoid(margin))


DISCOPOP_TAU = 0.05
"""DiscoPOP's temperature τ: TRL's ``DPOConfig.discopop_tau`` default, the paper's recommended value."""


def discopop_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0, *, tau=DISCOPOP_TAU):
    """DiscoPOP (log-ratio modulated loss): (1 − σ(m/τ))·(−log σ(m)) + σ(m/τ)·exp(−m), m = margin.

    Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for Large Language Models",
    Eq. 5, with m = β·(logratio_chosen − logratio_rejected) and τ = ``tau`` (default 0.05, TRL's): a
    blend of DPO's logistic loss and an exponential loss, weighted by σ(m/τ). The exponential term is
    computed as exp(−m + log σ(m/τ)), which equals TRL's exp(−m)·σ(m/τ) wherever that is finite and stays
    finite (→ 0 for τ < 1) where TRL's is inf·0 = NaN (m ≲ −709 in float64, −88 in float32).
    Shapes: (B,), (B,) -> (B,).
    """
    margin = beta * (logratio_chosen - logratio_rejected)
    weight_exp = torch.sigmoid(margin / tau)  # log-ratio modulation
    return -F.logsigmoid(margin) * (1 - weight_exp) + torch.exp(-margin + F.logsigmoid(margin / tau))


def sigmoid_norm_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0):
    """Length-normalised DPO: −log σ(β·(logratio_chosen/n_w − logratio_rejected/n_l)).

    TRL's ``sigmoid_norm``: Rafailov et al. 2023, Eq. 7, on each log-ratio averaged over its completion's
    n tokens (LN-DPO; Ahrabian et al. 2024, "A Practical Analysis of Human Alignment with *PO").
    :func:`preference_loss` divides by the lengths when given ``length_chosen``/``length_rejected``
    (TRL clamps an empty completion to length 1); without them (n = 1) it is ``sigmoid``. Label smoothing
    is ignored, as in TRL. Shapes: (B,), (B,) -> (B,).
    """
    return -F.logsigmoid(beta * (logratio_chosen - logratio_rejected))


def sft_loss(logratio_chosen, logratio_rejected, beta, label_smoothing=0.0, *, logp_chosen, length_chosen=None):
    """SFT term: the chosen responses' negative log-likelihood per token, −Σ_i log π_θ(y_w,i) / Σ_i n_w,i.

    TRL's ``sft`` loss type, used alone or added to another with ``loss_weights`` (RPO: Pang et al. 2024,
    "Iterative Reasoning Preference Optimization", Eq. 3, is ``["sigmoid", "sft"]``; in
    :func:`prefkit.dpo.fit_dpo` it is ``sft_coef``). TRL's value is one number per batch, the mean NLL
    over all chosen tokens; here output i is pair i's share, −log π_θ(y_w,i)·B / Σ_j n_w,j, whose mean is
    TRL's value (and whose gradient is the same). Without lengths (n = 1) it is −log π_θ(y_w,i). β and ε
    are not used. Shapes: (B,) -> (B,).
    """
    n_mean = 1.0 if length_chosen is None else length_chosen.to(logp_chosen).mean()
    return -logp_chosen / n_mean


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
    "aot": aot_loss,
    "aot_unpaired": aot_unpaired_loss,
    "apo_down": apo_down_loss,
    "discopop": discopop_loss,
    "sigmoid_norm": sigmoid_norm_loss,
    "sft": sft_loss,
}
"""TRL ``loss_type`` name -> f(logratio_chosen, logratio_rejected, beta, label_smoothing) -> (B,)."""

# Loss types that need the raw log-probs as keywords (aot sorts the policy's and the reference's gaps separately; sft
# is the chosen responses' NLL), and those that take completion lengths (TRL divides by them).
_USES_LOGPS = ("aot", "sft")
_USES_LENGTHS = ("ipo", "sigmoid_norm", "sft")


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
        t = torch.as_tensor(as_float_array(x, name))
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
        ``bco_pair``, ``sppo_hard``, ``nca_pair``, ``apo_zero``, ``exo_pair``, ``aot``, ``aot_unpaired``,
        ``apo_down``, ``discopop``, ``sigmoid_norm``, ``sft``.
    label_smoothing : float in [0, 0.5)
        ε, used by ``sigmoid`` (cDPO), ``robust``, ``aot``, ``aot_unpaired`` and ``exo_pair`` (which needs
        ε > 0); ignored by the others.
    length_chosen, length_rejected : (B,) token counts, optional, ``ipo``, ``sigmoid_norm`` and ``sft`` only
        Give both to average each log-ratio per token first, as TRL does for ``ipo`` and ``sigmoid_norm``
        (see :func:`ipo_loss`); for ``sft`` the NLL is divided by the batch's mean chosen length (TRL's
        token mean; ``length_rejected`` is checked but not used).

    Returns
    -------
    (B,) tensor of per-pair losses.

    Raises
    ------
    ValueError
        β ≤ 0, unknown ``loss_type``, ε outside [0, 0.5) (or ε = 0 for ``exo_pair``), shapes that
        differ, NaN/inf log-probs, lengths given for a loss not in (``ipo``, ``sigmoid_norm``, ``sft``), or a
        loss that overflows (β so small that 1/β is inf).
    """
    loss_type = _check_loss_type(loss_type)
    b = check_beta(beta)
    eps = check_label_smoothing(label_smoothing, loss_type)
    lp_w, lp_l, ref_w, ref_l = _check_logps([("logp_chosen", logp_chosen), ("logp_rejected", logp_rejected),
                                             ("ref_logp_chosen", ref_logp_chosen),
                                             ("ref_logp_rejected", ref_logp_rejected)])
    logratio_chosen = lp_w - ref_w.to(lp_w)  # (B,), ref cast to the policy's dtype and device
    logratio_rejected = lp_l - ref_l.to(lp_l)  # (B,)
    extra = _logp_arguments(loss_type, lp_w, lp_l, ref_w.to(lp_w), ref_l.to(lp_l))
    if length_chosen is not None or length_rejected is not None:
        if loss_type not in _USES_LENGTHS:
            raise ValueError(f"length_chosen/length_rejected are for loss_type in {_USES_LENGTHS} only, "
                             f"not {loss_type!r}")
        if length_chosen is None or length_rejected is None:
            raise ValueError("give both length_chosen and length_rejected, or neither")
        if loss_type == "sft":  # TRL's token mean over the batch's chosen responses
            ones = torch.ones_like(logratio_chosen)
            _per_token(ones, length_rejected, "length_rejected")  # validated, not used
            extra["length_chosen"] = _as_tensor(length_chosen, "length_chosen").to(lp_w)
            _per_token(ones, extra["length_chosen"], "length_chosen")
        else:
            logratio_chosen = _per_token(logratio_chosen, length_chosen, "length_chosen")
            logratio_rejected = _per_token(logratio_rejected, length_rejected, "length_rejected")
    losses = LOSSES[loss_type](logratio_chosen, logratio_rejected, b, eps, **extra)
    if not bool(torch.isfinite(losses).all()):
        raise ValueError(_not_finite_message(loss_type, b))
    return losses


def _logp_arguments(loss_type, lp_w, lp_l, ref_w, ref_l) -> dict:
    """The extra keyword arguments of the losses that use the log-probs themselves (``_USES_LOGPS``: aot, sft);
    {} for the others. ``ref_w``, ``ref_l`` already in the policy's dtype and device."""
    if loss_type not in _USES_LOGPS:
        return {}
    if loss_type == "sft":
        return {"logp_chosen": lp_w}
    return {"logp_chosen": lp_w, "logp_rejected": lp_l, "ref_logp_chosen": ref_w, "ref_logp_rejected": ref_l}


def _not_finite_message(loss_type, b) -> str:
    """The error for a loss that came out NaN/inf from finite log-probs (e.g. IPO's 1/(2τ) for a subnormal τ)."""
    return (f"the {loss_type!r} loss is not finite at beta={b:g} for these log-probs: beta is too small, or the "
            f"log-ratios too large, for float arithmetic")


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
        return finite_result(b * (lp - ref.to(lp)), "the rewards overflow: beta or the log-probs too large")
    lp, ref = (t.numpy() for t in _check_logps([("logp", logp), ("ref_logp", ref_logp)]))
    with np.errstate(over="ignore"):
        return finite_result(b * (lp - ref), "the rewards overflow: beta or the log-probs too large")


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
    if lp_w.numel() == 0:
        raise ValueError("logp_chosen is empty: no pairs to average over")
    if weights is None:
        w = torch.ones_like(lp_w)
    else:
        w = _as_tensor(weights, "weights").detach().to(torch.float64)
        if w.shape != lp_w.shape:
            raise ValueError(f"shape mismatch: weights has shape {tuple(w.shape)}, "
                             f"the log-probs {tuple(lp_w.shape)}")
        if bool((w < 0).any()):
            raise ValueError("weights must be non-negative")
        if float(w.max()) <= 0:
            raise ValueError("weights must not all be zero: preference_metrics needs a pair with positive weight")
        w = w / w.max()  # only the ratios matter: no overflow (1e308) or underflow (5e-324) of the total
    return _preference_metrics(lp_w, lp_l, ref_w, ref_l, b, w)


def _preference_metrics(lp_w, lp_l, ref_w, ref_l, b, w) -> dict:
    """:func:`preference_metrics` on checked float64 tensors, with ``w`` ≥ 0 scaled to a largest weight of 1 (a
    training loop checks its data once and calls this at every recorded step)."""
    total = float(w.sum())

    def mean(t):  # a weighted mean, with t rescaled so that w·t cannot overflow
        s = float(t.abs().max())
        s = s if s > 0 else 1.0
        return finite_result(float((w * (t / s)).sum() / total) * s, "a metric overflows float64: beta or the "
                             "log-probs too large")

    r_w, r_l = b * (lp_w - ref_w), b * (lp_l - ref_l)
    return {
        "rewards/chosen": mean(r_w),
        "rewards/rejected": mean(r_l),
        "rewards/margins": mean(r_w - r_l),
        "rewards/accuracies": mean((r_w > r_l).to(torch.float64)),
        "logps/chosen": mean(lp_w),
        "logps/rejected": mean(lp_l),
    }
