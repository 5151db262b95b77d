"""Plackett-Luce: rankings of more than two items, the likelihood, the MLE (Newton or MM), existence, sampling.

The model (Luce 1959; Plackett 1975) gives item ``i`` a strength θ_i and ranks a set of items best first by
choosing the best with probability ∝ e^θ, then the best of the rest, and so on:

    P(y_1 ≻ y_2 ≻ … ≻ y_L) = Π_{k=1}^{L−1} exp(θ_{y_k}) / Σ_{j≥k} exp(θ_{y_j}).

With L = 2 this is Bradley-Terry, σ(θ_{y_1} − θ_{y_2}).

Conventions
-----------
* ``rankings`` is a sequence of item sequences, best first: a 2-d int array (m, L), or a list of lists of any
  lengths ≥ 2 (ragged). A ranking ranks exactly the items it lists (its choice set is those items; an item it
  does not list is not in the comparison), as in choix. A top-k ranking out of a larger set whose other items
  were seen but left unranked is not this model: their strengths would enter every denominator.
* ``weights`` (m,) are non-negative counts, may be fractional.
* Strengths are reported in the sum-zero gauge Σθ = 0; the covariance is the pseudo-inverse of the observed
  information in that gauge (as :class:`prefkit.bradley_terry.BradleyTerryFit`).
* Every computation groups the rankings by length and works on one (m_L, L) array per length: no Python loop
  over rankings. Suffix log-sums use ``np.logaddexp.accumulate``, so nothing overflows.

References
----------
Hunter, D. R. (2004), "MM algorithms for generalized Bradley-Terry models", Ann. Statist. 32, §5 (the
Plackett-Luce MM update, and Assumption 1: the MLE exists iff in every partition of the items into two
non-empty sets some item of the second set is ranked above some item of the first).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._validate import as_float_array, check_int, check_real, check_seed, check_weights, finite_result, to_numpy
from .bradley_terry import _aggregate, _obstruction, _pcg, mle_obstruction

__all__ = [
    "pl_log_probability",
    "pl_log_likelihood",
    "pl_log_likelihood_gradient",
    "pl_fisher_information",
    "pl_mle_obstruction",
    "fit_plackett_luce",
    "PlackettLuceFit",
    "sample_rankings",
    "all_rankings",
]


# ------------------------------------------------------------------------------------------------------------
# the data: rankings grouped by length
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Rankings:
    """Rankings grouped by length: ``groups`` is a list of (rows, R, w), R (m_L, L) int64 best first, w (m_L,),
    ``rows`` the positions of those rankings in the input."""

    n: int
    m: int
    groups: list

    @cached_property
    def pair_index(self) -> np.ndarray:
        """Flat index a·n + b of every (position a, position b) pair of every ranking, group by group."""
        return np.concatenate([(R[:, :, None] * self.n + R[:, None, :]).ravel() for _, R, _ in self.groups])

    @cached_property
    def by_position(self) -> list:
        """Each group as (Rᵀ, w): Rᵀ (L, m_L) C-contiguous, so each position's m_L items are contiguous (the
        matrix-free Newton works position by position)."""
        return [(np.ascontiguousarray(R.T), w) for _, R, w in self.groups]


def _prepare(rankings, n_items=None, weights=None, *, name="rankings") -> _Rankings:
    rankings = to_numpy(rankings)
    if rankings is None or isinstance(rankings, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of rankings (each a sequence of item ids), got {rankings!r}")
    if isinstance(rankings, np.ndarray) and rankings.ndim == 2:
        arr = rankings
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError(f"{name} must contain integer item ids")
        elif arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must contain integer item ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        lengths = np.full(arr.shape[0], arr.shape[1], dtype=np.int64)
        flat = arr.ravel()
    else:
        try:
            seqs = [np.asarray(to_numpy(r)) for r in rankings]
        except (TypeError, RuntimeError):
            raise ValueError(f"{name} must be a sequence of rankings (each a sequence of item ids)") from None
        if any(s.ndim != 1 for s in seqs):
            raise ValueError(f"{name}: each ranking must be a flat sequence of item ids")
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        if flat.size and flat.dtype.kind == "f":
            if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)):
                raise ValueError(f"{name} must contain integer item ids")
        elif flat.size and flat.dtype.kind not in "iu":
            raise ValueError(f"{name} must contain integer item ids, got dtype {flat.dtype}")
        flat = flat.astype(np.int64)
    m = len(lengths)
    if m == 0:
        raise ValueError(f"{name} is empty")
    if np.any(lengths < 2):
        k = int(np.flatnonzero(lengths < 2)[0])
        raise ValueError(f"{name}: ranking {k} has {int(lengths[k])} item(s); a ranking needs at least 2")
    if np.any(flat < 0):
        raise ValueError(f"{name} contains a negative item id")
    if n_items is None:
        n = int(flat.max()) + 1
    else:
        n = check_int(n_items, "n_items", 1)
        if int(flat.max()) >= n:
            raise ValueError(f"{name} contains item {int(flat.max())}, out of range for n_items={n}")
    w = check_weights(weights, m)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    groups = []
    unique_lengths = np.unique(lengths)
    for L in unique_lengths:
        rows = np.flatnonzero(lengths == L)
        if len(unique_lengths) == 1:  # one length: flat is already (m, L), a copy of the input
            R = flat.reshape(m, L)
        else:
            R = flat[starts[rows, None] + np.arange(L)]  # (m_L, L)
        s = np.sort(R, axis=1)
        dup = np.any(s[:, 1:] == s[:, :-1], axis=1)
        if np.any(dup):
            k = int(rows[np.flatnonzero(dup)[0]])
            raise ValueError(f"{name}: ranking {k} lists an item twice")
        groups.append((rows, R, w[rows]))
    return _Rankings(n, m, groups)


def _check_strengths(strengths, n):
    theta = as_float_array(strengths, "strengths", ndim=1, nonempty=True)
    if len(theta) < n:
        raise ValueError(f"strengths has {len(theta)} entries but the rankings use item {n - 1}")
    return theta


# ------------------------------------------------------------------------------------------------------------
# the model: one (m_L, L) block at a time
# ------------------------------------------------------------------------------------------------------------
def _suffix_lse(T):
    """lse[:, k] = log Σ_{j≥k} exp(T[:, j]): the log-denominator of stage k. Shape (m, L).

    A loop over the L columns (each step one vectorised logaddexp over the m rankings): numpy's
    ``logaddexp.accumulate`` along a short axis is several times slower.
    """
    out = np.empty_like(T)
    out[:, -1] = T[:, -1]
    for k in range(T.shape[1] - 2, -1, -1):
        np.logaddexp(T[:, k], out[:, k + 1], out=out[:, k])
    return out


def _cum_inv(lse, power=1):
    """log Σ_{k ≤ min(j, L−2)} exp(−power·lse_k) for each position j, shape (m, L).

    exp(θ_{y_j} + this) (power 1) is Σ_stages P(the item at position j is chosen at stage k): the expected
    number of times it is picked; with power 2 and θ_a + θ_b it gives Σ_k p_{k,a}·p_{k,b}.
    """
    L = lse.shape[1]
    out = np.empty_like(lse)
    out[:, 0] = -power * lse[:, 0]
    for k in range(1, L - 1):
        np.logaddexp(out[:, k - 1], -power * lse[:, k], out=out[:, k])
    out[:, L - 1] = out[:, L - 2]  # the last item is in every stage's set, and no stage is its own
    return out


def _block(theta, R, w, *, grad=True, hess=False):
    """(log-likelihood, gradient contributions (R-shaped), chosen-weights, Hessian pieces) of one block."""
    T = theta[R]  # (m, L)
    lse = _suffix_lse(T)
    ll = float(w @ (T[:, :-1] - lse[:, :-1]).sum(axis=1))
    if not grad:
        return ll, None, None
    c1 = _cum_inv(lse)
    E = np.exp(T + c1)  # (m, L): expected times chosen, ≤ position + 1
    out = {"E": w[:, None] * E, "c1": c1}
    if hess:
        L = R.shape[1]
        c2 = _cum_inv(lse, 2)
        mn = np.minimum.outer(np.arange(L), np.arange(L))
        out["M"] = w[:, None, None] * np.exp(T[:, :, None] + T[:, None, :] + c2[:, mn])  # (m, L, L)
    return ll, out, T


def _loglik_grad(theta, data: _Rankings):
    n = data.n
    ll, g = 0.0, np.zeros(n)
    for _, R, w in data.groups:
        b_ll, b, _ = _block(theta, R, w)
        ll += b_ll
        g += np.bincount(R[:, :-1].ravel(), np.repeat(w, R.shape[1] - 1), n)
        g -= np.bincount(R.ravel(), b["E"].ravel(), n)
    return ll, g


def _information(theta, data: _Rankings):
    """Observed information −∇²ℓ = Σ_rankings Σ_stages [diag(p_k) − p_k p_kᵀ], dense (n, n).

    Builds an (m_L, L, L) array per length: for the covariance and :func:`pl_fisher_information`; Newton
    never forms F (:class:`_NewtonSystem`).
    """
    n = data.n
    diag = np.zeros(n)
    vals = []
    for _, R, w in data.groups:
        _, b, _ = _block(theta, R, w, hess=True)
        diag += np.bincount(R.ravel(), b["E"].ravel(), n)
        vals.append(b["M"].ravel())
    F = -np.bincount(data.pair_index, np.concatenate(vals), n * n).reshape(n, n)
    F[np.diag_indices(n)] += diag
    return F


# ------------------------------------------------------------------------------------------------------------
# the matrix-free information: positions along axis 0, every array (L, m_L)
# ------------------------------------------------------------------------------------------------------------
def _stage_log_sums(Tt):
    """lse_k = log S_k, S_k = Σ_{j≥k} exp(T_j): the log-denominator of stage k, (L, m) from Tt = θ[Rᵀ] (L, m)."""
    return _suffix_lse(Tt.T).T  # the columns of Tt.T are Tt's contiguous rows


def _stage_factors(Tt, lse):
    """q_j = exp(T_j − lse_j) = p_{j,j} (L, m) and ρ_k = exp(lse_{k+1} − lse_k) = S_{k+1}/S_k (L−1, m).

    Every stage probability follows: p_{k,j} = exp(T_j − lse_k) = q_j·Π_{k≤i<j} ρ_i for j ≥ k. Both are ≤ 1, so
    the recursions built on them neither overflow nor lose a term to underflow of exp(T). Computed in place:
    q in Tt's memory, ρ in lse[:-1]'s (row k is overwritten after row k + 1 was read).
    """
    q = np.exp(np.subtract(Tt, lse, out=Tt), out=Tt)
    for k in range(len(lse) - 1):
        np.subtract(lse[k + 1], lse[k], out=lse[k])
    rho = np.exp(lse[:-1], out=lse[:-1])
    return q, rho


def _stage_sums(q, rho, V, out, tmp):
    """s_k = p_kᵀ v over stage k's set = Σ_{j≥k} p_{k,j} V_j: s_{L−1} = V_{L−1}, s_k = q_k V_k + ρ_k s_{k+1}.

    (s_{L−1} is a convenience: no stage chooses from one item.) Into ``out`` (L, m); ``tmp`` (m,) is scratch.
    """
    s = np.multiply(q, V, out=out)
    for k in range(len(s) - 2, -1, -1):
        s[k] += np.multiply(rho[k], s[k + 1], out=tmp)
    return s


def _stage_weighted(rho, s, tmp):
    """a_j = Σ_{k ≤ min(j, L−2)} (S_j/S_k) s_k, so that Σ_{stages k ∋ j} p_{k,j} s_k = q_j·a_j:
    a_0 = s_0, a_j = ρ_{j−1} a_{j−1} + s_j for j ≤ L−2, a_{L−1} = ρ_{L−2} a_{L−2} (the last item is in every
    stage's set, and no stage is its own). In place in ``s``; ``tmp`` (m,) is scratch."""
    L = len(s)
    for j in range(1, L - 1):
        s[j] += np.multiply(rho[j - 1], s[j - 1], out=tmp)
    np.multiply(rho[L - 2], s[L - 2], out=s[L - 1])
    return s


class _NewtonSystem:
    """The Newton system at θ, matrix-free: the gradient, the information's diagonal and products F·v.

    F·v = Σ_r w_r Σ_{k<L−1} [p_k ⊙ v − p_k (p_kᵀ v)], at the item in position j:
    w·(E_j V_j − q_j a_j), V = v[Rᵀ], E_j = Σ_{stages k ∋ j} p_{k,j} (expected times chosen), a from
    :func:`_stage_sums` then :func:`_stage_weighted`. The diagonal F_ii = Σ w·(E_j − Σ_{stages k ∋ j} p_{k,j}²),
    with Σ_k p_{k,j}² = q_j²·(:func:`_stage_weighted` with ρ², of ones). O(m·L) work and memory per product
    (work arrays allocated once per system), no (m, L, L) array and no n × n matrix.
    """

    def __init__(self, stages, n, wins):
        """``stages``: per group (Rᵀ, w, Tt, lse) at θ, overwritten (:func:`_stage_factors`); ``wins`` (n,):
        Σ_r w_r·[times item i is chosen]."""
        self.n = n
        self.blocks = []
        expected, self.diagonal = np.zeros(n), np.zeros(n)
        for Rt, w, Tt, lse in stages:
            q, rho = _stage_factors(Tt, lse)
            V, S, tmp = np.empty_like(q), np.empty_like(q), np.empty_like(w)
            E = _stage_weighted(rho, np.ones_like(q), tmp)
            E *= q
            E *= w
            flat = Rt.ravel()
            expected += np.bincount(flat, E.ravel(), n)
            V.fill(1.0)  # V and S are free until the first product: Σ_k p_{k,j}² in V, ρ² in S
            p2 = _stage_weighted(np.multiply(rho, rho, out=S[:-1]), V, tmp)
            p2 *= q
            p2 *= q
            p2 *= w
            np.subtract(E, p2, out=p2)
            self.diagonal += np.bincount(flat, p2.ravel(), n)
            self.blocks.append((flat, q, q * w, rho, E, V, S, tmp))
        self.gradient = wins - expected  # observed minus expected choices

    def times(self, v):
        """F·v (see the class docstring)."""
        out = np.zeros(self.n)
        for flat, q, qw, rho, E, V, S, tmp in self.blocks:
            np.take(v, flat, out=V.reshape(-1), mode="clip")  # ids are in range; "raise" would copy first
            a = _stage_weighted(rho, _stage_sums(q, rho, V, S, tmp), tmp)
            a *= qw
            V *= E
            V -= a
            out += np.bincount(flat, V.ravel(), self.n)
        return out


def _information_product(theta, data: _Rankings, v):
    """F·v at θ without forming F (:class:`_NewtonSystem`)."""
    return _NewtonSystem(_stages(theta, data)[1], data.n, np.zeros(data.n)).times(v)


def _stages(theta, data: _Rankings):
    """(ℓ(θ), per group (Rᵀ, w, θ[Rᵀ], lse)): ℓ = Σ_r w_r Σ_{k<L−1} (T_k − lse_k)."""
    ll, out = 0.0, []
    for Rt, w in data.by_position:
        Tt = theta[Rt]
        lse = _stage_log_sums(Tt)
        ll += float(w @ (Tt[:-1] - lse[:-1]).sum(axis=0))
        out.append((Rt, w, Tt, lse))
    return ll, out


# ------------------------------------------------------------------------------------------------------------
# public functions of the model
# ------------------------------------------------------------------------------------------------------------
def pl_log_probability(strengths, rankings) -> np.ndarray:
    """log P(ranking) = Σ_{k<L} [θ_{y_k} − log Σ_{j≥k} exp(θ_{y_j})] for each ranking; shape (m,).

    Parameters
    ----------
    strengths : (n,) θ.
    rankings : (m, L) int array or a list of item sequences (ragged), best first, each of length ≥ 2.

    Returns
    -------
    (m,) float64 log-probabilities, in the order of ``rankings`` (Plackett 1975; Hunter 2004, Eq. 27).
    """
    data = _prepare(rankings)
    theta = _check_strengths(strengths, data.n)
    out = np.zeros(data.m)
    with np.errstate(over="ignore", invalid="ignore"):
        for rows, R, _ in data.groups:
            T = theta[R]
            out[rows] = (T[:, :-1] - _suffix_lse(T)[:, :-1]).sum(axis=1)
    return finite_result(out, "strengths too large: the log-probabilities overflow float64")


def pl_log_likelihood(strengths, rankings, weights=None) -> float:
    """ℓ(θ) = Σ_r w_r·log P_θ(ranking r) under Plackett-Luce (see :func:`pl_log_probability`)."""
    data = _prepare(rankings, weights=weights)
    theta = _check_strengths(strengths, data.n)
    with np.errstate(over="ignore", invalid="ignore"):
        ll = float(sum(_block(theta, R, w, grad=False)[0] for _, R, w in data.groups))
    return finite_result(ll, "the log-likelihood overflows float64: strengths or weights too large")


def pl_log_likelihood_gradient(strengths, rankings, weights=None) -> np.ndarray:
    """∂ℓ/∂θ_i = (times i was chosen) − Σ_stages P(i chosen at that stage): observed minus expected. Shape (n,).

    A ranking of length L makes L − 1 choices; item i is "chosen" at stage k when it is ranked k-th, and its
    expected count sums e^{θ_i}/Σ_{j≥k} e^{θ_{y_j}} over the stages whose remaining set contains it (Hunter
    2004, §5). ``n`` is ``len(strengths)``.
    """
    theta = as_float_array(strengths, "strengths", ndim=1, nonempty=True)
    data = _prepare(rankings, len(theta), weights)
    with np.errstate(over="ignore", invalid="ignore"):
        g = _loglik_grad(theta, data)[1]
    return finite_result(g, "the gradient overflows float64: strengths or weights too large")


def pl_fisher_information(strengths, rankings, weights=None) -> np.ndarray:
    """−∇²ℓ = Σ_r w_r Σ_stages [diag(p_k) − p_k p_kᵀ], p_k the choice probabilities of stage k. Dense (n, n).

    Positive semi-definite with the all-ones vector in its null space. For PL it does not depend on which item
    won each stage, only on the sets, so it is also the observed information.
    """
    theta = as_float_array(strengths, "strengths", ndim=1, nonempty=True)
    data = _prepare(rankings, len(theta), weights)
    with np.errstate(over="ignore", invalid="ignore"):
        F = _information(theta, data)
    return finite_result(F, "the information overflows float64: strengths or weights too large")


def _pairs_above(data: _Rankings):
    """(winner, loser) pairs y_k → y_{k+1} (and their weights): the 'ranked above' graph has the same strongly
    connected components as the one with every pair y_k → y_j, k < j (the latter is the former's closure)."""
    pairs = [np.stack([R[:, :-1].ravel(), R[:, 1:].ravel()], axis=1) for _, R, _ in data.groups]
    ws = [np.repeat(w, R.shape[1] - 1) for _, R, w in data.groups]
    return np.concatenate(pairs), np.concatenate(ws)


def pl_mle_obstruction(rankings, n_items=None, weights=None):
    """Why the Plackett-Luce MLE does not exist: a group never ranked below (or never above) the rest, or None.

    Hunter (2004), Assumption 1: the MLE exists iff the directed graph with an edge i → j whenever i is ranked
    above j in a ranking of positive weight is strongly connected. Returns (group, kind) as
    :func:`prefkit.bradley_terry.mle_obstruction` ("never lost": never ranked below an item outside the group;
    "never won": never ranked above one).
    """
    data = _prepare(rankings, n_items, weights)
    pairs, w = _pairs_above(data)
    return mle_obstruction(pairs, data.n, w)


def _group_str(group):
    shown = ", ".join(map(str, group[:10]))
    return "{" + shown + (f", … ({len(group)} items)" if len(group) > 10 else "") + "}"


# ------------------------------------------------------------------------------------------------------------
# the fit
# ------------------------------------------------------------------------------------------------------------
class PlackettLuceFit:
    """Result of :func:`fit_plackett_luce`.

    Attributes
    ----------
    strengths : (n,) θ̂, mean 0.
    log_likelihood : ℓ(θ̂) without the penalty.
    n_iter, converged, method, l2.
    covariance : (n, n) inverse observed information in the sum-zero gauge (with l2 > 0: the inverse of the
        penalised Hessian). Computed on first access.
    stderr : (n,) sqrt of the covariance diagonal.
    """

    def __init__(self, strengths, log_likelihood, n_iter, converged, method, l2, data, weight_scale=1.0):
        self.strengths = strengths
        self._ll_unit = log_likelihood  # of the counts divided by weight_scale (the fit is scale-free)
        self._scale = float(weight_scale)
        self.n_iter = n_iter
        self.converged = converged
        self.method = method
        self.l2 = l2
        self._data = data

    @property
    def n_items(self) -> int:
        return len(self.strengths)

    @property
    def log_likelihood(self) -> float:
        """ℓ(θ̂) for the counts given; ValueError when it overflows float64 (weights near 1e308)."""
        return finite_result(self._ll_unit * self._scale, "the log-likelihood of these weights overflows float64")

    @cached_property
    def _unit_covariance(self) -> np.ndarray:
        """The covariance for the counts divided by weight_scale; the covariance is this / weight_scale."""
        n = self.n_items
        F = _information(self.strengths, self._data)
        try:
            if self.l2 > 0:  # c·F_unit + 2·l2 = c·(F_unit + 2·l2/c)
                return np.linalg.inv(F + 2 * (self.l2 / self._scale) * np.eye(n))
            u = np.full((n, n), 1.0 / n)
            return np.linalg.inv(F + u) - u  # the pseudo-inverse in the sum-zero gauge
        except np.linalg.LinAlgError:
            raise ValueError("the information matrix is singular in float64: weights too uneven") from None

    @property
    def covariance(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            c = self._unit_covariance / self._scale
        return finite_result(c, "the covariance overflows float64 for weights this small; use stderr")

    @property
    def stderr(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self._unit_covariance), 0.0, None)) / np.sqrt(self._scale)

    def __repr__(self) -> str:
        return (f"PlackettLuceFit(n_items={self.n_items}, method={self.method!r}, l2={self.l2}, "
                f"log_likelihood={self._ll_unit * self._scale:.6g}, n_iter={self.n_iter}, "
                f"converged={self.converged})")


