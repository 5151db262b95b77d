"""best_of_n: the exact best-of-n distribution and KL, against brute force, Monte Carlo and the bound."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit import best_of_n_kl, best_of_n_kl_bound, best_of_n_log_policy, best_of_n_policy, kl_divergence


def _brute(p, r, n):
    out = np.zeros_like(p)
    for t in itertools.product(range(p.shape[-1]), repeat=n):
        t = list(t)
        top = max(r[t])
        win = [y for y in t if r[y] == top]
        for y in win:
            out[y] += np.prod(p[t]) / len(win)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_brute_force_with_ties(n):
    p = np.array([0.1, 0.3, 0.15, 0.25, 0.2])
    r = np.array([1.0, 0.0, 1.0, 2.0, 0.0])
    assert np.allclose(best_of_n_policy(p, r, n), _brute(p, r, n), atol=1e-14)


def test_monte_carlo_within_standard_error():
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.3, 0.15, 0.25, 0.2])
    r = np.array([1.0, 0.0, 1.0, 2.0, 0.0])
    n, draws = 4, 100_000
    ys = rng.choice(5, size=(draws, n), p=p)
    picked = ys[np.arange(draws), np.argmax(r[ys] + 1e-9 * rng.random((draws, n)), axis=1)]
    freq = np.bincount(picked, minlength=5) / draws
    exact = best_of_n_policy(p, r, n)
    assert np.all(np.abs(freq - exact) <= 5 * np.sqrt(exact * (1 - exact) / draws))


def test_off_support_and_large_n():
    p = np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    r = np.array([[0.0, 9.0, 1.0], [2.0, 1.0, 0.0]])
    b = best_of_n_policy(p, r, 10**15)
    assert b[0, 1] == 0.0 and np.allclose(b, [[0, 0, 1], [1, 0, 0]], atol=1e-12)
    assert np.all(np.isfinite(best_of_n_log_policy(p, r, 7)[p > 0]))


def test_kl_exact_and_bounded():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(12), size=3)
    r = rng.integers(0, 4, size=(3, 12)).astype(float)
    for n in (1, 2, 5, 50):
        kl = best_of_n_kl(p, r, n)
        assert np.allclose(kl, kl_divergence(best_of_n_policy(p, r, n), p), atol=1e-12)
        assert np.all(kl <= best_of_n_kl_bound(n) + 1e-12)
    assert best_of_n_kl_bound(1) == 0.0
    assert np.allclose(best_of_n_kl_bound(np.array([1, 2, 10])), np.log([1, 2, 10]) - np.array([0, 0.5, 0.9]))


def test_continuous_limit_meets_the_bound():
    m = 20_000
    p = np.full(m, 1.0 / m)
    r = np.arange(m, dtype=float)
    for n in (2, 8, 64):
        assert abs(best_of_n_kl(p, r, n) - best_of_n_kl_bound(n)) < 0.01 * best_of_n_kl_bound(n)


def test_validation():
    p, r = np.array([0.5, 0.5]), np.array([0.0, 1.0])
    for bad in (0, 1.5, True, -2):
        with pytest.raises(ValueError, match="n"):
            best_of_n_policy(p, r, bad)
    with pytest.raises(ValueError, match="pi_ref"):
        best_of_n_policy([0.5, 0.6], r, 2)
    with pytest.raises(ValueError, match="shape"):
        best_of_n_policy(p, [0.0, 1.0, 2.0], 2)
    with pytest.raises(ValueError, match="reward"):
        best_of_n_policy(p, [0.0, np.nan], 2)
    with pytest.raises(ValueError, match="n"):
        best_of_n_kl_bound(0)


problems = st.integers(2, 8).flatmap(lambda m: st.tuples(
    st.lists(st.floats(0.01, 1.0), min_size=m, max_size=m),
    st.lists(st.integers(-3, 3), min_size=m, max_size=m)))


@settings(max_examples=60, deadline=None)
@given(problems, st.integers(1, 30))
def test_properties(prob, n):
    w, rw = prob
    p = np.array(w) / np.sum(w)
    r = np.array(rw, dtype=float)
    b = best_of_n_policy(p, r, n)
    assert np.all(b >= 0) and abs(b.sum() - 1) < 1e-12
    assert np.allclose(best_of_n_policy(p, r, 1), p, atol=1e-14)
    # more draws never lower the expected reward (the best of n+1 dominates the best of n)
    assert (best_of_n_policy(p, r, n + 1) * r).sum() >= (b * r).sum() - 1e-12
    assert best_of_n_kl(p, r, n) <= best_of_n_kl_bound(n) + 1e-12
