"""Mutation run 11: tests that kill the survivors of bradley_terry.py's remaining functions.

Each test checks against an independent reference (a loop by hand, a closed form, brute force) or pins the
documented contract: overflow is a ValueError with its message, never a RuntimeWarning first.
"""

import os
import warnings

import numpy as np
import pytest

from prefkit import (
    ConvergenceWarning,
    bt_fisher_information,
    bt_log_likelihood,
    bt_log_likelihood_gradient,
    bt_probability,
    fit_bradley_terry,
    log_sigmoid,
    mle_obstruction,
    sigmoid,
)
from prefkit.bradley_terry import _describe

BIG = [1e308, -1e308]  # θ_0 − θ_1 overflows to +inf

# mutmut calls every function through a trampoline, one stack frame more: stacklevel is checked outside it
UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ


def test_log_likelihood_overflow_is_a_value_error_with_its_message_and_no_runtime_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the winner is 2e308 ahead: z overflows to +inf, log σ(inf) = 0, no warning
        assert bt_log_likelihood(BIG, [(0, 1)]) == 0.0
        msg = r"^the log-likelihood overflows float64: strengths, order_effect or weights too large$"
        with pytest.raises(ValueError, match=msg):  # log σ(−inf) = −inf
            bt_log_likelihood(BIG, [(1, 0)])
        with pytest.raises(ValueError, match=msg):  # 0·log σ(−inf) = 0·(−inf): NaN, without an invalid warning
            bt_log_likelihood(BIG, [(0, 1), (1, 0)], weights=[1.0, 0.0])


def test_gradient_overflow_is_a_value_error_with_its_message_and_no_runtime_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # wins minus expected wins, by hand: item 0 won the first (expected 1), lost the second (expected 0)
        np.testing.assert_array_equal(bt_log_likelihood_gradient(BIG, [(0, 1), (1, 0)]), [-1.0, 1.0])
        # 4·(1e308·0.5) overflows on both sides of each item: inf − inf
        comps = [(0, 1)] * 4 + [(1, 0)] * 4
        with pytest.raises(ValueError, match=r"^the gradient overflows float64: weights too large$"):
            bt_log_likelihood_gradient([0.0, 0.0], comps, weights=[1e308] * 8)


def test_fisher_information_by_hand_with_weights_and_an_item_never_compared():
    """L = Σ_k w_k·p_k(1 − p_k)·(e_a − e_b)(e_a − e_b)ᵀ, built comparison by comparison; item 2 has no comparison
    but the matrix is still (3, 3) (n is len(strengths), not max id + 1)."""
    theta = np.array([0.3, -0.2, 0.7])
    comps = [(0, 1), (1, 0), (0, 1)]
    w = [2.0, 0.5, 0.25]
    want = np.zeros((3, 3))
    for (a, b), wk in zip(comps, w, strict=True):
        p = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b])))
        e = np.zeros(3)
        e[a], e[b] = 1.0, -1.0
        want += wk * p * (1.0 - p) * np.outer(e, e)
    got = bt_fisher_information(theta, comps, weights=w)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-14, atol=0)


def test_fisher_information_overflow_is_a_value_error_with_its_message_and_no_runtime_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^strengths too large: their differences overflow float64$"):
            bt_fisher_information(BIG, [(0, 1)])
        with pytest.raises(ValueError, match=r"^the Fisher information overflows float64: weights too large$"):
            bt_fisher_information([0.0, 0.0], [(0, 1)] * 8, weights=[1e308] * 8)


# (winner, loser, winner_first): item 2 is always the first item, so it is never "second" (the last item's
# column of a bincount over the second items is then absent unless minlength is given)
HOME = [
    (0, 1, True),
    (0, 1, False),
    (1, 0, True),
    (0, 1, True),
    (2, 0, True),
    (0, 2, False),
    (0, 2, False),
    (2, 1, True),
    (1, 2, False),
    (1, 2, False),
    (1, 2, False),
]


