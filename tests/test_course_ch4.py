"""Chapter 4's exercise checkers accept the reference solutions and name each plausible wrong answer; the
chapter's experiments handle data without a DPO minimiser."""

import numpy as np
import pytest

from prefkit.course import ch4_dpo as ch4
from prefkit.course.exercises import Mistake, _get, _reference
from prefkit.problems import random_problem


def _ref(exercise_id):
    fn = _reference(_get(exercise_id))
    if fn is None:
        pytest.skip("solutions/ is absent")
    return fn


def _margin(lw, ll, rw, rl, beta):
    return beta * ((np.asarray(lw) - rw) - (np.asarray(ll) - rl))


def test_reference_solutions_pass():
    ch4.grade_dpo_loss(_ref("ch4.dpo_loss"))
    ch4.grade_dpo_grad(_ref("ch4.dpo_grad"))


LOSS_MISTAKES = [
    (lambda lw, ll, rw, rl, b: -np.log(1 / (1 + np.exp(-_margin(lw, ll, rw, rl, b)))), "overflows at margin"),
    (lambda lw, ll, rw, rl, b: np.logaddexp(0, _margin(lw, ll, rw, rl, b)), "sign is wrong"),
    (lambda lw, ll, rw, rl, b: np.logaddexp(0, -b * (np.asarray(lw) - ll)), "reference log-probs are missing"),
    (lambda lw, ll, rw, rl, b: np.logaddexp(0, -_margin(lw, ll, rl, rw, b)), "are swapped"),
    (lambda lw, ll, rw, rl, b: np.logaddexp(0, -_margin(lw, ll, rw, rl, 1.0)), "β is missing"),
    (lambda lw, ll, rw, rl, b: np.logaddexp(0, -_margin(lw, ll, rw, rl, b)).mean(), "no sum or mean"),
    (lambda lw, ll, rw, rl, b: np.logaddexp(0, -_margin(lw, ll, rw, rl, b)) + 0.1, "differ from"),
]


@pytest.mark.parametrize("fn, hint", LOSS_MISTAKES)
def test_dpo_loss_mistakes_are_named(fn, hint):
    with pytest.raises(Mistake, match=hint):
        ch4.grade_dpo_loss(fn)


def _sig(m):
    return np.exp(-np.logaddexp(0.0, -m))


GRAD_MISTAKES = [
    (lambda lw, ll, rw, rl, b: b * _sig(-_margin(lw, ll, rw, rl, b)), "sign is wrong"),
    (lambda lw, ll, rw, rl, b: -b * _sig(_margin(lw, ll, rw, rl, b)), "should be σ"),
    (lambda lw, ll, rw, rl, b: -_sig(-_margin(lw, ll, rw, rl, b)), "factor β is missing"),
    (lambda lw, ll, rw, rl, b: -b * _sig(-b * (np.asarray(lw) - ll)), "reference log-probs are missing"),
    (lambda lw, ll, rw, rl, b: -b / (1 + np.exp(_margin(lw, ll, rw, rl, b))) * np.inf, "not finite"),
]


@pytest.mark.parametrize("fn, hint", GRAD_MISTAKES)
def test_dpo_grad_mistakes_are_named(fn, hint):
    with pytest.raises(Mistake, match=hint):
        ch4.grade_dpo_grad(fn)


def test_unfinished_stub_is_not_a_mistake():
    def stub(*args):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        ch4.grade_dpo_loss(stub)


def test_finite_sample_errors_redraws_samples_without_minimiser():
    P = random_problem(1, 4, seed=1, reward_scale=1.5)
    fs = ch4.finite_sample_errors(P, 0.5, [8, 400], n_seeds=3, seed=0)
    assert fs["redrawn"][0] > 0 and fs["redrawn"][1] == 0  # small N: some draws had no MLE, counted, redrawn
    assert np.all(np.isfinite(fs["errors"])) and fs["errors"][1] < fs["errors"][0]
    with pytest.raises(ValueError, match="pick N larger"):
        ch4.finite_sample_errors(P, 0.5, [1], n_seeds=1)


def test_obstruction_agrees_with_strong_connectivity():
    P = random_problem(1, 4, seed=1, reward_scale=1.5)
    ob = ch4.obstruction_agreement(P, 12, 60, seed=3)  # about 40% of the draws have no minimiser
    assert ob["disagreements"] == 0 and 0 < ob["no_minimiser"] < 60


def test_claims_are_all_measured_by_the_tour_checks():
    from prefkit.course.tour import TourContext

    ctx = TourContext(fast=True, seed=1)
    measured = set()
    for _, fn in ch4.CHAPTER.checks:
        out = fn(ctx)
        assert all(spec.passes(v) for spec, v in out.items()), {s.id: v for s, v in out.items() if not s.passes(v)}
        measured |= {spec.id for spec in out}
    assert measured == {s.id for s in ch4.CHAPTER.claims.values()}
