"""Mutation run 7: closed_form's rare paths (logsumexp redo rows, mixed dtypes, off-support rewards), its
warnings, and the helpers that chapter 2's tests did not reach (reward_gap_up_to_shift over π_ref's support,
kl_divergence_logspace's checks, argmax_policy on 3-d input, _check_inputs). Tolerances are float64 roundings."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

import prefkit.closed_form as cf
from prefkit.closed_form import (
    argmax_policy,
    implied_reward,
    kl_divergence,
    kl_divergence_logspace,
    log_partition,
    optimal_log_policy,
    optimal_policy,
    reward_gap_up_to_shift,
    reward_kl_frontier,
    rewards_from_preference_probabilities,
)


def _ref_log_policy(p, r, beta):
    """log π* by scipy's logsumexp over π_ref's support (−inf off it)."""
    with np.errstate(divide="ignore"):
        logits = np.log(p) + r / beta
    return logits - logsumexp(logits, axis=-1, keepdims=True), logsumexp(logits, axis=-1)


def test_log_partition_redo_row_adds_the_shift_back():
    """π_ref = 1e-300 where r/β = 1000 is largest: every term π_ref·exp(r/β − m) is below 1e-280, so the row is
    redone by logsumexp, and log Z = lse + m = 1000 + log(1e-300 + e^-1000) ≈ 309.22. Bug caught (mutmut run 7):
    the redo returning lse − m (−1690.8), untested because no selected test reached that row for log Z."""
    p, r = np.array([1e-300, 1 - 1e-300]), np.array([1000.0, 0.0])
    want = _ref_log_policy(p, r, 1.0)[1]
    assert log_partition(p, r, 1.0) == pytest.approx(want, rel=1e-14)
    assert log_partition(p.astype(np.float32) * 0 + p, r, 1.0) == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(optimal_log_policy(p, r, 1.0), _ref_log_policy(p, r, 1.0)[0], rtol=1e-14)


def test_largest_reward_off_the_support_does_not_cost_digits():
    """r = 600 where π_ref = 0 must not set the shift: log π* and log Z are computed relative to the largest r/β
    on the support (0.3), and match logsumexp to 1e-15. Bugs caught (mutmut run 7): the support mask skipped
    (``support``/``lo == 0`` test broken, or the max taken without ``where=pc > 0``) so the shift is 600, the
    terms are ~e^-600 and log Z = 600 + log Σ loses about 1e-13 to cancellation (for log π* and for log Z)."""
    p, r = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.3, 600.0])
    want, want_z = _ref_log_policy(p, r, 1.0)
    got = optimal_log_policy(p, r, 1.0)
    assert got[2] == -np.inf
    np.testing.assert_allclose(got[:2], want[:2], rtol=0, atol=1e-15)
    assert abs(log_partition(p, r, 1.0) - want_z) <= 1e-15


@pytest.mark.parametrize("which", ["reward", "pi_ref"])
def test_mixed_float32_and_float64_inputs_compute_in_float64(which):
    """One float32 and one float64 argument give a float64 result that is that of the float64 values of the same
    numbers, to 1e-15 (the float32 argument is read exactly, never rounded again). Bugs caught (mutmut run 7):
    r/β divided without ``dtype=np.float64`` (a float32 reward gives a float32 quotient: errors ~1e-7), and
    log π_ref without ``dtype=np.float64`` (float32 logs), in optimal_log_policy and its logsumexp redo."""
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(6), size=4)
    r = rng.normal(size=(4, 6)) * 3
    p[3] = [1e-300, 0.5, 0.5 - 1e-300, 0, 0, 0] if which == "reward" else p[3]  # a row redone by logsumexp
    r[3, 0] = 1000.0
    if which == "reward":
        p32, r32 = p, r.astype(np.float32)
    else:
        p32 = p.astype(np.float32)
        p32 /= p32.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
        r32 = r
    want = _ref_log_policy(p32.astype(np.float64), r32.astype(np.float64), 0.3)
    for f in (optimal_log_policy,):
        got = f(p32, r32, 0.3)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(log_partition(p32, r32, 0.3), want[1], rtol=1e-14)
    np.testing.assert_allclose(optimal_policy(p32, r32, 0.3), np.exp(want[0]), rtol=1e-13, atol=1e-300)


def test_implied_reward_row_with_a_zero_and_a_tiny_pi_ref():
    """π_ref = (0, 1e-310, 1 − 1e-310), π = (0, ½, ½): the ratio ½/1e-310 overflows, so the row is redone as
    log π − log π_ref in float64: (−inf, log ½ + 310·log 10, log ½). Bugs caught (mutmut run 7): the smallest
    π_ref on the support replaced by NaN or taken over entries > 1 (the row is not redone: +inf), and the
    π = 0 entries of the redone row left NaN (log 0 − log 0), set to +inf or chosen by π == 1."""
    pi, q = np.array([0.0, 0.5, 0.5]), np.array([0.0, 1e-310, 1 - 1e-310])
    got = implied_reward(pi, q, 2.0)
    assert got[0] == -np.inf
    np.testing.assert_allclose(got[1:], 2.0 * (np.log(0.5) - np.log(q[1:])), rtol=1e-15)


def test_implied_reward_keeps_the_log_of_the_ratio_for_small_pi_ref():
    """π_ref = 1e-31 (far above 1e-300): β·log(π/π_ref) is one log of the ratio 3, exact to 2 ulps, where
    log π − log π_ref would lose ~1e-14 to cancellation of two logs near −70. Bugs caught (mutmut run 7): the
    redo threshold q_min raised from 1e-300 to 1e-30 or to 1 for float64 (such rows computed the long way)."""
    pi, q = np.array([3e-31, 1 - 3e-31]), np.array([1e-31, 1 - 1e-31])
    assert implied_reward(pi, q, 1.0)[0] == pytest.approx(np.log(3.0), rel=4e-16)


def test_reward_overflow_is_checked_on_both_signs():
    """A reward of −1e300 at β = 1e-10 makes r/β overflow to −inf: a ValueError naming beta, as for +1e300; +inf
    in a reward is "reward contains NaN or inf". Bugs caught (mutmut run 7): the overflow test on max(hi, +lo)
    (a huge negative reward passes), and the finiteness test on hi *or* lo (+inf is then blamed on beta)."""
    p = np.array([0.5, 0.5])
    for f in (optimal_policy, optimal_log_policy, log_partition):
        for r in ([0.0, -1e300], [0.0, 1e300]):
            with pytest.raises(ValueError, match="reward/beta overflows float64"):
                f(p, np.array(r), 1e-10)
        with pytest.raises(ValueError, match="reward contains NaN or inf"):
            f(p, np.array([0.0, np.inf]), 1.0)


def test_check_inputs_used_by_optima():
    """``_check_inputs`` (shared with prefkit.optima) returns r/β and refuses r/β overflowing float64. Bugs caught
    (mutmut run 7; optima's tests are outside this run's selection): r·β instead of r/β, the finiteness test
    negated or fed None."""
    p, r, b, scaled = cf._check_inputs([0.25, 0.75], [1.0, -2.0], 0.5)
    np.testing.assert_array_equal(scaled, [2.0, -4.0])
    assert b == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="reward/beta overflows float64"):
            cf._check_inputs([0.5, 0.5], [0.0, 1e300], 1e-10)


def test_rare_paths_raise_no_floating_point_warnings():
    """log 0 off the support, rows redone by logsumexp, r − max r overflowing float32 (log Z), overflowing r/β:
    none of these may leak a RuntimeWarning (the functions promise −inf "without a warning").
    Bugs caught (mutmut run 7): the ``np.errstate`` guards dropped or set to None."""
    p = np.array([[0.5, 0.5, 0.0], [1e-300, 1 - 1e-300, 0.0]])
    r = np.array([[0.0, 0.3, 600.0], [1000.0, 0.0, 5.0]])
    p32 = np.array([[0.5, 0.5, 0.0]], dtype=np.float32)
    r32 = np.array([[3e38, -3e38, 0.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (optimal_policy, optimal_log_policy, log_partition):
            f(p, r, 1.0)
            with pytest.raises(ValueError):
                f(p, r * 1e300, 1e-10)
        log_partition(p32, r32, 1.0)  # r − max r overflows float32: redone in float64
        # float32 at the edge of its range: a log-prob of −6e38 saturates to −inf, and exp(r/β − m) with
        # r/β − m < −3.4e38 is 0 (both used to warn: overflow in a cast)
        lp = optimal_log_policy(p32, r32, 1.0)
        assert lp.dtype == np.float32 and lp[0, 0] == 0.0 and lp[0, 1] == -np.inf
        pi = optimal_policy(np.array([[0.5, 0.5]], np.float32), np.array([[0.0, -200.0]], np.float32), 1e-37)
        assert pi.dtype == np.float32 and pi.tolist() == [[1.0, 0.0]]
        implied_reward(np.array([[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]), np.array([[0.0, 1e-310, 1 - 1e-310],
                                                                             [0.5, 0.5, 0.0]]), 1.0)
        implied_reward(np.array([0.0, 1.0], dtype=np.float32), np.array([0.5, 0.5], dtype=np.float32), 1.0)
        kl_divergence(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]))
        kl_divergence_logspace(np.array([-np.inf, 0.0]), np.array([-np.inf, -np.inf]))
        reward_kl_frontier(p, r, [0.5, 2.0])


def test_reward_gap_up_to_shift_over_the_support():
    """With ``pi_ref``, the gap is max over prompts of (max − min)/2 of d = reward − reward_true on π_ref's
    support only. Row 0: d = (1, 3, 100) with 100 off the support → 1; row 1: d = (−2, 0, 2) on the support of
    (0.2, 0.3, 0.5) → 2; the result is 2 (max over rows). Without pi_ref the off-support 100 counts: 49.5. Bugs
    caught (mutmut run 7; this branch had no test in the selection): hi or lo replaced, masked with ≥ 0 or > 1,
    filled with ±inf swapped or None, reduced over the wrong axis or all axes; the no-pi_ref branch's axes."""
    d = np.array([[1.0, 3.0, 100.0], [-2.0, 0.0, 2.0]])
    base = np.array([[0.3, -1.0, 2.0], [5.0, 5.0, 5.0]])
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert reward_gap_up_to_shift(base + d, base, pi_ref=p) == pytest.approx(2.0, abs=1e-14)
    assert reward_gap_up_to_shift(base + d, base) == pytest.approx(49.5, abs=1e-13)
    # one row only, so a reduction over the wrong axis shows too
    assert reward_gap_up_to_shift(base[0] + d[0], base[0], pi_ref=p[0]) == pytest.approx(1.0, abs=1e-14)
    assert reward_gap_up_to_shift(d[:, 1:], np.zeros((2, 2))) == pytest.approx(48.5, abs=1e-13)
    d3 = np.stack([d, d + np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]])])  # (2, 2, 3): rows (−2, 0, 8) → 5
    assert reward_gap_up_to_shift(d3, np.zeros_like(d3), pi_ref=np.stack([p, p])) == pytest.approx(5.0, abs=1e-14)
    assert reward_gap_up_to_shift(d3, np.zeros_like(d3)) == pytest.approx(49.5, abs=1e-13)
    assert reward_gap_up_to_shift(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_kl_logspace_checks_and_per_row_infinity():
    """kl_divergence_logspace refuses NaN or +inf in either argument; +inf (p > 0 where q = 0) is per row; terms
    with p = 0 contribute 0 whatever logq. Bugs caught (mutmut run 7): one of the four NaN/+inf checks dropped or
    joined with ``and``; ``bad.any`` over all rows (every row +inf); the fill values of the masked terms (0 → 1)."""
    for lp, lq in (([np.nan, 0.0], [0.0, 0.0]), ([0.0, 0.0], [np.nan, 0.0]),
                   ([np.inf, 0.0], [0.0, 0.0]), ([0.0, -np.inf], [np.inf, 0.0])):
        with pytest.raises(ValueError, match="must not contain NaN or \\+inf"):
            kl_divergence_logspace(np.array(lp), np.array(lq))
    with np.errstate(divide="ignore"):
        logp = np.log(np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]))
        logq = np.log(np.array([[0.25, 0.75, 0.0], [0.5, 0.5, 0.0]]))
        lp1, lq1 = np.log([[1.0, 0.0]]), np.log([[0.5, 0.5]])
    kl = kl_divergence_logspace(logp, logq)
    assert kl[1] == np.inf
    assert kl[0] == pytest.approx(0.5 * np.log(2.0) + 0.5 * np.log(2 / 3), rel=1e-15)
    # p = 0 where q > 0: the term is 0; q's log there must not enter
    np.testing.assert_allclose(kl_divergence_logspace(lp1, lq1), [np.log(2.0)],
                               rtol=1e-15)


