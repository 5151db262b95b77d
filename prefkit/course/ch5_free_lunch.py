"""Chapter 5: Is DPO a free lunch? (notebook 05_free_lunch.ipynb). Three counter-examples and a cost table.

* **Azar et al. 2023, §5** ("A General Theoretical Paradigm to Understand Learning from Human Preferences").
  Three actions y_a ≻ y_b ≻ y_c with *deterministic* preferences. The DPO loss has no minimiser: it decreases
  forever as π(y_a) → 1, whatever β (:func:`azar_dpo_run`). IPO's population minimiser is finite and depends on τ
  (:func:`prefkit.optima.ipo_optimum`, checked by :func:`ipo_brute_force`). With some pairs unobserved, DPO drains
  the unobserved action; IPO keeps it (:func:`azar_experiment`).
* **Xu et al. 2024** ("Is DPO Superior to PPO for LLM Alignment? A Comprehensive Study", §4, Theorem 4.1): the
  policies DPO can return form a set that strictly contains RLHF's. With both methods in the same function class,
  on data that cover the responses π_ref produces, the two coincide (:func:`xu_same_class`); a response outside
  π_ref's support and absent from the data separates them: RLHF's KL term pins its probability at 0, while DPO's
  minimisers may put almost all their mass on it, and which one a DPO run returns depends on where it starts
  (:func:`xu_solution_sets`).
* **Tajwar et al. 2024** ("Preference Fine-Tuning of LLMs Should Leverage Suboptimal, On-Policy Data"). The
  100-action bandit whose reward peak is where π_ref is unlikely: offline DPO, online iterative DPO and RLHF
  (learned reward + RLOO) at an equal label budget, with true reward, KL to π_ref and cost
  (:func:`tajwar_comparison`).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._validate import as_index_array, check_beta, check_distribution, check_weights
from ..closed_form import kl_divergence, optimal_policy
from ..optima import ipo_optimum
from ..problems import Problem, tajwar_bandit
from .claims import Chapter
from .exercises import Mistake, exercise

CHAPTER = Chapter(5, "Is DPO a free lunch?", "05_free_lunch.ipynb")

__all__ = [
    "CHAPTER",
    "azar_preferences",
    "ipo_brute_force",
    "azar_dpo_run",
    "dpo_ray_losses",
    "azar_experiment",
    "xu_problem",
    "xu_same_class",
    "xu_solution_sets",
    "tajwar_problem",
    "tajwar_comparison",
    "format_table",
]

S_AZAR = "1. Azar et al. 2023, §5: deterministic preferences"
S_XU = "2. Xu et al. 2024: DPO's solutions include RLHF's, and more"
S_TAJWAR = "3. Tajwar et al. 2024: on-policy data on a bandit"

# --- claims ------------------------------------------------------------------------------------------------------
RAY = CHAPTER.claim("azar_ray", "DPO loss along π(y_a) → 1 only falls, every β: largest ratio L(s + 0.1)/L(s)",
                    at_most=0.999, section=S_AZAR)
MONO = CHAPTER.claim("azar_monotone", "DPO training: π(y_a) never falls, every β (smallest step change)",
                     at_least=-1e-12, section=S_AZAR)
PI_A = CHAPTER.claim("azar_pi_a", "DPO, β = 0.1 and 1: π(y_a) after 500 or more Adam steps", at_least=0.99,
                     section=S_AZAR)
RISING = CHAPTER.claim("azar_still_rising", "DPO, β = 10: π(y_a) still rising (last step minus a tenth of the way)",
                       at_least=0.01, section=S_AZAR)
LB_GRAD = CHAPTER.claim("azar_lbfgs_grad", "L-BFGS on DPO stops where the gradient vanishes (largest entry) ...",
                        at_most=1e-6, section=S_AZAR)
LB_MASS = CHAPTER.claim("azar_lbfgs_mass", "... at π(y_b) + π(y_c)", at_most=1e-12, section=S_AZAR)
LB_FLAG = CHAPTER.claim("azar_flagged", "... yet fit_dpo reports converged=False and warns that no minimiser exists",
                        flag=True, section=S_AZAR)
IPO_FIT = CHAPTER.claim("ipo_fit", "IPO: exact fit vs the closed form π ∝ π_ref·(e^{1/3τ}, 1, e^{−1/3τ}): largest TV",
                        at_most=1e-8, section=S_AZAR)
IPO_BRUTE = CHAPTER.claim("ipo_brute", "IPO: brute-force minimiser vs the closed form: largest TV", at_most=1e-6,
                          section=S_AZAR)
DRAIN = CHAPTER.claim("partial_dpo_drain", "only (a, b) observed: DPO (β = 0.1) drains the unobserved y_c: π(y_c)",
                      at_most=1e-6, section=S_AZAR)
IPO_C = CHAPTER.claim("partial_ipo_closed", "only (a, b) observed: IPO fit vs π(y_c) = 1/(1 + 2cosh(1/(4τ))): gap",
                      at_most=1e-8, section=S_AZAR)
IPO_KEEPS = CHAPTER.claim("partial_ipo_keeps", "... so IPO (τ = 0.1) keeps the unobserved action: π(y_c)",
                          at_least=0.07, section=S_AZAR)
XU_SAME = CHAPTER.claim("xu_same_class", "same function class (linear RM, log-linear policy): TV(RLHF, DPO)",
                        at_most=1e-6, section=S_XU)
XU_PINNED = CHAPTER.claim("xu_rlhf_pinned", "y3 outside π_ref and the data: every fitted RM gives one RLHF policy "
                          "(TV spread)", at_most=1e-12, section=S_XU)
XU_IN = CHAPTER.claim("xu_rlhf_in_dpo", "RLHF's policy attains the DPO loss's minimum (the data's entropy): gap",
                      at_most=1e-12, section=S_XU)
XU_MEMBERS = CHAPTER.claim("xu_dpo_members", "policies with π(y3) = 0.5, 0.9, 0.99 attain it too: largest gap",
                           at_most=1e-12, section=S_XU)
XU_STRICT = CHAPTER.claim("xu_strict", "... so DPO's set is strictly larger: TV from RLHF's policy to the farthest",
                          at_least=0.98, section=S_XU)
XU_LAND_REF = CHAPTER.claim("xu_land_ref", "a DPO run started at π_ref lands on RLHF's policy: TV", at_most=1e-6,
                            section=S_XU)
XU_LAND_INIT = CHAPTER.claim("xu_land_init", "a DPO run started elsewhere lands on the member predicted in closed "
                             "form: TV", at_most=1e-6, section=S_XU)
ON_OFF = CHAPTER.claim("tajwar_online_offline", "online minus offline DPO, same 1000 labels: true reward, worst seed",
                       at_least=0.1, section=S_TAJWAR)
ON_RLHF = CHAPTER.claim("tajwar_online_rlhf", "online DPO minus RLHF (linear RM + RLOO): true reward, worst seed",
                        at_least=0.05, section=S_TAJWAR)
ON_STAR = CHAPTER.claim("tajwar_online_vs_star", "online DPO's true reward as a fraction of π*'s, worst seed",
                        at_least=0.93, section=S_TAJWAR)

A, B, C = 0, 1, 2  # y_a ≻ y_b ≻ y_c
ALL_PAIRS = ((A, B), (B, C), (A, C))


# --- Azar et al. 2023 --------------------------------------------------------------------------------------------
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


def ipo_brute_force(pi_ref, preferences, tau, weights=None, *, seed: int = 0) -> np.ndarray:
    """IPO's population minimiser by direct numerical minimisation over all tabular policies (scipy BFGS on
    the logits from several random starts, loss written in numpy), for checking
    :func:`prefkit.optima.ipo_optimum`.

    The loss depends only on differences of u, so every start reaches the same π up to the free
    per-component offsets; we return the run started at the logits of π_ref (then the offsets agree with
    ``ipo_optimum``) and raise if another start finds a lower loss.
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
    """Fit the Azar toy (uniform π_ref over three actions) with a DPO-family loss for ``steps`` steps.

    Returns (result, pi_curve): the :class:`prefkit.dpo.DPOResult` and π along training, shape (steps + 1, 3).
    """
    import torch

    from ..dpo import fit_dpo

    prefs, w = azar_preferences(observed)
    pi_ref = np.full((1, 3), 1 / 3)
    curve = []

    def cb(step, policy):
        with torch.no_grad():
            curve.append(policy.log_probs().exp()[0].numpy().copy())

    res = fit_dpo(pi_ref, prefs, beta, weights=w, loss_type=loss_type, optimizer=optimizer, steps=steps, lr=lr,
                  record_every=steps, callback=cb)
    return res, np.array(curve)


