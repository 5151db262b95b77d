"""Where DPO-family losses are minimised, in closed form: the exact answers the fits are checked against.

* :func:`dpo_solution_set`: with exact Bradley-Terry data on r* over only some pairs, the tabular DPO loss is
  minimised by a whole *set* of policies, log π = log π_ref + r*/β + c_{x,C(y)}, one free offset per connected
  component C of each prompt's comparison graph (Rafailov et al. 2023, Theorem 1 when the graph is connected).
* :func:`dpo_landing_point`: the member of that set gradient methods reach from logits at log π_ref.
* :func:`ipo_optimum`: IPO's population minimiser (Azar et al. 2023, Eq. 17), a weighted least-squares problem on
  the comparison graph, solved by the graph Laplacian's pseudo-inverse.

numpy only (no torch): the fitters of :mod:`prefkit.dpo` are checked against these.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ._validate import (
    as_float_array,
    as_index_array,
    check_beta,
    check_distribution,
    check_weights,
    finite_result,
    mean_value,
    normalize_weights,
)
from .closed_form import _check_inputs

__all__ = ["dpo_solution_set", "dpo_landing_point", "ipo_optimum"]


def _check_preferences(preferences, pi_ref: np.ndarray) -> np.ndarray:
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {pi_ref.shape}")
    n_prompts, n_responses = pi_ref.shape
    prefs = as_index_array(preferences, "preferences", ncols=3)
    if len(prefs) == 0:
        raise ValueError("preferences is empty")
    if np.any(prefs[:, 0] >= n_prompts):
        raise ValueError(f"preferences has prompt index {int(prefs[:, 0].max())}, out of range for "
                         f"{n_prompts} prompts")
    if np.any(prefs[:, 1:] >= n_responses):
        raise ValueError(f"preferences has response index {int(prefs[:, 1:].max())}, out of range for "
                         f"{n_responses} responses")
    same = prefs[:, 1] == prefs[:, 2]
    if np.any(same):
        i = int(np.flatnonzero(same)[0])
        raise ValueError(f"preferences row {i} {prefs[i].tolist()}: chosen and rejected are the same "
                         "response")
    off = (pi_ref[prefs[:, 0], prefs[:, 1]] == 0) | (pi_ref[prefs[:, 0], prefs[:, 2]] == 0)
    if np.any(off):
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"preferences row {i} {prefs[i].tolist()} uses a response with pi_ref = 0")
    return prefs


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n vertices of the undirected graph with the given (k, 2) edges; labels
    0, 1, ... in the order of each component's smallest vertex (scipy's ``connected_components``)."""
    g = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def dpo_solution_set(pi_ref, reward, beta, preferences) -> dict:
    """The set of tabular policies that minimise the population DPO loss when the pairs leave gaps.

    With exact BT data on r* over the observed pairs only, the tabular DPO loss depends on the logits z_x only
    through the differences z_x(i) − z_x(j) along observed pairs, and is minimised exactly when
    β·[log π/π_ref](i) − β·[log π/π_ref](j) = r*(i) − r*(j) on every observed pair. So within each connected
    component C of prompt x's comparison graph, log π = log π_ref + r*/β + c_{x,C}, and the offsets c_{x,C}
    (one per component, responses never compared form their own component) are free:

        π(y|x) = π_ref(y|x)·exp(r*(x, y)/β + c_{x,C(y)}) / Σ_y' π_ref(y'|x)·exp(r*(x, y')/β + c_{x,C(y')}).

    Returns
    -------
    dict with ``components`` ((n_prompts, n_responses) int labels, −1 off π_ref's support), ``n_free``
    (number of free offsets: Σ_x (#components − 1)) and ``policy(offsets)``, a function mapping a list of
    per-prompt offset arrays (one value per component) to a member of the solution set.
    """
    p, r, b, _ = _check_inputs(pi_ref, reward, beta)  # shapes, and r/β must not overflow
    prefs = _check_preferences(preferences, p)
    n_prompts, n = p.shape
    comps = np.full((n_prompts, n), -1)
    for xi in range(n_prompts):
        on = np.flatnonzero(p[xi] > 0)
        e = prefs[prefs[:, 0] == xi][:, 1:]
        lab = _components(n, e)
        _, lab_on = np.unique(lab[on], return_inverse=True)
        comps[xi, on] = lab_on

    def policy(offsets):
        out = np.zeros_like(p)
        for xi in range(n_prompts):
            on = comps[xi] >= 0
            c = np.asarray(offsets[xi], float)[comps[xi, on]]
            with np.errstate(over="ignore", invalid="ignore"):
                logits = np.log(p[xi, on]) + (r[xi, on] / b + c)
                z = np.exp(logits - logits.max())
                out[xi, on] = z / z.sum()
        return finite_result(out, "the policy overflows float64: reward/beta or the offsets too large")

    n_free = int(sum(comps[xi].max() for xi in range(n_prompts)))
    return {"components": comps, "n_free": n_free, "policy": policy}


