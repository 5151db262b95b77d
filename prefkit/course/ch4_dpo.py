"""Chapter 4: DPO (notebook 04_dpo.ipynb).

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model".

The chapter's experiments (the notebook and the tour call the same functions, so they report the same numbers), its
claims, its tour checks and its exercise checkers. The library parts it builds on: :mod:`prefkit.losses` (the loss
family), :mod:`prefkit.dpo` (the fitters) and :mod:`prefkit.optima` (the solution set under partial coverage).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_beta, check_int
from ..closed_form import implied_reward, kl_divergence, log_partition, optimal_policy
from ..optima import dpo_landing_point, dpo_solution_set
from ..problems import random_problem
from .claims import Chapter
from .exercises import Mistake, exercise

CHAPTER = Chapter(4, "DPO", "04_dpo.ipynb")

__all__ = [
    "CHAPTER",
    "chapter_problem",
    "change_of_variables_steps",
    "gradient_formula_error",
    "population_recovery_error",
    "adam_run",
    "finite_sample_errors",
    "fit_error_slope",
    "obstruction_agreement",
    "beta_sweep",
    "partial_coverage_problem",
    "partial_coverage_demo",
    "F_CASES",
    "brute_force_f_optimum",
    "f_dpo_experiment",
    "f_dpo_support_toy",
]

S_CHANGE = "2. The change of variables, one step at a time"
S_LOSSES = "3. The loss family and DPO's gradient"
S_POP = "4. Population DPO recovers π*"
S_FINITE = "5. Finite samples"
S_BETA = "6. The β sweep"
S_PARTIAL = "7. Partial coverage: a set of optima"
S_FDIV = "8. Beyond the reverse KL: f-DPO"

# --- claims ------------------------------------------------------------------------------------------------------
SHIFT = CHAPTER.claim("implied_shift", "r* − β·log(π*/π_ref) equals β·log Z(x) on every response: largest error",
                      at_most=1e-12, section=S_CHANGE, kind="precision")
BT_CANCEL = CHAPTER.claim("bt_cancel", "BT probabilities from the implied reward equal those from r*: largest gap",
                          at_most=1e-12, section=S_CHANGE, kind="precision")
LOSS_NLL = CHAPTER.claim("loss_is_nll", "DPO loss of π* equals the BT negative log-likelihood of r*: gap",
                         at_most=1e-12, section=S_CHANGE, kind="precision")
STATIONARY = CHAPTER.claim("stationary", "gradient of the population DPO loss at π*: largest entry",
                           at_most=1e-12, section=S_CHANGE, kind="precision")
GRAD = CHAPTER.claim("grad_formula", "∂loss/∂log π(y_w) = −β·σ(−margin): autograd vs formula, largest gap",
                     at_most=1e-14, section=S_LOSSES, kind="precision")
POP_TAB = CHAPTER.claim("population_tabular", "tabular DPO on exact BT data, β = 0.1, 0.5, 2: largest TV(π_DPO, π*)",
                        at_most=1e-6, section=S_POP)
POP_LL = CHAPTER.claim("population_loglinear", "log-linear DPO, r* linear in the features: TV(π_DPO, π*)",
                       at_most=1e-6, section=S_POP)
DEFAULT_EXACT = CHAPTER.claim("default_exact", "fit_dpo with its default settings at small β = 0.02: TV(π_DPO, π*)",
                              at_most=1e-6, section=S_POP)
SLOPE = CHAPTER.claim("rate_slope", "slope of log TV(π̂_N, π*) against log N (theory −0.5)", within=(-0.75, -0.3),
                      section=S_FINITE)
OBSTRUCTION = CHAPTER.claim("obstruction_detected",
                            "N = 12 pairs: draws where dpo_obstruction and a strong-connectivity test disagree",
                            at_most=0, section=S_FINITE)
BETA_TV = CHAPTER.claim("beta_tv", "at every β, TV(π_DPO, π*_β): largest", at_most=1e-6, section=S_BETA)
BETA_GAP = CHAPTER.claim("beta_reward_gap", "at every β, β·Δlog-ratio recovers Δr*: largest error", at_most=1e-6,
                         section=S_BETA)
BETA_KL = CHAPTER.claim("beta_kl_falls", "KL(π_DPO‖π_ref) falls as β grows: largest increase", at_most=0.0,
                        section=S_BETA)
FREE = CHAPTER.claim("partial_free", "pairs cover {0, 1, 2} of 5 responses: free offsets in the solution set",
                     within=(2, 2), section=S_PARTIAL)
SPREAD = CHAPTER.claim("partial_loss_spread", "random members of the solution set: spread of their losses",
                       at_most=1e-12, section=S_PARTIAL)
DIFFER = CHAPTER.claim("partial_members_differ", "... yet they differ: largest TV between two members",
                       at_least=0.1, section=S_PARTIAL)
LAND_LBFGS = CHAPTER.claim("partial_lbfgs", "L-BFGS lands on the minimum-norm member (closed form): TV",
                           at_most=1e-6, section=S_PARTIAL)
LAND_NEWTON = CHAPTER.claim("partial_newton", "Newton (minimum-norm step) lands there too: TV", at_most=1e-6,
                            section=S_PARTIAL)
LAND_SGD = CHAPTER.claim("partial_sgd", "gradient descent lands there too: TV", at_most=1e-6, section=S_PARTIAL)
ADAM_LOSS = CHAPTER.claim("partial_adam_loss", "Adam reaches the optimal loss: gap", at_most=1e-8,
                          section=S_PARTIAL)
ADAM_ELSE = CHAPTER.claim("partial_adam_elsewhere", "... at a different member: TV(Adam, minimum-norm member)",
                          at_least=1e-4, section=S_PARTIAL)
# Wang et al. 2023 (f-DPO). Bugs each would catch: an implied reward other than β·f'(π/π_ref) (the fit lands on π*,
# TV 0.01-0.1 away: F_RECOVER fails); λ(x) replaced by normalising the sum (F_MAX fails: the brute-force optimiser
# finds more); the f-optimum computed as π* by mistake (F_DIFFERS fails); assuming π ≪ π_ref for every f (F_SUPPORT).
F_RECOVER = CHAPTER.claim("f_dpo_recovers", "f-DPO (forward KL, Jensen-Shannon, α = 0.5) on exact BT data recovers "
                          "that divergence's regularised optimum: largest TV", at_most=1e-8, section=S_FDIV,
                          kind="precision")
F_MAX = CHAPTER.claim("f_optimum_is_max", "no general-purpose optimiser (SLSQP on the simplex) finds a higher "
                      "f-regularised objective than the closed form: largest excess", at_most=1e-12, section=S_FDIV,
                      kind="precision")
F_DIFFERS = CHAPTER.claim("f_optimum_differs", "the divergence matters: at β = 0.3, each f-optimum's TV from π* "
                          "(smallest)", at_least=0.01, section=S_FDIV)
F_SUPPORT = CHAPTER.claim("forward_kl_leaves_support", "forward KL: the optimum puts mass on a response π_ref never "
                          "gives, which f-DPO cannot reach: TV(f-DPO fit, optimum)", at_least=0.5, section=S_FDIV)


# --- experiments -------------------------------------------------------------------------------------------------
def chapter_problem(seed: int = 0):
    """The chapter's instance: 3 prompts, 5 responses, one of them off π_ref's support per prompt."""
    return random_problem(3, 5, seed=seed, reward_scale=2.0, support=0.8)


def partial_coverage_problem(seed: int = 0):
    """Section 7's instance: one prompt, 5 responses, π_ref near uniform (Dirichlet(20)), r* uniform in [−1, 1].

    Well conditioned at β = 1 (every BT curvature σ(Δr)(1 − σ(Δr)) ≥ 0.1), so gradient descent and Adam reach the
    optimum of the observed pairs in a few hundred steps at every seed.
    """
    from ..problems import Problem

    rng = np.random.default_rng([seed, 7])
    pi_ref = rng.dirichlet(np.full(5, 20.0))[None]
    reward = rng.uniform(-1, 1, 5)[None]
    return Problem(pi_ref, reward, np.zeros((1, 5, 1)), name="partial_coverage")


def change_of_variables_steps(problem, beta) -> dict:
    """The DPO derivation (Rafailov et al. 2023, §4 and Appendix A.2), one numerical step at a time.

    1. π* = π_ref·exp(r*/β)/Z (chapter 2); ``log_Z`` per prompt by logsumexp.
    2. Invert it: r_implied = β·log(π*/π_ref) equals r* − β·log Z(x) (``implied_shift_error``: max over the
       support of |r* − r_implied − β·log Z(x)|).
    3. Substitute into Bradley-Terry: σ(r_implied(y_w) − r_implied(y_l)) = σ(r*(y_w) − r*(y_l)), Z cancels in
       the difference (``bt_error``: max abs difference over all pairs).
    4. So the BT negative log-likelihood of r* on the exact data equals the DPO loss of π* (``loss_error``).
    5. And π* is a stationary point of the DPO loss (``grad_at_pi_star``: max-abs gradient of the population
       loss in the tabular logits at π*); :func:`population_recovery_error` shows it is *the* minimiser.
    """
    import torch

    from ..bradley_terry import bt_probability
    from ..dpo import dpo_loss_value
    from ..losses import preference_loss
    from ..policies import make_policy

    b = check_beta(beta)
    p_ref = problem.pi_ref
    on = p_ref > 0
    pi_star = optimal_policy(p_ref, problem.reward, b)
    log_Z = log_partition(p_ref, problem.reward, b)  # (n_prompts,)
    r_imp = implied_reward(pi_star, p_ref, b)  # −inf off the support
    shift = np.where(on, problem.reward - r_imp - b * log_Z[:, None], 0.0)
    prefs, w = problem.preference_probabilities("all")
    x, i, j = prefs.T
    bt_imp = bt_probability(r_imp[x, i], r_imp[x, j])
    bt_true = bt_probability(problem.reward[x, i], problem.reward[x, j])
    nll = float(np.sum(w * -np.log(bt_true)) / np.sum(w))
    dpo = dpo_loss_value(pi_star, p_ref, prefs, b, weights=w)
    pol = make_policy(p_ref)
    with torch.no_grad():
        pol.logits.copy_(torch.as_tensor(np.where(on, np.log(np.where(on, pi_star, 1.0)), 0.0)))
    lp = pol.log_probs()
    ref = torch.as_tensor(np.log(np.where(on, p_ref, 1.0)))
    wt = torch.as_tensor(w / w.sum())
    loss = (wt * preference_loss(lp[x, i], lp[x, j], ref[x, i], ref[x, j], b)).sum()
    loss.backward()
    return {"pi_star": pi_star, "log_Z": log_Z, "implied_reward": r_imp,
            "implied_shift_error": float(np.abs(shift).max()),
            "bt_error": float(np.abs(bt_imp - bt_true).max()),
            "bt_nll": nll, "dpo_loss_at_pi_star": dpo, "loss_error": abs(nll - dpo),
            "grad_at_pi_star": float(pol.logits.grad.abs().max())}


def gradient_formula_error(beta: float = 0.5, *, n: int = 6, seed: int = 0) -> dict:
    """Autograd's ∂(Σ loss)/∂log π(y_w) against the formula −β·σ(−margin) on a random batch of ``n`` pairs.

    Returns a dict with the four log-prob tensors, ``margin``, ``grad`` (autograd) and ``error`` (largest gap).
    """
    import torch

    from ..losses import preference_loss

    rng = np.random.default_rng(seed)
    lw, ll, rw, rl = (torch.tensor(-np.abs(rng.normal(0, 2, n))) for _ in range(4))
    lw.requires_grad_(True)
    preference_loss(lw, ll, rw, rl, beta).sum().backward()
    margin = beta * ((lw - rw) - (ll - rl)).detach()
    err = float((lw.grad + beta * torch.sigmoid(-margin)).abs().max())
    return {"logp_chosen": lw.detach(), "logp_rejected": ll, "ref_logp_chosen": rw, "ref_logp_rejected": rl,
            "margin": margin, "grad": lw.grad.clone(), "error": err}


def population_recovery_error(problem, beta, *, loss_type: str = "sigmoid", features=None, pairs="all",
                              **fit_kwargs) -> float:
    """TV(π_DPO, π*) after fitting DPO (by default fit_dpo's exact solver) to exact BT probabilities from r*."""
    from ..dpo import fit_dpo, total_variation

    prefs, w = problem.preference_probabilities(pairs)
    res = fit_dpo(problem.pi_ref, prefs, beta, weights=w, loss_type=loss_type, features=features, **fit_kwargs)
    return total_variation(res.pi, optimal_policy(problem.pi_ref, problem.reward, beta))


def adam_run(problem, beta, *, steps: int = 300) -> dict:
    """Adam on the population loss for ``steps`` steps next to the exact optimum.

    Returns ``history`` (Adam's), ``losses`` (its loss per step), ``optimum`` (the exact solver's loss),
    ``max_rise`` (largest step-to-step increase of Adam's loss) and ``gap`` (final loss minus the optimum).
    """
    from ..dpo import fit_dpo

    prefs, w = problem.preference_probabilities()
    fit = fit_dpo(problem.pi_ref, prefs, beta, weights=w, optimizer="adam", steps=steps)
    optimum = fit_dpo(problem.pi_ref, prefs, beta, weights=w).history[-1]["loss"]
    losses = np.array([h["loss"] for h in fit.history])
    return {"history": fit.history, "losses": losses, "optimum": optimum,
            "max_rise": float(np.diff(losses).max()), "gap": float(losses[-1] - optimum)}


def finite_sample_errors(problem, beta, sizes, *, n_seeds: int = 4, seed: int = 0) -> dict:
    """TV(π̂_N, π*) for DPO fitted (exact solver) to N pairs sampled from π_ref, ``n_seeds`` draws per N.

    If the sampled "who beat whom" graph of some prompt is not strongly connected, the tabular DPO loss has
    no minimiser (Zermelo 1929; chapter 1) and π̂_N is not defined: such a draw is detected with
    :func:`prefkit.dpo.dpo_obstruction`, counted, and drawn again (at most 100 times per N).

    Returns
    -------
    dict with ``sizes``, ``errors`` (mean TV over the draws, per N), ``all_errors`` ((len(sizes), n_seeds))
    and ``redrawn`` (draws without a minimiser, per N).
    """
    from ..dpo import dpo_obstruction, fit_dpo, total_variation

    target = optimal_policy(problem.pi_ref, problem.reward, beta)
    errs = np.zeros((len(sizes), n_seeds))
    redrawn = np.zeros(len(sizes), dtype=int)
    for i, n in enumerate(sizes):
        check_int(n, "sizes (each N)", 1)
        rng = np.random.default_rng([seed, int(n)])
        for s in range(n_seeds):
            for _ in range(100):
                prefs = problem.sample_preferences(int(n), rng)
                if dpo_obstruction(problem.pi_ref, prefs) is None:
                    break
                redrawn[i] += 1
            else:
                raise ValueError(f"sizes: N={int(n)}: 100 draws in a row had no minimiser; pick N larger")
            # The loss is a weighted mean over rows, so identical rows can be merged into counts: same minimiser,
            # and the fit costs O(distinct pairs) instead of O(N).
            rows, counts = np.unique(prefs, axis=0, return_counts=True)
            res = fit_dpo(problem.pi_ref, rows, beta, weights=counts.astype(np.float64))
            errs[i, s] = total_variation(res.pi, target)
    return {"sizes": np.asarray(sizes), "errors": errs.mean(axis=1), "all_errors": errs, "redrawn": redrawn}


def fit_error_slope(sizes, errors) -> float:
    """Least-squares slope of log(error) against log(N); N^{-1/2} statistics give −0.5."""
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(errors, float)), 1)[0])