def dpo_ray_losses(beta, s_grid) -> np.ndarray:
    """DPO loss of the Azar toy (all pairs, uniform π_ref) along the ray of logits z = s·(1, 0, −1), s ≥ 0.

    Every pair's log-ratio gap grows linearly in s, so the loss falls strictly to 0 while π(y_a) → 1: the
    loss has no minimiser, for any β (Azar et al. 2023, §5.1).
    """
    from ..losses import preference_loss

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


def azar_experiment(betas=(0.1, 1.0, 10.0), taus=(0.1, 0.5, 2.0), *, steps: int = 2000, seed: int = 0) -> dict:
    """The measured numbers of chapter 5's Azar section (notebook 05 and the tour call this).

    The DPO runs use the paper's uniform π_ref; the IPO closed form is checked on a π_ref drawn with ``seed``
    (it holds for any π_ref), and the brute-force check starts from random logits drawn with ``seed``.

    Returns
    -------
    dict with ``dpo_pi_a``: π(y_a) after ``steps`` Adam steps of DPO, per β; ``dpo_pi_a_early``: the
        same after steps // 10; ``dpo_curves``: π along each run, (steps + 1, 3) per β; ``dpo_monotone``:
        min over β and steps of the change of π(y_a) per step (≥ 0: it only rises); ``dpo_ray_max_ratio``:
        max over β and s ∈ [0, 20] of L(s + 0.1)/L(s) along :func:`dpo_ray_losses` (< 1: the loss only falls
        as π(y_a) → 1); ``dpo_obstruction`` (:func:`prefkit.dpo.dpo_obstruction`'s reason: y_a never
        lost), ``dpo_lbfgs_pi`` (the policy), ``dpo_lbfgs_pi_a`` / ``dpo_lbfgs_grad`` /
        ``dpo_lbfgs_converged`` / ``dpo_lbfgs_warned``: π(y_a), the final max-abs gradient, the
        ``converged`` flag and whether a warning was issued, for an L-BFGS run of DPO at the first β
        (the gradient vanishes, yet it is not a minimiser); ``ipo_pi_ref`` (the drawn π_ref);
        ``ipo_closed``: closed-form IPO optimum π per τ; ``ipo_fit_tv``: TV(exact fit of IPO, closed form) per τ;
        ``ipo_brute_tv``: TV(brute-force minimiser, closed form) per τ; ``partial``: with only (y_a, y_b) observed
        (uniform π_ref): π(y_c) under DPO per β (``dpo_pi_c``), and under IPO per τ, closed form
        (``ipo_pi_c_closed``) and fit (``ipo_pi_c_fit``).
    """
    from ..dpo import fit_dpo, total_variation

    out = {"betas": list(betas), "taus": list(taus), "dpo_pi_a": [], "dpo_pi_a_early": [], "dpo_curves": [],
           "dpo_monotone": np.inf, "ipo_closed": [], "ipo_fit_tv": [], "ipo_brute_tv": []}
    uniform = np.full((1, 3), 1 / 3)
    prefs, w = azar_preferences()
    for beta in betas:
        _, curve = azar_dpo_run(beta, steps=steps)
        out["dpo_curves"].append(curve)
        out["dpo_pi_a"].append(float(curve[-1, A]))
        out["dpo_pi_a_early"].append(float(curve[steps // 10, A]))
        out["dpo_monotone"] = min(out["dpo_monotone"], float(np.diff(curve[:, A]).min()))
    with warnings.catch_warnings(record=True) as caught:  # deterministic optimiser, no minimiser: flagged
        warnings.simplefilter("always", RuntimeWarning)
        lb = fit_dpo(uniform, prefs, betas[0], weights=w, steps=200)
    out.update(dpo_obstruction=lb.obstruction, dpo_lbfgs_converged=lb.converged,
               dpo_lbfgs_pi_a=float(lb.pi[0, A]), dpo_lbfgs_pi=lb.pi[0],
               dpo_lbfgs_grad=lb.history[-1]["grad_norm"],
               dpo_lbfgs_warned=any("no minimiser" in str(c.message) for c in caught))
    grid = np.linspace(0, 20, 201)
    ratios = [dpo_ray_losses(beta, grid) for beta in betas]
    out["dpo_ray_max_ratio"] = max(float(np.max(r[1:] / r[:-1])) for r in ratios)
    pi_ref = np.random.default_rng(seed).dirichlet(np.full(3, 3.0))[None]
    out["ipo_pi_ref"] = pi_ref[0]
    for tau in taus:
        closed = ipo_optimum(pi_ref, prefs, tau, w)
        fit = fit_dpo(pi_ref, prefs, tau, weights=w, loss_type="ipo", tol=1e-12)
        out["ipo_closed"].append(closed[0])
        out["ipo_fit_tv"].append(total_variation(fit.pi, closed))
        out["ipo_brute_tv"].append(total_variation(ipo_brute_force(pi_ref, prefs, tau, w, seed=seed), closed))
    p_prefs, p_w = azar_preferences([(A, B)])
    part = {"dpo_pi_c": [], "ipo_pi_c_closed": [], "ipo_pi_c_fit": []}
    for beta in betas:
        part["dpo_pi_c"].append(float(azar_dpo_run(beta, observed=[(A, B)], steps=steps)[1][-1, C]))
    for tau in taus:
        part["ipo_pi_c_closed"].append(float(ipo_optimum(uniform, p_prefs, tau, p_w)[0, C]))
        fit = fit_dpo(uniform, p_prefs, tau, weights=p_w, loss_type="ipo", tol=1e-12)
        part["ipo_pi_c_fit"].append(float(fit.pi[0, C]))
    out["partial"] = part
    return out


# --- Xu et al. 2024 ----------------------------------------------------------------------------------------------
def xu_problem(seed: int = 0, pi_ref=(0.45, 0.45, 0.10)) -> Problem:
    """One prompt, three responses, log-linear features φ(y1) = (1, 0), φ(y2) = (0, 1), φ(y3) = (1, −1).

    Preference data will cover (y1, y2) only. θᵀφ(y3) = θᵀ(φ(y1) − φ(y2)): the one direction the data pin down
    also moves y3. r* is drawn with ``seed`` (r*(y1) − r*(y2) between 0.5 and 2); r*(y3) is never used by any
    method (no pair contains y3), it only scores the results.
    """
    rng = np.random.default_rng(seed)
    gap = rng.uniform(0.5, 2.0)
    reward = np.array([gap / 2, -gap / 2, rng.normal(0, 1)]) + rng.normal(0, 1)
    phi = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]])
    return Problem(np.asarray(pi_ref, float)[None], reward[None], phi, name="xu_problem")


