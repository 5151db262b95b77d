"""Bradley-Terry strengths: the model, its likelihood, the MLE (Newton or MM), standard errors, existence.

The model (Bradley & Terry 1952; Zermelo 1929) gives item ``i`` a strength θ_i and says

    P(i beats j) = σ(θ_i − θ_j),      σ(x) = 1 / (1 + e^{−x}).

With an order effect δ (home advantage, Agresti 2002 §10.4; or the position bias of an LLM judge) the item in
the first (home, left) position gets a bonus: P(first beats second) = σ(θ_first − θ_second + δ).

Conventions used everywhere in this module:

* ``comparisons`` is an (m, 2) integer array of (winner, loser) rows; ``weights`` (m,) are non-negative counts
  and may be fractional. A **tie enters as half a win each way**: rows (a, b) and (b, a) with weight 0.5 each
  (the convention of evalica and Chatbot Arena; it is a convention, not a model of ties — Davidson 1970 and
  Rao & Kupper 1967 model ties explicitly).
* ``winner_first`` (m,) bool says whether the winner held the first position.
* Strengths are identified only up to a shift; fits are reported in the **sum-zero gauge** Σθ = 0, and the
  covariance is the inverse Fisher information in that gauge (the pseudo-inverse L⁺ of the Hessian
  Laplacian), so SE(θ_i − θ_j) = sqrt(C_ii + C_jj − 2·C_ij).
* ``l2 > 0`` maximises ℓ(θ) − l2·‖θ‖², the MAP estimate under independent Gaussian priors
  θ_i ~ N(0, 1/(2·l2)). (choix calls its penalty ``alpha``; its code implies the same variance 1/(2·alpha).)
  δ is never penalised.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.special import expit, log_expit

from ._validate import (
    ConvergenceWarning,
    as_float_array,
    as_index_array,
    check_index,
    check_int,
    check_real,
    check_seed,
    check_weights,
    finite_result,
    to_numpy,
)

__all__ = [
    "sigmoid",
    "log_sigmoid",
    "bt_probability",
    "bt_log_likelihood",
    "bt_log_likelihood_gradient",
    "bt_fisher_information",
    "fit_bradley_terry",
    "BradleyTerryFit",
    "mle_obstruction",
    "sample_comparisons",
]


# ------------------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------------------
def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}), computed without overflow for any float x (numpy, elementwise); ±inf give 1 and 0,
    NaN is a ValueError."""
    out = expit(_real_or_inf(x, "x"))  # evaluates e^{−|x|} only: never overflows
    return out if out.ndim else float(out)


def log_sigmoid(x):
    """log σ(x) = −log(1 + e^{−x}) = −logaddexp(0, −x), stable for large |x| (numpy, elementwise); log σ(−inf) is
    −inf, NaN is a ValueError."""
    out = log_expit(_real_or_inf(x, "x"))  # = min(x, 0) − log1p(e^{−|x|})
    return out if out.ndim else float(out)


def _real_or_inf(x, name):
    """``x`` as float64, ±inf allowed, NaN a ValueError naming ``name``."""
    a = as_float_array(x, name, finite=False)
    if np.any(np.isnan(a)):
        raise ValueError(f"{name} contains NaN")
    return a


def bt_probability(strength_i, strength_j, order_effect=0.0):
    """P(i beats j) = σ(θ_i − θ_j + δ), with δ = ``order_effect`` the bonus of the first position (default 0).

    Broadcasts like numpy. Bradley & Terry (1952), Eq. 1 in logistic form. A strength may be ±inf (an item
    off the support, e.g. an implied reward of −inf: it loses with probability 1), but a NaN, or two
    infinite strengths of the same sign facing each other (inf − inf has no probability), raises
    ``ValueError`` naming the argument; δ must be finite.
    """
    si = _real_or_inf(strength_i, "strength_i")
    sj = _real_or_inf(strength_j, "strength_j")
    try:
        np.broadcast_shapes(si.shape, sj.shape)
    except ValueError:
        raise ValueError(f"shape mismatch: strength_i has shape {si.shape} and strength_j has shape {sj.shape}, "
                         "which do not broadcast") from None
    with np.errstate(invalid="ignore"):  # inf − inf is reported below, not warned about
        d = si - sj
    if np.any(np.isnan(d)):
        raise ValueError(
            "strength_i and strength_j are infinite with the same sign for some pair: "
            "P(i beats j) is undefined"
        )
    return sigmoid(d + check_real(order_effect, "order_effect"))


def _prepare(comparisons, n_items, weights, winner_first, *, unit_weights_as_none=False):
    """Validate the common arguments.

    Returns (pairs (m, 2) int64, n, weights (m,), winner_first (m,) or None). With ``unit_weights_as_none``,
    weights=None stays None (every comparison counts 1) instead of becoming an array of ones.
    """
    pairs = as_index_array(comparisons, "comparisons", ncols=2)
    m = pairs.shape[0]
    if n_items is None:
        if m == 0:
            raise ValueError("comparisons is empty; pass n_items to say how many items there are")
        n = int(pairs.max()) + 1
    else:
        if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
            raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
        n = int(n_items)
        biggest = int(pairs.max()) if m else 0
        if biggest >= n:
            raise ValueError(f"comparisons contains item {biggest}, out of range for n_items={n}")
    if m and np.any(pairs[:, 0] == pairs[:, 1]):
        k = int(np.flatnonzero(pairs[:, 0] == pairs[:, 1])[0])
        raise ValueError(f"comparisons row {k} compares item {int(pairs[k, 0])} with itself")
    w = None if weights is None and unit_weights_as_none else check_weights(weights, m)
    wf = None
    if winner_first is not None:
        try:
            wf = np.asarray(to_numpy(winner_first))
        except (TypeError, ValueError):
            raise ValueError(f"winner_first must be ({m},) booleans (not ragged)") from None
        if wf.shape != (m,):
            raise ValueError(f"winner_first must have shape ({m},), got {wf.shape}")
        if wf.dtype != np.bool_:
            if wf.dtype.kind not in "iuf" or not np.all(np.isin(wf, (0, 1))):
                raise ValueError("winner_first must be booleans (True: the winner held the first position)")
            wf = wf.astype(bool)
    return pairs, n, w, wf


def bt_log_likelihood(strengths, comparisons, weights=None, *, winner_first=None, order_effect=0.0):
    """ℓ(θ) = Σ_k w_k · log σ(θ_{winner_k} − θ_{loser_k} ± δ)  (+δ if the winner was first, −δ if second).

    Parameters
    ----------
    strengths : (n,) array, θ.
    comparisons : (m, 2) int array of (winner, loser).
    weights : (m,) non-negative counts, default ones (ties: half a win each way).
    winner_first : (m,) bool, optional. Needed for a non-zero ``order_effect``.
    order_effect : float, δ.

    Returns
    -------
    float, the log-likelihood (Bradley & Terry 1952; Hunter 2004, Eq. 2).
    """
    theta = as_float_array(strengths, "strengths", ndim=1, nonempty=True)
    pairs, _, w, wf = _prepare(comparisons, len(theta), weights, winner_first)
    delta = check_real(order_effect, "order_effect")
    if delta != 0.0 and wf is None:
        raise ValueError("order_effect needs winner_first")
    sign = 0.0 if wf is None else np.where(wf, 1.0, -1.0)
    # strengths and δ are finite, so z is never NaN (an overflow gives ±inf); 0·log σ(−inf) is NaN, reported below
    with np.errstate(over="ignore", invalid="ignore"):
        z = theta[pairs[:, 0]] - theta[pairs[:, 1]] + sign * delta
        ll = float(np.sum(w * log_sigmoid(z)))
    return finite_result(ll, "the log-likelihood overflows float64: strengths, order_effect or weights too large")


