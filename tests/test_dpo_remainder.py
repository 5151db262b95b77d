"""Mutation run 11: hand-written checks for dpo.py's remaining functions (total_variation, dpo_loss_value,
dpo_obstruction), against closed forms and sums by hand."""

import math
import os
import re
import time
import warnings

import numpy as np
import pytest
import torch

from prefkit import ConvergenceWarning
from prefkit.closed_form import kl_divergence
from prefkit.dpo import dpo_loss_value, dpo_obstruction, fit_dpo, fit_dpo_online, total_variation
from prefkit.policies import make_policy
from prefkit.problems import random_problem

# mutmut calls every function through a trampoline, one stack frame more: stacklevel is checked outside it
UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ


def test_dpo_loss_value_ipo_closed_form():
    h = math.log(1.2) - math.log(0.8)  # log-ratio margin of π = (0.6, 0.4) against π_ref = (0.5, 0.5)
    beta = 0.5
    got = dpo_loss_value([[0.6, 0.4]], [[0.5, 0.5]], [[0, 0, 1]], beta, loss_type="ipo")
    assert got == pytest.approx((h - 1 / (2 * beta)) ** 2, rel=1e-12)
    sig = dpo_loss_value([[0.6, 0.4]], [[0.5, 0.5]], [[0, 0, 1]], beta)
    assert sig == pytest.approx(math.log1p(math.exp(-beta * h)), rel=1e-12)


@pytest.mark.parametrize(
    ("pi", "pi_ref"),
    [([[0.0, 1.0]], [[0.5, 0.5]]), ([[1.0, 0.0]], [[0.5, 0.5]]), ([[0.5, 0.0, 0.5]], [[0.25, 0.25, 0.5]])],
)  # the winner at 0; the loser at 0; the loser at 0 among three responses
def test_dpo_loss_value_zero_on_one_compared_response(pi, pi_ref):
    with pytest.raises(ValueError, match="^pi is 0 on a response of preferences"):
        dpo_loss_value(pi, pi_ref, [[0, 0, 1]], 0.5)


def test_dpo_loss_value_zero_off_the_preferences_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = dpo_loss_value([[0.5, 0.5, 0.0]], [[0.4, 0.4, 0.2]], [[0, 0, 1]], 0.5)
    assert got == pytest.approx(math.log(2.0), rel=1e-12)  # equal log-ratios: −log σ(0)


def test_total_variation_by_hand_per_prompt_and_names_its_arguments():
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.5, 0.25, 0.25], [0.6, 0.3, 0.1]])
    # prompt 0: ½(0 + .25 + .25) = .25; prompt 1: ½(.4 + 0 + .4) = .4 -> the largest, .4
    assert total_variation(p, q) == pytest.approx(0.4, rel=1e-14)
    assert total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5, rel=1e-14)
    # rows 1.0 and 0.5: a max over prompts, where a sum over everything would give 1.5
    assert total_variation([[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.5, 0.5]]) == 1.0
    for bad in ([0.5, 0.6], [5.0, -3.0]):  # not summing to 1; negative
        with pytest.raises(ValueError, match=r"^p\b"):
            total_variation(bad, [0.5, 0.5])
        with pytest.raises(ValueError, match=r"^q\b"):
            total_variation([0.5, 0.5], bad)


def _sigmoid_dpo_by_hand(pi, ref, prefs, beta, w):
    total = 0.0
    for (x, a, b), wk in zip(prefs, w, strict=True):
        m = beta * (math.log(pi[x][a] / ref[x][a]) - math.log(pi[x][b] / ref[x][b]))
        total += wk * math.log1p(math.exp(-m))
    return total / sum(w)