def _pair_data(problem, i=0, j=1):
    prefs, w = problem.preference_probabilities("all")
    keep = ((prefs[:, 1] == i) & (prefs[:, 2] == j)) | ((prefs[:, 1] == j) & (prefs[:, 2] == i))
    return prefs[keep], w[keep] / w[keep].sum()


def xu_same_class(beta: float = 1.0, *, seed: int = 0) -> dict:
    """DPO and RLHF in the same function class on :func:`xu_problem`, exact BT data on (y1, y2) only.

    * DPO: the log-linear policy π ∝ π_ref·exp(θᵀφ), fitted by :func:`prefkit.dpo.fit_dpo` (exact solver, θ = 0
      at the start).
    * RLHF: a *linear* reward model r = wᵀφ in the same features (:func:`prefkit.reward_model.fit_reward_model`,
      ``model="linear"``, no ridge, L-BFGS from w = 0), then its KL-regularised optimum π_ref·exp(r̂/β)/Z, which
      lies in the same log-linear class (θ = w/β).

    Both objectives see w (or θ) only through w1 − w2, and both optimisers start at 0 and move along (1, −1), so
    they reach the same point: r̂(y3) = r̂(y1) − r̂(y2) = r*(y1) − r*(y2), the reward model extrapolates to y3
    exactly as DPO's policy does. Returns ``dpo_pi``, ``rlhf_pi``, ``tv`` (between them), ``reward_model``
    and the true rewards ``dpo_reward``, ``rlhf_reward``.
    """
    from ..dpo import fit_dpo, total_variation
    from ..reward_model import fit_reward_model

    b = check_beta(beta)
    P = xu_problem(seed)
    prefs, w = _pair_data(P)
    dpo = fit_dpo(P.pi_ref, prefs, b, weights=w, features=P.features)
    rm = fit_reward_model(prefs, 1, 3, model="linear", features=P.features, weights=w, l2=0.0)
    rlhf = optimal_policy(P.pi_ref, rm.reward, b)
    return {"problem": P, "dpo_pi": dpo.pi, "rlhf_pi": rlhf, "tv": total_variation(dpo.pi, rlhf),
            "reward_model": rm.reward, "dpo_reward": float((dpo.pi * P.reward).sum()),
            "rlhf_reward": float((rlhf * P.reward).sum())}


