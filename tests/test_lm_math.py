"""The tiny LM's math against independent values (mutation run 8): exact enumeration, the exact and Monte-Carlo
metrics, the evaluator, the slow token-by-token reference, and the DPO loop's log-prob helpers.

Every reference here is computed by hand in this file: one forward pass per full response (the model is causal,
so position P + 1 + t of [BOS, x, SEP, y] gives π(y_t | x, y_<t)), closed forms in numpy, and loops. float64
models on CPU; tolerances are stated at each comparison.
"""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

import prefkit.lm.distributed as distributed
import prefkit.lm.exact as exact_mod
from prefkit.displacement_tracking import displacement_step
from prefkit.lm import (
    GPT,
    ExactEvaluator,
    GPTConfig,
    SyntheticLanguage,
    all_responses,
    completion_log_probs,
    enumerate_all_prompts,
    enumerate_log_probs,
    exact_metrics,
    monte_carlo_metrics,
    response_index,
    tiny_config,
    token_by_token_log_probs,
)
from prefkit.lm.train import _lengths, dpo_logps
from prefkit.losses import _USES_LENGTHS

torch.set_num_threads(1)
TOL = 1e-10  # float64 models: different summation orders of the same log-softmaxes


def _gpt(task, seed, dropout=0.0, scale=8.0):
    torch.manual_seed(seed)
    cfg = tiny_config(task.vocab_size, task.seq_len)
    cfg = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                    n_embd=cfg.n_embd, dropout=dropout)
    m = GPT(cfg).double()
    with torch.no_grad():  # larger weights than the init: far from uniform, and the special tokens get mass
        for p in m.parameters():
            p.mul_(scale)
    return m.eval()


@torch.no_grad()
def _by_hand(model, task, prompts=None):
    """log π(y|x) for every prompt and response: one forward pass of each full [BOS, x, SEP, y], (n, V^L)."""
    V, L, P1 = task.vocab, task.response_len, task.prompt_len + 1
    prompts = range(task.n_prompts) if prompts is None else prompts
    Y = all_responses(V, L)
    pt = task.prompt_tokens()
    rows = []
    for x in prompts:
        seq = torch.as_tensor(np.concatenate([np.repeat(pt[x][None], len(Y), 0), Y], 1))
        logits = model(seq).double()
        row = np.zeros(len(Y))
        for t in range(L):
            ls = torch.log_softmax(logits[:, P1 + t, :V], -1).numpy()
            row += ls[np.arange(len(Y)), Y[:, t]]
        rows.append(row)
    return np.array(rows)


@pytest.fixture(scope="module")
def setup():
    task = SyntheticLanguage(vocab=3, response_len=3, prompt_len=3, n_prompts=4, seed=5)
    model, ref, init = _gpt(task, 11), _gpt(task, 12, scale=3.0), _gpt(task, 13, scale=5.0)
    return task, model, ref, init, _by_hand(model, task), _by_hand(ref, task), _by_hand(init, task)


# ---- enumeration ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("error")  # e.g. a softmax without its dim warns
@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("batch_size", [1, 10, 8192])
def test_enumeration_equals_one_pass_per_response(setup, cache, batch_size):
    """Both paths, chunked over prompts (batch 1: one prompt per chunk; 10: a partial last chunk), any prompt
    order, equal the forward pass of each full response to 1e-10."""
    task, model, _, _, want, _, _ = setup
    got = enumerate_log_probs(model, task, batch_size=batch_size, cache=cache)
    assert got.shape == (4, 27) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    sub = enumerate_log_probs(model, task, prompts=[3, 0, 2], batch_size=batch_size, cache=cache)
    np.testing.assert_allclose(sub, want[[3, 0, 2]], rtol=0, atol=TOL)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("V, L, P, n", [(5, 1, 1, 3), (2, 2, 3, 3), (3, 4, 4, 2)])
