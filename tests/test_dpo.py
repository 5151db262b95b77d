"""prefkit.dpo and prefkit.optima: population DPO recovers π*, what partial coverage leaves free, the default
solver, and bad input."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.closed_form import optimal_policy
from prefkit.dpo import (
    ConvergenceWarning,
    dpo_loss_value,
    dpo_obstruction,
    fit_dpo,
    fit_dpo_online,
    total_variation,
)
from prefkit.optima import dpo_landing_point, dpo_solution_set
from prefkit.problems import random_problem, three_response_toy

TRL_KEYS = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected"}
DISPLACEMENT_KEYS = {"mass/neither", "mass/neither_gain", "top_gainer", "top_gainer_gain"}


@pytest.mark.parametrize("optimizer", ["lbfgs", "newton"])
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_population_dpo_recovers_pi_star(optimizer, beta):
    P = random_problem(2, 4, seed=3, reward_scale=2.0, support=0.75)  # one response per prompt off-support
    prefs, w = P.preference_probabilities("all")
    res = fit_dpo(P.pi_ref, prefs, beta, weights=w, optimizer=optimizer, steps=200, tol=1e-12)
    assert total_variation(res.pi, optimal_policy(P.pi_ref, P.reward, beta)) < 1e-6
    assert np.all(res.pi[P.pi_ref == 0] == 0)


def test_population_dpo_log_linear_realizable():
    P = random_problem(3, 5, seed=1, reward_scale=2.0)  # r* = φ·w*, so π* is log-linear in φ
    prefs, w = P.preference_probabilities("pi_ref")
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, features=P.features, optimizer="lbfgs", steps=200,
                  tol=1e-12)
    assert total_variation(res.pi, P.optimal_policy(0.5)) < 1e-6
    np.testing.assert_allclose(res.model.theta.detach().numpy(), P.info["w_star"] * 2.0 / 0.5, atol=1e-5)


def test_history_has_trl_metrics_and_displacement():
    P = three_response_toy()
    prefs, w = P.preference_probabilities()
    calls = []
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer="adam", steps=5,
                  callback=lambda t, pol: calls.append(t))
    assert calls == list(range(6)) and len(res.history) == 6
    for row in res.history:
        assert TRL_KEYS | DISPLACEMENT_KEYS | {"loss", "step"} <= set(row)
    assert res.history[0]["rewards/margins"] == 0.0 and res.history[0]["loss"] == pytest.approx(np.log(2))
    assert res.history[-1]["rewards/margins"] > 0


def test_sft_coef_adds_rpo_term():
    P = three_response_toy()
    prefs = np.array([[0, 0, 1], [0, 1, 2]])
    a = fit_dpo(P.pi_ref, prefs, 0.5, optimizer="adam", steps=0).history[0]["loss"]
    b = fit_dpo(P.pi_ref, prefs, 0.5, optimizer="adam", steps=0, sft_coef=0.3).history[0]["loss"]
    assert b - a == pytest.approx(-0.3 * np.log(1 / 3))


def test_weights_equal_duplicated_rows():
    P = random_problem(1, 4, seed=0)
    prefs = P.sample_preferences(40, np.random.default_rng(0))
    a = fit_dpo(P.pi_ref, prefs, 0.5, weights=np.full(40, 2.0), optimizer="sgd", steps=20)
    b = fit_dpo(P.pi_ref, np.concatenate([prefs, prefs]), 0.5, optimizer="sgd", steps=20)
    np.testing.assert_allclose(a.pi, b.pi, atol=1e-13)


def test_partial_coverage_solution_set_and_landing_point():
    P = random_problem(1, 5, seed=2, reward_scale=2.0)
    prefs, w = P.preference_probabilities("all")
    keep = np.array([{int(i), int(j)} in ({0, 1}, {1, 2}) for _, i, j in prefs])
    prefs, w = prefs[keep], w[keep]
    S = dpo_solution_set(P.pi_ref, P.reward, 0.5, prefs)
    assert S["components"].tolist() == [[0, 0, 0, 1, 2]] and S["n_free"] == 2
    rng = np.random.default_rng(0)
    members = [S["policy"]([rng.normal(0, 2, 3)]) for _ in range(4)]
    losses = [dpo_loss_value(m, P.pi_ref, prefs, 0.5, weights=w) for m in members]
    assert np.ptp(losses) < 1e-12 and total_variation(members[0], members[1]) > 0.05
    # the optimum: no policy does better than the members (brute force over random policies)
    for _ in range(50):
        q = rng.dirichlet(np.ones(5))[None]
        assert dpo_loss_value(q, P.pi_ref, prefs, 0.5, weights=w) >= losses[0] - 1e-12
    land = dpo_landing_point(P.pi_ref, P.reward, 0.5, prefs)
    for opt, kw in (("lbfgs", {}), ("sgd", dict(steps=1000, lr=20.0))):
        res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt, record_every=1000, **kw)
        assert total_variation(res.pi, land) < 1e-8, opt
    assert total_variation(land, P.optimal_policy(0.5)) > 0.1  # not π*


def test_online_dpo_improves_true_reward():
    P = random_problem(1, 6, seed=4, reward_scale=2.0)
    res = fit_dpo_online(P, 0.5, rounds=4, pairs_per_round=200, steps_per_round=30, seed=0)
    r = [h["reward/expected"] for h in res.history]
    assert r[-1] > r[0] + 0.3
    assert res.history[-1]["labels"] == 800 and res.history[-1]["cost/samples"] == 1600


@pytest.mark.parametrize("kwargs, match", [
    (dict(beta=0.0), "beta"), (dict(loss_type="nope"), "loss_type"),
    (dict(label_smoothing=0.6), "label_smoothing"),
    (dict(preferences=[[0, 0, 5]]), "out of range"), (dict(preferences=[[1, 0, 1]]), "prompt"),
    (dict(weights=[-1.0]), "weights"), (dict(weights=[1.0, 2.0]), "weights"),
    (dict(weights=[0.0]), "weights"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(sft_coef=-1), "sft_coef"), (dict(steps=-1), "steps"),
    (dict(preferences=np.zeros((0, 3), int)), "empty"), (dict(pi_ref=[[0.5, 0.5, 0.0]]), "pi_ref = 0"),
    (dict(preferences=[[0, 1, 1]]), "same response"), (dict(lr="x"), "lr"), (dict(lr=0.0), "lr"),
    (dict(sft_coef="x"), "sft_coef"), (dict(tol="x"), "tol"), (dict(tol=-1e-3), "tol"),
    (dict(tol=float("nan")), "tol"), (dict(record_every=0), "record_every"),
    (dict(optimizer=None), "optimizer"),
])
def test_bad_input(kwargs, match):
    args = dict(pi_ref=[[0.2, 0.3, 0.5]], preferences=[[0, 0, 2]], beta=0.5)
    args.update(kwargs)
    pi_ref, prefs, beta = args.pop("pi_ref"), args.pop("preferences"), args.pop("beta")
    with pytest.raises(ValueError, match=match):
        fit_dpo(pi_ref, prefs, beta, steps=args.pop("steps", 2), **args)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(2, 5), m=st.integers(1, 6), beta=st.floats(-0.5, 5.0),
       loss_type=st.sampled_from(["sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair",
                                  "apo_zero", "exo_pair"]))
def test_fuzz_fit_dpo(data, n, m, beta, loss_type):
    logits = data.draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n))
    pi_ref = np.exp(logits) / np.exp(logits).sum()
    prompt = st.integers(0, 19).map(lambda k: int(k == 19))  # out of range 1 time in 20
    response = st.integers(0, 19).map(lambda k: k % n if k < 19 else n)
    prefs = np.array(data.draw(st.lists(st.tuples(prompt, response, response), min_size=m, max_size=m)))
    opt = data.draw(st.sampled_from(["adam", "sgd", "lbfgs"]))
    try:
        res = fit_dpo(pi_ref[None], prefs, beta, loss_type=loss_type, label_smoothing=0.1, steps=5,
                      optimizer=opt)
    except ValueError as err:
        assert (beta <= 0 or "not finite" in str(err) or prefs[:, 0].max() > 0 or prefs[:, 1:].max() >= n
                or np.any(prefs[:, 1] == prefs[:, 2]))
        return
    assert np.all(np.isfinite(res.pi)) and np.allclose(res.pi.sum(-1), 1)
    assert not (res.converged and res.obstruction is not None)
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert isinstance(res.model, torch.nn.Module)
    assert res.policy.shape == res.model.log_probs().shape


# ----------------------------------------------------------------------------------------------------------
# no minimiser: detected (chapter 1's mle_obstruction / a linear program), reported, never "converged"


@pytest.mark.parametrize("optimizer", ["lbfgs", "newton"])
def test_no_minimiser_is_not_converged(optimizer):
    with pytest.warns(RuntimeWarning, match="no minimiser"):
        res = fit_dpo([[0.5, 0.5]], [[0, 0, 1]], 0.5, optimizer=optimizer, steps=100)
    assert res.pi[0, 0] > 1 - 1e-12  # the optimiser walked towards infinity, gradient ~0 ...
    assert not res.converged and "[0] never lost" in res.obstruction  # ... yet it is not a minimiser


def test_minimiser_exists_converges_without_warning():
    P = three_response_toy()
    prefs, w = P.preference_probabilities()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer="lbfgs", tol=1e-10)
        assert res.converged and res.obstruction is None
        for loss_type, eps in (("sigmoid", 0.1), ("ipo", 0.0), ("sppo_hard", 0.0)):  # coercive losses
            res = fit_dpo([[0.5, 0.5]], [[0, 0, 1]], 0.5, loss_type=loss_type, label_smoothing=eps,
                          optimizer="lbfgs", tol=1e-9)
            assert res.converged and res.obstruction is None, loss_type
    assert dpo_obstruction([[0.5, 0.5]], [[0, 0, 1]], loss_type="hinge") is None  # minimum attained


def test_obstruction_conditions():
    u4 = [[0.25] * 4]
    # responses never compared, or two groups never compared with each other, are not obstructions
    assert dpo_obstruction(u4, [[0, 0, 1], [0, 1, 0], [0, 2, 3], [0, 3, 2]]) is None
    assert "[2]" in dpo_obstruction(u4, [[0, 0, 1], [0, 1, 0], [0, 2, 3]])  # 2 never lost to 3
    assert dpo_obstruction(u4, [[0, 0, 1], [0, 1, 0]], weights=[1.0, 0.0]) is not None  # zero weight: no edge
    # robust with label smoothing eps: unbounded below iff the minority preference is below eps
    two = [[0, 0, 1], [0, 1, 0]]
    assert dpo_obstruction([[0.5, 0.5]], two, weights=[0.95, 0.05], loss_type="robust",
                           label_smoothing=0.1) is not None
    assert dpo_obstruction([[0.5, 0.5]], two, weights=[0.85, 0.15], loss_type="robust",
                           label_smoothing=0.1) is None
    # log-linear: separable pairs diverge, pairs seen both ways do not
    phi = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]])
    pi_ref = [[0.45, 0.45, 0.1]]
    assert "theta" in dpo_obstruction(pi_ref, [[0, 0, 1]], features=phi)
    assert dpo_obstruction(pi_ref, two, weights=[0.7, 0.3], features=phi) is None
    phi_flat = np.zeros((1, 3, 2))  # features that cannot move the margin: a minimiser (θ = anything)
    assert dpo_obstruction(pi_ref, [[0, 0, 1]], features=phi_flat) is None


# ----------------------------------------------------------------------------------------------------------
# the default is the exact solver; a run that stops short of its tolerance warns; the repr is short


@pytest.mark.parametrize("beta", [0.01, 0.02, 0.1, 10.0])
def test_default_fit_is_the_optimum(beta):
    """Issue 10: with default arguments fit_dpo returns π* (it used to be 200 Adam steps, far off at small β)."""
    P = random_problem(3, 5, seed=0, reward_scale=2.0, support=0.8)
    prefs, w = P.preference_probabilities()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_dpo(P.pi_ref, prefs, beta, weights=w)
    assert res.converged and res.history[-1]["grad_norm"] <= 1e-10
    assert total_variation(res.pi, optimal_policy(P.pi_ref, P.reward, beta)) < 1e-6
    adam = fit_dpo(P.pi_ref, prefs, beta, weights=w, optimizer="adam")  # training dynamics: explicit, no warning
    if beta <= 0.02:
        assert total_variation(adam.pi, optimal_policy(P.pi_ref, P.reward, beta)) > 0.01


def test_stopping_short_warns():
    P = random_problem(2, 4, seed=3, reward_scale=2.0)
    prefs, w = P.preference_probabilities()
    with pytest.warns(ConvergenceWarning, match="stopped after 1 steps"):
        res = fit_dpo(P.pi_ref, prefs, 0.1, weights=w, steps=1)
    assert not res.converged
    with pytest.warns(ConvergenceWarning, match="adam"):
        fit_dpo(P.pi_ref, prefs, 0.1, weights=w, optimizer="adam", steps=10, tol=1e-8)
    assert issubclass(ConvergenceWarning, RuntimeWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_dpo(P.pi_ref, prefs, 0.1, weights=w, optimizer="adam", steps=10)  # no tol: no warning
        assert not res.converged
        # with a tolerance, Adam stops as soon as it is met
        res = fit_dpo(P.pi_ref, prefs, 1.0, weights=w, optimizer="adam", steps=3000, tol=1e-3, lr=0.1)
        assert res.converged and res.history[-1]["step"] < 3000


def test_repr_is_short():
    P = random_problem(3, 5, seed=0)
    prefs, w = P.preference_probabilities()
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer="adam", steps=300)
    assert len(repr(res)) < 200 and "DPOResult(TabularPolicy 3x5" in repr(res)
    on = fit_dpo_online(P, 0.5, rounds=2, pairs_per_round=20, steps_per_round=5)
    assert len(repr(on)) < 200


@pytest.mark.parametrize("kwargs, match", [
    (dict(rounds=-1), "rounds"), (dict(rounds=0), "rounds"), (dict(pairs_per_round=0), "pairs_per_round"),
    (dict(steps_per_round=1.5), "steps_per_round"), (dict(seed=-1), "seed"), (dict(beta=0.0), "beta"),
    (dict(loss_type="nope"), "loss_type"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(accumulate="yes"), "accumulate"),
])
def test_online_bad_input(kwargs, match):
    args = dict(beta=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_dpo_online(three_response_toy(), args.pop("beta"), **args)


@pytest.mark.parametrize("accumulate", [False, True])
def test_online_dpo_rounds_by_hand(accumulate):
    """Each round samples its pairs from the *current* policy (not π_ref) with the one seeded generator, then takes
    fit_dpo's steps on the fresh pairs (or on all so far): replayed by hand, the policy and the history agree.
    Sampling from π_ref, reusing the first round's pairs or dropping a round would all differ (mutmut found such
    mutants alive before this test)."""
    from prefkit.policies import make_policy

    P = random_problem(2, 5, seed=6, reward_scale=2.0)
    kw = dict(rounds=3, pairs_per_round=40, steps_per_round=6, optimizer="adam", lr=0.1)
    on = fit_dpo_online(P, 0.5, seed=3, accumulate=accumulate, **kw)
    rng = np.random.default_rng(3)
    pol = make_policy(P.pi_ref, None)
    data, steps = [], 0
    for _ in range(kw["rounds"]):
        with torch.no_grad():
            pi_now = pol.log_probs().exp().numpy()
        data.append(P.sample_preferences(kw["pairs_per_round"], rng, policy=pi_now))
        prefs = np.concatenate(data) if accumulate else data[-1]
        res = fit_dpo(P.pi_ref, prefs, 0.5, optimizer="adam", lr=0.1, steps=kw["steps_per_round"], policy=pol,
                      record_every=kw["steps_per_round"])
        steps += res.history[-1]["cost/grad_steps"]
    np.testing.assert_allclose(on.pi, pol.log_probs().exp().detach().numpy(), rtol=0, atol=1e-12)
    last = on.history[-1]
    assert [h["round"] for h in on.history] == [0, 1, 2, 3] and last["cost/grad_steps"] == steps
    assert last["reward/expected"] == pytest.approx(float(np.mean((on.pi * P.reward).sum(-1))), rel=1e-12)
    assert last["loss"] == pytest.approx(res.history[-1]["loss"], rel=1e-12)
    assert on.loss_type == "sigmoid" and on.converged is False and on.beta == 0.5


def test_total_variation_value_and_result_fields():
    # TV is ½·Σ|p − q| per prompt, the largest over prompts (only "TV < tol" was asserted before: mutmut found
    # a factor 1.5 and a sum over both axes alive); and the result carries the β and loss type it was fitted with
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.1, 0.6, 0.3], [0.2, 0.3, 0.5]])
    assert total_variation(p, q) == pytest.approx(0.4, rel=1e-15)
    assert total_variation(q[::-1], p[::-1]) == pytest.approx(0.4, rel=1e-15)
    P = random_problem(2, 4, seed=1)
    prefs, w = P.preference_probabilities()
    res = fit_dpo(P.pi_ref, prefs, 0.3, weights=w, loss_type="ipo")
    assert res.beta == 0.3 and res.loss_type == "ipo" and res.converged is True


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired"])
def test_batch_sorting_losses_refuse_per_pair_weights(loss_type):
    # aot/aot_unpaired sort the log-ratios over the batch: output k is the k-th sorted position, not pair k, so a
    # per-pair weight (exact BT data: p and 1 − p) would weight the wrong term; equal weights change nothing
    P = random_problem(2, 4, seed=2)
    prefs, w = P.preference_probabilities()
    with pytest.raises(ValueError, match="sorts the log-ratios over the batch"):
        fit_dpo(P.pi_ref, prefs, 0.5, weights=w, loss_type=loss_type)
    with pytest.raises(ValueError, match="per-pair weights"):
        dpo_loss_value(P.pi_ref, P.pi_ref, prefs, 0.5, weights=w, loss_type=loss_type)
    assert dpo_obstruction(P.pi_ref, prefs, weights=np.full(len(prefs), 2.0), loss_type=loss_type) is None
    value = dpo_loss_value(P.pi_ref, P.pi_ref, prefs, 0.5, weights=np.ones(len(prefs)), loss_type=loss_type)
    assert value == pytest.approx(dpo_loss_value(P.pi_ref, P.pi_ref, prefs, 0.5, loss_type=loss_type), rel=1e-15)
