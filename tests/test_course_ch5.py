"""Chapter 5's exercise checkers accept the reference solutions and name each plausible wrong answer."""

import numpy as np
import pytest

from prefkit.course import ch5_free_lunch as ch5
from prefkit.course.exercises import Mistake, _get, _reference


def _ref(exercise_id):
    fn = _reference(_get(exercise_id))
    if fn is None:
        pytest.skip("solutions/ is absent")
    return fn


def test_reference_solutions_pass():
    ch5.grade_ipo_all_pairs(_ref("ch5.ipo_all_pairs"))
    ch5.grade_ipo_weighted_gap(_ref("ch5.ipo_weighted_gap"))


def _u(P, tau):
    n = len(P)
    return np.where(~np.eye(n, dtype=bool), np.asarray(P) - 0.5, 0.0).sum(axis=1) / (n * tau)


def _pi(pi_ref, u):
    p = np.asarray(pi_ref) * np.exp(u - u.max())
    return p / p.sum()


ALL_PAIRS_MISTAKES = [
    (lambda pi_ref, P, tau: _pi(np.ones(len(P)), _u(P, tau)), "π_ref is missing"),
    (lambda pi_ref, P, tau: _pi(pi_ref, _u(P, tau) * len(P)), "factor 1/n"),
    (lambda pi_ref, P, tau: _pi(pi_ref, _u(P, tau) / 2), "not \\(P_ij − ½\\)/\\(2τ\\)"),
    (lambda pi_ref, P, tau: _pi(pi_ref, np.where(~np.eye(len(P), dtype=bool), np.sign(np.asarray(P) - 0.5)
                                                 / (2 * tau), 0).sum(1) / len(P)), "probabilities are ignored"),
    (lambda pi_ref, P, tau: np.asarray(pi_ref) * np.exp(_u(P, tau)), "normalise"),
    (lambda pi_ref, P, tau: _pi(pi_ref, _u(P, tau))[:-1], "shape"),
]


@pytest.mark.parametrize("fn, hint", ALL_PAIRS_MISTAKES)
def test_ipo_all_pairs_mistakes_are_named(fn, hint):
    with pytest.raises(Mistake, match=hint):
        ch5.grade_ipo_all_pairs(fn)


WEIGHTED_GAP_MISTAKES = [
    (lambda w, tau: 2 / (3 * tau), "ignores the weight w"),
    (lambda w, tau: 1 / (2 * tau), "cannot all be met"),
    (lambda w, tau: 1 / tau, "ignores the pair"),
    (lambda w, tau: (1 + w) / (tau * (1 + 3 * w)), "got"),
    (lambda w, tau: float("nan"), "not finite"),
]


@pytest.mark.parametrize("fn, hint", WEIGHTED_GAP_MISTAKES)
def test_ipo_weighted_gap_mistakes_are_named(fn, hint):
    with pytest.raises(Mistake, match=hint):
        ch5.grade_ipo_weighted_gap(fn)