def test_dpo_loss_value_by_hand_and_per_loss_type():
    ref = [[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]]
    pi = [[0.5, 0.25, 0.25], [0.2, 0.0, 0.8]]  # a zero off the preferences: no warning, no error
    prefs = [(0, 0, 1), (0, 1, 2), (1, 2, 0)]
    w = [1.0, 2.0, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = dpo_loss_value(pi, ref, prefs, 0.7, weights=w)
    assert got == pytest.approx(_sigmoid_dpo_by_hand(pi, ref, prefs, 0.7, w), rel=1e-12)
    # IPO: (h − 1/(2β))², h the log-ratio margin (Azar et al. 2023)
    ipo = 0.0
    for (x, a, b), wk in zip(prefs, w, strict=True):
        h = math.log(pi[x][a] / ref[x][a]) - math.log(pi[x][b] / ref[x][b])
        ipo += wk * (h - 1 / (2 * 0.7)) ** 2
    assert dpo_loss_value(pi, ref, prefs, 0.7, weights=w, loss_type="ipo") == pytest.approx(ipo / sum(w), rel=1e-12)


def test_dpo_loss_value_overflow_is_a_value_error():
    ref = [[0.25, 0.25, 0.5]]
    with warnings.catch_warnings():  # the overflow is a ValueError, with no RuntimeWarning first
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^the loss overflows float64: beta too large$"):
            dpo_loss_value([[0.01, 0.98, 0.01]], ref, [(0, 0, 1)] * 2, 3e307)  # each 1.4e308


def test_dpo_obstruction_features_are_checked_by_name():
    pi_ref = [[0.5, 0.5]]
    with pytest.raises(ValueError, match=r"^features must have 3 dimension"):
        dpo_obstruction(pi_ref, [(0, 0, 1)], features=np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"^features has no columns"):
        dpo_obstruction(pi_ref, [(0, 0, 1)], features=np.ones((1, 2, 0)))
    # one feature column is fine: φ = (1, 0) per response; both orders of the pair, not separable -> None
    phi = np.array([[[1.0], [0.0]]])
    assert dpo_obstruction(pi_ref, [(0, 0, 1), (0, 1, 0)], features=phi) is None
    msg = dpo_obstruction(pi_ref, [(0, 0, 1)], features=phi)
    assert msg == (
        "a direction of theta raises every pair's margin (the pairs are separable), so the sigmoid loss "
        "keeps falling along it (no minimiser)"
    )


@pytest.mark.parametrize(
    ("p", "eps", "diverges"), [(0.25, 0.3, True), (0.35, 0.3, False), (0.1, 0.05, False), (0.04, 0.05, True)]
)
def test_robust_one_pair_both_orders_is_unbounded_iff_the_minority_is_below_eps(p, eps, diverges):
    """Documented closed form: weights p and 1 − p on the two orders of one pair, unbounded iff min(p, 1 − p) < ε."""
    msg = dpo_obstruction(
        [[0.5, 0.5]], [(0, 0, 1), (0, 1, 0)], weights=[1 - p, p], loss_type="robust", label_smoothing=eps
    )
    if diverges:
        assert msg == (
            f"a direction of the logits makes the robust loss fall linearly without bound "
            f"(label_smoothing={eps:g} exceeds the minority preference along it): no minimiser"
        )
    else:
        assert msg is None


def test_tabular_obstruction_names_the_prompt_and_the_group():
    # prompt 0 is fine (both orders); prompt 1: response 2 beat 0 and 1, and 0, 1 beat each other
    prefs = [(0, 0, 1), (0, 1, 0), (1, 2, 0), (1, 2, 1), (1, 0, 1), (1, 1, 0)]
    pi_ref = [[1 / 3] * 3, [1 / 3] * 3]
    msg = dpo_obstruction(pi_ref, prefs)
    assert msg == (
        "prompt 1: responses [2] never lost against the other responses [0, 1] they were compared with, "
        "so the sigmoid loss keeps falling as their log-ratio gap grows (no minimiser)"
    )


def test_online_by_hand_with_features_and_ipo():
    """fit_dpo_online replayed round by round with a log-linear policy and the IPO loss: the features and the loss
    type reach every round's fit_dpo, the history's own keys are computed from the policy after the round, fit_dpo's
    "step" is not carried over, and the obstruction is the last round's."""
    P = random_problem(2, 5, seed=6, reward_scale=2.0)
    kw = dict(rounds=2, pairs_per_round=30, steps_per_round=4, optimizer="adam", lr=0.1)
    t0 = time.perf_counter()
    on = fit_dpo_online(P, 0.5, loss_type="ipo", features=P.features, seed=5, **kw)
    elapsed = time.perf_counter() - t0
    rng = np.random.default_rng(5)
    pol = make_policy(P.pi_ref, P.features)
    for _ in range(kw["rounds"]):
        with torch.no_grad():
            pi_now = pol.log_probs().exp().numpy()
        prefs = P.sample_preferences(kw["pairs_per_round"], rng, policy=pi_now)
        res = fit_dpo(
            P.pi_ref,
            prefs,
            0.5,
            loss_type="ipo",
            features=P.features,
            optimizer="adam",
            lr=0.1,
            steps=kw["steps_per_round"],
            policy=pol,
            record_every=kw["steps_per_round"],
        )
    pi = pol.log_probs().exp().detach().numpy()
    np.testing.assert_allclose(on.pi, pi, rtol=0, atol=1e-12)
    assert type(on.model).__name__ == type(pol).__name__ != "TabularPolicy"
    assert on.loss_type == "ipo" and on.converged is False
    assert on.obstruction == res.obstruction
    last = on.history[-1]
    assert last["loss"] == pytest.approx(res.history[-1]["loss"], rel=1e-12)
    assert last["kl/to_ref"] == pytest.approx(float(np.mean(kl_divergence(pi, P.pi_ref))), rel=1e-12)
    assert all("step" not in h for h in on.history)
    walls = [h["time/wall"] for h in on.history]
    assert 0 <= walls[0] <= walls[1] <= walls[2] <= elapsed


def test_online_defaults_are_the_documented_ones():
    P = random_problem(1, 4, seed=2, reward_scale=2.0)
    on = fit_dpo_online(P, 0.5)
    explicit = fit_dpo_online(
        P,
        0.5,
        rounds=10,
        pairs_per_round=100,
        steps_per_round=50,
        seed=0,
        accumulate=False,
        optimizer="lbfgs",
        loss_type="sigmoid",
    )
    np.testing.assert_array_equal(on.pi, explicit.pi)
    last = on.history[-1]
    assert len(on.history) == 11 and last["labels"] == 1000 and last["cost/samples"] == 2000
    assert on.loss_type == "sigmoid"


def test_online_obstruction_of_a_single_pair_and_repr():
    # one pair per round is always separable: the sigmoid loss has no minimiser, and the result says so
    P = random_problem(1, 4, seed=2, reward_scale=2.0)
    on = fit_dpo_online(P, 0.5, rounds=2, pairs_per_round=1, steps_per_round=3)
    assert on.obstruction is not None and "no minimiser" in on.obstruction
    assert re.fullmatch(
        r"DPOResult\(TabularPolicy 1x4, loss_type='sigmoid', beta=0\.5, steps=2, loss=[-+.e0-9]+, "
        r"grad_norm=[-+.e0-9]+, converged=False, obstruction=yes\)",
        repr(on),
    ), repr(on)


def test_repr_of_a_fit():
    P = random_problem(3, 5, seed=0)
    prefs, w = P.preference_probabilities()
    res = fit_dpo(P.pi_ref, prefs, 0.25, weights=w, optimizer="adam", steps=7, loss_type="ipo")
    loss = res.history[-1]["loss"]
    assert repr(res).startswith(
        f"DPOResult(TabularPolicy 3x5, loss_type='ipo', beta=0.25, steps=7, loss={loss:.6g}, grad_norm="
    )
    assert repr(res).endswith(", converged=False)")


def test_robust_tabular_obstruction_reads_each_prompt_in_its_own_block():
    """Two prompts, every pair in both orders with equal weight: no minority below ε anywhere, so a minimiser
    exists. With prompt 1's responses indexed into prompt 0's block (x·n − y instead of x·n + y) the LP would find
    a diverging direction."""
    ref = [[1 / 3] * 3, [1 / 3] * 3]
    prefs = [(0, 0, 1), (0, 1, 0), (1, 1, 2), (1, 2, 1), (1, 2, 0), (1, 0, 2)]
    assert dpo_obstruction(ref, prefs, loss_type="robust", label_smoothing=0.2) is None
    lopsided = [0.5, 0.5, 0.5, 0.5, 0.9, 0.1]  # 0.1 < ε on prompt 1's pair (0, 2)
    assert dpo_obstruction(ref, prefs, weights=lopsided, loss_type="robust", label_smoothing=0.2) is not None


class _ThreeParameterPolicy(torch.nn.Module):
    """Free logits in three parameter tensors of two sizes, each for its own responses: a for responses 0–1, b for
    2, c for 3. (Writing a wrong slice back, k = numel for k += numel in _set_flat, still lands on π*: L-BFGS drives
    the gradient of the parameters the module actually holds to 0.)"""

    def __init__(self, pi_ref):
        super().__init__()
        self.register_buffer("ref_logp", torch.log(torch.as_tensor(pi_ref, dtype=torch.float64)))
        n_prompts = self.ref_logp.shape[0]
        self.a = torch.nn.Parameter(torch.zeros(n_prompts, 2, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.zeros(n_prompts, 1, dtype=torch.float64))
        self.c = torch.nn.Parameter(torch.zeros(n_prompts, 1, dtype=torch.float64))

    def log_probs(self):
        return torch.log_softmax(self.ref_logp + torch.cat([self.a, self.b, self.c], dim=1), dim=-1)


def test_lbfgs_writes_every_parameter_tensor_back():
    from prefkit.closed_form import optimal_policy

    P = random_problem(2, 4, seed=1, reward_scale=2.0)
    prefs, w = P.preference_probabilities("all")
    pol = _ThreeParameterPolicy(P.pi_ref)
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, policy=pol, optimizer="lbfgs", tol=1e-10, steps=500)
    assert res.converged
    assert total_variation(res.pi, optimal_policy(P.pi_ref, P.reward, 0.5)) < 1e-6


def test_convergence_warnings_point_at_the_caller_and_give_the_last_step():
    P = random_problem(2, 4, seed=1, reward_scale=2.0)
    prefs, w = P.preference_probabilities("all")
    with pytest.warns(ConvergenceWarning, match=r"^fit_dpo \(adam\) stopped after 5 steps") as record:
        res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer="adam", steps=5, tol=1e-12, record_every=1)
    assert res.converged is False and len(res.history) == 6
    assert record[0].filename == __file__ or UNDER_MUTMUT
    with pytest.warns(ConvergenceWarning, match="the loss has no minimiser") as record:
        fit_dpo([[0.5, 0.5]], [(0, 0, 1)], 0.5, steps=3)
    assert record[0].filename == __file__ or UNDER_MUTMUT