def _objective(theta, data, l2):
    return sum(_block(theta, R, w, grad=False)[0] for _, R, w in data.groups) - l2 * float(theta @ theta)


def _bt_start(data: _Rankings):
    """A start for Newton: the Bradley-Terry MLE on every pair a ranking orders (y_k above y_j, k < j).

    Under Plackett-Luce, P(i ranked above j) = e^θ_i / (e^θ_i + e^θ_j) whatever else the ranking holds, so this
    composite-likelihood estimate is consistent for θ: it starts Newton near the MLE (8 → 4 steps at 1,000 items
    and 100k rankings of 5, 7 → 4 at 100 and 1M), fitted on the pairs' total weights (one ``np.bincount`` per
    pair of positions into n² counts, no array of all m·L(L−1)/2 pairs) by prefkit's sparse Bradley-Terry
    Newton to 1e-6. None when that MLE does not exist (e.g. only top items ever ranked first); Newton then
    starts at 0.
    """
    from .bradley_terry import fit_bradley_terry

    n = data.n
    counts = np.zeros(n * n)  # counts[i·n + j]: weight of "i ranked above j"; n² ≤ 2·pairs where it is used
    for _, R, w in data.groups:
        for a, b in zip(*np.triu_indices(R.shape[1], 1), strict=True):
            counts += np.bincount(R[:, a] * n + R[:, b], w, n * n)
    pair = np.flatnonzero(counts)
    try:
        return fit_bradley_terry(np.stack(np.divmod(pair, n), axis=1), n, weights=counts[pair], tol=1e-6).strengths
    except ValueError:
        return None


