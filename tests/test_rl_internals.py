"""train_rlhf replayed step by step by hand (mutation run 9).

Every method is re-implemented here with its own formulas (softmax logits, the KL-penalised reward, the
baselines, the PPO clip, Adam/SGD with lr/(1 + lr_decay·t)), drawing the same samples from a
``torch.Generator`` seeded like the library's, and the final policy and every history entry are compared
against the library's at 1e-10 (float64, CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefkit.rl import DEFAULT_LR, train_rlhf

TOL = 1e-10


def _problem():
    rng = np.random.default_rng(3)
    pi_ref = rng.dirichlet(np.ones(4), size=3)
    pi_ref[1, 2] = 0.0  # one response off π_ref's support
    pi_ref /= pi_ref.sum(axis=-1, keepdims=True)
    reward = rng.normal(size=(3, 4))
    return pi_ref, reward


class _Adam:
    """Adam by hand (β1 = 0.9, β2 = 0.999, ε = 1e-8, bias-corrected), as torch.optim.Adam's defaults."""

    def __init__(self, shape):
        self.m = torch.zeros(shape, dtype=torch.float64)
        self.v = torch.zeros(shape, dtype=torch.float64)
        self.t = 0

    def step(self, theta, g, lr):
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        mhat = self.m / (1 - 0.9 ** self.t)
        vhat = self.v / (1 - 0.999 ** self.t)
        return theta - lr * mhat / (vhat.sqrt() + 1e-8)


def _replay(pi_ref, reward, beta, method, *, steps, lr, k, seed, optimizer="adam", clip_eps=0.2, ppo_epochs=4,
            baseline_decay=0.9, lr_decay=0.0, record_every=1, features=None):
    with np.errstate(divide="ignore"):
        ref = torch.tensor(np.log(pi_ref))
    mask = torch.isfinite(ref)
    r = torch.tensor(reward)
    if features is None:
        theta = torch.where(mask, ref, torch.zeros_like(ref)).clone()

        def logp_of(th):
            return torch.log_softmax(th.masked_fill(~mask, float("-inf")), dim=-1)
    else:
        phi = torch.tensor(features)
        theta = torch.zeros(phi.shape[-1], dtype=torch.float64)

        def logp_of(th):
            return torch.log_softmax(ref + phi @ th, dim=-1)

    adam = _Adam(theta.shape)
    gen = torch.Generator().manual_seed(seed)
    n, R_ = pi_ref.shape
    # π* ∝ π_ref·exp(r/β), computed here from scratch
    with np.errstate(divide="ignore"):
        z = np.where(pi_ref > 0, np.log(np.where(pi_ref > 0, pi_ref, 1.0)) + reward / beta, -np.inf)
    pi_star = np.exp(z - z.max(axis=-1, keepdims=True))
    pi_star /= pi_star.sum(axis=-1, keepdims=True)
    samples = queries = grads = 0
    hist = []

    def record(step):
        lp = logp_of(theta).numpy()
        p = np.exp(lp)
        on = pi_ref > 0
        kl_star = np.where(on, p * (np.where(on, lp, 0) - np.log(np.where(on, pi_star, 1.0))), 0).sum(-1)
        kl_ref = np.where(on, p * (np.where(on, lp, 0) - np.log(np.where(on, pi_ref, 1.0))), 0).sum(-1)
        er = (p * reward).sum(-1)
        hist.append({"step": step, "kl/to_optimal": kl_star.mean(), "kl/to_ref": kl_ref.mean(),
                     "reward/expected": er.mean(), "objective": (er - beta * kl_ref).mean(),
                     "cost/samples": samples, "cost/reward_queries": queries, "cost/grad_steps": grads})

    def update(g, lr_t):
        nonlocal theta
        if optimizer == "adam":
            theta = adam.step(theta, g, lr_t)
        else:
            theta = theta - lr_t * g

    def grad_of(loss_fn):
        th = theta.clone().requires_grad_(True)
        loss_fn(logp_of(th)).backward()
        return torch.nan_to_num(th.grad)  # masked logits get no gradient

    baseline = torch.zeros(n, 1, dtype=torch.float64)
    record(0)
    for t in range(1, steps + 1):
        lr_t = lr / (1.0 + lr_decay * (t - 1))
        if method == "exact":
            def J(lp):
                slp = torch.where(mask, lp, 0.0)
                sref = torch.where(mask, ref, 0.0)
                return -(torch.where(mask, slp.exp(), 0.0) * (r - beta * (slp - sref))).sum(-1).mean()
            update(grad_of(J), lr_t)
            queries += int(mask.sum())
            grads += 1
        else:
            lp0 = logp_of(theta)
            y = torch.multinomial(lp0.exp(), k, replacement=True, generator=gen)
            old = torch.gather(lp0, 1, y)
            Rw = torch.gather(r, 1, y) - beta * (old - torch.gather(ref, 1, y))
            samples += n * k
            queries += n * k
            if method == "reinforce":
                adv = Rw - baseline
                baseline = baseline_decay * baseline + (1 - baseline_decay) * Rw.mean(-1, keepdim=True)
            else:  # leave-one-out, by a loop
                adv = torch.stack([Rw[:, i] - torch.cat([Rw[:, :i], Rw[:, i + 1:]], 1).mean(-1)
                                   for i in range(k)], 1)
            for _ in range(ppo_epochs if method == "ppo" else 1):
                if method == "ppo":
                    def L(lp, y=y, old=old, adv=adv):
                        ratio = torch.exp(torch.gather(lp, 1, y) - old)
                        clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
                        return -torch.minimum(ratio * adv, clipped * adv).mean()
                else:
                    def L(lp, y=y, adv=adv):
                        return -(torch.gather(lp, 1, y) * adv).mean()
                update(grad_of(L), lr_t)
                grads += 1
        if t % record_every == 0 or t == steps:
            record(t)
    return np.exp(logp_of(theta).numpy()), hist, pi_star


