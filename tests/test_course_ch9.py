"""Chapter 9's exercise checkers accept the reference solutions and name each plausible mistake."""

import numpy as np
import pytest
from scipy.special import logsumexp

from prefkit.course.ch9_beyond_bradley_terry import (
    grade_exploitability,
    grade_nash_md_step,
    grade_pl_log_likelihood,
)
from prefkit.course.exercises import Mistake, _get, _reference


@pytest.mark.parametrize("key", ["ch9.pl_log_likelihood", "ch9.exploitability", "ch9.nash_md_step"])
def test_reference_solutions_pass(key):
    ex = _get(key)
    ref = _reference(ex)
    assert ref is not None
    ex.checker(ref)


def test_pl_checker_names_mistakes():
    def no_removal(t, r):
        t = np.asarray(t)[r]
        return sum(t[k] - logsumexp(t) for k in range(len(t) - 1))

    def all_items(t, r):
        return sum(np.asarray(t)[r][k] - logsumexp(t) for k in range(len(r) - 1))

    def reversed_(t, r):
        t = np.asarray(t)[r][::-1]
        return sum(t[k] - logsumexp(t[k:]) for k in range(len(t) - 1))

    def naive(t, r):
        t = np.asarray(t)[r]
        return sum(t[k] - np.log(np.sum(np.exp(t[k:]))) for k in range(len(t) - 1))

    for fn, words in ((no_removal, "not yet placed"), (all_items, "in this ranking only"),
                      (reversed_, "best first"), (naive, "overflows")):
        with np.errstate(over="ignore", invalid="ignore"), pytest.raises(Mistake, match=words):
            grade_pl_log_likelihood(fn)


def test_exploitability_checker_names_mistakes():
    cases = ((lambda P, pi: np.max(P.T @ pi) - 0.5, "Pᵀ"), (lambda P, pi: np.max(P @ pi), "subtract ½"),
             (lambda P, pi: pi @ P @ pi - 0.5, "ties with itself"), (lambda P, pi: np.min(P @ pi) - 0.5, "best reply"))
    for fn, words in cases:
        with pytest.raises(Mistake, match=words):
            grade_exploitability(fn)


def _norm(z):
    z = np.exp(z - z.max())
    return z / z.sum()


def test_nash_md_checker_names_mistakes():
    def no_mixture(pi, P, mu, b, eta):
        return _norm(np.log(pi) + eta * P @ pi)

    def swapped(pi, P, mu, b, eta):
        mix = _norm(eta * b * np.log(pi) + (1 - eta * b) * np.log(mu))
        return _norm(np.log(mix) + eta * P @ mix)

    def arithmetic(pi, P, mu, b, eta):
        mix = (1 - eta * b) * pi + eta * b * mu
        return _norm(np.log(mix) + eta * P @ mix)

    def opponent_pi(pi, P, mu, b, eta):
        mix = _norm((1 - eta * b) * np.log(pi) + eta * b * np.log(mu))
        return _norm(np.log(mix) + eta * P @ pi)

    def transposed(pi, P, mu, b, eta):
        mix = _norm((1 - eta * b) * np.log(pi) + eta * b * np.log(mu))
        return _norm(np.log(mix) + eta * P.T @ mix)

    def unnormalised(pi, P, mu, b, eta):
        return 2 * pi

    for fn, words in ((no_mixture, "geometric mixture"), (swapped, "swapped"), (arithmetic, "not arithmetic"),
                      (opponent_pi, "opponent is the mixture"), (transposed, "not \\(Pᵀ"), (unnormalised, "sum to 1")):
        with pytest.raises(Mistake, match=words):
            grade_nash_md_step(fn)