def dpo_landing_point(pi_ref, reward, beta, preferences) -> np.ndarray:
    """The member of :func:`dpo_solution_set` that gradient descent (and L-BFGS, Newton with the minimum-norm
    step) reaches from tabular logits initialised at log π_ref.

    The gradient of the loss in the logits z_x is Dᵀg with rows e_w − e_l (the normaliser cancels), so z_x −
    z_x(0) stays in the row space of D: it sums to zero over every component and is 0 on responses never
    compared. Hence c_{x,C} = −mean_{y∈C} r*(x, y)/β: the minimum-Euclidean-norm change of the logits.
    (Adam's per-coordinate scaling leaves that space, so Adam may land elsewhere in the set.)
    """
    S = dpo_solution_set(pi_ref, reward, beta, preferences)
    r = as_float_array(reward, "reward")
    b = check_beta(beta)
    comps = S["components"]
    offsets = []
    for xi in range(comps.shape[0]):
        k = comps[xi].max() + 1
        offsets.append(np.array([-mean_value(r[xi][comps[xi] == c] / b) for c in range(k)]))
    return S["policy"](offsets)


def ipo_optimum(pi_ref, preferences, tau, weights=None) -> np.ndarray:
    """IPO's population minimiser for a tabular policy, in closed form (the one reached from logits at π_ref).

    Derivation. Write u = log π − log π_ref (per prompt) and h = u(y_w) − u(y_l). IPO's sampled loss
    (Azar et al. 2023, Eq. 17) is (h − 1/(2τ))². Over data rows k = (x, i_k, j_k) with weights w_k it is

        Σ_k w_k·(u(i_k) − u(j_k) − 1/(2τ))²,

    a weighted least-squares problem in u on the comparison graph. (With both orders of a pair present with
    weights μ·p and μ·(1 − p), it equals μ·(u(i) − u(j) − (2p − 1)/(2τ))² + const: the target is (p − ½)/τ,
    Azar et al.'s Eq. 14 for a pair.) The normal equations are L·u = b with the weighted graph Laplacian L =
    Σ_k w_k (e_i − e_j)(e_i − e_j)ᵀ and b = Σ_k w_k (e_i − e_j)/(2τ). They fix u up to one constant per
    connected component; the logits reached by gradient methods from log π_ref are u = L⁺·b (the
    minimum-norm solution: 0 on never-compared responses, summing to 0 on every component). Then π ∝
    π_ref·exp(u).

    For the full triangle y_a ≻ y_b ≻ y_c with equal weights, L = 3I − 11ᵀ (times 1/3) and
    b = (2, 0, −2)/(3·2τ), so u = (1, 0, −1)/(3τ): π ∝ π_ref·(e^{1/(3τ)}, 1, e^{−1/(3τ)}).

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses); preferences : (m, 3) rows (prompt, chosen, rejected);
    tau : float > 0 (TRL's β for IPO); weights : (m,) non-negative, optional.
    """
    t = check_beta(tau, "tau")
    if not np.isfinite(1 / (2 * t)):
        raise ValueError(f"tau={tau!r} is too small: IPO's target 1/(2·tau) overflows float64")
    p = check_distribution(pi_ref, "pi_ref")
    if p.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p.shape}")
    prefs = as_index_array(preferences, "preferences", ncols=3)
    n_prompts, n = p.shape
    if np.any(prefs[:, 0] >= n_prompts) or np.any(prefs[:, 1:] >= n):
        raise ValueError("preferences contains an index out of range")
    w = check_weights(weights, len(prefs))
    if np.any(w > 0):  # the optimum depends on the weights' ratios only: no overflow in L, b
        w = normalize_weights(w)
    out = np.zeros_like(p)
    for x in range(n_prompts):
        L, b = np.zeros((n, n)), np.zeros(n)
        for (_, i, j), wk in zip(prefs[prefs[:, 0] == x], w[prefs[:, 0] == x], strict=True):
            e = np.zeros(n)
            e[i], e[j] = 1.0, -1.0
            L += wk * np.outer(e, e)
            b += wk * e / (2 * t)
        u = np.linalg.pinv(L, rcond=1e-12) @ b
        on = p[x] > 0
        logits = np.where(on, np.log(np.where(on, p[x], 1.0)) + u, -np.inf)
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.exp(logits - logits[on].max())
            out[x] = z / z.sum()
    return finite_result(out, "the IPO optimum overflows float64: tau too small")