def test_not_finite_log_probs_on_either_side_say_training_diverged():
    from prefkit.dpo import _raise_not_finite

    ok, bad = torch.tensor([-0.5]), torch.tensor([float("-inf")])
    for lp_w, lp_l in ((ok, bad), (bad, ok)):
        with pytest.raises(ValueError, match=r"^training diverged: the policy's log-probabilities became"):
            _raise_not_finite(lp_w, lp_l, "adam", 0.1, 0.5, "sigmoid")


def test_online_obstruction_is_judged_with_the_features():
    """Three pairs a round: for free logits some response never lost (a tabular obstruction naming the prompt);
    with the features the verdict is the log-linear one, as fit_dpo gives it for the same policy and pairs."""
    P = random_problem(1, 5, seed=3, reward_scale=2.0)
    on = fit_dpo_online(P, 0.5, rounds=1, pairs_per_round=3, steps_per_round=2, features=P.features, seed=2)
    prefs = P.sample_preferences(3, np.random.default_rng(2), policy=P.pi_ref)
    assert on.obstruction == dpo_obstruction(P.pi_ref, prefs, features=P.features)
    assert dpo_obstruction(P.pi_ref, prefs) != on.obstruction


def test_online_default_steps_per_round():
    P = random_problem(1, 3, seed=2, reward_scale=2.0)
    on = fit_dpo_online(P, 0.5, rounds=2, pairs_per_round=10, optimizer="adam")
    assert on.history[-1]["cost/grad_steps"] == 2 * 50
