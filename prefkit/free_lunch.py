"""Is DPO a free lunch? (chapter 5): three counter-examples and a cost table, each with an exact answer.

* **Azar et al. 2023, §5** ("A General Theoretical Paradigm to Understand Learning from Human Preferences").
  Three actions y_a ≻ y_b ≻ y_c with *deterministic* preferences, uniform π_ref. The DPO loss has no
  minimiser: it decreases forever as π(y_a) → 1, whatever β (:func:`azar_dpo_run`). IPO's population
  minimiser is finite and depends on τ; :func:`ipo_optimum` gives it in closed form (derivation there) and
  :func:`ipo_brute_force` checks it independently. With some pairs unobserved, DPO drains the unobserved
  action; IPO keeps it.
* **Xu et al. 2024** ("Is DPO Superior to PPO for LLM Alignment? A Comprehensive Study", §4). Data only on
  (y1, y2). A log-linear policy whose features make y3 move with y1 − y2: DPO's gradient pushes mass onto
  y3, and the DPO solution set contains policies with π(y3) anywhere in (0, 1). RLHF's KL-regularised
  optimum with a reward model that never saw y3 is one member of that set, with little mass on y3
  (:func:`xu_example`).
* **Tajwar et al. 2024** ("Preference Fine-Tuning of LLMs Should Leverage Suboptimal, On-Policy Data"). The
  100-action bandit whose reward peak is where π_ref is unlikely: offline DPO, online iterative DPO and RLHF
  (learned reward + RLOO) at an equal label budget, with true reward, KL to π_ref and cost
  (:func:`tajwar_comparison`).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ._validate import as_index_array, check_beta, check_distribution, check_weights
from .dpo import dpo_loss_value, fit_dpo, fit_dpo_online, total_variation
from .losses import preference_loss
from .closed_form import kl_divergence, optimal_policy
from .problems import Problem, tajwar_bandit

__all__ = [
    "azar_preferences",
    "ipo_optimum",
    "ipo_brute_force",
    "azar_dpo_run",
    "dpo_ray_losses",
    "azar_experiment",
    "xu_problem",
    "xu_example",
    "tajwar_problem",
    "tajwar_comparison",
    "format_table",
]

A, B, C = 0, 1, 2  # y_a ≻ y_b ≻ y_c
ALL_PAIRS = ((A, B), (B, C), (A, C))


def azar_preferences(observed=ALL_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic preferences y_a ≻ y_b ≻ y_c (indices 0, 1, 2), one prompt, each observed pair equally
    often.

    ``observed``: unordered pairs of {0, 1, 2}; the better action (lower index) always wins. Returns (prefs,
    weights): rows (0, winner, loser) and uniform weights.
    """
    rows = []
    for i, j in observed:
        i, j = int(i), int(j)
        if not (0 <= i <= 2 and 0 <= j <= 2 and i != j):
            raise ValueError(f"observed must contain pairs of distinct actions in {{0, 1, 2}}, got {(i, j)}")
        rows.append((0, min(i, j), max(i, j)))
    if not rows:
        raise ValueError("observed is empty")
    return np.array(rows, dtype=np.int64), np.full(len(rows), 1.0 / len(rows))


