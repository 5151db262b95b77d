"""Chapter 2–3 toy problems: presets, Bradley-Terry sampling, exact preference data, JSONL I/O."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.bradley_terry import sigmoid
from prefkit.problems import (
    Problem,
    random_problem,
    read_preferences_jsonl,
    tajwar_bandit,
    tanh_cauchy_bins,
    three_response_toy,
    write_preferences_jsonl,
)


def test_presets_shapes():
    t = three_response_toy()
    assert t.pi_ref.shape == (1, 3) and t.features.shape == (1, 3, 3)
    P = random_problem(4, 7, seed=1, d=2)
    assert P.pi_ref.shape == (4, 7) and P.features.shape == (4, 7, 2)
    np.testing.assert_allclose(P.reward, P.features @ P.info["w_star"])
    assert np.array_equal(random_problem(4, 7, seed=1, d=2).reward, P.reward)


def test_tajwar_bandit():
    P = tajwar_bandit()
    assert P.pi_ref.shape == (1, 100)
    assert int(np.argmax(P.pi_ref)) == 20 and int(np.argmax(P.reward)) == 70
    assert P.pi_ref[0, 70] < 1e-3
    np.testing.assert_allclose(P.reward[0, 60], np.exp(-1.0))
    np.testing.assert_allclose(P.features[0, :, 7], P.reward[0])  # r* is realizable in the features
    # the bins are exact: a Monte-Carlo histogram of tanh(Cauchy) agrees
    rng = np.random.default_rng(0)
    loc = np.arctanh(-1 + 2 * 20.5 / 100)
    u = np.tanh(loc + 0.1 * rng.standard_cauchy(200_000))
    hist = np.histogram(u, bins=100, range=(-1, 1))[0] / len(u)
    assert np.max(np.abs(hist - tanh_cauchy_bins())) < 3e-3


def test_sampled_preferences_match_bt():
    P = three_response_toy()
    prefs = P.sample_preferences(40_000, np.random.default_rng(0))
    assert prefs.shape == (40_000, 3) and np.all(prefs[:, 1] != prefs[:, 2])
    a_beats_c = np.mean(prefs[(prefs[:, 1] + prefs[:, 2]) == 2][:, 1] == 0)
    assert abs(a_beats_c - sigmoid(2.0)) < 0.015  # 3σ ≈ 0.009


def test_sampled_pairs_follow_policy():
    P = random_problem(1, 4, seed=2)
    pol = np.array([[0.0, 0.5, 0.5, 0.0]])
    prefs = P.sample_preferences(500, 0, policy=pol)
    assert set(np.unique(prefs[:, 1:])) <= {1, 2}
    with pytest.raises(ValueError, match="two responses"):
        P.sample_preferences(5, 0, policy=[[1.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="n must"):
        P.sample_preferences(-1, 0)


def test_preference_probabilities_exact():
    P = random_problem(2, 4, seed=3, support=0.75)
    prefs, w = P.preference_probabilities()
    assert w.sum() == pytest.approx(1.0)
    assert np.all(P.pi_ref[prefs[:, 0], prefs[:, 1]] > 0) and np.all(P.pi_ref[prefs[:, 0], prefs[:, 2]] > 0)
    # each unordered pair: weights of (i, j) and (j, i) are in ratio σ(r_i − r_j) : σ(r_j − r_i)
    x, i, j = prefs[0]
    back = np.flatnonzero((prefs[:, 0] == x) & (prefs[:, 1] == j) & (prefs[:, 2] == i))[0]
    d = P.reward[x, i] - P.reward[x, j]
    assert w[0] / (w[0] + w[back]) == pytest.approx(sigmoid(d))
    # the sampler's population version agrees with the empirical frequencies
    prefs_r, w_r = P.preference_probabilities("pi_ref")
    emp = P.sample_preferences(20_000, 1)
    key = lambda a: a[:, 0] * 100 + a[:, 1] * 10 + a[:, 2]  # noqa: E731
    k_emp, c = np.unique(key(emp), return_counts=True)
    lookup = dict(zip(key(prefs_r).tolist(), w_r.tolist(), strict=True))
    pairs = zip(k_emp.tolist(), c.tolist(), strict=True)
    assert max(abs(ci / 20_000 - lookup[kk]) for kk, ci in pairs) < 0.01


def test_jsonl_roundtrip(tmp_path):
    P = random_problem(3, 5, seed=0)
    prefs = P.sample_preferences(50, 0)
    path = write_preferences_jsonl(tmp_path / "p.jsonl", prefs)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"prompt", "chosen", "rejected"} and first["prompt"].startswith("x")
    np.testing.assert_array_equal(read_preferences_jsonl(path), prefs)
    names = [f"answer {i}" for i in range(5)]
    path2 = write_preferences_jsonl(tmp_path / "q.jsonl", prefs, response_names=names)
    np.testing.assert_array_equal(read_preferences_jsonl(path2, response_names=names), prefs)


@pytest.mark.parametrize("line, match", [
    ("{not json", "not valid JSON"),
    ('{"prompt": "x0", "chosen": "y1"}', "missing key"),
    ('{"prompt": "x0", "chosen": "y1", "rejected": "banana"}', "rejected"),
    ('{"prompt": "x0", "chosen": "y1", "rejected": "y1"}', "same response"),
    ('[1, 2, 3]', "JSON object"),
    ('{"prompt": "x0", "chosen": "y9", "rejected": "y1"}', "out of range"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "x0", "chosen": "y1", "rejected": "y2"}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=match) as exc:
        read_preferences_jsonl(path, n_responses=5)
    assert f"{path}:3" in str(exc.value)


def test_problem_validation():
    with pytest.raises(ValueError, match="pi_ref"):
        Problem([[0.5, 0.4]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="reward"):
        Problem([[0.5, 0.5]], [[0.0, np.nan]])
    with pytest.raises(ValueError, match="shape"):
        Problem([[0.5, 0.5]], [[0.0, 1.0, 2.0]])


def test_policy_module_as_sampler():
    from prefkit.policies import TabularPolicy

    P = random_problem(2, 4, seed=4)
    prefs = P.sample_preferences(100, 0, policy=TabularPolicy(P.pi_ref))
    assert prefs.shape == (100, 3)
    w_mod = P.preference_probabilities(TabularPolicy(P.pi_ref))[1]
    np.testing.assert_allclose(w_mod, P.preference_probabilities("pi_ref")[1])


_json_values = st.one_of(st.integers(-3, 12), st.text(max_size=4), st.none(), st.floats(allow_nan=True),
                         st.sampled_from(["x0", "y1", "y2", "y10", "x1"]))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.one_of(st.fixed_dictionaries({"prompt": _json_values, "chosen": _json_values,
                                                        "rejected": _json_values}),
                               st.text(max_size=10)), max_size=4))
def test_fuzz_jsonl_reader(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("fuzz") / "f.jsonl"
    path.write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in rows) + "\n")
    try:
        out = read_preferences_jsonl(path, n_prompts=2, n_responses=11)
    except ValueError as e:
        assert str(path) in str(e)
        return
    assert out.shape[1] == 3 and np.all(out >= 0) and np.all(out[:, 1] != out[:, 2])


@pytest.mark.parametrize("kw, match", [
    (dict(d=0), "d must"), (dict(n_prompts=2.0), "n_prompts"), (dict(n_prompts=0), "n_prompts"),
    (dict(n_responses=1), "n_responses"), (dict(reward_scale=float("nan")), "reward_scale"),
    (dict(ref_scale=-1.0), "ref_scale"), (dict(support=0.0), "support"), (dict(d=True), "d must"),
])
def test_random_problem_errors_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        random_problem(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(width=0.0), "width"), (dict(mu=float("inf")), "mu"), (dict(n_actions=1), "n_actions"),
    (dict(mode=100), "mode"), (dict(scale=-1.0), "scale"),
])
def test_tajwar_bandit_errors_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        tajwar_bandit(**kw)


@pytest.mark.parametrize("support", [1.0, 0.6])
def test_ref_from_features_gives_log_linear_pi_ref_and_pi_star(support):
    """log π_ref = ref_scale·⟨θ_ref, φ⟩ + f(x) on the support, and π* = π_ref e^{r*/β}/Z is log-linear in φ
    too; a log-linear policy at θ = 0 is π_ref itself and exact PG reaches π*."""
    from prefkit.closed_form import reward_gap_up_to_shift
    from prefkit.rl import train_rlhf

    P = random_problem(3, 5, seed=2, ref_scale=1.5, ref_from_features=True, support=support)
    with np.errstate(divide="ignore"):
        log_ref = np.log(P.pi_ref)
    lin = 1.5 * P.features @ P.info["theta_ref"]
    assert reward_gap_up_to_shift(np.where(P.pi_ref > 0, log_ref, 0.0), lin, P.pi_ref) < 1e-12
    beta = 0.5
    with np.errstate(divide="ignore"):
        log_star = np.log(P.optimal_policy(beta))
    theta_star = 1.5 * P.info["theta_ref"] + P.info["w_star"] / beta
    assert reward_gap_up_to_shift(np.where(P.pi_ref > 0, log_star, 0.0), P.features @ theta_star,
                                  P.pi_ref) < 1e-12
    res = train_rlhf(P.pi_ref, P.reward, beta, method="exact", features=P.features, steps=300, lr=0.05)
    assert res.final_kl < 1e-4
    # default (ref_from_features=False) is unchanged by the option
    assert "theta_ref" not in random_problem(3, 5, seed=2).info


@settings(max_examples=40, deadline=None)
@given(n_prompts=st.one_of(st.integers(-1, 4), st.floats(0, 4)), n_responses=st.integers(0, 5),
       d=st.integers(-1, 3), reward_scale=st.floats(allow_nan=True, allow_infinity=True),
       support=st.floats(-0.5, 1.5), ref=st.booleans(), realizable=st.booleans())
def test_fuzz_random_problem(n_prompts, n_responses, d, reward_scale, support, ref, realizable):
    try:
        P = random_problem(n_prompts, n_responses, seed=0, d=d, reward_scale=reward_scale, support=support,
                           ref_from_features=ref, realizable=realizable)
    except ValueError:
        return
    assert np.all(np.isfinite(P.reward)) and np.all((P.pi_ref > 0).sum(-1) >= 2)
    np.testing.assert_allclose(P.pi_ref.sum(-1), 1.0)


@settings(max_examples=30, deadline=None)
@given(n_actions=st.integers(0, 30), mode=st.integers(-2, 30), width=st.floats(allow_nan=True),
       mu=st.floats(allow_nan=True, allow_infinity=True), scale=st.floats(-1, 2))
def test_fuzz_tajwar_bandit(n_actions, mode, width, mu, scale):
    try:
        P = tajwar_bandit(n_actions, mode=mode, mu=mu, width=width, scale=scale)
    except ValueError:
        return
    assert np.all(np.isfinite(P.reward)) and np.all(np.isfinite(P.features))
    np.testing.assert_allclose(P.pi_ref.sum(), 1.0)
