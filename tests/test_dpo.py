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


# ----------------------------------------------------------------------------------------------------------
# issue 16: sparse history by default, rows that reuse the optimiser's evaluation, checks once, scipy's graphs


def test_history_is_sparse_for_the_solvers_and_full_with_record_every_1():
    P = random_problem(3, 5, seed=0, reward_scale=2.0)
    prefs, w = P.preference_probabilities()
    sparse = fit_dpo(P.pi_ref, prefs, 0.5, weights=w)
    every = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, record_every=1)
    n = every.history[-1]["step"]
    assert n > 3 and [h["step"] for h in every.history] == list(range(n + 1))
    assert [h["step"] for h in sparse.history] == [0, n]  # entry 0 and the last, by default
    np.testing.assert_array_equal(sparse.pi, every.pi)  # recording does not change the run ...
    for key in set(every.history[-1]) - {"time/wall"}:  # ... nor the last row, nor the number of evaluations
        assert sparse.history[-1][key] == every.history[-1][key], key
    for opt, k, want in (("newton", None, None), ("adam", None, list(range(8))), ("adam", 3, [0, 3, 6, 7]),
                         ("sgd", 4, [0, 4, 7]), ("lbfgs", 2, None)):
        res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt, steps=7 if opt in ("adam", "sgd") else None,
                      record_every=k)
        steps = [h["step"] for h in res.history]
        last = res.history[-1]
        assert steps[0] == 0 and steps[-1] == last["cost/grad_steps"] and steps == sorted(set(steps)), opt
        if want is not None:
            assert steps == want, (opt, k)
        elif opt == "newton":
            assert steps == [0, last["step"]]
        else:
            assert all(s % 2 == 0 for s in steps[:-1]) and len(steps) >= last["step"] // 2


def test_history_rows_are_the_policy_at_their_step_and_cost_no_extra_evaluation():
    """Each row's loss and metrics are those of the policy after that step (rows reuse the optimiser's own
    evaluation, so a row one step stale would fail), and a run of n Adam steps evaluates the loss n + 1 times
    (it used to be 2n + 1: the history re-evaluated what the next step computes anyway)."""
    P = random_problem(2, 4, seed=5, reward_scale=2.0)
    prefs, w = P.preference_probabilities()
    for opt, kw in (("adam", dict(steps=6, lr=0.3)), ("sgd", dict(steps=6, lr=5.0)), ("lbfgs", {})):
        seen = {}

        def keep(t, pol, seen=seen):
            seen[t] = pol.log_probs().exp().detach().numpy().copy()

        res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt, record_every=1, callback=keep, **kw)
        assert [h["step"] for h in res.history] == sorted(seen)
        for h in res.history:
            pi_t = seen[h["step"]]
            assert h["loss"] == pytest.approx(dpo_loss_value(pi_t, P.pi_ref, prefs, 0.5, weights=w), rel=1e-12)
            x, i, j = prefs.T
            margin = 0.5 * (np.log(pi_t[x, i] / P.pi_ref[x, i]) - np.log(pi_t[x, j] / P.pi_ref[x, j]))
            assert h["rewards/margins"] == pytest.approx(np.sum(w * margin) / np.sum(w), rel=1e-9, abs=1e-15)
        assert res.history[1]["loss"] != res.history[0]["loss"]
        if opt != "lbfgs":
            assert res.history[-1]["cost/loss_evals"] == kw["steps"] + 1, opt