def ipo_optimum(pi_ref, preferences, tau, weights=None) -> np.ndarray:
    """IPO's population minimiser for a tabular policy, in closed form (the one reached from logits at π_ref).

    Derivation. Write u = log π − log π_ref (per prompt) and h = u(y_w) − u(y_l). IPO's sampled loss
    (Azar et al. 2023, Eq. 17) is (h − 1/(2τ))². Over data rows k = (x, i_k, j_k) with weights w_k it is

        Σ_k w_k·(u(i_k) − u(j_k) − 1/(2τ))²,

    a weighted least-squares problem in u on the comparison graph. (With both orders of a pair present with
    weights μ·p and μ·(1 − p), it equals μ·(u(i) − u(j) − (2p − 1)/(2τ))² + const: the target is (p − ½)/τ,
    Azar et al.'s Eq. 14 for a pair.) The normal equations are L·u = b with the weighted graph Laplacian L =
    Σ_k w_k (e_i − e_j)(e_i − e_j)ᵀ and b = Σ_k w_k (e_i − e_j)/(2τ). They fix u up to one constant per
    connected component; the logits reached by gradient methods from log π_ref are u = L⁺·b (the
    minimum-norm solution: 0 on never-compared responses, summing to 0 on every component). Then π ∝
    π_ref·exp(u).

    For the full triangle y_a ≻ y_b ≻ y_c with equal weights, L = 3I − 11ᵀ (times 1/3) and
    b = (2, 0, −2)/(3·2τ), so u = (1, 0, −1)/(3τ): π ∝ π_ref·(e^{1/(3τ)}, 1, e^{−1/(3τ)}).

    Parameters
    ----------
    pi_ref : (n_prompts, n_responses); preferences : (m, 3) rows (prompt, chosen, rejected);
    tau : float > 0 (TRL's β for IPO); weights : (m,) non-negative, optional.
    """
    t = check_beta(tau, "tau")
    p = check_distribution(pi_ref, "pi_ref")
    if p.ndim != 2:
        raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {p.shape}")
    prefs = as_index_array(preferences, "preferences", ncols=3)
    n_prompts, n = p.shape
    if np.any(prefs[:, 0] >= n_prompts) or np.any(prefs[:, 1:] >= n):
        raise ValueError("preferences contains an index out of range")
    w = check_weights(weights, len(prefs))
    out = np.zeros_like(p)
    for x in range(n_prompts):
        L, b = np.zeros((n, n)), np.zeros(n)
        for (_, i, j), wk in zip(prefs[prefs[:, 0] == x], w[prefs[:, 0] == x], strict=True):
            e = np.zeros(n)
            e[i], e[j] = 1.0, -1.0
            L += wk * np.outer(e, e)
            b += wk * e / (2 * t)
        u = np.linalg.pinv(L, rcond=1e-12) @ b
        on = p[x] > 0
        logits = np.where(on, np.log(np.where(on, p[x], 1.0)) + u, -np.inf)
        z = np.exp(logits - logits[on].max())
        out[x] = z / z.sum()
    return out


def ipo_brute_force(pi_ref, preferences, tau, weights=None, *, seed: int = 0) -> np.ndarray:
    """IPO's population minimiser by direct numerical minimisation over all tabular policies (scipy BFGS on
    the logits from several random starts, loss written in numpy), for checking :func:`ipo_optimum`.

    The loss depends only on differences of u, so every start reaches the same π up to the free
    per-component offsets; we return the run started at the logits of π_ref (then the offsets agree with
    :func:`ipo_optimum`) and raise if another start finds a lower loss.
    """
    from scipy.optimize import minimize

    t = check_beta(tau, "tau")
    p = check_distribution(pi_ref, "pi_ref")
    prefs = as_index_array(preferences, "preferences", ncols=3)
    w = check_weights(weights, len(prefs))
    x, i, j = prefs.T
    shape = p.shape
    log_ref = np.log(np.where(p > 0, p, 1.0))

    def loss(z):
        u = z.reshape(shape) - log_ref
        return float(np.sum(w * (u[x, i] - u[x, j] - 1 / (2 * t)) ** 2))

    rng = np.random.default_rng(seed)
    starts = [log_ref.ravel()] + [log_ref.ravel() + rng.normal(0, 2, p.size) for _ in range(3)]
    runs = [minimize(loss, s, method="BFGS", options={"gtol": 1e-12}) for s in starts]
    best = min(r.fun for r in runs)
    if runs[0].fun > best + 1e-9:
        raise RuntimeError("the start at pi_ref did not reach the best loss")
    z = runs[0].x.reshape(shape)
    z = np.where(p > 0, z, -np.inf)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def azar_dpo_run(beta, *, loss_type: str = "sigmoid", observed=ALL_PAIRS, steps: int = 500, lr: float = 0.1,
                 optimizer: str = "adam"):
    """Fit the Azar toy (uniform π_ref over three actions) with a DPO-family loss.

    Returns (result, pi_curve): the :class:`prefkit.dpo.DPOResult` and π along training, shape (steps + 1, 3).
    """
    prefs, w = azar_preferences(observed)
    pi_ref = np.full((1, 3), 1 / 3)
    curve = []

    def cb(step, policy):
        with torch.no_grad():
            curve.append(policy.log_probs().exp()[0].numpy().copy())

    res = fit_dpo(pi_ref, prefs, beta, weights=w, loss_type=loss_type, optimizer=optimizer, steps=steps,
                  lr=lr,
                  record_every=steps, callback=cb)
    return res, np.array(curve)


