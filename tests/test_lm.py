"""Chapter 7: the tiny transformer LM, its synthetic language, exact enumeration, checkpoints and CLI."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.closed_form import kl_divergence, log_partition, optimal_policy
from prefkit.lm import (
    GPT,
    ExactEvaluator,
    GPTConfig,
    SyntheticLanguage,
    all_responses,
    enumerate_log_probs,
    exact_metrics,
    index_to_response,
    load_checkpoint,
    load_model,
    load_preferences,
    monte_carlo_metrics,
    response_index,
    response_log_probs,
    save_checkpoint,
    save_preferences,
    tiny_config,
)
from prefkit.lm.cli import main as lm_main

torch.set_num_threads(1)


def _model(task, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    m = GPT(tiny_config(task.vocab_size, task.seq_len)).to(dtype)
    with torch.no_grad():  # larger weights than the init, so the distribution is far from uniform
        for p in m.parameters():
            p.mul_(8.0)
    return m.eval()


@pytest.fixture(scope="module")
def small():
    task = SyntheticLanguage(vocab=4, response_len=3, prompt_len=3, n_prompts=3, seed=1)
    return task, _model(task)


def test_enumeration_sums_to_one(small):
    task, m = small
    logp = enumerate_log_probs(m, task)
    assert logp.shape == (3, 4**3)
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-12)
    # default-size task, float32 model: still a distribution to float64 rounding of float32 log-softmaxes
    big = SyntheticLanguage()
    lp = enumerate_log_probs(_model(big, dtype=torch.float32), big, prompts=[0, 5])
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)


def test_log_probs_match_token_by_token(small):
    """Σ_t log π(y_t | x, y_<t), computed by feeding each prefix separately, equals the batched and enumerated
    log-probs."""
    task, m = small
    rng = np.random.default_rng(0)
    prompt = rng.integers(task.n_prompts, size=6)
    y = rng.integers(task.vocab, size=(6, task.response_len))
    direct = np.zeros(6)
    pt = task.prompt_tokens()
    with torch.no_grad():
        for i in range(6):
            for t in range(task.response_len):
                seq = torch.as_tensor(np.concatenate([pt[prompt[i]], y[i, :t]]))[None]
                logits = m(seq)[0, -1, : task.vocab]
                direct[i] += torch.log_softmax(logits, -1)[y[i, t]].item()
        batched = response_log_probs(m, task, prompt, y).numpy()
    enum = enumerate_log_probs(m, task)[prompt, response_index(y, task.vocab)]
    np.testing.assert_allclose(batched, direct, atol=1e-10)
    np.testing.assert_allclose(enum, direct, atol=1e-10)


@pytest.mark.parametrize("V, L, P, n", [(4, 3, 3, 3), (8, 4, 4, 2), (3, 1, 2, 2), (2, 5, 5, 1)])
def test_cached_enumeration_equals_full_sequences(V, L, P, n):
    """The prefix tree with a key/value cache (each prompt and prefix computed once) gives the log-probs of the
    V^(L−1) full sequences (a wrong parent index, a position offset or a missing segment breaks it)."""
    task = SyntheticLanguage(vocab=V, response_len=L, prompt_len=P, n_prompts=n, seed=2)
    m = _model(task, seed=3)
    cached = enumerate_log_probs(m, task)
    full = enumerate_log_probs(m, task, cache=False)
    np.testing.assert_allclose(cached, full, atol=1e-10)
    np.testing.assert_allclose(enumerate_log_probs(m, task, prompts=[n - 1], batch_size=1), full[[n - 1]], atol=1e-10)


def test_gpt_extend_matches_forward(small):
    """GPT.extend: the prompt at once, then one token at a time after the cache, with branching (a cached row
    continued by several rows), gives forward()'s logits."""
    task, m = small
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, task.vocab_size, (3, 7), generator=g)
    with torch.no_grad():
        full = m(seq)
    logits, cache = m.extend(seq[:, :4])
    np.testing.assert_allclose(logits.numpy(), full[:, :4].numpy(), atol=1e-10)
    for t in range(4, 7):
        logits, cache = m.extend(seq[:, t : t + 1], cache)
        np.testing.assert_allclose(logits[:, 0].numpy(), full[:, t].numpy(), atol=1e-10)
    # branch each of the 3 cached rows into 2 continuations: row j continues cached row j // 2
    _, cache = m.extend(seq[:, :4])
    nxt = torch.randint(0, task.vocab_size, (6, 1), generator=g)
    branched, _ = m.extend(nxt, cache)
    with torch.no_grad():
        want = m(torch.cat([seq[:, :4].repeat_interleave(2, 0), nxt], 1))[:, -1]
    np.testing.assert_allclose(branched[:, 0].numpy(), want.numpy(), atol=1e-10)
    with pytest.raises(ValueError, match="one new position"):
        m.extend(seq[:, 4:6], cache)


