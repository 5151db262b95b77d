"""Regression tests: every reproducer of issue 11 ("bad input gets a clear error and nothing escapes") for the
numpy/torch library, each as it was reported. The data-file reproducers are in tests/test_loaders.py; the LM CLI
ones belong to prefkit.lm's tests."""

import numpy as np
import pytest
import torch

import prefkit
from prefkit import (
    ches_score,
    displacement_step,
    fit_bradley_terry,
    fit_dpo,
    fit_reward_model,
    ipo_optimum,
    kl_divergence,
    kl_penalized_reward,
    log_partition,
    optimal_policy,
    ppo_clip_loss,
    preference_metrics,
    random_problem,
    reinforce_loss,
    rloo_advantages,
    sample_comparisons,
    total_variation,
)

CYCLE = [[0, 1], [1, 2], [2, 0]]
FIVE = [[0, 1], [1, 2], [2, 0], [1, 0], [0, 2]]
PI = np.array([[0.2, 0.3, 0.5]])
R = np.array([[1.0, 0.0, -1.0]])


# ----------------------------------------------------------------------------------- Bradley-Terry weights
def test_bt_is_scale_free_in_the_weights():
    """weights·1e-14 gave other strengths and converged=False; the fit must not see the scale."""
    w = np.array([1.0, 1e3, 0.1])
    a = fit_bradley_terry(CYCLE, weights=w)
    b = fit_bradley_terry(CYCLE, weights=w * 1e-14)
    np.testing.assert_allclose(b.strengths, a.strengths, rtol=1e-10, atol=1e-12)
    assert a.converged and b.converged
    # the standard errors are those of the counts given: ×1e7 for counts ×1e-14
    np.testing.assert_allclose(b.stderr, a.stderr * 1e7, rtol=1e-8)


@pytest.mark.parametrize("method", ["newton", "mm"])
def test_bt_weights_near_the_float_limit(method):
    """[1e308]*5 with MM returned NaN: the strengths are those of unit weights; only ℓ itself overflows."""
    ref = fit_bradley_terry(FIVE, method=method)
    fit = fit_bradley_terry(FIVE, weights=[1e308] * 5, method=method)
    np.testing.assert_allclose(fit.strengths, ref.strengths, atol=1e-6)
    assert np.all(np.isfinite(fit.stderr))
    with pytest.raises(ValueError, match="weights"):
        _ = fit.log_likelihood


def test_bt_stderr_for_the_counts_given():
    """stderr was [0, 0] for weights [1e20, 1e20] (truth 1/sqrt(2e20) = 7.07e-11) and LinAlgError for 1e-300."""
    fit = fit_bradley_terry([[0, 1], [1, 0]], weights=[1e20, 1e20])
    np.testing.assert_allclose(fit.stderr, [1 / np.sqrt(2e20)] * 2, rtol=1e-9)
    tiny = fit_bradley_terry(FIVE, weights=[1e-300] * 5)
    unit = fit_bradley_terry(FIVE)
    np.testing.assert_allclose(tiny.stderr, unit.stderr * 1e150, rtol=1e-9)


def test_bt_complex_weights_and_none_l2():
    with pytest.raises(ValueError, match="weights"):
        fit_bradley_terry(CYCLE, weights=np.array([1, 1, 1]) + 1j)
    with pytest.raises(ValueError, match="l2"):
        fit_bradley_terry(CYCLE, l2=None)


# ------------------------------------------------------------------------------------ overflow in results
def test_ppo_clip_loss_large_log_ratio_with_zero_advantage():
    """A float32 ratio e^100 overflowed and met A = 0: NaN. Now the clipped branch caps it (value and grad)."""
    logp = torch.tensor([100.0], requires_grad=True)
    loss = ppo_clip_loss(logp, torch.tensor([0.0]), torch.tensor([0.0]))
    assert torch.isfinite(loss) and float(loss) == 0.0
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    # a positive advantage: the clipped value (1 + ε)·A, gradient 0
    assert float(ppo_clip_loss(torch.tensor([100.0]), torch.tensor([0.0]), torch.tensor([2.0]))) == pytest.approx(
        -1.2 * 2.0)


def test_ppo_clip_loss_unrepresentable_is_a_value_error():
    with pytest.raises(ValueError, match="old_logp|logp"):
        ppo_clip_loss(torch.tensor([1000.0]), torch.tensor([0.0]), torch.tensor([-1.0]))


def test_rloo_advantages_of_huge_rewards():
    """[[1e308, 1e308]] gave -inf; in float64 the advantages are 0, in float32 1e308 is already inf (an error)."""
    adv = rloo_advantages(torch.tensor([[1e308, 1e308]], dtype=torch.float64))
    assert torch.equal(adv, torch.zeros(1, 2, dtype=torch.float64))
    adv = rloo_advantages(torch.tensor([[1e308, -1e307, 0.0]], dtype=torch.float64))
    assert torch.isfinite(adv).all() and abs(float(adv.sum())) < 1e293
    with pytest.raises(ValueError, match="rewards"):
        rloo_advantages(torch.tensor([[1e308, 1e308]]))  # float32: inf


def test_ches_score_of_huge_hidden_states():
    """Hidden states of 1e200 gave NaN: rescaled, CHES is exact when representable, else a ValueError."""
    h = np.array([[1.0, 2.0], [0.5, -1.0]])
    assert ches_score(h * 1e150, h[:1] * 1e150) == pytest.approx(ches_score(h, h[:1]) * 1e300, rel=1e-12)
    with pytest.raises(ValueError, match="hidden_chosen"):
        ches_score(h * 1e200, h[:1] * 1e200)