@pytest.mark.parametrize("cache", [True, False])
def test_enumeration_other_shapes(V, L, P, n, cache):
    """L = 1 (no prefix), L = 2 and a deeper tree; batch_size 9 splits the prompts unevenly. Without the cache,
    each prompt's V^(L−1) prefixes run once (n·V^(L−1) sequences in all)."""
    task = SyntheticLanguage(vocab=V, response_len=L, prompt_len=P, n_prompts=n, seed=7)
    model = _gpt(task, 21)
    want = _by_hand(model, task)
    rows = []
    model.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    for bs in (9, 8192):
        rows.clear()
        np.testing.assert_allclose(enumerate_log_probs(model, task, batch_size=bs, cache=cache), want, rtol=0,
                                   atol=TOL)
        assert sum(rows) == (0 if cache else n * V ** (L - 1))


class _Plain(torch.nn.Module):
    """A causal module without ``extend``: logits (B, T, V + 3) from an embedding bag of the prefix."""

    def __init__(self, n_tokens, width):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.w = torch.nn.Parameter(torch.randn(n_tokens, width, generator=g, dtype=torch.float64) * 2)
        self.pos = torch.nn.Parameter(torch.randn(16, width, generator=g, dtype=torch.float64))

    def forward(self, ids):
        h = self.w[ids] + self.pos[: ids.shape[1]]
        return torch.cumsum(h, 1) * torch.tanh(h)


def test_enumeration_of_a_module_without_extend():
    """``cache=True`` falls back to full sequences for a module without ``extend``; extra logit columns (here
    V + 3 of them) are not part of the softmax."""
    task = SyntheticLanguage(vocab=3, response_len=2, prompt_len=2, n_prompts=3, seed=8)
    model = _Plain(task.vocab_size, task.vocab + 3)
    want = _by_hand(model, task)
    np.testing.assert_allclose(enumerate_log_probs(model, task), want, rtol=0, atol=TOL)
    np.testing.assert_allclose(enumerate_log_probs(model, task, cache=False, batch_size=3), want, rtol=0, atol=TOL)


def test_enumeration_in_eval_mode_and_mode_restored(setup):
    """With dropout, the model is scored in eval mode (deterministic, equal to the eval-mode pass) and left in the
    mode it was in."""
    task = setup[0]
    model = _gpt(task, 11, dropout=0.5)
    want = _by_hand(model, task)  # eval mode: dropout off
    for cache in (True, False):
        model.train()
        torch.manual_seed(0)
        got = enumerate_log_probs(model, task, cache=cache)
        assert model.training is True
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
        model.eval()
        enumerate_log_probs(model, task, cache=cache)
        assert model.training is False


def test_enumeration_limit(monkeypatch, setup):
    """V^L = MAX_ENUMERATE is enumerated; one more raises."""
    task, model, _, _, want, _, _ = setup
    monkeypatch.setattr(exact_mod, "MAX_ENUMERATE", 27)
    np.testing.assert_allclose(enumerate_log_probs(model, task), want, rtol=0, atol=TOL)
    monkeypatch.setattr(exact_mod, "MAX_ENUMERATE", 26)
    with pytest.raises(ValueError, match="MAX_ENUMERATE"):
        enumerate_log_probs(model, task)


class _Counter:
    """Records the rows of every forward pass of a GPT: ``extend`` calls (the prefix tree) and ``forward`` calls
    (full sequences), without changing the model's outputs."""

    def __init__(self, model):
        self.extend, self.forward = [], []
        ext = model.extend

        def extend(ids, *a, **k):
            self.extend.append(ids.shape[0])
            return ext(ids, *a, **k)

        model.extend = extend
        model.register_forward_hook(lambda mod, args, out: self.forward.append(args[0].shape[0]))


