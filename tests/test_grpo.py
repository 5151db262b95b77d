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
                A = group_advantages(R, kw.get("scale_rewards", "group"), kw.get("eps", 1e-4))
            loss, _ = grpo_loss(logp, logp.detach(), ref[y], A, 0.0 if kw.get("kl_in") == "reward" else beta,
                                kl_estimator=kw.get("kl_estimator", "k3"))
            (g,) = torch.autograd.grad(loss, pol.logits)
            out[x] -= float(np.prod(pi[x, list(tup)])) * g[0].numpy()
    return out


@pytest.mark.parametrize("kw", [{}, {"scale_rewards": "none"}, {"kl_estimator": "k2"},
                                {"kl_estimator": "k1", "kl_in": "reward"},
                                {"scale_rewards": "none", "kl_estimator": "k1", "kl_in": "reward"},
                                # mutation testing (mutmut): eps not passed on, and the KL-gradient term applied
                                # with kl_in="reward" (k1's is 0, so only k2/k3 can tell), survived
                                {"eps": 0.5}, {"kl_estimator": "k3", "kl_in": "reward"}])
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


# ------------------------------------------------------------------------------------- mutation testing (issue 10)
def test_k3_is_non_negative_where_rho_rounds_to_one():
    # bug caught (hypothesis, a = 0, b = 1e-16): exp(log ρ) − 1 − log ρ rounds to −1.1e-16 where exp(log ρ) = 1.0;
    # k3 ≥ 0 holds again with expm1
    lr = torch.tensor([1e-16, -1e-16, 3e-17, 1e-12, -1e-12, 1e-8], dtype=torch.float64)
    k3 = kl_estimate(torch.zeros_like(lr), lr, "k3")
    assert torch.all(k3 >= 0)
    # ρ − 1 − log ρ = (log ρ)²/2 + O(log ρ³), here to within the rounding of expm1(log ρ), an ulp of log ρ
    assert np.all(np.abs(k3.numpy() - lr.numpy() ** 2 / 2) <= 4e-16 * np.abs(lr.numpy()))


def _grpo_by_hand(pi_ref, reward, beta, *, G, steps, lr, lr_decay, scale_rewards, kl_estimator, kl_in, eps, epsilon,
                  num_iterations, seed, features=None):
    """train_grpo with SGD, written out from TRL's GRPO: the same generator draws the groups, the advantages, ratio,
    clipping and KL estimate are spelled out, and θ ← θ − lr/(1 + lr_decay·t)·∇loss. Returns (π after each step,
    the sampled metrics of each step)."""
    ref = torch.log(torch.tensor(pi_ref, dtype=torch.float64))
    r = torch.tensor(reward, dtype=torch.float64)
    if features is None:
        theta = ref.clone().requires_grad_(True)

        def logp():
            return torch.log_softmax(theta, -1)
    else:
        phi = torch.tensor(features, dtype=torch.float64)
        theta = torch.zeros(phi.shape[-1], dtype=torch.float64, requires_grad=True)

        def logp():
            return torch.log_softmax(ref + phi @ theta, -1)

    def k(lp, ref_lp):
        d = ref_lp - lp
        return {"k1": -d, "k2": d**2 / 2, "k3": torch.expm1(d) - d}[kl_estimator]

    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(r.shape[0])[:, None]
    policies, logs = [], []
    for t in range(steps):
        with torch.no_grad():
            lp0 = logp()
            y = torch.multinomial(lp0.exp(), G, replacement=True, generator=gen)
            old = lp0[rows, y]
            R = r[rows, y] - (beta * k(old, ref[rows, y]) if kl_in == "reward" else 0.0)
            A = R - R.mean(-1, keepdim=True)
            if scale_rewards == "group":
                A = A / (R.std(-1, keepdim=True) + eps)
            elif scale_rewards == "batch":
                A = A / (R.std() + eps)
        for _ in range(num_iterations):
            lp = logp()[rows, y]
            ratio = torch.exp(lp - old)
            per = -torch.minimum(ratio * A, ratio.clamp(1 - epsilon, 1 + epsilon) * A)
            kl = k(lp, ref[rows, y])
            loss = (per + beta * kl).mean() if kl_in == "loss" else per.mean()
            (g,) = torch.autograd.grad(loss, theta)
            with torch.no_grad():
                theta -= lr / (1 + lr_decay * t) * g
        clipped = ((ratio < 1 - epsilon) & (A < 0)) | ((ratio > 1 + epsilon) & (A > 0))
        logs.append({"reward": r[rows, y].mean().item(), "reward_std": R.std(-1).mean().item(),
                     "kl": kl.detach().mean().item(), "clip_ratio": clipped.double().mean().item(),
                     "loss": loss.item()})
        with torch.no_grad():
            policies.append(logp().exp().numpy())
    return policies, logs