def test_data_distribution_and_reward():
    task = SyntheticLanguage(vocab=4, response_len=2, prompt_len=2, n_prompts=2, seed=3)
    logp = task.data_log_probs()
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-12)
    rng = np.random.default_rng(0)
    prompt, y = task.sample_data(40_000, rng)
    freq = np.zeros((2, 16))
    np.add.at(freq, (prompt, response_index(y, 4)), 1)
    freq /= freq.sum(-1, keepdims=True)
    np.testing.assert_allclose(freq, np.exp(logp), atol=0.015)  # ~4 standard errors at n = 20k per prompt
    x = task.prompts[0]
    shifted = (x + 1) % 4
    assert task.true_reward(0, shifted) == pytest.approx(2 * task.reward_scale)
    assert task.true_reward(0, x) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 9), st.integers(1, 4), st.data())
def test_response_index_roundtrip(V, L, data):
    idx = data.draw(st.lists(st.integers(0, V**L - 1), min_size=1, max_size=20))
    y = index_to_response(idx, V, L)
    assert y.min() >= 0 and y.max() < V
    np.testing.assert_array_equal(response_index(y, V), idx)


def test_all_responses_order():
    Y = all_responses(3, 2)
    np.testing.assert_array_equal(Y[:4], [[0, 0], [0, 1], [0, 2], [1, 0]])


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(vocab=1), "vocab"),
        (dict(response_len=0), "response_len"),
        (dict(prompt_len=2, response_len=3), "prompt_len"),
        (dict(n_prompts=10**6), "n_prompts"),
        (dict(copy=float("nan")), "copy"),
    ],
)
def test_task_bad_input(kw, word):
    with pytest.raises(ValueError, match=word):
        SyntheticLanguage(**kw)


@pytest.mark.parametrize(
    "kw, word", [(dict(n_head=3), "n_head"), (dict(n_layer=0), "n_layer"), (dict(dropout=1.5), "dropout")]
)
def test_config_bad_input(kw, word):
    with pytest.raises(ValueError, match=word):
        GPTConfig(**kw)


def test_exact_metrics_against_optimal_policy():
    """At π = π*, KL(π‖π*) = 0 and J = β·log Z (Gibbs); for any π, J = β·log Z − β·KL(π‖π*)."""
    rng = np.random.default_rng(0)
    pi_ref = rng.dirichlet(np.ones(7), size=3)
    reward = rng.normal(size=(3, 7))
    beta = 0.7
    star = optimal_policy(pi_ref, reward, beta)
    m = exact_metrics(np.log(star), np.log(pi_ref), reward, beta)
    assert m["exact/kl_star"] == pytest.approx(0.0, abs=1e-12)
    assert m["exact/objective"] == pytest.approx(m["exact/objective_max"], abs=1e-12)
    pi = rng.dirichlet(np.ones(7), size=3)
    m = exact_metrics(np.log(pi), np.log(pi_ref), reward, beta)
    gibbs = np.mean(beta * log_partition(pi_ref, reward, beta) - beta * kl_divergence(pi, star))
    assert m["exact/objective"] == pytest.approx(gibbs, abs=1e-12)
    # small beta: pi* underflows in exp (r/beta ~ 1e4); the KLs stay finite and exact (computed from logs)
    from scipy.special import logsumexp

    m = exact_metrics(np.log(pi), np.log(pi_ref), reward * 10, 1e-3)
    log_star = np.log(pi_ref) + reward * 1e4
    log_star -= logsumexp(log_star, axis=-1, keepdims=True)
    assert np.exp(log_star).min() == 0.0  # the case that broke KL(pi, exp(log pi*))
    want = np.mean(np.sum(pi * (np.log(pi) - log_star), axis=-1))
    assert np.isfinite(m["exact/kl_star"]) and m["exact/kl_star"] == pytest.approx(want, rel=1e-12)


def test_monte_carlo_fallback_agrees_with_exact(small):
    task, m = small
    ref = _model(task, seed=1)
    ev = ExactEvaluator(ref, task, beta=2.0)
    exact = ev.evaluate(m)
    mc = monte_carlo_metrics(m, ref, task, beta=2.0, n_samples=800, seed=0)
    assert set(k.split("/")[0] for k in mc) == {"mc"}
    assert mc["mc/reward"] == pytest.approx(exact["exact/reward"], abs=0.1)
    assert mc["mc/kl_ref"] == pytest.approx(exact["exact/kl_ref"], abs=0.15)
    assert mc["mc/kl_star"] == pytest.approx(exact["exact/kl_star"], abs=0.2)