@pytest.mark.parametrize("batch_size, chunks", [(1, 4), (9, 4), (27, 2), (36, 1), (8192, 1)])
def test_batch_size_sets_the_chunks(setup, batch_size, chunks):
    """``batch_size``: leaves of the prefix tree (cache) or sequences (no cache) per forward pass, at least one
    prompt's worth (V^(L−1) = 9 here): 4 prompts run in ceil(4 / max(1, batch_size // 9)) chunks, each of L = 3
    ``extend`` calls or one forward pass. The default uses the tree; the values do not depend on the chunks."""
    task, _, _, _, want, _, _ = setup
    model = _gpt(task, 11)
    c = _Counter(model)
    np.testing.assert_allclose(enumerate_log_probs(model, task, batch_size=batch_size), want, rtol=0, atol=TOL)
    assert len(c.extend) == 3 * chunks and c.forward == []
    assert max(c.extend) <= max(batch_size, 9)
    c.extend.clear()
    np.testing.assert_allclose(enumerate_log_probs(model, task, batch_size=batch_size, cache=False), want, rtol=0,
                               atol=TOL)
    assert c.extend == [] and len(c.forward) == chunks and max(c.forward) <= max(batch_size, 9)
    c.forward.clear()
    # the defaults: the tree, one chunk
    np.testing.assert_allclose(enumerate_log_probs(model, task), want, rtol=0, atol=TOL)
    assert len(c.extend) == 3 and c.forward == []


def test_batch_size_reaches_every_enumeration(monkeypatch, setup):
    """enumerate_all_prompts and ExactEvaluator pass their batch_size on (batch 1: one prompt per chunk, 3
    ``extend`` calls per prompt), in one process and sharded."""
    task, _, _, _, want, _, _ = setup
    model, ref, init = _gpt(task, 11), _gpt(task, 12, scale=3.0), _gpt(task, 13, scale=5.0)
    cm, cr, ci = _Counter(model), _Counter(ref), _Counter(init)
    enumerate_all_prompts(model, task, batch_size=1)
    assert len(cm.extend) == 12
    cm.extend.clear()
    enumerate_all_prompts(model, task)
    assert len(cm.extend) == 3
    cm.extend.clear()
    ev = ExactEvaluator(ref, task, 1.0, init_model=init, batch_size=1)
    assert len(cr.extend) == 12 and len(ci.extend) == 12
    ev.log_policy(model)
    assert len(cm.extend) == 12
    cm.extend.clear()
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "shard", lambda n: slice(1, n - 1))
    monkeypatch.setattr(distributed, "gather", lambda t, n_global: t)
    out = enumerate_all_prompts(model, task, batch_size=1)
    np.testing.assert_allclose(out, want[1:3], rtol=0, atol=TOL)
    assert len(cm.extend) == 6


def test_enumerate_all_prompts_one_process_and_sharded(monkeypatch, setup):
    """One process: every prompt. Under a world of 2 (rank 1 simulated): this rank's prompts are enumerated and
    handed to gather with the global count; with fewer prompts than processes, no sharding."""
    task, model, _, _, want, _, _ = setup
    np.testing.assert_allclose(enumerate_all_prompts(model, task), want, rtol=0, atol=TOL)
    np.testing.assert_allclose(enumerate_all_prompts(model, task, batch_size=1), want, rtol=0, atol=TOL)
    seen = []

    def gather(t, n_global):
        seen.append((t.clone(), n_global))
        return torch.zeros(n_global, t.shape[1], dtype=t.dtype) + 7.0

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "shard", lambda n: slice(1, n - 1))
    monkeypatch.setattr(distributed, "gather", gather)
    out = enumerate_all_prompts(model, task, batch_size=1)
    assert len(seen) == 1 and seen[0][1] == 4
    np.testing.assert_allclose(seen[0][0].numpy(), want[1:3], rtol=0, atol=TOL)
    assert isinstance(out, np.ndarray) and out.shape == (4, 27) and np.all(out == 7.0)
    monkeypatch.setattr(distributed, "world_size", lambda: 4)  # n == world: still sharded
    enumerate_all_prompts(model, task)
    assert len(seen) == 2
    monkeypatch.setattr(distributed, "world_size", lambda: 5)  # n < world: every rank enumerates all
    np.testing.assert_allclose(enumerate_all_prompts(model, task), want, rtol=0, atol=TOL)
    assert len(seen) == 2


