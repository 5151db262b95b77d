"""f-DPO: DPO with an f-divergence in place of the reverse KL (TRL's ``f_divergence_type``).

Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse Divergence
Constraints". For one prompt x, replace chapter 2's KL penalty by an f-divergence,

    J_f(π) = Σ_y π(y)·r(y) − β·D_f(π ‖ π_ref),     D_f(π ‖ π_ref) = Σ_y π_ref(y)·f(π(y)/π_ref(y)),

with f convex and f(1) = 0. Here every f is written with f'(1) = 0 too (adding c·(u − 1) to f changes
neither D_f on the simplex nor any loss below), which makes f' exactly the score TRL puts in place of the
log-ratio. With u = π/π_ref (TRL's name ``alpha`` is its ``f_alpha_divergence_coef``, written a below):

=================  =====================================  =====================  ===============  =========
f_divergence_type  f(u)                                   f'(u) (TRL's score)     sup f' = f'(∞)   f(0)
=================  =====================================  =====================  ===============  =========
reverse_kl         u·log u − u + 1      (KL(π‖π_ref))      log u                   ∞                1
forward_kl         u − 1 − log u        (KL(π_ref‖π))      1 − 1/u                 1                ∞
js_divergence      u·log u − (1+u)·log((1+u)/2)  (2·JS)    log(2u/(1+u))           log 2            log 2
alpha_divergence   (u^a − a·u + a − 1)/(a(a − 1))          (u^(a−1) − 1)/(a − 1)   1/(1 − a)        1/a (a>0)
=================  =====================================  =====================  ===============  =========

The α-divergence with TRL's a is Wang et al.'s α-divergence with α = 1 − a (their f'(u) = (1 − u^(−α))/α,
Table 1, α ∈ (0, 1)); a → 1 is the reverse KL and a = 0 the forward KL. TRL's documentation calls its
coefficient the α of a "u^−α regulariser", but its code, which prefkit follows, uses u^(a−1).

**The optimum** (Wang et al. 2023, Theorem 1, via the KKT conditions). J_f is concave; on π_ref's support S
its stationarity condition with the multiplier λ(x) of Σ_y π(y) = 1 is r(y) − β·f'(π(y)/π_ref(y)) = λ(x), so

    π_f(y) = π_ref(y)·(f')^{-1}((r(y) − λ(x))/β),   λ(x) the root of  Σ_{y∈S} π_ref(y)·(f')^{-1}((r(y) − λ)/β) = 1.

(f')^{-1}(v) is e^v (reverse KL: λ = β·log Z and π_f = π*, chapter 2's closed form), 1/(1 − v) (forward KL),
e^v/(2 − e^v) (JS), (1 + (a − 1)·v)^(1/(a−1)) (α); the left side falls strictly in λ, so the root is unique
and :func:`f_normalizer` finds it by bracketing (Brent's method). This needs f'(0+) = −∞ ("0 ∉ dom f'" in
Wang et al.): then no π(y) on S is 0 at the optimum and the inequality multipliers vanish. For the α-divergence
that holds exactly when a ≤ 1; for a > 1, f'(0) = −1/(a − 1) is finite, the optimum can set π(y) = 0 on
S, and the reparameterisation below no longer gives it, so a > 1 raises ``ValueError``.

**Off π_ref's support.** Where π_ref(y) = 0 the term π_ref·f(π/π_ref) is π(y)·f'(∞) (the perspective of f).
The reverse KL has f'(∞) = ∞, so π ≪ π_ref. The forward KL, JS and the α-divergences with a < 1 have a
finite f'(∞): mass there costs only β·f'(∞) per unit, so when the best response outside S has reward above
λ(x) + β·f'(∞), the optimum moves mass there (λ = max_{y∉S} r(y) − β·f'(∞) and the remainder goes to that
response; ties are split equally, the optimum is then not unique). f-DPO never sees such responses (their
log-ratio is +∞), so on such a prompt it cannot reach the optimum: :func:`f_optimal_policy` computes it
anyway, and :func:`fit_f_dpo` fits the policy on S only.

**f-DPO.** Solving the stationarity condition for r, r(y) = β·f'(π_f(y)/π_ref(y)) + λ(x), and λ(x) cancels
in a Bradley-Terry difference, so every loss of the DPO family built on the chosen-minus-rejected difference
can use the implied reward β·f'(π/π_ref) in place of β·log(π/π_ref) (Wang et al. 2023, the f-DPO loss):
:func:`f_dpo_loss`. TRL allows this for ``sigmoid``, ``sigmoid_norm``, ``hinge``, ``ipo``, ``exo_pair``,
``robust``, ``discopop`` and ``sft`` (which does not depend on f); the other loss types use each response's
own log-ratio, where λ(x) would not cancel, and are refused. On exact BT data over all pairs of S, the tabular
f-DPO loss is minimised exactly at π_f (:func:`fit_f_dpo`; tests/test_f_divergence.py).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import brentq, minimize

from ._validate import (
    as_float_array,
    check_beta,
    check_distribution,
    check_real,
    check_same_shape,
    check_weights,
    finite_result,
)
from .closed_form import log_partition, optimal_policy
from .losses import _check_logps, _check_loss_type, check_label_smoothing, preference_loss

__all__ = [
    "F_DIVERGENCES",
    "F_DPO_LOSS_TYPES",
    "f_function",
    "f_score",
    "f_divergence_value",
    "f_regularized_objective",
    "f_normalizer",
    "f_optimal_policy",
    "f_dpo_loss",
    "FDPOFit",
    "fit_f_dpo",
]

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
"""TRL's ``f_divergence_type`` values."""