def _compare(res, pi, hist, pi_star):
    np.testing.assert_allclose(res.policy, pi, rtol=0, atol=TOL)
    np.testing.assert_allclose(res.pi_star, pi_star, rtol=0, atol=1e-12)
    assert [h["step"] for h in res.history] == [h["step"] for h in hist]
    for got, want in zip(res.history, hist, strict=True):
        for key, v in want.items():
            if key.startswith("cost/") or key == "step":
                assert got[key] == v, key
            else:
                assert got[key] == pytest.approx(v, abs=TOL), key


CASES = [
    ("exact", dict(steps=7, lr=0.2, k=3, seed=0)),
    ("exact", dict(steps=6, lr=0.3, k=3, seed=0, optimizer="sgd", lr_decay=0.5, record_every=4)),
    ("reinforce", dict(steps=6, lr=0.1, k=3, seed=5, baseline_decay=0.6)),
    ("reinforce", dict(steps=5, lr=0.4, k=2, seed=1, optimizer="sgd", baseline_decay=0.3, lr_decay=0.7)),
    ("rloo", dict(steps=6, lr=0.1, k=3, seed=2)),
    ("rloo", dict(steps=5, lr=0.5, k=4, seed=9, optimizer="sgd", lr_decay=0.25, record_every=2)),
    ("ppo", dict(steps=5, lr=0.05, k=3, seed=4, clip_eps=0.1, ppo_epochs=3)),
    ("ppo", dict(steps=4, lr=2.0, k=4, seed=7, optimizer="sgd", clip_eps=0.15, ppo_epochs=2, lr_decay=0.5)),
]


@pytest.mark.parametrize("method,kw", CASES)
def test_train_rlhf_matches_a_hand_replay(method, kw):
    pi_ref, reward = _problem()
    beta = 0.7
    res = train_rlhf(pi_ref, reward, beta, method=method, **kw)
    pi, hist, pi_star = _replay(pi_ref, reward, beta, method, **kw)
    _compare(res, pi, hist, pi_star)
    assert res.method == method and res.beta == beta
    assert res.final_kl == res.history[-1]["kl/to_optimal"]
    assert res.final_kl == pytest.approx(hist[-1]["kl/to_optimal"], abs=TOL)
    assert res.history[-1]["time/wall"] >= res.history[0]["time/wall"] >= 0.0


@pytest.mark.parametrize("method", ["exact", "rloo", "ppo"])
def test_train_rlhf_log_linear_matches_a_hand_replay(method):
    pi_ref, reward = _problem()
    feats = np.random.default_rng(11).normal(size=(3, 4, 2))
    kw = dict(steps=4, lr=0.1, k=3, seed=6)
    res = train_rlhf(pi_ref, reward, 0.5, method=method, features=feats, **kw)
    pi, hist, pi_star = _replay(pi_ref, reward, 0.5, method, features=feats, **kw)
    _compare(res, pi, hist, pi_star)


@pytest.mark.parametrize("method", ["exact", "reinforce", "rloo", "ppo"])
def test_train_rlhf_default_arguments(method):
    pi_ref, reward = _problem()
    res = train_rlhf(pi_ref, reward, 0.7, method=method, steps=3)
    pi, hist, pi_star = _replay(pi_ref, reward, 0.7, method, steps=3, lr=DEFAULT_LR[method], k=8, seed=0)
    _compare(res, pi, hist, pi_star)


def test_train_rlhf_default_method_is_rloo():
    pi_ref, reward = _problem()
    res = train_rlhf(pi_ref, reward, 0.7, steps=2)
    pi, hist, _ = _replay(pi_ref, reward, 0.7, "rloo", steps=2, lr=0.1, k=8, seed=0)
    assert res.method == "rloo"
    np.testing.assert_allclose(res.policy, pi, rtol=0, atol=TOL)