def test_token_by_token_reference(setup):
    """The slow reference (one pass per prefix) equals one pass per full response."""
    task, model, _, _, want, _, _ = setup
    rng = np.random.default_rng(3)
    prompt = rng.integers(task.n_prompts, size=7)
    y = rng.integers(task.vocab, size=(7, task.response_len))
    got = token_by_token_log_probs(model, task, prompt, y)
    assert got.shape == (7,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want[prompt, response_index(y, task.vocab)], rtol=0, atol=TOL)


# ---- exact metrics --------------------------------------------------------------------------------------------
def _metrics_by_hand(logp, ref_logp, reward, beta):
    pi = np.exp(logp) / np.exp(logp).sum(-1, keepdims=True)
    ref = np.exp(ref_logp) / np.exp(ref_logp).sum(-1, keepdims=True)
    w = ref * np.exp(reward / beta)
    Z = w.sum(-1)
    star = w / Z[:, None]
    er = np.mean([sum(pi[i, j] * reward[i, j] for j in range(pi.shape[1])) for i in range(len(pi))])
    kl_ref = np.mean(np.sum(pi * np.log(pi / ref), -1))
    kl_star = np.mean(np.sum(pi * np.log(pi / star), -1))
    return {"exact/reward": er, "exact/kl_ref": kl_ref, "exact/kl_star": kl_star,
            "exact/objective": er - beta * kl_ref, "exact/objective_max": beta * np.mean(np.log(Z))}


@pytest.mark.parametrize("beta", [0.37, 2.5])
def test_exact_metrics_by_hand(beta):
    """Every key against numpy on probabilities (rel 1e-10), with log-policies off by a per-prompt constant (the
    function renormalises both) and a reward with an offset per prompt."""
    rng = np.random.default_rng(1)
    logp = rng.normal(size=(3, 6)) * 1.5 + rng.normal(size=(3, 1)) * 4
    ref_logp = rng.normal(size=(3, 6)) + rng.normal(size=(3, 1)) * 4
    reward = rng.normal(size=(3, 6)) + np.array([[3.0], [-1.0], [0.5]])
    got = exact_metrics(logp, ref_logp, reward, beta)
    want = _metrics_by_hand(logp, ref_logp, reward, beta)
    assert list(got) == list(want)
    for k in want:
        assert isinstance(got[k], float), k
        assert got[k] == pytest.approx(want[k], rel=1e-10, abs=1e-12), k
    # lists are accepted; already-normalised inputs give the same numbers
    lp = logp - logsumexp(logp, -1, keepdims=True)
    rp = ref_logp - logsumexp(ref_logp, -1, keepdims=True)
    again = exact_metrics(lp.tolist(), rp.tolist(), reward.tolist(), beta)
    for k in want:
        assert again[k] == pytest.approx(want[k], rel=1e-10, abs=1e-12), k


def test_exact_metrics_float32_tables_in_float64():
    """float32 log-policies (a float32 model's table) are renormalised in float64: the answer is the float64 one
    on the same float32 numbers to 1e-13 (a float32 logsumexp is off by ~1e-7)."""
    rng = np.random.default_rng(2)
    logp = (rng.normal(size=(2, 50)) * 3 + 7).astype(np.float32)
    ref_logp = (rng.normal(size=(2, 50)) * 2 - 5).astype(np.float32)
    reward = rng.normal(size=(2, 50))
    got = exact_metrics(logp, ref_logp, reward, 0.5)
    want = _metrics_by_hand(logp.astype(np.float64), ref_logp.astype(np.float64), reward, 0.5)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-13, abs=1e-13), k


