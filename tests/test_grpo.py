"""Chapter 10: GRPO's pieces against numpy, autograd and brute force; the exact expected update against every ordered
group; the fixed points against their closed forms; the sampled loop against the exact fixed point."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from prefkit.closed_form import kl_divergence, optimal_policy
from prefkit.grpo import (
    effective_beta,
    expected_grpo_direction,
    forward_kl_optimal_policy,
    group_advantages,
    grpo_fixed_point,
    grpo_loss,
    kl_estimate,
    kl_estimator_expected_gradient,
    kl_estimator_moments,
    train_grpo,
)
from prefkit.policies import TabularPolicy
from prefkit.policy_gradient import rloo_advantages
from prefkit.problems import random_problem

rewards_st = st.lists(st.lists(st.floats(-5, 5), min_size=5, max_size=5), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(rewards_st)
def test_group_advantages_match_numpy(rows):
    R = np.array(rows)
    A = group_advantages(torch.tensor(R), "group").numpy()
    want = (R - R.mean(-1, keepdims=True)) / (R.std(-1, ddof=1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(A, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(A.sum(-1), 0.0, atol=1e-7)
    A0 = group_advantages(torch.tensor(R), "none").numpy()
    np.testing.assert_allclose(A0, R - R.mean(-1, keepdims=True), atol=1e-12)
    # RLOO = G/(G−1) × the unscaled group advantage
    np.testing.assert_allclose(rloo_advantages(torch.tensor(R)).numpy(), 5 / 4 * A0, atol=1e-12)
    Ab = group_advantages(torch.tensor(R), "batch").numpy()
    np.testing.assert_allclose(Ab, (R - R.mean(-1, keepdims=True)) / (R.std(ddof=1) + 1e-4), rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(rewards_st, st.floats(0.1, 10), st.floats(-3, 3))
def test_group_advantages_scale_and_shift_invariant(rows, a, b):
    """(ε aside) the std-scaled advantage ignores an affine change of the rewards; Dr. GRPO's scales with it."""
    R = np.array(rows)
    A = group_advantages(torch.tensor(R), "group", eps=0.0).numpy()
    A2 = group_advantages(torch.tensor(a * R + b), "group", eps=0.0).numpy()
    keep = R.std(-1) > 1e-3
    np.testing.assert_allclose(A2[keep], A[keep], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(group_advantages(torch.tensor(a * R + b), "none").numpy(),
                               a * group_advantages(torch.tensor(R), "none").numpy(), atol=1e-9)


def test_group_advantages_edge_cases():
    flat = torch.tensor([[2.0, 2.0, 2.0]], dtype=torch.float64)
    assert torch.all(group_advantages(flat) == 0)
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.ones(2, 3), "std")
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="eps"):
        group_advantages(torch.ones(2, 3), eps=-1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=1, max_size=8), st.lists(st.floats(-6, 6), min_size=1, max_size=8))