def test_default_learning_rates():
    assert DEFAULT_LR == {"exact": 0.1, "reinforce": 0.1, "rloo": 0.1, "ppo": 0.03}


def test_train_rlhf_continues_from_a_policy():
    pi_ref, reward = _problem()
    first = train_rlhf(pi_ref, reward, 0.7, method="exact", steps=3, lr=0.2)
    z = first.model.logits.detach().clone()  # before the module is trained on in place
    start_kl_ref = first.history[-1]["kl/to_ref"]
    cont = train_rlhf(pi_ref, reward, 0.7, method="exact", steps=2, lr=0.2, optimizer="sgd", policy=first.model)
    assert cont.model is first.model
    on = pi_ref > 0
    mask = torch.tensor(on)
    ref = torch.tensor(np.log(np.where(on, pi_ref, 1.0)))
    for _ in range(2):  # plain gradient ascent on J, by hand, from the trained logits
        zz = z.clone().requires_grad_(True)
        lp = torch.where(mask, torch.log_softmax(zz.masked_fill(~mask, float("-inf")), -1), 0.0)
        J = (torch.where(mask, lp.exp(), 0.0) * (torch.tensor(reward) - 0.7 * (lp - ref))).sum(-1).mean()
        (-J).backward()
        z = z - 0.2 * torch.nan_to_num(zz.grad)
    want = torch.softmax(z.masked_fill(~mask, float("-inf")), -1).numpy()
    np.testing.assert_allclose(cont.policy, want, rtol=0, atol=TOL)
    assert cont.history[0]["kl/to_ref"] == pytest.approx(start_kl_ref, abs=1e-12)
    assert [h["cost/grad_steps"] for h in cont.history] == [0, 1, 2]


def test_zero_steps_records_only_the_start():
    pi_ref, reward = _problem()
    res = train_rlhf(pi_ref, reward, 0.7, method="ppo", steps=0)
    assert len(res.history) == 1 and res.history[0]["step"] == 0
    np.testing.assert_allclose(res.policy, pi_ref, rtol=0, atol=1e-15)
    assert res.history[0]["kl/to_ref"] == 0.0


def test_train_rlhf_default_steps_is_300():
    pi_ref, reward = _problem()
    res = train_rlhf(pi_ref, reward, 0.7, method="exact", record_every=1000)
    assert [h["step"] for h in res.history] == [0, 300]
    assert res.history[-1]["cost/grad_steps"] == 300


@pytest.mark.parametrize("kw,msg", [
    (dict(steps=-1), r"^steps must be an integer >= 0, got -1$"),
    (dict(k=0, method="reinforce"), r"^k must be an integer >= 1, got 0$"),
    (dict(ppo_epochs=0), r"^ppo_epochs must be an integer >= 1, got 0$"),
    (dict(record_every=0), r"^record_every must be an integer >= 1, got 0$"),
    (dict(method="ppo", k=1), r"^k must be >= 2 for method='ppo', got 1$"),
    (dict(method="rloo", k=1), r"^k must be >= 2 for method='rloo', got 1$"),
])
def test_train_rlhf_bounds_name_the_argument(kw, msg):
    pi_ref, reward = _problem()
    with pytest.raises(ValueError, match=msg):
        train_rlhf(pi_ref, reward, 0.7, **kw)


def test_train_rlhf_accepts_the_smallest_legal_values():
    pi_ref, reward = _problem()
    # k = 1 for REINFORCE, k = 2 for RLOO and PPO, one PPO epoch: all legal
    res = train_rlhf(pi_ref, reward, 0.7, method="reinforce", k=1, steps=2, seed=3)
    pi, _, _ = _replay(pi_ref, reward, 0.7, "reinforce", k=1, steps=2, lr=0.1, seed=3)
    np.testing.assert_allclose(res.policy, pi, rtol=0, atol=TOL)
    for method in ("rloo", "ppo"):
        res = train_rlhf(pi_ref, reward, 0.7, method=method, k=2, ppo_epochs=1, steps=2, seed=3)
        pi, _, _ = _replay(pi_ref, reward, 0.7, method, k=2, ppo_epochs=1, steps=2,
                           lr=DEFAULT_LR[method], seed=3)
        np.testing.assert_allclose(res.policy, pi, rtol=0, atol=TOL)


def test_train_rlhf_is_silent_on_a_reference_with_zeros_and_times_itself():
    import time
    import warnings

    pi_ref, reward = _problem()  # π_ref has a 0: its log is −inf on purpose, without a warning
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = train_rlhf(pi_ref, reward, 0.7, method="reinforce", steps=3, k=2)
    elapsed = time.perf_counter() - t0
    walls = [h["time/wall"] for h in res.history]
    assert 0.0 <= walls[0] <= walls[-1] <= elapsed  # seconds since the start of this call
