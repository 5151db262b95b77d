"""prefkit.exercises (chapters 1, 4, 5): each checker accepts the reference solution and rejects wrong answers.

(The checkers of chapters 2, 3 and 6 are tested next to their chapters: tests/test_optimal_policy.py,
tests/test_rl.py, tests/test_displacement.py.)
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from prefkit import exercises as E

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from solutions import ch1_bradley_terry, ch4_dpo, ch5_free_lunch  # noqa: E402


def test_ch1_checkers():
    assert E.check_mm_update(ch1_bradley_terry.mm_update)
    assert E.check_contrast_stderr(ch1_bradley_terry.contrast_stderr)

    def no_symmetrise(strengths, wins):  # forgets n_ji in the denominator
        g = np.exp(np.asarray(strengths) - np.max(strengths))
        new = np.log(wins.sum(1)) - np.log((wins / (g[:, None] + g[None, :])).sum(1))
        return new - new.mean()

    with pytest.raises(AssertionError):
        E.check_mm_update(no_symmetrise)
    with pytest.raises(AssertionError):  # C_ij enters with −2
        E.check_contrast_stderr(lambda c, i, j: float(np.sqrt(c[i, i] + c[j, j])))


def test_ch4_checkers():
    assert E.check_dpo_loss(ch4_dpo.dpo_loss) and E.check_dpo_grad(ch4_dpo.dpo_grad_logp_chosen)

    def naive(lw, ll, rw, rl, beta):  # log(sigmoid) overflows at margin −800
        m = beta * ((np.asarray(lw) - rw) - (np.asarray(ll) - rl))
        with np.errstate(all="ignore"):
            return -np.log(1 / (1 + np.exp(-m)))

    with pytest.raises(AssertionError):
        E.check_dpo_loss(naive)
    with pytest.raises(AssertionError):  # wrong sign
        E.check_dpo_grad(lambda *a: -ch4_dpo.dpo_grad_logp_chosen(*a))


def test_ch5_checkers():
    assert E.check_ipo_all_pairs(ch5_free_lunch.ipo_all_pairs)
    assert E.check_ipo_weighted_gap(ch5_free_lunch.ipo_weighted_gap)
    with pytest.raises(AssertionError):  # forgets pi_ref
        E.check_ipo_all_pairs(lambda pi_ref, P, tau: ch5_free_lunch.ipo_all_pairs(np.ones(len(P)), P, tau))
    with pytest.raises(AssertionError):  # target 1/(2τ) per pair instead of (P_ij − ½)/τ
        E.check_ipo_all_pairs(lambda pi_ref, P, tau: ch5_free_lunch.ipo_all_pairs(pi_ref, P, 2 * tau))
    with pytest.raises(AssertionError):  # the unweighted triangle's answer
        E.check_ipo_weighted_gap(lambda w, tau: 2 / (3 * tau))
