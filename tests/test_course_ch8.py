"""Chapter 8's exercise checkers accept the reference solutions and name each plausible wrong answer."""

import numpy as np
import pytest

from prefkit.course import ch8_overoptimisation as ch8
from prefkit.course.exercises import Mistake, _get, _reference


def _ref(key):
    fn = _reference(_get(f"ch8.{key}"))
    assert fn is not None, "solutions/ch8_overoptimisation.py is missing"
    return fn


def test_references_pass():
    ch8.grade_best_of_n(_ref("best_of_n"))
    ch8.grade_kl_bound(_ref("kl_bound"))
    ch8.grade_gold_peak(_ref("gold_peak"))


def _levels(pi_ref, reward):
    le = np.array([[pi_ref[x, reward[x] <= reward[x, y]].sum() for y in range(pi_ref.shape[1])]
                   for x in range(pi_ref.shape[0])])
    lt = np.array([[pi_ref[x, reward[x] < reward[x, y]].sum() for y in range(pi_ref.shape[1])]
                   for x in range(pi_ref.shape[0])])
    return le, lt


def test_best_of_n_mistakes():
    def no_subtract(p, r, n):
        le, lt = _levels(p, r)
        return p * le**n / (le - lt)

    def uniform_ties(p, r, n):
        le, lt = _levels(p, r)
        count = np.array([[np.sum(r[x] == r[x, y]) for y in range(r.shape[1])] for x in range(r.shape[0])])
        return (le**n - lt**n) / count

    def power_n_minus_1(p, r, n):
        le, lt = _levels(p, r)
        return p * (le ** (n - 1) - lt ** (n - 1)) / (le - lt)

    def ties_as_levels(p, r, n):
        out = np.zeros_like(p)
        for x in range(p.shape[0]):
            o = np.argsort(r[x], kind="stable")
            c = np.cumsum(p[x, o])
            out[x, o] = c**n - (c - p[x, o]) ** n
        return out

    with pytest.raises(Mistake, match="subtract F"):
        ch8.grade_best_of_n(no_subtract)
    with pytest.raises(Mistake, match="in proportion to π_ref"):
        ch8.grade_best_of_n(uniform_ties)
    with pytest.raises(Mistake, match="not n − 1"):
        ch8.grade_best_of_n(power_n_minus_1)
    with pytest.raises(Mistake, match="one level"):
        ch8.grade_best_of_n(ties_as_levels)
    with pytest.raises(Mistake, match="shape"):
        ch8.grade_best_of_n(lambda p, r, n: p[0])
    with pytest.raises(Mistake, match="NaN"):
        ch8.grade_best_of_n(lambda p, r, n: p * np.nan)


def test_kl_bound_mistakes():
    with pytest.raises(Mistake, match="subtract"):
        ch8.grade_kl_bound(np.log)
    with pytest.raises(Mistake, match="sign"):
        ch8.grade_kl_bound(lambda n: np.log(n) + (n - 1) / n)
    with pytest.raises(Mistake, match="large-n limit"):
        ch8.grade_kl_bound(lambda n: np.log(n) - 1)


def test_gold_peak_mistakes():
    ref = _ref("gold_peak")
    with pytest.raises(Mistake, match="α/\\(2β\\), not α/β"):
        ch8.grade_gold_peak(lambda a, b, form: a / b if form == "bon" else ref(a, b, form))
    with pytest.raises(Mistake, match="product"):
        ch8.grade_gold_peak(lambda a, b, form: np.exp(a / b) if form == "rl" else ref(a, b, form))
    with pytest.raises(Mistake, match="KL at the peak"):
        ch8.grade_gold_peak(lambda a, b, form: ref(a, b, form) ** 2)
    with pytest.raises(Mistake, match="best-of-n form's"):
        ch8.grade_gold_peak(lambda a, b, form: a / (2 * b))


def test_brute_force_and_monte_carlo_agree_with_the_library():
    from prefkit import best_of_n_policy

    p, r = ch8.tie_problem()
    assert np.allclose(ch8.brute_force_best_of_n(p, r, 3), best_of_n_policy(p, r, 3), atol=1e-13)
    freq, se = ch8.monte_carlo_best_of_n(p, r, 3, 20_000, 0)
    assert np.all(np.abs(freq - best_of_n_policy(p, r, 3)) <= 5 * se + 1e-12)


def test_equal_kl_and_length_sweep():
    sweep = ch8.length_sweep(lengths=(2, 8, 32))
    assert np.all(np.diff(sweep["rel_gap"]) < 0) and np.all(sweep["gap"] >= -1e-9)