def test_exact_metrics_zero_probability_responses():
    """π_θ with exact zeros (log π = −inf) still gives finite metrics: 0·log 0 = 0."""
    with np.errstate(divide="ignore"):
        logp = np.log(np.array([[0.5, 0.5, 0.0, 0.0], [0.1, 0.0, 0.3, 0.6]]))
    ref_logp = np.log(np.array([[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1]]))
    reward = np.array([[1.0, -1.0, 2.0, 0.0], [0.0, 1.0, -2.0, 3.0]])
    with np.errstate(divide="ignore"):
        got = exact_metrics(logp, ref_logp, reward, 0.8)
    pi, ref = np.exp(logp), np.exp(ref_logp)
    nz = pi > 0
    kl = np.array([np.sum(pi[i][nz[i]] * np.log(pi[i][nz[i]] / ref[i][nz[i]])) for i in range(2)])
    assert got["exact/kl_ref"] == pytest.approx(kl.mean(), rel=1e-12)
    assert got["exact/reward"] == pytest.approx(np.mean((pi * reward).sum(-1)), rel=1e-12)
    assert all(np.isfinite(v) for v in got.values())


# ---- Monte Carlo ----------------------------------------------------------------------------------------------
def _mc_by_hand(model, ref, task, beta, n_samples, seed, table, ref_table):
    """The estimator replayed with the same generator; log-probs looked up in the enumerated tables."""
    from prefkit.lm import sample_responses

    g = torch.Generator().manual_seed(seed)
    R = task.true_reward_table()
    rs, kls, kss = [], [], []
    for x in range(task.n_prompts):
        y = response_index(sample_responses(model, task, np.full(n_samples, x), generator=g).numpy(), task.vocab)
        yr = response_index(sample_responses(ref, task, np.full(n_samples, x), generator=g).numpy(), task.vocab)
        lr = table[x, y] - ref_table[x, y]
        r = R[x, y]
        log_Z = logsumexp(R[x, yr] / beta) - np.log(n_samples)
        rs.append(r.mean())
        kls.append(lr.mean())
        kss.append(np.mean(lr - r / beta) + log_Z)
    er, kl = np.mean(rs), np.mean(kls)
    return {"mc/reward": er, "mc/kl_ref": kl, "mc/kl_star": np.mean(kss), "mc/objective": er - beta * kl}


def test_monte_carlo_metrics_by_hand(setup):
    """Each estimate against the same samples scored by hand (1e-9: float64 sums in another order)."""
    task, model, ref, _, table, ref_table, _ = setup
    beta = 0.6
    for n_samples, seed in [(5, 3), (9, 0)]:
        got = monte_carlo_metrics(model, ref, task, beta, n_samples=n_samples, seed=seed)
        want = _mc_by_hand(model, ref, task, beta, n_samples, seed, table, ref_table)
        assert list(got) == list(want)
        for k in want:
            assert isinstance(got[k], float), k
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-9), (k, n_samples)