def dpo_ray_losses(beta, s_grid) -> np.ndarray:
    """DPO loss of the Azar toy (all pairs, uniform π_ref) along the ray of logits z = s·(1, 0, −1), s ≥ 0.

    Every pair's log-ratio gap grows linearly in s, so the loss falls strictly to 0 while π(y_a) → 1: the
    loss has no minimiser, for any β (Azar et al. 2023, §5.1).
    """
    prefs, w = azar_preferences()
    x, i, j = prefs.T
    ref = np.log(np.full(3, 1 / 3))
    out = []
    for s in np.asarray(s_grid, float):
        z = s * np.array([1.0, 0.0, -1.0])
        logp = z - np.logaddexp.reduce(z)  # log-softmax, finite for any s
        loss = preference_loss(logp[i], logp[j], ref[i], ref[j], beta).numpy()
        out.append(float(np.sum(w * loss)))
    return np.array(out)


def azar_experiment(betas=(0.1, 1.0, 10.0), taus=(0.1, 0.5, 2.0), *, steps: int = 2000) -> dict:
    """The measured numbers of chapter 5's Azar section (notebook 05 and the tour call this).

    Returns
    -------
    dict with ``dpo_pi_a``: π(y_a) after ``steps`` Adam steps of DPO, per β; ``dpo_pi_a_early``: the
        same after steps // 10; ``dpo_curves``: π along each run, (steps + 1, 3) per β; ``dpo_monotone``:
        min over β and steps of the change of π(y_a) per step (≥ 0: it only rises); ``dpo_ray_max_ratio``:
        max over β and s ∈ [0, 20] of L(s + 0.1)/L(s) along :func:`dpo_ray_losses` (< 1: the loss only falls
        as π(y_a) → 1); ``dpo_obstruction`` (:func:`prefkit.dpo.dpo_obstruction`'s reason: y_a never
        lost), ``dpo_lbfgs_pi`` (the policy), ``dpo_lbfgs_pi_a`` / ``dpo_lbfgs_grad`` /
        ``dpo_lbfgs_converged`` / ``dpo_lbfgs_warned``: π(y_a), the final max-abs gradient, the
        ``converged`` flag and whether a RuntimeWarning was issued, for an L-BFGS run of DPO at the first β
        (the gradient vanishes, yet it is not a minimiser);
        ``ipo_closed``: closed-form IPO optimum π per τ; ``ipo_fit_tv``: TV(L-BFGS fit of
        IPO, closed form) per τ; ``ipo_brute_tv``: TV(brute-force minimiser, closed form) per τ;
        ``partial``: with only (y_a, y_b) observed: π(y_c) under DPO per β (``dpo_pi_c``), and under IPO per
        τ, closed form (``ipo_pi_c_closed``) and fit (``ipo_pi_c_fit``).
    """
    out = {"betas": list(betas), "taus": list(taus), "dpo_pi_a": [], "dpo_pi_a_early": [], "dpo_curves": [],
           "dpo_monotone": np.inf, "ipo_closed": [], "ipo_fit_tv": [], "ipo_brute_tv": []}
    pi_ref = np.full((1, 3), 1 / 3)
    prefs, w = azar_preferences()
    for beta in betas:
        _, curve = azar_dpo_run(beta, steps=steps)
        out["dpo_curves"].append(curve)
        out["dpo_pi_a"].append(float(curve[-1, A]))
        out["dpo_pi_a_early"].append(float(curve[steps // 10, A]))
        out["dpo_monotone"] = min(out["dpo_monotone"], float(np.diff(curve[:, A]).min()))
    with warnings.catch_warnings(record=True) as caught:  # deterministic optimiser, no minimiser: flagged
        warnings.simplefilter("always", RuntimeWarning)
        lb = fit_dpo(pi_ref, prefs, betas[0], weights=w, optimizer="lbfgs", steps=200, tol=1e-10)
    out.update(dpo_obstruction=lb.obstruction, dpo_lbfgs_converged=lb.converged,
               dpo_lbfgs_pi_a=float(lb.pi[0, A]), dpo_lbfgs_pi=lb.pi[0],
               dpo_lbfgs_grad=lb.history[-1]["grad_norm"],
               dpo_lbfgs_warned=any("no minimiser" in str(c.message) for c in caught))
    grid = np.linspace(0, 20, 201)
    ratios = [dpo_ray_losses(beta, grid) for beta in betas]
    out["dpo_ray_max_ratio"] = max(float(np.max(r[1:] / r[:-1])) for r in ratios)
    for tau in taus:
        closed = ipo_optimum(pi_ref, prefs, tau, w)
        fit = fit_dpo(pi_ref, prefs, tau, weights=w, loss_type="ipo", optimizer="lbfgs", steps=200, tol=1e-12)
        out["ipo_closed"].append(closed[0])
        out["ipo_fit_tv"].append(total_variation(fit.pi, closed))
        out["ipo_brute_tv"].append(total_variation(ipo_brute_force(pi_ref, prefs, tau, w), closed))
    p_prefs, p_w = azar_preferences([(A, B)])
    part = {"dpo_pi_c": [], "ipo_pi_c_closed": [], "ipo_pi_c_fit": []}
    for beta in betas:
        part["dpo_pi_c"].append(float(azar_dpo_run(beta, observed=[(A, B)], steps=steps)[1][-1, C]))
    for tau in taus:
        part["ipo_pi_c_closed"].append(float(ipo_optimum(pi_ref, p_prefs, tau, p_w)[0, C]))
        fit = fit_dpo(pi_ref, p_prefs, tau, weights=p_w, loss_type="ipo", optimizer="lbfgs", steps=200,
                      tol=1e-12)
        part["ipo_pi_c_fit"].append(float(fit.pi[0, C]))
    out["partial"] = part
    return out


# ----------------------------------------------------------------------------------------------------------
# Xu et al. 2024


def xu_problem(pi_ref=(0.45, 0.45, 0.10), reward=(1.0, 0.0, -1.0)) -> Problem:
    """One prompt, three responses, log-linear features φ(y1) = (1, 0), φ(y2) = (0, 1), φ(y3) = (1, −1).

    Preference data will cover (y1, y2) only. θᵀφ(y3) = θᵀ(φ(y1) − φ(y2)): the one direction the data pin down
    also moves y3, and the direction (1, 1) the data leave free moves y1 and y2 together against y3. r*(y3) is
    never used by any method (no pair contains y3); it only scores the results.
    """
    phi = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]])
    return Problem(np.asarray(pi_ref, float)[None], np.asarray(reward, float)[None], phi, name="xu_problem")