def _hand_mm(comps, wf, n, k):
    """k sweeps of Hunter's (2004) MM, comparison by comparison, from the library's documented start (log-odds of
    smoothed win rates, clipped to ±10, centred); with ``wf`` the cyclic home-field version (§3.2)."""
    wins, losses = np.zeros(n), np.zeros(n)
    for a, b in comps:
        wins[a] += 1.0
        losses[b] += 1.0
    theta = np.clip(np.log((wins + 0.5) / (losses + 0.5)), -10, 10)
    theta -= theta.mean()
    firsts = [(a, b) if f else (b, a) for (a, b), f in zip(comps, wf, strict=True)] if wf is not None else list(comps)
    home_wins = sum(1.0 for f in wf if f) if wf is not None else None
    delta = 0.0
    for _ in range(k):
        g, h = np.exp(theta), (np.exp(delta) if wf is not None else 1.0)
        denom = np.zeros(n)
        for f, s in firsts:
            denom[f] += h / (h * g[f] + g[s])
            denom[s] += 1.0 / (h * g[f] + g[s])
        theta = np.log(wins / denom)
        theta -= theta.mean()
        if wf is not None:
            g = np.exp(theta)
            delta = np.log(home_wins / sum(g[f] / (h * g[f] + g[s]) for f, s in firsts))
    return theta, delta


@pytest.mark.parametrize("home", [False, True])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_mm_iterates_are_hunters_by_hand(home, k):
    comps = [(a, b) for a, b, _ in HOME]
    wf = [f for _, _, f in HOME] if home else None
    want_theta, want_delta = _hand_mm(comps, wf, 3, k)
    with pytest.warns(ConvergenceWarning, match=rf"\(mm\) stopped after {k} iterations"):
        fit = fit_bradley_terry(comps, 3, method="mm", winner_first=wf, max_iter=k)
    assert fit.n_iter == k
    assert fit.converged is False
    np.testing.assert_allclose(fit.strengths, want_theta, rtol=1e-12, atol=1e-14)
    if home:
        assert fit.order_effect == pytest.approx(want_delta, rel=1e-12, abs=1e-14)
    else:
        assert fit.order_effect is None


def test_mm_start_is_clipped_at_ten():
    # 60000 wins to 1: the smoothed log-odds of items 0 and 1 (+10.6, −10.1) are clipped to ±10 before the first
    # sweep (three items: with two, one MM sweep lands on the MLE from any start)
    comps = [(0, 1)] * 60000 + [(1, 0), (1, 2), (2, 1)]
    want_theta, _ = _hand_mm(comps, None, 3, 1)
    with pytest.warns(ConvergenceWarning):
        fit = fit_bradley_terry(comps, 3, method="mm", max_iter=1)
    np.testing.assert_allclose(fit.strengths, want_theta, rtol=1e-12)


@pytest.mark.parametrize("home", [False, True])
def test_mm_log_likelihood_is_that_of_its_own_estimate(home):
    comps = [(a, b) for a, b, _ in HOME]
    wf = [f for _, _, f in HOME] if home else None
    fit = fit_bradley_terry(comps, 3, method="mm", winner_first=wf, tol=1e-12)
    assert fit.converged is True
    want = bt_log_likelihood(fit.strengths, comps, winner_first=wf, order_effect=fit.order_effect or 0.0)
    assert fit.log_likelihood == pytest.approx(want, rel=1e-12)
    newton = fit_bradley_terry(comps, 3, winner_first=wf)
    np.testing.assert_allclose(fit.strengths, newton.strengths, atol=1e-9)


def test_log_sigmoid_scalar_is_a_float_and_nan_names_x():
    v = log_sigmoid(0.0)
    assert type(v) is float and v == pytest.approx(-np.log(2.0), rel=1e-15)
    with pytest.raises(ValueError, match=r"^x contains NaN$"):
        log_sigmoid([0.0, np.nan])


