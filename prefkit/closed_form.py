"""The KL-regularised objective and its closed-form maximiser (chapter 2).

For one prompt x, classical RLHF's step 2 maximises

    J(π) = E_{y∼π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)).

Its maximiser is the Gibbs policy π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x), with
Z(x) = Σ_y π_ref(y|x)·exp(r(x, y)/β), and the maximum is β·log Z(x) (the Gibbs variational principle; Rafailov
et al. 2023, "Direct Preference Optimization", Appendix A.1). For any π, J(π) = β·log Z(x) − β·KL(π ‖ π*).

Conventions
-----------
* Arrays put responses on the last axis: ``pi_ref[x, y]``, ``reward[x, y]``. Any number of leading axes is
  allowed (a single prompt may be a 1-d array); results keep the leading axes.
* Everything is computed in log space in float64: ``log_Z`` with logsumexp (shifted by the largest r/β on
  π_ref's support), π* as ``π_ref·exp(r/β − max) / Σ``. Results are finite for |r/β| up to 1e6 and beyond.
* **dtype**: :func:`optimal_policy`, :func:`optimal_log_policy` and :func:`implied_reward` return float32 when
  both array arguments are float32 (torch float32/bfloat16 tensors included) and float64 otherwise;
  :func:`log_partition` always returns float64 (one number per prompt, of the size of r/β: in float32,
  log Z = 10⁶ + log ⅓ would be off by up to 0.03). With float32 inputs, r/β is shifted by the row's maximum
  before anything is added to it, so r/β = 1e6 keeps log π_ref's digits: in float64 for π* and log Z
  (r/β − m), in float32 for log π* ((r − max r)/β, the difference first); log Z is computed wholly in
  float64. Only the steps whose result is of the size of one float32 (exp(z) ≤ 1, the product with π_ref, the
  normalisation; log π_ref + z − log Σ; π/π_ref, its log, β·) run in float32. The results are those of
  float64 for the float32 numbers given, to within a few float32 roundings (see each function). These four
  functions process rows in chunks, so their temporaries are bounded by the chunk, not by the input: memory
  is the output plus O(chunk). The other functions compute and return float64.
* **Where π_ref(y|x) = 0, π*(y|x) = 0** for every reward: the reward there is ignored (it must still be
  finite). Likewise the implied reward is −inf off π_ref's support, and ``kl_divergence(p, q)`` is +inf
  exactly when p puts mass where q has none.
* Bad input raises ``ValueError`` naming the argument: β ≤ 0 (or not finite), a π_ref row that is not a
  distribution, negative probabilities, a shape mismatch, NaN or inf rewards, and r/β overflowing float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._validate import (
    as_float_array,
    as_real_array,
    check_beta,
    check_distribution,
    check_same_shape,
    mean_value,
)

__all__ = [
    "optimal_policy",
    "optimal_log_policy",
    "log_partition",
    "implied_reward",
    "kl_divergence",
    "kl_divergence_logspace",
    "kl_regularized_objective",
    "argmax_policy",
    "reward_gap_up_to_shift",
    "rewards_from_preference_probabilities",
    "reward_kl_frontier",
]


def _log(p: np.ndarray) -> np.ndarray:
    """log p with log 0 = −inf, without a warning."""
    with np.errstate(divide="ignore"):
        return np.log(p)


def _check_inputs(pi_ref, reward, beta):
    b = check_beta(beta)
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    with np.errstate(over="ignore"):
        scaled = r / b
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"reward/beta overflows float64 (beta={b!r}); rescale reward or increase beta")
    return p, r, b, scaled


def _shifted_logits(p: np.ndarray, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log π_ref + r/β − m(x), m(x)) with m(x) = max of r/β over π_ref's support; −inf off the support.

    Subtracting m(x) first (allowed: π* is invariant to a per-prompt shift of r) keeps log π_ref from being
    absorbed by round-off when |r/β| is huge compared with it.
    """
    on = p > 0
    m = np.max(np.where(on, scaled, -np.inf), axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = np.where(on, _log(p) + (scaled - m), -np.inf)
    return logits, m


# ------------------------------------------------------------------------- row chunks (memory and dtype)

#: Rows are processed in chunks of about this many entries (a whole number of rows, at least one), so that the
#: temporaries stay in cache and their size is bounded whatever the size of the input. Tests lower it.
_CHUNK_ENTRIES = 1 << 18


def _as_real_array(x, name: str) -> np.ndarray:
    """``x`` as a real array *without* converting it to float64 (the chunks convert as they go).

    The same refusals as :func:`prefkit._validate.as_float_array` (None, ragged, complex, non-numbers, 0-d).
    """
    a = as_real_array(x, name)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    return a


def _chunk_inputs(beta, a, c, name_a, name_c):
    """The shared start of the chunked functions: (β, a and c as 2-D rows, output dtype, leading shape, n).

    β checked; a and c real arrays of the same shape (not yet float64: the chunks convert as they go).
    """
    b = check_beta(beta)
    a = _as_real_array(a, name_a)
    c = _as_real_array(c, name_c)
    check_same_shape(a, c, name_a, name_c)
    return b, _rows(a), _rows(c), _out_dtype(a, c), a.shape[:-1], a.shape[-1]


def _out_dtype(*arrays: np.ndarray) -> type:
    """float32 when every array is float32 (the caller asked for single precision), float64 otherwise."""
    return np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as (n_rows, n_responses): a view, except for a non-contiguous array of 3 or more dimensions."""
    return a.reshape(1, -1) if a.ndim == 1 else a if a.ndim == 2 else a.reshape(-1, a.shape[-1])


def _chunk(a: np.ndarray) -> np.ndarray:
    """A chunk as float32 or float64 (ints, bools, float16 and long double are converted, chunk by chunk)."""
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _row_slices(n_rows: int, n_cols: int):
    step = max(1, _CHUNK_ENTRIES // max(n_cols, 1))
    return step, [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


_F32_MAX = float(np.finfo(np.float32).max)


def _check_rows(p: np.ndarray, name: str, row0: int, lead: tuple, atol: float = 1e-6,
                negatives: bool = True) -> np.ndarray | None:
    """Each row of the chunk ``p`` (rows ``row0``…) a distribution, as :func:`check_distribution`; returns the
    smallest entry of each row. With ``negatives=False`` the usual case skips the min and returns None: the
    caller finds negative entries another way (:func:`_implied_reward_chunks`: from the log of the ratio).

    One sum and one min per row instead of boolean masks: NaN or ±inf make the sum non-finite, a negative entry
    makes the min negative. float32 rows are summed in float32 (numpy's pairwise sum, error ~1e-7 on rows of
    10⁵ entries), and the rows that look more than atol/2 away from 1 summed again in float64 for the verdict.
    """
    s = p.sum(axis=-1)
    lo = p.min(axis=-1) if negatives and p.size else None
    if p.size and np.abs(s - 1.0).max() <= atol / 2 and (lo is None or lo.min() >= 0):  # the usual case
        return lo  # (NaN makes the max NaN and fails the test: such chunks go the long way below)
    if lo is None:
        lo = p.min(axis=-1) if p.size else np.zeros(p.shape[0], dtype=p.dtype)
    s = s.astype(np.float64)
    if p.dtype != np.float64:
        again = np.flatnonzero(~(np.abs(s - 1.0) <= atol / 2))
        if again.size:
            s[again] = p[again].sum(axis=-1, dtype=np.float64)
    if not np.all(np.isfinite(s)) and not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(lo < 0):
        raise ValueError(f"{name} has negative probabilities")
    bad = np.flatnonzero(~(np.abs(s - 1.0) <= atol))
    if bad.size:
        i = bad[0]
        idx = np.unravel_index(row0 + i, lead) if lead else (0,)
        raise ValueError(f"{name} is not a distribution: row {tuple(int(k) for k in idx)} sums to {s[i]:.6g}, "
                         f"not 1")
    return lo


def _check_reward(r: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    """(each row's largest reward, the chunk's smallest reward); raises unless every r and r/β is finite. Read
    in the input dtype: NaN makes min and max NaN, and r/β overflows somewhere exactly when the largest |r|
    over β does (dividing by β > 0 is monotone, and so is rounding)."""
    top = r.max(axis=-1) if r.size else np.zeros(r.shape[0], dtype=r.dtype)
    hi, lo = (float(top.max()), float(r.min())) if r.size else (0.0, 0.0)
    if not (np.isfinite(hi) and np.isfinite(lo)):
        raise ValueError("reward contains NaN or inf")
    with np.errstate(over="ignore"):
        if not np.isfinite(max(hi, -lo) / b):
            raise ValueError(f"reward/beta overflows float64 (beta={b!r}); rescale reward or increase beta")
    return top, lo


def _redo_by_logsumexp(p_row: np.ndarray, r_row: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    """(log π*(·|x), log Z(x)) of one row by logsumexp over log π_ref + r/β − m(x): the rare rows whose terms
    π_ref·exp(r/β − m(x)) all underflow (π_ref tiny where r/β is largest)."""
    logits, m = _shifted_logits(p_row.astype(np.float64), np.divide(r_row, b, dtype=np.float64))
    lse = logsumexp(logits)
    return logits - lse, float(lse + m[0])


def _gibbs_chunks(pi_ref, reward, beta, want_policy: bool):
    """The shared loop of :func:`optimal_policy` and :func:`log_partition`, one chunk of rows at a time.

    Per chunk: z = r/β and m(x) = max of z over π_ref's support, in float64 whatever the input dtype; then
    e = π_ref·exp(z − m(x)) (multiplying by π_ref rather than adding log π_ref: one transcendental per entry,
    and exp(z − m) ≤ 1 cannot overflow) and Z(x)·exp(−m(x)) = Σ_y e (row sums in float64). e is computed in
    float64, except for π* of float32 inputs, where exp, the product and the division run in float32 on the
    float64 z − m(x). Rows whose sum underflows are redone by logsumexp (:func:`_redo_by_logsumexp`).
    """
    b, p2, r2, dtype, lead, n = _chunk_inputs(beta, pi_ref, reward, "pi_ref", "reward")
    n_rows = p2.shape[0]
    out = np.empty((n_rows, n), dtype=dtype) if want_policy else np.empty(n_rows)  # log Z: always float64
    step, slices = _row_slices(n_rows, n)
    direct = want_policy and dtype == np.float64  # work in the output itself
    buf = None if direct else np.empty(min(step, n_rows) * n)
    for s in slices:
        pc, rc = _chunk(p2[s]), _chunk(r2[s])
        lo = _check_rows(pc, "pi_ref", s.start, lead)
        top = _check_reward(rc, b)[0]
        z = out[s] if direct else buf[: pc.size].reshape(pc.shape)  # (rows, n) float64
        np.divide(rc, b, out=z, dtype=np.float64)
        if np.any(lo == 0):  # some π_ref(y|x) = 0: off the support, π* = 0 whatever r
            z[pc <= 0] = -np.inf
            m = z.max(axis=-1, keepdims=True)  # max of r/β over π_ref's support
        else:
            m = np.divide(top, b, dtype=np.float64)[:, None]  # = max of r/β: rounding is monotone
        z -= m  # r/β − m(x) ≤ 0, exact to float64 rounding however large r/β is
        if want_policy and not direct:  # float32: e = π_ref·exp(z − m) in float32, straight into the output
            e = out[s]
            with np.errstate(over="ignore"):  # z ≤ 0: only the cast of z < −3.4e38 to float32 overflows, to −inf
                np.exp(z, out=e, dtype=np.float32)
            e *= pc
            tiny = 1e-28  # the largest term is then still a normal float32
        else:
            e = z
            np.exp(e, out=e)  # exp(r/β − m(x)) ∈ [0, 1]
            np.multiply(e, pc, out=e, dtype=np.float64)  # π_ref·exp(r/β − m(x))
            tiny = 1e-280
        total = e.sum(axis=-1, dtype=np.float64)  # Z(x)·exp(−m(x)) ≥ π_ref(argmax)·1
        low = np.flatnonzero(total < tiny)  # rare: every term underflowed or lost digits
        if want_policy:
            with np.errstate(divide="ignore", invalid="ignore"):  # rows in `low` may divide by 0: redone below
                e /= total.astype(e.dtype)[:, None]
            for i in low:
                e[i] = np.exp(_redo_by_logsumexp(pc[i], rc[i], b)[0])
        else:
            with np.errstate(divide="ignore"):
                log_Z = np.log(total) + m[:, 0]
            for i in low:
                log_Z[i] = _redo_by_logsumexp(pc[i], rc[i], b)[1]
            out[s] = log_Z
    return out.reshape((*lead, n) if want_policy else lead)


def _log_policy_chunks(pi_ref, reward, beta):
    """log π* = log π_ref + z − log Σ_y π_ref·exp(z), z = r/β − m(x), one chunk of rows at a time.

    m(x) is the largest r/β on π_ref's support, so z ≤ 0 and exp(z) ≤ 1. float64 output: z = r/β − m(x) in
    float64, in the output itself; e = π_ref·exp(z) in a chunk buffer, then log π_ref in the same buffer.
    float32 output (both inputs float32): z = (r − max r)/β in float32 (the difference first, so a huge r/β
    keeps log π_ref's digits), e in the output, which then receives log π_ref + z − log Σ e. Row sums in
    float64. Rows whose sum underflows are redone by logsumexp (:func:`_redo_by_logsumexp`), and so are float32
    rows where r − max r overflows float32.
    """
    b, p2, r2, dtype, lead, n = _chunk_inputs(beta, pi_ref, reward, "pi_ref", "reward")
    n_rows = p2.shape[0]
    out = np.empty((n_rows, n), dtype=dtype)
    step, slices = _row_slices(n_rows, n)
    single = dtype == np.float32
    buf = np.empty(min(step, n_rows) * n, dtype=dtype)  # e (float64) or z (float32)
    tiny = 1e-28 if single else 1e-280  # a row's largest term π_ref(argmax)·1 below this: redo the row
    for s in slices:
        pc, rc = _chunk(p2[s]), _chunk(r2[s])
        lo = _check_rows(pc, "pi_ref", s.start, lead)
        top, r_min = _check_reward(rc, b)
        o = out[s]
        t = buf[: pc.size].reshape(pc.shape)
        z, e = (t, o) if single else (o, t)
        support = np.any(lo == 0)  # some π_ref(y|x) = 0: off the support, log π* = −inf whatever r
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if support:  # the largest r on π_ref's support
                top = np.max(rc, axis=-1, where=pc > 0, initial=-np.inf)
            redo = ()
            if single:  # r − max r ≤ 0 first, rounded relative to its own size; then /β
                np.subtract(rc, top[:, None], out=z)
                z /= b
                if float(top.max()) - r_min > _F32_MAX:  # rare: r − max r overflowed float32 somewhere
                    redo = np.flatnonzero(top.astype(np.float64) - rc.min(axis=-1) > _F32_MAX)
            else:  # r/β − m(x), m(x) = fl(max r / β) = max of fl(r/β) (rounding is monotone)
                np.divide(rc, b, out=z, dtype=np.float64)
                z -= np.divide(top, b, dtype=np.float64)[:, None]
            if support:
                z[pc <= 0] = -np.inf
            np.exp(z, out=e)  # exp(z) ∈ [0, 1]
            np.multiply(e, pc, out=e, dtype=e.dtype)  # π_ref·exp(z)
            total = e.sum(axis=-1, dtype=np.float64)  # Z(x)·exp(−m(x)) ≥ π_ref(argmax)·1
            log_total = np.log(total)
            if z is o:  # float64: log π* = z + log π_ref − log Σ e, in the output
                np.log(pc, out=e, dtype=np.float64)
                o += e
            else:  # float32: the output held e; now log π_ref + z
                np.log(pc, out=o)
                o += z
            o -= log_total.astype(dtype)[:, None]
        for i in np.union1d(np.flatnonzero(~(total >= tiny)), redo).astype(np.intp):
            with np.errstate(over="ignore"):  # float32 output: a log-prob below −3.4e38 saturates to −inf
                o[i] = _redo_by_logsumexp(pc[i], rc[i], b)[0]
    return out.reshape((*lead, n))


def _implied_reward_chunks(pi, pi_ref, beta):
    """β·log(π/π_ref) chunk by chunk: one log of the ratio per entry (more accurate than log π − log π_ref,
    whose two roundings are each relative to |log π|), in the output dtype; −inf where π = 0. Rows where
    π_ref is so small (< 1e-300, or < 1e-30 in float32) that the ratio could overflow are redone as
    log π − log π_ref in float64.

    Checks per chunk: row sums of π and π_ref, row min of π_ref (≥ 0; zeros; tiny values). π ≥ 0 is read off
    the log: π_ref ≥ 0 being checked, π < 0 makes π/π_ref < 0 or −inf, and log of that raises numpy's invalid
    flag (log 0, log of NaN and log of −0.0 do not), so π is searched for a negative entry only then. The
    error precedence is that of check_distribution(pi) then check_distribution(pi_ref)."""
    b, p2, q2, dtype, lead, n = _chunk_inputs(beta, pi, pi_ref, "pi", "pi_ref")
    n_rows = p2.shape[0]
    out = np.empty((n_rows, n), dtype=dtype)
    lim = float(np.finfo(dtype).max)
    big = lim / 800.0  # |log(π/π_ref)| < 800 for any two positive float64 numbers: no overflow below
    q_min = 1e-300 if dtype == np.float64 else 1e-30  # π/π_ref ≤ 1/q_min cannot overflow
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in _row_slices(n_rows, n)[1]:
            pc, qc = _chunk(p2[s]), _chunk(q2[s])
            _check_rows(pc, "pi", s.start, lead, negatives=False)  # π ≥ 0: from the log below
            try:
                q_lo = _check_rows(qc, "pi_ref", s.start, lead)  # smallest π_ref per row
            except ValueError:
                _no_negatives(pc, "pi")  # π's errors first, as check_distribution(pi) then (pi_ref)
                raise
            rare = q_lo.min() < q_min  # zeros in π_ref, or a π_ref so small that π/π_ref may overflow
            zeros = np.flatnonzero(q_lo == 0) if rare else ()
            if len(zeros) and np.any((pc[zeros] > 0) & (qc[zeros] == 0)):
                _no_negatives(pc, "pi")
                raise ValueError("pi puts mass where pi_ref is 0: the implied reward there is +inf")
            z = out[s]  # (rows, n), the output dtype
            np.divide(pc, qc, out=z, dtype=dtype)
            try:
                with np.errstate(invalid="raise"):
                    np.log(z, out=z)  # log 0 = −inf where π = 0; NaN where π = π_ref = 0
            except FloatingPointError:  # the log of a ratio < 0 (out is written): π < 0, since π_ref ≥ 0
                _no_negatives(pc, "pi")
            for i in zeros:  # smallest π_ref on the support
                q_lo[i] = np.min(qc[i], where=qc[i] > 0, initial=np.inf)
                z[i, pc[i] == 0] = -np.inf
            for i in np.flatnonzero(q_lo < q_min) if rare else ():  # π/π_ref may have overflowed
                z[i] = np.log(pc[i], dtype=np.float64) - np.log(qc[i], dtype=np.float64)
                z[i, pc[i] == 0] = -np.inf
            _scale_by_beta(z, pc, b, big, lim, dtype)
    return out.reshape((*lead, n))


def _no_negatives(p: np.ndarray, name: str) -> None:
    """The ValueError of check_distribution for a negative entry, if ``p`` has one."""
    if p.size and p.min() < 0:
        raise ValueError(f"{name} has negative probabilities")


def _scale_by_beta(z: np.ndarray, pc: np.ndarray, b: float, big: float, lim: float, dtype) -> None:
    """z ← β·z in place; a ValueError naming beta if that overflows the output dtype where π > 0."""
    if b > big:  # β·log(π/π_ref) may overflow the output dtype: multiply in float64 and look
        w = z.astype(np.float64) * b
        if np.any((np.abs(w) > lim) & (pc > 0)):
            raise ValueError(f"beta*log(pi/pi_ref) overflows {np.dtype(dtype).name} (beta={b!r})")
        z[...] = w
    else:
        z *= b


def log_partition(pi_ref, reward, beta) -> np.ndarray:
    """log Z(x) = log Σ_y π_ref(y|x)·exp(r(x, y)/β), by logsumexp over π_ref's support.

    Computed as log Z(x) = m(x) + log Σ_y π_ref(y|x)·exp(r(x, y)/β − m(x)), with m(x) the largest r/β on π_ref's
    support, so nothing overflows and r/β = 1e6 keeps every digit of log π_ref.

    Parameters
    ----------
    pi_ref : (..., n_responses) array, each row a distribution
    reward : (..., n_responses) array of finite rewards r(x, y)
    beta : float > 0

    Returns
    -------
    log_Z : (...) float64 array, whatever the input dtype: one number per prompt costs no memory, and log Z is
        of the size of r/β, where float32 would keep no digit of log π_ref (at r/β = 1e6 its spacing is
        0.0625). β·log_Z is the maximum of the KL-regularised objective (the Gibbs identity, Rafailov et al.
        2023, App. A.1).

    Raises
    ------
    ValueError
        naming ``beta``, ``pi_ref`` or ``reward`` (see the module docstring).

    Memory: the (...) output and chunk-sized float64 temporaries (``_CHUNK_ENTRIES`` entries, a whole number of
    rows): no temporary the size of the input. float32 inputs are read in float32 and computed in float64.
    """
    return _gibbs_chunks(pi_ref, reward, beta, want_policy=False)


def optimal_log_policy(pi_ref, reward, beta) -> np.ndarray:
    """log π*(y|x) = log π_ref(y|x) + r(x, y)/β − log Z(x); −inf where π_ref(y|x) = 0.

    The log of the Gibbs policy (Rafailov et al. 2023, Eq. 4 and Appendix A.1). Shapes, dtypes and errors as
    :func:`optimal_policy`. Use this rather than ``log(optimal_policy(...))`` when π* has entries that
    underflow (small β): here they stay finite (r/β = 1e6 gives log π* ≈ −1e6, not −inf).

    Notes
    -----
    Computed row chunk by row chunk as log π* = log π_ref + z − log Σ_y π_ref·exp(z), with z = r/β − m(x) ≤ 0
    and m(x) the largest r/β on π_ref's support: exp(z) ≤ 1 cannot overflow, and the shift comes before
    log π_ref is added, so a huge r/β (1e6) cannot absorb its digits. float64: z = r/β − m(x) (an error of a
    few roundings of r/β: 2e-10 at r/β = 1e6). float32 inputs: z = (r − max r)/β, all in float32 (r − max r is
    rounded relative to its own size), exp, the product and log π_ref in float32, the row sums in float64;
    each entry is within 2^-24·(2|z| + 2|log π_ref| + 2|log π*| + 12) of the float64 log π* of the same float32
    numbers (the test checks this bound). Rows where every term π_ref·exp(z) underflows (π_ref tiny where r/β
    is largest), and float32 rows where r − max r overflows float32, are redone by logsumexp in float64.

    Memory: the output and chunk-sized temporaries (``_CHUNK_ENTRIES`` entries, a whole number of rows: one
    chunk buffer of the output dtype): no temporary the size of the input. Inputs other than float32/float64
    are converted chunk by chunk, as in :func:`optimal_policy`.
    """
    return _log_policy_chunks(pi_ref, reward, beta)


def optimal_policy(pi_ref, reward, beta) -> np.ndarray:
    """The maximiser of E_π[r] − β·KL(π‖π_ref): π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x).

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses) array (any leading shape; responses on the last axis)
        Each row a probability distribution. π* is 0 wherever π_ref is 0.
    reward : array of the same shape, finite
    beta : float > 0

    Returns
    -------
    pi_star : array of the same shape; each row sums to 1. float32 when both ``pi_ref`` and ``reward`` are
        float32, float64 otherwise.

    Raises
    ------
    ValueError
        naming ``beta`` (≤ 0, not finite, or r/β overflows float64), ``pi_ref`` (negative entries, a row that is
        not a distribution, NaN) or ``reward`` (NaN/inf, shape mismatch).

    References
    ----------
    Rafailov et al. 2023, "Direct Preference Optimization", Eq. 4 and Appendix A.1.

    Notes
    -----
    Computed row chunk by row chunk as π_ref(y|x)·exp(r/β − m(x)) / Σ_y(...), with m(x) the largest r/β on
    π_ref's support: exp never overflows, and a huge r/β (1e6) cannot absorb π_ref's digits (multiplying by
    π_ref after the exp, rather than adding log π_ref before it, also saves one transcendental per entry).
    float32 inputs: r/β − m(x) is computed in float64, then exp, the product with π_ref and the division by
    the row sum (accumulated in float64) in float32, so each entry is within a relative 2^-24·(6 + |r/β −
    m(x)|) of the float64 π* of the same float32 numbers: a few ulps for the entries that carry the mass (the
    test checks this bound); entries below float32's smallest subnormal, 1.4e-45, become 0 (use
    :func:`optimal_log_policy` for those). Rows where every term underflows or is subnormal (π_ref tiny where
    r/β is largest) are redone by logsumexp in float64.

    Memory: the output and chunk-sized temporaries (``_CHUNK_ENTRIES`` entries, a whole number of rows; for
    float32 inputs one float64 chunk buffer): no temporary the size of the input. A single row is one chunk,
    so for one enormous row the temporaries are the size of that row. Inputs other than float32/float64
    (ints, float16) are converted chunk by chunk; a non-contiguous array of 3 or more dimensions is copied
    once by the reshape to rows.
    """
    return _gibbs_chunks(pi_ref, reward, beta, want_policy=True)


def implied_reward(pi, pi_ref, beta) -> np.ndarray:
    """The reward a policy implies: β·log(π(y|x)/π_ref(y|x)).

    For π = π*(r) this is r(x, y) − β·log Z(x): r up to the per-prompt constant β·log Z(x) (Rafailov et al.
    2023, Eq. 5). It is −inf where π(y|x) = 0 (including everywhere off π_ref's support), and finite
    elsewhere.

    Parameters
    ----------
    pi, pi_ref : (..., n_responses) arrays of distributions with the same shape
    beta : float > 0

    Returns
    -------
    reward : array of the same shape; float32 when both ``pi`` and ``pi_ref`` are float32, float64 otherwise.
        Computed row chunk by row chunk in the output dtype as β·log(π/π_ref): one rounding in the ratio, one
        in the log, one in β· (more accurate than β·(log π − log π_ref), whose two logs each round relative to
        |log π|); for float32, within 2^-24·(4·|result| + 2β) of the float64 value of the same numbers (the
        test checks this bound). A row where π_ref < 1e-300 somewhere (1e-30 in float32), so that the ratio
        could overflow, is redone as log π − log π_ref in float64.

    Raises
    ------
    ValueError
        naming ``beta``, ``pi`` or ``pi_ref``; also when π puts mass where π_ref has none (the ratio is
        infinite), and naming ``beta`` when β·log(π/π_ref) overflows the output dtype.

    Memory: the output, computed in place (no chunk buffer; small temporaries only for the rare rows with
    zeros or values below 1e-300, 1e-30 in float32, in π_ref). The checks add three reductions per chunk
    while it is in cache: a row sum of π and of π_ref and a row min of π_ref. A negative π needs no min of its
    own: with π_ref ≥ 0 it makes a ratio < 0 (or −inf), whose log raises the invalid-operation flag, and only
    then is π searched.
    """
    return _implied_reward_chunks(pi, pi_ref, beta)


def kl_divergence(p, q) -> np.ndarray:
    """KL(p ‖ q) = Σ_y p(y)·log(p(y)/q(y)) along the last axis, one value per row.

    Terms with p(y) = 0 contribute 0. The result is +inf exactly when p puts mass where q is 0 (the value of
    the divergence, not an error); otherwise it is finite and ≥ 0 (clipped at 0 against round-off).

    Parameters
    ----------
    p, q : (..., n_responses) arrays, each row a distribution

    Returns
    -------
    kl : (...) float64 array

    Raises
    ------
    ValueError
        naming ``p`` or ``q``: negative entries, a row that is not a distribution, NaN/inf, shape mismatch.
    """
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    check_same_shape(p, q, "p", "q")
    return kl_divergence_logspace(_log(p), _log(q))


def kl_divergence_logspace(logp, logq) -> np.ndarray:
    """KL(p ‖ q) = Σ_y p(y)·(log p(y) − log q(y)) from log-probabilities, along the last axis, per row.

    The one implementation behind :func:`kl_divergence`; use it directly when p or q has entries that
    underflow in ``exp`` (e.g. π* at small β, from :func:`optimal_log_policy`). ``logp`` = −inf marks p(y) = 0
    (the term is 0); the result is +inf when p(y) > 0 where ``logq`` = −inf; otherwise finite and clipped at 0
    against round-off. Inputs are not checked to be normalised (library-internal callers pass
    log-softmax outputs).

    Parameters
    ----------
    logp, logq : (..., n_responses) float arrays of the same shape (−inf allowed, NaN not)

    Returns
    -------
    kl : (...) float64 array
    """
    logp = as_float_array(logp, "logp", finite=False)
    logq = as_float_array(logq, "logq", finite=False)
    check_same_shape(logp, logq, "logp", "logq")
    if np.any(np.isnan(logp)) or np.any(np.isnan(logq)) or np.any(logp == np.inf) or np.any(logq == np.inf):
        raise ValueError("logp and logq must not contain NaN or +inf")
    on = np.isfinite(logp)
    p = np.exp(np.where(on, logp, -np.inf))
    with np.errstate(invalid="ignore"):
        terms = np.where(on, p * (np.where(on, logp, 0.0) - np.where(on, logq, 0.0)), 0.0)
    bad = on & ~np.isfinite(logq) & (p > 0)
    kl = terms.sum(axis=-1)
    kl = np.where(bad.any(axis=-1), np.inf, kl)
    return np.maximum(kl, 0.0)


def kl_regularized_objective(pi, pi_ref, reward, beta) -> np.ndarray:
    """J(π) = E_{y∼π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)), one value per prompt.

    Its maximum over π is β·log Z(x), attained at π* (:func:`optimal_policy`); for every π,
    J(π) = β·log Z(x) − β·KL(π‖π*). J is −inf when π puts mass where π_ref is 0.

    Parameters
    ----------
    pi, pi_ref, reward : (..., n_responses) arrays of the same shape (pi, pi_ref distributions; reward finite)
    beta : float > 0

    Returns
    -------
    J : (...) float64 array

    Raises
    ------
    ValueError
        naming ``beta``, ``pi``, ``pi_ref`` or ``reward``.

    References
    ----------
    Ouyang et al. 2022, Eq. 2 (without the pretraining term); Rafailov et al. 2023, Eq. 3.
    """
    b = check_beta(beta)
    p = check_distribution(pi, "pi")
    q = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, q, "pi", "pi_ref")
    check_same_shape(p, r, "pi", "reward")
    expected = np.sum(p * r, axis=-1)
    return expected - b * kl_divergence(p, q)


def argmax_policy(pi_ref, reward) -> np.ndarray:
    """The β → 0 limit of π*: π_ref restricted to the maximisers of r on π_ref's support, renormalised.

    π*(y) = π_ref(y)·exp((r(y) − max r)/β)/Σ(...) → π_ref(y)·1[y ∈ M]/π_ref(M), with M the set of maximisers
    (ties detected exactly, ``r == max``); with a unique maximiser this is the one-hot argmax. Shapes as
    :func:`optimal_policy`.
    """
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    check_same_shape(p, r, "pi_ref", "reward")
    masked = np.where(p > 0, r, -np.inf)
    best = np.where(masked == masked.max(axis=-1, keepdims=True), p, 0.0)
    return best / best.sum(axis=-1, keepdims=True)


def reward_gap_up_to_shift(reward, reward_true, pi_ref=None) -> float:
    """How far two rewards are from being equal up to a per-prompt shift f(x).

    Returns max over prompts x of [max_y d(x, y) − min_y d(x, y)] / 2 with d = reward − reward_true, taken
    over π_ref's support when ``pi_ref`` is given. This is min_f max_{x,y} |reward − reward_true − f(x)|: it
    is 0 exactly when the rewards differ by some f(x), i.e. when they give the same π* and the same
    Bradley-Terry probabilities (Rafailov et al. 2023, Lemma 1) — the only thing preferences can identify.

    This is the worst-case (max-norm) distance modulo f(x); :func:`prefkit.reward_model.reward_recovery_error`
    is the RMS distance modulo f(x) (the minimising f differs: mid-range here, mean there). Both are 0 on the
    same pairs of rewards; the RMS one is the natural summary of a fitted reward model, this one the bound to
    state for exact identities.
    """
    a = as_float_array(reward, "reward")
    b = as_float_array(reward_true, "reward_true")
    check_same_shape(a, b, "reward", "reward_true")
    d = a - b
    if pi_ref is not None:
        p = check_distribution(pi_ref, "pi_ref")
        check_same_shape(p, a, "pi_ref", "reward")
        hi = np.where(p > 0, d, -np.inf).max(axis=-1)
        lo = np.where(p > 0, d, np.inf).min(axis=-1)
    else:
        hi, lo = d.max(axis=-1), d.min(axis=-1)
    return float(np.max((hi - lo) / 2.0)) if d.size else 0.0


def rewards_from_preference_probabilities(prob_beats_first) -> np.ndarray:
    """Rebuild a reward from Bradley-Terry probabilities: r̂(x, y) = logit P(y ≻ y_0 | x).

    Under BT, P(y ≻ y_0 | x) = σ(r(x, y) − r(x, y_0)), so logit P = r(x, y) − r(x, y_0): the preference
    probabilities against one reference response y_0 pin r down up to the per-prompt shift f(x) = −r(x, y_0)
    (the converse of Rafailov et al. 2023, Lemma 1).

    Parameters
    ----------
    prob_beats_first : (..., n_responses) array of P(y ≻ y_0 | x), each strictly in (0, 1)

    Returns
    -------
    r_hat : array of the same shape (r̂(x, y_0) = logit(1/2) = 0)
    """
    from scipy.special import logit

    P = as_float_array(prob_beats_first, "prob_beats_first")
    if np.any(P <= 0) or np.any(P >= 1):
        raise ValueError("prob_beats_first must lie strictly in (0, 1); the reward difference is infinite "
                         "otherwise")
    return logit(P)


def reward_kl_frontier(pi_ref, reward, betas) -> dict:
    """The exact reward–KL frontier traced by β: for each β, (KL(π*_β‖π_ref), E_{π*_β}[r]), averaged over
    prompts.

    π*_β maximises E[r] − β·KL, so no policy reaches a higher expected reward at the same KL: the curve is the
    Pareto frontier that every RL method's (KL, reward) point lies on or below.

    Parameters
    ----------
    pi_ref, reward : (n_prompts, n_responses) arrays
    betas : 1-d array of β > 0

    Returns
    -------
    dict with arrays ``beta``, ``kl``, ``reward`` (each of length len(betas)).
    """
    bs = as_float_array(betas, "betas", ndim=1, nonempty=True)
    for b in bs:
        check_beta(b, "betas")
    p = check_distribution(pi_ref, "pi_ref")
    r = as_float_array(reward, "reward")
    kls, rews = [], []
    for beta in bs:
        try:
            log_ps = optimal_log_policy(p, r, beta)
        except ValueError as exc:  # name the argument of this function
            raise ValueError(f"betas: {exc}") from None
        kls.append(mean_value(kl_divergence_logspace(log_ps, _log(p))))
        rews.append(mean_value(np.sum(np.exp(log_ps) * r, axis=-1)))
    return {"beta": bs, "kl": np.array(kls), "reward": np.array(rews)}