def xu_example(beta: float = 0.1, *, problem: Problem | None = None, rlhf_steps: int = 600) -> dict:
    """DPO vs RLHF on :func:`xu_problem` with exact BT data on (y1, y2) only.

    * DPO: log-linear policy, L-BFGS from θ = 0. Its solution set is the line θ1 − θ2 = (r*(y1) −
      r*(y2))/β; along it π(y3) sweeps (0, 1) (``dpo_set_pi3_range`` samples it), and gradient methods land
      at θ ∝ (1, −1).
    * RLHF: a tabular reward model on the same data (:func:`prefkit.reward_model.fit_reward_model` with
      ``l2=0``: the exact BT data on one pair in both orders have a finite MLE, r̂(y1) − r̂(y2) = r*(y1) −
      r*(y2); L-BFGS from 0 keeps the minimum-norm shift and r̂(y3) = 0, its value at initialisation, since
      no pair moves it), then the KL-regularised optimum π_ref·exp(r̂/β)/Z
      (:func:`prefkit.closed_form.optimal_policy`), also reached by :func:`prefkit.rl.train_rlhf` (exact
      gradient) in the same log-linear class. (A ridge l2 > 0 would shrink the gap to about
      (r*(y1) − r*(y2))·(1 − O(l2)), and RLHF's policy would be only approximately in the DPO set.)

    Returns
    -------
    dict with ``dpo_pi`` / ``rlhf_pi`` / ``rlhf_trained_pi`` (policies), ``dpo_pi3`` / ``rlhf_pi3`` (mass on
    y3), ``rm_gap_error`` (|r̂(y1) − r̂(y2) − (r*(y1) − r*(y2))|: the reward model's error on the observed
    pair), ``rlhf_implied_gap_error`` (|β·Δlog(π_RLHF/π_ref) − Δr*| on (y1, y2): RLHF's policy satisfies the
    DPO optimality condition, so it is in the DPO set), ``rlhf_dpo_loss_gap`` (DPO loss of the RLHF policy
    minus DPO's optimum),
    ``dpo_set_pi3_range`` (min, max of π(y3) over members of the DPO set), ``rlhf_train_tv`` (TV between
    train_rlhf's policy and the closed-form RLHF optimum) and the true rewards ``dpo_reward``,
    ``rlhf_reward``.
    """
    from .reward_model import fit_reward_model
    from .rl import train_rlhf

    b = check_beta(beta)
    P = xu_problem() if problem is None else problem
    prefs, w = P.preference_probabilities("all")
    keep = (prefs[:, 1] != 2) & (prefs[:, 2] != 2)
    prefs, w = prefs[keep], w[keep]
    dpo = fit_dpo(P.pi_ref, prefs, b, weights=w, features=P.features, optimizer="lbfgs", steps=200, tol=1e-12)
    dpo_opt = dpo_loss_value(dpo.pi, P.pi_ref, prefs, b, weights=w)
    rm = fit_reward_model(prefs, 1, 3, model="tabular", weights=w, l2=0.0)
    rlhf_pi = optimal_policy(P.pi_ref, rm.reward, b)
    d_star = P.reward[0, 0] - P.reward[0, 1]
    implied_gap = b * (np.log(rlhf_pi[0, 0] / P.pi_ref[0, 0]) - np.log(rlhf_pi[0, 1] / P.pi_ref[0, 1]))
    trained = train_rlhf(P.pi_ref, rm.reward, b, method="exact", features=P.features, steps=rlhf_steps,
                         lr=0.1)
    theta = dpo.model.theta.detach().numpy()
    members = []
    for t in np.linspace(-20, 20, 81):  # θ + t·(1, 1) keeps θ1 − θ2, so stays in the DPO set
        z = np.log(P.pi_ref[0]) + P.features[0] @ (theta + t * np.ones(2))
        e = np.exp(z - z.max())
        members.append(e / e.sum())
    members = np.array(members)
    return {
        "dpo_pi": dpo.pi, "rlhf_pi": rlhf_pi, "rlhf_trained_pi": trained.pi,
        "dpo_pi3": float(dpo.pi[0, 2]), "rlhf_pi3": float(rlhf_pi[0, 2]),
        "rm_gap_error": float(abs(rm.reward[0, 0] - rm.reward[0, 1] - d_star)),
        "rlhf_implied_gap_error": float(abs(implied_gap - d_star)),
        "rlhf_dpo_loss_gap": dpo_loss_value(rlhf_pi, P.pi_ref, prefs, b, weights=w) - dpo_opt,
        "dpo_set_pi3_range": (float(members[:, 2].min()), float(members[:, 2].max())),
        "dpo_set_members": members,
        "rlhf_train_tv": total_variation(trained.pi, rlhf_pi),
        "dpo_reward": float((dpo.pi * P.reward).sum()), "rlhf_reward": float((rlhf_pi * P.reward).sum()),
        "reward_model": rm.reward,
    }