def test_kl_estimates_closed_forms(a, b):
    n = min(len(a), len(b))
    lp, rp = torch.tensor(a[:n], dtype=torch.float64), torch.tensor(b[:n], dtype=torch.float64)
    lr = (rp - lp).numpy()
    np.testing.assert_allclose(kl_estimate(lp, rp, "k1").numpy(), -lr)
    np.testing.assert_allclose(kl_estimate(lp, rp, "k2").numpy(), 0.5 * lr**2)
    k3 = kl_estimate(lp, rp, "k3").numpy()
    np.testing.assert_allclose(k3, np.exp(lr) - lr - 1, rtol=1e-12, atol=1e-12)
    assert np.all(k3 >= 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_k3_unbiased_and_moments(seed, n):
    rng = np.random.default_rng(seed)
    pi, pi_ref = rng.dirichlet(np.ones(n), size=2), rng.dirichlet(np.ones(n), size=2)
    m = kl_estimator_moments(pi, pi_ref)
    kl = kl_divergence(pi, pi_ref)
    np.testing.assert_allclose(m["k3"]["mean"], kl, atol=1e-12)
    np.testing.assert_allclose(m["k1"]["mean"], kl, atol=1e-12)
    lr = np.log(pi_ref / pi)
    np.testing.assert_allclose(m["k1"]["var"], np.sum(pi * lr**2, -1) - kl**2, atol=1e-10)
    k3 = np.exp(lr) - lr - 1
    np.testing.assert_allclose(m["k3"]["var"], np.sum(pi * k3**2, -1) - kl**2, rtol=1e-9, atol=1e-10)


def _autograd_kl(pi, pi_ref, forward):
    z = torch.tensor(np.log(pi), requires_grad=True)
    logp = torch.log_softmax(z, -1)
    ref = torch.tensor(np.log(pi_ref))
    kl = (ref.exp() * (ref - logp)).sum() if forward else (logp.exp() * (logp - ref)).sum()
    (g,) = torch.autograd.grad(kl, z)
    return g.numpy()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_kl_estimator_expected_gradients(seed, n):
    rng = np.random.default_rng(seed)
    pi, pi_ref = rng.dirichlet(np.ones(n), size=2), rng.dirichlet(np.ones(n), size=2)
    np.testing.assert_allclose(kl_estimator_expected_gradient(pi, pi_ref, "k3"), pi - pi_ref, atol=1e-12)
    np.testing.assert_allclose(kl_estimator_expected_gradient(pi, pi_ref, "k3"), _autograd_kl(pi, pi_ref, True),
                               atol=1e-12)
    np.testing.assert_allclose(kl_estimator_expected_gradient(pi, pi_ref, "k2"), _autograd_kl(pi, pi_ref, False),
                               atol=1e-12)
    np.testing.assert_allclose(kl_estimator_expected_gradient(pi, pi_ref, "k1"), 0.0, atol=1e-14)


def _brute(pi, pi_ref, reward, beta, G, **kw):
    """−E[∇ loss] over every ordered group, by autograd of grpo_loss."""
    n = pi.shape[1]
    out = np.zeros(pi.shape)
    for x in range(pi.shape[0]):
        pol = TabularPolicy(pi[x:x + 1])
        ref = torch.tensor(np.log(pi_ref[x]))
        for tup in itertools.product(range(n), repeat=G):
            y = torch.tensor(tup)
            logp = pol.log_probs()[0, y]
            with torch.no_grad():
                R = torch.tensor(reward[x])[y]
                if kw.get("kl_in") == "reward":
                    R = R - beta * kl_estimate(logp, ref[y], kw.get("kl_estimator", "k3"))
                A = group_advantages(R, kw.get("scale_rewards", "group"))
            loss, _ = grpo_loss(logp, logp.detach(), ref[y], A, 0.0 if kw.get("kl_in") == "reward" else beta,
                                kl_estimator=kw.get("kl_estimator", "k3"))
            (g,) = torch.autograd.grad(loss, pol.logits)
            out[x] -= float(np.prod(pi[x, list(tup)])) * g[0].numpy()
    return out


@pytest.mark.parametrize("kw", [{}, {"scale_rewards": "none"}, {"kl_estimator": "k2"},
                                {"kl_estimator": "k1", "kl_in": "reward"},
                                {"scale_rewards": "none", "kl_estimator": "k1", "kl_in": "reward"}])
def test_expected_direction_equals_brute_force(kw):
    rng = np.random.default_rng(3)
    pi, pi_ref, r = rng.dirichlet(np.ones(3), 2), rng.dirichlet(np.ones(3), 2), rng.normal(size=(2, 3))
    for G in (2, 3):
        d = expected_grpo_direction(pi, pi_ref, r, 0.7, G, **kw)
        np.testing.assert_allclose(d, _brute(pi, pi_ref, r, 0.7, G, **kw), atol=1e-12)
        np.testing.assert_allclose(d.sum(-1), 0.0, atol=1e-13)


def test_expected_direction_leave_in_factor_and_support():
    rng = np.random.default_rng(0)
    pi_ref = np.array([[0.5, 0.0, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]])
    pi = np.array([[0.3, 0.0, 0.7, 0.0], rng.dirichlet(np.ones(4))])
    r = rng.normal(size=(2, 4))
    for G in (2, 5):
        d = expected_grpo_direction(pi, pi_ref, r, 0.0, G, scale_rewards="none")
        rbar = np.sum(pi * r, -1, keepdims=True)
        np.testing.assert_allclose(d, (G - 1) / G * pi * (r - rbar), atol=1e-13)
        assert np.all(d[pi_ref == 0] == 0)
    with pytest.raises(ValueError, match="support"):
        expected_grpo_direction(np.full((2, 4), 0.25), pi_ref, r, 0.5, 4)
    with pytest.raises(ValueError, match="scale_rewards"):
        expected_grpo_direction(pi, pi_ref, r, 0.5, 4, scale_rewards="batch")
    with pytest.raises(ValueError, match="group_size"):
        expected_grpo_direction(pi, pi_ref, r, 0.5, 1)
    with pytest.raises(ValueError, match="beta"):
        expected_grpo_direction(pi, pi_ref, r, -0.5, 4)


def test_forward_kl_optimum_maximises_its_objective():
    from scipy.optimize import minimize

    P = random_problem(3, 4, seed=2)
    for beta in (0.1, 1.0, 10.0):
        pf = forward_kl_optimal_policy(P.pi_ref, P.reward, beta)
        np.testing.assert_allclose(pf.sum(-1), 1.0, atol=1e-14)
        for x in range(3):
            def negJ(z, x=x, beta=beta):
                p = softmax(z)
                return -(p @ P.reward[x] - beta * np.sum(P.pi_ref[x] * np.log(P.pi_ref[x] / p)))
            best = min((minimize(negJ, np.log(P.pi_ref[x]) + s, method="BFGS", tol=1e-12)
                        for s in (0.0, 0.5 * np.arange(4))), key=lambda o: o.fun)
            assert -best.fun <= -negJ(np.log(pf[x])) + 1e-10
            np.testing.assert_allclose(softmax(best.x), pf[x], atol=1e-5)
    with pytest.raises(ValueError, match="beta"):
        forward_kl_optimal_policy(P.pi_ref, P.reward, 0.0)


def test_fixed_points_closed_forms():
    P = random_problem(3, 3, seed=4, reward_scale=1.5)
    q, r, beta, G = P.pi_ref, P.reward, 0.5, 6
    np.testing.assert_allclose(grpo_fixed_point(q, r, beta, G, scale_rewards="none"),
                               forward_kl_optimal_policy(q, r, beta * G / (G - 1)), atol=1e-10)
    np.testing.assert_allclose(grpo_fixed_point(q, r, beta, G, scale_rewards="none", kl_estimator="k1",
                                                kl_in="reward"), optimal_policy(q, r, beta), atol=1e-10)
    np.testing.assert_allclose(grpo_fixed_point(q, r, beta, G, scale_rewards="none", kl_estimator="k2"),
                               optimal_policy(q, r, beta * G / (G - 1)), atol=1e-10)
    fp = grpo_fixed_point(q, r, beta, G)
    assert np.max(np.abs(expected_grpo_direction(fp, q, r, beta, G))) < 1e-10
    assert np.min(kl_divergence(fp, optimal_policy(q, r, beta))) > 1e-4  # not π*


def test_effective_beta_two_responses_recovers_fixed_point():
    P = random_problem(4, 2, seed=1, reward_scale=1.5)
    fp = grpo_fixed_point(P.pi_ref, P.reward, 0.5, 8)
    be = effective_beta(fp, P.pi_ref, P.reward)
    for x in range(4):
        np.testing.assert_allclose(forward_kl_optimal_policy(P.pi_ref[x:x + 1], P.reward[x:x + 1], be[x])[0], fp[x],
                                   atol=1e-9)
    # Dr. GRPO's effective β is β·G/(G−1) on every prompt
    fp0 = grpo_fixed_point(P.pi_ref, P.reward, 0.5, 8, scale_rewards="none")
    np.testing.assert_allclose(effective_beta(fp0, P.pi_ref, P.reward), 0.5 * 8 / 7, rtol=1e-8)
    with pytest.raises(ValueError, match="expected reward"):
        effective_beta(P.pi_ref, P.pi_ref, P.reward)


def test_grpo_loss_gradient_and_metrics():
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), -1).requires_grad_(True)
    ref = torch.log_softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), -1)
    adv = torch.randn(3, 4, generator=g, dtype=torch.float64)
    loss, m = grpo_loss(logp, logp.detach(), ref, adv, 0.3)
    (gr,) = torch.autograd.grad(loss, logp)
    want = (-adv + 0.3 * (1 - torch.exp(ref - logp.detach()))) / 12
    torch.testing.assert_close(gr, want)
    assert m["clip_ratio"] == 0.0
    np.testing.assert_allclose(m["kl"], kl_estimate(logp.detach(), ref).mean().item())
    # off-policy: ratios far from 1 are clipped in the direction of the advantage
    loss2, m2 = grpo_loss(logp, logp.detach() - 1.0, ref, torch.ones(3, 4, dtype=torch.float64), 0.0)
    assert m2["clip_ratio"] == 1.0
    np.testing.assert_allclose(loss2.item(), -1.2)
    with pytest.raises(ValueError, match="shape"):
        grpo_loss(logp, logp.detach(), ref[:, :2], adv, 0.1)
    with pytest.raises(ValueError, match="beta"):
        grpo_loss(logp, logp.detach(), ref, adv, -0.1)


