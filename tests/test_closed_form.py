"""Chapter 2: the closed-form KL-optimal policy against brute force, limits and invariances."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize
from scipy.special import softmax

from prefkit.bradley_terry import bt_probability
from prefkit.closed_form import (
    argmax_policy,
    implied_reward,
    kl_divergence,
    kl_divergence_logspace,
    kl_regularized_objective,
    log_partition,
    optimal_log_policy,
    optimal_policy,
    reward_gap_up_to_shift,
    rewards_from_preference_probabilities,
)
from prefkit.problems import random_problem


def _instance(seed, n_prompts=3, n_responses=5):
    rng = np.random.default_rng(seed)
    pi_ref = softmax(rng.normal(size=(n_prompts, n_responses)), axis=-1)
    return pi_ref, rng.normal(size=(n_prompts, n_responses)) * 2


@pytest.mark.parametrize("seed", range(3))
def test_no_optimiser_beats_closed_form(seed):
    pi_ref, reward = _instance(seed)
    beta = 0.7
    star = kl_regularized_objective(optimal_policy(pi_ref, reward, beta), pi_ref, reward, beta)
    rng = np.random.default_rng(100 + seed)
    for x in range(pi_ref.shape[0]):
        def neg_J(z, x=x):
            return -kl_regularized_objective(softmax(z), pi_ref[x], reward[x], beta)
        best = max(-minimize(neg_J, rng.normal(size=5) * 3, method="BFGS").fun for _ in range(4))
        assert best <= star[x] + 1e-10
        assert best == pytest.approx(star[x], abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_gibbs_identity(seed):
    pi_ref, reward = _instance(seed)
    for beta in (0.05, 1.0, 20.0):
        ps = optimal_policy(pi_ref, reward, beta)
        J = kl_regularized_objective(ps, pi_ref, reward, beta)
        np.testing.assert_allclose(J, beta * log_partition(pi_ref, reward, beta), rtol=1e-12, atol=1e-12)
        # J(π) = β log Z − β KL(π‖π*) for an arbitrary π
        pi = softmax(np.random.default_rng(seed).normal(size=pi_ref.shape), axis=-1)
        np.testing.assert_allclose(kl_regularized_objective(pi, pi_ref, reward, beta),
                                   beta * log_partition(pi_ref, reward, beta) - beta * kl_divergence(pi, ps),
                                   atol=1e-10)


def test_beta_limits():
    pi_ref, reward = _instance(0)
    assert np.max(np.abs(optimal_policy(pi_ref, reward, 1e8) - pi_ref)) < 1e-7
    np.testing.assert_allclose(optimal_policy(pi_ref, reward, 1e-4), argmax_policy(pi_ref, reward),
                               atol=1e-12)
    # argmax on the support only
    p = np.array([[0.5, 0.5, 0.0]])
    r = np.array([[0.0, 1.0, 9.0]])
    np.testing.assert_array_equal(optimal_policy(p, r, 1e-3), [[0.0, 1.0, 0.0]])


def test_implied_reward_is_reward_minus_beta_log_Z():
    pi_ref, reward = _instance(1)
    beta = 0.3
    ir = implied_reward(optimal_policy(pi_ref, reward, beta), pi_ref, beta)
    shift = beta * log_partition(pi_ref, reward, beta)[:, None]
    np.testing.assert_allclose(reward - ir, np.broadcast_to(shift, reward.shape), atol=1e-10)


def test_shift_invariance_f_of_x():
    pi_ref, reward = _instance(2)
    f = np.array([[3.0], [-100.0], [1e3]])
    np.testing.assert_allclose(optimal_policy(pi_ref, reward + f, 0.5), optimal_policy(pi_ref, reward, 0.5),
                               atol=1e-12)
    np.testing.assert_allclose(bt_probability((reward + f)[:, :, None], (reward + f)[:, None, :]),
                               bt_probability(reward[:, :, None], reward[:, None, :]), atol=1e-12)
    assert reward_gap_up_to_shift(reward + f, reward) < 1e-9
    assert reward_gap_up_to_shift(reward + np.eye(3, 5), reward) == pytest.approx(0.5)


def test_zero_support_and_extremes():
    p = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    r = np.array([[1e6, 5.0, 0.0], [1.0, 2.0, 3.0]])
    ps = optimal_policy(p, r, 1.0)
    assert np.all(np.isfinite(ps)) and ps[0, 1] == 0 and ps[1, 0] == 0 and ps[1, 1] == 1
    assert np.all(np.isfinite(log_partition(p, r, 1.0)))
    assert np.isfinite(log_partition(p, r * 1e-6, 1e-6)).all()  # r/β up to 1e6
    ir = implied_reward(ps, p, 1.0)
    assert ir[0, 1] == -np.inf and np.isfinite(ir[0, 0])
    assert kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf
    assert np.all(np.isfinite(optimal_log_policy(p, r, 1.0)[p > 0]))


def test_float32_inputs():
    pi_ref, reward = _instance(3)
    p32, r32 = pi_ref.astype(np.float32), (reward * 1e5).astype(np.float32)
    ps = optimal_policy(p32, r32, 0.1)
    assert ps.dtype == np.float64 and np.all(np.isfinite(ps))
    np.testing.assert_allclose(ps.sum(-1), 1.0)
    assert np.all(np.isfinite(log_partition(p32, r32, 0.1)))


@pytest.mark.parametrize("bad, match", [
    (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(pi_ref=[[0.5, 0.6]]), "pi_ref"), (dict(pi_ref=[[1.5, -0.5]]), "pi_ref"),
    (dict(reward=[[0.0, np.nan]]), "reward"), (dict(reward=[[0.0, np.inf]]), "reward"),
    (dict(reward=[[0.0, 1.0, 2.0]]), "shape"), (dict(reward=[[1e308, 0.0]], beta=1e-300), "beta"),
])
def test_errors_name_the_argument(bad, match):
    kw = dict(pi_ref=[[0.5, 0.5]], reward=[[0.0, 1.0]], beta=1.0) | bad
    for fn in (optimal_policy, log_partition):
        with pytest.raises(ValueError, match=match):
            fn(kw["pi_ref"], kw["reward"], kw["beta"])


def test_errors_other_functions():
    with pytest.raises(ValueError, match="pi"):
        implied_reward([[0.5, 0.5]], [[1.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match="shape"):
        kl_divergence([0.5, 0.5], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="reward"):
        kl_regularized_objective([[0.5, 0.5]], [[0.5, 0.5]], [[0.0, np.nan]], 1.0)


def test_log_Z_gradient_is_pi_star_over_beta():
    """∂(β log Z)/∂r = π*: autograd of a torch logsumexp against the closed form."""
    pi_ref, reward = _instance(4)
    beta = 0.4
    r = torch.tensor(reward, requires_grad=True)
    (beta * torch.logsumexp(torch.log(torch.tensor(pi_ref)) + r / beta, dim=-1)).sum().backward()
    np.testing.assert_allclose(r.grad.numpy(), optimal_policy(pi_ref, reward, beta), atol=1e-12)
    torch_log_Z = torch.logsumexp(torch.log(torch.tensor(pi_ref)) + r / beta, -1).detach()
    np.testing.assert_allclose(beta * torch_log_Z, beta * log_partition(pi_ref, reward, beta), atol=1e-12)


def test_random_problem_with_zero_support():
    P = random_problem(3, 6, seed=5, support=0.5)
    ps = P.optimal_policy(0.2)
    assert np.all(ps[P.pi_ref == 0] == 0)
    np.testing.assert_allclose(ps.sum(-1), 1.0)


_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=80, deadline=None)
@given(logits=arrays(np.float64, (2, 4), elements=st.floats(-50, 50)),
       reward=arrays(np.float64, (2, 4), elements=_floats),
       beta=_floats, zero=st.booleans())
def test_fuzz_finite_or_valueerror(logits, reward, beta, zero):
    pi_ref = softmax(logits, axis=-1)
    if zero:
        pi_ref[:, 0] = 0.0
        pi_ref /= pi_ref.sum(-1, keepdims=True)
    for fn in (optimal_policy, log_partition):
        try:
            out = fn(pi_ref, reward, beta)
        except ValueError:
            continue
        assert np.all(np.isfinite(out))
    try:
        ps = optimal_policy(pi_ref, reward, beta)
    except ValueError:
        return
    J = kl_regularized_objective(ps, pi_ref, reward, beta)
    assert np.all(np.isfinite(J))
    kl = kl_divergence(ps, pi_ref)
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0)
    ir = implied_reward(ps, pi_ref, beta)
    assert not np.any(np.isnan(ir)) and np.all(np.isfinite(ir[ps > 0]))


# ---------------------------------------------------------------- inverting BT, KL in log space


def test_bt_probabilities_pin_r_down_up_to_f():
    pi_ref, reward = _instance(2)
    P = bt_probability(reward, reward[:, :1])
    r_hat = rewards_from_preference_probabilities(P)
    np.testing.assert_allclose(r_hat, reward - reward[:, :1], atol=1e-12)
    with pytest.raises(ValueError, match="prob_beats_first"):
        rewards_from_preference_probabilities([[0.5, 1.0]])


def test_kl_logspace_is_the_kl():
    pi_ref, reward = _instance(5)
    ps = optimal_policy(pi_ref, reward, 0.3)
    np.testing.assert_allclose(kl_divergence_logspace(np.log(ps), np.log(pi_ref)), kl_divergence(ps, pi_ref),
                               rtol=1e-12, atol=1e-15)
    assert kl_divergence_logspace([0.0, -np.inf], [-np.inf, 0.0]) == np.inf
    with pytest.raises(ValueError, match="logp"):
        kl_divergence_logspace([np.nan, 0.0], [0.0, 0.0])


def test_reward_kl_frontier_averages_over_prompts():
    # mutation testing (mutmut) found the frontier's reward sum taken over every axis, or over prompts, survived:
    # each point must be the mean over prompts of E_{π*_β}[r] and of KL(π*_β‖π_ref), computed here directly
    from prefkit import kl_divergence, optimal_policy, reward_kl_frontier

    rng = np.random.default_rng(3)
    pi_ref = rng.dirichlet(np.ones(5), 3)
    reward = rng.normal(size=(3, 5))
    betas = np.array([0.2, 1.0, 5.0])
    f = reward_kl_frontier(pi_ref, reward, betas)
    for k, beta in enumerate(betas):
        pi = optimal_policy(pi_ref, reward, beta)
        assert abs(f["reward"][k] - np.mean(np.sum(pi * reward, axis=-1))) < 1e-12
        assert abs(f["kl"][k] - np.mean(kl_divergence(pi, pi_ref))) < 1e-12