def obstruction_agreement(problem, n_pairs: int = 5, draws: int = 200, *, seed: int = 0) -> dict:
    """How often ``draws`` samples of ``n_pairs`` pairs leave the tabular DPO loss without a minimiser, by
    :func:`prefkit.dpo.dpo_obstruction` and independently by scipy's strongly connected components.

    Independent test: per prompt, the loss has a minimiser iff, within every connected component of the
    undirected comparison graph, the directed graph winner → loser is strongly connected.

    Returns ``no_minimiser`` (draws flagged by dpo_obstruction) and ``disagreements`` (draws where the two differ).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..dpo import dpo_obstruction

    rng = np.random.default_rng(seed)
    n_prompts, n = problem.pi_ref.shape
    flagged = disagree = 0
    for _ in range(draws):
        prefs = problem.sample_preferences(n_pairs, rng)
        ours = dpo_obstruction(problem.pi_ref, prefs) is not None
        theirs = False
        for x in range(n_prompts):
            e = prefs[prefs[:, 0] == x][:, 1:]
            if len(e) == 0:
                continue
            g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
            _, weak = connected_components(g, directed=True, connection="weak")
            _, strong = connected_components(g, directed=True, connection="strong")
            touched = np.unique(e)
            # every weak component (of compared responses) must be one strong component
            for c in np.unique(weak[touched]):
                members = touched[weak[touched] == c]
                if len(np.unique(strong[members])) > 1:
                    theirs = True
        flagged += ours
        disagree += ours != theirs
    return {"no_minimiser": flagged, "disagreements": disagree, "draws": draws}


def beta_sweep(problem, betas) -> dict:
    """Fit population DPO (exact solver) at each β; returns arrays ``tv`` (to π*_β), ``kl_to_ref``, ``reward``
    (E_π r*) and ``reward_gap`` (max over pairs of |β·Δlog-ratio − Δr*|: the implied reward recovers r* up to a
    shift)."""
    from ..dpo import fit_dpo, total_variation

    out = {k: [] for k in ("tv", "kl_to_ref", "reward", "reward_gap")}
    prefs, w = problem.preference_probabilities("all")
    for beta in betas:
        res = fit_dpo(problem.pi_ref, prefs, beta, weights=w)
        pi = res.pi
        out["tv"].append(total_variation(pi, optimal_policy(problem.pi_ref, problem.reward, beta)))
        out["kl_to_ref"].append(float(np.mean(kl_divergence(pi, problem.pi_ref))))
        out["reward"].append(float(np.mean((pi * problem.reward).sum(-1))))
        on = problem.pi_ref > 0
        implied = np.where(on, beta * (res.logp - np.log(np.where(on, problem.pi_ref, 1.0))), 0.0)
        x, i, j = prefs.T
        gap = np.abs((implied[x, i] - implied[x, j]) - (problem.reward[x, i] - problem.reward[x, j]))
        out["reward_gap"].append(float(gap.max()))
    return {k: np.array(v) for k, v in out.items()} | {"betas": np.asarray(betas, float)}


def partial_coverage_demo(problem, beta, observed, *, n_members: int = 5, seed: int = 0) -> dict:
    """Population DPO on one prompt's data restricted to the ``observed`` unordered pairs [(i, j), ...].

    Returns a dict: ``components`` and ``n_free`` (:func:`prefkit.optima.dpo_solution_set`); ``members`` (random
    members of the solution set, offsets ~ N(0, 2²)); ``member_loss_spread`` (max − min of their losses: 0 up to
    round-off); ``member_tv`` (largest TV between two members: the optimum is not unique); ``landing`` and
    ``tv_lbfgs``/``tv_newton``/``tv_sgd``/``tv_adam`` (TV from each optimiser's fit to
    :func:`prefkit.optima.dpo_landing_point`); ``loss_gap_adam`` (Adam's loss minus the optimum) and ``pi_star``
    with ``tv_landing_pi_star``.
    """
    from ..dpo import dpo_loss_value, fit_dpo, total_variation

    b = check_beta(beta)
    prefs, w = problem.preference_probabilities("all")
    obs = {tuple(sorted(map(int, e))) for e in observed}
    keep = np.array([(min(i, j), max(i, j)) in obs for _, i, j in prefs])
    if not keep.any():
        raise ValueError("observed selects no pair of the problem")
    prefs, w = prefs[keep], w[keep]
    S = dpo_solution_set(problem.pi_ref, problem.reward, b, prefs)
    rng = np.random.default_rng(seed)
    n_comp = [int(c.max()) + 1 for c in S["components"]]
    members = [S["policy"]([rng.normal(0, 2, k) for k in n_comp]) for _ in range(n_members)]
    losses = [dpo_loss_value(m, problem.pi_ref, prefs, b, weights=w) for m in members]
    landing = dpo_landing_point(problem.pi_ref, problem.reward, b, prefs)
    opt_loss = dpo_loss_value(landing, problem.pi_ref, prefs, b, weights=w)
    out = {"components": S["components"], "n_free": S["n_free"], "members": members,
           "member_loss_spread": float(max(losses) - min(losses)),
           "member_tv": max(total_variation(a, c) for a in members for c in members),
           "landing": landing, "pi_star": optimal_policy(problem.pi_ref, problem.reward, b)}
    out["tv_landing_pi_star"] = total_variation(landing, out["pi_star"])
    settings = {"lbfgs": dict(tol=1e-12), "newton": dict(tol=1e-12), "sgd": dict(steps=1000, lr=5.0),
                "adam": dict(steps=400)}
    for name, kw in settings.items():
        res = fit_dpo(problem.pi_ref, prefs, b, weights=w, optimizer=name, record_every=1000, **kw)
        out[f"tv_{name}"] = total_variation(res.pi, landing)
        out[f"pi_{name}"] = res.pi
        if name == "adam":
            out["loss_gap_adam"] = dpo_loss_value(res.pi, problem.pi_ref, prefs, b, weights=w) - opt_loss
    return out


# --- tour checks -------------------------------------------------------------------------------------------------
@CHAPTER.check("Z cancels: the change of variables")
def tour_change_of_variables(ctx):
    d = change_of_variables_steps(chapter_problem(ctx.seed), 0.3)
    g = gradient_formula_error(0.5, seed=ctx.seed)
    return {SHIFT: d["implied_shift_error"], BT_CANCEL: d["bt_error"], LOSS_NLL: d["loss_error"],
            STATIONARY: d["grad_at_pi_star"], GRAD: g["error"]}


@CHAPTER.check("population DPO recovers pi*")
def tour_population(ctx):
    P = chapter_problem(ctx.seed)
    tv = max(population_recovery_error(P, beta) for beta in (0.1, 0.5, 2.0))
    Q = random_problem(3, 5, seed=ctx.seed + 1, reward_scale=2.0)  # r* linear in the features
    tv_ll = population_recovery_error(Q, 0.5, features=Q.features, pairs="pi_ref")
    return {POP_TAB: tv, POP_LL: tv_ll, DEFAULT_EXACT: population_recovery_error(P, 0.02)}


@CHAPTER.check("finite samples: error ~ N^-1/2")
def tour_finite_samples(ctx):
    P = random_problem(1, 4, seed=1, reward_scale=1.5)
    sizes = [250, 500, 1000, 2000, 4000, 8000, 16000]
    fs = finite_sample_errors(P, 0.5, sizes, n_seeds=8 if ctx.fast else 16, seed=ctx.seed)
    slope = fit_error_slope(sizes, fs["errors"])
    from ..plotting.dpo import plot_finite_sample

    ctx.savefig(plot_finite_sample(sizes, fs["errors"], slope), "ch4_finite_sample.png")
    ob = obstruction_agreement(P, 12, 100 if ctx.fast else 300, seed=ctx.seed)
    return {SLOPE: slope, OBSTRUCTION: ob["disagreements"]}


@CHAPTER.check("beta sweep")
def tour_beta_sweep(ctx):
    s = beta_sweep(chapter_problem(ctx.seed), [0.1, 0.3, 1.0, 3.0])
    return {BETA_TV: s["tv"].max(), BETA_GAP: s["reward_gap"].max(), BETA_KL: np.diff(s["kl_to_ref"]).max()}


@CHAPTER.check("partial coverage: a set of optima")
def tour_partial(ctx):
    d = partial_coverage_demo(partial_coverage_problem(ctx.seed), 1.0, [(0, 1), (1, 2)], seed=ctx.seed)
    from ..plotting.dpo import plot_partial_coverage

    ctx.savefig(plot_partial_coverage(d), "ch4_partial_coverage.png")
    return {FREE: d["n_free"], SPREAD: d["member_loss_spread"], DIFFER: d["member_tv"], LAND_LBFGS: d["tv_lbfgs"],
            LAND_NEWTON: d["tv_newton"], LAND_SGD: d["tv_sgd"], ADAM_LOSS: abs(d["loss_gap_adam"]),
            ADAM_ELSE: d["tv_adam"]}


# --- 8. f-DPO (Wang et al. 2023) ----------------------------------------------------------------------------------
F_CASES = (("forward_kl", 0.5), ("js_divergence", 0.5), ("alpha_divergence", 0.5))


def brute_force_f_optimum(p, r, beta, f, a):
    """max_q J_f(q) on one prompt's simplex by SLSQP from three starts: knows nothing of the closed form."""
    from scipy.optimize import minimize

    from ..f_divergence import f_regularized_objective

    def neg_j(q):
        q = np.clip(q, 0.0, None)
        return -float(f_regularized_objective(q / q.sum(), p, r, beta, f, a)[0])

    best = None
    for q0 in (p.copy(), np.full(len(p), 1.0 / len(p)), np.linspace(1.0, 2.0, len(p))):
        q0 = np.clip(q0, 1e-3, None)
        res = minimize(neg_j, q0 / q0.sum(), method="SLSQP", bounds=[(1e-12, 1.0)] * len(p),
                       constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1.0}],
                       options={"ftol": 1e-15, "maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    q = np.clip(best.x, 0.0, None)
    return q / q.sum()


def f_dpo_experiment(seed: int = 0, betas=(0.3, 1.0), cases=F_CASES) -> dict:
    """f-DPO on exact Bradley-Terry data of a full-support problem (3 prompts, 5 responses), for each divergence
    in ``cases`` and β in ``betas``.

    Returns a dict: ``recover_tv`` (largest TV between the f-DPO fit and :func:`prefkit.f_optimal_policy`),
    ``objective_excess`` (largest J_f(brute force) − J_f(closed form), per prompt), ``differs_tv`` (smallest TV
    between an f-optimum and π* of the same β, at the smallest β: at large β every optimum nears π_ref, and so
    they near each other), and ``rows`` (one dict per case and β, for a table).
    """
    from ..dpo import total_variation
    from ..f_divergence import f_optimal_policy, f_regularized_objective, fit_f_dpo

    P = random_problem(3, 5, seed=seed, reward_scale=2.0)
    prefs, w = P.preference_probabilities("all")
    rows = []
    for f, a in cases:
        for beta in betas:
            target = f_optimal_policy(P.pi_ref, P.reward, beta, f, a)
            fit = fit_f_dpo(P.pi_ref, prefs, beta, weights=w, f_divergence_type=f, alpha=a)
            j = f_regularized_objective(target, P.pi_ref, P.reward, beta, f, a)
            brute = [f_regularized_objective(brute_force_f_optimum(P.pi_ref[x], P.reward[x], beta, f, a),
                                             P.pi_ref[x], P.reward[x], beta, f, a)[0] for x in range(P.n_prompts)]
            rows.append({"divergence": f if f != "alpha_divergence" else f"alpha_divergence (α = {a:g})",
                         "beta": beta, "tv_fit": total_variation(fit.policy, target),
                         "tv_pi_star": total_variation(target, optimal_policy(P.pi_ref, P.reward, beta)),
                         "excess": float(np.max(np.asarray(brute) - j))})
    return {"recover_tv": max(r["tv_fit"] for r in rows), "objective_excess": max(r["excess"] for r in rows),
            "differs_tv": min(r["tv_pi_star"] for r in rows if r["beta"] == min(betas)), "rows": rows}


def f_dpo_support_toy(beta: float = 1.0) -> dict:
    """π_ref = (½, ½, 0), r* = (0, 0.2, 3): the forward-KL optimum puts mass on the third response, which π_ref
    never gives; f-DPO sees only pairs on π_ref's support and lands on the support-restricted point instead.

    Returns ``optimum`` and ``fit`` (the two policies), ``mass_off_support`` and ``tv`` (fit vs optimum).
    """
    from ..dpo import total_variation
    from ..f_divergence import f_optimal_policy, fit_f_dpo
    from ..problems import Problem

    pi_ref, r = np.array([[0.5, 0.5, 0.0]]), np.array([[0.0, 0.2, 3.0]])
    prefs, w = Problem(pi_ref, r).preference_probabilities("all")
    opt = f_optimal_policy(pi_ref, r, beta, "forward_kl")
    fit = fit_f_dpo(pi_ref, prefs, beta, weights=w, f_divergence_type="forward_kl").policy
    return {"optimum": opt, "fit": fit, "mass_off_support": float(opt[0, 2]), "tv": total_variation(fit, opt)}


@CHAPTER.check("f-DPO: other divergences, their optima")
def tour_f_dpo(ctx):
    m = f_dpo_experiment(seed=ctx.seed)
    return {F_RECOVER: m["recover_tv"], F_MAX: m["objective_excess"], F_DIFFERS: m["differs_tv"],
            F_SUPPORT: f_dpo_support_toy()["tv"]}


# --- exercise checkers -------------------------------------------------------------------------------------------
def _dpo_cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        # reference log-probs that differ between chosen and rejected, so a forgotten or swapped reference shows
        yield "a random batch", [-np.abs(rng.normal(0, 3, 8)) for _ in range(4)], float(rng.uniform(0.05, 2))
    zero = np.array([0.0, 0.0])
    yield "margins of ±800", [zero, np.array([-800.0, 800.0]), zero, zero], 1.0


def _margin(lw, ll, rw, rl, beta):
    return beta * ((lw - rw) - (ll - rl))


def _dpo_mistakes(lw, ll, rw, rl, beta):
    """(name, margin) of plausible wrong margins, each with the hint that names it."""
    return [
        ("the sign is wrong: the loss is −log σ(margin), small when the chosen response's log-ratio is the larger "
         "(you computed −log σ(−margin), i.e. chosen and rejected swapped)", -_margin(lw, ll, rw, rl, beta)),
        ("the reference log-probs are missing: the margin is β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − "
         "log π_ref(y_l))]", beta * (lw - ll)),
        ("the reference log-probs of chosen and rejected are swapped: subtract ref_logp_chosen from logp_chosen "
         "and ref_logp_rejected from logp_rejected", beta * ((lw - rl) - (ll - rw))),
        ("β is missing: the margin is β times the difference of the log-ratios", _margin(lw, ll, rw, rl, 1.0)),
    ]


def _as_output(fn, args, name, want_shape, what):
    got = fn(*args)
    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        raise Mistake(f"{name}: return a numpy array of {what}, one per pair; got {type(got).__name__}") from None
    if got.shape != want_shape:
        raise Mistake(f"{name}: the result has shape {got.shape}; return one {what[:-1]} per pair, shape "
                      f"{want_shape} (no sum or mean over the batch)")
    return got


@exercise("ch4.dpo_loss", stub="my_dpo_loss", solution="ch4_dpo:dpo_loss", title="the per-pair DPO loss")
def grade_dpo_loss(fn):
    """Check ``fn(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected, beta) -> (B,)`` (numpy) against
    −log σ(β·[(logp_w − ref_w) − (logp_l − ref_l)]) of :func:`prefkit.losses.preference_loss`."""
    from ..losses import preference_loss

    for name, (lw, ll, rw, rl), beta in _dpo_cases():
        with np.errstate(all="ignore"):
            got = _as_output(fn, (lw, ll, rw, rl, beta), name, lw.shape, "losses")
        if not np.all(np.isfinite(got)):
            raise Mistake(f"{name}: the loss is not finite (it overflows at margin −800): compute −log σ(m) as "
                          "np.logaddexp(0, −m), never as −log(1/(1 + exp(−m)))")
        want = preference_loss(lw, ll, rw, rl, beta).numpy()
        if np.allclose(got, want, rtol=1e-10, atol=1e-12):
            continue
        for hint, m in _dpo_mistakes(lw, ll, rw, rl, beta):
            if np.allclose(got, np.logaddexp(0.0, -m), rtol=1e-8, atol=1e-10):
                raise Mistake(f"{name}: {hint}")
        raise Mistake(f"{name}: the losses differ from −log σ(margin) by up to {np.abs(got - want).max():.3g}")


@exercise("ch4.dpo_grad", stub="my_dpo_grad", solution="ch4_dpo:dpo_grad_logp_chosen",
          title="the DPO gradient in log π(y_w)")
def grade_dpo_grad(fn):
    """Check ``fn(...) -> (B,)``, the derivative of the summed DPO loss with respect to ``logp_chosen``, against
    torch autograd of :func:`prefkit.losses.preference_loss`."""
    import torch

    from ..losses import preference_loss

    def sig(m):
        return np.exp(-np.logaddexp(0.0, -m))

    for name, (lw, ll, rw, rl), beta in _dpo_cases():
        with np.errstate(all="ignore"):
            got = _as_output(fn, (lw, ll, rw, rl, beta), name, lw.shape, "gradients")
        if not np.all(np.isfinite(got)):
            raise Mistake(f"{name}: the gradient is not finite (σ overflows at margin ±800): compute σ(−m) as "
                          "exp(−logaddexp(0, m))")
        t = torch.tensor(lw, dtype=torch.float64, requires_grad=True)
        preference_loss(t, ll, rw, rl, beta).sum().backward()
        want = t.grad.numpy()
        if np.allclose(got, want, rtol=1e-10, atol=1e-14):
            continue
        m = _margin(lw, ll, rw, rl, beta)
        wrong = [
            ("the sign is wrong: raising log π(y_w) lowers the loss, so the derivative is negative, −β·σ(−margin)",
             beta * sig(-m)),
            ("σ(margin) should be σ(−margin): pairs the model already ranks correctly (large margin) barely count",
             -beta * sig(m)),
            ("the factor β is missing: the margin is β times the log-ratio gap, so the chain rule brings a β",
             -sig(-m)),
            ("the reference log-probs are missing from the margin", -beta * sig(-beta * (lw - ll))),
        ]
        for hint, value in wrong:
            if np.allclose(got, value, rtol=1e-8, atol=1e-12):
                raise Mistake(f"{name}: {hint}")
        raise Mistake(f"{name}: the gradient differs from autograd's by up to {np.abs(got - want).max():.3g}")

# --- the slides against what was measured (the notebook's closing table) -------------------------------------------
CHAPTER.slide("DPO substitutes r = β·log(π/π_ref) + β·log Z into Bradley-Terry, and Z cancels.",
              ["bt_cancel", "loss_is_nll"], "agrees, to round-off")
CHAPTER.slide("Maximum likelihood on preferences then recovers π* directly, with no RL.",
              ["population_tabular", "population_loglinear", "rate_slope"],
              "agrees, with a condition: exactly in the population limit with every pair covered; from N sampled "
              "pairs the error falls like N^−½")
CHAPTER.slide("(unstated) The DPO optimum is unique.", ["partial_members_differ", "partial_adam_elsewhere"],
              "not when the pairs leave responses uncovered: the optimum is a set, and the optimiser picks the "
              "member")
