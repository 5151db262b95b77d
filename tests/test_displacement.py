"""Chapter 6, likelihood displacement: the library modules (displacement_theory, ches, displacement_problems,
displacement_training) and the chapter's experiments, each case against an exact answer (closed form, autograd)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from prefkit.ches import ches_per_pair, ches_score, response_hidden_states
from prefkit.course.ch6_displacement import (
    ches_displacement_correlation,
    ches_filter_experiment,
    displacement_drops,
    dpo_shared_optimum,
    format_mitigation_table,
    measure_mitigations,
    measure_unconstrained_features,
    mitigation_table,
    run_summary,
    top_ches_share,
    train_pairs,
)
from prefkit.displacement_problems import (
    embedding_population,
    tabular_chain_problem,
    tabular_one_pair_problem,
    unconstrained_features_problem,
    yes_no_never_problem,
)
from prefkit.displacement_theory import logp_chosen_velocity, logratio_gradient, squeeze_first_order
from prefkit.displacement_training import squeeze_trajectory, train_displacement
from prefkit.policies import LogLinearPolicy

# ------------------------------------------------------------------------------------------------- CHES


def _ches_direct(hw, hl, normalized=False):
    """CHES written out with explicit loops, the way the definition reads."""
    Tw, d = hw.shape
    Tl = hl.shape[0]
    sw = [sum(hw[k, j] for k in range(Tw)) for j in range(d)]
    sl = [sum(hl[k, j] for k in range(Tl)) for j in range(d)]
    cross = sum(sw[j] * sl[j] for j in range(d))
    own = sum(sw[j] * sw[j] for j in range(d))
    if normalized:
        return cross / (Tw * Tl) - own / (Tw * Tw)
    return cross - own


def test_ches_hand_example():
    hw = np.array([[1.0, 0.0], [0.0, 1.0]])  # sum (1, 1)
    hl = np.array([[2.0, 0.0]])  # sum (2, 0)
    assert ches_score(hw, hl) == pytest.approx(2.0 - 2.0)
    assert ches_score(hw, hl, length_normalized=True) == pytest.approx(2.0 / 2 - 2.0 / 4)
    assert ches_score(hw, hw) == pytest.approx(0.0)  # identical responses: CHES = 0


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 6), st.booleans(), st.data())
def test_ches_matches_direct_computation(Tw, Tl, d, normalized, data):
    hw = data.draw(arrays(np.float64, (Tw, d), elements=finite))
    hl = data.draw(arrays(np.float64, (Tl, d), elements=finite))
    got = ches_score(hw, hl, length_normalized=normalized)
    want = _ches_direct(hw, hl, normalized)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.data())
def test_ches_batched_equals_per_pair(B, Tw, Tl, d, data):
    hw = data.draw(arrays(np.float64, (B, Tw, d), elements=finite))
    hl = data.draw(arrays(np.float64, (B, Tl, d), elements=finite))
    got = ches_score(hw, hl)
    assert got.shape == (B,)
    np.testing.assert_allclose(got, ches_per_pair(list(hw), list(hl)), rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))
def test_ches_d_mismatch_is_value_error(Tw, Tl, dw, dl):
    hw, hl = np.ones((Tw, dw)), np.ones((Tl, dl))
    if dw == dl:
        ches_score(hw, hl)
    else:
        with pytest.raises(ValueError, match="hidden size mismatch"):
            ches_score(hw, hl)


@pytest.mark.parametrize("hw, hl, match", [
    (np.ones((0, 3)), np.ones((2, 3)), "hidden_chosen has no positions"),
    (np.ones((2, 3)), np.ones((3,)), "hidden_rejected must have"),
    (np.ones((2, 3)), np.full((2, 3), np.nan), "hidden_rejected contains NaN"),
    (np.ones((2, 2, 3)), np.ones((2, 3)), "both as"),
    (np.ones((2, 2, 3)), np.ones((3, 2, 3)), "batch size mismatch"),
])
def test_ches_bad_input(hw, hl, match):
    with pytest.raises(ValueError, match=match):
        ches_score(hw, hl)


def test_response_hidden_states_selects_the_predicting_positions():
    hidden = np.arange(7 * 2, dtype=float).reshape(7, 2)  # prompt of 3 tokens, response of 4
    rows = response_hidden_states(hidden, 3)
    assert rows.shape == (4, 2)
    np.testing.assert_array_equal(rows, hidden[2:6])
    with pytest.raises(ValueError, match="no response"):
        response_hidden_states(hidden, 7)
    with pytest.raises(ValueError, match="prompt_length"):
        response_hidden_states(hidden, 0)


# ------------------------------------------------------------------------------------------------- gradients


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(2, 8), elements=finite), st.data())
def test_logratio_gradient_is_ew_minus_el(z, data):
    n = z.shape[0]
    w = data.draw(st.integers(0, n - 1))
    l = data.draw(st.integers(0, n - 1).filter(lambda v: v != w))
    e = np.zeros(n)
    e[w], e[l] = 1.0, -1.0
    np.testing.assert_allclose(logratio_gradient(z, w, l), e, atol=1e-12)


def test_logratio_gradient_bad_input():
    with pytest.raises(ValueError, match="differ"):
        logratio_gradient([0.0, 1.0], 1, 1)
    with pytest.raises(ValueError, match="chosen"):
        logratio_gradient([0.0, 1.0], 2, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_velocity_matches_autograd_and_ches(seed):
    rng = np.random.default_rng(seed)
    n, d = 7, 3
    phi, z0 = rng.normal(size=(n, d)), rng.normal(size=n)
    w, l = 2, 5
    pi = np.exp(z0 - np.logaddexp.reduce(z0))
    pol = LogLinearPolicy(pi[None], phi[None])
    lp = pol.log_probs()[0]
    g_w = torch.autograd.grad(lp[w], pol.theta, retain_graph=True)[0]
    g_m = torch.autograd.grad(lp[w] - lp[l], pol.theta)[0]
    want = float(g_w @ g_m)
    got = logp_chosen_velocity(phi, z0, w, l)
    assert got == pytest.approx(want, rel=1e-10)
    # = −CHES − ⟨φ̄, φ_w − φ_l⟩ with φ the (single-position) hidden states
    ches = ches_score(phi[w][None], phi[l][None])
    assert got == pytest.approx(-ches - (pi @ phi) @ (phi[w] - phi[l]), rel=1e-10)


def test_squeeze_first_order_matches_a_small_step():
    pi = np.array([0.85, 0.08, 0.05, 0.015, 0.005])
    l, eta = 4, 1e-6
    z = torch.tensor(np.log(pi), requires_grad=True)
    torch.log_softmax(z, -1)[l].backward()
    z_new = (z - eta * z.grad).detach()
    dlogp = (torch.log_softmax(z_new, -1).numpy() - np.log(pi)) / eta
    np.testing.assert_allclose(squeeze_first_order(pi, l), dlogp, atol=1e-5)
    rate = squeeze_first_order(pi, l)
    assert rate[0] > 0 and np.all(rate[1:] < 0)  # peaky: only the argmax gains


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(2, 7), elements=st.floats(0.05, 1.0)), st.data())
def test_squeeze_first_order_is_the_exact_derivative(weights, data):
    pi = weights / weights.sum()
    l = data.draw(st.integers(0, len(pi) - 1))
    z0 = torch.tensor(np.log(pi), dtype=torch.float64)
    direction = torch.tensor(pi - np.eye(len(pi))[l])  # −∇_z log π_l

    def logp_along(eta):
        return torch.log_softmax(z0 + eta * direction, -1)

    _, jvp = torch.autograd.functional.jvp(logp_along, torch.tensor(0.0, dtype=torch.float64),
                                           torch.tensor(1.0, dtype=torch.float64))
    np.testing.assert_allclose(squeeze_first_order(pi, l), jvp.numpy(), atol=1e-12)


def test_squeeze_bad_input():
    with pytest.raises(ValueError, match="pi"):
        squeeze_first_order([0.5, 0.6], 0)
    with pytest.raises(ValueError, match="rejected"):
        squeeze_first_order([0.5, 0.5], 3)


# ---------------------------------------------------------------------------------------- the cases, trained


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.05), ("sgd", 2.0)])
def test_case1_tabular_one_pair_chosen_only_rises(optimizer, lr):
    run = train_displacement(tabular_one_pair_problem(seed=3), 0.1, steps=60, lr=lr, optimizer=optimizer)
    assert np.diff(run.logp_chosen, axis=0).min() >= -1e-12
    assert np.all(run.logp_chosen[-1] > run.logp_chosen[0] + 0.1)
    # only the two logits of the pair move: every other response keeps its ratio to the others
    lp = run.logp[-1] - run.logp[0]
    p = run.problem.preferences
    for x, w, l in p:
        others = np.setdiff1d(np.arange(lp.shape[1]), [w, l])
        assert np.ptp(lp[x, others]) < 1e-9


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_case2_chain_lowers_a_chosen_response(seed):
    run = train_displacement(tabular_chain_problem(seed), 0.1, steps=100, lr=0.05)
    b = run.logp[:, 0, 1]
    assert b[-1] < b[0] - 0.5  # b is chosen in (b, c), yet π(b) fell
    assert run.logp[-1, 0, 0] > run.logp[0, 0, 0]


def test_case3_unconstrained_features_displaces():
    prob = unconstrained_features_problem()
    x, w, l = prob.preferences[0]
    assert logp_chosen_velocity(prob.features[0], np.log(prob.pi_ref[0]), w, l) < 0
    run = train_displacement(prob, 0.1, steps=100, lr=0.05)
    assert run.logp_chosen[-1, 0] < run.logp_chosen[0, 0] - 1.0
    assert run.history and "mass/neither" in run.history[-1]


def test_case3_first_order_rate_predicts_one_sgd_step():
    m = measure_unconstrained_features(steps=3, seed=1)
    assert m["rate"] < 0 and m["first_step_error"] < 1e-3


@pytest.mark.parametrize("jitter, seed, optimizer, lr", [(0.0, None, "adam", 0.05), (0.0, None, "sgd", 2.0),
                                                         (0.1, 3, "sgd", 2.0)])
def test_case4_no_over_never_raises_yes(jitter, seed, optimizer, lr):
    prob = yes_no_never_problem(jitter, seed)
    run = train_displacement(prob, 0.1, steps=150, lr=lr, optimizer=optimizer)
    p0, p1 = np.exp(run.logp[0, 0]), np.exp(run.logp[-1, 0])
    yes, no = prob.names.index("Yes"), prob.names.index("No")
    assert p1[no] < p0[no]
    assert int(np.argmax(p1 - p0)) == yes
    assert p1[yes] > 0.5 > p0[yes]


def test_case5_squeeze_feeds_the_argmax():
    pi = np.array([0.85, 0.08, 0.05, 0.015, 0.005])
    out = squeeze_trajectory(pi, 4, steps=30, lr=0.5)
    p = out["pi"]
    assert out["argmax"] == 0
    assert p[-1, 4] < p[0, 4]
    gain = p[-1] - p[0]
    assert gain[0] > 0 and np.all(gain[1:] < 0)
    assert out["history"][-1]["top_gainer"] == 0


# ------------------------------------------------------------------------------------------------- population


def test_population_shapes_and_features():
    pop = embedding_population(6, n_responses=5, d=3, seed=1)
    assert pop.pi_ref.shape == (6, 5) and pop.features.shape == (6, 5, 3)
    for x in range(6):
        np.testing.assert_allclose(pop.features[x, 0], pop.hidden_chosen[x].sum(0))
        np.testing.assert_allclose(pop.features[x, 1], pop.hidden_rejected[x].sum(0))
    block = pop.problem(shared=False)
    assert block.features.shape == (6, 5, 18)
    assert pop.problem(keep=[0, 2]).preferences.shape == (2, 3)


@pytest.mark.parametrize("seed", [0, 3])
def test_ches_predicts_population_displacement(seed):
    pop = embedding_population(40, seed=seed)
    run = train_pairs(pop.problem(shared=False), 0.1, steps=20, lr=1.0, optimizer="sgd")
    drops, ches = displacement_drops(run), pop.ches()
    assert ches_displacement_correlation(ches, drops) > 0.6
    assert top_ches_share(ches, drops, 0.25) > 0.5  # a random quarter holds about 0.25


def test_train_pairs_sgd_step_is_per_pair():
    # one θ_x per prompt and plain SGD with lr per pair: a pair's trajectory does not depend on the others
    pop = embedding_population(6, n_responses=5, d=3, seed=4)
    keep = np.array([True, False, True, False, True, True])
    all_run = train_pairs(pop.problem(shared=False), 0.1, steps=10, lr=1.0, optimizer="sgd")
    sub_run = train_pairs(pop.problem(shared=False, keep=keep), 0.1, steps=10, lr=1.0, optimizer="sgd")
    np.testing.assert_allclose(displacement_drops(all_run)[keep], displacement_drops(sub_run), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_ches_filter_retrained_with_shared_theta(seed):
    pop = embedding_population(40, seed=seed)
    out = ches_filter_experiment(pop, steps=20, lr=0.05, seed=seed)
    assert out["removed_share"] > 0.6
    assert out["removed_share"] > out["random_removed_share"] + 0.05
    assert out["kept_dlogp_filtered"] > out["kept_dlogp_full"]
    assert np.isnan(out["drops_filtered"][~out["keep"]]).all() and out["keep"].sum() == 30


def test_ches_filter_bad_input():
    pop = embedding_population(4, n_responses=4, d=2, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        ches_filter_experiment(pop, fraction=1.0)
    with pytest.raises(ValueError, match="removes 0"):
        ches_filter_experiment(pop, fraction=0.05)


def test_correlation_and_share_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        ches_displacement_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="fraction"):
        top_ches_share([1, 2, 3], [1, 2, 3], 0.0)


# ------------------------------------------------------------------------------------------ runs, tables


def test_train_displacement_records_every_step_and_history():
    prob = tabular_chain_problem()
    run = train_displacement(prob, 0.1, steps=12, lr=0.05)
    assert run.logp.shape == (13, 1, 3)
    np.testing.assert_allclose(np.exp(run.logp[0]), prob.pi_ref, atol=1e-12)
    tr = run.tracked()
    assert tr["logps/chosen"].shape == (13,)
    # the tracked means agree with fit_dpo's own history at the last step
    assert tr["logps/chosen"][-1] == pytest.approx(run.history[-1]["logps/chosen"], abs=1e-12)
    assert tr["mass/neither"][-1] == pytest.approx(run.history[-1]["mass/neither"], abs=1e-12)
    sparse = train_displacement(prob, 0.1, steps=12, lr=0.05, record_every=4)
    assert sparse.logp.shape == (4, 1, 3)
    np.testing.assert_allclose(sparse.logp[-1], run.logp[-1], atol=1e-12)


def test_run_summary_on_tabular_one_pair():
    run = train_displacement(tabular_one_pair_problem(seed=1), 0.1, steps=30, lr=0.05)
    s = run_summary(run)
    assert s["frac_displaced"] == 0.0 and s["dlogp_chosen"] > 0
    assert s["accuracy"] == 1.0 and s["logratio_margin"] > 0


def test_mitigation_table_rows():
    pop = embedding_population(12, n_responses=6, d=3, seed=2)
    rows = mitigation_table(pop, steps=15)
    assert [r["method"] for r in rows] == ["DPO", "DPO + SFT (RPO)", "CHES filter", "IPO", "DPO, large beta"]
    text = format_mitigation_table(rows)
    assert text.count("\n") == len(rows) + 1
    # every row is scored on the same pairs: all 12, and the 9 kept by the CHES filter
    assert all("kept/dlogp_chosen" in r and "dlogp_chosen" in r for r in rows)


def test_run_summary_on_other_pairs():
    pop = embedding_population(8, n_responses=5, d=3, seed=0)
    run = train_pairs(pop.problem(shared=True, keep=[0, 1, 2]), 0.1, steps=10, lr=0.05, optimizer="adam")
    s_all = run_summary(run, pop.preferences)
    lc = run.logp[:, pop.preferences[:, 0], 0]
    assert s_all["dlogp_chosen"] == pytest.approx(float(np.mean(lc[-1] - lc[0])), abs=1e-12)
    trained = float(np.mean(lc[-1, :3] - lc[0, :3]))
    assert run_summary(run)["dlogp_chosen"] == pytest.approx(trained, abs=1e-12)
    with pytest.raises(ValueError, match="preferences"):
        run_summary(run, np.zeros((2, 2), int))


def test_embedding_population_bad_input():
    with pytest.raises(ValueError, match="n_responses"):
        embedding_population(3, n_responses=2)


# ------------------------------------------------------------------------------- displacement_step


def test_displacement_step_top_gainer_is_prompt_averaged():
    from prefkit.displacement_tracking import displacement_step

    p0 = np.full((2, 3), 1.0 / 3.0)
    p = np.array([[0.30, 0.37, 0.33],    # prompt 0: response 1 gains a little
                  [0.10, 0.10, 0.80]])   # prompt 1: response 2 gains a lot
    prefs = np.array([[0, 0, 1], [1, 0, 1]])
    out = displacement_step(np.log(p), np.log(p0), prefs)
    gain = (p - p0).mean(axis=0)
    assert out["top_gainer"] == 2  # the first pair's prompt alone would say 1
    assert out["top_gainer_gain"] == pytest.approx(gain[2], abs=1e-12)
    # each prompt counts once, however many pairs it has
    out2 = displacement_step(np.log(p), np.log(p0), np.array([[0, 0, 1], [0, 0, 2], [0, 1, 2], [1, 0, 1]]))
    assert out2["top_gainer"] == 2 and out2["top_gainer_gain"] == pytest.approx(gain[2], abs=1e-12)
    # one prompt: that prompt's top gainer, as before
    one = displacement_step(np.log(p), np.log(p0), np.array([[0, 0, 2]]))
    assert one["top_gainer"] == 1 and one["top_gainer_gain"] == pytest.approx(0.37 - 1 / 3, abs=1e-12)


# ------------------------------------------------------------------------------------------- mitigations, exact


def test_dpo_shared_optimum_is_a_stationary_point_and_matches_fit_dpo():
    pop = embedding_population(30, n_responses=6, d=3, seed=1)
    x, w, l = pop.preferences.T
    A = pop.features[x, w] - pop.features[x, l]
    opt = dpo_shared_optimum(A, 0.1)
    assert not opt["separable"] and opt["grad_norm"] < 1e-8
    # the same optimum from the library's exact solver, on the same log-linear policy
    run = train_displacement(pop.problem(shared=True), 0.1, steps=500, lr=0.05, optimizer="lbfgs")
    h = (run.logp[-1, x, w] - run.logp[0, x, w]) - (run.logp[-1, x, l] - run.logp[0, x, l])
    np.testing.assert_allclose(h, opt["margins"], atol=1e-4)


def test_dpo_shared_optimum_separable():
    A = np.array([[1.0, 0.2], [0.5, -0.1], [2.0, 1.0]])
    opt = dpo_shared_optimum(A)
    assert opt["separable"] and np.all(opt["margins"] > 0)


def test_measure_mitigations_removed_share_and_ipo_optimum():
    m = measure_mitigations(n_pairs=20, steps=200, seed=0)
    by = m["by_method"]
    assert m["rpo_removed"] == pytest.approx(1 - by["DPO + SFT (RPO)"]["displacement"] / by["DPO"]["displacement"])
    # a removed share of 1 means no pair's π(y_w) fell
    assert 0.0 <= by["DPO"]["displacement"] and m["rpo_removed"] <= 1.0
    assert m["ipo_margin_error"] < 0.25
    assert m["optimum_removed_accuracy"] >= m["optimum_kept_accuracy"]