def test_train_grpo_reaches_exact_fixed_point_and_logs_trl_metrics():
    P = random_problem(2, 3, seed=0, reward_scale=1.5)
    fp = grpo_fixed_point(P.pi_ref, P.reward, 0.5, 8)
    res = train_grpo(P.pi_ref, P.reward, 0.5, group_size=8, steps=300, lr=0.05, lr_decay=0.02, seed=1,
                     record_every=50)
    assert np.mean(0.5 * np.abs(res.pi - fp).sum(-1)) < 0.03
    h = res.history[-1]
    for key in ("reward", "reward_std", "frac_reward_zero_std", "kl", "clip_ratio", "kl/to_ref", "kl/to_optimal"):
        assert np.isfinite(h[key])
    assert 0 <= h["frac_reward_zero_std"] <= 1
    with pytest.raises(ValueError, match="group_size"):
        train_grpo(P.pi_ref, P.reward, 0.5, group_size=1)
    with pytest.raises(ValueError, match="kl_in"):
        train_grpo(P.pi_ref, P.reward, 0.5, kl_in="advantage")
    with pytest.raises(ValueError, match="beta"):
        train_grpo(P.pi_ref, P.reward, -1.0)


# ------------------------------------------------------------------------------------------- extreme input (issue 11)
def test_group_advantages_huge_and_flat_rewards():
    # bug caught: the mean/std of rewards near 1e308 overflow to inf and the advantages become NaN
    R = torch.tensor([[1.0, 0.0, 2.0, 1.0]], dtype=torch.float64)
    for mode in ("group", "none"):
        A = group_advantages(R * 1e307, mode, eps=0.0)
        assert torch.isfinite(A).all()
        scale = 1e307 if mode == "none" else 1.0
        np.testing.assert_allclose(A.numpy(), group_advantages(R, mode, eps=0.0).numpy() * scale, rtol=1e-12)
    # bug caught: eps = 0 and a flat group give 0/0 = NaN instead of "no signal" (A = 0)
    assert torch.all(group_advantages(torch.full((2, 3), 0.1, dtype=torch.float64), eps=0.0) == 0)


