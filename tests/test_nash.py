"""Von Neumann winner, regularised Nash (NLHF) and Nash-MD against exact answers."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit import (
    exploitability,
    kl_divergence,
    nash_equilibrium,
    nash_md,
    nash_md_step,
    optimal_policy,
    regularized_nash,
)

RPS = np.array([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])


def _random_P(rng, n):
    u = np.triu(rng.random((n, n)), 1)
    P = u + np.tril(1 - u.T, -1)
    np.fill_diagonal(P, 0.5)
    return P


def test_rps_winner_is_uniform_and_unexploitable():
    pi = nash_equilibrium(RPS)
    np.testing.assert_allclose(pi, 1 / 3, atol=1e-15)
    assert exploitability(RPS, pi) == pytest.approx(0.0, abs=1e-15)
    assert exploitability(RPS, np.array([1.0, 0, 0])) == pytest.approx(0.5)  # paper always beats rock


def test_condorcet_winner_is_pure():
    r = np.array([0.0, 2.0, 1.0])
    P = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
    np.testing.assert_allclose(nash_equilibrium(P), [0, 1, 0], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 6))
def test_winner_is_unexploitable_and_matches_a_grid_search(seed, n):
    rng = np.random.default_rng(seed)
    P = _random_P(rng, n)
    pi = nash_equilibrium(P)
    assert pi.min() >= 0 and pi.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.min(pi @ (P - 0.5)) >= -1e-9
    if n == 3:  # brute force on a simplex grid: nothing does better than the value 0
        g = np.array([(a, b, 60 - a - b) for a in range(61) for b in range(61 - a)]) / 60
        assert np.max(np.min(g @ (P - 0.5), axis=1)) <= 1e-12


def test_regularized_nash_is_the_fixed_point_and_unexploitable():
    rng = np.random.default_rng(0)
    for n in (3, 5):
        P = _random_P(rng, n)
        mu = rng.dirichlet(np.ones(n) * 2)
        for beta in (5.0, 0.3, 0.01):
            pi = regularized_nash(P, mu, beta)
            np.testing.assert_allclose(pi, optimal_policy(mu, P @ pi, beta), atol=1e-12)
            assert abs(exploitability(P, pi, pi_ref=mu, beta=beta)) < 1e-12
            other = rng.dirichlet(np.ones(n))
            assert exploitability(P, other, pi_ref=mu, beta=beta) > 0


def test_regularized_nash_brute_force_best_reply():
    """max over a grid of π' of P_β(π' ≻ π*) − ½ is ≤ 0: no reply gains (n = 3)."""
    rng = np.random.default_rng(4)
    P = _random_P(rng, 3)
    mu = np.array([0.5, 0.3, 0.2])
    beta = 0.2
    pi = regularized_nash(P, mu, beta)
    g = np.array([(a, b, 200 - a - b) for a in range(1, 200) for b in range(1, 200 - a)]) / 200
    gain = g @ P @ pi - beta * kl_divergence(g, np.broadcast_to(mu, g.shape)) + beta * kl_divergence(pi, mu) - 0.5
    assert gain.max() <= 1e-12


def test_off_support_is_zero():
    P = _random_P(np.random.default_rng(1), 4)
    mu = np.array([0.5, 0.0, 0.3, 0.2])
    pi = regularized_nash(P, mu, 0.5)
    assert pi[1] == 0.0 and pi.sum() == pytest.approx(1.0)


def test_nash_md_step_closed_form_and_iterates():
    rng = np.random.default_rng(2)
    P = _random_P(rng, 4)
    mu, pi = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4))
    beta, eta = 0.5, 0.4
    mix = pi ** (1 - eta * beta) * mu ** (eta * beta)
    mix /= mix.sum()
    want = mix * np.exp(eta * P @ mix)
    np.testing.assert_allclose(nash_md_step(pi, P, mu, beta, eta), want / want.sum(), atol=1e-15)
    its = nash_md(P, mu, beta, eta=eta, steps=3, pi0=pi)
    np.testing.assert_allclose(its[1], want / want.sum(), atol=1e-15)
    # decreasing steps converge to the regularised Nash equilibrium
    star = regularized_nash(P, mu, beta)
    T = 4000
    its = nash_md(P, mu, beta, eta=1 / (beta * (np.arange(T) + 1)), steps=T)
    assert kl_divergence(star, its[-1]) < 1e-6


@pytest.mark.parametrize("P, match", [
    (np.array([[0.5, 0.7], [0.7, 0.5]]), "not a preference matrix"),
    (np.array([[0.5, 1.2], [-0.2, 0.5]]), r"\[0, 1\]"),
    (np.ones((2, 3)) / 2, "square"),
])
def test_input_validation(P, match):
    with pytest.raises(ValueError, match=match):
        nash_equilibrium(P)


def test_argument_validation():
    mu = np.ones(3) / 3
    with pytest.raises(ValueError, match="beta"):
        regularized_nash(RPS, mu, 0.0)
    with pytest.raises(ValueError, match="pi_ref"):
        regularized_nash(RPS, np.ones(4) / 4, 1.0)
    with pytest.raises(ValueError, match="eta"):
        nash_md_step(mu, RPS, mu, 1.0, 2.0)
    with pytest.raises(ValueError, match="eta"):
        nash_md(RPS, mu, 1.0, eta=np.ones(2), steps=3)
    with pytest.raises(ValueError, match="both"):
        exploitability(RPS, mu, beta=1.0)


def test_support_enumeration_small():
    """Exhaustive support enumeration agrees with the LP on random games of 4 responses."""
    rng = np.random.default_rng(9)
    for _ in range(20):
        P = _random_P(rng, 4)
        A = P - 0.5
        lp = nash_equilibrium(P)
        found = None
        for k in (1, 3):  # generic symmetric zero-sum games have odd supports
            for S in itertools.combinations(range(4), k):
                S = list(S)
                M = np.vstack([A[np.ix_(S, S)].T, np.ones((1, k))])
                sol, *_ = np.linalg.lstsq(M, np.r_[np.zeros(k), 1.0], rcond=None)
                pi = np.zeros(4)
                pi[S] = sol
                if sol.min() >= -1e-12 and np.allclose(M @ sol, np.r_[np.zeros(k), 1.0]) and \
                        np.min(pi @ A) >= -1e-10:
                    found = pi
        assert found is not None
        np.testing.assert_allclose(lp, found, atol=1e-9)