def test_mle_obstruction_uses_the_weights():
    # (1, 0) has weight 0: item 0 never lost (Zermelo); weighted 0.5 it did, and the graph is strongly connected
    assert mle_obstruction([(0, 1), (1, 0)], weights=[1.0, 0.0]) == ([0], "never lost")
    assert mle_obstruction([(0, 1), (1, 0)], weights=[1.0, 0.5]) is None


def test_mle_obstruction_reads_fractional_wins_of_the_higher_item():
    # {1, 2} beat each other; 1 beat 0 once with weight 0.5 (stored as n_ji of the pair (0, 1)), 0 never won:
    # the smallest group is {0}, which never won
    assert mle_obstruction([(1, 2), (2, 1), (1, 0)], weights=[1.0, 1.0, 0.5]) == ([0], "never won")


def test_mle_obstruction_smallest_group_of_a_chain_by_brute_force():
    # A = {0, 1} beats B = {2} beats C = {3, 4, 5} (each group strongly connected inside): A never lost
    # (size 2), C never won (size 3); B both won and lost outside, so it is no answer although it is smallest
    comps = [(0, 1), (1, 0), (0, 2), (1, 2), (2, 3), (3, 4), (4, 5), (5, 3)]
    assert mle_obstruction(comps) == ([0, 1], "never lost")


def test_describe_shows_ten_items_then_the_count():
    assert _describe(list(range(10)), None) == "{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}"
    assert _describe(list(range(11)), None) == "{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … (11 items)}"
    assert _describe([1, 0], ["a", "b"]) == "{b, a}"


def _dense(n):
    """Every pair of items 0..n-1 both ways (dense enough that the strong components are found from a sample)."""
    return [(a, b) for a in range(n) for b in range(a + 1, n)] + [(b, a) for a in range(n) for b in range(a + 1, n)]


def test_dense_win_graph_strongly_connected_only_through_an_unsampled_pair():
    # 129 items, all 8256 pairs: the sample takes every 4th pair in CSR order, (0, 1), (0, 5), ... Item 0 beats
    # everyone, and only item 2 (pair index 1, not sampled) ever beat it: the sample has two components, the whole
    # graph one, so the MLE exists
    n = 129
    comps = [(0, b) for b in range(1, n)] + [(2, 0)]
    comps += [(a + 1, b + 1) for a, b in _dense(n - 1)]
    assert mle_obstruction(comps, n) is None
    comps.remove((2, 0))
    assert mle_obstruction(comps, n) == ([0], "never lost")


def test_dense_win_graph_with_an_item_never_compared():
    n = 140
    assert mle_obstruction(_dense(n - 1), n) == ([n - 1], "never lost")


def test_mm_strengths_far_apart_do_not_overflow():
    """MM rescales γ = e^θ by its largest entry: one win each way with weights 1 and 1e-320 (a subnormal) put the
    two MLE strengths 2·368.4 apart, so e^(θ + max θ) would overflow; the MLE is ±log(1/w)/2 exactly."""
    w = np.float64(1e-320)
    fit = fit_bradley_terry([(0, 1), (1, 0)], 2, weights=[1.0, w], method="mm")
    assert fit.converged is True
    half = -np.log(w) / 2
    np.testing.assert_allclose(fit.strengths, [half, -half], rtol=1e-12)


@pytest.mark.parametrize("name", ["strength_i", "strength_j"])
def test_bt_probability_nan_names_its_argument(name):
    args = {"strength_i": 0.0, "strength_j": 0.0, name: np.nan}
    with pytest.raises(ValueError, match=rf"^{name} contains NaN$"):
        bt_probability(**args)


def test_sigmoid_scalar_is_a_float_and_nan_names_x():
    v = sigmoid(0.0)
    assert type(v) is float and v == 0.5
    with pytest.raises(ValueError, match=r"^x contains NaN$"):
        sigmoid([0.0, np.nan])


# ------------------------------------------------------------------------------------ fit_bradley_terry's messages
NO_MLE = (
    "the maximum-likelihood estimate does not exist: the directed win graph is not strongly connected "
    "(Zermelo 1929; Ford 1957). "
)
TAIL = " Add comparisons, or pass l2 > 0 for a finite MAP estimate."