def test_kl_estimate_and_loss_overflow_name_their_arguments():
    # bug caught: exp(ref_logp − logp) overflows to inf silently
    with pytest.raises(ValueError, match="logp"):
        kl_estimate(torch.tensor([-800.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64), "k3")
    lp = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="logp|advantages"):
        grpo_loss(lp, lp - 800.0, lp, torch.tensor([-1.0, 1.0], dtype=torch.float64), 0.1)


def test_exact_kl_moments_where_pi_ref_over_pi_overflows():
    # bug caught: π_ref/π beyond float64 makes k3 = inf and E[k3] = inf·tiny = inf, though E[k3] = KL(π‖π_ref)
    pi = np.array([[1e-320, 1.0 - 1e-320]])
    q = np.array([[1e-10, 1.0 - 1e-10]])
    m = kl_estimator_moments(pi, q)
    np.testing.assert_allclose(m["k3"]["mean"], kl_divergence(pi, q), rtol=1e-6, atol=1e-12)
    assert np.all(np.isfinite(m["k3"]["var"]))
    g = kl_estimator_expected_gradient(pi, q, "k3")
    np.testing.assert_allclose(g, pi - q, atol=1e-15)  # closed form π − π_ref


def test_forward_kl_optimum_and_effective_beta_are_scale_free():
    # bug caught: λ − r loses β·π_ref to rounding when |r| ≫ β (λ = r_max, a division by 0)
    P = random_problem(n_prompts=3, n_responses=4, seed=2)
    base = forward_kl_optimal_policy(P.pi_ref, P.reward, 0.5)
    for c in (1e-300, 1e300):
        np.testing.assert_allclose(forward_kl_optimal_policy(P.pi_ref, c * P.reward, c * 0.5), base, atol=1e-12)
    pi = forward_kl_optimal_policy(P.pi_ref, P.reward, 0.7)
    be = effective_beta(pi, P.pi_ref, P.reward)
    np.testing.assert_allclose(be, 0.7, rtol=1e-8)
    np.testing.assert_allclose(effective_beta(pi, P.pi_ref, P.reward * 1e300), be * 1e300, rtol=1e-8)


def test_grpo_fixed_point_refuses_a_start_off_the_support():
    P = random_problem(n_prompts=1, n_responses=3, seed=0)
    start = np.array([[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="start"):
        grpo_fixed_point(P.pi_ref, P.reward, 0.1, 2, start=start)
    with pytest.raises(ValueError, match="flow_steps"):
        grpo_fixed_point(P.pi_ref, P.reward, 0.1, 2, flow_steps=-1)


def test_train_grpo_refuses_rewards_beyond_its_range():
    P = random_problem(n_prompts=1, n_responses=3, seed=0)
    with pytest.raises(ValueError, match="reward"):
        train_grpo(P.pi_ref, P.reward * 1e200, 0.1, steps=1)


def test_group_advantages_tiny_rewards():
    # bug caught: the std's squares underflow to 0 for rewards near 1e-300 and every advantage becomes 0
    R = torch.tensor([[1.0, 0.0, 2.0, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(group_advantages(R * 1e-300, "group", eps=0.0).numpy(),
                               group_advantages(R, "group", eps=0.0).numpy(), rtol=1e-12)