# ---- the evaluator --------------------------------------------------------------------------------------------
def test_evaluator_tables_and_metrics(setup):
    """π_ref's table, r*, log π* and the initial table are held; evaluate() is exact_metrics on the model's table
    plus the displacement keys against the initial policy (not π_ref)."""
    task, model, ref, init, table, ref_table, init_table = setup
    beta = 0.7
    ev = ExactEvaluator(ref, task, beta, init_model=init, batch_size=5)
    assert ev.exact is True and ev.beta == 0.7 and isinstance(ev.beta, float) and ev.batch_size == 5
    assert ev.task is task and ev.ref_model is ref
    np.testing.assert_allclose(ev.ref_logp, ref_table, rtol=0, atol=TOL)
    np.testing.assert_array_equal(ev.reward, task.true_reward_table())
    w = np.exp(ref_table) * np.exp(task.true_reward_table() / beta)
    np.testing.assert_allclose(ev.star_logp, np.log(w / w.sum(-1, keepdims=True)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ev.init_logp, init_table, rtol=0, atol=TOL)
    np.testing.assert_allclose(ev.log_policy(model), table, rtol=0, atol=TOL)
    prefs = np.array([[0, 1, 2], [3, 26, 0], [3, 5, 4]])
    got = ev.evaluate(model, prefs)
    want = _metrics_by_hand(table, ref_table, task.true_reward_table(), beta)
    disp = displacement_step(table, init_table, prefs)
    assert set(got) == set(want) | set(disp)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k
    for k in disp:
        assert got[k] == pytest.approx(disp[k], rel=1e-9, abs=1e-12), k
    assert disp["mass/neither_gain"] != pytest.approx(displacement_step(table, ref_table, prefs)["mass/neither_gain"])
    assert set(ev.evaluate(model)) == set(want) == set(ev.evaluate(model, np.zeros((0, 3), int)))
    # without init_model the initial policy is π_ref
    ev0 = ExactEvaluator(ref, task, 2)
    assert ev0.beta == 2.0 and isinstance(ev0.beta, float) and ev0.batch_size == 8192
    np.testing.assert_allclose(ev0.init_logp, ref_table, rtol=0, atol=TOL)


def test_evaluator_falls_back_to_monte_carlo(monkeypatch, setup):
    """V^L = MAX_ENUMERATE is exact; one more falls back to monte_carlo_metrics with its defaults (256 samples,
    seed 0), replayed by hand (one prompt: the same models, a task with the setup's sizes)."""
    _, model, ref, _, _, _, _ = setup
    task = SyntheticLanguage(vocab=3, response_len=3, prompt_len=3, n_prompts=1, seed=9)
    table, ref_table = _by_hand(model, task), _by_hand(ref, task)
    monkeypatch.setattr(exact_mod, "MAX_ENUMERATE", 27)
    assert ExactEvaluator(ref, task, 0.5).exact is True
    monkeypatch.setattr(exact_mod, "MAX_ENUMERATE", 26)
    ev = ExactEvaluator(ref, task, 0.5)
    assert ev.exact is False and not hasattr(ev, "ref_logp")
    got = ev.evaluate(model, np.array([[0, 1, 2]]))
    want = _mc_by_hand(model, ref, task, 0.5, 256, 0, table, ref_table)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-9), k


# ---- the DPO loop's helpers -----------------------------------------------------------------------------------
def test_dpo_logps_are_chosen_then_rejected(setup):
    task, model, _, _, table, _, _ = setup
    prompt = np.array([2, 0, 3])
    chosen = np.array([[0, 1, 2], [2, 2, 2], [1, 0, 0]])
    rejected = np.array([[2, 1, 0], [0, 0, 0], [1, 0, 1]])
    w, lo = dpo_logps(model, task, prompt, chosen, rejected)
    assert w.shape == lo.shape == (3,) and w.requires_grad
    np.testing.assert_allclose(w.detach().numpy(), table[prompt, response_index(chosen, 3)], rtol=0, atol=TOL)
    np.testing.assert_allclose(lo.detach().numpy(), table[prompt, response_index(rejected, 3)], rtol=0, atol=TOL)


def test_lengths():
    """Every loss type that uses lengths gets L for both (the logp's dtype and shape), others and per_token=False
    get none."""
    task = SyntheticLanguage(vocab=3, response_len=5, prompt_len=5, n_prompts=2, seed=0)
    logp = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    for lt in _USES_LENGTHS:
        d = _lengths(lt, True, logp, task)
        assert set(d) == {"length_chosen", "length_rejected"}
        for v in d.values():
            assert v.dtype == torch.float64 and torch.equal(v, torch.full((3,), 5.0, dtype=torch.float64))
        assert _lengths(lt, False, logp, task) == {}
    for lt in ("sigmoid", "hinge", "robust"):
        assert _lengths(lt, True, logp, task) == {}


