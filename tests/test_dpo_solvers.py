"""fit_dpo's exact solvers from the inside: the Newton step over several parameter tensors, the Newton polish after
L-BFGS (its undo, its step count, its callback and its row), and L-BFGS's evaluation cache and callback rows.
Written for mutation run 6 (dpo.py's ``_newton_step``, ``_newton_polish``, ``_scipy_lbfgs``, ``fit_dpo``)."""

import warnings

import numpy as np
import pytest
import torch

from prefkit.closed_form import optimal_policy
from prefkit.dpo import ConvergenceWarning, dpo_loss_value, fit_dpo, total_variation
from prefkit.policies import TabularPolicy
from prefkit.problems import random_problem


class BlockPolicy(torch.nn.Module):
    """A tabular policy with one parameter tensor per prompt (of n responses each): fit_dpo accepts any module
    with ``log_probs()`` and ``parameters()``, and its solvers walk the parameter list tensor by tensor."""

    def __init__(self, pi_ref):
        super().__init__()
        ref = torch.log(torch.as_tensor(np.asarray(pi_ref, dtype=np.float64)))
        self.rows = torch.nn.ParameterList([torch.nn.Parameter(ref[x].clone()) for x in range(ref.shape[0])])

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(torch.stack(list(self.rows)), dim=-1)


def _problem(seed=0, n_prompts=3, n=5):
    P = random_problem(n_prompts, n, seed=seed, reward_scale=2.0)
    prefs, w = P.preference_probabilities()
    return P, prefs, w


# ------------------------------------------------------------------------------------------ mutation run 6: dpo.py
@pytest.mark.parametrize("seed", [0, 1])
def test_newton_and_lbfgs_with_several_parameter_tensors(seed):
    """Three prompts, one parameter tensor each (5 logits): Newton's step is one flat vector H⁺∇L cut back into the
    tensors in order, and L-BFGS writes its flat iterate back the same way. Both must reach π* (float64, TV ≤
    1e-8 at the default tol) and agree with the one-tensor tabular policy (Newton to 1e-12, L-BFGS to 1e-8).
    Bugs caught (mutmut run 6, `_newton_step`): the offset reset to the last tensor's size instead of advanced
    (``k = numel``: the third prompt takes the second's step) or moved backwards (``k -= numel``: an empty
    slice)."""
    P, prefs, w = _problem(seed)
    star = optimal_policy(P.pi_ref, P.reward, 0.5)
    for opt in ("newton", "lbfgs"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            blocks = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt, policy=BlockPolicy(P.pi_ref))
            flat = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, optimizer=opt)
        assert blocks.converged and blocks.history[-1]["grad_norm"] <= 1e-10, opt
        assert total_variation(blocks.pi, star) <= 1e-8, opt  # max |∇L| ≤ 1e-10 is a TV of 1e-10 to 2e-9 from π*
        atol = 1e-12 if opt == "newton" else 1e-8  # Newton: the same steps as the one-tensor run
        np.testing.assert_allclose(blocks.pi, flat.pi, rtol=0, atol=atol, err_msg=opt)
        if opt == "newton":  # the same Newton steps: as few as the one-tensor run's
            assert blocks.history[-1]["step"] == flat.history[-1]["step"]