def _newton(data: _Rankings, l2, tol, max_iter):
    """Damped Newton on ℓ(θ) − l2‖θ‖² with the exact Hessian, matrix-free; backtracking keeps every step uphill.

    System: each step solves (F + 2·l2·I)·d = ∇ by conjugate gradients on products F·v
    (:class:`_NewtonSystem`, :func:`_matrix_free_newton_step`), O(m·L) each. Measured faster than assembling F
    and solving densely at every size tried, 5 to 3,000 items (issue 16), with 2–4× less memory.
    Start: with l2 = 0 and n² ≤ 2·(ordered pairs), the Bradley-Terry fit on the ordered pairs (:func:`_bt_start`;
    7–8 → 4 steps on rankings of 5), whose n² pair counts then cost no more memory than the pairs. With
    fewer pairs it cost more than the steps it saved (1.3× the time at 1k items × 10k rankings and 3k × 100k,
    1.05–1.8× at 10k × 1M, when it aggregated the pairs by a sort; measured). Else θ = 0.
    Stop: once a step's largest change is below tol.
    """
    n = data.n
    n_pairs = sum(len(w) * (R.shape[1] * (R.shape[1] - 1) // 2) for _, R, w in data.groups)
    theta = _bt_start(data) if l2 == 0 and n * n <= 2 * n_pairs else None
    if theta is None:
        theta = np.zeros(n)
    wins = _wins(data)
    ll, stages = _stages(theta, data)
    obj = ll - l2 * float(theta @ theta)
    converged, it = False, 0
    while it < max_iter:
        it += 1
        system = _NewtonSystem(stages, n, wins)
        del stages  # overwritten: the system holds its q and ρ
        g = system.gradient - 2 * l2 * theta
        d = _matrix_free_newton_step(system, g, l2, tol)
        del system
        if l2 == 0:
            d -= d.mean()
        change = float(np.max(np.abs(d)))
        if change > 10.0:  # a trust region: far out, the quadratic model may ask for huge steps
            d *= 10.0 / change
        slope = float(g @ d)
        step = 1.0
        while True:
            new = theta + step * d
            new_ll, new_stages = _stages(new, data)
            new_obj = new_ll - l2 * float(new @ new)
            if new_obj >= obj + 1e-4 * step * slope - 1e-13 * (1 + abs(obj)) or step < 1e-10:
                break
            step *= 0.5
        theta, obj, stages = new, new_obj, new_stages
        if step * change < tol:
            converged = True
            break
    return theta, it, converged


def _wins(data: _Rankings):
    """W_i = Σ_r w_r·[times item i is chosen]: positions 0 … L−2 of every ranking."""
    return sum(np.bincount(Rt[:-1].ravel(), np.tile(w, len(Rt) - 1), data.n) for Rt, w in data.by_position)


def _matrix_free_newton_step(system: _NewtonSystem, g, l2, tol):
    """Solve (F + 2·l2·I)·d = g by Jacobi-preconditioned conjugate gradients (:func:`prefkit.bradley_terry._pcg`,
    in the sum-zero gauge when l2 = 0: F's null space is the all-ones vector), with F·x from
    :meth:`_NewtonSystem.times`, O(m·L) per product, and the preconditioner F's diagonal.

    Relative residual rtol = η = max_i |g_i|/F_ii, about the step's size (Eisenstat & Walker 1996: the solve's
    error η·|d| ≈ |d|² keeps Newton quadratic), capped at 1e-2 far out; near the optimum no tighter than
    1e-3·tol/η, an error of 1e-3·tol in the step (so the last, confirming step of ~1e-13 takes 2 products at
    10k items × 1M rankings), and never below 1e-12.
    """
    diag = system.diagonal + 2 * l2
    with np.errstate(divide="ignore"):
        inv_diag = np.where(diag > 0, 1.0 / np.where(diag > 0, diag, 1.0), 1.0)
    eta = float(np.max(np.abs(g) * inv_diag))
    rtol = min(1e-2, max(1e-12, eta, 1e-3 * tol / eta if eta > 0 else 1.0))
    scale = float(np.max(np.abs(g))) or 1.0  # solve for d/scale: the residual norms stay in range

    def matvec(x):
        return system.times(x) + 2 * l2 * x

    return _pcg(matvec, g / scale, inv_diag, rtol=rtol, maxiter=max(100, 2 * len(g)), gauge=l2 == 0) * scale


def _mm(data: _Rankings, tol, max_iter):
    """Hunter (2004), §5: γ_i ← W_i / Σ_r Σ_{k: i in stage k's set} 1 / Σ_{j≥k} γ_{y_j}, γ = e^θ, with W_i the
    (weighted) number of stages at which i was chosen. Linear convergence."""
    n = data.n
    wins = np.zeros(n)
    for _, R, w in data.groups:
        wins += np.bincount(R[:, :-1].ravel(), np.repeat(w, R.shape[1] - 1), n)
    log_wins = np.log(wins)
    theta = np.zeros(n)
    converged, it = False, 0
    while it < max_iter:
        it += 1
        denom = np.zeros(n)
        for _, R, w in data.groups:
            c1 = _cum_inv(_suffix_lse(theta[R]))  # log Σ_{stages containing the item} 1/S_k
            denom += np.bincount(R.ravel(), (w[:, None] * np.exp(c1)).ravel(), n)
        new = log_wins - np.log(denom)
        new -= new.mean()
        change = float(np.max(np.abs(new - theta)))
        theta = new
        if change < tol:
            converged = True
            break
    return theta, it, converged


def fit_plackett_luce(rankings, n_items=None, *, weights=None, l2=0.0, method="newton", tol=1e-10,
                      max_iter=None) -> PlackettLuceFit:
    """Maximum-likelihood (or MAP) Plackett-Luce strengths from rankings of any lengths ≥ 2.

    Maximises ℓ(θ) − l2·‖θ‖² with ℓ(θ) = Σ_r w_r Σ_{k<L_r} [θ_{y_k} − log Σ_{j≥k} exp(θ_{y_j})].

    Parameters
    ----------
    rankings : (m, L) int array, or a list of item sequences of any lengths ≥ 2 (ragged), best first. A
        ranking ranks the items it lists (see the module docstring). With every ranking of length 2 the
        model, and this fit, is Bradley-Terry (:func:`prefkit.fit_bradley_terry`).
    n_items : int, optional; default max id + 1.
    weights : (m,) non-negative counts, may be fractional.
    l2 : float ≥ 0, the penalty: the MAP under θ_i ~ N(0, 1/(2·l2)) i.i.d.
    method : "newton" (default) or "mm".

        * newton: damped Newton on the exact Hessian Σ_r Σ_k [diag(p_k) − p_k p_kᵀ], never formed: each step
          solves the Newton system by Jacobi-preconditioned conjugate gradients on Hessian-vector products,
          O(m·L) work and memory each, without a loop over rankings (inexact far from the optimum);
          backtracking line search. Quadratic convergence.
        * mm: Hunter (2004), "MM algorithms for generalized Bradley-Terry models", Ann. Statist. 32, §5. Linear
          convergence; l2 must be 0.

    tol : float > 0. Newton: converged when the largest change of a strength in one step is below tol. MM: when
        the largest change in one sweep is below tol (its distance to the optimum can be larger than tol).
    max_iter : default 100 (newton) or 100_000 (mm).

    Returns
    -------
    PlackettLuceFit with ``.strengths`` (mean 0), ``.covariance``, ``.stderr``, ``.log_likelihood``,
    ``.converged``.

    Raises
    ------
    ValueError
        On malformed input (naming the argument) and, with l2 == 0, when the MLE does not exist: the directed
        graph "ranked above" is not strongly connected (Hunter 2004, Assumption 1). The message names a group
        of items never ranked below (or never above) an item outside it.
    """
    data = _prepare(rankings, n_items, weights)
    l2 = check_real(l2, "l2", lo=0.0)
    # scale-free in the weights: fit the counts divided by the largest (no overflow or underflow of sums)
    top = max(float(w.max()) for _, _, w in data.groups)
    scale = top if top > 0 else 1.0
    data = _Rankings(data.n, data.m, [(rows, R, w / scale) for rows, R, w in data.groups])
    l2_unit = l2 / scale
    if not np.isfinite(l2_unit):
        raise ValueError(f"l2={l2!r} is too large next to weights of at most {scale!r}: l2/max(weights) overflows")
    if method not in ("newton", "mm"):
        raise ValueError(f"method must be 'newton' or 'mm', got {method!r}")
    if method == "mm" and l2 > 0:
        raise ValueError("method='mm' fits the MLE only (l2 must be 0); use method='newton' for l2 > 0")
    tol = check_real(tol, "tol", lo=0.0, lo_open=True)
    max_iter = check_int(100 if method == "newton" else 100_000, "max_iter", 1) if max_iter is None else \
        check_int(max_iter, "max_iter", 1)
    if l2 == 0:
        pairs, w = _pairs_above(data)
        pairs = pairs[w > 0]  # which pairs occur is all that matters: unweighted, aggregated by a sort
        del w
        if data.n < 2**31:
            pairs = pairs.astype(np.int32)
        obstruction = _obstruction(_aggregate(pairs, data.n, None, None))
        if obstruction is None:
            del pairs  # not kept through the fit
        else:
            group, kind = obstruction
            head = ("the maximum-likelihood estimate does not exist: the directed graph 'ranked above' is not "
                    "strongly connected (Hunter 2004, Assumption 1). ")
            tail = " Add rankings, or pass l2 > 0 for a finite MAP estimate."
            seen = np.zeros(data.n, dtype=bool)
            seen[pairs.ravel()] = True
            if not np.any(seen[group]):
                raise ValueError(head + f"Item(s) {_group_str(group)} appear in no ranking of positive weight, "
                                 "so their strengths are not determined." + tail)
            where = "below" if kind == "never lost" else "above"
            way = "+" if kind == "never lost" else "−"
            who = f"Items {_group_str(group)} were" if len(group) > 1 else f"Item {group[0]} was"
            raise ValueError(head + f"{who} never ranked {where} an item outside the group, so "
                             f"{'their strengths run' if len(group) > 1 else 'its strength runs'} off to "
                             f"{way}infinity." + tail)
    if data.n == 1:
        theta, it, conv = np.zeros(1), 0, True
    elif method == "newton":
        theta, it, conv = _newton(data, l2_unit, tol, max_iter)
    else:
        theta, it, conv = _mm(data, tol, max_iter)
    if l2 == 0:
        theta = theta - theta.mean()
    ll = _objective(theta, data, 0.0)
    return PlackettLuceFit(theta, ll, it, conv, method, l2, data, scale)


# ------------------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------------------
def sample_rankings(strengths, n, rng, *, length=None) -> np.ndarray:
    """n Plackett-Luce rankings, best first, each of ``length`` items drawn uniformly without replacement.

    The Gumbel trick: ordering θ_i + G_i with G_i i.i.d. standard Gumbel from largest to smallest gives a
    ranking with exactly the Plackett-Luce distribution (Yellott 1977), so no loop over stages is needed.

    Parameters
    ----------
    strengths : (n_items,) θ, n_items ≥ 2.
    n : number of rankings ≥ 0.
    rng : numpy Generator, or an integer seed of ``np.random.default_rng``.
    length : int in [2, n_items]; default n_items (full rankings).

    Returns
    -------
    (n, length) int64 array of item ids, best first.
    """
    theta = as_float_array(strengths, "strengths", ndim=1)
    k = len(theta)
    if k < 2:
        raise ValueError("strengths must have at least 2 items")
    n = check_int(n, "n", 0)
    rng = check_seed(rng, "rng")
    length = k if length is None else check_int(length, "length", 2)
    if length > k:
        raise ValueError(f"length must be <= the number of items {k}, got {length}")
    if length == k:
        items = np.broadcast_to(np.arange(k), (n, k))
    elif n * k <= _SUBSET_SORT_MAX:
        items = np.argsort(rng.random((n, k)), axis=1)[:, :length]  # uniform subsets
    else:
        items = _uniform_subsets(k, length, n, rng)
    keys = theta[items] + rng.gumbel(size=items.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1).astype(np.int64)


_SUBSET_SORT_MAX = 1 << 24  # up to n·n_items = 16M, subsets come from sorting an (n, n_items) uniform array


def _uniform_subsets(k, length, n, rng, block=1 << 16):
    """n uniform random subsets of ``length`` out of k items, (n, length), in O(n·length) memory and time.

    Used where sorting an (n, k) uniform array (each row's first ``length`` indices: a uniform subset) would
    need n·k numbers — 75 GB for a million rankings of 10,000 items. Rows are drawn in blocks: ``length``
    uniform items each, redrawn while a row repeats an item (rejection: each accepted row is a uniform
    ordered draw without replacement; few redraws when length² ≪ k), or, where length² > k/4, by sorting a
    (block, k) uniform array. Seeded by ``rng``; a different stream of draws from the sorting path, which
    :func:`sample_rankings` keeps for n·k ≤ 16M so that its results there do not change.
    """
    out = np.empty((n, length), dtype=np.int64)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        if length * length * 4 <= k:
            rows = rng.integers(0, k, size=(hi - lo, length))
            while True:
                s = np.sort(rows, axis=1)
                bad = np.flatnonzero(np.any(s[:, 1:] == s[:, :-1], axis=1))
                if len(bad) == 0:
                    break
                rows[bad] = rng.integers(0, k, size=(len(bad), length))
        else:
            rows = np.argsort(rng.random((hi - lo, k)), axis=1)[:, :length]
        out[lo:hi] = rows
    return out


def all_rankings(n_items: int, length: int) -> np.ndarray:
    """Every ordered tuple of ``length`` distinct items out of ``n_items``: (n!/(n−length)!, length) int64."""
    n_items, length = check_int(n_items, "n_items", 2), check_int(length, "length", 2)
    if length > n_items:
        raise ValueError(f"length must be <= n_items={n_items}, got {length}")
    return np.array(list(itertools.permutations(range(n_items), length)), dtype=np.int64)