def test_argmax_policy_on_three_dimensional_input():
    """argmax_policy normalises over the last axis for any leading shape: a (2, 2, 3) input gives rows summing to
    1 with the mass on each row's maximisers. Bugs caught (mutmut run 7): the max or the sum over axis +1 (right
    only for 2-d input)."""
    p = np.full((2, 2, 3), 1 / 3)
    r = np.array([[[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]], [[0.0, 0.0, 5.0], [1.0, 1.0, 1.0]]])
    want = np.array([[[0, 0.5, 0.5], [1, 0, 0]], [[0, 0, 1], [1 / 3, 1 / 3, 1 / 3]]])
    np.testing.assert_allclose(argmax_policy(p, r), want, rtol=1e-15)


def test_rewards_from_probabilities_refuses_zero():
    """P = 0 (the reward difference is −inf) is refused like P = 1. Bug caught (mutmut run 7): ``P < 0``."""
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="strictly in"):
            rewards_from_preference_probabilities([0.5, bad])


def test_reward_kl_frontier_keys_and_leading_axes():
    """The frontier's dict keys, and E_π*[r] summed over the responses (the last axis) of each prompt, averaged
    over prompts: for 3 prompts × 2 responses the mean of the per-prompt expectations. Bugs caught (mutmut run 7):
    the ``beta`` key renamed, the sum over axis +1 on 3-d input."""
    p = np.full((2, 3, 2), 0.5)
    r = np.arange(12.0).reshape(2, 3, 2) / 4
    out = reward_kl_frontier(p, r, [1.0])
    assert set(out) == {"beta", "kl", "reward"}
    pi = np.exp(_ref_log_policy(p, r, 1.0)[0])
    assert out["reward"][0] == pytest.approx(np.mean(np.sum(pi * r, axis=-1)), rel=1e-14)


