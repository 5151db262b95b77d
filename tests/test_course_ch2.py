"""Chapter 2's exercise checkers: the reference solution passes, and each plausible wrong answer is rejected with a
hint that names the mistake."""

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

import prefkit
from prefkit.course import ch2_optimal_policy as ch2
from prefkit.course.exercises import Mistake, _get, _reference, exercises_of


def _ref(exercise_id):
    fn = _reference(_get(exercise_id))
    if fn is None:
        pytest.skip("the reference solutions (solutions/) are absent")
    return fn


def test_chapter_registers_both_exercises():
    assert [e.id for e in exercises_of(2)] == ["ch2.log_partition", "ch2.optimal_policy"]


def test_references_pass():
    ch2.grade_log_partition(_ref("ch2.log_partition"))
    ch2.grade_optimal_policy(_ref("ch2.optimal_policy"))


def _naive_log_Z(pi_ref, reward, beta):
    return np.log(np.sum(pi_ref * np.exp(reward / beta), axis=-1))


def _unmasked_log_Z(pi_ref, reward, beta):
    # the maximum subtracted over every response, π_ref = 0 included
    z = reward / beta
    m = z.max(-1, keepdims=True)
    return (m + np.log(np.sum(pi_ref * np.exp(z - m), axis=-1, keepdims=True)))[..., 0]


@pytest.mark.parametrize("wrong, hint", [
    (_naive_log_Z, "overflows"),
    (lambda p, r, b: logsumexp(r / b, axis=-1), "π_ref is missing"),
    (lambda p, r, b: logsumexp(np.log(p) + r * b, axis=-1), "multiplied by β"),
    (_unmasked_log_Z, "π_ref's support only"),
    (lambda p, r, b: logsumexp(np.log(p) + r / b, axis=-1, keepdims=True), "one value per prompt"),
    (lambda p, r, b: np.log(np.mean(np.exp(r / b), axis=-1)), "log Z is wrong"),
])
def test_log_partition_rejects_each_mistake_with_its_hint(wrong, hint):
    with np.errstate(all="ignore"), pytest.raises(Mistake, match=hint):
        ch2.grade_log_partition(wrong)


def _naive_pi(pi_ref, reward, beta):
    w = pi_ref * np.exp(reward / beta)
    return w / w.sum(-1, keepdims=True)


def _unmasked_pi(pi_ref, reward, beta):
    z = reward / beta
    w = pi_ref * np.exp(z - z.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def _with_floor(pi_ref, reward, beta):
    # log(π_ref + 1e-12): right up to 1e-12 on the support, but mass where π_ref = 0
    logits = np.log(pi_ref + 1e-12) + reward / beta
    return softmax(logits, axis=-1)


@pytest.mark.parametrize("wrong, hint", [
    (_naive_pi, "overflows"),
    (lambda p, r, b: softmax(r / b, axis=-1), "π_ref is missing"),
    (lambda p, r, b: p * np.exp(r / b - (r / b).max(-1, keepdims=True)), "do not sum to 1"),
    (_unmasked_pi, "π_ref's support only"),
    (_with_floor, "never gives"),
    (lambda p, r, b: softmax(np.log(p) + r / b, axis=-1)[..., :-1], "shape"),
])
def test_optimal_policy_rejects_each_mistake_with_its_hint(wrong, hint):
    with np.errstate(all="ignore"), pytest.raises(Mistake, match=hint):
        ch2.grade_optimal_policy(wrong)


# ---------------------------------------------------------------- the chapter's experiments


def _instance(seed, n_prompts=3, n_responses=5):
    rng = np.random.default_rng(seed)
    pi_ref = softmax(rng.normal(size=(n_prompts, n_responses)), axis=-1)
    return pi_ref, rng.normal(size=(n_prompts, n_responses)) * 2


def test_beta_small_error_within_exact_gap_bound():
    """max|π*(β) − argmax| ≤ Σ_{y∉M} π_ref e^{−gap/β} / π_ref(M) (+ round-off) on the tour's instances, seeds
    0–39; the bound is tight when one response dominates the sum (seed 20: 5.6e-7 at β = 1e-3)."""
    for seed in range(40):
        P = prefkit.random_problem(3, 5, seed=seed, support=0.8, reward_scale=2.0)
        e = ch2.beta_limit_errors(P.pi_ref, P.reward, beta_small=1e-3, beta_large=1e6)
        assert e["small"] <= e["small_bound"] + 1e-15
        assert e["small_bound"] <= 2 * e["small"] + 1e-15  # and not vacuous
    # ties: the limit is π_ref restricted to the maximisers (not uniform over them)
    p, r = np.array([[0.2, 0.3, 0.5]]), np.array([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(prefkit.argmax_policy(p, r), [[0.4, 0.6, 0.0]])
    e = ch2.beta_limit_errors(p, r, beta_small=0.05)
    assert e["small"] <= e["small_bound"] + 1e-15 and e["small_bound"] < 1e-8


def test_large_beta_error_falls_like_one_over_beta():
    pi_ref, reward = _instance(1)
    assert ch2.large_beta_rate(pi_ref, reward, 1e5, 10.0) == pytest.approx(10.0, abs=1e-3)
    assert ch2.large_beta_rate(pi_ref, reward, 1e4, 2.0) == pytest.approx(2.0, abs=1e-3)


def test_bt_identifiability_error_is_within_its_round_off_bound():
    pi_ref, reward = _instance(2)
    e = ch2.bt_identifiability_error(reward)
    assert e["error"] <= e["bound"] and e["bound"] < 1e-12


def test_more_errors_name_the_argument():
    pi_ref, reward = _instance(0)
    with pytest.raises(ValueError, match="beta"):
        prefkit.optimal_policy(pi_ref, reward, True)
    with pytest.raises(ValueError, match="n_starts"):
        ch2.brute_force_objective_gap(pi_ref, reward, 1.0, n_starts=0)
    with pytest.raises(ValueError, match="f must"):
        ch2.shift_invariance_error(pi_ref, reward, [1.0, 2.0], 1.0)
