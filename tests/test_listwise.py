"""Listwise (Plackett-Luce) DPO: reduces to pairwise DPO at K = 2 and recovers π* on exact PL data."""

import numpy as np
import pytest
import torch

from prefkit import (
    fit_listwise_dpo,
    listwise_loss,
    optimal_policy,
    pl_log_probability,
    preference_loss,
    random_problem,
    ranking_probabilities,
    total_variation,
)


def test_k2_equals_pairwise_dpo():
    g = torch.Generator().manual_seed(0)
    lp = 5 * torch.randn(100, 2, generator=g, dtype=torch.float64)
    ref = 5 * torch.randn(100, 2, generator=g, dtype=torch.float64)
    for beta in (0.01, 0.5, 3.0):
        a = listwise_loss(lp, ref, beta)
        b = preference_loss(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], beta)
        assert float((a - b).abs().max()) < 1e-12


def test_loss_is_minus_pl_log_probability_of_implied_rewards():
    rng = np.random.default_rng(1)
    lp, ref = rng.standard_normal((7, 4)), rng.standard_normal((7, 4))
    beta = 0.7
    loss = listwise_loss(lp, ref, beta).numpy()
    for b in range(7):
        s = beta * (lp[b] - ref[b])
        assert loss[b] == pytest.approx(-pl_log_probability(s, [[0, 1, 2, 3]])[0], abs=1e-12)


def test_gradient_flows_to_logps_only():
    lp = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(3, 3, dtype=torch.float64)
    listwise_loss(lp, ref, 1.0).sum().backward()
    assert lp.grad is not None and torch.isfinite(lp.grad).all()


@pytest.mark.parametrize("k", [3, 4])
def test_exact_pl_data_recover_pi_star(k):
    pr = random_problem(2, 5, seed=3)
    R, w = ranking_probabilities(pr.pi_ref, pr.reward, k)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    for beta in (0.3, 2.0):
        res = fit_listwise_dpo(pr.pi_ref, R, beta, weights=w)
        assert total_variation(res.pi, optimal_policy(pr.pi_ref, pr.reward, beta)) < 1e-4


def test_validation():
    with pytest.raises(ValueError, match="logps"):
        listwise_loss(torch.zeros(3), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="beta"):
        listwise_loss(torch.zeros(3, 2), torch.zeros(3, 2), -1.0)
    pi_ref = np.full((1, 3), 1 / 3)
    with pytest.raises(ValueError, match="twice"):
        fit_listwise_dpo(pi_ref, [[0, 1, 1]], 1.0)
    with pytest.raises(ValueError, match="out of range"):
        fit_listwise_dpo(pi_ref, [[0, 1, 5]], 1.0)
    with pytest.raises(ValueError, match="k=4"):
        ranking_probabilities(pi_ref, np.zeros((1, 3)), 4)