def bt_log_likelihood_gradient(strengths, comparisons, weights=None):
    """∂ℓ/∂θ_i = Σ_j [n_ij − (n_ij + n_ji)·σ(θ_i − θ_j)]: wins minus expected wins. Shape (n,).

    Hunter (2004), Eq. 3; ``comparisons`` and ``weights`` as in :func:`bt_log_likelihood`.
    """
    theta = as_float_array(strengths, "strengths", ndim=1, nonempty=True)
    pairs, n, w, _ = _prepare(comparisons, len(theta), weights, None)
    with np.errstate(over="ignore", invalid="ignore"):
        g = w * expit(theta[pairs[:, 1]] - theta[pairs[:, 0]])  # w·(1 − σ(θ_w − θ_l))
        grad = np.bincount(pairs[:, 0], g, n) - np.bincount(pairs[:, 1], g, n)
    return finite_result(grad, "the gradient overflows float64: weights too large")


def bt_fisher_information(strengths, comparisons, weights=None):
    """−∇²ℓ = L, the graph Laplacian with edge weights w_ij = (n_ij + n_ji)·p_ij·(1 − p_ij). Sparse (n, n).

    It is positive semi-definite with the all-ones vector in its null space (strengths are identified only
    up to a shift). Its pseudo-inverse is the covariance of the MLE in the sum-zero gauge.
    """
    theta = as_float_array(strengths, "strengths", ndim=1, nonempty=True)
    pairs, n, w, _ = _prepare(comparisons, len(theta), weights, None)
    with np.errstate(over="ignore"):  # finite strengths: an overflow gives ±inf (never NaN), reported below
        z = theta[pairs[:, 0]] - theta[pairs[:, 1]]
    finite_result(z, "strengths too large: their differences overflow float64")
    we = w * expit(z) * expit(-z)
    i, j = pairs[:, 0], pairs[:, 1]
    adj = sp.coo_matrix(
        (np.concatenate([we, we]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n)
    ).tocsr()
    out = (sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj).tocsr()
    finite_result(out.data, "the Fisher information overflows float64: weights too large")
    return out


# ------------------------------------------------------------------------------------------------------------
# aggregated data: unique pairs
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Edges:
    """Comparisons aggregated into unique pairs e = (i, j): i won ``n_ij`` times, j won ``n_ji`` times.

    With an order effect, i is the first (home, left) item and pairs are ordered; otherwise i < j. Edge k sits
    at position k of the CSR matrix (``indptr``, ``indices``) with rows i and columns j.
    """

    n: int
    i: np.ndarray
    j: np.ndarray
    n_ij: np.ndarray
    n_ji: np.ndarray
    has_delta: bool
    indptr: np.ndarray
    indices: np.ndarray
    t: np.ndarray = field(init=False)

    def __post_init__(self):
        self.t = self.n_ij + self.n_ji
        counts = np.diff(self.indptr)
        self._rows = np.flatnonzero(counts > 0)  # items with pairs as the first item i
        self._starts = np.asarray(self.indptr[:-1])[self._rows]

    def row_sums(self, x):
        """Σ_{pairs e with i_e = k} x_e for every item k: ``np.bincount(i, x, n)``, but by ``np.add.reduceat``
        over the sorted rows (contiguous slices; about 10× faster than bincount's scatter into the same bin)."""
        out = np.zeros(self.n)
        if len(self._rows):
            out[self._rows] = np.add.reduceat(x, self._starts)
        return out


def _aggregate(pairs, n, w, wf) -> _Edges:
    """Sum the weights of repeated pairs: the comparisons become unique pairs (i, j) with counts n_ij, n_ji.

    One vectorised pass over the m comparisons; everything after it (the existence check, Newton, MM, the
    covariance) works on the distinct pairs only. Each comparison gets the key 2·(a·n + b) + [b won], with a the
    first item of its pair (the smaller id, or the first position with an order effect), in int32 while
    2·n² fits. When the n² pairs are few next to the comparisons (n² ≤ max(2m, 2²⁰)), one ``np.bincount`` over
    the keys counts them in O(m + n²) and the nonzero pairs come out in row-major order. Otherwise the keys are
    sorted, O(m log m), and each pair's comparisons form one run: without weights (``w`` None: every comparison
    counts 1) the keys are sorted alone, in place, n_ji is the number of set side bits in the run and n_ij the rest
    of its length; with weights the keys are argsorted and each side's weights summed with ``np.add.reduceat``.
    Either way the edges are sorted by (i, j), the order of a CSR matrix. Memory: the keys (4 or 8 bytes per
    comparison) and 2 bytes per comparison of flags plus, with weights, the sort permutation and the permuted
    weights (16 bytes per comparison, and 8 more for one side's weights at a time); then O(distinct pairs).
    """
    if w is not None and not np.all(w > 0):
        keep = w > 0
        pairs, w = pairs[keep], w[keep]
        wf = None if wf is None else wf[keep]
    m = len(pairs)
    ktype = np.int32 if 2 * n * n + 2 < 2**31 else np.int64
    x, y = pairs[:, 0], pairs[:, 1]
    if wf is not None:  # ordered pairs: a first, b second; b won where the winner was not first
        a = np.where(wf, x, y).astype(ktype, copy=False)
        b = np.where(wf, y, x).astype(ktype, copy=False)
        b_won = ~wf
    else:  # unordered pairs: a < b; b won where the winner had the larger id
        a = np.minimum(x, y, dtype=ktype, casting="same_kind")
        b = np.maximum(x, y, dtype=ktype, casting="same_kind")
        b_won = x > y
    key = a
    key *= n
    key += b
    del b
    key *= 2
    key += b_won
    del b_won
    if n * n <= max(2 * m, 1 << 20):
        counts = np.bincount(key, weights=w, minlength=2 * n * n).reshape(n * n, 2)
        del key
        pair = np.flatnonzero(counts[:, 0] + counts[:, 1] > 0)
        n_ij, n_ji = counts[pair, 0].astype(float), counts[pair, 1].astype(float)
        del counts
    else:  # sort the keys, O(m log m): the unweighted keys alone, in place; weighted ones by argsort
        if w is None:
            key.sort()
        else:
            order = np.argsort(key, kind="stable")
            key, w = key[order], w[order]
            del order
        side = (key & 1).astype(bool)  # True: b won
        key >>= 1  # the pair a·n + b, sorted; each pair's comparisons are one run
        first = np.empty(m, dtype=bool)
        first[:1] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        begin = np.flatnonzero(first)
        del first
        pair = key[begin]
        del key
        if not m:
            n_ij = n_ji = np.zeros(0)
        elif w is None:  # counts: b's wins are the side bits of the run, a's the rest of its length (exact)
            n_ji = np.add.reduceat(side.view(np.int8), begin, dtype=np.float64)
            n_ij = np.diff(np.append(begin, m)).astype(float)
            n_ij -= n_ji
        else:  # each side summed on its own: no t − n_ji cancellation with uneven weights
            n_ij = np.add.reduceat(np.where(side, 0.0, w), begin)
            n_ji = np.add.reduceat(np.where(side, w, 0.0), begin)
        del side, begin
    # the CSR pattern of the pairs, in scipy's own index type (int32 while it fits: no conversion per use); the
    # pairs are sorted, so each row's slice starts where the keys reach row·n
    itype = np.int32 if max(n, len(pair)) < 2**31 - 1 else np.int64
    indptr = np.searchsorted(pair, np.arange(n + 1, dtype=np.int64) * n).astype(itype)
    # i, j in numpy's own index type (np.take and np.bincount convert anything else on every call)
    rows = np.repeat(np.arange(n, dtype=np.intp), np.diff(indptr))
    cols = pair - rows * n
    return _Edges(n, rows, cols.astype(np.intp, copy=False), np.ascontiguousarray(n_ij),
                  np.ascontiguousarray(n_ji), wf is not None, indptr, cols.astype(itype))


# ------------------------------------------------------------------------------------------------------------
# existence of the MLE
# ------------------------------------------------------------------------------------------------------------
def mle_obstruction(comparisons, n_items=None, weights=None):
    """Why the MLE does not exist: the smallest group that never lost (or never won) against the rest.

    Zermelo (1929), Ford (1957): the MLE (l2 = 0) exists exactly when the directed graph with an edge
    winner → loser for every comparison of positive weight is strongly connected. Otherwise some strongly
    connected component has no incoming edge: nobody outside it ever beat anyone in it, and pushing its
    strengths up raises the likelihood forever (or, symmetrically, a component with no outgoing edge never
    beat anyone outside it). An item with no comparisons is such a group on its own.

    Returns
    -------
    (group, kind) with ``group`` a sorted list of item ids and ``kind`` "never lost" or "never won"; or None
    (also None for a single item).
    """
    pairs, n, w, _ = _prepare(comparisons, n_items, weights, None)
    return _obstruction(_aggregate(pairs, n, w, None))


def _win_arcs(edges: _Edges):
    """The arcs winner → loser of the win graph: (i, j) where n_ij > 0 and (j, i) where n_ji > 0, shape (k, 2)."""
    won, lost = edges.n_ij > 0, edges.n_ji > 0
    return np.concatenate([np.stack([edges.i[won], edges.j[won]], axis=1),
                           np.stack([edges.j[lost], edges.i[lost]], axis=1)])


def _win_graph(n, n_ij, n_ji, indices, indptr):
    """The win graph as a CSR matrix straight from the pairs' CSR pattern (no sort): arcs i → j where n_ij > 0,
    plus the transpose of the pattern where n_ji > 0 (j → i; CSC of the same arrays, converted)."""
    won = sp.csr_matrix(((n_ij > 0).astype(np.int8), indices, indptr), shape=(n, n))
    lost = sp.csr_matrix(((n_ji > 0).astype(np.int8), indices, indptr), shape=(n, n))
    g = won + lost.T.tocsr()
    g.eliminate_zeros()
    return g


def _strong_components(edges: _Edges, per_item: int = 16):
    """(number, labels) of the strongly connected components of the win graph, as ``connected_components``.

    On dense data it first finds the components of a sample of about ``per_item``·n pairs (every k-th pair in CSR
    order, so spread over every row): each sample component is strongly connected in the whole graph too, so the
    whole graph's components are those of the small graph whose nodes are the sample's components and whose arcs
    are every arc between two of them (one pass over the pairs, no graph over all of them). 10k items / 9M distinct
    pairs: about 4× less time than the graph over every pair; the same labels up to their numbering.
    """
    n, k = edges.n, len(edges.i)
    stride = k // (per_item * n)
    if stride < 4:  # sparse: the sample would leave out too little to pay for itself
        g = _win_graph(n, edges.n_ij, edges.n_ji, edges.indices, edges.indptr)
        return connected_components(g, directed=True, connection="strong")
    sub = slice(None, None, stride)
    indptr = np.searchsorted(edges.i[sub], np.arange(n + 1)).astype(edges.indptr.dtype)
    g = _win_graph(n, edges.n_ij[sub], edges.n_ji[sub], edges.indices[sub], indptr)
    n_sample, labels = connected_components(g, directed=True, connection="strong")
    if n_sample == 1:
        return 1, labels
    li, lj = labels[edges.i], labels[edges.j]
    cross = li != lj
    won, lost = cross & (edges.n_ij > 0), cross & (edges.n_ji > 0)
    rows = np.concatenate([li[won], lj[lost]])
    cols = np.concatenate([lj[won], li[lost]])
    h = sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(n_sample, n_sample))
    n_comp, merged = connected_components(h, directed=True, connection="strong")
    return n_comp, merged[labels]