def xu_solution_sets(beta: float = 1.0, *, seed: int = 0, r3_grid=None,
                     dpo_masses=(0.5, 0.9, 0.99)) -> dict:
    """Xu et al. 2024, Theorem 4.1 on one prompt: RLHF's solutions are DPO solutions, and DPO has more.

    Tabular policy and tabular reward model (the same class). Responses y1, y2, y3; π_ref = (p, 1 − p, 0): the
    reference never produces y3, and the data (exact BT on r*, drawn with ``seed``) compare only y1 and y2.

    * RLHF: every reward model that fits the data has r(y1) − r(y2) = Δ* and any r(y3) (nothing constrains it;
      ``r3_grid`` sweeps it, default −20..20). Its KL-regularised optimum π_ref·exp(r/β)/Z has π(y3) = 0 whatever
      r(y3) is: the KL term pins y3 at π_ref's 0. RLHF's solution set is one policy, π_RLHF.
    * DPO: the loss sees π only through log π(y1)/π_ref(y1) − log π(y2)/π_ref(y2), so every π with that gap equal
      to Δ*/β minimises it, whatever mass it puts on y3: π_t = (1 − t)·π_RLHF + t·δ_{y3} for t in [0, 1). Its
      minimum is the data's entropy, −σ(Δ*)·log σ(Δ*) − σ(−Δ*)·log σ(−Δ*) (independent of the fits).
    * Where a DPO run lands: from π_ref (y3 masked at 0) it lands on π_RLHF; from a start π0 that puts mass on y3
      (an SFT model, say; drawn with ``seed``), the gradient is zero on y3's logit and ± along (1, −1) on the
      others, so the logits become log π0 + s·(1, −1, 0) with s fixed by the gap: the member the closed form
      predicts.

    Returns a dict: ``pi_ref``, ``pi0``, ``reward``, ``rlhf_pi``, ``rlhf_spread`` (largest TV between the RLHF
    policies over ``r3_grid``), ``dpo_min`` (the entropy), ``rlhf_loss_gap`` (DPO loss of π_RLHF minus it),
    ``members`` (π_t for t in ``dpo_masses``), ``member_loss_gap`` (largest), ``strict_tv`` (largest TV between
    π_RLHF and a member), ``land_ref`` / ``land_ref_tv`` (DPO from π_ref and its TV to π_RLHF), ``land_init`` /
    ``land_init_closed`` / ``land_init_tv`` (DPO from π0, the predicted member, their TV) and the true rewards.
    """
    from ..dpo import dpo_loss_value, fit_dpo, total_variation
    from ..policies import TabularPolicy
    from ..reward_model import fit_reward_model

    b = check_beta(beta)
    r3_grid = np.linspace(-20, 20, 41) if r3_grid is None else np.asarray(r3_grid, float)
    rng = np.random.default_rng([seed, 5])
    p = rng.uniform(0.3, 0.7)
    pi_ref = np.array([[p, 1 - p, 0.0]])
    gap = rng.uniform(0.5, 2.0)
    reward = np.array([[gap / 2, -gap / 2, -3.0]])  # y3: a response π_ref never produces, with low true reward
    sig = 1 / (1 + np.exp(-gap))
    prefs = np.array([[0, 0, 1], [0, 1, 0]])
    w = np.array([sig, 1 - sig])
    dpo_min = float(-sig * np.log(sig) - (1 - sig) * np.log(1 - sig))
    rm = fit_reward_model(prefs, 1, 3, model="tabular", weights=w, l2=0.0)
    rlhf_all = [optimal_policy(pi_ref, rm.reward + np.array([[0.0, 0.0, c]]), b) for c in r3_grid]
    rlhf = rlhf_all[len(rlhf_all) // 2]
    spread = max(total_variation(a, rlhf) for a in rlhf_all)
    e3 = np.array([[0.0, 0.0, 1.0]])
    members = [(1 - t) * rlhf + t * e3 for t in dpo_masses]
    member_gap = max(abs(dpo_loss_value(m, pi_ref, prefs, b, weights=w) - dpo_min) for m in members)
    land_ref = fit_dpo(pi_ref, prefs, b, weights=w).pi
    pi0 = rng.dirichlet(np.full(3, 2.0))[None]
    z0 = np.log(pi0[0])
    s = 0.5 * (gap / b + np.log(pi_ref[0, 0] / pi_ref[0, 1]) - (z0[0] - z0[1]))
    z = z0 + s * np.array([1.0, -1.0, 0.0])
    closed = (np.exp(z - z.max()) / np.exp(z - z.max()).sum())[None]
    land_init = fit_dpo(pi_ref, prefs, b, weights=w, policy=TabularPolicy(pi0)).pi
    return {"pi_ref": pi_ref[0], "pi0": pi0[0], "reward": reward[0], "rlhf_pi": rlhf[0], "rlhf_spread": spread,
            "dpo_min": dpo_min, "rlhf_loss_gap": abs(dpo_loss_value(rlhf, pi_ref, prefs, b, weights=w) - dpo_min),
            "members": np.array([m[0] for m in members]), "member_masses": list(dpo_masses),
            "member_loss_gap": member_gap, "strict_tv": max(total_variation(m, rlhf) for m in members),
            "land_ref": land_ref[0], "land_ref_tv": total_variation(land_ref, rlhf),
            "land_init": land_init[0], "land_init_closed": closed[0],
            "land_init_tv": total_variation(land_init, closed),
            "rlhf_reward": float((rlhf * reward).sum()), "land_init_reward": float((land_init * reward).sum()),
            "member_rewards": [float((m * reward).sum()) for m in members]}


# --- Tajwar et al. 2024 ------------------------------------------------------------------------------------------
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
                      dpo_steps: int = 200, rounds: int = 10, rl_steps: int = 300, k: int = 8, lr: float = 0.05,
                      use_features: bool = True) -> list[dict]:
    """Offline DPO, online iterative DPO and RLHF at an equal budget of preference labels (Tajwar et al.
    2024).

    * offline DPO: ``budget`` pairs from π_ref, ``dpo_steps`` Adam steps (full batch);
    * online DPO: ``rounds`` rounds of budget/rounds fresh pairs from the current policy, dpo_steps/rounds
      Adam steps each (:func:`prefkit.dpo.fit_dpo_online`), so the same number of gradient steps;
    * RLHF: a linear reward model on the offline pairs (:func:`prefkit.reward_model.fit_reward_model`), then
      RLOO with k samples per step on the learned reward (:func:`prefkit.rl.train_rlhf`).

    All policies are log-linear in the bandit's 10 bump features (``use_features``) or tabular. Each seed of
    ``seeds`` draws its own data and samples.

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
    ``reward_sd`` and ``rewards`` (per seed), ``kl_to_ref``, the cost columns above and ``objective``
    (J = E_π[label_scale·r*] − β·KL, which π* maximises); plus a row for π* (the KL-regularised optimum of r* at
    β, computed in closed form: no cost).
    """
    from ..dpo import fit_dpo, fit_dpo_online
    from ..reward_model import fit_reward_model
    from ..rl import train_rlhf

    b = check_beta(beta)
    P = tajwar_problem(label_scale)
    unit = P.info["unit_reward"]
    feats = P.features if use_features else None
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
        row["rewards"] = [r["reward"] for r in rs]
        table.append(objective(row))
    star = optimal_policy(P.pi_ref, P.reward, b)
    r, kl = score(star)
    table.append(objective({"method": "pi* (exact, r* known)", "reward": r, "kl_to_ref": kl, "labels": 0,
                            "ref_samples": 0, "policy_samples": 0, "reward_queries": 0, "grad_steps": 0,
                            "rm_evals": 0, "wall_s": 0.0, "reward_sd": 0.0, "rewards": [r] * len(seeds)}))
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