def test_no_mle_messages_say_which_way_the_strengths_run():
    with pytest.raises(ValueError) as e:
        fit_bradley_terry([(0, 1), (0, 2), (1, 2), (2, 1)], 3)
    assert (
        str(e.value) == NO_MLE + "Item {0} never lost to an item outside the group, so its strength runs off "
        "to +infinity." + TAIL
    )
    with pytest.raises(ValueError) as e:
        fit_bradley_terry([(1, 0), (2, 0), (1, 2), (2, 1)], 3, names=["a", "b", "c"])
    assert (
        str(e.value) == NO_MLE + "Item {a} never beat an item outside the group, so its strength runs off "
        "to −infinity." + TAIL
    )


@pytest.mark.parametrize(
    ("n_lost", "said"),
    [
        (1, "1 positive weight is below 5e-324 times the largest weight and counts as 0"),
        (2, "2 positive weights are below 5e-324 times the largest weight and count as 0"),
    ],
)
def test_no_mle_message_counts_the_weights_lost_below_the_float_range(n_lost, said):
    # 1e-30 / 1e300 underflows to 0: those wins of item 1 are lost, and item 0 never lost. A weight of exactly 0 is
    # no positive weight lost (it was 0 to begin with)
    comps = [(0, 1)] + [(1, 0)] * n_lost + [(1, 0)]
    w = [1e300] + [1e-30] * n_lost + [0.0]
    with pytest.raises(ValueError) as e:
        fit_bradley_terry(comps, 2, weights=w)
    assert str(e.value) == (
        NO_MLE + "Item {0} never lost to an item outside the group, so its strength runs off "
        f"to +infinity.{TAIL} ({said}: float64 cannot hold the ratio.)"
    )


def test_l2_overflowing_the_weight_scale_is_a_value_error_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^l2=1e\+300 is too large next to weights of at most 1e-300"):
            fit_bradley_terry([(0, 1), (1, 0)], 2, weights=[1e-300, 1e-300], l2=1e300)


@pytest.mark.parametrize(("first_won", "which"), [(True, "first"), (False, "second")])
def test_map_order_effect_needs_both_positions_to_win(first_won, which):
    with pytest.raises(ValueError, match=rf"the {which} position won every comparison$"):
        fit_bradley_terry([(0, 1), (1, 0)], 2, winner_first=[first_won, first_won], l2=0.1)


def test_map_without_comparisons_is_zero_with_no_iterations():
    fit = fit_bradley_terry([(0, 1)], 3, weights=[0.0], l2=0.5)
    assert fit.n_iter == 0 and fit.converged is True
    np.testing.assert_array_equal(fit.strengths, np.zeros(3))


def test_convergence_warning_points_at_the_caller():
    with pytest.warns(ConvergenceWarning) as record:
        fit_bradley_terry([(a, b) for a, b, _ in HOME], 3, method="mm", max_iter=1)
    assert record[0].filename == __file__ or UNDER_MUTMUT


def test_fit_keeps_the_names():
    fit = fit_bradley_terry([(0, 1), (1, 0)], 2, names=("x", "y"))
    assert fit.names == ["x", "y"]


def test_bt_probability_of_two_infinities_is_a_value_error_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"infinite with the same sign for some pair"):
            bt_probability(np.inf, np.inf)
    with pytest.raises(ValueError, match=r"^order_effect\b"):
        bt_probability(0.0, 0.0, order_effect=np.nan)


def test_no_mle_message_for_a_group_of_two_is_plural():
    # {3, 4} never lost to {0, 1, 2} (chapter 1's example)
    comps = [[0, 1], [1, 2], [2, 0], [3, 0], [3, 1], [4, 3], [3, 4]]
    with pytest.raises(ValueError) as e:
        fit_bradley_terry(comps, 5)
    assert str(e.value) == (
        NO_MLE + "Items {3, 4} never lost to an item outside the group, so their strengths run off to +infinity." + TAIL
    )