def test_callback_that_moves_the_policy_is_seen_by_the_next_step():
    """The optimiser steps on the gradient at the current parameters: a callback that moves them at step 0 (after
    the initial evaluation) makes the run continue from there, as when each step evaluated its own gradient."""
    from prefkit.policies import TabularPolicy

    P = random_problem(2, 4, seed=1, reward_scale=2.0)
    prefs, w = P.preference_probabilities()
    pi0 = np.random.default_rng(1).dirichlet(np.ones(4), 2)

    def move(t, pol):
        if t == 0:
            with torch.no_grad():
                pol.logits.copy_(torch.log(torch.as_tensor(pi0)))

    for opt, kw in (("sgd", dict(steps=3, lr=1.0)), ("adam", dict(steps=3, lr=0.1)), ("lbfgs", {})):
        moved = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt, callback=move, **kw)
        fresh = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt, policy=TabularPolicy(pi0), **kw)
        np.testing.assert_allclose(moved.pi, fresh.pi, rtol=0, atol=1e-12, err_msg=opt)
        assert moved.history[-1]["loss"] == pytest.approx(fresh.history[-1]["loss"], rel=1e-12)


def test_last_step_is_recorded_when_the_line_search_gives_up():
    """L-BFGS can stop before its step budget (its line search sees no decrease, here on the way to infinity
    with tol=0); with the sparse default the last row must still be that last step, not entry 0."""
    with pytest.warns(ConvergenceWarning, match="no minimiser"):
        res = fit_dpo([[0.5, 0.5]], [[0, 0, 1]], 0.5, tol=0.0)
    last = res.history[-1]
    assert len(res.history) == 2 and 0 < last["step"] == last["cost/grad_steps"] < 2000
    with torch.no_grad():
        logp = res.model.log_probs()
    assert last["logps/chosen"] == float(logp[0, 0]) and last["loss"] == pytest.approx(
        dpo_loss_value(res.pi, [[0.5, 0.5]], [[0, 0, 1]], 0.5), rel=1e-12)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair",
                                       "apo_zero", "exo_pair", "aot", "aot_unpaired", "apo_down", "discopop",
                                       "sigmoid_norm", "sft"])
def test_loop_loss_is_preference_loss(loss_type):
    """fit_dpo's loop calls the loss without preference_loss's per-call checks (inputs are checked once): on a
    policy away from π_ref (so the log-ratios are not all 0), its loss is still the weighted mean of
    preference_loss, RPO term included, for every loss type."""
    from prefkit.losses import LOSSES, preference_loss
    from prefkit.policies import TabularPolicy

    assert loss_type in LOSSES
    P = random_problem(2, 5, seed=1)
    prefs, w = P.preference_probabilities()
    if loss_type.startswith("aot"):
        w = None  # these sort over the batch: equal weights only
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(5), 2)
    eps = 0.1 if loss_type in ("exo_pair", "robust", "sigmoid") else 0.0
    res = fit_dpo(P.pi_ref, prefs, 0.7, weights=w, loss_type=loss_type, label_smoothing=eps, sft_coef=0.2,
                  optimizer="adam", steps=0, policy=TabularPolicy(pi))
    x, i, j = (torch.as_tensor(c) for c in prefs.T)
    lp, ref = torch.log(torch.as_tensor(pi)), torch.log(torch.as_tensor(P.pi_ref))
    per_pair = preference_loss(lp[x, i], lp[x, j], ref[x, i], ref[x, j], 0.7, loss_type, eps) - 0.2 * lp[x, i]
    ww = np.ones(len(prefs)) if w is None else w
    want = float(np.sum(ww * per_pair.numpy()) / np.sum(ww))
    assert res.history[0]["loss"] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_non_finite_loss_is_still_a_value_error():
    # checked once per evaluation on the scalar loss, with the messages of the old per-call checks
    with pytest.raises(ValueError, match="'ipo' loss is not finite"):
        fit_dpo([[0.2, 0.3, 0.5]], [[0, 0, 2]], 1e-320, loss_type="ipo", optimizer="adam", steps=2)
    with pytest.raises(ValueError, match="training diverged"):
        fit_dpo([[0.2, 0.3, 0.5]], [[0, 0, 2], [0, 1, 2]], 0.5, optimizer="adam", lr=1e308, steps=5)