@pytest.mark.parametrize("loss_type, eps", [("sigmoid", 0.2), ("sigmoid", 0.0), ("ipo", 0.0)])
def test_train_dpo_lm_logged_loss_by_hand(setup, loss_type, eps):
    """The first step's logged loss against the closed form on the enumerated tables: cDPO's
    −(1−ε) log σ(βh) − ε log σ(−βh) and IPO's (h/L − 1/(2β))², h = (log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l)
    − log π_ref(y_l)) on the step's minibatch (the loop's numpy generator). rel 1e-5: π_ref's log-probs are
    held in float32."""
    from prefkit.lm import make_preferences, train_dpo_lm, trainable_copy

    task, model, ref, _, table, ref_table, _ = setup
    prefs = make_preferences(ref, task, 3, seed=1)
    beta, B, seed = 0.4, 8, 7
    ev = ExactEvaluator(ref, task, beta)
    r = train_dpo_lm(trainable_copy(model), ref, task, prefs, beta, loss_type=loss_type, label_smoothing=eps, steps=1,
                     batch_size=B, lr=1e-3, seed=seed, evaluator=ev, eval_every=1, progress=False)
    b = np.random.default_rng(seed).integers(len(prefs), size=B)
    x, iw, il = prefs.prompt[b], response_index(prefs.chosen[b], 3), response_index(prefs.rejected[b], 3)
    h = (table[x, iw] - ref_table[x, iw]) - (table[x, il] - ref_table[x, il])
    if loss_type == "ipo":
        want = np.mean((h / task.response_len - 1 / (2 * beta)) ** 2)
    else:
        want = np.mean(-(1 - eps) * np.log(1 / (1 + np.exp(-beta * h))) - eps * np.log(1 / (1 + np.exp(beta * h))))
    assert r.history[-1]["loss"] == pytest.approx(want, rel=1e-5)


def _completion_by_hand(logits, ids, prompt_len):
    lp = logits.double()
    out = torch.zeros(ids.shape[0], dtype=torch.float64)
    for b in range(ids.shape[0]):
        for t in range(prompt_len, ids.shape[1]):
            out[b] += torch.log_softmax(lp[b, t - 1], -1)[ids[b, t]]
    return out


def test_completion_log_probs():
    """Σ_{t ≥ prompt_len} log softmax(logits[t − 1])[ids[t]], against a loop (float32 result: 1e-5); bfloat16
    logits are upcast before the softmax (a bfloat16 log-softmax is off by ~1e-2)."""
    g = torch.Generator().manual_seed(0)
    B, T, V = 3, 7, 11
    logits = torch.randn(B, T - 1, V, generator=g, dtype=torch.float64) * 3
    ids = torch.randint(0, V, (B, T), generator=g)
    for prompt_len in (1, 3, 6):
        got = completion_log_probs(logits, ids, prompt_len)
        assert got.shape == (B,)
        np.testing.assert_allclose(got.double().numpy(), _completion_by_hand(logits, ids, prompt_len).numpy(),
                                   rtol=0, atol=1e-5)
    lb = (logits * 10).bfloat16()
    got = completion_log_probs(lb, ids, 2)
    np.testing.assert_allclose(got.double().numpy(), _completion_by_hand(lb, ids, 2).numpy(), rtol=0, atol=1e-4)


# ---- a bug found by mutation run 8, fixed: the Monte-Carlo path and the slow reference scored a training-mode
# model with dropout on ----
def test_monte_carlo_and_token_by_token_score_in_eval_mode(setup):
    """Like enumerate_log_probs: a model with dropout, in training mode (as the training loops hand it to the
    evaluator), is scored as in eval mode, and left in training mode. Before the fix both scored a dropout sample:
    mc/reward 2.8 against 3.0, and log-probs up to 23.8 nats off."""
    task, _, ref, _, _, _, _ = setup
    model = _gpt(task, 11, dropout=0.5)
    want_mc = monte_carlo_metrics(model, ref, task, 0.6, n_samples=5, seed=3)  # eval mode
    y = all_responses(task.vocab, task.response_len)[:5]
    want_tt = token_by_token_log_probs(model, task, np.arange(5) % 4, y)
    model.train()
    torch.manual_seed(0)
    got_mc = monte_carlo_metrics(model, ref, task, 0.6, n_samples=5, seed=3)
    got_tt = token_by_token_log_probs(model, task, np.arange(5) % 4, y)
    assert model.training is True
    for k in want_mc:
        assert got_mc[k] == pytest.approx(want_mc[k], rel=1e-9, abs=1e-9), k
    np.testing.assert_allclose(got_tt, want_tt, rtol=0, atol=TOL)