def test_newton_polish_runs_until_no_progress_and_keeps_the_best_step():
    """tol = 0 cannot be met, so after L-BFGS's line search gives up the Newton polish takes steps while the
    max-abs gradient falls (here 3 of them, 14 → 17), then undoes the step that did not help and stops. The run
    must warn, say converged=False, end at π* (TV ≤ 1e-12) with the best gradient seen (≤ 1e-15, not the
    rejected step's), count every kept step once (the callback sees 0, 1, …, N in order, always the model
    itself; the last row is step N = cost/grad_steps), and its last row must hold the loss of the returned
    policy. Bugs caught (mutmut run 6, `_newton_polish`): the saved parameters or the best gradient dropped
    (the undo or the second step crashes), the undo's restore or re-evaluation removed, the step counter set
    to 1, decremented or advanced by 2, the callback given no step, a wrong step or no model, and the final row
    given no step or no loss."""
    P = random_problem(3, 5, seed=0, reward_scale=2.0, support=0.8)
    prefs, w = P.preference_probabilities()
    calls, models = [], []

    def watch(t, pol):
        calls.append(t)
        models.append(pol)

    with pytest.warns(ConvergenceWarning, match="stopped after"):
        res = fit_dpo(P.pi_ref, prefs, 1.0, weights=w, tol=0.0, callback=watch)
    assert res.converged is False
    last = res.history[-1]
    n = last["step"]
    assert isinstance(n, int) and n == last["cost/grad_steps"] and calls == list(range(n + 1))
    assert all(m is res.model for m in models)
    assert [h["step"] for h in res.history] == [0, n]
    assert total_variation(res.pi, optimal_policy(P.pi_ref, P.reward, 1.0)) <= 1e-12
    assert 0.0 <= last["grad_norm"] <= 1e-15
    assert isinstance(last["loss"], float)
    assert last["loss"] == pytest.approx(dpo_loss_value(res.pi, P.pi_ref, prefs, 1.0, weights=w), rel=1e-12)
    # the last row's gradient is the returned policy's (the undone step left no trace): re-evaluate it there
    again = fit_dpo(P.pi_ref, prefs, 1.0, weights=w, policy=res.model, steps=0, tol=1.0)
    assert again.history[0]["grad_norm"] == last["grad_norm"] and again.history[0]["loss"] == last["loss"]



@pytest.mark.parametrize("seed", [2, 3])
def test_newton_polish_whose_first_step_does_not_help(seed):
    """One prompt, two responses, β = 0.1, tol = 0: L-BFGS ends at max |∇L| below 1e-18, and the polish's first
    Newton step cannot lower it, so the polish undoes it at once and keeps L-BFGS's point (no step counted).
    Bug caught (mutmut run 6, `_newton_polish`): the parameters at the polish's start not saved (``flat = None``:
    the undo crashed when the very first step was rejected)."""
    P = random_problem(1, 2, seed=seed, reward_scale=2.0)
    prefs, w = P.preference_probabilities()
    calls = []
    with pytest.warns(ConvergenceWarning, match="stopped after"):
        res = fit_dpo(P.pi_ref, prefs, 0.1, weights=w, tol=0.0, callback=lambda t, pol: calls.append(t))
    last = res.history[-1]
    assert res.converged is False and calls == list(range(last["step"] + 1)) and last["step"] > 3
    assert last["grad_norm"] <= 1e-17
    assert total_variation(res.pi, optimal_policy(P.pi_ref, P.reward, 0.1)) <= 1e-14

class CountingPolicy(TabularPolicy):
    """A tabular policy that remembers the logits at every loss evaluation (every log_probs call with autograd
    on: the history rows and the result read log_probs under no_grad)."""

    def __init__(self, pi_ref):
        super().__init__(pi_ref)
        self.evaluated_at = []

    def log_probs(self):
        if torch.is_grad_enabled():
            self.evaluated_at.append(self.logits.detach().numpy().copy())
        return super().log_probs()


