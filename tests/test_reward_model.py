"""Chapter 3: the Bradley-Terry reward-model loss (vs TRL's formula) and the three reward models."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.bradley_terry import log_sigmoid
from prefkit.closed_form import reward_gap_up_to_shift
from prefkit.problems import random_problem, tajwar_bandit
from prefkit.reward_model import (
    fit_reward_model,
    preference_accuracy,
    reward_loss,
    reward_recovery_error,
)


def test_reward_loss_matches_trl_formula():
    g = torch.Generator().manual_seed(0)
    rw = torch.randn(6, generator=g, dtype=torch.float64)
    rl = torch.randn(6, generator=g, dtype=torch.float64)
    m = torch.rand(6, generator=g, dtype=torch.float64)
    c = 0.01
    # TRL RewardTrainer.compute_loss: -logsigmoid(r_w - r_l - margin).mean() + c * mean((r_w + r_l)**2)
    trl = -torch.nn.functional.logsigmoid(rw - rl - m).mean() + c * torch.mean((rw + rl) ** 2)
    assert torch.allclose(reward_loss(rw, rl, margin=m, center_coef=c).mean(), trl)
    np.testing.assert_allclose(reward_loss(rw, rl).numpy(), -log_sigmoid((rw - rl).numpy()), atol=1e-12)


def test_reward_loss_gradient_vs_autograd_formula():
    rw = torch.tensor([0.3, -2.0], dtype=torch.float64, requires_grad=True)
    rl = torch.tensor([0.1, 1.0], dtype=torch.float64)
    reward_loss(rw, rl).sum().backward()
    # d/dr_w −log σ(r_w − r_l) = −σ(r_l − r_w)
    np.testing.assert_allclose(rw.grad.numpy(), -torch.sigmoid(rl - rw).detach().numpy(), atol=1e-12)


def test_reward_loss_errors():
    with pytest.raises(ValueError, match="shape"):
        reward_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="reward_chosen"):
        reward_loss(torch.tensor([float("nan")]), torch.zeros(1))
    with pytest.raises(ValueError, match="center_coef"):
        reward_loss(torch.zeros(1), torch.zeros(1), center_coef=-1)


@pytest.mark.parametrize("model", ["tabular", "linear", "mlp"])
def test_population_fit_recovers_r_star_up_to_shift(model):
    P = random_problem(3, 5, seed=0)
    prefs, w = P.preference_probabilities()
    res = fit_reward_model(prefs, 3, 5, model=model, features=P.features, weights=w, l2=0.0, seed=0)
    # MLP: Adam's optimisation error, 2.7e-5 here; worst of problem seeds 0-7 is 1.2e-3
    tol = {"tabular": 1e-5, "linear": 1e-5, "mlp": 5e-3}[model]
    assert reward_recovery_error(res.reward, P.reward) < tol
    assert reward_gap_up_to_shift(res.reward, P.reward) < 3 * tol
    # accuracy on the exact data equals that of r* itself
    assert res.accuracy == pytest.approx(preference_accuracy(P.reward, prefs, w), abs=1e-9)


def test_sampled_fit_improves_with_data():
    P = random_problem(2, 4, seed=1)
    errs = [reward_recovery_error(fit_reward_model(P.sample_preferences(n, s), 2, 4).reward, P.reward)
            for n in (100, 10_000) for s in range(3)]
    assert np.mean(errs[3:]) < 0.4 * np.mean(errs[:3])


def test_unseen_responses_stay_at_zero_and_mlp_without_features():
    P = tajwar_bandit()
    prefs = P.sample_preferences(300, 0)
    res = fit_reward_model(prefs, 1, 100)
    unseen = np.setdiff1d(np.arange(100), prefs[:, 1:])
    assert len(unseen) > 0 and np.all(np.abs(res.reward[0, unseen]) < 1e-6)
    mlp = fit_reward_model(prefs, 1, 100, model="mlp", steps=50)
    assert mlp.reward.shape == (1, 100) and np.all(np.isfinite(mlp.reward))


def test_centering_fixes_the_shift():
    """BT is shift-invariant, so the centering term alone picks the shift: at the optimum mean(r_w + r_l) =
    0."""
    P = random_problem(1, 4, seed=2)
    prefs = P.sample_preferences(2000, 0)
    r = fit_reward_model(prefs, 1, 4, l2=0.0, center_coef=0.01).reward
    assert abs(np.mean(r[0, prefs[:, 1]] + r[0, prefs[:, 2]])) < 1e-6
    r0 = fit_reward_model(prefs, 1, 4, l2=0.0).reward
    assert reward_gap_up_to_shift(r, r0) < 0.05  # a small c barely changes the differences


def test_fit_errors():
    with pytest.raises(ValueError, match="model"):
        fit_reward_model([[0, 1, 0]], 1, 2, model="forest")
    with pytest.raises(ValueError, match="features"):
        fit_reward_model([[0, 1, 0]], 1, 2, model="linear")
    with pytest.raises(ValueError, match="n_responses"):
        fit_reward_model([[0, 5, 0]], 1, 2)
    with pytest.raises(ValueError, match="weights"):
        fit_reward_model([[0, 1, 0]], 1, 2, weights=[-1.0])
    with pytest.raises(ValueError, match="preferences"):
        fit_reward_model([[0, 1]], 1, 2)
    with pytest.raises(ValueError, match="chosen and rejected"):
        fit_reward_model([[0, 1, 0], [0, 1, 1]], 1, 2)
    for model in ("tabular", "mlp"):
        with pytest.raises(ValueError, match="steps"):
            fit_reward_model([[0, 1, 0]], 1, 2, model=model, steps=0)
    with pytest.raises(ValueError, match="hidden"):
        fit_reward_model([[0, 1, 0]], 1, 2, model="mlp", hidden=0)
    with pytest.raises(ValueError, match="lr"):
        fit_reward_model([[0, 1, 0]], 1, 2, lr=float("nan"))
    with pytest.raises(ValueError, match="center_coef"):
        fit_reward_model([[0, 1, 0]], 1, 2, center_coef=-1.0)


@settings(max_examples=40, deadline=None)
@given(rw=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=5), shift=st.floats(allow_nan=True),
       c=st.floats(allow_nan=True, allow_infinity=True))
def test_fuzz_reward_loss(rw, shift, c):
    a = torch.tensor(rw, dtype=torch.float64)
    try:
        out = reward_loss(a, a + shift, margin=shift, center_coef=c)
    except ValueError:
        return
    assert torch.all(torch.isfinite(out))


@settings(max_examples=25, deadline=None)
@given(prefs=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, 3)), min_size=1,
                      max_size=12),
       model=st.sampled_from(["tabular", "linear"]), l2=st.sampled_from([0.0, 1e-4, 1.0]))
def test_fuzz_fit_reward_model_is_finite(prefs, model, l2):
    """Any data (even separable) gives finite rewards and accuracy in [0, 1]; a row with y_w == y_l is a
    ValueError (as in read_preferences_jsonl)."""
    phi = np.random.default_rng(0).normal(size=(2, 4, 3))
    prefs = np.array(prefs)
    if np.any(prefs[:, 1] == prefs[:, 2]):
        with pytest.raises(ValueError, match="chosen and rejected"):
            fit_reward_model(prefs, 2, 4, model=model, features=phi, l2=l2, steps=30)
        return
    res = fit_reward_model(prefs, 2, 4, model=model, features=phi, l2=l2, steps=30)
    assert np.all(np.isfinite(res.reward)) and 0.0 <= res.accuracy <= 1.0