# ----------------------------------------------------------------------------------------------------------
# Tajwar et al. 2024


def tajwar_problem(label_scale: float = 10.0) -> Problem:
    """:func:`prefkit.problems.tajwar_bandit` with the reward scaled by ``label_scale`` for labelling.

    Its r* lies in [0, 1], so Bradley-Terry labels on r* are nearly coin flips (P ≤ σ(1) ≈ 0.73). Scaling r*
    by 10 is a sharper annotator; β scales with it (β = 0.5 here is β = 0.05 on the unit reward). Rewards
    reported by :func:`tajwar_comparison` are on the original [0, 1] scale.
    """
    base = tajwar_bandit()
    s = check_beta(label_scale, "label_scale")
    return Problem(base.pi_ref, s * base.reward, base.features, name=f"tajwar_bandit x{s:g}",
                   info={**base.info, "label_scale": s, "unit_reward": base.reward})


def tajwar_comparison(budget: int = 1000, beta: float = 0.5, *, seeds=(0, 1, 2), label_scale: float = 10.0,
                      dpo_steps: int = 200, rounds: int = 10, rl_steps: int = 300, k: int = 8,
                      lr: float = 0.05,
                      use_features: bool = True) -> list[dict]:
    """Offline DPO, online iterative DPO and RLHF at an equal budget of preference labels (Tajwar et al.
    2024).

    * offline DPO: ``budget`` pairs from π_ref, ``dpo_steps`` Adam steps (full batch);
    * online DPO: ``rounds`` rounds of budget/rounds fresh pairs from the current policy, dpo_steps/rounds
      Adam steps each (:func:`prefkit.dpo.fit_dpo_online`), so the same number of gradient steps;
    * RLHF: a linear reward model on the offline pairs (:func:`prefkit.reward_model.fit_reward_model`), then
      RLOO with k samples per step on the learned reward (:func:`prefkit.rl.train_rlhf`).

    All policies are log-linear in the bandit's 10 bump features (``use_features``) or tabular.

    Cost accounting (the same rule for every method; counts are read from the library's own counters):

    * ``labels``: preference labels used (BT on r*, the annotator);
    * ``ref_samples`` / ``policy_samples``: responses drawn from π_ref / from the policy being trained (two
      per labelled pair; RLOO draws k per prompt per step, :func:`prefkit.rl.train_rlhf`'s ``cost/samples``);
    * ``reward_queries``: reward-model evaluations during policy training (``cost/reward_queries`` of
      train_rlhf; DPO has no reward model, so 0);
    * ``grad_steps``: optimiser steps on the *policy* (Adam steps of DPO, RLOO steps of RLHF);
    * ``rm_evals``: loss-and-gradient evaluations of the reward-model fit (its L-BFGS closure calls, line
      search included; not iterations), 0 for DPO;
    * ``wall_s``: seconds from drawing the first response to the final policy: sampling and labelling
      the pairs, fitting the reward model (RLHF) and training the policy. Offline DPO and RLHF use the
      same offline pairs; the time to draw them is measured once per seed and counted in both.

    Returns
    -------
    list of one dict per method (means over ``seeds``): ``method``, ``reward`` (E_π r* on [0, 1]),
    ``kl_to_ref``, the cost columns above and ``objective`` (J = E_π[label_scale·r*] − β·KL, which π*
    maximises); plus a row for π* (the KL-regularised optimum of r* at β, computed in closed form: no cost).
    """
    b = check_beta(beta)
    P = tajwar_problem(label_scale)
    unit = P.info["unit_reward"]
    feats = P.features if use_features else None
    from .reward_model import fit_reward_model
    from .rl import train_rlhf

    rows = {m: [] for m in ("offline DPO", "online DPO", "RLHF (RM + RLOO)")}

    def score(pi):
        return float((pi * unit).sum()), float(np.mean(kl_divergence(pi, P.pi_ref)))

    def objective(row):  # J = E_π[label_scale·r*] − β·KL(π‖π_ref), the objective π* maximises
        row["objective"] = P.info["label_scale"] * row["reward"] - b * row["kl_to_ref"]
        return row

    for seed in seeds:
        t0 = time.perf_counter()
        prefs = P.sample_preferences(budget, np.random.default_rng(seed))
        t_data = time.perf_counter() - t0
        t0 = time.perf_counter()
        off = fit_dpo(P.pi_ref, prefs, b, features=feats, optimizer="adam", lr=lr, steps=dpo_steps,
                      record_every=dpo_steps)
        r, kl = score(off.pi)
        rows["offline DPO"].append(dict(reward=r, kl_to_ref=kl, labels=budget, ref_samples=2 * budget,
                                        policy_samples=0, reward_queries=0,
                                        grad_steps=off.history[-1]["cost/grad_steps"], rm_evals=0,
                                        wall_s=t_data + time.perf_counter() - t0))
        t0 = time.perf_counter()
        on = fit_dpo_online(P, b, rounds=rounds, pairs_per_round=budget // rounds,
                            steps_per_round=dpo_steps // rounds, features=feats, seed=seed, optimizer="adam",
                            lr=lr)
        r, kl = score(on.pi)
        h = on.history[-1]
        rows["online DPO"].append(dict(reward=r, kl_to_ref=kl, labels=h["labels"], ref_samples=0,
                                       policy_samples=h["cost/samples"], reward_queries=0,
                                       grad_steps=h["cost/grad_steps"], rm_evals=0,
                                       wall_s=time.perf_counter() - t0))
        t0 = time.perf_counter()
        rm = fit_reward_model(prefs, 1, P.n_responses, model="linear" if use_features else "tabular",
                              features=P.features)
        rl = train_rlhf(P.pi_ref, rm.reward, b, method="rloo", features=feats, steps=rl_steps, k=k, seed=seed)
        r, kl = score(rl.pi)
        h = rl.history[-1]
        rows["RLHF (RM + RLOO)"].append(dict(reward=r, kl_to_ref=kl, labels=budget, ref_samples=2 * budget,
                                             policy_samples=h["cost/samples"],
                                             reward_queries=h["cost/reward_queries"],
                                             grad_steps=h["cost/grad_steps"], rm_evals=len(rm.history),
                                             wall_s=t_data + time.perf_counter() - t0))
    table = []
    for m, rs in rows.items():
        row = {"method": m}
        for key in rs[0]:
            row[key] = float(np.mean([r[key] for r in rs]))
        row["reward_sd"] = float(np.std([r["reward"] for r in rs]))
        table.append(objective(row))
    star = optimal_policy(P.pi_ref, P.reward, b)
    r, kl = score(star)
    table.append(objective({"method": "pi* (exact, r* known)", "reward": r, "kl_to_ref": kl, "labels": 0,
                            "ref_samples": 0, "policy_samples": 0, "reward_queries": 0, "grad_steps": 0,
                            "rm_evals": 0, "wall_s": 0.0, "reward_sd": 0.0}))
    return table


def format_table(rows: list[dict], columns=None, floatfmt: str = ".3g") -> str:
    """A list of dicts as a markdown table (the cost table of chapter 5)."""
    if not rows:
        return ""
    columns = list(rows[0]) if columns is None else list(columns)

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            if float(v).is_integer() and abs(v) < 1e12:
                return str(int(v))
            return format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
