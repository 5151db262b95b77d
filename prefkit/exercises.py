"""Checkers for the notebooks' exercises (chapters 1–6).

Each ``check_*`` takes a student's function, compares it with an exact answer computed by the chapter's own
module (a closed form, the library's implementation, torch autograd, or a brute-force fit) and raises
``AssertionError`` with a hint on the first mismatch. The reference solutions live apart, in
``solutions/chN_*.py``, so an instructor can remove them without breaking the notebooks: a notebook imports a
reference solution only when the student's stub is still unimplemented.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validate import as_float_array
from .bradley_terry import bt_log_likelihood, fit_bradley_terry, mle_obstruction, sample_comparisons
from .displacement import DisplacementProblem, _softmax_rows, ches_score, squeeze_first_order, train_displacement
from .free_lunch import azar_preferences, ipo_optimum
from .losses import preference_loss
from .closed_form import log_partition, optimal_policy
from .rl import reinforce_loss, rloo_advantages

__all__ = [
    "check_mm_update",
    "check_contrast_stderr",
    "check_log_partition",
    "check_optimal_policy",
    "check_reinforce_loss",
    "check_rloo_advantages",
    "check_dpo_loss",
    "check_dpo_grad",
    "check_ipo_all_pairs",
    "check_ipo_weighted_gap",
    "check_ches",
    "check_squeeze_rate",
    "check_catastrophe",
]


# ---------------------------------------------------------------------------------------------------------
# Chapter 1: Bradley-Terry


def _bt_instance(seed, n=6, m=300):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n)
    comps = sample_comparisons(theta, m, rng)
    while mle_obstruction(comps, n) is not None:  # keep instances whose MLE exists
        comps = sample_comparisons(theta, m, rng)
    wins = np.zeros((n, n))
    np.add.at(wins, (comps[:, 0], comps[:, 1]), 1.0)
    return comps, wins


def check_mm_update(fn) -> bool:
    """Check one sweep of Hunter's (2004) MM algorithm for Bradley-Terry strengths.

    The update is γ_i ← W_i / Σ_{j≠i} (n_ij + n_ji)/(γ_i + γ_j) with γ = e^θ and W_i = Σ_j n_ij.

    Parameters
    ----------
    fn : callable
        ``fn(strengths (n,), wins (n, n)) -> new strengths (n,)``, ``wins[i, j]`` = n_ij.

    Returns
    -------
    bool
        True; raises ``AssertionError`` if one sweep differs from the formula written out entry by entry,
        lowers the log-likelihood, or the sweeps do not reach :func:`prefkit.fit_bradley_terry`'s MLE.
    """
    for seed in range(3):
        comps, wins = _bt_instance(seed)
        n = len(wins)
        theta = np.random.default_rng(10 + seed).standard_normal(n)
        got = np.asarray(fn(theta, wins), dtype=float)
        assert got.shape == (n,), f"shape {got.shape}, expected ({n},)"
        assert np.all(np.isfinite(got)), "non-finite strengths: work with γ = exp(θ − max θ) to avoid overflow"
        gamma = np.exp(theta)
        want = np.array([np.log(wins[i].sum() / sum((wins[i, j] + wins[j, i]) / (gamma[i] + gamma[j])
                                                    for j in range(n) if j != i)) for i in range(n)])
        want -= want.mean()
        got_c = got - got.mean()
        assert np.allclose(got_c, want, atol=1e-10), (
            f"one update differs from Hunter's formula (max abs diff {np.max(np.abs(got_c - want)):.2e} after "
            "centering): γ_i ← W_i / Σ_j (n_ij + n_ji)/(γ_i + γ_j)")
        # the MM property: every sweep raises the likelihood, and the sweeps converge to the MLE
        ll = bt_log_likelihood(theta, comps)
        for _ in range(3000):
            theta_next = np.asarray(fn(theta, wins), dtype=float)
            ll_next = bt_log_likelihood(theta_next, comps)
            assert ll_next >= ll - 1e-9, "the log-likelihood went down: an MM sweep must never lower it"
            if np.max(np.abs(theta_next - theta - np.mean(theta_next - theta))) < 1e-12:
                theta = theta_next
                break
            theta, ll = theta_next, ll_next
        err = np.max(np.abs(theta - theta.mean() - fit_bradley_terry(comps, n).strengths))
        assert err < 1e-8, f"the sweeps did not reach the MLE (max abs diff {err:.2e})"
    print("check_mm_update: one sweep matches Hunter's formula, sweeps raise ℓ and converge to the MLE")
    return True


def check_contrast_stderr(fn) -> bool:
    """Check the standard error of a contrast, SE(θ_i − θ_j) = sqrt(C_ii + C_jj − 2·C_ij).

    Parameters
    ----------
    fn : callable
        ``fn(covariance (n, n), i, j) -> float``.

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch with the two-item closed form sqrt(1/n_ab + 1/n_ba),
        with :meth:`BradleyTerryFit.contrast_stderr`, or if the answer depends on the gauge.
    """
    fit = fit_bradley_terry([[0, 1], [1, 0]], weights=[6.0, 3.0])
    got = fn(fit.covariance, 0, 1)
    assert np.isclose(got, np.sqrt(1 / 6 + 1 / 3), atol=1e-10), (
        f"two items, 6 wins to 3: got {got}, expected sqrt(1/6 + 1/3) = {np.sqrt(1 / 6 + 1 / 3):.6f}")
    comps, _ = _bt_instance(5)
    fit = fit_bradley_terry(comps)
    for i, j in [(0, 1), (2, 5), (3, 3)]:
        got, want = fn(fit.covariance, i, j), fit.contrast_stderr(i, j)
        assert np.isclose(got, want, atol=1e-10), f"items ({i}, {j}): got {got}, expected {want} (C_ij enters twice)"
    k = fit.n_items
    proj = np.eye(k) - np.outer(np.ones(k), np.eye(k)[0])  # θ ↦ θ − θ_0: another gauge, the same contrasts
    c0 = proj @ fit.covariance @ proj.T
    assert np.isclose(fn(c0, 2, 4), fit.contrast_stderr(2, 4), atol=1e-10), "the answer must not depend on the gauge"
    print("check_contrast_stderr: closed form, random instance and gauge invariance all match")
    return True


# ---------------------------------------------------------------------------------------------------------
# Chapter 2: the optimal policy


def _policy_cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.dirichlet(np.ones(6), size=3)
        yield "random instance", p, rng.normal(size=(3, 6)), float(rng.uniform(0.1, 3))
    p = np.array([[0.5, 0.0, 0.5], [0.2, 0.8, 0.0]])
    yield "pi_ref with zeros", p, np.array([[1.0, 50.0, 0.0], [0.0, 1.0, 9.0]]), 0.5
    yield "r/beta = 1e6 (a naive exp overflows)", np.full((1, 3), 1 / 3), np.array([[1e6, 0.0, -1e6]]), 1.0


def check_log_partition(fn) -> bool:
    """Check log Z(x) = log Σ_y π_ref(y|x)·exp(r(x, y)/β) against :func:`prefkit.log_partition`.

    Parameters
    ----------
    fn : callable
        ``fn(pi_ref (n_prompts, n_responses), reward (same), beta) -> log_Z (n_prompts,)``.

    Returns
    -------
    bool
        True; raises ``AssertionError`` on random instances, π_ref with zeros, or r/β = 1e6 (naive exp
        overflows).
    """
    for name, p, r, beta in _policy_cases():
        got = np.asarray(fn(p, r, beta), dtype=float)
        want = log_partition(p, r, beta)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape} (one per prompt)"
        assert np.all(np.isfinite(got)), f"{name}: got non-finite values {got}; use logsumexp"
        assert np.allclose(got, want, rtol=1e-10, atol=1e-10), f"{name}: got {got}, expected {want}"
    print("check_log_partition: all cases pass")
    return True


def check_optimal_policy(fn) -> bool:
    """Check π* = π_ref·exp(r/β)/Z against :func:`prefkit.optimal_policy` (same cases as
    :func:`check_log_partition`).

    Parameters
    ----------
    fn : callable
        ``fn(pi_ref, reward, beta) -> pi_star`` (n_prompts, n_responses).

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch or on mass where π_ref is 0.
    """
    for name, p, r, beta in _policy_cases():
        got = np.asarray(fn(p, r, beta), dtype=float)
        want = optimal_policy(p, r, beta)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        assert np.all(np.isfinite(got)), f"{name}: non-finite values; work in log space"
        assert np.allclose(got, want, atol=1e-10), f"{name}: got {got}, expected {want}"
        assert np.all(got[p == 0] == 0), f"{name}: pi* must be 0 where pi_ref is 0"
    print("check_optimal_policy: all cases pass")
    return True


# ---------------------------------------------------------------------------------------------------------
# Chapter 3: classical RLHF


def check_reinforce_loss(fn) -> bool:
    """Check the REINFORCE surrogate −mean(logp·A), A a constant, against :func:`prefkit.reinforce_loss`.

    Parameters
    ----------
    fn : callable
        ``fn(logp, advantages) -> scalar loss`` (torch tensors of any equal shape).

    Returns
    -------
    bool
        True; raises ``AssertionError`` if the value differs, the gradient w.r.t. logp is not −A/N, or a
        gradient flows into A.
    """
    g = torch.Generator().manual_seed(0)
    for shape in [(5,), (3, 4)]:
        logp = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        adv = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        got = fn(logp, adv)
        want = reinforce_loss(logp, adv)
        assert got.ndim == 0, f"shape {tuple(shape)}: the loss must be a scalar (take the mean)"
        assert torch.allclose(got, want), f"loss {got.item():.6g}, expected {want.item():.6g}"
        got.backward()
        assert torch.allclose(logp.grad, -adv.detach() / logp.numel()), "gradient w.r.t. logp is not −A/N"
        assert adv.grad is None or torch.all(adv.grad == 0), "no gradient may flow into A: detach it"
    print("check_reinforce_loss: all cases pass")
    return True


def check_rloo_advantages(fn) -> bool:
    """Check RLOO advantages A_i = r_i − mean_{j≠i} r_j against :func:`prefkit.rloo_advantages`.

    Parameters
    ----------
    fn : callable
        ``fn(rewards (B, k)) -> advantages (B, k)`` (torch).

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch for k = 2, 3, 8.
    """
    g = torch.Generator().manual_seed(1)
    for k in (2, 3, 8):
        r = torch.randn(4, k, generator=g, dtype=torch.float64)
        got, want = fn(r), rloo_advantages(r)
        assert got.shape == want.shape, f"k={k}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        assert torch.allclose(got, want), f"k={k}: got {got}, expected {want}"
    print("check_rloo_advantages: all cases pass")
    return True


# ---------------------------------------------------------------------------------------------------------
# Chapter 4: DPO


def _dpo_cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        yield "random batch", [-np.abs(rng.normal(0, 3, 8)) for _ in range(4)], float(rng.uniform(0.05, 2))
    zero = np.array([0.0, 0.0])
    yield "margins of ±800 (a naive log(sigmoid) overflows)", [zero, np.array([-800.0, 800.0]), zero, zero], 1.0


def check_dpo_loss(fn) -> bool:
    """Check the per-pair DPO loss −log σ(β·[(logp_w − ref_w) − (logp_l − ref_l)]) against
    :func:`prefkit.preference_loss`.

    Parameters
    ----------
    fn : callable
        ``fn(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta) -> (B,) losses`` (numpy).

    Returns
    -------
    bool
        True; raises ``AssertionError`` on random batches or margins of ±800 (a naive log(sigmoid) overflows).
    """
    for name, (lw, ll, ref_w, ref_l), beta in _dpo_cases():
        got = np.asarray(fn(lw, ll, ref_w, ref_l, beta), dtype=float)
        want = preference_loss(lw, ll, ref_w, ref_l, beta).numpy()
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape} (one per pair)"
        assert np.all(np.isfinite(got)), f"{name}: non-finite losses {got}; use np.logaddexp(0, -margin)"
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12), f"{name}: got {got}, expected {want}"
    print("check_dpo_loss: all cases pass")
    return True


def check_dpo_grad(fn) -> bool:
    """Check ∂loss/∂logp_chosen = −β·σ(−margin) (Rafailov et al. 2023, §4) against torch autograd.

    Parameters
    ----------
    fn : callable
        Same arguments as in :func:`check_dpo_loss`; returns the (B,) gradient of the summed loss.

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch.
    """
    for name, (lw, ll, ref_w, ref_l), beta in _dpo_cases():
        t = torch.tensor(lw, dtype=torch.float64, requires_grad=True)
        preference_loss(t, ll, ref_w, ref_l, beta).sum().backward()
        got = np.asarray(fn(lw, ll, ref_w, ref_l, beta), dtype=float)
        assert np.allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-14), (
            f"{name}: got {got}, autograd says {t.grad.numpy()} (hint: the sign, and sigma(-margin))")
    print("check_dpo_grad: all cases pass")
    return True


# ---------------------------------------------------------------------------------------------------------
# Chapter 5: is DPO a free lunch? (IPO's optimum)


def _all_pairs_data(P):
    """Every ordered pair (i ≻ j), i ≠ j, with weight P[i, j]: each unordered pair observed equally often."""
    n = len(P)
    rows = [(0, i, j) for i in range(n) for j in range(n) if i != j]
    return np.array(rows), np.array([P[i, j] for _, i, j in rows])


def check_ipo_all_pairs(fn) -> bool:
    """Check IPO's optimum when every pair of n responses is observed equally often, i ≻ j with probability
    P[i, j], from any π_ref.

    The exact answer is :func:`prefkit.ipo_optimum` (u = L⁺b, checked against brute-force minimisation in
    tests/test_free_lunch.py) on rows (i ≻ j) weighted P[i, j].

    Parameters
    ----------
    fn : callable
        ``fn(pi_ref (n,), P (n, n), tau) -> pi (n,)``; P[i, j] + P[j, i] = 1 off the diagonal.

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch (Azar's deterministic triangle, random P and π_ref).
    """
    rng = np.random.default_rng(0)
    tri = np.array([[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]])
    cases = [("Azar's triangle, uniform pi_ref", np.full(3, 1 / 3), tri, 0.2),
             ("Azar's triangle, pi_ref = (0.1, 0.3, 0.6)", np.array([0.1, 0.3, 0.6]), tri, 1.0)]
    for n in (3, 5):
        upper = np.triu(rng.uniform(size=(n, n)), 1)
        P = upper + np.tril(1 - upper.T, -1) + 0.5 * np.eye(n)
        cases.append((f"random P, n={n}", rng.dirichlet(np.ones(n)), P, float(rng.uniform(0.1, 2))))
    for name, pi_ref, P, tau in cases:
        prefs, w = _all_pairs_data(P)
        want = ipo_optimum(pi_ref[None], prefs, tau, w)[0]
        got = np.asarray(fn(pi_ref, P, tau), dtype=float)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        assert np.allclose(got, want, atol=1e-10), (
            f"{name}, tau={tau}: got {np.round(got, 6)}, expected {np.round(want, 6)} (hint: on the complete "
            "graph with equal weights, L = I − 11ᵀ/n up to a factor)")
    print("check_ipo_all_pairs: all cases pass")
    return True


def check_ipo_weighted_gap(fn) -> bool:
    """Check IPO's optimal gap h_ac = log π(y_a)/π(y_c) − log π_ref(y_a)/π_ref(y_c) on Azar's deterministic
    triangle y_a ≻ y_b ≻ y_c when the pair (y_a, y_c) has weight w and the other two pairs weight 1.

    Parameters
    ----------
    fn : callable
        ``fn(w, tau) -> h_ac`` (float), w ≥ 0 (w = 0: the pair is never observed).

    Returns
    -------
    bool
        True; raises ``AssertionError`` on a mismatch with :func:`prefkit.ipo_optimum`.
    """
    prefs, _ = azar_preferences()  # rows (a ≻ b), (a ≻ c), (b ≻ c)
    pi_ref = np.array([[0.2, 0.5, 0.3]])
    for w in (0.0, 0.5, 1.0, 4.0):
        for tau in (0.1, 1.0):
            weights = [1.0 if (i, j) != (0, 2) else w for _, i, j in prefs]
            pi = ipo_optimum(pi_ref, prefs, tau, weights)[0]
            want = float(np.log(pi[0] / pi[2]) - np.log(pi_ref[0, 0] / pi_ref[0, 2]))
            got = float(fn(w, tau))
            assert abs(got - want) < 1e-9, (f"w={w}, tau={tau}: got {got:.6g}, expected {want:.6g} (check "
                                             "w = 1: 2/(3τ); w = 0: 1/τ)")
    print("check_ipo_weighted_gap: all cases pass")
    return True


# ---------------------------------------------------------------------------------------------------------
# Chapter 6: likelihood displacement


def check_ches(fn, *, seed: int = 0, n: int = 20) -> float:
    """Check CHES = ⟨Σ_k h_w,k, Σ_k h_l,k⟩ − ‖Σ_k h_w,k‖² (means when length-normalised) against
    :func:`prefkit.ches_score` on random (T, d) hidden states.

    Parameters
    ----------
    fn : callable
        ``fn(hidden_chosen (T_w, d), hidden_rejected (T_l, d), length_normalized) -> float``.
    seed, n : int
        Random instances.

    Returns
    -------
    float
        The max abs error; ``AssertionError`` above 1e-8.
    """
    rng = np.random.default_rng(seed)
    err = 0.0
    for i in range(n):
        d = int(rng.integers(1, 6))
        hw, hl = rng.normal(size=(int(rng.integers(1, 5)), d)), rng.normal(size=(int(rng.integers(1, 5)), d))
        norm = bool(i % 2)
        err = max(err, abs(float(fn(hw, hl, norm)) - ches_score(hw, hl, length_normalized=norm)))
    assert err <= 1e-8, f"CHES differs from the definition by {err:.3g}"
    print(f"check_ches: correct (max abs error {err:.1e} over {n} random pairs)")
    return err


def check_squeeze_rate(fn, *, seed: int = 0, n: int = 20) -> float:
    """Check the first-order change of log π under one unit step lowering log π(y_l) on softmax logits,
    π_y − [y = l] − (‖π‖² − π_l), against :func:`prefkit.squeeze_first_order`.

    Parameters
    ----------
    fn : callable
        ``fn(pi (n_responses,), rejected) -> (n_responses,)``.
    seed, n : int
        Random distributions.

    Returns
    -------
    float
        The max abs error; ``AssertionError`` above 1e-8.
    """
    rng = np.random.default_rng(seed)
    err = 0.0
    for _ in range(n):
        k = int(rng.integers(2, 8))
        pi = rng.dirichlet(np.full(k, 0.5))
        rejected = int(rng.integers(k))
        diff = np.asarray(fn(pi, rejected), float) - squeeze_first_order(pi, rejected)
        err = max(err, float(np.max(np.abs(diff))))
    assert err <= 1e-8, f"squeezing rate differs from the exact first-order change by {err:.3g}"
    print(f"check_squeeze_rate: correct (max abs error {err:.1e} over {n} random distributions)")
    return err


def check_catastrophe(fn, *, steps: int = 150, lr: float = 0.05, beta: float = 0.1) -> dict:
    """Check a construction of the catastrophic case in the unconstrained-features model (logits = W h).

    DPO on token 1 ≻ token 2 (trained with :func:`prefkit.train_displacement`) must make token 0 the top
    gainer, lower π(token 1), and lift π(token 0) above 0.5 from below 0.2.

    Parameters
    ----------
    fn : callable
        ``fn() -> (W, h0)``: unembeddings W (n_tokens ≥ 3, d) and a start h0 (d,).

    Returns
    -------
    dict
        ``p0_start``, ``p0_end``, ``dlogp_1``, ``top_gainer``; ``AssertionError`` if a condition fails,
        ``ValueError`` on bad shapes.
    """
    W, h0 = fn()
    W = as_float_array(W, "W", ndim=2)
    h0 = as_float_array(h0, "h0", ndim=1)
    if W.shape[0] < 3 or W.shape[1] != h0.shape[0]:
        raise ValueError(f"need W of shape (n_tokens ≥ 3, d) and h0 of shape (d,), got {W.shape}, {h0.shape}")
    prob = DisplacementProblem(_softmax_rows(W @ h0)[None], np.array([[0, 1, 2]]), W[None])
    run = train_displacement(prob, beta, steps=steps, lr=lr)
    p0, p1 = np.exp(run.logp[0, 0]), np.exp(run.logp[-1, 0])
    out = {"p0_start": float(p0[0]), "p0_end": float(p1[0]), "dlogp_1": float(np.log(p1[1] / p0[1])),
           "top_gainer": int(np.argmax(p1 - p0))}
    assert p0[0] < 0.2, f"token 0 must start unlikely (π = {p0[0]:.3f} ≥ 0.2)"
    assert out["top_gainer"] == 0, f"the top gainer is token {out['top_gainer']}, not 0"
    assert out["dlogp_1"] < 0, "π(token 1) did not fall"
    assert p1[0] > 0.5, f"π(token 0) only reached {p1[0]:.3f}"
    print(f"check_catastrophe: correct (π(0): {p0[0]:.3f} → {p1[0]:.3f}; Δ log π(1) = {out['dlogp_1']:.2f})")
    return out
