"""Chapter 6's exercise checkers: each accepts the reference solution and names each plausible wrong answer."""

import numpy as np
import pytest

from prefkit.course import ch6_displacement as ch6
from prefkit.course.exercises import Mistake, _get, _reference, exercises_of


def _solution(exercise_id):
    ref = _reference(_get(exercise_id))
    assert ref is not None, "the reference solutions (solutions/ch6_displacement.py) are missing"
    return ref


def test_chapter_registers_its_exercises():
    assert [e.id for e in exercises_of(6)] == ["ch6.ches", "ch6.squeeze_rate", "ch6.catastrophe"]


@pytest.mark.parametrize("exercise_id", ["ch6.ches", "ch6.squeeze_rate", "ch6.catastrophe"])
def test_checker_accepts_the_reference(exercise_id):
    _get(exercise_id).checker(_solution(exercise_id))


# ----------------------------------------------------------------------------------------------------- CHES


def _ches(rows, agg_override=None, *, cross_only=False, own="w", sign=1.0):
    def fn(hw, hl, p, normalized):
        agg = agg_override or (np.mean if normalized else np.sum)
        a, b = hw[rows(p)], hl[rows(p)]
        sw, sl = agg(a, axis=0), agg(b, axis=0)
        if cross_only:
            return float(sw @ sl)
        norm = sw @ sw if own == "w" else sl @ sl
        return float(sign * (sw @ sl - norm))
    return fn


RIGHT = lambda p: slice(p - 1, -1)  # noqa: E731


@pytest.mark.parametrize("fn, match", [
    (_ches(RIGHT, cross_only=True), "−‖Σ_k h_w,k‖² term is missing"),
    (_ches(RIGHT, own="l"), "chosen response's"),
    (_ches(RIGHT, sign=-1.0), "sign is flipped"),
    (_ches(lambda p: slice(p, None)), "from the last prompt token"),
    (_ches(lambda p: slice(p - 1, None)), "leave out the final position"),
    (_ches(lambda p: slice(0, -1)), "the prompt's states"),
    (_ches(RIGHT, np.sum), "means over the positions"),
    (_ches(RIGHT, np.mean), "sums over the positions"),
    (lambda hw, hl, p, n: 1.0, "CHES is"),
    (lambda hw, hl, p, n: float("nan"), "not finite"),
    (lambda hw, hl, p, n: np.ones(2), "shape"),
])
def test_ches_checker_names_the_mistake(fn, match):
    with pytest.raises(Mistake, match=match):
        ch6.grade_ches(fn)


# ------------------------------------------------------------------------------------------------ squeezing


def _rate(pi, l):
    return ch6.squeeze_first_order(pi, l)


@pytest.mark.parametrize("fn, match", [
    (lambda pi, l: -_rate(pi, l), "wrong sign"),
    (lambda pi, l: np.asarray(pi) - np.eye(len(pi))[l], "change of the logits"),
    (lambda pi, l: np.asarray(pi) - np.eye(len(pi))[l] - np.asarray(pi) @ np.asarray(pi), "π_l term is missing"),
    (lambda pi, l: np.asarray(pi) * _rate(pi, l), "change of π, not of log π"),
    (lambda pi, l: np.asarray(pi) - 1.0, "exact first-order change"),
    (lambda pi, l: _rate(pi, l)[:-1], "shape"),
    (lambda pi, l: np.full(len(pi), np.inf), "not finite"),
])
def test_squeeze_checker_names_the_mistake(fn, match):
    with pytest.raises(Mistake, match=match):
        ch6.grade_squeeze_rate(fn)


# ---------------------------------------------------------------------------------------------- catastrophe

H0 = np.array([1.5, 0.0])


@pytest.mark.parametrize("W, h0, match", [
    # another token (3), not token 0, points along W_1 − W_2: the mass goes there
    (np.array([[0.5, 0.5], [2.0, 0.2], [2.0, 0.8], [0.0, -3.0]]), H0, "must point along"),
    # token 0 points away from W_1 − W_2: nothing takes the mass of token 2 but token 1
    (np.array([[0.0, 3.0], [2.0, 0.2], [2.0, 0.8], [0.5, 0.5]]), H0, "π\\(token 1\\) rose"),
    # tokens 1 and 2 far apart: DPO simply raises token 1
    (np.array([[0.0, -3.0], [2.0, 0.0], [-2.0, 0.0], [0.5, 0.5]]), H0, "π\\(token 1\\) rose"),
    # token 0 already likely at h0
    (np.array([[3.0, -3.0], [2.0, 0.2], [2.0, 0.8], [0.5, 0.5]]), H0, "must start unlikely"),
    (np.ones((2, 2)), H0, "n_tokens ≥ 3"),
    (np.ones((4, 2)), np.ones(3), "shape"),
    (np.full((4, 2), np.nan), H0, "finite"),
])
def test_catastrophe_checker_names_the_mistake(W, h0, match):
    with pytest.raises(Mistake, match=match):
        ch6.grade_catastrophe(lambda: (W, h0))


def test_catastrophe_checker_wants_a_pair():
    with pytest.raises(Mistake, match="pair"):
        ch6.grade_catastrophe(lambda: np.ones((3, 2)))