F_DPO_LOSS_TYPES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft")
"""The loss types TRL 1.16 allows with a non-default ``f_divergence_type``."""


def _check_f(f_divergence_type, alpha) -> tuple[str, float]:
    """(name, a), with ``alpha_divergence`` at a = 1 mapped to ``reverse_kl`` (as TRL does within 1e-6)."""
    if not isinstance(f_divergence_type, str) or f_divergence_type not in F_DIVERGENCES:
        raise ValueError(f"unknown f_divergence_type {f_divergence_type!r}; choose one of {F_DIVERGENCES}")
    a = check_real(alpha, "alpha")
    if f_divergence_type == "alpha_divergence":
        if a > 1.0 + 1e-6:
            raise ValueError(f"alpha must be <= 1 for the alpha-divergence, got {alpha!r}: for alpha > 1, "
                             f"f'(0) = -1/(alpha - 1) is finite, the regularised optimum can put zero mass on "
                             f"responses pi_ref supports, and f-DPO's reparameterisation (Wang et al. 2023, "
                             f"Theorem 1) does not hold")
        if abs(a - 1.0) < 1e-6:
            return "reverse_kl", 1.0
    return f_divergence_type, a


def _sup_score(f: str, a: float) -> float:
    """f'(∞) = lim f(u)/u, the price per unit of mass where π_ref = 0."""
    fixed = {"reverse_kl": math.inf, "forward_kl": 1.0, "js_divergence": math.log(2.0)}
    return fixed[f] if f in fixed else 1.0 / (1.0 - a)  # a < 1 here: alpha_divergence at a = 1 is reverse_kl