@pytest.mark.parametrize("beta", [0.1, 0.5, 10.0])
def test_lbfgs_never_repeats_an_evaluation(beta):
    """L-BFGS asks for the loss at the accepted iterate (its callback), and fit_dpo again at the result: both are
    the point of the latest evaluation, and must not be computed again. No two consecutive loss evaluations
    may be at the same parameters, and cost/loss_evals must count them all. Bug caught (mutmut run 6,
    `_scipy_lbfgs`): the cache test comparing anything but the iterate with the last evaluated point (each
    iteration then costs one evaluation more: loss_evals about 2× the iterations instead of about 1×)."""
    P, prefs, w = _problem(2)
    pol = CountingPolicy(P.pi_ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_dpo(P.pi_ref, prefs, beta, weights=w, policy=pol)
    assert res.converged
    xs = pol.evaluated_at
    assert len(xs) == res.history[-1]["cost/loss_evals"] >= res.history[-1]["step"] > 3
    repeats = [k for k in range(1, len(xs)) if np.array_equal(xs[k], xs[k - 1])]
    assert repeats == []


def test_lbfgs_row_after_a_callback_that_moves_the_policy():
    """A callback may move the parameters (here at L-BFGS's iteration 2, to a random policy); that iteration's
    history row must then describe the moved policy, so fit_dpo re-evaluates there. Bug caught (mutmut run 6,
    `_scipy_lbfgs`): the re-evaluation done only when the callback did *not* move the parameters, which
    leaves the row with the loss of the iterate before the move."""
    P, prefs, w = _problem(5, 2, 4)
    target = np.random.default_rng(3).dirichlet(np.ones(4), 2)
    seen = {}

    def move(t, pol):
        if t == 2:
            with torch.no_grad():
                pol.logits.copy_(torch.log(torch.as_tensor(target)))
        seen[t] = pol.log_probs().exp().detach().numpy().copy()

    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, record_every=1, callback=move)
    row = next(h for h in res.history if h["step"] == 2)
    np.testing.assert_allclose(seen[2], target, rtol=1e-12)
    assert row["loss"] == pytest.approx(dpo_loss_value(target, P.pi_ref, prefs, 0.5, weights=w), rel=1e-12)
    assert row["loss"] != pytest.approx(dpo_loss_value(seen[1], P.pi_ref, prefs, 0.5, weights=w), rel=1e-6)


def test_continuing_a_log_linear_policy_uses_its_features_for_the_obstruction():
    """Response 0 never loses, so a tabular policy has no minimiser; but with the log-linear feature f = (1, 1, 0)
    responses 0 and 1 are the same to θ, and the loss has a minimiser θ* = 2·logit(0.7)/… (here 2·log(7/3) at
    β = 0.5). Continuing a LogLinearPolicy without passing ``features`` again must judge existence on the
    policy's own features: no warning, converged, the same θ as with ``features=``. Bugs caught (mutmut run 6,
    `fit_dpo`): the policy's features ignored (the tabular check then reports "no minimiser" and
    converged=False)."""
    from prefkit.policies import LogLinearPolicy

    q = [[0.2, 0.3, 0.5]]
    phi = np.array([[[1.0], [1.0], [0.0]]])
    prefs, w = [[0, 0, 1], [0, 1, 2], [0, 2, 1]], [1.0, 0.7, 0.3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kw in (dict(features=phi), dict(policy=LogLinearPolicy(q, phi))):
            res = fit_dpo(q, prefs, 0.5, weights=w, **kw)
            assert res.converged and res.obstruction is None, kw
            assert float(res.model.theta.detach()[0]) == pytest.approx(2 * np.log(0.7 / 0.3), rel=1e-9)
    with pytest.warns(ConvergenceWarning, match="no minimiser"):
        assert fit_dpo(q, prefs, 0.5, weights=w).obstruction is not None


class PolicyWithValueHead(TabularPolicy):
    """A tabular policy with a second trainable parameter that log_probs does not use (a value head, say)."""

    def __init__(self, pi_ref):
        super().__init__(pi_ref)
        self.value_head = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))