@pytest.mark.parametrize("scale", [1e308, 5e-324])
def test_weights_that_overflow_or_underflow_their_sum(scale):
    """Weights of 1e308 (sum inf) or 5e-324 (products underflow) act like equal weights: they are normalised."""
    lp = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    args = (lp, lp.flip(0), torch.full((2,), -1.5, dtype=torch.float64), torch.full((2,), -1.5, dtype=torch.float64))
    w = torch.full((2,), scale, dtype=torch.float64)
    assert preference_metrics(*args, 0.5, weights=w) == pytest.approx(preference_metrics(*args, 0.5))
    prefs = np.array([[0, 0, 1], [0, 1, 2], [0, 2, 0], [0, 0, 2]])
    np.testing.assert_allclose(ipo_optimum(PI, prefs, 0.5, weights=[scale] * 4), ipo_optimum(PI, prefs, 0.5),
                               rtol=1e-12)
    a = fit_reward_model(prefs, 1, 3, weights=[scale] * 4, steps=50)
    b = fit_reward_model(prefs, 1, 3, steps=50)
    np.testing.assert_allclose(a.reward, b.reward, atol=1e-8)
    a = fit_dpo(PI, prefs, 0.5, weights=[scale] * 4, loss_type="ipo")
    b = fit_dpo(PI, prefs, 0.5, loss_type="ipo")
    np.testing.assert_allclose(a.policy, b.policy, atol=1e-8)


def test_fit_dpo_huge_beta_newton_is_a_value_error():
    """beta=1e300 with optimizer='newton' hit a torch internal assert."""
    prefs = np.array([[0, 0, 1], [0, 1, 2]])
    with pytest.raises(ValueError, match="beta"):
        fit_dpo(PI, prefs, 1e300, optimizer="newton", steps=3)


# ---------------------------------------------------------------------------------------- complex, grad
@pytest.mark.parametrize("fn, kwargs, name", [
    (optimal_policy, dict(pi_ref=PI, reward=R + 1j, beta=0.5), "reward"),
    (log_partition, dict(pi_ref=PI, reward=R + 1j, beta=0.5), "reward"),
    (kl_divergence, dict(p=PI + 0j, q=PI), "p"),
    (ches_score, dict(hidden_chosen=np.ones((2, 2)) + 1j, hidden_rejected=np.ones((1, 2))), "hidden_chosen"),
])
def test_complex_input_is_rejected(fn, kwargs, name):
    """Complex arrays lost their imaginary part with only a warning."""
    with pytest.raises(ValueError, match=name):
        fn(**kwargs)


def test_tensors_that_require_grad_are_accepted():
    """optimal_policy, log_partition and ches_score crashed with torch's "Can't call numpy()"."""
    r = torch.tensor(R, requires_grad=True)
    np.testing.assert_allclose(optimal_policy(PI, r, 0.5), optimal_policy(PI, R, 0.5))
    np.testing.assert_allclose(log_partition(PI, r, 0.5), log_partition(PI, R, 0.5))
    h = torch.ones(2, 3, requires_grad=True)
    assert ches_score(h, h[:1]) == ches_score(np.ones((2, 3)), np.ones((1, 3)))


# ----------------------------------------------------------------------------------- indices and shapes
@pytest.mark.parametrize("prefs", [[[0, -1, 1]], [[0, 0, 3]], [[1, 0, 1]]])
def test_displacement_step_index_out_of_range(prefs):
    """Index -1 wrapped to the last response; out-of-range indices were an IndexError."""
    logp = np.log(PI)
    with pytest.raises(ValueError, match="preferences"):
        displacement_step(logp, logp, prefs)


def test_total_variation_needs_distributions():
    """total_variation([[5, -3]], [[.5, .5]]) returned 4.0."""
    with pytest.raises(ValueError, match="p"):
        total_variation([[5, -3]], [[0.5, 0.5]])


def test_kl_penalized_reward_does_not_broadcast():
    """Shapes (3,) and (2, 1) were broadcast silently to (2, 3)."""
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_penalized_reward(np.zeros(3), np.zeros((2, 1)), np.zeros((2, 1)), 0.5)
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_penalized_reward(torch.zeros(3), torch.zeros(2, 1), torch.zeros(2, 1), 0.5)


def test_empty_tensors_in_policy_gradient_losses():
    """reinforce_loss and ppo_clip_loss on empty tensors returned NaN (the mean of nothing)."""
    e = torch.zeros(0)
    with pytest.raises(ValueError, match="logp"):
        reinforce_loss(e, e)
    with pytest.raises(ValueError, match="logp"):
        ppo_clip_loss(e, e, e)


# ------------------------------------------------------------------------------------------------- seeds
def test_seeds_are_an_int_or_a_generator_everywhere():
    theta = np.array([0.5, 0.0, -0.5])
    np.testing.assert_array_equal(sample_comparisons(theta, 3, 0),
                                  sample_comparisons(theta, 3, np.random.default_rng(0)))
    np.testing.assert_array_equal(prefkit.sample_rankings(theta, 3, 1),
                                  prefkit.sample_rankings(theta, 3, np.random.default_rng(1)))
    for bad in (1.5, -1, True, "0"):
        with pytest.raises(ValueError, match="rng"):
            sample_comparisons(theta, 3, bad)
    with pytest.raises(ValueError, match="seed"):
        random_problem(seed=1.5)
    P = random_problem(2, 4, seed=np.random.default_rng(3))
    assert P.pi_ref.shape == (2, 4)


def test_sample_preferences_is_reproducible_by_default():
    """Problem.sample_preferences(n) drew unseeded pairs; the default seed is now 0."""
    P = random_problem(2, 4, seed=0)
    np.testing.assert_array_equal(P.sample_preferences(20), P.sample_preferences(20))
    np.testing.assert_array_equal(P.sample_preferences(20), P.sample_preferences(20, 0))