def f_function(u, f_divergence_type: str = "reverse_kl", alpha: float = 0.5) -> np.ndarray:
    """The generator f(u), normalised so that f(1) = f'(1) = 0 (table in the module docstring), for u ≥ 0.

    Wang et al. 2023, Table 1 (up to the linear term c·(u − 1), which D_f does not see on the simplex).
    f(0) is its limit (+inf for the forward KL and the α-divergence with a ≤ 0). Shapes: any -> same.
    Raises ValueError for negative or non-finite u, or f(u) beyond float64.
    """
    f, a = _check_f(f_divergence_type, alpha)
    u = as_float_array(u, "u")
    if np.any(u < 0):
        raise ValueError("u must be non-negative (a ratio of probabilities)")
    pos = np.where(u > 0, u, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if f == "reverse_kl":
            out = np.where(u > 0, u * (np.log(pos) - 1.0), 0.0) + 1.0
        elif f == "forward_kl" or (f == "alpha_divergence" and a == 0.0):
            out = u - 1.0 - np.log(u)
        elif f == "js_divergence":  # u·log(2u/(1+u)) − log((1+u)/2), free of inf − inf for large u
            out = np.where(u > 0, u * (np.log(2.0) + np.log(pos) - np.log1p(u)), 0.0) - np.log((1.0 + u) / 2.0)
        else:
            out = (u ** a - a * u + a - 1.0) / (a * (a - 1.0))
    if np.any(~np.isfinite(out) & (u > 0)):
        raise ValueError("f(u) overflows float64 for these u (too large)")
    return out


def f_score(logratio, f_divergence_type: str = "reverse_kl", alpha: float = 0.5):
    """TRL's score f'(π/π_ref) as a function of the log-ratio ℓ = log π − log π_ref (f' of :func:`f_function`).

    reverse KL: ℓ; forward KL: 1 − e^(−ℓ); JS: log 2 + log σ(ℓ); α-divergence: expm1((a − 1)·ℓ)/(a − 1).
    β·f_score is f-DPO's implied reward up to λ(x) (Wang et al. 2023, Theorem 1). Torch tensors in ->
    tensor out (differentiable); arrays in -> float64 array out. Shapes: any -> same. Raises ValueError for a
    non-finite log-ratio or a score beyond float64 (the forward KL's e^(−ℓ) for ℓ ≲ −709).
    """
    f, a = _check_f(f_divergence_type, alpha)
    is_tensor = isinstance(logratio, torch.Tensor)
    t = logratio if is_tensor else torch.as_tensor(as_float_array(logratio, "logratio"))
    if is_tensor and not bool(torch.isfinite(t.detach()).all()):
        raise ValueError("logratio contains NaN or inf")
    if f == "reverse_kl":
        s = t
    elif f == "forward_kl":
        s = -torch.expm1(-t)
    elif f == "js_divergence":
        s = math.log(2.0) + F.logsigmoid(t)
    else:
        s = torch.expm1((a - 1.0) * t) / (a - 1.0)
    if not bool(torch.isfinite(s.detach()).all()):
        raise ValueError(f"the {f} score of logratio overflows float64 (a log-ratio far below 0)")
    return s if is_tensor else s.numpy()


def _inverse_score(v: np.ndarray, f: str, a: float) -> np.ndarray:
    """(f')^{-1}(v) for v < sup f' (module docstring)."""
    if f == "reverse_kl":
        return np.exp(v)
    if f == "forward_kl":
        return 1.0 / (1.0 - v)
    if f == "js_divergence":
        return 1.0 / (2.0 * np.exp(-v) - 1.0)
    return (1.0 + (a - 1.0) * v) ** (1.0 / (a - 1.0))


def _check_problem(pi_ref, reward, beta):
    b = check_beta(beta)
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    return np.atleast_2d(p), np.atleast_2d(r), b


def _scaled_gap(r_top: float, r: np.ndarray, b: float) -> np.ndarray:
    """(r_top − r)/β without overflow in the difference (a gap beyond float64 is +inf, whose limit the callers use)."""
    with np.errstate(over="ignore"):
        gap = r_top - r
        return np.where(np.isfinite(gap), gap / b, (0.5 * r_top - 0.5 * r) / b * 2.0)


def _solve_row(p: np.ndarray, r: np.ndarray, b: float, f: str, a: float) -> tuple[float, np.ndarray]:
    """(λ, π_f) for one prompt: the KKT conditions of the module docstring.

    Solved in the scale-free unknown t = (λ − r_top)/β with d(y) = (r_top − r(y))/β ≥ 0 (r_top the best reward on
    the support), so that no reward or β overflows: π_f(y) = π_ref(y)·(f')^{-1}(−d(y) − t), λ = r_top + β·t.
    """
    S = p > 0
    if f == "reverse_kl":  # closed form: λ = β log Z, π_f = π* (chapter 2)
        with np.errstate(over="ignore"):
            lam = b * float(log_partition(p, r, b))
        return lam, optimal_policy(p, r, b)

    top = np.flatnonzero(S)[np.argmax(r[S])]
    d = _scaled_gap(float(r[top]), r[S], b)  # (|S|,) ≥ 0, 0 at the top

    def mass(t: float) -> float:  # Σ_S π_ref·(f')^{-1}(−d − t), strictly decreasing in t
        with np.errstate(over="ignore", divide="ignore"):
            return float(np.sum(p[S] * _inverse_score(-d - t, f, a)))

    # t = 0: every argument ≤ 0, so each u ≤ 1 and mass ≤ 1; t = lo: the top response alone carries mass 1
    lo = -float(f_score(np.log(1.0 / p[top]), f, a))
    if mass(0.0) >= 1.0 or lo >= 0.0:
        t = 0.0
    elif mass(lo) <= 1.0:  # the others' mass underflows (β tiny against the reward gaps): the top alone, to rounding
        t = lo
    else:
        t = brentq(lambda t: mass(t) - 1.0, lo, 0.0, xtol=4e-16 * max(1.0, abs(lo)), rtol=8.9e-16, maxiter=500)
    off = False
    if not np.all(S):  # a finite price f'(∞) per unit of mass off the support: is it worth paying?
        t_off = -float(_scaled_gap(float(r[top]), np.array([np.max(r[~S])]), b)[0]) - _sup_score(f, a)
        if t_off >= t:
            t, off = t_off, True
    pi = np.zeros_like(p)
    with np.errstate(over="ignore", divide="ignore"):
        pi[S] = p[S] * _inverse_score(-d - t, f, a)
        lam = float(r[top] + b * t)
    rest = 1.0 - pi.sum()
    if off and rest > 0:
        best = ~S & (r == np.max(r[~S]))
        pi[best] = rest / best.sum()
    return lam, pi / pi.sum()  # the final division only removes the root-finder's last rounding


def f_normalizer(pi_ref, reward, beta, f_divergence_type: str = "reverse_kl", alpha: float = 0.5) -> np.ndarray:
    """λ(x), the multiplier of Σ_y π(y|x) = 1 at the f-regularised optimum (module docstring).

    The root of Σ_{y∈S} π_ref(y)·(f')^{-1}((r(y) − λ)/β) = 1, raised to max_{y∉S} r(y) − β·f'(∞) when that
    is larger; for the reverse KL, β·log Z(x). Wang et al. 2023, Theorem 1. Shapes: (n_prompts, n) -> (n_prompts,).
    """
    f, a = _check_f(f_divergence_type, alpha)
    p, r, b = _check_problem(pi_ref, reward, beta)
    return finite_result(np.array([_solve_row(p[x], r[x], b, f, a)[0] for x in range(len(p))]),
                         "lambda = r_top + beta·t overflows float64: reward or beta too large")


def f_optimal_policy(pi_ref, reward, beta, f_divergence_type: str = "reverse_kl", alpha: float = 0.5) -> np.ndarray:
    """The maximiser of J_f(π) = Σ_y π(y|x)·r(x, y) − β·D_f(π ‖ π_ref), per prompt.

    π_f(y|x) = π_ref(y|x)·(f')^{-1}((r(x, y) − λ(x))/β) on π_ref's support, λ(x) from :func:`f_normalizer`
    (Wang et al. 2023, Theorem 1; the reverse KL gives chapter 2's π* = π_ref·e^{r/β}/Z). Off the support it
    is 0, except for the forward KL, JS and α < 1 when a response there has reward above λ(x) + β·f'(∞)
    (module docstring).

    Parameters
    ----------
    pi_ref : (n_prompts, n) array, each row a distribution
    reward : (n_prompts, n) finite rewards
    beta : float > 0
    f_divergence_type : one of :data:`F_DIVERGENCES`
    alpha : TRL's ``f_alpha_divergence_coef`` a ≤ 1 (``alpha_divergence`` only; Wang et al.'s α is 1 − a)

    Returns
    -------
    (n_prompts, n) float64 array of probabilities.

    Raises
    ------
    ValueError
        β ≤ 0, a π_ref row that is not a distribution, shapes that differ, non-finite rewards, an unknown
        ``f_divergence_type``, ``alpha`` > 1.
    """
    f, a = _check_f(f_divergence_type, alpha)
    p, r, b = _check_problem(pi_ref, reward, beta)
    return np.stack([_solve_row(p[x], r[x], b, f, a)[1] for x in range(len(p))])


def f_divergence_value(pi, pi_ref, f_divergence_type: str = "reverse_kl", alpha: float = 0.5) -> np.ndarray:
    """D_f(π ‖ π_ref) = Σ_{π_ref>0} π_ref·f(π/π_ref) + f'(∞)·Σ_{π_ref=0} π, per prompt (may be +inf).

    Wang et al. 2023, §3 (the f-divergence; the second term is the perspective of f where π_ref = 0).
    Shapes: (n_prompts, n), (n_prompts, n) -> (n_prompts,).
    """
    f, a = _check_f(f_divergence_type, alpha)
    q = np.atleast_2d(check_distribution(pi, "pi"))
    p = np.atleast_2d(check_distribution(pi_ref, "pi_ref"))
    check_same_shape(q, p, "pi", "pi_ref")
    S = p > 0
    u = np.where(S, q / np.where(S, p, 1.0), 1.0)
    try:
        on = np.where(S, p * f_function(u, f, a), 0.0).sum(axis=-1)
    except ValueError:
        raise ValueError(f"D_f overflows float64: f(pi/pi_ref) is beyond float64 for these pi, pi_ref at "
                         f"alpha={a:g} ({f})") from None
    off_mass = np.where(S, 0.0, q).sum(axis=-1)
    with np.errstate(invalid="ignore"):
        off = np.where(off_mass > 0, _sup_score(f, a) * off_mass, 0.0)
    return on + off


def f_regularized_objective(pi, pi_ref, reward, beta, f_divergence_type: str = "reverse_kl",
                            alpha: float = 0.5) -> np.ndarray:
    """J_f(π) = Σ_y π(y|x)·r(x, y) − β·D_f(π ‖ π_ref), per prompt (Wang et al. 2023: chapter 2's objective
    with D_f in place of the KL). Shapes: (n_prompts, n) x3 -> (n_prompts,)."""
    b = check_beta(beta)
    q = np.atleast_2d(check_distribution(pi, "pi"))
    r = np.atleast_2d(as_float_array(reward, "reward"))
    check_same_shape(q, r, "pi", "reward")
    return (q * r).sum(axis=-1) - b * f_divergence_value(q, pi_ref, f_divergence_type, alpha)


def f_dpo_loss(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta, loss_type: str = "sigmoid",
               label_smoothing: float = 0.0, *, f_divergence_type: str = "reverse_kl", alpha: float = 0.5,
               length_chosen=None, length_rejected=None) -> torch.Tensor:
    """Per-pair f-DPO losses: a DPO-family loss on the scores f'(π/π_ref) in place of the log-ratios.

    With s_w = f'(π_θ(y_w)/π_ref(y_w)) and s_l = f'(π_θ(y_l)/π_ref(y_l)) (:func:`f_score`), ``sigmoid`` is
    −log σ(β·(s_w − s_l)) (Wang et al. 2023, the f-DPO loss), and every loss of :data:`F_DPO_LOSS_TYPES` is
    :func:`prefkit.losses.preference_loss` with (s_w, s_l) as the log-ratios (``ipo`` and ``sigmoid_norm``
    divide the scores by the lengths; ``sft`` does not depend on f). This is TRL 1.16's
    ``DPOTrainer._compute_loss`` with ``f_divergence_type`` and ``f_alpha_divergence_coef = alpha``; with
    ``reverse_kl`` it is :func:`prefkit.losses.preference_loss`. Inputs as there; shapes (B,) -> (B,).

    Raises
    ------
    ValueError
        as :func:`prefkit.losses.preference_loss`, and for an unknown ``f_divergence_type``, ``alpha`` > 1, a
        loss type outside :data:`F_DPO_LOSS_TYPES` with an f other than the reverse KL (as TRL), or scores
        that overflow (the forward KL's e^(−ℓ) for ℓ ≲ −709).
    """
    f, a = _check_f(f_divergence_type, alpha)
    loss_type = _check_loss_type(loss_type)
    if f != "reverse_kl" and loss_type not in F_DPO_LOSS_TYPES:
        raise ValueError(f"f_divergence_type={f_divergence_type!r} is only defined for loss types "
                         f"{F_DPO_LOSS_TYPES} (the others use each response's own log-ratio, where the "
                         f"normaliser lambda(x) does not cancel), not {loss_type!r}")
    lengths = {"length_chosen": length_chosen, "length_rejected": length_rejected}
    if f == "reverse_kl" or loss_type == "sft":
        return preference_loss(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta, loss_type,
                               label_smoothing, **lengths)
    check_label_smoothing(label_smoothing, loss_type)
    lp_w, lp_l, ref_w, ref_l = _check_logps([("logp_chosen", logp_chosen), ("logp_rejected", logp_rejected),
                                             ("ref_logp_chosen", ref_logp_chosen),
                                             ("ref_logp_rejected", ref_logp_rejected)])
    try:
        s_w = f_score(lp_w - ref_w.to(lp_w), f, a)  # (B,) f'(π/π_ref) of the chosen responses
        s_l = f_score(lp_l - ref_l.to(lp_l), f, a)  # (B,)
    except ValueError:
        raise ValueError(f"the {f_divergence_type} score f'(pi/pi_ref) overflows for these logp_chosen, "
                         f"logp_rejected, ref_logp_chosen, ref_logp_rejected (a log-ratio far below 0, or "
                         f"log-probs too large to subtract)") from None
    zero = torch.zeros_like(s_w)
    return preference_loss(s_w, s_l, zero, zero, beta, loss_type, label_smoothing, **lengths)


@dataclass(repr=False)
class FDPOFit:
    """The output of :func:`fit_f_dpo`: ``policy`` (n_prompts, n), the final ``loss``, ``grad_norm`` (max-abs
    gradient in the logits), ``converged`` (grad_norm ≤ tol) and ``n_iter`` (L-BFGS iterations)."""

    policy: np.ndarray
    loss: float
    grad_norm: float
    converged: bool
    n_iter: int

    def __repr__(self) -> str:
        return (f"FDPOFit(policy {self.policy.shape[0]}x{self.policy.shape[1]}, loss={self.loss:.6g}, "
                f"grad_norm={self.grad_norm:.2g}, converged={self.converged}, n_iter={self.n_iter})")


def fit_f_dpo(pi_ref, preferences, beta, *, weights=None, f_divergence_type: str = "reverse_kl",
              alpha: float = 0.5, loss_type: str = "sigmoid", label_smoothing: float = 0.0, tol: float = 1e-12,
              max_iter: int = 5000) -> FDPOFit:
    """Fit a tabular policy (one free logit per (x, y) on π_ref's support) by f-DPO, full batch, to ``tol``.

    Minimises Σ_i w_i·ℓ_i / Σ_i w_i with ℓ_i = :func:`f_dpo_loss` on pair i, by scipy's L-BFGS-B (Nocedal &
    Wright 2006, Alg. 7.5) on torch float64 gradients, starting at π_ref, then Newton steps. With exact BT data
    on r* (rows (x, i, j) and (x, j, i) with weights σ(r*_i − r*_j) and σ(r*_j − r*_i), over a connected set of
    pairs covering S) the minimiser is :func:`f_optimal_policy` of r* at the same β (Wang et al. 2023, Theorem 1).

    Parameters
    ----------
    pi_ref : (n_prompts, n) array, each row a distribution
    preferences : (m, 3) int array of (prompt, chosen, rejected), responses with π_ref > 0
    beta : float > 0
    weights : (m,) non-negative, optional
    f_divergence_type, alpha, loss_type, label_smoothing : as in :func:`f_dpo_loss`
    tol : max-abs gradient at which the fit counts as converged (a :class:`prefkit.dpo.ConvergenceWarning`
        otherwise). L-BFGS runs until it can no longer lower the loss in float64 (a gradient of 1e-12 to
        1e-8); Newton steps with the autograd Hessian (tables of up to 2000 logits) then finish.
    max_iter : L-BFGS iteration budget

    Returns
    -------
    :class:`FDPOFit`

    Raises
    ------
    ValueError
        as :func:`prefkit.dpo.fit_dpo` for the data, and as :func:`f_dpo_loss` for the loss.
    """
    from .dpo import ConvergenceWarning, _check_data

    b = check_beta(beta)
    f, a = _check_f(f_divergence_type, alpha)
    p_ref, prefs, w, loss_type, eps = _check_data(pi_ref, preferences, weights, loss_type, label_smoothing)
    if w.sum() <= 0:
        raise ValueError("weights must not all be zero")
    w = check_weights(w, len(prefs)) / w.sum()
    tol = check_real(tol, "tol", lo=0.0)
    max_iter = int(check_real(max_iter, "max_iter", lo=1.0))
    support = torch.as_tensor(p_ref > 0)
    with np.errstate(divide="ignore"):
        ref_logp = torch.as_tensor(np.log(p_ref))  # −inf off the support
    x, yw, yl = (torch.as_tensor(c) for c in prefs.T)
    w_t = torch.as_tensor(w)
    shape = p_ref.shape

    def log_policy(z: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(z.masked_fill(~support, -math.inf), dim=-1)  # (n_prompts, n)

    def objective(z: torch.Tensor) -> torch.Tensor:
        logp = log_policy(z.reshape(shape))
        per_pair = f_dpo_loss(logp[x, yw], logp[x, yl], ref_logp[x, yw], ref_logp[x, yl], b, loss_type, eps,
                              f_divergence_type=f, alpha=a)
        return (w_t * per_pair).sum()

    def loss_and_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
        z = torch.as_tensor(v).requires_grad_(True)
        try:
            loss = objective(z)
            (g,) = torch.autograd.grad(loss, z)
        except ValueError:
            loss, g = torch.tensor(math.nan), None
        if not (math.isfinite(float(loss.detach())) and bool(torch.isfinite(g).all())):
            raise ValueError(f"fit_f_dpo: the loss or its gradient left float64 at beta={b:g} (beta too large or "
                             f"too small for these preferences and weights)")
        return float(loss.detach()), g.numpy()

    z0 = np.where(p_ref > 0, np.log(np.where(p_ref > 0, p_ref, 1.0)), 0.0).ravel()
    res = minimize(loss_and_grad, z0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0, "maxcor": 30})
    v, n_iter = res.x, int(res.nit)
    loss, g = loss_and_grad(v)
    # L-BFGS stalls where float64 no longer resolves the loss's decrease; Newton steps on the gradient (minimum-norm
    # solutions: the Hessian is singular along each prompt's logit shift) finish the job on small tables.
    for _ in range(20 if v.size <= 2000 else 0):
        if np.max(np.abs(g)) <= tol:
            break
        H = torch.autograd.functional.hessian(objective, torch.as_tensor(v)).numpy()
        v_new = v - np.linalg.lstsq(H, g, rcond=1e-13)[0]
        loss_new, g_new = loss_and_grad(v_new)
        if not np.max(np.abs(g_new)) < np.max(np.abs(g)):
            break
        v, loss, g, n_iter = v_new, loss_new, g_new, n_iter + 1
    grad_norm = float(np.max(np.abs(g)))
    converged = grad_norm <= tol
    if not converged:
        warnings.warn(f"fit_f_dpo stopped after {n_iter} iterations with max |gradient| {grad_norm:.2e} > "
                      f"tol={tol:g} ({res.message})", ConvergenceWarning, stacklevel=2)
    with torch.no_grad():
        policy = log_policy(torch.as_tensor(v.reshape(shape))).exp().numpy()
    return FDPOFit(policy=policy, loss=loss, grad_norm=grad_norm, converged=converged, n_iter=n_iter)