def tajwar_margins(table) -> dict:
    """Per-seed comparisons of a :func:`tajwar_comparison` table: the worst seed's online − offline and online −
    RLHF reward gaps, online DPO's worst reward as a fraction of π*'s, and the RLHF − offline gaps per seed."""
    r = {row["method"]: np.array(row["rewards"]) for row in table}
    on, off, rl = r["online DPO"], r["offline DPO"], r["RLHF (RM + RLOO)"]
    star = r["pi* (exact, r* known)"][0]
    return {"online_offline": float((on - off).min()), "online_rlhf": float((on - rl).min()),
            "online_vs_star": float(on.min() / star), "rlhf_offline": (rl - off).tolist()}


# --- tour checks -------------------------------------------------------------------------------------------------
@CHAPTER.check("Azar: DPO -> deterministic, IPO closed form")
def tour_azar(ctx):
    az = azar_experiment(steps=500, seed=ctx.seed)
    part = az["partial"]
    from ..plotting.dpo import plot_azar

    ctx.savefig(plot_azar(az), "ch5_azar.png")
    closed_c = [1 / (1 + 2 * np.cosh(1 / (4 * t))) for t in az["taus"]]
    return {RAY: az["dpo_ray_max_ratio"], MONO: az["dpo_monotone"], PI_A: min(az["dpo_pi_a"][:2]),
            RISING: az["dpo_pi_a"][2] - az["dpo_pi_a_early"][2], LB_GRAD: az["dpo_lbfgs_grad"],
            LB_MASS: float(az["dpo_lbfgs_pi"][1:].sum()),
            LB_FLAG: (not az["dpo_lbfgs_converged"]) and az["dpo_lbfgs_warned"] and az["dpo_obstruction"] is not None,
            IPO_FIT: max(az["ipo_fit_tv"]), IPO_BRUTE: max(az["ipo_brute_tv"]), DRAIN: part["dpo_pi_c"][0],
            IPO_C: max(abs(a - b) for a, b in zip(part["ipo_pi_c_fit"], closed_c, strict=True)),
            IPO_KEEPS: part["ipo_pi_c_fit"][0]}