@pytest.mark.parametrize("kw", [
    dict(scale_rewards="group", kl_estimator="k1", kl_in="reward", eps=0.5),
    dict(scale_rewards="batch", kl_estimator="k2", kl_in="loss", eps=0.0, features=True),
    dict(scale_rewards="none", kl_estimator="k3", kl_in="loss", eps=1e-4),
])
def test_train_grpo_replayed_step_by_step(kw):
    # mutation testing (mutmut): the KL penalty in the reward (kl_in="reward"), the SGD branch, lr_decay's schedule,
    # the seeded generator, eps, epsilon, kl_estimator and the features were not passed on or not used, and the
    # history's step numbers, "policy", "reward_std" and "reward/expected" were unchecked; all survived
    P = random_problem(2, 3, seed=6, reward_scale=1.5)
    kw = dict(kw)
    if kw.pop("features", False):
        kw["features"] = np.random.default_rng(1).normal(size=(2, 3, 2))
    beta, steps = 0.4, 3
    res = train_grpo(P.pi_ref, P.reward, beta, group_size=4, steps=steps, lr=0.3, lr_decay=0.5, epsilon=0.1,
                     num_iterations=2, seed=3, optimizer="sgd", record_every=2, **kw)
    pis, logs = _grpo_by_hand(P.pi_ref, P.reward, beta, G=4, steps=steps, lr=0.3, lr_decay=0.5, epsilon=0.1,
                              num_iterations=2, seed=3, **kw)
    np.testing.assert_allclose(res.pi, pis[-1], atol=1e-12)
    assert [h["step"] for h in res.history] == [0, 2, 3]
    np.testing.assert_allclose(res.history[0]["policy"], P.pi_ref, atol=1e-15)
    for h in res.history[1:]:
        pi, log = pis[h["step"] - 1], logs[h["step"] - 1]
        np.testing.assert_allclose(h["policy"], pi, atol=1e-12)
        for key, want in log.items():
            np.testing.assert_allclose(h[key], want, rtol=1e-10, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(h["reward/expected"], np.mean(np.sum(pi * P.reward, -1)), rtol=1e-12)
        np.testing.assert_allclose(h["kl/to_ref"], np.mean(kl_divergence(pi, P.pi_ref)), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(h["kl/to_optimal"], np.mean(kl_divergence(pi, optimal_policy(P.pi_ref, P.reward,
                                                                                                  beta))), rtol=1e-9)
    assert res.config == {"group_size": 4, "scale_rewards": kw["scale_rewards"], "kl_estimator": kw["kl_estimator"],
                          "kl_in": kw["kl_in"], "eps": kw["eps"], "lr": 0.3, "steps": steps}
    assert res.beta == beta
    np.testing.assert_allclose(res.pi_star, optimal_policy(P.pi_ref, P.reward, beta), atol=1e-14)
    if kw["kl_in"] == "loss":
        assert max(log["clip_ratio"] for log in logs) > 0  # the second iteration clips: epsilon is exercised


def test_train_grpo_defaults_beta_zero_and_continuation():
    # mutation testing (mutmut): the defaults (group_size 8 = TRL's num_generations, 300 steps, lr 0.05, one
    # iteration, seed 0, no decay, every step recorded), β = 0 (no π* then) and training on from a given policy
    # survived
    P = random_problem(1, 3, seed=5)
    res = train_grpo(P.pi_ref, P.reward, 0.2, optimizer="sgd")
    assert [h["step"] for h in res.history] == list(range(301))
    pis, _ = _grpo_by_hand(P.pi_ref, P.reward, 0.2, G=8, steps=300, lr=0.05, lr_decay=0.0, scale_rewards="group",
                           kl_estimator="k3", kl_in="loss", eps=1e-4, epsilon=0.2, num_iterations=1, seed=0)
    np.testing.assert_allclose(res.pi, pis[-1], atol=1e-10)
    res0 = train_grpo(P.pi_ref, P.reward, 0.0, steps=2, optimizer="sgd")
    assert res0.pi_star is None and res0.beta == 0.0
    assert all("kl/to_optimal" not in h for h in res0.history)
    more = train_grpo(P.pi_ref, P.reward, 0.2, steps=0, policy=res.model)  # starts where res ended
    np.testing.assert_allclose(more.history[0]["policy"], res.pi, atol=1e-15)
    with pytest.raises(ValueError, match="features or policy"):
        train_grpo(P.pi_ref, P.reward, 0.2, steps=0, policy=res.model, features=np.ones((1, 3, 2)))
    r = P.reward / np.max(np.abs(P.reward)) * 1e100  # the range is closed: max |reward| = 1e100 is accepted
    assert len(train_grpo(P.pi_ref, r, 0.2, steps=0).history) == 1


def test_k3_moments_match_high_precision_sums():
    # mutation testing (mutmut): where π_ref/π is beyond float64, kl_estimator_moments sums Σ π·k3 and Σ π·k3² in
    # log space (_k3_moments); its sign of log ρ, its log k3 = log ρ + log1p(−(1 + log ρ)/ρ) and its branch for
    # log ρ > 30 were unchecked beyond the leading digits. The helper against 50-digit sums (mpmath), one response
    # at a time (log ρ from −5 to 700), and the public function on a row that overflows
    import mpmath

    from prefkit.grpo import _k3_moments

    mpmath.mp.dps = 50

    def exact(p_row, q_row):
        m1 = m2 = mpmath.mpf(0)
        for p, q in zip(p_row, q_row, strict=True):
            rho = mpmath.mpf(q) / mpmath.mpf(p)
            k = rho - 1 - mpmath.log(rho)
            m1, m2 = m1 + p * k, m2 + p * k**2
        return m1, m2

    for L in (-5.0, -0.5, 0.3, 2.0, 29.0, 30.1, 31.0, 40.0, 120.0, 700.0):  # log ρ on both sides of the branch at 30
        p, q = (np.array([0.5]), np.array([0.5 * np.exp(L)])) if L < 0 else (np.array([0.5 * np.exp(-L)]),
                                                                             np.array([0.5]))
        m1, m2 = exact(p, q)
        # float64 error: a few ulps of the exponent's terms (|log p|, 2·log k3 up to ~1400 ulps at log ρ = 700)
        np.testing.assert_allclose(_k3_moments(p, q), [float(m1), float(m2)], rtol=3e-14 * max(1.0, L / 30),
                                   err_msg=f"log rho = {L}")
    # rows where π_ref/π overflows (prompt 0) or only k3² does (prompt 1: π·k3² = 1/4, which the float64 sum loses
    # to inf·tiny), with ordinary responses beside them: E[k3] = KL(π‖π_ref) needs each of them, and prompt 1's
    # variance is of the order of its mean²
    pi = np.array([[1e-320, 0.3, 0.7 - 1e-320], [4e-320, 0.3, 0.7 - 4e-320]])
    pi_ref = np.array([[1e-7, 0.5, 0.5 - 1e-7], [1e-160, 0.5, 0.5 - 1e-160]])
    m = kl_estimator_moments(pi, pi_ref)
    for x in range(2):
        m1, m2 = exact(pi[x], pi_ref[x])
        np.testing.assert_allclose(m["k3"]["mean"][x], float(m1), rtol=1e-12)
        np.testing.assert_allclose(m["k3"]["var"][x], float(m2 - m1**2), rtol=1e-12)
    assert 0.1 < m["k3"]["var"][1] < 1.0


def test_kl_moments_ignore_responses_off_the_support():
    # mutation testing (mutmut): summing over every response (s = None, or p >= 0) instead of the support survived
    rng = np.random.default_rng(2)
    pi, pi_ref = rng.dirichlet(np.ones(3), size=2), rng.dirichlet(np.ones(3), size=2)
    pad = np.zeros((2, 1))
    m = kl_estimator_moments(np.hstack([pi, pad]), np.hstack([pi_ref, pad]))
    m0 = kl_estimator_moments(pi, pi_ref)
    for e in ("k1", "k2", "k3"):
        for v in ("mean", "var"):
            np.testing.assert_allclose(m[e][v], m0[e][v], rtol=1e-14, err_msg=f"{e} {v}")


def test_grpo_loss_clips_both_sides_and_epsilon_high():
    # mutation testing (mutmut): epsilon_high was never passed (ignoring it survived), and so was a negative
    # advantage with a ratio below 1 − ε_low (dropping the lower clip survived). Per sample,
    # −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)·A), against the values written out
    logp = torch.log(torch.tensor([0.5, 0.5, 0.1, 0.1], dtype=torch.float64)).requires_grad_(True)
    old = torch.log(torch.tensor([0.25, 1.0, 0.2, 0.05], dtype=torch.float64))  # ratios 2, 0.5, 0.5, 2
    adv = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64)
    loss, m = grpo_loss(logp, old, logp.detach(), adv, 0.0, epsilon_low=0.2, epsilon_high=0.28)
    # clipped at 1.28 (A > 0, ρ = 2) and at 0.8 (A < 0, ρ = 0.5); unclipped where the ratio moves against A
    want = np.array([-1.28 * 1.0, 0.8 * 1.0, -0.5 * 2.0, 2.0 * 2.0])
    np.testing.assert_allclose(loss.item(), want.mean(), rtol=1e-14)
    assert m["clip_ratio"] == 0.5
    (g,) = torch.autograd.grad(loss, logp)
    np.testing.assert_allclose(g.numpy(), [0.0, 0.0, -0.5 * 2.0 / 4, -2.0 * -2.0 / 4], rtol=1e-14)
    loss_sym, _ = grpo_loss(logp, old, logp.detach(), adv, 0.0, epsilon_low=0.2)  # ε_high defaults to ε_low
    np.testing.assert_allclose(loss_sym.item(), np.mean([-1.2, 0.8, -1.0, 4.0]), rtol=1e-14)


def test_forward_kl_optimum_off_the_support_and_at_float64s_edge():
    # mutation testing (mutmut): an off-support response with the largest reward (counting it, q >= 0, survived)
    # and rewards whose differences overflow (r_max − r = inf, handled as (r_max/2 − r/2)/β·2: every slip in that
    # branch survived)
    P = random_problem(2, 3, seed=3)
    r = P.reward.copy()
    q = np.hstack([P.pi_ref, np.zeros((2, 1))])
    r4 = np.hstack([r, r.max(-1, keepdims=True) + 5.0])  # the best reward, where π_ref = 0
    got = forward_kl_optimal_policy(q, r4, 0.5)
    np.testing.assert_allclose(got[:, :3], forward_kl_optimal_policy(P.pi_ref, r, 0.5), atol=1e-14)
    assert np.all(got[:, 3] == 0)
    r1 = np.array([[1.0, -1.0, 0.5]])
    q1 = np.array([[0.2, 0.5, 0.3]])
    np.testing.assert_allclose(forward_kl_optimal_policy(q1, r1 * 1e308, 1e308),  # r_max − r = 2e308 = inf
                               forward_kl_optimal_policy(q1, r1, 1.0), atol=1e-14)


def test_grpo_fixed_point_with_a_response_off_the_support():
    # mutation testing (mutmut): no test gave π_ref a zero; refusing the default start there (its π* is 0 where
    # π_ref is, and the check read q >= 0) survived. Dr. GRPO's fixed point is the forward-KL optimum at β·G/(G−1)
    P = random_problem(2, 3, seed=4, reward_scale=1.5)
    q = np.hstack([P.pi_ref, np.zeros((2, 1))])
    r = np.hstack([P.reward, np.full((2, 1), 9.0)])  # the best reward, off the support
    fp = grpo_fixed_point(q, r, 0.5, 3, scale_rewards="none")
    np.testing.assert_allclose(fp[:, :3], forward_kl_optimal_policy(P.pi_ref, P.reward, 0.5 * 3 / 2), atol=1e-10)
    assert np.all(fp[:, 3] == 0)


def test_huge_rewards_keep_their_groups():
    # mutation testing (mutmut): in the rescaled branch (|r| beyond 1e150) dropping scale_rewards made every group
    # use the whole batch's std (the one group of the test above hid it)
    R = torch.tensor([[1.0, 0.0, 2.0, 1.0], [5.0, -3.0, 0.5, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(group_advantages(R * 1e200, "group", eps=0.0).numpy(),
                               group_advantages(R, "group", eps=0.0).numpy(), rtol=1e-12)


def test_expected_kl_gradient_default_estimator_and_support():
    # mutation testing (mutmut): the default estimator ("k3", TRL's) and the restriction to the support survived
    rng = np.random.default_rng(5)
    pi, pi_ref = rng.dirichlet(np.ones(3), size=2), rng.dirichlet(np.ones(3), size=2)
    np.testing.assert_allclose(kl_estimator_expected_gradient(pi, pi_ref), pi - pi_ref, atol=1e-15)
    pad = np.zeros((2, 1))
    for e in ("k1", "k2", "k3"):
        g = kl_estimator_expected_gradient(np.hstack([pi, pad]), np.hstack([pi_ref, pad]), e)
        np.testing.assert_allclose(g, np.hstack([kl_estimator_expected_gradient(pi, pi_ref, e), pad]), atol=1e-15)


def test_expected_direction_refuses_too_many_groups():
    # mutation testing (mutmut): the limit on the groups to enumerate (C(G + n − 1, G) > 2e6) was never reached
    pi = np.full((1, 10), 0.1)
    with pytest.raises(ValueError, match="smaller group_size"):
        expected_grpo_direction(pi, pi, np.zeros((1, 10)), 0.1, 30)  # C(39, 30) = 211,915,132 groups
    assert expected_grpo_direction(pi[:, :2] * 5, pi[:, :2] * 5, np.zeros((1, 2)), 0.1, 30).shape == (1, 2)


# ----------------------------------------------------------------------------------- mutation run 5: the fixed point
def test_grpo_fixed_point_follows_the_flow_from_a_bad_start():
    """From a start almost all on the last response, Powell's hybrid method stalls on two of three prompts, and the
    fixed point is found by the fallback (``flow_steps``), here by its first polish, from π_ref; without the
    fallback it raises. Bugs caught (mutmut run 5: no test reached the fallback): its start and the candidates it
    polishes. The flow's steps: test_grpo_fixed_point_flow_polishes_as_it_goes."""
    P = random_problem(3, 3, seed=4, reward_scale=1.5)
    q, r = P.pi_ref, P.reward
    start = np.tile([1e-12, 1e-12, 1 - 2e-12], (3, 1))
    fp = grpo_fixed_point(q, r, 0.5, 6, start=start)
    np.testing.assert_allclose(fp, grpo_fixed_point(q, r, 0.5, 6), atol=1e-12)
    assert np.max(np.abs(expected_grpo_direction(fp, q, r, 0.5, 6)) / fp) <= 1e-10
    with pytest.raises(ValueError, match="no stationary point found for prompt"):
        grpo_fixed_point(q, r, 0.5, 6, start=start, flow_steps=0)


def test_grpo_fixed_point_flow_polishes_as_it_goes():
    """Six responses, β = 0.05, a start on the last response: the root-find fails from the start and from π_ref,
    and succeeds after a few flow steps. The flow polishes from π_ref first, every 100 steps and at its last
    step, so ``flow_steps=10`` is enough and a run stops as soon as a polish meets tol (issue 16: the flow used to
    run all 3000 steps before one polish, 4 s in test_fixed_points_closed_forms). Bugs caught: a flow step of the
    wrong sign or size (the polish after it fails: ``flow_steps=10`` raises), no polish at the last step (10
    steps raise), the π_ref polish skipped when flow_steps = 0 is not honoured (flow_steps=0 must raise)."""
    P = random_problem(2, 6, seed=0, reward_scale=3.0)
    q, r = P.pi_ref, P.reward
    start = np.tile(np.r_[np.full(5, 1e-12), 1 - 5e-12], (2, 1))
    fp = grpo_fixed_point(q, r, 0.05, 4, start=start, flow_steps=10)
    assert np.max(np.abs(expected_grpo_direction(fp, q, r, 0.05, 4)) / fp) <= 1e-10
    np.testing.assert_allclose(fp, grpo_fixed_point(q, r, 0.05, 4), atol=1e-12)
    for steps in (0, 1):
        with pytest.raises(ValueError, match="no stationary point found for prompt 0"):
            grpo_fixed_point(q, r, 0.05, 4, start=start, flow_steps=steps)


def test_grpo_fixed_point_with_one_response_on_a_prompts_support():
    """A prompt whose π_ref has one response: its fixed point is that response with probability 1 (and 0 elsewhere),
    next to an ordinary prompt. Bug caught (mutmut run 5: no test had such a prompt): the value set there."""
    P = random_problem(1, 3, seed=4, reward_scale=1.5)
    q = np.vstack([P.pi_ref, [0.0, 1.0, 0.0]])
    r = np.vstack([P.reward, [1.0, -2.0, 3.0]])
    fp = grpo_fixed_point(q, r, 0.5, 4)
    np.testing.assert_array_equal(fp[1], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(fp[:1], grpo_fixed_point(P.pi_ref, P.reward, 0.5, 4), atol=1e-15)