def _obstruction(edges: _Edges):
    n_comp, labels = _strong_components(edges)
    if n_comp == 1:
        return None
    pairs = _win_arcs(edges)
    lost_outside = np.zeros(n_comp, dtype=bool)
    won_outside = np.zeros(n_comp, dtype=bool)
    cross = labels[pairs[:, 0]] != labels[pairs[:, 1]]
    lost_outside[labels[pairs[cross, 1]]] = True
    won_outside[labels[pairs[cross, 0]]] = True
    sizes = np.bincount(labels, minlength=n_comp)
    best, kind = None, None
    for mask, name in ((~lost_outside, "never lost"), (~won_outside, "never won")):
        cand = np.flatnonzero(mask)
        if len(cand):
            c = cand[np.argmin(sizes[cand])]
            if best is None or sizes[c] < sizes[best]:
                best, kind = c, name
    return np.flatnonzero(labels == best).tolist(), kind


def _describe(group, names):
    shown = [names[k] if names is not None else k for k in group[:10]]
    more = f", … ({len(group)} items)" if len(group) > 10 else ""
    return "{" + ", ".join(map(str, shown)) + more + "}"


def _order_effect_obstruction(edges: _Edges) -> str | None:
    """Why (θ, δ) has no finite MLE even though the win graph is strongly connected, or None.

    The log-likelihood is concave; it has no maximiser iff some direction v = (dθ, dδ) ≠ 0 (mod shifts) never
    lowers any term and raises one: a linear program. It is also not unique iff some v leaves every term
    unchanged, i.e. dθ_second − dθ_first = dδ on every pair (δ confounded with the strengths).
    """
    from scipy.optimize import linprog

    n, i, j = edges.n, edges.i, edges.j
    rows, signs = [], []
    for cnt, sgn in ((edges.n_ij, 1.0), (edges.n_ji, -1.0)):
        k = np.flatnonzero(cnt > 0)
        rows.append(k)
        signs.append(np.full(len(k), sgn))
    rows, signs = np.concatenate(rows), np.concatenate(signs)
    m = len(rows)
    r = np.arange(m)
    cols = np.concatenate([i[rows], j[rows], np.full(m, n)])
    # row k: sign·(e_first − e_second + e_δ), the direction in which term k grows
    data = np.concatenate([signs, -signs, signs])
    a = sp.coo_matrix((data, (np.tile(r, 3), cols)), shape=(m, n + 1)).tocsr()
    res = linprog(
        -np.asarray(a.sum(axis=0)).ravel(),
        A_ub=sp.vstack([-a, a]),
        b_ub=np.concatenate([np.zeros(m), np.ones(m)]),
        A_eq=np.concatenate([np.ones(n), [0.0]])[None, :],
        b_eq=[0.0],
        bounds=[(None, None)] * (n + 1),
        method="highs",
    )
    if res.status == 0 and -res.fun > 1e-7:
        return (
            "the order effect and strengths can be pushed to infinity without lowering the likelihood (a "
            "separating direction exists, e.g. the first position always won)"
        )
    # identifiability: is there dθ with dθ_j − dθ_i = 1 on every (first i, second j) pair?
    # Assign levels along a breadth-first spanning tree, then test every pair.
    ones = np.ones(len(i))
    uv = (np.concatenate([i, j]), np.concatenate([j, i]))
    # step[u, v] = level(v) − level(u) as the pair (u, v) demands (+1 from first to second)
    step = sp.coo_matrix((np.concatenate([ones, -ones]), uv), shape=(n, n)).tocsr()
    linked = sp.coo_matrix((np.concatenate([ones, ones]), uv), shape=(n, n)).tocsr()
    order, pred = breadth_first_order(linked, 0, directed=False, return_predecessors=True)
    lev = np.zeros(n)
    if len(order) > 1:
        steps = np.asarray(step[pred[order[1:]], order[1:]]).ravel()
        for v, d in zip(order[1:], steps, strict=True):
            lev[v] = lev[pred[v]] + d
    if len(order) == n and np.allclose(lev[j] - lev[i], 1.0):
        return (
            "the order effect is confounded with the strengths "
            "(the positions never vary enough to separate them)"
        )
    return None


