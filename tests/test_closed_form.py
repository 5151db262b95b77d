"""Chapter 2: the closed-form KL-optimal policy against brute force, limits and invariances."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

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
    assert ps.dtype == np.float32 and np.all(np.isfinite(ps))  # float32 in, float32 out
    np.testing.assert_allclose(ps.sum(-1), 1.0, rtol=1e-6)
    log_Z = log_partition(p32, r32, 0.1)
    assert log_Z.dtype == np.float64 and np.all(np.isfinite(log_Z))  # one per prompt: float64


@pytest.mark.parametrize("bad, match", [
    (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(pi_ref=[[0.5, 0.6]]), "pi_ref"), (dict(pi_ref=[[1.5, -0.5]]), "pi_ref"),
    (dict(reward=[[0.0, np.nan]]), "reward"), (dict(reward=[[0.0, np.inf]]), "reward"),
    (dict(reward=[[0.0, 1.0, 2.0]]), "shape"), (dict(reward=[[1e308, 0.0]], beta=1e-300), "beta"),
])
def test_errors_name_the_argument(bad, match):
    kw = dict(pi_ref=[[0.5, 0.5]], reward=[[0.0, 1.0]], beta=1.0) | bad
    for fn in (optimal_policy, log_partition, optimal_log_policy):
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


# ---------------------------------------------------------------- float32, chunks of rows, memory (issue 16)


def _f32_instance(seed, shape=(6, 40), scale=1.0):
    """float32 π_ref (rows that are distributions in float32) and r, and the same numbers in float64."""
    rng = np.random.default_rng(seed)
    p32 = softmax(rng.normal(size=shape), axis=-1).astype(np.float32)
    r32 = (scale * rng.normal(size=shape)).astype(np.float32)
    return p32, r32, p32.astype(np.float64), r32.astype(np.float64)


def test_float32_in_float32_out_agrees_with_float64_of_the_same_numbers():
    p32, r32, p64, r64 = _f32_instance(0)
    beta = 0.3
    ps32, ps64 = optimal_policy(p32, r32, beta), optimal_policy(p64, r64, beta)
    assert ps32.dtype == np.float32 and ps64.dtype == np.float64
    # the shift r/β − m(x) is float64; exp, product and division in float32: a few ulps, more for entries far
    # below the largest (the float32 rounding of r/β − m(x) is relative to its size)
    z = r64 / beta - np.max(r64 / beta, axis=-1, keepdims=True)
    np.testing.assert_array_less(np.abs(ps32 - ps64), 2.0**-24 * (6 + np.abs(z)) * ps64 + 1e-45)
    assert np.max(np.abs(ps32.sum(-1, dtype=np.float64) - 1)) < 1e-6
    # log Z is float64 for any input, computed in float64 from the float32 numbers given
    log_Z32 = log_partition(p32, r32, beta)
    assert log_Z32.dtype == np.float64
    np.testing.assert_allclose(log_Z32, log_partition(p64, r64, beta), rtol=1e-15, atol=1e-15)
    # implied reward: one float32 rounding in the ratio, one in the log, one in β·
    q32 = softmax(np.random.default_rng(1).normal(size=p32.shape), axis=-1).astype(np.float32)
    ir32, ir64 = implied_reward(q32, p32, beta), implied_reward(q32.astype(np.float64), p64, beta)
    assert ir32.dtype == np.float32
    np.testing.assert_array_less(np.abs(ir32 - ir64), 2.0**-24 * (4 * np.abs(ir64) + 2 * beta))
    # any float64 argument (or an int, or a list) gives float64
    assert optimal_policy(p32, r64, beta).dtype == np.float64
    assert optimal_policy(p64, r32, beta).dtype == np.float64
    assert implied_reward(q32, p64, beta).dtype == np.float64
    assert optimal_policy(p32, np.zeros(p32.shape, dtype=np.int64), beta).dtype == np.float64


def test_float32_keeps_log_space_exactness_at_r_over_beta_1e6():
    """r/β = 1e6 with β = 0.3 (r/β is not a float32): a float32 log π_ref + r/β would round to 1/16 and
    move π* by ~6%; prefkit shifts in float64 first."""
    p32 = np.array([[0.5, 0.25, 0.25], [0.2, 0.0, 0.8]], dtype=np.float32)
    r32 = np.array([[3e5, 3e5 - 0.3, 0.0], [-3e5, 7.0, -3e5 + 0.6]], dtype=np.float32)
    beta = 0.3
    p64, r64 = p32.astype(np.float64), r32.astype(np.float64)
    ps = optimal_policy(p32, r32, beta)
    assert ps.dtype == np.float32 and np.all(np.isfinite(ps)) and ps[1, 1] == 0  # π_ref = 0 masked
    with np.errstate(divide="ignore"):
        log_p = np.log(p64)
    want = softmax(log_p + (r64 / beta - np.max(np.where(p64 > 0, r64 / beta, -np.inf), -1, keepdims=True)), axis=-1)
    np.testing.assert_allclose(ps, want, rtol=1e-6, atol=1e-45)
    assert abs(ps[0, 1] / ps[0, 0] - 0.5 * np.exp((r64[0, 1] - r64[0, 0]) / beta)) < 1e-6
    log_Z = log_partition(p32, r32, beta)
    np.testing.assert_allclose(log_Z, log_partition(p64, r64, beta), rtol=1e-15)
    assert np.isfinite(log_Z).all() and abs(log_Z[0] - 1e6) < 1  # no overflow, the size of r/β
    ir = implied_reward(ps, p32, beta)
    assert np.all(np.isfinite(ir[ps > 0])) and np.all(ir[ps == 0] == -np.inf)  # π*[0, 2] = e^-1e6 underflows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_implied_reward_of_pi_star_is_reward_minus_beta_log_Z(dtype):
    """r = β log(π*/π_ref) + β log Z on π_ref's support (Rafailov et al. 2023, Eq. 5); −inf off it. Leading
    axes kept, zeros in π_ref, a large r/β."""
    rng = np.random.default_rng(7)
    pi_ref = softmax(rng.normal(size=(2, 3, 8)), axis=-1)
    pi_ref[0, 1, [2, 5]] = 0.0
    pi_ref /= pi_ref.sum(-1, keepdims=True)
    reward = rng.normal(size=pi_ref.shape) * 2 + 50.0  # a per-prompt shift, irrelevant to π*
    beta = 0.7
    p, r = pi_ref.astype(dtype), reward.astype(dtype)
    ps = optimal_policy(p, r, beta)
    ir = implied_reward(ps, p, beta)
    assert ir.shape == pi_ref.shape and ir.dtype == dtype
    on = pi_ref > 0
    assert np.all(ir[~on] == -np.inf) and np.all(np.isfinite(ir[on]))
    rebuilt = ir + beta * log_partition(p, r, beta)[..., None]
    tol = 1e-10 if dtype == np.float64 else 2e-4  # float32: rounding of π* and of β log(π*/π_ref) near 50
    np.testing.assert_allclose(rebuilt[on], r.astype(np.float64)[on], atol=tol, rtol=0)


def _stress_rows(dtype):
    """7 rows × 5: ordinary rows, a zero in π_ref, and a row whose terms all underflow (π_ref tiny where r/β
    is largest), which is redone by logsumexp."""
    rng = np.random.default_rng(11)
    p = softmax(rng.normal(size=(7, 5)), axis=-1)
    r = rng.normal(size=(7, 5))
    p[2, 3] = 0.0
    p[2] /= p[2].sum()
    # π_ref(y_0) subnormal, r/β largest there; exp(r/β − m) of y_1 subnormal: π* ≈ (0.96, 0.04, 0, 0, 0)
    tiny, gap = (1e-320, -740.0) if dtype == np.float64 else (1e-40, -95.0)
    p[4] = [tiny, 1.0, 0.0, 0.0, 0.0]
    r[4] = [0.0, 0.5 * gap, 3.0, 3.0, 3.0]  # r/β = (0, gap) at β = 0.5
    return p.astype(dtype), r.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", [3, 12, 25])
def test_chunks_of_rows_give_the_unchunked_result(monkeypatch, dtype, chunk):
    """_CHUNK_ENTRIES = 3 (one row per chunk), 12 (two rows, the last chunk one row), 25 (five rows): the
    same bits as one chunk, including the row redone by logsumexp in the middle of a chunk."""
    import prefkit.closed_form as cf

    p, r = _stress_rows(dtype)
    q = np.where(p > 0, np.random.default_rng(12).uniform(0.5, 1.0, size=p.shape), 0.0)  # π = 0 where π_ref = 0
    q = (q / q.sum(-1, keepdims=True)).astype(dtype)
    whole = (optimal_policy(p, r, 0.5), log_partition(p, r, 0.5), implied_reward(q, p, 0.5))
    monkeypatch.setattr(cf, "_CHUNK_ENTRIES", chunk)
    assert cf._row_slices(7, 5)[0] == max(1, chunk // 5)
    parts = (optimal_policy(p, r, 0.5), log_partition(p, r, 0.5), implied_reward(q, p, 0.5))
    for a, b in zip(whole, parts, strict=True):
        if dtype == np.float64:
            np.testing.assert_array_equal(a, b)
        else:  # numpy's float32 log/exp differ by a few ulps between their SIMD body and an array's tail
            np.testing.assert_allclose(a, b, rtol=2.0**-21, atol=2.0**-24)
    # the row redone by logsumexp is right (its terms π_ref·exp(r/β − m) are subnormal: a few digits at best)
    p64, r64 = p.astype(np.float64), r.astype(np.float64)
    with np.errstate(divide="ignore"):
        logits = np.log(p64[4]) + r64[4] / 0.5
    np.testing.assert_allclose(parts[0][4], softmax(logits), rtol=1e-6, atol=1e-45)
    assert parts[0][4, 1] > 0.01
    assert parts[1][4] == pytest.approx(logsumexp(logits), rel=1e-12)
    assert parts[0][2, 3] == 0 and parts[2][2, 3] == -np.inf


def test_errors_in_a_later_chunk_name_the_right_row(monkeypatch):
    import prefkit.closed_form as cf

    monkeypatch.setattr(cf, "_CHUNK_ENTRIES", 4)  # one row per chunk
    p = np.full((2, 3, 4), 0.25)
    p[1, 2] = [0.5, 0.5, 0.5, 0.0]
    for fn, args in ((optimal_policy, (p, np.zeros_like(p), 1.0)), (log_partition, (p, np.zeros_like(p), 1.0)),
                     (optimal_log_policy, (p, np.zeros_like(p), 1.0)),
                     (implied_reward, (np.full(p.shape, 0.25), p, 1.0))):
        with pytest.raises(ValueError, match=r"pi_ref is not a distribution: row \(1, 2\) sums to 1\.5"):
            fn(*args)
    r = np.zeros_like(p)
    r[1, 1, 3] = np.nan
    for fn in (optimal_policy, optimal_log_policy):
        with pytest.raises(ValueError, match="reward contains NaN"):
            fn(np.full(p.shape, 0.25), r, 1.0)
    r[1, 1, 3] = 1e300
    for fn in (log_partition, optimal_log_policy):
        with pytest.raises(ValueError, match="beta"):
            fn(np.full(p.shape, 0.25), r, 1e-10)
    # float32 rows are summed in float32, and again in float64 when close to the tolerance
    p32 = np.full((3, 4), 0.25, dtype=np.float32)
    p32[2, 0] += np.float32(2e-6)
    with pytest.raises(ValueError, match=r"row \(2,\)"):
        optimal_policy(p32, np.zeros_like(p32), 1.0)
    p32[2, 0] = np.float32(0.25) + np.float32(5e-7)  # within 1e-6: accepted
    assert optimal_policy(p32, np.zeros_like(p32), 1.0).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_implied_reward_huge_beta_and_tiny_pi_ref(dtype):
    """β·log(π/π_ref) that overflows the output dtype is a ValueError naming beta, not an inf; a π_ref so small
    that π/π_ref would overflow is handled by log π − log π_ref."""
    p = np.array([[0.5, 0.5]], dtype=dtype)
    q = np.array([[1e-3, 1 - 1e-3]], dtype=dtype)
    with pytest.raises(ValueError, match="beta"):
        implied_reward(p, q, 1e308 if dtype == np.float64 else 1e38)
    assert np.all(np.isfinite(implied_reward(p, q, 1e300 if dtype == np.float64 else 1e36)))
    tiny = 1e-310 if dtype == np.float64 else 1e-42  # subnormal: 0.5/tiny overflows
    q = np.array([[tiny, 1.0]], dtype=dtype)
    ir = implied_reward(np.array([[0.5, 0.5]], dtype=dtype), q, 1.0)
    q64 = q.astype(np.float64)
    np.testing.assert_allclose(ir, np.log(0.5) - np.log(q64), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_memory_is_the_output_plus_a_chunk(monkeypatch, dtype):
    """Peak memory of one call (tracemalloc sees numpy's buffers) is the output plus chunk-sized temporaries,
    not a temporary the size of the input (the pre-issue-16 code allocated two or three)."""
    import tracemalloc

    import prefkit.closed_form as cf

    monkeypatch.setattr(cf, "_CHUNK_ENTRIES", 4096)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(1000), 400).astype(dtype)  # 400k entries: 3.2 MB in float64
    p[:, 0] = 0.0  # zeros in π_ref: the masked path
    p /= p.sum(-1, keepdims=True)
    r = rng.normal(size=p.shape).astype(dtype)
    chunk_bytes = 8 * 4096 * 3  # a float64 chunk buffer and a few chunk-sized temporaries, generously
    for fn, args, out_bytes in ((optimal_policy, (p, r, 0.5), p.nbytes), (log_partition, (p, r, 0.5), 8 * 400),
                                (optimal_log_policy, (p, r, 0.5), p.nbytes),
                                (implied_reward, (p, p[::-1].copy(), 0.5), p.nbytes)):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        out = fn(*args)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        assert out.nbytes == out_bytes
        assert peak < out_bytes + chunk_bytes + 65536, (fn.__name__, peak, out_bytes)


# ---------------------------------------------------------------- optimal_log_policy in chunks, fast row sums


def _log_softmax_64(p, r, beta):
    """The float64 reference: log π_ref + r/β − m(x) − logsumexp(...), m(x) the largest r/β on the support."""
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    z = np.where(p > 0, r / beta, -np.inf)
    with np.errstate(divide="ignore"):
        logits = np.log(p) + (z - z.max(axis=-1, keepdims=True))
    return logits - logsumexp(logits, axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", [5, 12, 25, 1 << 18])
def test_optimal_log_policy_chunk_boundaries(monkeypatch, dtype, chunk):
    """7 rows in chunks of 1, 2 (the last chunk one row), 5 (the last two rows) and 7 rows: each row is the
    float64 log-softmax of its own inputs, including the zero in π_ref and the row redone by logsumexp. Catches
    a chunk that reads the previous chunk's m(x) or buffer, a last partial chunk dropped or misaligned, and a
    redone row written to the wrong place."""
    import prefkit.closed_form as cf

    p, r = _stress_rows(dtype)
    monkeypatch.setattr(cf, "_CHUNK_ENTRIES", chunk)
    out = optimal_log_policy(p, r, 0.5)
    assert out.dtype == dtype and out.shape == p.shape
    want = _log_softmax_64(p, r, 0.5)
    assert np.all(out[p == 0] == -np.inf) and np.all(np.isfinite(out[p > 0]))
    on = p > 0
    tol = 1e-13 if dtype == np.float64 else 2e-5  # float32: a few roundings of numbers up to |log π*| ≈ 740/95
    np.testing.assert_allclose(out[on], want[on], rtol=tol, atol=tol)
    np.testing.assert_allclose(out[4, :2], want[4, :2], rtol=1e-6)  # the row redone by logsumexp


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_optimal_log_policy_is_log_of_optimal_policy(lead):
    """log π* against log(π*) where π* has no underflow, and against the float64 log-softmax, with leading axes
    and zeros in π_ref. Catches a missing log π_ref, the wrong sign of log Z, and a lost leading shape."""
    rng = np.random.default_rng(21)
    p = softmax(rng.normal(size=(*lead, 9)), axis=-1)
    p[..., 4] = 0.0
    p /= p.sum(-1, keepdims=True)
    r = rng.normal(size=p.shape) * 3
    out = optimal_log_policy(p, r, 0.8)
    assert out.shape == p.shape and out.dtype == np.float64
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(out, np.log(optimal_policy(p, r, 0.8)), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(out, _log_softmax_64(p, r, 0.8), rtol=1e-13, atol=1e-13)


def test_optimal_log_policy_float32_in_float32_out():
    """float32 π_ref and r give float32 log π*, within a few float32 roundings of the float64 answer for the
    same numbers; any float64 or int argument gives float64. Catches a float32 path that adds log π_ref to r/β
    before shifting (an error of r/β's size), or returns the wrong dtype."""
    p32, r32, p64, r64 = _f32_instance(3, shape=(5, 1100), scale=30.0)
    beta = 0.25
    out = optimal_log_policy(p32, r32, beta)
    assert out.dtype == np.float32
    want = _log_softmax_64(p64, r64, beta)
    z = r64 / beta - np.max(r64 / beta, axis=-1, keepdims=True)
    # roundings of (r − max r)/β, log π_ref, exp, the product, log Z, and the two adds
    bound = 2.0**-24 * (2 * np.abs(z) + 2 * np.abs(np.log(p64)) + 2 * np.abs(want) + 12)
    np.testing.assert_array_less(np.abs(out - want), bound)
    assert optimal_log_policy(p32, r64, beta).dtype == np.float64
    assert optimal_log_policy(p64, r32, beta).dtype == np.float64
    assert optimal_log_policy(p32, np.zeros(p32.shape, dtype=np.int64), beta).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimal_log_policy_r_over_beta_1e6_stays_finite_and_exact(dtype):
    """r/β = 1e6: log π* is finite on the support, even where π* = e^-1e6 underflows (log(optimal_policy) is
    −inf there), and keeps log π_ref's digits. Catches log π_ref + r/β formed before subtracting m(x) (1e6
    absorbs log π_ref: π* off by ~6% in float32), and log π* taken as the log of π_ref·exp(z), which underflows."""
    p = np.array([[0.5, 0.25, 0.25], [0.2, 0.0, 0.8]], dtype=dtype)
    r = np.array([[3e5, 3e5 - 0.3, 0.0], [-3e5, 7.0, -3e5 + 0.6]], dtype=dtype)
    beta = 0.3
    out = optimal_log_policy(p, r, beta)
    assert out.dtype == dtype and out[1, 1] == -np.inf
    on = p > 0
    assert np.all(np.isfinite(out[on]))
    want = _log_softmax_64(p, r, beta)
    np.testing.assert_allclose(out[on], want[on], rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert abs(out[0, 2] + 1e6) < 1  # π* = e^-1e6: finite in log space
    assert optimal_policy(p, r, beta)[0, 2] == 0
    # log π*(y_1) − log π*(y_0) = log(1/2) + (r_1 − r_0)/β: float32 to a few roundings of numbers of size 1
    # ((r − max r)/β), float64 to a few roundings of r/β = 1e6 (r/β − m(x)), 2.2e-10
    d = float(out[0, 1]) - float(out[0, 0])
    exact = np.log(0.5) + (float(r[0, 1]) - float(r[0, 0])) / beta
    assert abs(d - exact) < (1e-6 if dtype == np.float32 else 5e-10)


def test_optimal_log_policy_float32_reward_span_overflows_float32():
    """r = ±3e38 in float32 with β = 1e10: r − max r = −6e38 overflows float32, but (r − max r)/β = −6e28 does
    not; the row is redone in float64. Catches a float32 path that returns −inf (or NaN) for a finite log π*."""
    p = np.array([[0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    r = np.array([[3e38, -3e38], [1.0, 0.0]], dtype=np.float32)
    out = optimal_log_policy(p, r, 1e10)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, _log_softmax_64(p, r, 1e10), rtol=1e-6)


@pytest.mark.parametrize("fn", [optimal_policy, log_partition, optimal_log_policy, implied_reward])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_long_rows_validation(fn, dtype):
    """Rows of 1027 entries (several blocks of numpy's pairwise sum): a row that sums to 1 + 2e-6 or 1 + 2e-5,
    a negative entry or a NaN near the end, each in row 1 of 2, is the same ValueError as for short rows, and a
    row off by 5e-7 is accepted. Catches checks that look only at the first row of a chunk or at a vectorised
    body and not its tail, and a negative π that the log of the ratio (implied_reward) does not see."""
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(1027), 2)

    def call(q):
        q = q.astype(dtype)
        if fn is implied_reward:
            return fn(q, p.astype(dtype), 0.5), fn(p.astype(dtype), q, 0.5)
        return (fn(q, rng.normal(size=q.shape).astype(dtype), 0.5),)

    names = ("pi", "pi_ref") if fn is implied_reward else ("pi_ref",)
    q = p.copy()
    q[1, -1] += 5e-7
    for out in call(q):
        assert out.dtype == (np.float64 if fn is log_partition else dtype)
    for change, match in (((1, -2), 2e-6), r"not a distribution: row \(1,\) sums to"), \
                         (((1, -2), 2e-5), r"not a distribution: row \(1,\) sums to 1\.00002,"), \
                         (((1, -1), -1e-3), "negative"), (((1, -3), np.nan), "NaN"):
        q = p.copy()
        (i, j), v = change
        q[i, j] = v if np.isnan(v) or v < 0 else q[i, j] + v
        for name in names:
            with pytest.raises(ValueError, match=f"^{name} (?:is|has|contains)") as err:
                if fn is implied_reward and name == "pi_ref":
                    fn(p.astype(dtype), q.astype(dtype), 0.5)
                elif fn is implied_reward:
                    fn(q.astype(dtype), p.astype(dtype), 0.5)
                else:
                    fn(q.astype(dtype), np.zeros(q.shape, dtype=dtype), 0.5)
            assert re.search(match, str(err.value)), str(err.value)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_implied_reward_negative_pi_found_in_the_log(dtype):
    """implied_reward finds a negative π from the invalid-operation flag of log(π/π_ref) instead of a min over
    π. Each case must still be the ValueError that check_distribution(pi), then (pi_ref), gives: a negative π
    where π_ref > 0, where π_ref = 0 (ratio −inf), in a row that also sums wrong, next to a bad π_ref, and where
    π_ref is negative too (ratio > 0: no flag); −0.0 is not negative. Catches a fused check that misses one of
    these or names pi_ref first."""
    def ir(pi, pi_ref):
        return implied_reward(np.array(pi, dtype=dtype), np.array(pi_ref, dtype=dtype), 0.5)

    for pi, pi_ref in (([[0.6, 0.6, -0.2]], [[0.2, 0.3, 0.5]]),  # π_ref > 0 there
                       ([[0.6, 0.6, -0.2]], [[0.5, 0.5, 0.0]]),  # π_ref = 0 there
                       ([[0.5, 0.6, -0.2]], [[0.2, 0.3, 0.5]]),  # and π sums to 0.9
                       ([[0.6, 0.6, -0.2]], [[0.5, 0.6, 0.5]]),  # and π_ref sums to 1.6
                       ([[0.6, 0.6, -0.2]], [[0.6, 0.6, -0.2]])):  # π_ref negative at the same entry
        with pytest.raises(ValueError, match="^pi has negative probabilities"):
            ir(pi, pi_ref)
    with pytest.raises(ValueError, match="^pi_ref has negative probabilities"):
        ir([[0.5, 0.5, 0.0]], [[0.6, 0.6, -0.2]])  # π = 0 where π_ref < 0: log(−0) = −inf, no flag
    out = ir([[0.5, 0.5, -0.0]], [[0.5, 0.25, 0.25]])
    assert out[0, 2] == -np.inf and np.all(np.isfinite(out[0, :2]))
