"""Fitting a policy by DPO: the deterministic solver, Adam/SGD for training dynamics, and on-policy rounds.

The change of variables (Rafailov et al. 2023, §4): substituting r(x, y) = β·log(π(y|x)/π_ref(y|x)) + β·log
Z(x) into Bradley-Terry, log Z(x) cancels in r(x, y_w) − r(x, y_l), so maximum likelihood on preferences is
a loss on the policy alone,

    L(θ) = Σ_i w_i·ℓ(β·[(log π_θ(y_w,i) − log π_ref(y_w,i)) − (log π_θ(y_l,i) − log π_ref(y_l,i))]) / Σ_i w_i,

with ℓ one of :data:`prefkit.losses.LOSSES` (DPO: ℓ(m) = −log σ(m)). With exact BT probabilities from r*
over every pair of a prompt's responses (weights p and 1 − p), the minimiser of the tabular DPO loss is π*
of r* at the same β (Rafailov et al. 2023, Theorem 1). Where the pairs do not connect a prompt's responses,
only the differences along the comparison graph's edges are identified (:func:`prefkit.optima.dpo_solution_set`).

Functions here: :func:`fit_dpo` (one run, any loss type, tabular or log-linear; by default the deterministic
L-BFGS solver to a tight tolerance, Newton, Adam or SGD on request), :func:`fit_dpo_online` (iterative, on-policy
DPO), :func:`dpo_obstruction` (why a loss has no minimiser on given data), :func:`dpo_loss_value` and
:func:`total_variation`. The closed-form answers the fits are checked against are in :mod:`prefkit.optima`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import (
    ConvergenceWarning,
    as_float_array,
    check_beta,
    check_distribution,
    check_int,
    check_real,
    check_seed,
    check_weights,
    finite_result,
    normalize_weights,
)
from .closed_form import kl_divergence
from .displacement_tracking import _displacement_metrics
from .losses import (
    LOSSES,
    _check_loss_type,
    _logp_arguments,
    _not_finite_message,
    _preference_metrics,
    check_label_smoothing,
    preference_loss,
)
from .optima import _check_preferences
from .policies import TrainedPolicy, make_policy

__all__ = [
    "DPOResult",
    "ConvergenceWarning",
    "fit_dpo",
    "fit_dpo_online",
    "dpo_obstruction",
    "dpo_loss_value",
    "OPTIMIZERS",
    "total_variation",
]

OPTIMIZERS = ("lbfgs", "newton", "adam", "sgd")
DEFAULT_LR = {"lbfgs": 1.0, "newton": 1.0, "adam": 0.05, "sgd": 0.5}
DEFAULT_STEPS = {"lbfgs": 2000, "newton": 100, "adam": 200, "sgd": 200}
DEFAULT_TOL = 1e-10  # max-abs gradient at which the deterministic solvers stop


def total_variation(p, q) -> float:
    """Largest total-variation distance over prompts: max_x ½·Σ_y |p(y|x) − q(y|x)|. Shapes (n_prompts, n)."""
    p, q = np.atleast_2d(check_distribution(p, "p")), np.atleast_2d(check_distribution(q, "q"))
    if p.shape != q.shape:
        raise ValueError(f"shape mismatch: p has shape {p.shape} but q has shape {q.shape}")
    return float(np.max(0.5 * np.abs(p - q).sum(axis=-1)))


@dataclass(repr=False)
class DPOResult(TrainedPolicy):
    """The output of :func:`fit_dpo`.

    Attributes
    ----------
    model : the trained :mod:`prefkit.policies` module (``model.log_probs()`` is (n_prompts, n_responses))
    policy, pi : the fitted policy π_θ as a (n_prompts, n_responses) array of probabilities
    history : list of per-step dicts, one per recorded step (``record_every`` of :func:`fit_dpo`; by default
        every step for Adam and SGD, only the first and the last for L-BFGS and Newton). Entry 0 is the initial
        policy, the last entry the returned one. Keys: ``step``, ``loss`` (the
        objective, RPO term included), TRL's metrics (:func:`prefkit.losses.preference_metrics`:
        ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``,
        ``logps/chosen``, ``logps/rejected``), the keys of
        :func:`prefkit.displacement_tracking.displacement_step` (``mass/neither``, ``top_gainer``, ...),
        ``grad_norm`` (max-abs gradient), ``cost/grad_steps``, ``cost/loss_evals`` and ``time/wall``.
    converged : whether the max-abs gradient fell below ``tol`` (deterministic optimisers). Always False
        when the loss has no minimiser (``obstruction`` is set): a small gradient then only means the
        loss has flattened out on its way to infinity.
    obstruction : None, or why the loss has no minimiser on these data (:func:`dpo_obstruction`)
    """

    beta: float = 0.0
    loss_type: str = "sigmoid"
    converged: bool = False
    obstruction: str | None = None

    def __repr__(self) -> str:  # short: the module and the history would print thousands of numbers
        n_prompts, n = self.model.log_probs().shape
        last = self.history[-1] if self.history else {}
        steps = last.get("step", last.get("round", 0))
        loss = f", loss={last['loss']:.6g}" if "loss" in last else ""
        grad = f", grad_norm={last['grad_norm']:.2g}" if "grad_norm" in last else ""
        obs = ", obstruction=yes" if self.obstruction else ""
        return (f"DPOResult({type(self.model).__name__} {n_prompts}x{n}, loss_type={self.loss_type!r}, "
                f"beta={self.beta:g}, steps={steps}{loss}{grad}, converged={self.converged}{obs})")


# Losses whose infimum can lie at infinity, and the c of their recession function (see dpo_obstruction).
_MAY_DIVERGE = ("sigmoid", "robust")


def dpo_obstruction(pi_ref, preferences, *, weights=None, loss_type: str = "sigmoid",
                    label_smoothing: float = 0.0, features=None) -> str | None:
    """Why a DPO-family loss has no minimiser on these data (its infimum lies at infinity), or None.

    Per loss, for the tabular policy (free logits z per prompt) and the log-linear one (z = θᵀφ):

    * ``sigmoid`` with ε = 0 (DPO), ``robust`` with ε = 0: ℓ(m) = −log σ(m) falls strictly towards 0 as
      m → ∞. Tabular: the loss is the Bradley-Terry likelihood of the logits, so it has no minimiser
      exactly when, within some connected group of compared responses of some prompt, the directed graph
      winner → loser (rows of positive weight) is not strongly connected (Zermelo 1929; chapter 1's
      :func:`prefkit.bradley_terry.mle_obstruction`, called on each group; responses never compared are
      simply left where they are). Log-linear: no minimiser exactly when some direction v of θ has
      (φ_w − φ_l)·v ≥ 0 on every row and > 0 on one (the pairs are separable; a linear program).
      Deterministic data (Azar et al. 2023, §5) always fall here.
    * ``robust`` with ε > 0: the per-pair loss falls *linearly* without bound as m → ∞ (slope −βε/(1 − 2ε)),
      so the loss is unbounded below when Σ_k w_k·[(−s_k)₊ − ε/(1 − 2ε)·s_k] < 0 for some direction v
      (s_k = the change of row k's margin along v): a linear program. E.g. one pair with both orders,
      weights p and 1 − p: unbounded below iff min(p, 1 − p) < ε.
    * ``sigmoid`` with ε > 0 (cDPO), ``ipo``, ``sppo_hard``: the loss grows without bound along every
      direction that changes a margin, so a minimiser exists (unique up to what the data do not see).
      ``hinge``: convex, piecewise linear and ≥ 0, so its minimum is attained (a set, often unbounded).
    * Not checked (returns None): ``exo_pair`` (bounded, each pair minimised at the finite margin
      log((1 − ε)/ε)); ``bco_pair``, ``nca_pair``, ``apo_zero`` depend on each response's own log-ratio
      and are monotone in a rejected one, so their infimum often lies on the boundary π(y) = 0; the
      condition is not a graph property and is not detected here.

    Parameters
    ----------
    pi_ref, preferences, weights, loss_type, label_smoothing, features : as in :func:`fit_dpo`

    Returns
    -------
    None, or a sentence saying which responses of which prompt (or which direction of θ) run off to
    infinity.
    """
    p_ref, prefs, w, loss_type, eps = _check_data(pi_ref, preferences, weights, loss_type, label_smoothing)
    phi = None if features is None else as_float_array(features, "features", ndim=3)
    if phi is not None and phi.shape[2] == 0:
        raise ValueError("features has no columns (d = 0): a log-linear policy needs at least one feature")
    return _obstruction(p_ref, prefs, w, loss_type, eps, phi)


def _check_data(pi_ref, preferences, weights, loss_type, label_smoothing):
    """The checks shared by :func:`fit_dpo` and :func:`dpo_obstruction`: (p_ref, prefs, w, loss_type, eps)."""
    loss_type = _check_loss_type(loss_type)
    eps = check_label_smoothing(label_smoothing, loss_type)
    p_ref = check_distribution(pi_ref, "pi_ref")
    if p_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p_ref.shape}")
    prefs = _check_preferences(preferences, p_ref)
    w = check_weights(weights, len(prefs))
    _check_batch_loss_weights(loss_type, weights, w)
    return p_ref, prefs, w, loss_type, eps


def _check_batch_loss_weights(loss_type, weights, w) -> None:
    """``aot`` and ``aot_unpaired`` sort the batch's log-ratios (:mod:`prefkit.losses`): their k-th output belongs to
    the k-th sorted position, not to pair k, so a per-pair weight would weight the wrong term. Equal weights are
    accepted (they change nothing); unequal ones are refused."""
    if loss_type in ("aot", "aot_unpaired") and weights is not None and len(w) and np.ptp(w) > 0:
        raise ValueError(f"loss_type {loss_type!r} sorts the log-ratios over the batch, so its outputs are not per "
                         f"pair and per-pair weights do not apply; repeat the rows instead of weighting them, or use "
                         f"another loss type")


def _obstruction(p_ref, prefs, w, loss_type, eps, phi) -> str | None:
    if loss_type not in _MAY_DIVERGE or (loss_type == "sigmoid" and eps > 0):
        return None
    keep = w > 0
    prefs, w = prefs[keep], w[keep]
    n_prompts, n = p_ref.shape
    c = eps / (1 - 2 * eps) if loss_type == "robust" else 0.0
    if phi is None and c == 0.0:
        return _tabular_obstruction(prefs, n_prompts, n, loss_type)
    # the margin's change along a direction v of the parameters, per row: s = D v
    if phi is None:
        D = np.zeros((len(prefs), n_prompts * n))
        rows = np.arange(len(prefs))
        D[rows, prefs[:, 0] * n + prefs[:, 1]] += 1.0
        D[rows, prefs[:, 0] * n + prefs[:, 2]] -= 1.0
    else:
        D = phi[prefs[:, 0], prefs[:, 1]] - phi[prefs[:, 0], prefs[:, 2]]  # (m, d)
    if _diverging_direction(D, w / w.sum(), c):
        what = "a direction of theta" if phi is not None else "a direction of the logits"
        if c == 0.0:
            return (f"{what} raises every pair's margin (the pairs are separable), so the {loss_type} loss "
                    f"keeps falling along it (no minimiser)")
        return (f"{what} makes the robust loss fall linearly without bound (label_smoothing={eps:g} exceeds "
                f"the minority preference along it): no minimiser")
    return None


def _tabular_obstruction(prefs: np.ndarray, n_prompts: int, n: int, loss_type: str) -> str | None:
    """The tabular, ε = 0 case of :func:`dpo_obstruction`: on the graph of all (prompt, response) vertices with an
    arc winner → loser per row (``prefs``, rows of positive weight), the loss has no minimiser iff some weakly
    connected group of compared responses (one prompt's, as rows never join prompts) holds more than one strongly
    connected component. Both by scipy's ``connected_components``, for all prompts at once; the first such group
    (by prompt, then by its smallest response) is described by chapter 1's
    :func:`prefkit.bradley_terry.mle_obstruction`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from .bradley_terry import mle_obstruction

    if len(prefs) == 0:
        return None
    v = n_prompts * n
    win, lose = prefs[:, 0] * n + prefs[:, 1], prefs[:, 0] * n + prefs[:, 2]  # (m,) flat vertex ids
    g = coo_matrix((np.ones(len(prefs)), (win, lose)), shape=(v, v)).tocsr()
    _, weak = connected_components(g, directed=True, connection="weak")  # (v,) group labels
    _, strong = connected_components(g, directed=True, connection="strong")  # (v,)
    compared = np.unique(np.concatenate([win, lose]))
    groups, n_strong = np.unique(np.unique(weak[compared] * v + strong[compared]) // v, return_counts=True)
    bad = groups[n_strong > 1]
    if len(bad) == 0:
        return None
    first = compared[np.isin(weak[compared], bad)].min()  # the smallest flat id: lowest prompt, then response
    x, members = int(first // n), np.flatnonzero(weak == weak[first]) - (first // n) * n
    e = prefs[weak[win] == weak[first]][:, 1:]  # (k, 2) winner, loser within the group
    group, kind = mle_obstruction(np.searchsorted(members, e), n_items=len(members))
    group = members[group].tolist()
    return (f"prompt {x}: responses {group} {kind} against the other responses "
            f"{sorted(set(members.tolist()) - set(group))} they were compared with, so the "
            f"{loss_type} loss keeps falling as their log-ratio gap grows (no minimiser)")


def _diverging_direction(D: np.ndarray, w: np.ndarray, c: float) -> bool:
    """Is there v in [−1, 1]^P along which the loss's recession Σ_k w_k·[(−s_k)₊ − c·s_k], s = D·v, is < 0
    (c > 0), or, for c = 0, = 0 with some s_k > 0? Linear programs (scipy's HiGHS)."""
    from scipy.optimize import linprog

    m, P = D.shape
    scale = max(1.0, float(np.abs(D).max()))
    if c == 0.0:  # max Σ w_k s_k subject to s = D v ≥ 0
        res = linprog(-(w @ D), A_ub=-D, b_ub=np.zeros(m), bounds=[(-1, 1)] * P, method="highs")
        return res.status == 0 and -res.fun > 1e-9 * scale
    # min Σ w_k (a_k − c s_k) over (v, a) with a ≥ −D v, a ≥ 0
    cost = np.concatenate([-c * (w @ D), w])
    A = np.hstack([-D, -np.eye(m)])
    res = linprog(cost, A_ub=A, b_ub=np.zeros(m), bounds=[(-1, 1)] * P + [(0, None)] * m, method="highs")
    return res.status == 0 and res.fun < -1e-9 * scale


def fit_dpo(pi_ref, preferences, beta, *, weights=None, loss_type: str = "sigmoid",
            label_smoothing: float = 0.0,
            features=None, sft_coef: float = 0.0, optimizer: str = "lbfgs", steps: int | None = None,
            lr: float | None = None, tol: float | None = None, policy=None, callback=None,
            record_every: int | None = None) -> DPOResult:
    """Fit a tabular (or log-linear) policy by a DPO-family loss on preference pairs, full batch.

    Minimises L(θ) = Σ_i w_i·[ℓ_i(θ) − sft_coef·log π_θ(y_w,i|x_i)] / Σ_i w_i, where ℓ_i is
    :func:`prefkit.losses.preference_loss` on pair i (Rafailov et al. 2023, Eq. 7 for ``sigmoid``) and the
    second term is RPO's NLL on the chosen response (Pang et al. 2024, "Iterative Reasoning Preference
    Optimization", Eq. 3; TRL's ``loss_type=["sigmoid", "sft"]``).

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses) array, each row a distribution
    preferences : (m, 3) int array of (prompt, chosen, rejected)
    beta : float > 0
    weights : (m,) non-negative array, optional. Exact BT data enter as rows (x, i, j) and (x, j, i) with
        weights p and 1 − p (:meth:`prefkit.problems.Problem.preference_probabilities`).
    loss_type, label_smoothing : see :func:`prefkit.losses.preference_loss`
    features : (n_prompts, n_responses, d) array, optional: a log-linear policy π ∝ π_ref·exp(θᵀφ) with one θ
        shared by all prompts, instead of a free logit per (x, y)
    sft_coef : float ≥ 0, the RPO coefficient
    optimizer : ``"lbfgs"`` (the default: the exact solver, deterministic, strong-Wolfe line search, run to
        a max-abs gradient of ``tol``; the minimiser the theory is about), ``"newton"`` (full Hessian,
        minimum-norm step by least squares; small problems only), or, for training dynamics, ``"adam"`` and
        ``"sgd"`` (plain gradient descent, the gradient flow of the loss), which take ``steps`` steps
    steps : maximum number of optimiser steps (one L-BFGS / Newton iteration counts as one step); default
        2000 for L-BFGS, 100 for Newton, 200 for Adam and SGD
    lr : step size (default 1 for Newton, 0.05 for Adam, 0.5 for SGD; L-BFGS picks its own by line search)
    tol : max-abs gradient at which the run counts as converged. L-BFGS and Newton stop there (default 1e-10)
        and warn (:class:`ConvergenceWarning`) when they stop short of it. Adam and SGD run all ``steps``
        unless ``tol`` is given; then they stop early at it and warn if they never reach it.
    policy : a :mod:`prefkit.policies` module to continue training (default: a fresh one at π_ref)
    callback : optional ``callback(step, policy)``, called at step 0 (before training) and after every step
    record_every : int ≥ 1 or None: a history row every this many steps, besides step 0 and the last step
        (always recorded). Default None: every step for Adam and SGD (the training curve), only step 0 and the
        last for L-BFGS and Newton (their path is not the point, and on large data a row costs several loss
        evaluations' worth of metrics). A row reuses the loss, gradient and log-probs of the optimiser's own
        evaluation at that step: recording adds no loss evaluation.

    Returns
    -------
    :class:`DPOResult` with ``.policy`` (array), ``.model`` (torch module), ``.history``, ``.converged`` and
    ``.obstruction``. When the loss has no minimiser on these data (:func:`dpo_obstruction`, e.g. DPO on
    deterministic preferences), ``converged`` is False and ``obstruction`` says why; L-BFGS and Newton then
    also emit a :class:`ConvergenceWarning` (a ``RuntimeWarning``). This is not an error: the run is the "DPO
    drives π(y_a) → 1" of Azar et al. (2023), and the returned policy is a point on the way to infinity that
    depends on ``steps``/``tol``.

    Raises
    ------
    ValueError
        β ≤ 0, unknown ``loss_type`` or ``optimizer``, label smoothing outside [0, 0.5), an index out of
        range, a row with chosen = rejected, a pair on a response with π_ref = 0, weights of the wrong
        shape or negative or all zero, unequal weights with ``aot`` or ``aot_unpaired`` (which sort the batch, so
        their outputs are not per pair), sft_coef < 0, lr ≤ 0, tol < 0 (each named).
    """
    b = check_beta(beta)
    p_ref, prefs, w, loss_type, eps = _check_data(pi_ref, preferences, weights, loss_type, label_smoothing)
    w = normalize_weights(w)  # the loss is a weighted mean: only the ratios matter (no overflow of Σw)
    sft = check_real(sft_coef, "sft_coef", lo=0.0)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable, got {callback!r}")
    if policy is not None:
        if not (hasattr(policy, "log_probs") and hasattr(policy, "parameters")):
            raise ValueError(f"policy must be a prefkit.policies module, got {type(policy).__name__}")
        with torch.no_grad():
            shape = tuple(policy.log_probs().shape)
        if shape != p_ref.shape:
            raise ValueError(f"shape mismatch: policy gives log-probs of shape {shape} but pi_ref has shape "
                             f"{p_ref.shape}")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    steps = DEFAULT_STEPS[optimizer] if steps is None else check_int(steps, "steps", 0)
    exact = optimizer in ("lbfgs", "newton")
    if record_every is None:  # the solvers' path is not the point; a training curve is
        record_every = steps + 1 if exact else 1
    check_int(record_every, "record_every", 1)
    lr = DEFAULT_LR[optimizer] if lr is None else check_real(lr, "lr", lo=0.0, lo_open=True)
    tol_given = tol is not None
    tol = DEFAULT_TOL if tol is None else check_real(tol, "tol", lo=0.0)
    early_stop = exact or tol_given

    pol = make_policy(p_ref, features) if policy is None else policy
    if features is not None:
        phi = as_float_array(features, "features", ndim=3)
    elif hasattr(pol, "features"):
        phi = pol.features.detach().numpy()
    else:
        phi = None
    obstruction = _obstruction(p_ref, prefs, w, loss_type, eps, phi)
    # Everything the loss needs is checked above, once: indices in range, pairs on π_ref's support (so the
    # reference log-probs are finite), β, ε, the weights. Each evaluation then checks only the (scalar) loss
    # and the max-abs gradient for NaN/inf, which any non-finite log-prob or per-pair loss propagates to.
    n = p_ref.shape[1]
    with np.errstate(divide="ignore"):
        ref_logp_flat = np.log(p_ref).reshape(-1)
    idx_w = torch.as_tensor(prefs[:, 0] * n + prefs[:, 1])  # (m,) flat index of (x, y_w)
    idx_l = torch.as_tensor(prefs[:, 0] * n + prefs[:, 2])  # (m,) flat index of (x, y_l)
    ref_w = torch.as_tensor(ref_logp_flat[idx_w.numpy()])  # (m,)
    ref_l = torch.as_tensor(ref_logp_flat[idx_l.numpy()])  # (m,)
    w_t = torch.as_tensor(w / w.sum())  # (m,), sums to 1
    per_pair_loss = _unchecked_preference_loss(ref_w, ref_l, b, loss_type, eps)
    params = [q for q in pol.parameters() if q.requires_grad]
    counts = {"grad_steps": 0, "loss_evals": 0}
    last = {}  # the latest evaluation: flat parameters "x", "loss", flat gradient "g", "gnorm", "logp", "lp_w", "lp_l"

    def pair_logps(logp):  # (n_prompts, n) -> log π_θ(y_w|x), log π_θ(y_l|x), each (m,)
        flat = logp.reshape(-1)
        return flat.index_select(0, idx_w), flat.index_select(0, idx_l)

    def objective() -> torch.Tensor:
        counts["loss_evals"] += 1
        last.pop("x", None)  # until loss_and_grad says where: Newton's steps call this alone
        logp = pol.log_probs()  # (n_prompts, n_responses)
        lp_w, lp_l = pair_logps(logp)  # (m,)
        per_pair = per_pair_loss(lp_w, lp_l)
        if sft:
            per_pair = per_pair - sft * lp_w
        loss = (w_t * per_pair).sum()  # a NaN or inf in any row (even of weight 0) makes this NaN or inf
        if not bool(torch.isfinite(loss.detach())):
            _raise_not_finite(lp_w, lp_l, optimizer, lr, b, loss_type)
        last.update(logp=logp.detach(), lp_w=lp_w.detach(), lp_l=lp_l.detach())
        return loss

    def flat_params() -> np.ndarray:
        return torch.cat([q.detach().reshape(-1) for q in params]).numpy().copy()

    def loss_and_grad() -> tuple[float, float]:
        """Loss and max-abs gradient at the current parameters (the gradient is left in ``q.grad``, and all
        of it in ``last``: L-BFGS, the optimiser steps and the history rows reuse it)."""
        for q in params:
            q.grad = None
        loss = objective()
        loss.backward()
        g = torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in params])
        g = g.numpy().copy()
        gnorm = float(np.abs(g).max()) if g.size else 0.0
        if not np.isfinite(gnorm):
            raise _NotFinite(f"training diverged: the gradient of the loss is not finite (optimizer={optimizer!r}, "
                             f"lr={lr!r}, beta={b!r}); lower lr or beta")
        last.update(x=flat_params(), loss=float(loss.detach()), g=g, gnorm=gnorm)
        return last["loss"], gnorm

    def is_current() -> bool:  # was the latest evaluation at the current parameters?
        return "x" in last and np.array_equal(last["x"], flat_params())

    history: list[dict] = []
    with torch.no_grad():
        logp_init = pol.log_probs().numpy().copy()
    # the history rows' metrics on data fit_dpo has checked (preference_metrics and displacement_step check
    # theirs on every call: 30-70 ms a row on 245k pairs)
    w_metrics = w_t.detach().to(torch.float64)
    w_metrics = w_metrics / w_metrics.max()
    prompts = np.unique(prefs[:, 0])
    t0 = time.perf_counter()

    def record(step: int, loss: float, gnorm: float) -> None:
        """One history row. The loss and gradient norm are the optimiser's; so are the log-probs when the latest
        evaluation was at the current parameters (else one forward pass, no loss)."""
        if is_current():
            logp, lp_w, lp_l = last["logp"], last["lp_w"], last["lp_l"]
        else:
            with torch.no_grad():
                logp = pol.log_probs()
            lp_w, lp_l = pair_logps(logp)
        row = {"step": step, "loss": loss, "grad_norm": gnorm}
        row.update(_preference_metrics(*(t.detach().to(torch.float64) for t in (lp_w, lp_l, ref_w, ref_l)), b,
                                       w_metrics))
        row.update(_displacement_metrics(logp.numpy(), logp_init, prefs, prompts))
        row.update({"cost/grad_steps": counts["grad_steps"], "cost/loss_evals": counts["loss_evals"],
                    "time/wall": time.perf_counter() - t0})
        history.append(row)

    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        opt = None

    loss, gnorm = loss_and_grad()
    record(0, loss, gnorm)
    if callback is not None:
        callback(0, pol)
    converged = early_stop and gnorm <= tol
    if optimizer == "lbfgs":
        if not converged and steps > 0:
            converged = _scipy_lbfgs(params, loss_and_grad, last, is_current, steps, tol, counts, record, callback,
                                     pol, record_every)
        left = steps - counts["grad_steps"]  # L-BFGS's line search gave up before its step budget: polish
        if not converged and left > 0 and obstruction is None and sum(q.numel() for q in params) <= _POLISH_MAX_PARAMS:
            converged = _newton_polish(params, objective, loss_and_grad, tol, counts, record, callback, pol,
                                       min(left, 20))
        if history[-1]["step"] != counts["grad_steps"]:  # the last step is always recorded
            if not is_current():
                loss_and_grad()
            record(counts["grad_steps"], last["loss"], last["gnorm"])
        return _result(pol, history, b, loss_type, converged, obstruction, optimizer, tol, warn=True)
    for t in range(1, steps + 1):
        if converged:
            break
        if optimizer == "newton":
            _newton_step(params, objective, lr)
        else:
            if not is_current():  # a callback moved the parameters: the step needs their gradient
                loss_and_grad()
            opt.step()  # on the gradient loss_and_grad left in q.grad, at the current parameters
        counts["grad_steps"] += 1
        if callback is not None:
            callback(t, pol)
        loss, gnorm = loss_and_grad()  # at θ_t: the stopping test, the history row and the next step's gradient
        converged = early_stop and gnorm <= tol
        if t % record_every == 0 or t == steps or converged:
            record(t, loss, gnorm)
    if not early_stop:  # Adam/SGD for a fixed number of steps: converged says whether the gradient vanished
        converged = history[-1]["grad_norm"] <= tol
    return _result(pol, history, b, loss_type, converged, obstruction, optimizer, tol, warn=early_stop)


def _unchecked_preference_loss(ref_w, ref_l, b, loss_type, eps):
    """``lp_w, lp_l -> per-pair losses`` (m,): :func:`prefkit.losses.preference_loss` without its per-call input
    checks, for :func:`fit_dpo`'s loop, whose inputs are checked once before it (and whose loss is checked for
    NaN/inf at every evaluation). The same dispatch: ``LOSSES[loss_type](logratio_chosen, logratio_rejected, β,
    ε)``, with the log-probs themselves for the losses that use them."""
    fn = LOSSES[loss_type]

    def per_pair(lp_w, lp_l):
        ref_w_, ref_l_ = ref_w.to(lp_w), ref_l.to(lp_l)  # no-ops for float64 policies
        return fn(lp_w - ref_w_, lp_l - ref_l_, b, eps, **_logp_arguments(loss_type, lp_w, lp_l, ref_w_, ref_l_))

    return per_pair


class _NotFinite(ValueError):
    """The loss or its gradient came out NaN or inf at the current parameters (a ValueError for the user; L-BFGS
    catches it at a line-search trial point and backtracks)."""


def _raise_not_finite(lp_w, lp_l, optimizer, lr, b, loss_type):
    """The loss came out NaN or inf: say why, with the messages the per-call checks used to give."""
    if not (bool(torch.isfinite(lp_w).all()) and bool(torch.isfinite(lp_l).all())):
        raise _NotFinite(f"training diverged: the policy's log-probabilities became non-finite (optimizer="
                         f"{optimizer!r}, lr={lr!r}, beta={b!r}); lower lr or beta")
    raise _NotFinite(_not_finite_message(loss_type, b))


def _result(pol, history, b, loss_type, converged, obstruction, optimizer, tol, warn) -> DPOResult:
    """The DPOResult, with a :class:`ConvergenceWarning` when a run that had a tolerance stopped short of it, or
    (deterministic optimisers, which would otherwise claim convergence on a vanishing gradient) when the loss
    has no minimiser; converged is then False."""
    if obstruction is not None:
        if optimizer in ("lbfgs", "newton"):
            warnings.warn(f"fit_dpo: the loss has no minimiser, so converged=False: {obstruction}. The "
                          f"policy returned is where {optimizer} stopped on its way to infinity.",
                          ConvergenceWarning, stacklevel=3)
        converged = False
    elif warn and not converged:
        last = history[-1]
        warnings.warn(f"fit_dpo ({optimizer}) stopped after {last['step']} steps with max |gradient| "
                      f"{last['grad_norm']:.2e} > tol={tol:g}: the policy is not the minimiser to that "
                      f"tolerance (raise steps, or loosen tol)", ConvergenceWarning, stacklevel=3)
    return DPOResult(model=pol, history=history, beta=b, loss_type=loss_type, converged=bool(converged),
                     obstruction=obstruction)


def _set_flat(params, v: np.ndarray) -> None:
    with torch.no_grad():
        k = 0
        for q in params:
            q.copy_(torch.as_tensor(v[k:k + q.numel()]).reshape(q.shape))
            k += q.numel()


def _scipy_lbfgs(params, loss_and_grad, last, is_current, steps, tol, counts, record, callback, pol,
                 record_every) -> bool:
    """Deterministic full-batch L-BFGS (scipy's L-BFGS-B without bounds; Nocedal & Wright 2006, Alg. 7.5). A
    history row every ``record_every`` iterations and at convergence (:func:`fit_dpo` adds the last). Stops when
    the max-abs gradient is ≤ ``tol``, after ``steps`` iterations, or when the line search can make no more
    progress (round-off). An evaluation at the point of the latest one (the start, the accepted iterate, the
    result) is not repeated: ``loss_and_grad`` leaves its values in ``last``."""
    from scipy.optimize import minimize

    x0 = torch.cat([q.detach().reshape(-1) for q in params]).numpy().copy()

    def fg(v):
        if not np.array_equal(v, last.get("x")):
            previous = last.get("x")
            _set_flat(params, v)
            try:
                loss_and_grad()
            except _NotFinite:
                if previous is None:
                    raise
                # a line-search trial beyond float64 (a log-prob underflowed to −inf, as on the way to infinity
                # when the loss has no minimiser): +inf there makes L-BFGS backtrack; the parameters go back to
                # the last finite evaluation, which "last" still describes
                _set_flat(params, previous)
                last["x"] = previous
                return math.inf, np.zeros_like(v)
        return last["loss"], last["g"].copy()

    def on_iter(v):
        counts["grad_steps"] += 1
        t = counts["grad_steps"]
        fg(v)  # usually the point of the latest evaluation (the line search ends there): nothing to compute
        if callback is not None:
            callback(t, pol)
            if not is_current():  # the callback moved the parameters
                loss_and_grad()
        if t % record_every == 0 or t == steps or last["gnorm"] <= tol:
            record(t, last["loss"], last["gnorm"])

    res = minimize(fg, x0, jac=True, method="L-BFGS-B", callback=on_iter,
                   options={"maxiter": steps, "maxcor": 50, "gtol": tol, "ftol": 0.0, "maxls": 50})
    fg(res.x)
    return last["gnorm"] <= tol


_POLISH_MAX_PARAMS = 400  # Newton polishing builds the full Hessian: small problems only


def _newton_polish(params, objective, loss_and_grad, tol, counts, record, callback, pol, max_steps) -> bool:
    """Newton steps after L-BFGS stops short of ``tol`` because its line search can no longer see the loss
    decrease (round-off: near the optimum the decrease g²/H falls below the loss's resolution, e.g. at large β).
    Newton needs no line search. A step is kept only if it lowers the max-abs gradient. Returns converged."""
    flat = [q.detach().clone() for q in params]
    _, g0 = loss_and_grad()
    for _ in range(max_steps):
        _newton_step(params, objective, 1.0)
        loss, g = loss_and_grad()
        if not g < g0:  # no progress: undo the step and stop
            with torch.no_grad():
                for q, v in zip(params, flat, strict=True):
                    q.copy_(v)
            loss, g = loss_and_grad()
            break
        flat = [q.detach().clone() for q in params]
        g0 = g
        counts["grad_steps"] += 1
        if callback is not None:
            callback(counts["grad_steps"], pol)
        if g <= tol:
            break
    record(counts["grad_steps"], loss, g)
    return g <= tol


def _newton_step(params, objective, lr: float) -> None:
    """θ ← θ − lr·H⁺∇L, with the minimum-norm least-squares solution of H·s = ∇L (H is singular: the softmax
    shift, and the directions the data do not see). Hessian by double backprop: small problems only."""
    loss = objective()
    # a parameter the loss does not use (a value head, say) gets a zero gradient and a zero row of H, as L-BFGS
    # gives it a zero gradient
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True, materialize_grads=True)
    g = torch.cat([gi.reshape(-1) for gi in grads])  # (P,)
    rows = []
    for i in range(g.numel()):
        if not g[i].requires_grad:  # a zero gradient with no graph: the whole row is zero
            rows.append(torch.zeros_like(g))
            continue
        hi = torch.autograd.grad(g[i], params, retain_graph=True, allow_unused=True, materialize_grads=True)
        rows.append(torch.cat([h.reshape(-1) for h in hi]))
    H = torch.stack(rows)  # (P, P)
    if not (bool(torch.isfinite(H).all()) and bool(torch.isfinite(g).all())):
        raise ValueError("the Newton step's Hessian or gradient is not finite: beta (or the log-ratios) too large "
                         "for float64; use optimizer='lbfgs' or a smaller beta")
    step = torch.linalg.lstsq(H.detach(), g.detach().unsqueeze(-1), rcond=1e-10, driver="gelsd").solution
    step = step.squeeze(-1)
    with torch.no_grad():
        k = 0
        for q in params:
            q -= lr * step[k:k + q.numel()].reshape(q.shape)
            k += q.numel()


# ----------------------------------------------------------------------------------------------------------
# online, iterative DPO


def fit_dpo_online(problem, beta, *, rounds: int = 10, pairs_per_round: int = 100, steps_per_round: int = 50,
                   loss_type: str = "sigmoid", features=None, optimizer: str = "lbfgs", lr=None,
                   seed: int = 0,
                   accumulate: bool = False) -> DPOResult:
    """Iterative, on-policy DPO: each round draws pairs from the *current* policy, labels them by BT on r*,
    and takes DPO steps on them (π_ref stays the initial reference).

    Guo et al. 2024 ("Direct Language Model Alignment from Online AI Feedback"); Xiong et al. 2024 ("Iterative
    Preference Learning from Human Feedback"); Tajwar et al. 2024 (on-policy sampling).

    Parameters
    ----------
    problem : :class:`prefkit.problems.Problem` (provides π_ref, r* and :meth:`sample_preferences`)
    beta : float > 0
    rounds, pairs_per_round : the label budget is rounds·pairs_per_round
    steps_per_round : optimiser steps per round
    loss_type, features, optimizer, lr : as in :func:`fit_dpo`
    seed : seeds the pair sampling
    accumulate : train each round on all labels so far (True) or on the fresh round only (False)

    Returns
    -------
    :class:`DPOResult`; its history has one row per round with ``round``, ``labels``, ``cost/samples``
    (responses drawn from the policy, 2 per pair), ``cost/grad_steps`` (policy optimiser steps),
    ``reward/expected`` (under r*), ``kl/to_ref`` and ``time/wall`` (seconds since the start, sampling and
    labelling included), plus the last
    :func:`fit_dpo` row of that round (TRL metrics on that round's pairs; the displacement keys measured
    against the policy at the start of the round). ``converged`` is False; ``obstruction`` is the last
    round's (:func:`dpo_obstruction`).

    Raises
    ------
    ValueError
        β ≤ 0; ``rounds``, ``pairs_per_round`` or ``steps_per_round`` not an integer ≥ 1; ``seed`` < 0; an
        unknown ``loss_type`` or ``optimizer``.
    """
    from .problems import Problem

    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a prefkit.Problem, got {type(problem).__name__}")
    b = check_beta(beta)
    check_int(rounds, "rounds", 1)
    check_int(pairs_per_round, "pairs_per_round", 1)
    check_int(steps_per_round, "steps_per_round", 1)
    rng = check_seed(seed)
    _check_loss_type(loss_type)
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not isinstance(accumulate, (bool, np.bool_)):
        raise ValueError(f"accumulate must be True or False, got {accumulate!r}")
    pol = make_policy(problem.pi_ref, features)
    history, data = [], []
    grad_steps, t0 = 0, time.perf_counter()

    def row(r, extra):
        with torch.no_grad():
            pi = pol.log_probs().exp().numpy()
        out = dict(extra)
        out.update({"round": r, "labels": r * pairs_per_round, "cost/samples": 2 * r * pairs_per_round,
                    "cost/grad_steps": grad_steps,
                    "reward/expected": float(np.mean((pi * problem.reward).sum(-1))),
                    "kl/to_ref": float(np.mean(kl_divergence(pi, problem.pi_ref))),
                    "time/wall": time.perf_counter() - t0})
        return out

    history.append(row(0, {}))
    for r in range(1, rounds + 1):
        with torch.no_grad():
            pi_now = pol.log_probs().exp().numpy()
        fresh = problem.sample_preferences(pairs_per_round, rng, policy=pi_now)
        data.append(fresh)
        prefs = np.concatenate(data) if accumulate else fresh
        with warnings.catch_warnings():  # a round takes a fixed number of steps; its data's minimiser may
            warnings.simplefilter("ignore", RuntimeWarning)  # not exist (res.obstruction says so)
            res = fit_dpo(problem.pi_ref, prefs, b, loss_type=loss_type, features=features,
                          optimizer=optimizer, steps=steps_per_round, lr=lr, policy=pol,
                          record_every=steps_per_round)
        grad_steps += res.history[-1]["cost/grad_steps"]
        last = {k: v for k, v in res.history[-1].items() if k not in ("cost/grad_steps", "time/wall", "step")}
        history.append(row(r, last))
    return DPOResult(model=pol, history=history, beta=b, loss_type=loss_type, converged=False,
                     obstruction=res.obstruction)


def dpo_loss_value(pi, pi_ref, preferences, beta, *, weights=None, loss_type: str = "sigmoid") -> float:
    """The (weighted-mean) DPO-family loss of a tabular policy ``pi`` on ``preferences``, as a float."""
    p_ref = check_distribution(pi_ref, "pi_ref")
    p = check_distribution(pi, "pi")
    if p.shape != p_ref.shape:
        raise ValueError(f"shape mismatch: pi has shape {p.shape} but pi_ref has shape {p_ref.shape}")
    prefs = _check_preferences(preferences, p_ref)
    w = check_weights(weights, len(prefs))
    _check_loss_type(loss_type)
    _check_batch_loss_weights(loss_type, weights, w)
    w = normalize_weights(w)
    x, i, j = prefs.T
    with np.errstate(divide="ignore"):
        lp, ref = np.log(p), np.log(p_ref)
    if np.any(np.isneginf(lp[x, i]) | np.isneginf(lp[x, j])):
        raise ValueError("pi is 0 on a response of preferences: its log-ratio is -inf and the loss undefined")
    losses = preference_loss(lp[x, i], lp[x, j], ref[x, i], ref[x, j], beta, loss_type).numpy()
    with np.errstate(over="ignore"):  # an overflow (+inf: every loss type is bounded below) is reported below
        loss = float(np.sum(w * losses) / np.sum(w))
    return finite_result(loss, "the loss overflows float64: beta too large")


