"""Chapter 5's library parts and experiments: IPO's closed form (prefkit.optima), DPO's missing minimiser,
Xu's solution sets, Tajwar's table (prefkit.course.ch5_free_lunch)."""

import numpy as np
import pytest

from prefkit.course.ch5_free_lunch import (
    azar_dpo_run,
    azar_preferences,
    dpo_ray_losses,
    format_table,
    ipo_brute_force,
    tajwar_comparison,
    tajwar_margins,
    xu_same_class,
    xu_solution_sets,
)
from prefkit.dpo import fit_dpo, total_variation
from prefkit.optima import ipo_optimum

UNIFORM = np.full((1, 3), 1 / 3)


@pytest.mark.parametrize("tau", [0.05, 0.3, 4.0])
def test_ipo_full_triangle_closed_form(tau):
    prefs, w = azar_preferences()
    e = np.exp(np.array([1.0, 0.0, -1.0]) / (3 * tau))
    np.testing.assert_allclose(ipo_optimum(UNIFORM, prefs, tau, w)[0], e / e.sum(), rtol=1e-12)


@pytest.mark.parametrize("observed", [[(0, 1), (1, 2), (0, 2)], [(0, 1)], [(0, 1), (1, 2)]])
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_ipo_closed_form_vs_brute_force_and_fit(observed, tau):
    pi_ref = np.array([[0.5, 0.3, 0.2]])
    prefs, w = azar_preferences(observed)
    closed = ipo_optimum(pi_ref, prefs, tau, w)
    assert total_variation(ipo_brute_force(pi_ref, prefs, tau, w), closed) < 1e-6
    fit = fit_dpo(pi_ref, prefs, tau, weights=w, loss_type="ipo", tol=1e-12)
    assert total_variation(fit.pi, closed) < 1e-8


def test_ipo_stochastic_pair_target_is_p_minus_half_over_tau():
    """Both orders with weights p, 1 − p: the optimal log-ratio gap is (p − ½)/τ (Azar et al. 2023)."""
    p, tau = 0.8, 0.25
    prefs = np.array([[0, 0, 1], [0, 1, 0]])
    pi = ipo_optimum(np.array([[0.5, 0.5]]), prefs, tau, [p, 1 - p])
    assert np.log(pi[0, 0] / pi[0, 1]) == pytest.approx((p - 0.5) / tau, rel=1e-12)


def test_dpo_has_no_minimiser_on_deterministic_data():
    for beta in (0.1, 1.0, 10.0):
        L = dpo_ray_losses(beta, np.linspace(0, 20, 101))
        assert np.all(np.diff(L) < 0)
        assert dpo_ray_losses(beta, [40 / beta])[0] < 1e-15  # the infimum 0 is approached only as π(y_a) → 1
    res, curve = azar_dpo_run(0.5, steps=300)
    assert "[0] never lost" in res.obstruction and not res.converged  # Adam: flagged, no warning needed
    assert np.diff(curve[:, 0]).min() >= -1e-12 and curve[-1, 0] > 0.99
    _, curve_c = azar_dpo_run(0.1, observed=[(0, 1)], steps=300)
    assert curve_c[-1, 2] < 1e-4  # the unobserved action is drained


@pytest.mark.parametrize("seed", [0, 3])
def test_xu_same_class_agree(seed):
    """Linear RM and log-linear policy in the same features: RLHF's optimum is DPO's (issue 10)."""
    xu = xu_same_class(0.1, seed=seed)
    assert xu["tv"] < 1e-6
    rm = xu["reward_model"][0]
    # the linear reward model extrapolates to y3 as r(y1) − r(y2), as DPO's policy does
    assert rm[2] == pytest.approx(rm[0] - rm[1], abs=1e-12)


@pytest.mark.parametrize("beta", [0.3, 1.0])
def test_xu_solution_sets(beta):
    s = xu_solution_sets(beta, seed=1)
    assert s["rlhf_pi"][2] == 0.0 and s["rlhf_spread"] < 1e-12  # KL pins y3 at π_ref's 0
    assert s["rlhf_loss_gap"] < 1e-12 and s["member_loss_gap"] < 1e-12  # all minimise the DPO loss ...
    assert s["strict_tv"] > 0.98  # ... yet DPO's set reaches far beyond RLHF's one policy
    assert s["land_ref_tv"] < 1e-6 and s["land_init_tv"] < 1e-6 and s["land_init"][2] > 0
    # the predicted member keeps π0's ratio π(y3)/sqrt(π(y1)·π(y2)) (the gradient moves z1, z2 by ±s)
    g = lambda p: p[2] / np.sqrt(p[0] * p[1])  # noqa: E731
    assert g(s["land_init"]) == pytest.approx(g(s["pi0"]), rel=1e-6)
    assert s["member_rewards"][-1] < s["rlhf_reward"]  # mass on y3 (low r*) costs true reward


def test_tajwar_table_small():
    table = tajwar_comparison(400, 0.5, seeds=(0,), dpo_steps=60, rounds=4, rl_steps=60)
    names = [r["method"] for r in table]
    assert names[:3] == ["offline DPO", "online DPO", "RLHF (RM + RLOO)"]
    for r in table:
        assert np.isfinite(r["reward"]) and r["kl_to_ref"] >= 0
    assert table[0]["labels"] == table[1]["labels"] == table[2]["labels"] == 400
    assert table[1]["policy_samples"] == 800 and table[0]["policy_samples"] == 0
    # the counters: RLOO draws k = 8 responses per step and scores each with the reward model once
    assert table[2]["policy_samples"] == table[2]["reward_queries"] == 8 * 60 and table[2]["grad_steps"] == 60
    assert table[0]["reward_queries"] == table[1]["reward_queries"] == 0 and table[2]["rm_evals"] > 0
    assert table[0]["grad_steps"] == 60 and table[1]["grad_steps"] == 4 * (60 // 4)
    assert all(r["wall_s"] > 0 for r in table[:3])
    assert table[3]["reward"] >= max(r["reward"] for r in table[:3]) - 0.05  # π* is (about) the best
    md = format_table(table, ["method", "reward", "labels"])
    assert md.count("\n") == 5 and "| online DPO |" in md
    m = tajwar_margins(table)
    assert m["online_offline"] == pytest.approx(table[1]["reward"] - table[0]["reward"])


def test_bad_input():
    with pytest.raises(ValueError, match="observed"):
        azar_preferences([(0, 0)])
    with pytest.raises(ValueError, match="tau"):
        ipo_optimum(UNIFORM, *azar_preferences(), 0.0)
    with pytest.raises(ValueError, match="out of range"):
        ipo_optimum(UNIFORM, [[0, 0, 3]], 1.0)