# ------------------------------------------------------------------------------------------------------------
# the fit
# ------------------------------------------------------------------------------------------------------------
_SINGULAR = ("the covariance is singular in float64: some item's information underflows (weights whose ratios "
             "span the float range, or an l2 that is subnormal next to the weights)")


class BradleyTerryFit:
    """Result of :func:`fit_bradley_terry`.

    Attributes
    ----------
    strengths : (n,) θ̂, mean 0 when l2 == 0 (the MAP with l2 > 0 has mean 0 too, since Σ_i ∂ℓ/∂θ_i = 0).
    order_effect, order_effect_stderr : δ̂ and its standard error (None without ``winner_first``).
    log_likelihood : ℓ(θ̂, δ̂) without the penalty.
    n_iter, converged, method, l2, names.
    covariance : (n, n) inverse Fisher information of θ in the sum-zero gauge (with l2 > 0: the inverse of
        the penalised Hessian, the Laplace approximation of the posterior covariance). Computed densely on
        first access.
    stderr : (n,) sqrt of the covariance diagonal.
    """

    def __init__(self, strengths, order_effect, log_likelihood, n_iter, converged, method, l2, edges, names,
                 weight_scale=1.0):
        self.strengths = strengths
        self.order_effect = order_effect
        self._ll_unit = log_likelihood  # ℓ of the counts divided by weight_scale
        self.n_iter = n_iter
        self.converged = converged
        self.method = method
        self.l2 = l2
        self.names = names
        self._edges = edges  # counts divided by weight_scale (the largest weight): the fit is scale-free
        self._scale = float(weight_scale)

    @property
    def n_items(self) -> int:
        return len(self.strengths)

    @property
    def log_likelihood(self) -> float:
        """ℓ(θ̂, δ̂) for the counts given; ValueError when it overflows float64 (weights near 1e308)."""
        with np.errstate(over="ignore"):
            ll = self._ll_unit * self._scale
        if not math.isfinite(ll):
            raise ValueError("the log-likelihood of these weights overflows float64 (weights near 1e308); the "
                             "strengths do not depend on the weights' scale")
        return ll

    @cached_property
    def _unit_covariance(self) -> np.ndarray:
        """Covariance of (θ, δ) for the normalised counts (the largest weight 1): the inverse (penalised) Fisher
        information, sum-zero gauge if l2 == 0. The covariance for the counts given is this / weight_scale."""
        e, n = self._edges, self.n_items
        delta = self.order_effect if e.has_delta else 0.0
        z = self.strengths[e.i] - self.strengths[e.j] + delta
        p, q = _sigmoid_pair(z, np.empty_like(z), np.empty_like(z))
        we = e.t * p * q  # t·σ(z)·σ(−z), each factor to full relative precision (1 − σ(z) cancels for |z| > 30)
        k = n + int(e.has_delta)
        f = np.zeros((k, k))
        np.add.at(f, (e.i, e.i), we)
        np.add.at(f, (e.j, e.j), we)
        np.add.at(f, (e.i, e.j), -we)
        np.add.at(f, (e.j, e.i), -we)
        if e.has_delta:
            b = np.bincount(e.i, we, n) - np.bincount(e.j, we, n)
            f[:n, n] = f[n, :n] = b
            f[n, n] = we.sum()
        if self.l2 > 0:  # c·F_unit + 2·l2 = c·(F_unit + 2·l2/c)
            f[np.arange(n), np.arange(n)] += 2 * self.l2 / self._scale
            with np.errstate(all="ignore"):
                try:
                    cov = np.linalg.inv(f)
                except np.linalg.LinAlgError:
                    raise ValueError(_SINGULAR) from None
            if not np.all(np.isfinite(cov)):
                raise ValueError(_SINGULAR)
            return cov
        u = np.zeros(k)
        u[:n] = 1 / math.sqrt(n)
        uu = np.outer(u, u)
        # F·u = 0, so (F + c·uuᵀ)⁻¹ = F⁺ + uuᵀ/c for any c > 0: the pseudo-inverse in the sum-zero gauge. c is F's
        # own scale (its largest diagonal entry), so information far below 1 (weights like 1e-16 next to 1 leave
        # entries of 3e-16) is not lost to rounding against a unit-size uuᵀ
        c = float(np.max(np.diag(f), initial=0.0))
        c = c if c > 0 else 1.0  # F = 0: one item (its θ is 0 in the gauge, variance 0); else inv below fails
        try:
            with np.errstate(all="ignore"):
                cov = np.linalg.inv(f / c + uu) / c - uu / c
        except np.linalg.LinAlgError:
            raise ValueError(_SINGULAR) from None
        if not np.all(np.isfinite(cov)):
            raise ValueError(_SINGULAR)
        return cov

    @property
    def covariance(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            c = self._unit_covariance[: self.n_items, : self.n_items] / self._scale
        if not np.all(np.isfinite(c)):
            raise ValueError("the covariance overflows float64 for weights this small; use stderr, or rescale "
                             "weights")
        return c

    def _se(self, unit_variance):
        """Standard errors for the counts given from variances of the normalised counts (no overflow)."""
        return np.sqrt(np.clip(unit_variance, 0.0, None)) / math.sqrt(self._scale)

    @property
    def stderr(self) -> np.ndarray:
        return self._se(np.diag(self._unit_covariance)[: self.n_items])

    @property
    def order_effect_stderr(self) -> float | None:
        if not self._edges.has_delta:
            return None
        return float(self._se(self._unit_covariance[-1, -1]))

    def contrast_stderr(self, i: int, j: int) -> float:
        """SE(θ_i − θ_j) = sqrt(C_ii + C_jj − 2·C_ij), gauge-free."""
        i, j = check_index(i, "i", self.n_items), check_index(j, "j", self.n_items)
        c = self._unit_covariance
        return float(self._se(c[i, i] + c[j, j] - 2 * c[i, j]))

    def contrasts(self, ref: int):
        """(θ − θ_ref, SE(θ_i − θ_ref)) for every item i: the fit in the gauge θ_ref = 0, as tables print."""
        ref = check_index(ref, "ref", self.n_items)
        c = self._unit_covariance[: self.n_items, : self.n_items]
        d = np.diag(c)
        return self.strengths - self.strengths[ref], self._se(d + d[ref] - 2 * c[:, ref])

    def __repr__(self) -> str:
        extra = f", order_effect={self.order_effect:.4g}" if self._edges.has_delta else ""
        return (
            f"BradleyTerryFit(n_items={self.n_items}, method={self.method!r}, l2={self.l2}, "
            f"log_likelihood={self._ll_unit * self._scale:.6g}{extra}, n_iter={self.n_iter}, "
            f"converged={self.converged})"
        )


def fit_bradley_terry(
    comparisons,
    n_items=None,
    *,
    weights=None,
    l2=0.0,
    method="newton",
    winner_first=None,
    tol=1e-10,
    max_iter=None,
    names=None,
) -> BradleyTerryFit:
    """Maximum-likelihood (or MAP) Bradley-Terry strengths: P(i beats j) = σ(θ_i − θ_j [+ δ if i was first]).

    Parameters
    ----------
    comparisons : (m, 2) int array-like of (winner, loser) ids in [0, n_items).
    n_items : int, optional; default max id + 1.
    weights : (m,) non-negative counts, may be fractional: a tie is two rows (a, b) and (b, a) of weight 0.5.
    l2 : float ≥ 0. Maximise ℓ(θ) − l2·‖θ‖²: the MAP under θ_i ~ N(0, 1/(2·l2)) i.i.d. (δ is not penalised).
    method : "newton" (default) or "mm".

        * newton: aggregate into unique pairs; each step solves the Newton system, whose matrix is the
          weighted graph Laplacian (plus the δ row and column), as a scipy.sparse matrix, by
          Jacobi-preconditioned conjugate gradients in the sum-zero gauge; a step is accepted when the slope
          at its end is still uphill, otherwise it is backtracked, and extended when the slope at its end is
          still steep (far out in σ's tails). Quadratic convergence. At least one step is always taken.
        * mm: Hunter (2004), "MM algorithms for generalized Bradley-Terry models", Ann. Statist. 32. With
          γ = e^θ, γ_i ← W_i / Σ_j (n_ij + n_ji)/(γ_i + γ_j); with an order effect h = e^δ, his home-field
          cyclic update (§3.2) alternates γ (h fixed) and h ← H / Σ_pairs t·γ_first/(h·γ_first + γ_second).
          Linear convergence; l2 must be 0.

    winner_first : (m,) bool, optional. Fit an order effect δ:
        P(first beats second) = σ(θ_first − θ_second + δ).
    tol : float > 0. Newton: converged when the largest change of a parameter in one (tightly solved)
        Newton step is below tol, or when the last two steps converge quadratically and predict the next
        below tol/10 — a scale-free test: multiplying all weights by any c > 0 changes nothing.
        MM: when the largest change in one sweep is below tol (MM converges linearly, so its distance to the
        optimum can be larger than tol).
    max_iter : default 100 (newton) or 100_000 (mm).
    names : optional item names, used in error messages and kept on the result.

    Returns
    -------
    BradleyTerryFit

    Raises
    ------
    ValueError
        On malformed input (naming the argument) and, with l2 == 0, when the MLE does not exist: the
        directed win graph is not strongly connected (Zermelo 1929; Ford 1957). The message names a group of
        items that never lost to (or never beat) an item outside the group.
    """
    pairs, n, w, wf = _prepare(comparisons, n_items, weights, winner_first, unit_weights_as_none=True)
    l2 = check_real(l2, "l2", lo=0.0)
    # The likelihood is scale-free in the weights (c·ℓ has the maximiser of ℓ): fit the counts divided by the
    # largest, so sums neither overflow (1e308) nor underflow (5e-324); with l2 the penalty becomes l2/c.
    # Without weights every comparison counts 1 (w stays None: the aggregation counts runs, no weight array).
    scale = float(w.max()) if w is not None and len(w) and w.max() > 0 else 1.0
    lost = 0  # positive weights below the float range once divided by the largest: they count as 0
    if w is not None:
        positive = int(np.count_nonzero(w > 0))
        w = w / scale
        lost = positive - int(np.count_nonzero(w > 0))
    l2_unit = l2 / scale  # Python floats: an overflow is inf, no warning
    if not math.isfinite(l2_unit):
        raise ValueError(f"l2={l2!r} is too large next to weights of at most {scale!r}: l2/max(weights) overflows")
    if method not in ("newton", "mm"):
        raise ValueError(f"method must be 'newton' or 'mm', got {method!r}")
    if method == "mm" and l2 > 0:
        raise ValueError("method='mm' fits the MLE only (l2 must be 0); use method='newton' for l2 > 0")
    tol = check_real(tol, "tol")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if max_iter is None:
        max_iter = 100 if method == "newton" else 100_000
    if isinstance(max_iter, (bool, np.bool_)) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if names is not None:
        names = list(names)
        if len(names) != n:
            raise ValueError(f"names has {len(names)} entries but there are {n} items")

    edges = _aggregate(pairs, n, w, wf)
    has_delta = wf is not None
    if has_delta and len(edges.i) == 0:
        raise ValueError(
            "winner_first was given but there are no comparisons (of positive weight) to estimate the "
            "order effect from"
        )
    if l2 == 0:
        obstruction = _obstruction(edges)
        if obstruction is not None:
            group, kind = obstruction
            head = (
                "the maximum-likelihood estimate does not exist: the directed win graph is not strongly "
                "connected (Zermelo 1929; Ford 1957). "
            )
            tail = " Add comparisons, or pass l2 > 0 for a finite MAP estimate."
            if lost:
                tail += (f" ({lost} positive weight{'s are' if lost > 1 else ' is'} below 5e-324 times the largest "
                         f"weight and count{'' if lost > 1 else 's'} as 0: float64 cannot hold the ratio.)")
            played = np.zeros(n, dtype=bool)
            played[edges.i] = played[edges.j] = True
            if not np.any(played[group]):  # nobody in the group played at all
                raise ValueError(
                    head + f"Item{'s' if len(group) > 1 else ''} {_describe(group, names)} "
                    f"{'were' if len(group) > 1 else 'was'} never compared (no comparison of positive "
                    "weight), so "
                    f"{'their strengths are' if len(group) > 1 else 'its strength is'} not determined." + tail
                )
            verb = "lost to" if kind == "never lost" else "beat"
            way = "+" if kind == "never lost" else "−"
            many = len(group) > 1
            raise ValueError(
                head + f"Item{'s' if many else ''} {_describe(group, names)} never {verb} an item outside the group, "
                f"so {'their strengths run' if many else 'its strength runs'} off to {way}infinity." + tail
            )
        if has_delta and n > 1:
            why = _order_effect_obstruction(edges)
            if why is not None:
                raise ValueError(f"the maximum-likelihood estimate of the order effect does not exist for these "
                                 f"comparisons and winner_first: {why}")
    elif has_delta:
        first_wins, second_wins = edges.n_ij.sum(), edges.n_ji.sum()
        if first_wins == 0 or second_wins == 0:
            raise ValueError(
                "the order effect has no finite estimate from winner_first: the "
                f"{'first' if second_wins == 0 else 'second'} position won every comparison"
            )
    if (
        n == 1 or len(edges.i) == 0
    ):  # nothing to fit: θ = 0 is the MLE (one item) or the MAP (no data, l2 > 0)
        theta, delta, n_iter, conv = np.zeros(n), 0.0, 0, True
    elif method == "newton":
        theta, delta, n_iter, conv = _newton(edges, l2_unit, tol, max_iter)
    else:
        theta, delta, n_iter, conv = _mm(edges, tol, max_iter)
    if not conv:
        warnings.warn(
            f"fit_bradley_terry ({method}) stopped after {n_iter} iterations without meeting tol={tol:g}; the "
            "estimate may be inaccurate (see converged). "
            + ("Newton stalls like this when the weights' ratios are so large that float64 rounding of the "
               "gradient exceeds its smallest terms." if method == "newton" else "Raise max_iter, or use "
               "method='newton'."),
            ConvergenceWarning, stacklevel=2)
    ll = _objective(edges, theta, delta, 0.0)  # of the normalised counts; the fit multiplies by scale
    return BradleyTerryFit(
        theta, float(delta) if has_delta else None, ll, n_iter, conv, method, l2, edges, names, scale
    )


def _objective(edges: _Edges, theta, delta, l2):
    """ℓ − l2‖θ‖² = Σ_pairs [n_ij·log σ(z) + n_ji·log σ(−z)] − l2‖θ‖², z = θ_i − θ_j (+ δ).

    With log σ(±z) = −(max(∓z, 0) + log1p(e^{−|z|})), ℓ = −Σ_pairs [n_ij·max(−z, 0) + n_ji·max(z, 0) +
    t·log1p(e^{−|z|})]: a sum of non-negative terms, each to relative precision (no n_ij·z − t·… cancellation),
    so the value keeps its precision when one count is huge or tiny. One exp and one log1p per pair.
    """
    z = theta[edges.i] - theta[edges.j]
    if delta:
        z += delta
    soft = np.abs(z)
    np.negative(soft, out=soft)
    np.exp(soft, out=soft)
    np.log1p(soft, out=soft)  # log1p(e^{−|z|})
    total = float(edges.t @ soft)
    np.maximum(z, 0.0, out=soft)
    total += float(edges.n_ji @ soft)  # n_ji·max(z, 0)
    np.negative(z, out=z)
    np.maximum(z, 0.0, out=z)
    total += float(edges.n_ij @ z)  # n_ij·max(−z, 0)
    return -total - l2 * float(np.dot(theta, theta))


def _sigmoid_pair(z, p, q):
    """σ(z) = 1/(1 + e^{−z}) into ``p`` and σ(−z) = e^{−z}·σ(z) into ``q``, each to full relative precision.

    One exp, no branches, and 1 − σ(z) is never formed, so σ(−z) keeps its digits when σ(z) is within 1e-16
    of 1. Where e^{−z} overflows (z < −709.78) σ(z) is 0 in float64 and σ(−z) is 1; those entries (rare: only
    then is min z that low) are set separately. (scipy's ``expit`` gives the same values but costs several
    times an exp; this runs once per Newton step over every pair.)
    """
    with np.errstate(over="ignore", invalid="ignore"):
        np.negative(z, out=q)
        np.exp(q, out=q)  # e^{−z}
        np.add(q, 1.0, out=p)
        np.reciprocal(p, out=p)  # σ(z)
        q *= p  # σ(−z) = e^{−z}/(1 + e^{−z})
    if len(z) and z.min() < -709.0:  # e^{−z} = inf there: σ(z) = 0 is right, inf·0 is not
        far = z < -709.0
        p[far] = np.exp(z[far])  # σ(z) = e^z/(1 + e^z) = e^z to relative precision here (subnormal or 0)
        q[far] = 1.0
    return p, q


def _pcg(matvec, rhs, inv_diag, rtol, maxiter, gauge=False, x0=None):
    """Preconditioned conjugate gradients for a symmetric PSD system with a consistent right-hand side.

    Stops when the residual r = rhs − A·x has rᵀD⁻¹r ≤ rtol²·bᵀD⁻¹b (b the projected right-hand side, D⁻¹ =
    ``inv_diag``). ``x0`` warm-starts it (the same test, relative to b, not to the warm start's residual): a
    solve to a looser rtol continues to a tighter one for the cost of one extra product.

    With ``gauge``, the matrix has the all-ones null space: the residual is kept in the sum-zero subspace, so
    rounding never makes the system inconsistent. The projection r ← r − d·Σr/Σd, d = 1/``inv_diag`` (the
    diagonal), puts the rounding on the items with the most curvature, where it is: an item with counts 1e10 has
    a gradient known to ~1e-6 only, and the plain r − mean(r) would spread that onto an item with counts 1, whose
    gradient is known to 1e-16 (a wrong step of 1e-6 there, and "converged" at tol 1e-10).
    """
    if gauge:
        with np.errstate(divide="ignore"):
            d = 1.0 / inv_diag
        share = d / d.sum()
        r = rhs - share * rhs.sum()
    else:
        r = rhs.copy()
    bnorm = np.linalg.norm(rhs)
    if bnorm == 0:
        return np.zeros_like(rhs)
    rz0 = r @ (inv_diag * r)
    if x0 is None:
        x = np.zeros_like(rhs)
    else:
        x = np.array(x0, dtype=float)
        r -= matvec(x)
        if gauge:
            r -= share * r.sum()
    z = inv_diag * r
    p = z.copy()
    rz = r @ z
    if rz <= rtol * rtol * rz0:
        return x
    for _ in range(maxiter):
        ap = matvec(p)
        pap = p @ ap
        if pap <= 0:
            break
        alpha = rz / pap
        x += alpha * p
        r -= alpha * ap
        if gauge:
            r -= share * r.sum()
        z = inv_diag * r
        rz_new = r @ z
        # the residual in the preconditioner's norm rᵀD⁻¹r: each item's residual relative to its own
        # curvature, so an item with little data is solved as accurately as a busy one
        if rz_new <= rtol * rtol * rz0:
            break
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


_FORCING_CAP = 1e-2  # the loosest relative residual of a Newton step's CG solve (far from the optimum)
_MAX_STEP = 10.0  # largest change of a parameter in one Newton step before the line search extends it
_MAX_START = 10.0  # the starting strengths are clipped to ±this, where no curvature underflows


def _initial_strengths(edges: _Edges, l2):
    """Log-odds of smoothed win rates, centered (clipped to ±10): a cheap start, close on well-mixed data."""
    n = edges.n
    wins = edges.row_sums(edges.n_ij) + np.bincount(edges.j, edges.n_ji, n)
    losses = edges.row_sums(edges.n_ji) + np.bincount(edges.j, edges.n_ij, n)
    theta = np.clip(np.log((wins + 0.5) / (losses + 0.5)), -_MAX_START, _MAX_START)
    if l2 > 0:
        theta *= 0.5
    return theta - theta.mean()


def _edge_gradient(edges: _Edges, z):
    """∂ℓ/∂z_e = n_ij·σ(−z) − n_ji·σ(z) (= n_ij − t·σ(z) without the cancellation).

    Each term is computed to relative precision, so the difference stays accurate even when t is huge and
    σ(z) is within 1e-12 of 1 (the form n_ij − t·σ(z) loses everything there). The Newton loop computes the
    same in its preallocated work arrays; rounding makes |g_e| uncertain by a few ulps of n_ij·σ(−z) + n_ji·σ(z).
    """
    p, q = _sigmoid_pair(z, np.empty_like(z), np.empty_like(z))
    return edges.n_ij * q - edges.n_ji * p


def _directional_slope(edges: _Edges, theta, delta, d_theta, d_delta, l2):
    """d/ds [ℓ − l2‖θ‖²](θ + s·dθ, δ + s·dδ) at s = 0, summed edge by edge (no cancellation in g_e)."""
    z = theta[edges.i] - theta[edges.j] + delta
    dz = d_theta[edges.i] - d_theta[edges.j] + d_delta
    return float(_edge_gradient(edges, z) @ dz - 2 * l2 * (theta @ d_theta))


def _extend_step(edges: _Edges, theta0, delta0, d_theta, d_delta, l2, max_move):
    """Step length s ≥ 1 along a Newton direction whose full step was still climbing steeply.

    Doubles s while the directional slope stays positive, then bisects the bracket on the sign of the slope
    (the objective is concave along the line) to 0.1% and returns the uphill end, where the objective is at
    least its value at s = 1. No parameter moves by more than ``max_move``. Uses slopes, not objective
    values, because values can differ below rounding
    (e.g. counts of 1e-300) and a point past the maximum can sit where the curvature underflows to 0.
    """

    def slope(s):
        return _directional_slope(edges, theta0 + s * d_theta, delta0 + s * d_delta, d_theta, d_delta, l2)

    size = max(float(np.max(np.abs(d_theta))), abs(d_delta))
    lo, hi = 1.0, None
    while 2 * lo * size <= max_move:
        if slope(2 * lo) > 0:
            lo *= 2
        else:
            hi = 2 * lo
            break
    if hi is None:
        return lo
    for _ in range(60):
        if hi - lo <= 1e-3 * lo:
            break
        mid = 0.5 * (lo + hi)
        if slope(mid) > 0:
            lo = mid
        else:
            hi = mid
    return lo


def _next_step_predicted_below(change, full_prev, tol):
    """Two full Newton steps in a row, Δ_{k−1} = ``full_prev`` and Δ_k = ``change`` ≤ 1e-3, predict the next one,
    about Δ_k³/Δ_{k−1}² (quadratic convergence), below tol/10. :func:`_newton` stops on it when its inexact solve's
    error rtol·Δ_k is below tol/10 too, and continues a looser solve to that accuracy."""
    return full_prev is not None and change <= 1e-3 and change**3 <= 0.1 * tol * full_prev**2


def _newton(edges: _Edges, l2, tol, max_iter):
    """Damped Newton on ℓ(θ, δ) − l2‖θ‖²; the Hessian is a sparse weighted Laplacian (+ a δ row, column).

    Stopping rule. The main test is the size of the Newton step: stop (converged) once the largest |Δθ_i|, |Δδ| of a
    step solved to a tight tolerance is below ``tol``; the step is taken first, so there is always at least one. It
    also stops (converged) when two full steps in a row show quadratic convergence and predict the next one below
    tol/10 (Δ_k³/Δ_{k−1}² ≤ tol/10, and the inexact solve's error rtol·Δ_k too): the confirming step is then
    skipped. A step that passes either test except for the accuracy of its inexact solve has that solve continued
    (warm-started CG) to the accuracy the test needs, rather than paying a whole further Newton step to confirm it
    (10k items / 1M comparisons: 5 → 4 steps). The step is scale-free: multiplying every weight by c leaves it
    unchanged, however uneven the weights. (The gradient alone is no stopping test: with very uneven counts an
    item's gradient can be at rounding level while the Newton step, which also uses the accurately known sums over
    groups of items, is still large.) If the gradient is rounding noise — every entry below a few ulps of the terms
    n_ij·σ(−z), n_ji·σ(z) it is the difference of — and the steps have stopped shrinking three times running,
    float64 can do no better: the loop stops early with ``converged=False``.

    Line search. The objective is concave along the step, so the slope s1 at its end decides: s1 ≥ 0 means the
    full step gained; s1 < 0 checks the objective and backtracks if it fell. If the slope at the end is still
    more than a quarter of the slope at the start (the quadratic model was far off, as in the exponential tail
    of σ where Newton moves by only about 1 per step), the step is extended along the same direction to near
    the maximum on that line (:func:`_extend_step`).
    """
    n, i, j = edges.n, edges.i, edges.j
    eps = np.finfo(float).eps

    theta = _initial_strengths(edges, l2)
    delta = 0.0
    use_delta = edges.has_delta
    # No MLE gap exceeds (n − 1)·log(total count / smallest count) + O(n) along a path of the win graph: cap
    # the extended line search at twice that, so it cannot run off where σ saturates and curvature underflows
    smallest = min(float(np.min(edges.n_ij, initial=math.inf, where=edges.n_ij > 0)),
                   float(np.min(edges.n_ji, initial=math.inf, where=edges.n_ji > 0)))
    spread = math.log(float(edges.t.sum()) / smallest) if math.isfinite(smallest) else 0.0
    max_move = 2.0 * max(n, 2) * (spread + 2.0)
    converged = False
    it = stalled = 0
    last_change = math.inf
    full_prev = None  # the size of the previous Newton step if it was taken in full (no trust region, no search)
    pending = None  # the last full Newton step (from, direction, slope at start), checked at its end
    # work arrays over the pairs, allocated once (a fresh array of this size per step costs page faults)
    z, p, q, g_e = (np.empty(len(i)) for _ in range(4))
    while True:
        np.take(theta, i, out=z, mode="clip")  # indices are valid; "clip" avoids the buffered "raise" path
        z -= np.take(theta, j, out=p, mode="clip")
        if delta:
            z += delta
        _sigmoid_pair(z, p, q)  # σ(z) and 1 − σ(z), each to full relative precision
        # ∂ℓ/∂z_e = n_ij·σ(−z) − n_ji·σ(z) (as _edge_gradient); z's storage is free now
        np.multiply(edges.n_ij, q, out=g_e)
        np.multiply(edges.n_ji, p, out=z)
        g_e -= z
        g = edges.row_sums(g_e) - np.bincount(j, g_e, n) - 2 * l2 * theta
        g_d = float(g_e.sum()) if use_delta else 0.0
        if pending is not None:
            theta0, delta0, d_theta, d_delta, s0 = pending
            pending = None
            s1 = float(g @ d_theta + g_d * d_delta)
            if s1 < 0:  # φ(1) − φ(0) ≥ s1 (concavity): it may have fallen; compare values
                obj0 = _objective(edges, theta0, delta0, l2)
                slack = 1e-13 * (1.0 + abs(obj0))
                step = 1.0
                while step >= 1e-10 and _objective(edges, theta, delta, l2) < obj0 - slack:
                    step *= 0.5
                    theta, delta = theta0 + step * d_theta, delta0 + step * d_delta
                if step < 1.0:
                    full_prev = None
                    continue  # derivatives at the accepted point
            elif s0 > 0 and s1 > 0.25 * s0:  # still climbing steeply: extend the step along this direction
                step = _extend_step(edges, theta0, delta0, d_theta, d_delta, l2, max_move)
                if step > 1.0:
                    theta, delta = theta0 + step * d_theta, delta0 + step * d_delta
                    full_prev = None
                    continue
        # rounding noise of g_i: a few ulps of the terms it sums, plus the rounding of z = θ_i − θ_j (~ulp θ)
        # times the curvature, which is at most the same terms (t·p·q ≤ n_ij·q + n_ji·p)
        noise = 64 * eps * (1.0 + float(np.max(np.abs(theta))) + abs(delta))
        at_rounding = False
        # the rounding level of g_e is scale_e = n_ij·σ(−z) + n_ji·σ(z): its sum first (two dot products), the
        # per-item sums only when that cheap bound passes
        if it >= 1 and np.max(np.abs(g)) <= noise * 2 * float(edges.n_ij @ q + edges.n_ji @ p):
            scale_e = edges.n_ij * q + edges.n_ji * p
            scale = edges.row_sums(scale_e) + np.bincount(j, scale_e, n) + 2 * l2 * np.abs(theta)
            at_rounding = bool(np.all(np.abs(g) <= noise * scale)) and (
                abs(g_d) <= noise * float(scale_e.sum()) if use_delta else True
            )
        if at_rounding and stalled >= 3:
            break  # the gradient is rounding noise and the steps stopped shrinking: float64 can do no better
        if it >= max_iter:
            break
        it += 1
        w_e = p
        w_e *= q
        w_e *= edges.t  # −∂²ℓ/∂z_e² = t·σ(z)·σ(−z), in p's storage (p, q are recomputed next step)
        deg_i = edges.row_sums(w_e)
        deg_j = np.bincount(j, w_e, n)
        deg = deg_i + deg_j + 2 * l2
        # L = D − (U + Uᵀ) with U the (n, n) sparse matrix of edge weights at (i, j): its pattern is fixed,
        # and Uᵀ @ x is a CSC product on the same arrays (no copy, no sort)
        u = sp.csr_matrix((w_e, edges.indices, edges.indptr), shape=(n, n))
        ut = u.T
        if use_delta:
            b = deg_i - deg_j
            c = float(w_e.sum())

            def matvec(x, u=u, ut=ut, deg=deg, b=b, c=c):
                return deg * x - u @ x - ut @ x - b * (b @ x) / c

            rhs = g - b * g_d / c
        else:

            def matvec(x, u=u, ut=ut, deg=deg):
                return deg * x - u @ x - ut @ x

            rhs = g
            b = c = None
        with np.errstate(over="ignore", divide="ignore"):  # a curvature that underflowed: capped, not inf
            inv_diag = np.minimum(1.0 / np.where(deg > 0, deg, 1.0), 1e300)
        # inexact Newton: a loose solve while far away, a tight one near the optimum (Eisenstat & Walker 1996)
        # The forcing term is the curvature-scaled gradient max_i |g_i|/deg_i (a Jacobi step), scale-free.
        # Below 1e-6 the forcing term only needs to keep the step's own error, about rtol·|step| ≈ rtol·jacobi,
        # well below tol: a step of 1e-11 solved to 1e-6 is off by 1e-17, and solving it to 1e-10 costs twice the
        # CG iterations for nothing (the stopping rules below check the accuracy they rely on).
        jacobi = float(np.max(np.abs(rhs) * inv_diag)) if n else 0.0
        rtol = min(_FORCING_CAP, max(1e-10, jacobi, min(1e-6, 0.01 * tol / jacobi if jacobi > 0 else 1e-6)))
        # solve the rescaled system (H/h)·x = g/r, x = Δ·h/r: with counts like 1e-300 the squares in the norms
        # would underflow, with counts like 1e300 overflow
        h_scale = float(deg.max()) if deg.max() > 0 else 1.0
        with np.errstate(over="ignore", divide="ignore"):
            h_inv = np.where(deg > 0, h_scale / np.where(deg > 0, deg, 1.0), 1.0)  # h·D⁻¹, capped below
        r_scale = float(np.max(np.abs(rhs)))

        def solve(rtol, x0=None, matvec=matvec, h_scale=h_scale, rhs=rhs, r_scale=r_scale, h_inv=h_inv, g_d=g_d,
                  b=b, c=c):
            """The Newton step to rtol: (the rescaled solution, dθ, dδ, max |change|)."""
            # a right-hand side that underflowed to zero (counts near 5e-324 at their optimum) asks for no step;
            # the product below would be 0·∞ when the curvature is subnormal too
            x = np.zeros(n) if r_scale == 0 else _pcg(
                lambda v: matvec(v) / h_scale, rhs / r_scale, np.minimum(h_inv, 1e300), rtol=rtol,
                maxiter=max(50, 2 * n), gauge=l2 == 0, x0=x0)
            d_theta = x * (r_scale / h_scale)
            if l2 == 0:
                d_theta -= d_theta.mean()
            d_delta = (g_d - b @ d_theta) / c if use_delta else 0.0
            return x, d_theta, d_delta, max(float(np.max(np.abs(d_theta))), abs(d_delta))

        x, d_theta, d_delta, change = solve(rtol)
        # A loose solve that the stopping rules below would accept if only it were tighter: continue the same
        # CG (warm start, one extra product) to the accuracy they need, instead of paying a whole further Newton
        # step (a pass over the pairs and a tight solve from scratch) just to confirm.
        curved = bool(np.all(deg > 0))  # no item's curvature underflowed to 0 (the stopping rules need it)
        if curved and change > 0:
            need = None
            if change < tol and rtol > 1e-6:
                need = 1e-6
            elif _next_step_predicted_below(change, full_prev, tol) and rtol * change > 0.1 * tol:
                need = max(0.05 * tol / change, 1e-12)
            if need is not None and need < rtol:
                rtol = need
                x, d_theta, d_delta, change = solve(rtol, x0=x)
        if change > _MAX_STEP:  # a trust region: far out in σ's tails the quadratic model can ask for 1e100
            d_theta, d_delta = d_theta * (_MAX_STEP / change), d_delta * (_MAX_STEP / change)
        s0 = float(g @ d_theta + g_d * d_delta)  # = Newton decrement² when the solve is exact
        pending = (theta, delta, d_theta, d_delta, s0)
        theta, delta = theta + d_theta, delta + d_delta
        if not (np.all(np.isfinite(theta)) and math.isfinite(delta)):
            # the existence checks passed (or l2 > 0), so the estimate exists: float64 ran out of range
            raise ValueError(
                "Newton's method diverged (float64 overflow) although the estimate exists: the weights' ratios "
                f"span too much of the float range (largest/smallest positive count "
                f"{1 / smallest if math.isfinite(smallest) else math.inf:.3g}); rescale or clip the weights, or "
                "pass l2 > 0")
        # converged: a step this small cannot overshoot; not if some item's curvature underflowed to 0
        # (its part of the Newton system is then unsolvable in float64, and a zero step means nothing)
        if change < tol and rtol <= 1e-6 and curved:
            converged, pending = True, None
            break
        # Quadratic convergence seen: two full steps in a row with Δ_k ≪ Δ_{k−1}. Newton's Δ_{k+1} ≈ C·Δ_k² with
        # C ≈ Δ_k/Δ_{k−1}², so the next step would be about Δ_k³/Δ_{k−1}²: if that is below tol/10 (and the
        # inexact solve's error rtol·Δ_k too), this step already landed within tol and the confirming step is
        # skipped (it would cost a full pass over the pairs for nothing: 5 → 4 steps on typical data).
        if _next_step_predicted_below(change, full_prev, tol) and rtol * change <= 0.1 * tol and curved:
            converged, pending = True, None
            break
        full_prev = change if change <= _MAX_STEP else None
        stalled = stalled + 1 if at_rounding and change > 0.5 * last_change else 0
        last_change = change
    if pending is not None and _objective(edges, *pending[:2], l2) > _objective(edges, theta, delta, l2):
        theta, delta = pending[0], pending[1]
    if l2 == 0:
        theta = theta - theta.mean()
    return theta, delta, it, converged


def _mm(edges: _Edges, tol, max_iter):
    """Hunter (2004) MM; with an order effect, the cyclic home-field version (Hunter 2004, §3.2)."""
    n, i, j = edges.n, edges.i, edges.j
    wins = np.bincount(i, edges.n_ij, n) + np.bincount(j, edges.n_ji, n)
    theta = _initial_strengths(edges, 0.0)
    delta = 0.0
    home_wins = edges.n_ij.sum()
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        gamma = np.exp(theta - theta.max())  # γ = e^θ, rescaled: the updates are scale-free
        h = math.exp(delta) if edges.has_delta else 1.0
        # γ_k ← W_k / [Σ_{pairs with k first} t·h/(h·γ_k + γ_j) + Σ_{pairs with k second} t/(h·γ_i + γ_k)]
        q = edges.t / (h * gamma[i] + gamma[j])
        denom = np.bincount(i, h * q, n) + np.bincount(j, q, n)
        new_theta = np.log(wins) - np.log(denom)  # log γ up to the shift by max θ, which the centring removes
        new_theta -= new_theta.mean()
        new_delta = delta
        if edges.has_delta:
            gamma = np.exp(new_theta - new_theta.max())
            # h ← H / Σ_pairs t·γ_first / (h·γ_first + γ_second)
            new_delta = math.log(home_wins) - math.log(np.sum(edges.t * gamma[i] / (h * gamma[i] + gamma[j])))
        change = max(np.max(np.abs(new_theta - theta)), abs(new_delta - delta))
        theta, delta = new_theta, new_delta
        if change < tol:
            converged = True
            break
    return theta, delta, it, converged


# ------------------------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------------------------
def sample_comparisons(strengths, n, rng):
    """n comparisons between uniformly random pairs i ≠ j with outcomes drawn from BT.

    Returns an (n, 2) int64 array of (winner, loser) rows.

    Parameters
    ----------
    strengths : (n_items,) θ, n_items ≥ 2.
    n : number of comparisons ≥ 0.
    rng : numpy Generator, or an integer seed of ``np.random.default_rng``.
    """
    theta = as_float_array(strengths, "strengths", ndim=1)
    if len(theta) < 2:
        raise ValueError("strengths must have at least 2 items")
    n = check_int(n, "n", 0)
    rng = check_seed(rng, "rng")
    k = len(theta)
    a = rng.integers(0, k, size=n)
    b = rng.integers(0, k - 1, size=n)
    b = b + (b >= a)  # uniform over the other items
    a_wins = rng.random(n) < sigmoid(theta[a] - theta[b])
    return np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1).astype(np.int64)