def test_a_parameter_the_loss_does_not_use_gets_a_zero_gradient():
    """fit_dpo trains every parameter that requires grad; one the loss never touches has no ``.grad`` after
    backward and must count as a zero gradient (it stays where it is, and the fit is the tabular one). Bugs
    caught (mutmut run 6, `fit_dpo`): ``q.grad`` used even when it is None, or ``zeros_like`` of None (a crash)."""
    P, prefs, w = _problem(4, 2, 4)
    pol = PolicyWithValueHead(P.pi_ref)
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, policy=pol)
    ref = fit_dpo(P.pi_ref, prefs, 0.5, weights=w)
    np.testing.assert_array_equal(pol.value_head.detach().numpy(), np.ones(3))
    np.testing.assert_allclose(res.pi, ref.pi, rtol=0, atol=1e-12)
    assert res.history[-1]["grad_norm"] == pytest.approx(ref.history[-1]["grad_norm"], rel=1e-9, abs=1e-15)
    # Newton too: the unused parameter has a zero gradient and a zero row of the Hessian (torch's "appears to
    # not have been used in the graph" RuntimeError before; found by mutation run 6)
    pol = PolicyWithValueHead(P.pi_ref)
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, policy=pol, optimizer="newton")
    assert res.converged
    np.testing.assert_array_equal(pol.value_head.detach().numpy(), np.ones(3))
    np.testing.assert_allclose(res.pi, ref.pi, rtol=0, atol=1e-9)


def test_history_wall_time_is_the_time_since_the_start():
    """``time/wall`` is the seconds since fit_dpo started: non-negative, non-decreasing, and within the wall time
    of the call. Bug caught (mutmut run 6, `fit_dpo`): perf_counter() + t0 instead of − t0."""
    P, prefs, w = _problem(0, 2, 4)
    import time

    t0 = time.perf_counter()
    res = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, record_every=1)
    elapsed = time.perf_counter() - t0
    walls = [h["time/wall"] for h in res.history]
    assert 0.0 <= walls[0] and walls == sorted(walls) and walls[-1] <= elapsed


