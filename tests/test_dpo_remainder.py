"""Mutation run 11: hand-written checks for dpo.py's total_variation and dpo_loss_value (closed forms)."""
import math
import warnings

import numpy as np
import pytest

from prefkit.dpo import dpo_loss_value, total_variation


def test_total_variation_is_a_max_over_prompts_not_a_sum():
    p = np.array([[1.0, 0.0], [1.0, 0.0]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert total_variation(p, q) == 1.0  # rows: 1.0 and 0.5; a sum over everything would give 1.5


@pytest.mark.parametrize("bad_first", [True, False])
def test_total_variation_error_names_the_argument(bad_first):
    bad, good = [[5.0, -3.0]], [[0.5, 0.5]]
    name = "p" if bad_first else "q"
    with pytest.raises(ValueError, match=rf"^{name} "):
        total_variation(bad, good) if bad_first else total_variation(good, bad)


def test_dpo_loss_value_ipo_closed_form():
    h = math.log(1.2) - math.log(0.8)  # log-ratio margin of π = (0.6, 0.4) against π_ref = (0.5, 0.5)
    beta = 0.5
    got = dpo_loss_value([[0.6, 0.4]], [[0.5, 0.5]], [[0, 0, 1]], beta, loss_type="ipo")
    assert got == pytest.approx((h - 1 / (2 * beta)) ** 2, rel=1e-12)
    sig = dpo_loss_value([[0.6, 0.4]], [[0.5, 0.5]], [[0, 0, 1]], beta)
    assert sig == pytest.approx(math.log1p(math.exp(-beta * h)), rel=1e-12)


@pytest.mark.parametrize("pi", [[[0.0, 1.0]], [[1.0, 0.0]]])
def test_dpo_loss_value_zero_on_one_compared_response(pi):
    with pytest.raises(ValueError, match="^pi is 0 on a response"):
        dpo_loss_value(pi, [[0.5, 0.5]], [[0, 0, 1]], 0.5)


def test_dpo_loss_value_zero_off_the_preferences_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = dpo_loss_value([[0.5, 0.5, 0.0]], [[0.4, 0.4, 0.2]], [[0, 0, 1]], 0.5)
    assert got == pytest.approx(math.log(2.0), rel=1e-12)  # equal log-ratios: −log σ(0)