@CHAPTER.check("Xu: DPO's solution set contains RLHF's")
def tour_xu(ctx):
    same = xu_same_class(1.0, seed=ctx.seed)
    sets = xu_solution_sets(1.0, seed=ctx.seed)
    from ..plotting.dpo import plot_xu

    ctx.savefig(plot_xu(sets), "ch5_xu.png")
    return {XU_SAME: same["tv"], XU_PINNED: sets["rlhf_spread"], XU_IN: sets["rlhf_loss_gap"],
            XU_MEMBERS: sets["member_loss_gap"], XU_STRICT: sets["strict_tv"], XU_LAND_REF: sets["land_ref_tv"],
            XU_LAND_INIT: sets["land_init_tv"]}


@CHAPTER.check("Tajwar: on-policy wins; cost table")
def tour_tajwar(ctx):
    n = 2 if ctx.fast else 3
    table = tajwar_comparison(1000, 0.5, seeds=tuple(100 * ctx.seed + k for k in range(n)))
    m = tajwar_margins(table)
    from ..plotting.dpo import plot_tajwar

    ctx.savefig(plot_tajwar(table), "ch5_tajwar.png")
    if ctx.figdir is not None:
        ctx.figdir.mkdir(parents=True, exist_ok=True)
        (ctx.figdir / "ch5_cost_table.md").write_text(format_table(table, _COST_COLUMNS) + "\n")
    return {ON_OFF: m["online_offline"], ON_RLHF: m["online_rlhf"], ON_STAR: m["online_vs_star"]}