def test_checkpoint_roundtrip_and_errors(tmp_path, small):
    task, m = small
    path = save_checkpoint(tmp_path / "a" / "m.pt", m, task, meta={"beta": 0.5})
    assert not list(path.parent.glob("*.tmp"))  # written atomically, no leftovers
    m2, task2, meta = load_model(path)
    assert meta == {"beta": 0.5, "dtype": "float64"} and task2.to_dict() == task.to_dict()
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert k == k2 and v2.dtype == v.dtype == torch.float64 and torch.equal(v, v2)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="reward_model"):
        load_model(path, kind="reward_model")


def test_lm_config_bad_input():
    from prefkit.lm import LMConfig

    for kw, word in [
        (dict(dpo_loss_type="nope"), "dpo_loss_type"),
        (dict(device="tpu"), "device"),
        (dict(preset="huge"), "preset"),
        (dict(dpo_steps=0), "dpo_steps"),
        (dict(beta=-1.0), "beta"),
        (dict(seed=-1), "seed"),
    ]:
        with pytest.raises(ValueError, match=word):
            LMConfig(**kw)


@pytest.mark.parametrize(
    "argv, word",
    [
        (["bogus"], "invalid choice"),
        (["dpo", "--beta", "-1"], "--beta"),
        (["sft", "--steps", "0"], "--steps"),
        (["dpo", "--loss-type", "nope"], "--loss-type"),
        (["rlhf", "--device", "tpu"], "--device"),
        (["sft", "--steps", "-1"], "--steps"),
        (["sft", "--seed", "-3"], "--seed"),
        (["pipeline", "--steps", "5"], "--steps"),
        (["rlhf", "--k", "1"], "rlhf_k"),
    ],
)
def test_cli_bad_arguments(argv, word, capsys):
    assert lm_main(argv) == 2
    assert word in capsys.readouterr().err


