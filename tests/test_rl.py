"""Chapter 3: policy-gradient pieces against autograd / finite differences, and the four trainers against
π*."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from prefkit.closed_form import kl_regularized_objective, optimal_policy, reward_kl_frontier
from prefkit.policies import TabularPolicy
from prefkit.policy_gradient import (
    exact_policy_gradient,
    kl_penalized_reward,
    ppo_clip_loss,
    reinforce_loss,
    rlhf_objective,
    rloo_advantages,
)
from prefkit.problems import random_problem, three_response_toy
from prefkit.rl import METHODS, train_rlhf
from prefkit.rlhf_pipeline import RLHFPipelineResult, classical_rlhf, gap_decomposition


def test_rloo_advantages_closed_form():
    r = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    A = rloo_advantages(r)
    np.testing.assert_allclose(A[0].numpy(), [1 - 4, 2 - 3.5, 6 - 1.5])
    np.testing.assert_allclose(A.sum(-1).numpy(), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.ones(3, 1))
    with pytest.raises(ValueError, match="rewards"):
        rloo_advantages(torch.tensor([[1.0, float("nan")]]))


def test_ppo_equals_reinforce_at_ratio_one_and_clips():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(4, 3, generator=g, dtype=torch.float64)
    l1 = ppo_clip_loss(logp, logp.detach(), adv, 0.2)
    l2 = reinforce_loss(logp, adv)
    (g1,) = torch.autograd.grad(l1, logp)
    (g2,) = torch.autograd.grad(l2, logp)
    assert torch.allclose(l1, -adv.mean()) and torch.allclose(g1, g2)  # same gradient, value −mean A
    # ratio beyond 1+ε with A > 0: clipped, zero gradient; the value is −(1+ε)·A
    lp = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    zero, two = torch.tensor([0.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    loss = ppo_clip_loss(lp, zero, two, 0.2)
    loss.backward()
    assert loss.item() == pytest.approx(-1.2 * 2.0) and lp.grad.item() == 0.0
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_clip_loss(lp, lp.detach(), lp.detach(), 1.5)
    with pytest.raises(ValueError, match="shape"):
        reinforce_loss(torch.zeros(3), torch.zeros(2))


def test_exact_gradient_formula_vs_autograd_and_finite_differences():
    P = random_problem(3, 5, seed=0, support=0.8)
    beta = 0.6
    pol = TabularPolicy(P.pi_ref)
    with torch.no_grad():
        pol.logits.add_(torch.randn(pol.logits.shape, generator=torch.Generator().manual_seed(1),
                                    dtype=torch.float64))
    ref_logp = torch.log(torch.as_tensor(P.pi_ref))
    J = rlhf_objective(pol.log_probs(), ref_logp, torch.as_tensor(P.reward), beta).sum()
    J.backward()
    pi = pol.log_probs().exp().detach().numpy()
    formula = exact_policy_gradient(pi, P.pi_ref, P.reward, beta)
    np.testing.assert_allclose(pol.logits.grad.numpy(), formula, atol=1e-12)
    # finite differences of the numpy objective on one logit
    z = pol.logits.detach().numpy().copy()
    x, y = 1, int(np.flatnonzero(P.pi_ref[1] > 0)[0])
    masked = lambda zz: np.where(P.pi_ref > 0, zz, -np.inf)  # noqa: E731
    h = 1e-6
    zp, zm = z.copy(), z.copy()
    zp[x, y] += h
    zm[x, y] -= h
    fd = (kl_regularized_objective(softmax(masked(zp), -1), P.pi_ref, P.reward, beta)[x]
          - kl_regularized_objective(softmax(masked(zm), -1), P.pi_ref, P.reward, beta)[x]) / (2 * h)
    assert fd == pytest.approx(formula[x, y], abs=1e-7)
    # and the gradient vanishes at π*
    ps = optimal_policy(P.pi_ref, P.reward, beta)
    assert np.max(np.abs(exact_policy_gradient(ps, P.pi_ref, P.reward, beta))) < 1e-12


def test_score_function_estimator_is_unbiased():
    """mean over many samples of ∇ reinforce_loss with A = KL-penalised reward ≈ −∇J (exact)."""
    P = three_response_toy()
    beta = 0.5
    pol = TabularPolicy(P.pi_ref)
    ref_logp = torch.log(torch.as_tensor(P.pi_ref))
    r = torch.as_tensor(P.reward)
    n = 200_000
    y = torch.multinomial(pol.log_probs().exp().detach(), n, replacement=True,
                          generator=torch.Generator().manual_seed(0))
    logp = pol.log_probs()
    rows = torch.zeros_like(y)
    A = r[rows, y] - beta * (logp[rows, y].detach() - ref_logp[rows, y])
    reinforce_loss(logp[rows, y], A).backward()
    est = -pol.logits.grad.numpy()
    exact = exact_policy_gradient(P.pi_ref, P.pi_ref, P.reward, beta)
    assert np.max(np.abs(est - exact)) < 0.01  # SE ≈ 0.002


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_trainers_converge_to_pi_star(method, seed):
    P = random_problem(3, 5, seed=seed + 10)
    res = train_rlhf(P.pi_ref, P.reward, 0.5, method=method, steps=250, k=8, seed=seed)
    kl = res.curve("kl/to_optimal")
    assert kl[-1] < 0.05 * kl[0] and kl[-1] < 0.01
    h = res.history[-1]
    assert h["cost/grad_steps"] == 250 * (4 if method == "ppo" else 1)
    assert h["cost/samples"] == (0 if method == "exact" else 250 * 3 * 8)
    np.testing.assert_allclose(res.pi_star, optimal_policy(P.pi_ref, P.reward, 0.5))


def test_log_linear_policy_converges_when_realizable():
    P = random_problem(4, 6, seed=3)  # r* linear in φ, so π* is log-linear in φ
    res = train_rlhf(P.pi_ref, P.reward, 0.5, method="exact", features=P.features, steps=300, lr=0.05)
    assert res.final_kl < 1e-4


def test_train_rlhf_errors():
    P = three_response_toy()
    with pytest.raises(ValueError, match="method"):
        train_rlhf(P.pi_ref, P.reward, 1.0, method="dqn")
    with pytest.raises(ValueError, match="beta"):
        train_rlhf(P.pi_ref, P.reward, 0.0)
    with pytest.raises(ValueError, match="k must"):
        train_rlhf(P.pi_ref, P.reward, 1.0, method="rloo", k=1)
    with pytest.raises(ValueError, match="shape"):
        train_rlhf(P.pi_ref, P.reward[:, :2], 1.0)


def test_frontier_is_monotone_and_dominates():
    P = random_problem(2, 5, seed=4)
    fr = reward_kl_frontier(P.pi_ref, P.reward, np.geomspace(0.05, 20, 12))
    # larger β: less KL, less reward
    assert np.all(np.diff(fr["kl"]) < 0) and np.all(np.diff(fr["reward"]) < 0)
    res = train_rlhf(P.pi_ref, P.reward, 0.3, method="rloo", steps=60, seed=0)
    # any policy's (KL, reward) lies on or below the frontier: E[r] ≤ β log Z + β KL(π‖π_ref) at every β
    from prefkit.closed_form import log_partition
    for beta in (0.1, 0.3, 1.0):
        for h in res.history[::10]:
            assert h["reward/expected"] <= np.mean(beta * log_partition(P.pi_ref, P.reward, beta)) + \
                beta * h["kl/to_ref"] + 1e-9


def test_gap_decomposition_adds_up():
    P = random_problem(3, 5, seed=5)
    res = classical_rlhf(P, 0.5, 300, seed=0, rl_kwargs={"steps": 80})
    assert isinstance(res, RLHFPipelineResult)
    g = res.gap
    assert g["regret/total"] == pytest.approx(g["regret/reward_model"] + g["regret/rl"], abs=1e-12)
    assert g["regret/reward_model"] >= 0
    J = lambda pi: np.mean(kl_regularized_objective(pi, P.pi_ref, P.reward, 0.5))  # noqa: E731
    assert g["regret/total"] == pytest.approx(J(res.pi_star_true) - J(res.pi), abs=1e-9)
    same = gap_decomposition(res.pi_star_true, P.pi_ref, P.reward, P.reward, 0.5)
    assert same["regret/total"] < 1e-12


@settings(max_examples=50, deadline=None)
@given(rewards=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=6),
       eps=st.floats(allow_nan=True, allow_infinity=True))
def test_fuzz_torch_pieces(rewards, eps):
    t = torch.tensor([rewards], dtype=torch.float64)
    try:
        A = rloo_advantages(t)
    except ValueError:
        return
    assert torch.all(torch.isfinite(A)) or not torch.all(torch.isfinite(t * len(rewards)))
    try:
        loss = ppo_clip_loss(torch.zeros_like(t), torch.zeros_like(t), torch.clamp(A, -1e6, 1e6), eps)
    except ValueError:
        return
    assert torch.isfinite(loss)


def test_train_rlhf_numeric_args_name_the_argument():
    P = three_response_toy()
    for kw, match in ((dict(lr_decay=-1.0), "lr_decay"), (dict(lr_decay=float("nan")), "lr_decay"),
                      (dict(baseline_decay=1.0), "baseline_decay"),
                      (dict(baseline_decay=-0.1), "baseline_decay"),
                      (dict(clip_eps=0.0), "clip_eps"), (dict(clip_eps=1.0), "clip_eps"),
                      (dict(lr=True), "lr"), (dict(lr=float("inf")), "lr"), (dict(seed=-1), "seed"),
                      (dict(seed=1.5), "seed"), (dict(steps=2.0), "steps"), (dict(k=True), "k must"),
                      (dict(policy="tabular"), "policy"), (dict(optimizer="rmsprop"), "optimizer"),
                      (dict(features=P.features, policy=TabularPolicy(P.pi_ref)), "features or policy")):
        with pytest.raises(ValueError, match=match):
            train_rlhf(P.pi_ref, P.reward, 1.0, **({"steps": 1} | kw))


def test_gap_decomposition_checks_shapes():
    P = random_problem(3, 5, seed=5)
    with pytest.raises(ValueError, match="pi_final"):
        gap_decomposition(P.pi_ref[:1], P.pi_ref, P.reward, P.reward, 0.5)
    with pytest.raises(ValueError, match="reward_model"):
        gap_decomposition(P.pi_ref, P.pi_ref, P.reward, P.reward[:, :4], 0.5)


@settings(max_examples=30, deadline=None)
@given(method=st.sampled_from(METHODS), beta=st.floats(allow_nan=True, allow_infinity=True),
       lr=st.one_of(st.none(), st.floats(-1, 1), st.just(float("nan"))), k=st.integers(0, 3),
       steps=st.integers(0, 3),
       baseline_decay=st.floats(-0.5, 1.5), lr_decay=st.floats(-1, 2), features=st.booleans(),
       seed=st.integers(0, 3))
def test_fuzz_train_rlhf(method, beta, lr, k, steps, baseline_decay, lr_decay, features, seed):
    P = random_problem(2, 3, seed=seed, support=0.7)
    try:
        res = train_rlhf(P.pi_ref, P.reward, beta, method=method, lr=lr, k=k, steps=steps,
                         baseline_decay=baseline_decay, lr_decay=lr_decay, seed=seed,
                         features=P.features if features else None)
    except ValueError:
        return
    assert len(res.history) == steps + 1
    assert all(np.isfinite(h["kl/to_optimal"]) and h["kl/to_optimal"] >= 0 for h in res.history)
    np.testing.assert_allclose(res.policy.sum(-1), 1.0)
    assert np.all(res.policy[P.pi_ref == 0] == 0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 50), beta=st.floats(1e-3, 1e3), scale=st.floats(0, 50), shape_ok=st.booleans())
def test_fuzz_gap_decomposition(seed, beta, scale, shape_ok):
    P = random_problem(2, 4, seed=seed, support=0.6)
    rng = np.random.default_rng(seed)
    r_hat = P.reward + scale * rng.normal(size=P.reward.shape)
    pi_final = optimal_policy(P.pi_ref, rng.normal(size=P.reward.shape), 1.0)
    if not shape_ok:
        with pytest.raises(ValueError):
            gap_decomposition(pi_final[:, :3], P.pi_ref, P.reward, r_hat, beta)
        return
    g = gap_decomposition(pi_final, P.pi_ref, P.reward, r_hat, beta)
    assert all(np.isfinite(v) for v in g.values())
    assert g["regret/reward_model"] >= 0 and g["kl/rl"] >= 0
    assert g["regret/total"] == pytest.approx(g["regret/reward_model"] + g["regret/rl"], abs=1e-9 * (1 + abs(
        g["regret/total"])))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3), m=st.integers(2, 4), seed=st.integers(0, 9), scale=st.floats(0, 5),
       ref=st.booleans())
def test_fuzz_presets_feed_the_pipeline(n, m, seed, scale, ref):
    """Any random_problem runs through preference sampling, a reward model and a few RL steps."""
    P = random_problem(n, m, seed=seed, reward_scale=scale, ref_from_features=ref)
    res = classical_rlhf(P, 0.5, 20, seed=seed, rl_kwargs={"steps": 2})
    assert all(np.isfinite(v) for v in res.gap.values())


def test_reductions_and_rloo_on_any_batch_shape():
    # gaps mutmut found (README, Mutation testing): reduction="sum"/"none" were never called, and RLOO was only
    # tested on (B, k) arrays, so a mean or max over the wrong axis survived
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], dtype=torch.float64)
    adv = torch.tensor([[0.5, -0.5], [2.0, -1.0]], dtype=torch.float64)
    per = -(logp * adv)
    assert torch.equal(reinforce_loss(logp, adv, reduction="none"), per)
    assert reinforce_loss(logp, adv, reduction="sum").item() == pytest.approx(per.sum().item(), rel=1e-15)
    assert reinforce_loss(logp, adv).item() == pytest.approx(per.mean().item(), rel=1e-15)
    assert ppo_clip_loss(logp, logp.detach(), adv, reduction="none").shape == (2, 2)
    assert ppo_clip_loss(logp, logp.detach(), adv, reduction="sum").item() == pytest.approx(-adv.sum().item())
    with pytest.raises(ValueError, match="reduction"):
        reinforce_loss(logp, adv, reduction="max")
    g = torch.Generator().manual_seed(0)
    R = torch.randn(3, 2, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 100.0]).view(1, 2, 1)
    want = R - (R.sum(-1, keepdim=True) - R) / 3  # each group of 4 on the last axis, its own leave-one-out mean
    torch.testing.assert_close(rloo_advantages(R), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rloo_advantages(R[0, 0]), want[0, 0], rtol=1e-12, atol=1e-12)  # one group, 1-D


def test_kl_penalized_reward_numpy_and_torch_agree_with_the_objective():
    # its mean under π is J(π) (Ouyang et al. 2022, Eq. 2), on numpy arrays and on tensors alike
    pi = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    ref = np.array([[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    r = np.array([[1.0, -0.5, 2.0], [0.0, 3.0, -1.0]])
    beta = 0.7
    want = r - beta * (np.log(pi) - np.log(ref))
    got = kl_penalized_reward(r, np.log(pi), np.log(ref), beta)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    mixed = kl_penalized_reward(torch.tensor(r), torch.tensor(np.log(pi)), np.log(ref), beta)  # a tensor in: torch
    np.testing.assert_allclose(mixed.numpy(), want, rtol=1e-14)
    np.testing.assert_allclose((pi * got).sum(-1), kl_regularized_objective(pi, ref, r, beta), rtol=1e-12)


def test_ppo_clips_both_sides():
    # ratio below 1 − ε with a negative advantage: the clipped term (1 − ε)·A is the smaller one, so the loss is
    # −(1 − ε)·A and its gradient is 0; above 1 + ε with a positive advantage: −(1 + ε)·A
    eps = 0.2
    logp = torch.log(torch.tensor([0.5, 1.5, 0.9], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([-1.0, 2.0, -3.0], dtype=torch.float64)
    per = ppo_clip_loss(logp, torch.zeros(3, dtype=torch.float64), adv, eps, reduction="none")
    torch.testing.assert_close(per, torch.tensor([0.8, -2.4, 2.7], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    per.sum().backward()
    assert logp.grad[0] == 0 and logp.grad[1] == 0 and logp.grad[2] != 0


def test_exact_policy_gradient_refuses_mass_off_the_reference_support():
    pi_ref = np.array([[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="pi_ref is 0"):
        exact_policy_gradient(np.array([[0.4, 0.4, 0.2]]), pi_ref, np.zeros((1, 3)), 0.5)
    g = exact_policy_gradient(np.array([[0.3, 0.7, 0.0]]), pi_ref, np.array([[1.0, 0.0, 5.0]]), 0.5)
    assert np.all(np.isfinite(g)) and g[0, 2] == 0


def test_rlhf_objective_is_per_prompt_and_keeps_the_support():
    # one J per prompt (a sum over the wrong axis, or over everything, survived mutation before this test)
    pi = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    ref = np.array([[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    r = np.array([[1.0, -0.5, 2.0], [0.0, 3.0, -1.0]])
    J = rlhf_objective(torch.tensor(np.log(pi)), torch.tensor(np.log(ref)), torch.tensor(r), 0.7)
    assert J.shape == (2,)
    np.testing.assert_allclose(J.numpy(), kl_regularized_objective(pi, ref, r, 0.7), rtol=1e-12)
    lp = torch.tensor(np.log([[0.5, 0.5, 0.0]]))  # π drops a response that π_ref keeps: not a policy of this problem
    with pytest.raises(ValueError, match="support"):
        rlhf_objective(lp, torch.tensor(np.log(ref[:1])), torch.tensor(r[:1]), 0.7)
    # every argument's shape is checked, the second one included; a float32 log-prob keeps its dtype
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_penalized_reward(r, np.log(pi)[:, :2], np.log(ref), 0.7)
    out = kl_penalized_reward(torch.tensor(r, dtype=torch.float32), torch.tensor(np.log(pi), dtype=torch.float32),
                              torch.tensor(np.log(ref)), 0.7)
    assert out.dtype == torch.float32