_COST_COLUMNS = ["method", "reward", "reward_sd", "kl_to_ref", "objective", "labels", "ref_samples",
                 "policy_samples", "reward_queries", "grad_steps", "rm_evals", "wall_s"]


# --- exercise checkers -------------------------------------------------------------------------------------------
def _all_pairs_data(P):
    """Every ordered pair (i ≻ j), i ≠ j, with weight P[i, j]: each unordered pair observed equally often."""
    n = len(P)
    rows = [(0, i, j) for i in range(n) for j in range(n) if i != j]
    return np.array(rows), np.array([P[i, j] for _, i, j in rows])


def _ipo_from_u(pi_ref, u):
    pi = np.asarray(pi_ref, float) * np.exp(u - u.max())
    return pi / pi.sum()


@exercise("ch5.ipo_all_pairs", stub="my_ipo_all_pairs", solution="ch5_free_lunch:ipo_all_pairs",
          title="IPO's optimum with every pair observed")
def grade_ipo_all_pairs(fn):
    """Check ``fn(pi_ref (n,), P (n, n), tau) -> pi (n,)``, IPO's optimum when every pair of n responses is observed
    equally often and i ≻ j with probability P[i, j], against :func:`prefkit.optima.ipo_optimum`."""
    rng = np.random.default_rng(0)
    tri = np.array([[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]])
    cases = [("Azar's triangle, π_ref = (0.1, 0.3, 0.6)", np.array([0.1, 0.3, 0.6]), tri, 0.7),
             ("Azar's triangle, uniform π_ref", np.full(3, 1 / 3), tri, 0.2)]
    for n in (3, 5):
        upper = np.triu(rng.uniform(size=(n, n)), 1)
        P = upper + np.tril(1 - upper.T, -1) + 0.5 * np.eye(n)
        cases.append((f"random P, n = {n}", rng.dirichlet(np.ones(n)), P, float(rng.uniform(0.3, 2))))
    for name, pi_ref, P, tau in cases:
        prefs, w = _all_pairs_data(P)
        want = ipo_optimum(pi_ref[None], prefs, tau, w)[0]
        got = fn(pi_ref.copy(), P.copy(), tau)
        try:
            got = np.asarray(got, dtype=float)
        except (TypeError, ValueError):
            raise Mistake(f"{name}: return π as a numpy array of shape {want.shape}") from None
        if got.shape != want.shape:
            raise Mistake(f"{name}: π has shape {got.shape}; expected {want.shape}, one probability per response")
        if not np.all(np.isfinite(got)):
            raise Mistake(f"{name}: π is not finite")
        if abs(got.sum() - 1) > 1e-9:
            raise Mistake(f"{name}: π sums to {got.sum():.6g}; normalise it to sum to 1")
        if np.allclose(got, want, atol=1e-10):
            continue
        n = len(P)
        t = np.where(~np.eye(n, dtype=bool), P - 0.5, 0.0) / tau
        u = t.sum(axis=1) / n
        wrong = [
            ("π_ref is missing: IPO's optimum is π ∝ π_ref·exp(u), u = log π − log π_ref", _ipo_from_u(np.ones(n), u)),
            ("the normal equations of the complete graph carry a factor 1/n: n·u_i − Σ_j u_j = Σ_j t_ij",
             _ipo_from_u(pi_ref, u * n)),
            ("the target gap of a pair is (P_ij − ½)/τ, not (P_ij − ½)/(2τ)", _ipo_from_u(pi_ref, u / 2)),
            ("the preference probabilities are ignored: with both orders weighted P_ij and P_ji the target is "
             "(P_ij − ½)/τ, not ±1/(2τ) for whoever wins more often",
             _ipo_from_u(pi_ref, np.where(~np.eye(n, dtype=bool), np.sign(P - 0.5) / (2 * tau), 0).sum(1) / n)),
        ]
        for hint, value in wrong:
            if np.allclose(got, value, atol=1e-8):
                raise Mistake(f"{name}: {hint}")
        raise Mistake(f"{name}, τ = {tau:.3g}: π differs from IPO's optimum by up to {np.abs(got - want).max():.3g} "
                      "(Azar's triangle with uniform π_ref should give π ∝ (e^{1/(3τ)}, 1, e^{−1/(3τ)}))")