def _obstruction_by_hand(pi_ref, prefs, weights=None):
    """The tabular DPO no-minimiser check written out: per prompt, the groups of responses connected by
    comparisons (breadth-first search), each given to chapter 1's mle_obstruction; the first group found (by
    prompt, then by its smallest response) is reported. Returns (prompt, group, kind, members) or None."""
    from prefkit.bradley_terry import mle_obstruction

    prefs = np.asarray(prefs)
    if weights is not None:
        prefs = prefs[np.asarray(weights) > 0]
    n_prompts, n = np.shape(pi_ref)
    for x in range(n_prompts):
        e = prefs[prefs[:, 0] == x][:, 1:]
        seen = set()
        for start in sorted(set(e.ravel().tolist())):
            if start in seen:
                continue
            comp, todo = {start}, [start]
            while todo:
                a = todo.pop()
                for i, j in e.tolist():
                    for u, v in ((i, j), (j, i)):
                        if u == a and v not in comp:
                            comp.add(v)
                            todo.append(v)
            seen |= comp
            members = np.array(sorted(comp))
            local = np.searchsorted(members, e[np.isin(e[:, 0], members)])
            found = mle_obstruction(local, n_items=len(members))
            if found is not None:
                return x, members[found[0]].tolist(), found[1], members.tolist()
    return None


def test_obstruction_several_groups_and_prompts():
    u6 = [[1 / 6] * 6] * 3
    # prompt 0: {0, 1} seen both ways, {2, 3} seen both ways (no obstruction); prompt 1: {0, 1, 2} a cycle, fine,
    # and {3, 4}: 3 never lost, {5}... never compared; prompt 2: {4, 5} with 5 never lost, then {0, 1, 2} with
    # 2 never won: the report names prompt 1's group first, and within prompt 2 the group of smallest response
    prefs = [[0, 0, 1], [0, 1, 0], [0, 2, 3], [0, 3, 2],
             [1, 0, 1], [1, 1, 2], [1, 2, 0], [1, 3, 4],
             [2, 5, 4], [2, 0, 2], [2, 1, 2], [2, 0, 1], [2, 1, 0]]
    msg = dpo_obstruction(u6, prefs)
    assert msg == ("prompt 1: responses [3] never lost against the other responses [4] they were compared with, so "
                   "the sigmoid loss keeps falling as their log-ratio gap grows (no minimiser)")
    msg = dpo_obstruction(u6, prefs, weights=[1.0] * 7 + [0.0] + [1.0] * 5)  # drop prompt 1's bad pair
    assert msg.startswith("prompt 2: responses [2] never won against the other responses [0, 1]"), msg
    assert dpo_obstruction(u6, prefs[:7]) is None
    assert dpo_obstruction(u6, prefs[:7], loss_type="robust") is None


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_prompts=st.integers(1, 3), n=st.integers(2, 7), m=st.integers(1, 14))
def test_obstruction_matches_the_check_written_out(data, n_prompts, n, m):
    """scipy's weak and strong components over all prompts at once give the obstruction that the check written
    out per prompt and per group (breadth-first search, mle_obstruction) gives: same prompt, same group, same
    words."""
    pair = st.tuples(st.integers(0, n_prompts - 1), st.integers(0, n - 1), st.integers(0, n - 2))
    rows = [(x, i, j if j < i else j + 1) for x, i, j in data.draw(st.lists(pair, min_size=m, max_size=m))]
    weights = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=m, max_size=m))
    if max(weights) == 0:
        weights[0] = 1.0
    pi_ref = np.full((n_prompts, n), 1 / n)
    got = dpo_obstruction(pi_ref, rows, weights=weights)
    want = _obstruction_by_hand(pi_ref, rows, weights)
    assert (got is None) == (want is None), (got, want)
    if want is not None:
        x, group, kind, members = want
        rest = sorted(set(members) - set(group))
        assert got.startswith(f"prompt {x}: responses {group} {kind} against the other responses {rest} "), got