def test_an_exactly_vanishing_gradient_is_converged():
    """π_ref = (½, ½) with the pair and its reverse at equal weight: the gradient is exactly 0 at the start (and
    stays 0), so every optimiser must report converged=True without a warning, even at tol = 0 (the test is
    max |∇L| ≤ tol), and Adam or SGD run for a fixed number of steps (no tol) must say the gradient vanished.
    A solver given steps=0 at a point that meets tol is converged too. Bugs caught (mutmut run 6, `fit_dpo`):
    ``<`` for ``≤`` in the start's test (Newton then took a step), the post-loop ``converged`` of Adam/SGD
    dropped or computed for the wrong runs, and ``converged`` initialised to None (steps=0: not converged)."""
    q, prefs = [[0.5, 0.5]], [[0, 0, 1], [0, 1, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for opt, kw in (("lbfgs", dict(tol=0.0)), ("newton", dict(tol=0.0)), ("adam", dict(steps=3)),
                        ("sgd", dict(steps=3)), ("lbfgs", dict(steps=0)), ("newton", dict(steps=0))):
            res = fit_dpo(q, prefs, 0.5, optimizer=opt, **kw)
            assert res.converged is True and res.history[-1]["grad_norm"] == 0.0, (opt, kw)
            if opt in ("lbfgs", "newton"):  # met at step 0: not one step taken
                assert res.history[-1]["step"] == 0, (opt, kw)
        P, prefs, w = _problem(1, 2, 4)
        done = fit_dpo(P.pi_ref, prefs, 0.5, weights=w)
        again = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, policy=done.model, steps=0)
        assert again.converged is True and len(again.history) == 1


def test_one_lbfgs_step_is_the_first_lbfgs_iterate():
    """steps=1 with L-BFGS is one L-BFGS iteration: the policy equals the iterate that a longer run shows its
    callback at step 1 (the same deterministic path). Bug caught (mutmut run 6, `fit_dpo`): L-BFGS skipped
    unless steps > 1, so steps=1 became one Newton polish step instead."""
    P, prefs, w = _problem(3, 2, 4)
    seen = {}
    fit_dpo(P.pi_ref, prefs, 0.5, weights=w, callback=lambda t, pol: seen.setdefault(t, pol.log_probs().exp()
                                                                                        .detach().numpy().copy()))
    with pytest.warns(ConvergenceWarning, match="stopped after 1 steps"):
        one = fit_dpo(P.pi_ref, prefs, 0.5, weights=w, steps=1)
    np.testing.assert_allclose(one.pi, seen[1], rtol=0, atol=1e-15)
    assert total_variation(seen[1], P.pi_ref) > 1e-3


def test_last_row_when_lbfgs_gives_up_with_no_minimiser():
    """Deterministic preferences (no minimiser) with tol = 0: L-BFGS's line search gives up, no polish runs, and
    fit_dpo itself writes the last row. Its loss and gradient norm must be those of the returned policy (the
    same numbers a fresh evaluation there gives), and the last row must not cost an extra evaluation. Bugs
    caught (mutmut run 6, `fit_dpo`): the row's gradient norm None, and the re-evaluation done when the latest
    evaluation *is* current (one evaluation more)."""
    q, prefs = [[0.5, 0.5]], [[0, 0, 1]]
    pol = CountingPolicy(q)
    with pytest.warns(ConvergenceWarning, match="no minimiser"):
        res = fit_dpo(q, prefs, 0.5, tol=0.0, policy=pol)
    last = res.history[-1]
    xs = pol.evaluated_at
    assert len(xs) == last["cost/loss_evals"] and last["step"] > 0
    assert [k for k in range(1, len(xs)) if np.array_equal(xs[k], xs[k - 1])] == []
    with pytest.warns(ConvergenceWarning, match="no minimiser"):
        again = fit_dpo(q, prefs, 0.5, policy=res.model, steps=0)
    assert isinstance(last["grad_norm"], float)
    assert again.history[0]["grad_norm"] == last["grad_norm"] and again.history[0]["loss"] == last["loss"]


@pytest.mark.parametrize("optimizer", ["newton", "adam", "sgd", "lbfgs"])
def test_result_keeps_the_loss_type(optimizer):
    """The result's loss_type and beta are the run's, for every optimiser. Bug caught (mutmut run 6, `fit_dpo`):
    loss_type None in the result of the non-L-BFGS return."""
    P, prefs, w = _problem(0, 1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = fit_dpo(P.pi_ref, prefs, 0.25, weights=w, loss_type="ipo", optimizer=optimizer, steps=3)
    assert res.loss_type == "ipo" and res.beta == 0.25


def test_policy_must_have_log_probs_and_parameters():
    """A ``policy`` needs both ``log_probs`` and ``parameters``; either alone is refused by name. Bug caught
    (mutmut run 6, `fit_dpo`): ``or`` for ``and`` in the check (an object with only one of them got through)."""

    class OnlyLogProbs:
        def log_probs(self):
            return torch.zeros(1, 2, dtype=torch.float64)

    class OnlyParameters:
        def parameters(self):
            return iter([])

    for bad in (OnlyLogProbs(), OnlyParameters()):
        with pytest.raises(ValueError, match="policy must be a prefkit.policies module"):
            fit_dpo([[0.5, 0.5]], [[0, 0, 1], [0, 1, 0]], 0.5, policy=bad)


@pytest.mark.parametrize("pi_ref", [[[0.3, 0.7]], [[0.5, 0.5]], [[0.7, 0.3]]])
def test_lbfgs_on_the_way_to_infinity_backtracks_instead_of_raising(pi_ref):
    """One pair and no reverse: the loss has no minimiser (π(y_w) → 1). With tol = 0, L-BFGS runs until a
    line-search trial point underflows a log-prob to −inf. That trial must count as +inf (L-BFGS backtracks)
    and the fit must return with the no-minimiser ConvergenceWarning, as the docstring says. Bug caught
    (mutation run 6): from π_ref = (0.3, 0.7), fit_dpo raised "training diverged: the policy's log-probabilities
    became non-finite ... lower lr or beta" on this valid input."""
    with pytest.warns(ConvergenceWarning, match="no minimiser"):
        res = fit_dpo(pi_ref, [[0, 0, 1]], 0.5, tol=0.0)
    assert res.converged is False and res.pi[0, 0] >= 1 - 1e-12
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["grad_norm"]) for h in res.history)