@exercise("ch5.ipo_weighted_gap", stub="my_ipo_weighted_gap", solution="ch5_free_lunch:ipo_weighted_gap",
          title="IPO on a weighted triangle")
def grade_ipo_weighted_gap(fn):
    """Check ``fn(w, tau) -> h_ac``, IPO's optimal gap log π(y_a)/π(y_c) − log π_ref(y_a)/π_ref(y_c) on Azar's
    deterministic triangle when (y_a, y_c) has weight w and the other two pairs weight 1, against
    :func:`prefkit.optima.ipo_optimum`."""
    prefs, _ = azar_preferences()  # rows (a ≻ b), (b ≻ c), (a ≻ c)
    pi_ref = np.array([[0.2, 0.5, 0.3]])
    for w in (0.0, 0.5, 1.0, 4.0):
        for tau in (0.1, 1.0):
            weights = [1.0 if (i, j) != (0, 2) else w for _, i, j in prefs]
            pi = ipo_optimum(pi_ref, prefs, tau, weights)[0]
            want = float(np.log(pi[0] / pi[2]) - np.log(pi_ref[0, 0] / pi_ref[0, 2]))
            try:
                got = float(fn(w, tau))
            except (TypeError, ValueError):
                raise Mistake(f"w = {w}, τ = {tau}: return h_ac as one number") from None
            if not np.isfinite(got):
                raise Mistake(f"w = {w}, τ = {tau}: h_ac is not finite")
            if abs(got - want) < 1e-9:
                continue
            wrong = [
                ("the answer ignores the weight w: you gave the equal-weight triangle's 2/(3τ); weight the pair "
                 "(y_a, y_c)'s squared error by w", 2 / (3 * tau)),
                ("the three targets 1/(2τ) cannot all be met (h_ac = h_ab + h_bc): minimise the weighted squared "
                 "errors instead of meeting the (y_a, y_c) target", 1 / (2 * tau)),
                ("the answer ignores the pair (y_a, y_c): you gave the chain's 1/τ, right only for w = 0",
                 1 / tau),
            ]
            for hint, value in wrong:
                if abs(got - value) < 1e-9:
                    raise Mistake(f"w = {w}, τ = {tau}: {hint}")
            raise Mistake(f"w = {w}, τ = {tau}: got {got:.6g}, IPO's optimum gives {want:.6g} (check your answer at "
                          "w = 1, where it must be 2/(3τ), and w = 0, the chain, 1/τ)")

# --- the slides against what was measured (the notebook's closing table) -------------------------------------------
CHAPTER.slide("Is DPO a free lunch? No.", ["azar_pi_a", "partial_dpo_drain", "xu_strict"],
              "agrees: with deterministic or partial data DPO drifts to a degenerate policy, and its solution set "
              "holds policies RLHF would not return")
CHAPTER.slide("DPO is offline, RLHF is online.", ["tajwar_online_offline"],
              "agrees, and it is the data rather than the algorithm: DPO on on-policy pairs beats offline DPO at "
              "every seed, with the same number of labels")
CHAPTER.slide("In practice DPO can underperform RLHF (Ivison et al. 2024).", ["tajwar_online_rlhf"],
              "partly: offline DPO trails RLHF at most seeds but not every one (shown per seed in §3, no claim), "
              "while online DPO beats RLHF at every seed; on the tiny LM (chapter 7) DPO is not behind")