def test_cli_missing_or_corrupt_checkpoint_names_file(tmp_path, capsys):
    assert lm_main(["dpo", "--workdir", str(tmp_path), "--device", "cpu", "--no-progress"]) == 2
    assert "sft.pt" in capsys.readouterr().err
    (tmp_path / "sft.pt").write_bytes(b"garbage")
    assert lm_main(["rm", "--workdir", str(tmp_path), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sft.pt" in err and "corrupt" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cli_cuda_without_gpu(tmp_path, capsys):
    assert lm_main(["sft", "--workdir", str(tmp_path), "--device", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err


def test_cli_stages_end_to_end(tmp_path, capsys):
    """Every stage runs from the checkpoints of the previous ones (a few steps each) and logs TRL names."""
    w = ["--workdir", str(tmp_path), "--device", "cpu", "--no-progress", "--eval-every", "1000"]
    w += ["--preset", "small"]
    assert lm_main(["sft", "--steps", "3"] + w) == 0
    assert lm_main(["dpo", "--steps", "2", "--pairs-per-prompt", "4"] + w) == 0
    out = capsys.readouterr().out
    assert "rewards/margins" in out and "exact/kl_star" in out and "logps/chosen" in out
    assert lm_main(["rm", "--steps", "2"] + w) == 0
    assert lm_main(["rlhf", "--steps", "2", "--k", "2"] + w) == 0
    assert "objective/kl" in capsys.readouterr().out
    assert lm_main(["online-dpo", "--steps", "2"] + w) == 0
    assert lm_main(["grpo", "--steps", "2", "--group-size", "3", "--scale-rewards", "none"] + w) == 0
    out = capsys.readouterr().out
    assert "[grpo]" in out and " reward=" in out and " kl=" in out and "wrote" in out
    for name in ("sft", "rm", "rlhf", "dpo", "online_dpo", "grpo"):
        load_checkpoint(tmp_path / f"{name}.pt")
    # prefs.pt remembers its task: reusing the workdir with another preset is an error naming the file
    ref, task, _ = load_model(tmp_path / "sft.pt")
    prefs = load_preferences(tmp_path / "prefs.pt", task)
    other = SyntheticLanguage(vocab=4, response_len=3, prompt_len=3, n_prompts=8, seed=5)
    with pytest.raises(ValueError, match="prefs.pt"):
        load_preferences(tmp_path / "prefs.pt", other)
    save_preferences(tmp_path / "p2.pt", prefs, task)
    assert np.array_equal(load_preferences(tmp_path / "p2.pt", task).chosen, prefs.chosen)


def test_cli_pipeline_writes_summary(tmp_path, capsys, monkeypatch):
    """The pipeline command end to end (a few steps per stage): checkpoints, histories, summary table."""
    import json

    from prefkit.lm import LMConfig, cli

    few = dict(sft_steps=3, rm_steps=2, rlhf_steps=2, dpo_steps=2, online_dpo_steps=2, grpo_steps=2, pairs_per_prompt=4)
    cfg = LMConfig(preset="small", device="cpu", progress=False, rlhf_k=2, eval_every=1, **few)
    monkeypatch.setattr(cli, "_config", lambda args: cfg)
    assert lm_main(["pipeline", "--workdir", str(tmp_path), "--online-dpo", "--grpo"]) == 0
    out = capsys.readouterr().out
    assert "pi* (exact)" in out and "KL(pi||pi*)" in out
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["policy"] for r in rows][:5] == ["pi_ref (SFT)", "rlhf", "dpo", "online-dpo", "grpo"]
    for name in ("sft", "rm", "rlhf", "dpo", "online_dpo", "grpo"):
        assert (tmp_path / f"{name}.pt").is_file() and (tmp_path / f"history_{name}.json").is_file()


def test_training_loops_log_trl_names_and_displacement():
    """A few steps of each loop on the small preset: TRL metric names, exact metrics, displacement keys."""
    from prefkit.lm import (
        LMConfig,
        RewardModel,
        build_model,
        build_task,
        clone,
        make_preferences,
        train_dpo_lm,
        train_rlhf_lm,
    )

    cfg = LMConfig(preset="small", progress=False)
    task = build_task(cfg)
    ref = clone(build_model(cfg, task))
    ev = ExactEvaluator(ref, task, beta=1.0)
    prefs = make_preferences(ref, task, 4, seed=0)
    assert np.all(np.any(prefs.chosen != prefs.rejected, axis=1))
    pol = build_model(cfg, task)
    r = train_dpo_lm(
        pol,
        ref,
        task,
        prefs,
        1.0,
        loss_type="ipo",
        steps=2,
        batch_size=8,
        evaluator=ev,
        eval_every=1,
        progress=False,
    )
    last = r.history[-1]
    for key in (
        "loss",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "mass/neither_gain",
        "exact/kl_star",
        "exact/kl_ref",
        "exact/reward",
    ):
        assert key in last
    assert r.history[0]["exact/kl_ref"] == pytest.approx(0.0, abs=1e-6)  # step 0: the policy is pi_ref
    rm = RewardModel(build_model(cfg, task))
    r = train_rlhf_lm(
        build_model(cfg, task),
        ref,
        rm,
        task,
        1.0,
        method="ppo",
        steps=2,
        k=2,
        evaluator=ev,
        eval_every=1,
        progress=False,
    )
    assert {"objective/kl", "objective/scores", "val/clipfrac_avg", "exact/kl_star"} <= set(r.history[-1])
    with pytest.raises(ValueError, match="method"):
        train_rlhf_lm(pol, ref, rm, task, 1.0, method="grpo", steps=1, progress=False)
    with pytest.raises(ValueError, match="k"):
        train_rlhf_lm(pol, ref, rm, task, 1.0, k=1, steps=1, progress=False)
    from prefkit.lm import train_stage

    for stage, kw, word in [
        ("grpo", dict(ref=ref), "stage"),
        ("dpo", {}, "ref"),
        ("dpo", dict(ref=ref), "prefs"),
        ("rlhf", dict(ref=ref), "rm"),
    ]:
        with pytest.raises(ValueError, match=word):
            train_stage(stage, cfg, task, **kw)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.05, 20.0), st.integers(2, 40))
def test_exact_metrics_fuzz(seed, beta, n):
    """For any π, π_ref, r: KLs ≥ 0, J = β·log Z − β·KL(π‖π*) ≤ β·log Z (Gibbs variational principle)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 3, n)) * 3
    logp, ref_logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    reward = rng.normal(size=(3, n)) * 2
    m = exact_metrics(logp, ref_logp, reward, beta)
    assert m["exact/kl_ref"] >= -1e-12 and m["exact/kl_star"] >= -1e-12
    assert m["exact/objective"] == pytest.approx(
        m["exact/objective_max"] - beta * m["exact/kl_star"], abs=1e-9
    )
    assert m["exact/objective"] <= m["exact/objective_max"] + 1e-12


# ---- one step of each training loop against the library's loss on the same numbers (issue 10) -------------
# Each test runs ONE step of a loop and repeats it by hand: the same minibatch (the loop's seeded generators), the
# library's loss (preference_loss, reward_loss, rloo_advantages + reinforce_loss / ppo_clip_loss, the SFT NLL as
# −mean log π(y|x)/L), and one AdamW step. The logged loss and the parameters after the step must agree. A bug in a
# loop (swapped reference log-probs of chosen and rejected, a flipped sign, chosen/rejected swapped, a missing KL
# penalty) changes one or both. float64 models, so the only differences are the loops' float32 casts.
LR = 1e-3


def _lm_setup(seed=0):
    from prefkit.lm import LMConfig, build_model, build_task, clone, make_preferences

    cfg = LMConfig(preset="small", seed=seed, progress=False)
    task = build_task(cfg)
    ref = clone(build_model(cfg, task).double())
    torch.manual_seed(seed + 100)  # a policy that is not π_ref: every log-ratio is nonzero
    pol0 = GPT(tiny_config(task.vocab_size, task.seq_len)).double()
    prefs = make_preferences(ref, task, 6, seed=seed)
    return task, ref, pol0, prefs


@pytest.fixture(scope="module")
def lm_setup():
    return _lm_setup()


def _reward_model(trunk, seed=0):
    from prefkit.lm import RewardModel, trainable_copy

    rm = RewardModel(trainable_copy(trunk)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a nonzero head (the default init is zero: every reward 0, chosen = rejected)
        rm.head.weight.copy_(torch.randn(rm.head.weight.shape, generator=g, dtype=torch.float64) * 0.5)
        rm.head.bias.fill_(0.1)
    return rm


def _adamw_step(model, loss, lr=LR):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _assert_same_step(trained, want, start):
    """The parameter change of the loop equals the reference step's (relative error of the whole update)."""
    with torch.no_grad():
        d_got = torch.cat([(p - p0).flatten() for p, p0 in zip(trained.parameters(), start.parameters(), strict=True)])
        d_want = torch.cat([(p - p0).flatten() for p, p0 in zip(want.parameters(), start.parameters(), strict=True)])
        assert d_want.norm() > 0
        rel = float((d_got - d_want).norm() / d_want.norm())
    assert rel < 1e-3, f"the loop's update differs from the reference step by {rel:.3g} (relative)"


def test_sft_step_matches_nll(lm_setup):
    """SFT's loss is the mean token NLL = −mean log π(y|x)/L (response_log_probs); first lr = lr/50 (warm-up)."""
    from prefkit.lm import train_sft, trainable_copy

    task, _, pol0, _ = lm_setup
    bs, seed = 32, 5
    r = train_sft(trainable_copy(pol0), task, steps=1, batch_size=bs, lr=LR, seed=seed, eval_every=1, progress=False)
    prompt, y = task.sample_data(bs, np.random.default_rng(seed))
    want = trainable_copy(pol0)
    loss = -response_log_probs(want, task, prompt, y).mean() / task.response_len
    assert r.history[-1]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    _adamw_step(want, loss, lr=LR / 50)
    _assert_same_step(r.model, want, pol0)


def test_reward_model_step_matches_reward_loss(lm_setup):
    from prefkit import reward_loss
    from prefkit.lm import train_reward_model

    task, ref, _, prefs = lm_setup
    bs, seed = 24, 3
    rm0 = _reward_model(ref)
    r = train_reward_model(copy.deepcopy(rm0), task, prefs, steps=1, batch_size=bs, lr=LR, seed=seed,
                           progress=False)
    b = np.random.default_rng(seed).integers(len(prefs), size=bs)
    want = copy.deepcopy(rm0)
    loss = reward_loss(want(task, prefs.prompt[b], prefs.chosen[b]), want(task, prefs.prompt[b], prefs.rejected[b]))
    loss = loss.mean()
    assert r.history[-1]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    _adamw_step(want, loss)
    _assert_same_step(r.model, want, rm0)


def test_dpo_step_matches_preference_loss(lm_setup):
    """The reference log-probs enter as log π_ref(y_w) with the chosen and log π_ref(y_l) with the rejected."""
    from prefkit import preference_loss
    from prefkit.lm import ExactEvaluator, train_dpo_lm, trainable_copy

    task, ref, pol0, prefs = lm_setup
    bs, seed, beta = 16, 7, 0.5
    for loss_type in ("sigmoid", "ipo"):
        ev = ExactEvaluator(ref, task, beta)
        r = train_dpo_lm(trainable_copy(pol0), ref, task, prefs, beta, loss_type=loss_type, steps=1, batch_size=bs,
                         lr=LR, seed=seed, evaluator=ev, eval_every=1, progress=False)
        b = np.random.default_rng(seed).integers(len(prefs), size=bs)
        x, yw, yl = prefs.prompt[b], prefs.chosen[b], prefs.rejected[b]
        want = trainable_copy(pol0)
        with torch.no_grad():
            ref_w, ref_l = response_log_probs(ref, task, x, yw), response_log_probs(ref, task, x, yl)
        logp_w, logp_l = response_log_probs(want, task, x, yw), response_log_probs(want, task, x, yl)
        # ipo: per-token log-ratios by default, as TRL (every response has task.response_len tokens)
        n = torch.full_like(logp_w, float(task.response_len))
        lens = {"length_chosen": n, "length_rejected": n} if loss_type == "ipo" else {}
        loss = preference_loss(logp_w, logp_l, ref_w, ref_l, beta, loss_type=loss_type, **lens).mean()
        assert r.history[-1]["loss"] == pytest.approx(loss.item(), rel=1e-5), loss_type
        _adamw_step(want, loss)
        _assert_same_step(r.model, want, pol0)


def _rlhf_reference(task, ref, pol0, rm, beta, seed, pps, k, method, ppo_epochs=2, clip_eps=0.2):
    """One RLHF step by hand: y ~ π_θ (the loop's seeded generators), R = r_φ − β(log π_θ − log π_ref), RLOO
    advantages A_i = R_i − mean_{j≠i} R_j, then REINFORCE (one step) or PPO-clip (``ppo_epochs`` steps)."""
    from prefkit import ppo_clip_loss, reinforce_loss
    from prefkit.lm import sample_responses, trainable_copy

    rng = np.random.default_rng(seed)
    prompt = np.repeat(rng.choice(task.n_prompts, size=min(pps, task.n_prompts), replace=False), k)
    want = trainable_copy(pol0)
    y = sample_responses(want, task, prompt, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        scores = rm(task, prompt, y).double()
        ref_logp = response_log_probs(ref, task, prompt, y)
        old = response_log_probs(want, task, prompt, y)
        R = (scores - beta * (old - ref_logp)).view(-1, k)
        adv = (R - (R.sum(-1, keepdim=True) - R) / (k - 1)).reshape(-1)
    opt = torch.optim.AdamW(want.parameters(), lr=LR, weight_decay=0.0)
    for _ in range(1 if method == "rloo" else ppo_epochs):
        logp = response_log_probs(want, task, prompt, y)
        loss = reinforce_loss(logp, adv) if method == "rloo" else ppo_clip_loss(logp, old, adv, clip_eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return want, loss.item(), float((old - ref_logp).mean()), float(scores.mean()), float(R.mean())


@pytest.mark.parametrize("method", ["rloo", "ppo"])
def test_rlhf_step_matches_rl_estimators(lm_setup, method):
    from prefkit.lm import ExactEvaluator, train_rlhf_lm, trainable_copy

    task, ref, pol0, _ = lm_setup
    beta, seed, pps, k = 0.5, 11, 4, 4
    rm = _reward_model(ref, seed=1).eval()
    ev = ExactEvaluator(ref, task, beta)
    r = train_rlhf_lm(trainable_copy(pol0), ref, rm, task, beta, method=method, steps=1, k=k, prompts_per_step=pps,
                      lr=LR, seed=seed, evaluator=ev, eval_every=1, progress=False)
    want, loss, kl, scores, rlhf_reward = _rlhf_reference(task, ref, pol0, rm, beta, seed, pps, k, method)
    h = r.history[-1]
    assert h["objective/kl"] == pytest.approx(kl, rel=1e-6, abs=1e-9)
    assert h["objective/scores"] == pytest.approx(scores, rel=1e-6)
    assert h["objective/rlhf_reward"] == pytest.approx(rlhf_reward, rel=1e-6)
    assert h["loss/policy_avg"] == pytest.approx(loss, rel=1e-5, abs=1e-9)
    _assert_same_step(r.model, want, pol0)


def test_online_dpo_step_matches_preference_loss(lm_setup):
    """Fresh pairs from π_θ, judged by r_φ (higher score chosen), one preference_loss step."""
    from prefkit import preference_loss
    from prefkit.lm import ExactEvaluator, sample_responses, train_online_dpo_lm, trainable_copy

    task, ref, pol0, _ = lm_setup
    beta, seed, pps = 0.5, 13, 8
    rm = _reward_model(ref, seed=2).eval()
    ev = ExactEvaluator(ref, task, beta)
    r = train_online_dpo_lm(trainable_copy(pol0), ref, rm, task, beta, steps=1, prompts_per_step=pps, lr=LR,
                            seed=seed, evaluator=ev, eval_every=1, progress=False)
    prompt = np.random.default_rng(seed).choice(task.n_prompts, size=pps, replace=False)
    g = torch.Generator().manual_seed(seed)
    want = trainable_copy(pol0)
    y1, y2 = sample_responses(want, task, prompt, generator=g), sample_responses(want, task, prompt, generator=g)
    with torch.no_grad():
        first = (rm(task, prompt, y1) >= rm(task, prompt, y2)).unsqueeze(-1)
        assert 0 < first.sum() < pps  # both orders occur, so a swapped label would show
        yw, yl = torch.where(first, y1, y2), torch.where(first, y2, y1)
        ref_w, ref_l = response_log_probs(ref, task, prompt, yw), response_log_probs(ref, task, prompt, yl)
    logp_w, logp_l = response_log_probs(want, task, prompt, yw), response_log_probs(want, task, prompt, yl)
    loss = preference_loss(logp_w, logp_l, ref_w, ref_l, beta).mean()
    assert r.history[-1]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    _adamw_step(want, loss)
    _assert_same_step(r.model, want, pol0)


@pytest.mark.parametrize("f, alpha", [("forward_kl", 0.5), ("js_divergence", 0.5), ("alpha_divergence", 0.3)])
def test_f_dpo_step_matches_f_dpo_loss(lm_setup, f, alpha):
    """--f-divergence: one step of the LM's DPO loop equals prefkit.f_divergence.f_dpo_loss on the same pairs
    (the scores f'(π/π_ref) in place of the log-ratios), and differs from plain DPO's step."""
    from prefkit import preference_loss
    from prefkit.f_divergence import f_dpo_loss
    from prefkit.lm import train_dpo_lm, trainable_copy

    task, ref, pol0, prefs = lm_setup
    bs, seed, beta = 16, 7, 0.5
    r = train_dpo_lm(trainable_copy(pol0), ref, task, prefs, beta, steps=1, batch_size=bs, lr=LR, seed=seed,
                     f_divergence_type=f, alpha=alpha, progress=False)
    b = np.random.default_rng(seed).integers(len(prefs), size=bs)
    x, yw, yl = prefs.prompt[b], prefs.chosen[b], prefs.rejected[b]
    want, plain = trainable_copy(pol0), trainable_copy(pol0)
    with torch.no_grad():
        ref_w, ref_l = response_log_probs(ref, task, x, yw), response_log_probs(ref, task, x, yl)
    logp_w, logp_l = response_log_probs(want, task, x, yw), response_log_probs(want, task, x, yl)
    _adamw_step(want, f_dpo_loss(logp_w, logp_l, ref_w, ref_l, beta, f_divergence_type=f, alpha=alpha).mean())
    _assert_same_step(r.model, want, pol0)
    pw, pl = response_log_probs(plain, task, x, yw), response_log_probs(plain, task, x, yl)
    _adamw_step(plain, preference_loss(pw, pl, ref_w, ref_l, beta).mean())
    with pytest.raises(AssertionError):
        _assert_same_step(r.model, plain, pol0)


def test_f_divergence_from_the_cli_is_checked_before_training(tmp_path, capsys):
    from prefkit.lm.cli import _config, build_parser

    cfg = _config(build_parser().parse_args(["dpo", "--f-divergence", "alpha_divergence", "--f-alpha", "0.3"]))
    assert cfg.dpo_f_divergence == "alpha_divergence" and cfg.dpo_f_alpha == 0.3
    # bco_pair uses each response's own log-ratio: no f other than the reverse KL (as TRL); fails before training
    assert lm_main(["dpo", "--workdir", str(tmp_path), "--loss-type", "bco_pair", "--f-divergence", "forward_kl"]) == 2
    err = capsys.readouterr().err
    assert "dpo_f_divergence='forward_kl'" in err and "bco_pair" in err and not any(tmp_path.iterdir())


@pytest.mark.parametrize("per_token, scale, iterations", [(True, "group", 1), (False, "none", 1), (True, "batch", 2)])
def test_grpo_step_matches_grpo_loss(lm_setup, per_token, scale, iterations):
    """G samples per prompt from π_θ, scored by r_φ, advantages by hand (r − group mean, over the group's or the
    batch's std + 1e-4 with ddof 1, or unscaled), then ``iterations`` steps of prefkit.grpo.grpo_loss on those
    samples (per-token or sequence log-probs, TRL's k3 against π_ref)."""
    from prefkit.grpo import grpo_loss
    from prefkit.lm import ExactEvaluator, response_token_log_probs, sample_responses, train_grpo_lm, trainable_copy

    task, ref, pol0, _ = lm_setup
    beta, seed, pps, G = 0.5, 17, 4, 4
    rm = _reward_model(ref, seed=3).eval()
    ev = ExactEvaluator(ref, task, beta)
    r = train_grpo_lm(trainable_copy(pol0), ref, rm, task, beta, group_size=G, scale_rewards=scale,
                      per_token=per_token, num_iterations=iterations, steps=1, prompts_per_step=pps, lr=LR, seed=seed,
                      evaluator=ev, eval_every=1, progress=False)
    rng = np.random.default_rng(seed)
    prompt = np.repeat(rng.choice(task.n_prompts, size=min(pps, task.n_prompts), replace=False), G)
    want = trainable_copy(pol0)
    y = sample_responses(want, task, prompt, generator=torch.Generator().manual_seed(seed))
    logps = response_token_log_probs if per_token else response_log_probs
    with torch.no_grad():
        s = rm(task, prompt, y).double().view(-1, G)
        adv = s - s.mean(-1, keepdim=True)
        if scale == "group":
            adv = adv / (s.std(-1, keepdim=True) + 1e-4)
        elif scale == "batch":
            adv = adv / (s.std() + 1e-4)
        adv = adv.reshape(-1)
        ref_logp = logps(ref, task, prompt, y)
        old = logps(want, task, prompt, y)
    if per_token:
        adv = adv.unsqueeze(-1).expand_as(ref_logp)
    opt = torch.optim.AdamW(want.parameters(), lr=LR, weight_decay=0.0)
    for _ in range(iterations):
        loss, m = grpo_loss(logps(want, task, prompt, y), old, ref_logp, adv, beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    h = r.history[-1]
    assert h["loss"] == pytest.approx(loss.item(), rel=1e-6, abs=1e-12)
    assert h["kl"] == pytest.approx(m["kl"], rel=1e-6, abs=1e-12)
    assert h["reward"] == pytest.approx(float(s.mean()), rel=1e-9)
    assert h["reward_std"] == pytest.approx(float(s.std(-1).mean()), rel=1e-9)
    _assert_same_step(r.model, want, pol0)


def test_grpo_lm_rejects_bad_settings(lm_setup):
    from prefkit.lm import train_grpo_lm, trainable_copy

    task, ref, pol0, _ = lm_setup
    rm = _reward_model(ref).eval()
    for kw, match in (({"group_size": 1}, "group_size"), ({"scale_rewards": "std"}, "scale_rewards"),
                      ({"kl_estimator": "k4"}, "kl_estimator"), ({"epsilon": 1.5}, "epsilon"),
                      ({"num_iterations": 0}, "num_iterations")):
        with pytest.raises(ValueError, match=match):
            train_grpo_lm(trainable_copy(pol0), ref, rm, task, 0.5, steps=1, progress=False, **kw)
    with pytest.raises(ValueError, match="beta"):
        train_grpo_lm(trainable_copy(pol0), ref, rm, task, 0.0, steps=1, progress=False)


def test_dpo_lengths_per_token_as_trl_and_label_smoothing_from_the_cli():
    # issue 10 (TRL parity): ipo/sigmoid_norm/sft get each response's token count by default (TRL's per-token
    # log-ratios), --sequence-level turns it off, other loss types get none; exo_pair without ε fails at once
    from prefkit.lm.cli import _config, build_parser
    from prefkit.lm.pipeline import LMConfig
    from prefkit.lm.train import _lengths
    from prefkit.losses import preference_loss

    task = SyntheticLanguage()
    logp = torch.tensor([-3.0, -5.0], dtype=torch.float64)
    lens = _lengths("ipo", True, logp, task)
    assert torch.equal(lens["length_chosen"], torch.full((2,), float(task.response_len), dtype=torch.float64))
    assert _lengths("ipo", False, logp, task) == {} and _lengths("sigmoid", True, logp, task) == {}
    ref = torch.tensor([-4.0, -4.5], dtype=torch.float64)
    per_token = preference_loss(logp, logp.flip(0), ref, ref.flip(0), 0.5, "ipo", **lens)
    sequence = preference_loss(logp, logp.flip(0), ref, ref.flip(0), 0.5, "ipo")
    assert not torch.allclose(per_token, sequence)  # the lengths reach the loss
    with pytest.raises(ValueError, match="dpo_label_smoothing"):
        LMConfig(dpo_loss_type="exo_pair")
    args = build_parser().parse_args(["dpo", "--loss-type", "exo_pair", "--label-smoothing", "0.1",
                                      "--sequence-level"])
    cfg = _config(args)
    assert cfg.dpo_loss_type == "exo_pair" and cfg.dpo_label_smoothing == 0.1 and cfg.dpo_per_token is False