def test_float32_rows_are_judged_by_their_float64_sum():
    """Two float32 rows: 1 − 1.2e-6 then fifteen entries of 2.9e-8, each 8 apart so that numpy's pairwise float32
    sum adds them one by one to the large entry and loses them all: the float32 sum is 1 − 1.19e-6 (beyond atol =
    1e-6), the float64 sum 1 − 7.6e-7 (within it). Such a row is a distribution and must be accepted; with the large
    entry at 1 − 1.6e-6 (float64 sum 1 − 1.17e-6) it must be refused, as must a float64 row summing to 1 + 1.5e-6.
    Bugs caught (mutmut run 7): the float64 re-sum of doubtful float32 rows skipped (``p.dtype == np.float64``,
    ``flatnonzero(None)``, the doubt test inverted or on s + 1, s − 2), done in float32 or over all rows at once,
    and the fast path's tolerance widened to 2·atol."""
    p = np.zeros((2, 128), dtype=np.float32)
    p[:, 0] = np.float32(1 - 1.2e-6)
    p[:, 8::8] = np.float32(2.9e-8)
    assert abs(float(p[0].sum()) - 1) > 1e-6 >= abs(p[0].sum(dtype=np.float64) - 1)  # the premise, on this numpy
    r = np.zeros_like(p)
    for f in (optimal_policy, optimal_log_policy, log_partition):
        assert not np.any(np.isnan(f(p, r, 1.0)))  # accepted (−inf where π_ref = 0)
    np.testing.assert_allclose(implied_reward(p, p, 1.0)[:, 0], 0.0, atol=1e-6)
    bad = p.copy()
    bad[1, 0] = np.float32(1 - 1.6e-6)
    with pytest.raises(ValueError, match=r"pi_ref is not a distribution: row \(1,\) sums to"):
        optimal_policy(bad, r, 1.0)
    with pytest.raises(ValueError, match="pi_ref is not a distribution"):
        optimal_policy(np.array([[0.5, 0.5], [0.5, 0.5 + 1.5e-6]]), np.zeros((2, 2)), 1.0)
