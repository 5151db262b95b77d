"""Chapter 9: Beyond Bradley-Terry — rankings, and preferences no reward explains (notebook
09_beyond_bradley_terry.ipynb).

Experiments, claims, tour checks and exercise checkers. The library parts are :mod:`prefkit.plackett_luce`
(Plackett-Luce fits), :mod:`prefkit.listwise` (DPO on rankings) and :mod:`prefkit.nash` (von Neumann winner,
regularised Nash, Nash-MD).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize_scalar

from ..bradley_terry import fit_bradley_terry, sigmoid
from ..closed_form import kl_divergence, optimal_policy
from ..nash import exploitability, nash_equilibrium, nash_md, nash_md_step, regularized_nash
from ..plackett_luce import (
    fit_plackett_luce,
    pl_log_likelihood,
    pl_log_likelihood_gradient,
    pl_log_probability,
    pl_mle_obstruction,
    sample_rankings,
)
from .claims import Chapter
from .exercises import Mistake, exercise

CHAPTER = Chapter(9, "Beyond Bradley-Terry", "09_beyond_bradley_terry.ipynb")

S1 = "1. Plackett-Luce: ranking more than two"
S2 = "2. DPO on rankings"
S3 = "3. Preferences no reward explains"
S4 = "4. The von Neumann winner"
S5 = "5. Regularised Nash and Nash-MD"
S6 = "6. Nash versus π* when a reward exists"

# ---- claims ---------------------------------------------------------------------------------------------------
PL_EQUALS_BT = CHAPTER.claim("pl_equals_bt", "rankings of length 2: the PL fit equals the Bradley-Terry fit, "
                             "largest gap", at_most=1e-10, section=S1, kind="precision")
PL_NEWTON_MM = CHAPTER.claim("pl_newton_mm", "Newton and Hunter's MM reach the same PL maximum: largest gap",
                             at_most=1e-8, section=S1, kind="precision")
PL_GRADIENT = CHAPTER.claim("pl_gradient", "PL gradient against finite differences: largest relative error",
                            at_most=1e-6, section=S1, kind="precision")
PL_COVERAGE = CHAPTER.claim("pl_coverage", "PL standard errors are honest: mean of ((θ̂ − θ)/SE)² over items, "
                            "repeats", within=(0.75, 1.3), section=S1)
PL_EXISTENCE = CHAPTER.claim("pl_existence", "data whose 'ranked above' graph is not strongly connected are "
                             "refused, naming the right group", flag=True, section=S1)
LISTWISE_K2 = CHAPTER.claim("listwise_k2", "listwise loss at K = 2 equals the pairwise DPO loss: largest gap",
                            at_most=1e-12, section=S2, kind="precision")
LISTWISE_RECOVERS = CHAPTER.claim("listwise_recovers", "listwise DPO on exact PL data recovers π* (K = 3 and 4): "
                                  "largest TV", at_most=1e-4, section=S2)
CYCLE_RESIDUAL = CHAPTER.claim("cycle_residual", "no reward fits a Condorcet cycle: best BT fit's error in P "
                               "over the cycle bound", at_least=1.0, section=S3)
RLHF_IS_BT = CHAPTER.claim("rlhf_is_bt", "on cyclic P, DPO lands on π* of the best-fit BT reward (as RLHF): TV",
                           at_most=1e-6, section=S3)
RLHF_BEATEN = CHAPTER.claim("rlhf_beaten", "RLHF on rock-paper-scissors returns π_ref, which paper beats 65% of "
                            "the time", within=(0.65 - 1e-6, 0.65 + 1e-6), section=S3)
RPS_UNIFORM = CHAPTER.claim("rps_uniform", "the von Neumann winner of rock-paper-scissors is uniform: largest "
                            "deviation", at_most=1e-12, section=S4)
NASH_UNEXPLOITABLE = CHAPTER.claim("nash_unexploitable", "the LP's winner is unexploitable: max_j P(y_j ≻ π) − ½ "
                                   "over random games", at_most=1e-9, section=S4)
NASH_BRUTE_FORCE = CHAPTER.claim("nash_brute_force", "LP winner equals the one found by support enumeration: "
                                 "largest gap", at_most=1e-8, section=S4)
REG_NASH_FIXED_POINT = CHAPTER.claim("reg_nash_fixed_point", "π*_β = π*(π_ref, P(· ≻ π*_β), β) and no reply gains "
                                     "in the regularised game: largest error", at_most=1e-10, section=S5)
NASH_MD_RATE = CHAPTER.claim("nash_md_rate", "Nash-MD with η_t = 1/(β(t+1)): slope of log KL(π*_β‖π_t) against "
                             "log t", at_most=-1.0, section=S5)
NASH_MD_BIAS = CHAPTER.claim("nash_md_bias", "Nash-MD with constant η stops O(η) short of π*_β: slope of log TV "
                             "against log η", within=(0.85, 1.15), section=S5)
TWO_RESPONSES = CHAPTER.claim("two_responses", "two responses: regularised Nash at τ is π* at β = τΔ/(σ(Δ) − ½), "
                              "TV", at_most=1e-10, section=S6)
SMALL_GAPS = CHAPTER.claim("small_gaps", "small gaps (r, τ scaled by ε): regularised Nash at τ → π* at β = 4τ, "
                           "slope of log TV vs log ε", within=(1.8, 2.2), section=S6)
LARGE_GAPS = CHAPTER.claim("large_gaps", "gaps of 3 nats, τ = 0.2: no β makes π* equal regularised Nash, min over "
                           "β of TV", at_least=0.02, section=S6)
LARGE_GAP_REWARD = np.array([0.0, 3.0, 6.0, 9.0, 12.0])


# ---- experiments ----------------------------------------------------------------------------------------------
def rock_paper_scissors() -> np.ndarray:
    """P[i, j] = P(y_i ≻ y_j) for (rock, paper, scissors): paper beats rock, scissors paper, rock scissors."""
    return np.array([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])


def random_preference_matrix(n: int, rng) -> np.ndarray:
    """A random P (P[i, j] uniform in (0, 1) above the diagonal, P + Pᵀ = 1), redrawn until it has no
    Condorcet winner (the von Neumann winner has ≥ 3 responses in its support, so P holds a cycle)."""
    while True:
        u = np.triu(rng.random((n, n)), 1)
        P = u + np.tril(1 - u.T, -1)
        np.fill_diagonal(P, 0.5)
        if np.sum(nash_equilibrium(P) > 1e-9) >= 3:
            return P


def bt_fit_to_matrix(P) -> np.ndarray:
    """The best Bradley-Terry reward for a preference matrix: the MLE on every ordered pair (i, j), weight P[i, j].

    Its σ(θ_i − θ_j) matches P exactly when P is BT-consistent; with a cycle it cannot.
    """
    n = len(P)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    return fit_bradley_terry(np.stack([i, j], 1), n, weights=P[i, j]).strengths


def bt_residual(P) -> float:
    """max_{i,j} |σ(θ̂_i − θ̂_j) − P[i, j]| for the best BT fit θ̂ (:func:`bt_fit_to_matrix`)."""
    t = bt_fit_to_matrix(P)
    return float(np.max(np.abs(sigmoid(t[:, None] - t[None, :]) - P)))


def cycle_bound(P) -> float:
    """A lower bound on every reward's error: max over directed cycles (each step P > ½) of min_step (P − ½).

    Around a cycle the reward differences sum to 0, so some step has r_i − r_j ≤ 0, σ ≤ ½, and misses P there by
    at least P − ½. Brute force over the cycles of length ≥ 3 (small n). 0 if P has no cycle.
    """
    n, best = len(P), 0.0
    for k in range(3, n + 1):
        for c in itertools.permutations(range(n), k):
            if c[0] != min(c):
                continue
            steps = [P[c[a], c[(a + 1) % k]] - 0.5 for a in range(k)]
            best = max(best, min(steps))
    return best


def rlhf_and_dpo_on_matrix(P, pi_ref, beta, steps: int = 500) -> dict:
    """What the reward-based methods do with a preference matrix: RLHF (the BT fit θ̂, then π* of θ̂ at β) and
    DPO (tabular, L-BFGS) on every ordered pair weighted by P. Returns ``theta``, ``rlhf``, ``dpo``."""
    from ..dpo import fit_dpo

    n = len(P)
    theta = bt_fit_to_matrix(P)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    prefs = np.stack([np.zeros_like(i), i, j], 1)
    res = fit_dpo(np.asarray(pi_ref)[None], prefs, beta, weights=P[i, j], optimizer="lbfgs", steps=steps,
                  tol=1e-12)
    return {"theta": theta, "rlhf": optimal_policy(pi_ref, theta, beta), "dpo": res.pi[0]}


def support_enumeration_nash(P) -> np.ndarray:
    """A von Neumann winner by brute force: for every support S, solve Σ_{i∈S} π_i (P[i, j] − ½) = 0 (j ∈ S),
    Σπ = 1; keep the first solution with π ≥ 0 that nobody outside S beats. Exponential in n: a check only."""
    A = np.asarray(P) - 0.5
    n = len(A)
    for k in range(1, n + 1):
        for S in itertools.combinations(range(n), k):
            S = list(S)
            M = np.vstack([A[np.ix_(S, S)].T, np.ones((1, k))])
            sol, *_ = np.linalg.lstsq(M, np.concatenate([np.zeros(k), [1.0]]), rcond=None)
            if np.max(np.abs(M @ sol - np.concatenate([np.zeros(k), [1.0]]))) > 1e-10 or np.any(sol < -1e-12):
                continue
            pi = np.zeros(n)
            pi[S] = np.clip(sol, 0, None)
            if np.min(pi @ A) >= -1e-10:
                return pi / pi.sum()
    raise RuntimeError("no equilibrium found")  # pragma: no cover - a symmetric game always has one


def nash_md_curves(P, pi_ref, beta, *, steps: int, etas=(0.1, 0.05, 0.025)) -> dict:
    """KL(π*_β‖π_t) for Nash-MD with η_t = 1/(β(t+1)) and with constant η = c/β for each c in ``etas``.

    Returns ``t``, ``kl_decreasing``, ``kl_constant`` (dict c → curve), ``tv_limit`` (dict c → TV between the
    constant-η iterate after ``steps`` steps and π*_β), ``star`` (π*_β).
    """
    star = regularized_nash(P, pi_ref, beta)
    t = np.arange(steps + 1)
    its = nash_md(P, pi_ref, beta, eta=1.0 / (beta * (t[:-1] + 1)), steps=steps)
    out = {"t": t, "star": star, "kl_decreasing": kl_divergence(np.broadcast_to(star, its.shape), its),
           "kl_constant": {}, "tv_limit": {}}
    for c in etas:
        its = nash_md(P, pi_ref, beta, eta=c / beta, steps=steps)
        out["kl_constant"][c] = kl_divergence(np.broadcast_to(star, its.shape), its)
        out["tv_limit"][c] = 0.5 * float(np.abs(its[-1] - star).sum())
    return out


def log_slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def bt_matrix(reward) -> np.ndarray:
    """The BT-consistent preference matrix P[i, j] = σ(r_i − r_j)."""
    r = np.asarray(reward, float)
    return sigmoid(r[:, None] - r[None, :])


def two_response_match(delta: float, tau: float, pi_ref) -> float:
    """TV between regularised Nash at τ and π* at β = τ·Δ/(σ(Δ) − ½), two responses with reward gap Δ.

    With two responses P(y_1 ≻ π) − P(y_2 ≻ π) = σ(Δ) − ½ whatever π is, so π*_τ ∝ π_ref·exp((σ(Δ) − ½)/τ on
    y_1): the Gibbs policy of the reward gap σ(Δ) − ½ instead of Δ.
    """
    r = np.array([delta, 0.0])
    nash = regularized_nash(bt_matrix(r), pi_ref, tau)
    beta = tau * delta / (sigmoid(delta) - 0.5)
    return 0.5 * float(np.abs(nash - optimal_policy(pi_ref, r, beta)).sum())


def small_gap_tv(reward, pi_ref, tau, eps) -> float:
    """TV between regularised Nash at ε·τ for reward ε·r and π* at β = 4ετ (the same policy for every ε to first
    order, since σ(x) = ½ + x/4 − x³/48 + …)."""
    r = eps * np.asarray(reward, float)
    nash = regularized_nash(bt_matrix(r), pi_ref, eps * tau)
    return 0.5 * float(np.abs(nash - optimal_policy(pi_ref, r, 4 * eps * tau)).sum())


def closest_rlhf_beta(reward, pi_ref, tau) -> tuple[float, float]:
    """min over β of TV(π*_β, regularised Nash at τ) on BT data from ``reward``, and the minimising β."""
    nash = regularized_nash(bt_matrix(reward), pi_ref, tau)

    def tv(logb):
        return 0.5 * float(np.abs(optimal_policy(pi_ref, reward, np.exp(logb)) - nash).sum())

    res = minimize_scalar(tv, bounds=(-8.0, 8.0), method="bounded", options={"xatol": 1e-8})
    grid = min(tv(x) for x in np.linspace(-8, 8, 161))  # the TV need not be unimodal in log β
    return min(float(res.fun), grid), float(np.exp(res.x))


# ---- tour checks ----------------------------------------------------------------------------------------------
@CHAPTER.check("Plackett-Luce fit: BT at length 2, Newton = MM, gradient, standard errors, existence")
def tour_plackett_luce(ctx):
    rng = np.random.default_rng(ctx.seed)
    n = 8
    theta = rng.standard_normal(n)
    theta -= theta.mean()
    # length 2: Bradley-Terry
    pairs = sample_rankings(theta, 400, rng, length=2)
    gap_bt = float(np.max(np.abs(fit_plackett_luce(pairs, n).strengths - fit_bradley_terry(pairs, n).strengths)))
    # ragged rankings: Newton vs MM, gradient vs finite differences
    full = sample_rankings(theta, 600, rng)
    lengths = rng.integers(2, n + 1, size=len(full))
    ragged = [r[:k] for r, k in zip(full, lengths, strict=True)]
    newton = fit_plackett_luce(ragged, n)
    mm = fit_plackett_luce(ragged, n, method="mm", tol=1e-12)
    t = rng.standard_normal(n)
    h = 1e-5
    fd = np.array([(pl_log_likelihood(t + h * e, ragged) - pl_log_likelihood(t - h * e, ragged)) / (2 * h)
                   for e in np.eye(n)])
    g = pl_log_likelihood_gradient(t, ragged)
    # standard errors: mean squared z-score over repeats (1 when the SEs are right)
    reps = 20 if ctx.fast else 60
    z2 = []
    for _ in range(reps):
        while True:
            R = sample_rankings(theta, 300, rng, length=4)
            if pl_mle_obstruction(R, n) is None:
                break
        f = fit_plackett_luce(R, n)
        z2.append(((f.strengths - theta) / f.stderr) ** 2)
    # existence: few short rankings; the refusal must name a group that indeed never lost (or won) outside it
    ok = True
    found = 0
    for _ in range(200):
        R = sample_rankings(theta, 3, rng, length=3)
        obs = pl_mle_obstruction(R, n)
        if obs is None:
            continue
        found += 1
        group, kind = obs
        try:
            fit_plackett_luce(R, n)
            ok = False
        except ValueError as e:
            ok &= str(group[0]) in str(e)
        inside = np.isin(R, group)
        for r, ins in zip(R, inside, strict=True):  # brute force: the ranking's order against the group
            for a in range(len(r)):
                for b in range(a + 1, len(r)):
                    if kind == "never lost" and ins[b] and not ins[a]:
                        ok = False
                    if kind == "never won" and ins[a] and not ins[b]:
                        ok = False
    ok &= found > 0
    return {PL_EQUALS_BT: gap_bt, PL_NEWTON_MM: float(np.max(np.abs(newton.strengths - mm.strengths))),
            PL_GRADIENT: float(np.max(np.abs(fd - g)) / np.max(np.abs(g))),
            PL_COVERAGE: float(np.mean(z2)), PL_EXISTENCE: float(ok)}


@CHAPTER.check("DPO on rankings: K = 2 is DPO, exact PL data give π*")
def tour_listwise(ctx):
    import torch

    from ..dpo import total_variation
    from ..listwise import fit_listwise_dpo, listwise_loss, ranking_probabilities
    from ..losses import preference_loss
    from ..problems import random_problem

    g = torch.Generator().manual_seed(ctx.seed)
    lp = 3 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    ref = 3 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    gap = float((listwise_loss(lp, ref, 0.7) - preference_loss(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], 0.7))
                .abs().max())
    pr = random_problem(2, 5, seed=ctx.seed)
    tvs = []
    for k in (3, 4):
        R, w = ranking_probabilities(pr.pi_ref, pr.reward, k)
        for beta in ((1.0,) if ctx.fast else (0.5, 2.0)):
            res = fit_listwise_dpo(pr.pi_ref, R, beta, weights=w)
            tvs.append(total_variation(res.pi, optimal_policy(pr.pi_ref, pr.reward, beta)))
    return {LISTWISE_K2: gap, LISTWISE_RECOVERS: max(tvs)}


@CHAPTER.check("Preferences without a reward: BT residual, RLHF/DPO, the von Neumann winner")
def tour_cycles(ctx):
    rng = np.random.default_rng(ctx.seed + 1)
    rps = rock_paper_scissors()
    games = [random_preference_matrix(int(rng.integers(4, 7)), rng) for _ in range(3 if ctx.fast else 8)]
    ratio = min(bt_residual(P) / cycle_bound(P) for P in [rps, *games])
    P = games[0]
    pi_ref = rng.dirichlet(np.full(len(P), 2.0))
    out = rlhf_and_dpo_on_matrix(P, pi_ref, 0.5)
    mu = np.array([0.5, 0.3, 0.2])
    rlhf_rps = rlhf_and_dpo_on_matrix(rps, mu, 0.5)["rlhf"]
    paper = float(rps[1] @ rlhf_rps)  # P(paper ≻ π_RLHF)
    expl = max(exploitability(G, nash_equilibrium(G)) for G in [rps, *games])
    brute = max(float(np.max(np.abs(nash_equilibrium(G) - support_enumeration_nash(G)))) for G in [rps, *games])
    return {CYCLE_RESIDUAL: ratio, RLHF_IS_BT: 0.5 * float(np.abs(out["dpo"] - out["rlhf"]).sum()),
            RLHF_BEATEN: paper, RPS_UNIFORM: float(np.max(np.abs(nash_equilibrium(rps) - 1 / 3))),
            NASH_UNEXPLOITABLE: expl, NASH_BRUTE_FORCE: brute}


@CHAPTER.check("Regularised Nash (NLHF) and Nash-MD", slow=True)
def tour_regularized_nash(ctx):
    rng = np.random.default_rng(ctx.seed + 2)
    P = random_preference_matrix(5, rng)
    pi_ref = rng.dirichlet(np.full(5, 3.0))
    err = 0.0
    for beta in (1.0, 0.1, 0.01):
        star = regularized_nash(P, pi_ref, beta)
        err = max(err, float(np.max(np.abs(star - optimal_policy(pi_ref, P @ star, beta)))),
                  abs(exploitability(P, star, pi_ref=pi_ref, beta=beta)))
    beta = 0.1
    steps = 2000 if ctx.fast else 10_000
    cur = nash_md_curves(P, pi_ref, beta, steps=steps)
    t = cur["t"]
    sel = (t >= steps // 20) & (t <= steps)
    slope_t = log_slope(t[sel], cur["kl_decreasing"][sel])
    cs = sorted(cur["tv_limit"])
    slope_eta = log_slope(cs, [cur["tv_limit"][c] for c in cs])
    fig = nash_md_figure(cur, beta)
    ctx.savefig(fig, "ch9_nash_md.png")
    return {REG_NASH_FIXED_POINT: err, NASH_MD_RATE: slope_t, NASH_MD_BIAS: slope_eta}


def nash_md_figure(cur, beta):
    """The Nash-MD curves of :func:`nash_md_curves` on log-log axes, with a 1/t reference line."""
    from ..plotting.beyond_bt import plot_convergence

    t = cur["t"][1:]
    curves = {r"$\eta_t = 1/(\beta(t+1))$": (t, cur["kl_decreasing"][1:])}
    for c, kl in cur["kl_constant"].items():
        curves[rf"constant $\eta\beta = {c}$"] = (t, kl[1:])
    ref = (t, cur["kl_decreasing"][1] * (t / t[0]) ** -1.0, r"rate $1/t$")
    return plot_convergence(curves, reference=ref)


@CHAPTER.check("Regularised Nash against π* on Bradley-Terry preferences")
def tour_nash_vs_rlhf(ctx):
    rng = np.random.default_rng(ctx.seed + 3)
    pi2 = rng.dirichlet([2.0, 2.0])
    two = max(two_response_match(d, tau, pi2) for d in (0.3, 1.0, 4.0) for tau in (0.05, 0.5))
    n = 5
    r = rng.standard_normal(n)
    pi_ref = rng.dirichlet(np.full(n, 3.0))
    eps = np.array([0.2, 0.1, 0.05])
    slope = log_slope(eps, [small_gap_tv(r, pi_ref, 0.25, e) for e in eps])
    tv_min, _ = closest_rlhf_beta(LARGE_GAP_REWARD, pi_ref, 0.2)
    return {TWO_RESPONSES: two, SMALL_GAPS: slope, LARGE_GAPS: tv_min}


# ---- exercises ------------------------------------------------------------------------------------------------
def _wrong_pl(theta, ranking, variant):
    t = np.asarray(theta, float)[np.asarray(ranking)]
    if variant == "reversed":
        return float(pl_log_probability(np.asarray(theta, float), [list(ranking)[::-1]])[0])
    if variant == "all_items":
        full = np.asarray(theta, float)
        lse_all = np.logaddexp.reduce(full)
        return float(sum(t[k] - lse_all for k in range(len(t) - 1)))
    if variant == "no_removal":
        lse = np.logaddexp.reduce(t)
        return float(sum(t[k] - lse for k in range(len(t) - 1)))
    return float(pl_log_probability(np.asarray(theta, float), [list(ranking)])[0])


@exercise("ch9.pl_log_likelihood", stub="my_pl_log_probability", solution="ch9_beyond_bradley_terry:pl_log_prob",
          title="the Plackett-Luce log-probability of one ranking")
def grade_pl_log_likelihood(fn):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(6)
    ranking = [4, 1, 5, 0]  # four of the six items, best first

    def call(t, r):
        try:
            v = float(fn(np.array(t, dtype=float), list(r)))
        except (TypeError, ValueError) as e:
            raise Mistake(f"my_pl_log_probability must return one number (a float); got an error: {e}") from None
        return v

    got = call(theta, ranking)
    want = _wrong_pl(theta, ranking, "right")
    if not np.isfinite(got):
        raise Mistake("the log-probability is not finite on ordinary strengths")
    if abs(got - want) > 1e-9:
        for variant, hint in (
            ("no_removal", "each stage's denominator must sum only over the items not yet placed "
                           "(y_k, …, y_K): an item chosen earlier has left the race"),
            ("all_items", "the denominators sum over the items in this ranking only, not over every item in "
                          "strengths: the others were never in the comparison"),
            ("reversed", "the ranking is best first: y_1 is chosen first, from all of them (you ranked it "
                         "worst first)"),
        ):
            if abs(got - _wrong_pl(theta, ranking, variant)) < 1e-9:
                raise Mistake(hint)
        raise Mistake(f"log P(4 ≻ 1 ≻ 5 ≻ 0) should be {want:.6f}, got {got:.6f}: it is Σ_k [θ_(y_k) − log Σ_(j≥k) "
                      "exp θ_(y_j)] over the stages k = 1 … K−1")
    big = theta * 2000.0  # strengths of a thousand: naive exp overflows
    got = call(big, ranking)
    want = _wrong_pl(big, ranking, "right")
    if not np.isfinite(got) or abs(got - want) > 1e-6 * max(1.0, abs(want)):
        raise Mistake("with strengths near a thousand the result overflows (exp(1000) = inf): compute each "
                      "log Σ exp with np.logaddexp.reduce or scipy.special.logsumexp")
    if abs(call(theta, [2, 3]) - float(np.log(sigmoid(theta[2] - theta[3])))) > 1e-9:
        raise Mistake("a ranking of two items must give Bradley-Terry's log σ(θ_a − θ_b)")


def _exploit_variants(P, pi):
    return {
        "transposed": float(np.max(P.T @ pi) - 0.5),
        "no_half": float(np.max(P @ pi)),
        "value": float(pi @ P @ pi - 0.5),
        "min": float(np.min(P @ pi) - 0.5),
    }


@exercise("ch9.exploitability", stub="my_exploitability", solution="ch9_beyond_bradley_terry:exploitability",
          title="checking a candidate Nash equilibrium")
def grade_exploitability(fn):
    rng = np.random.default_rng(1)
    P = random_preference_matrix(5, rng)
    cases = [(P, rng.dirichlet(np.ones(5))), (P, nash_equilibrium(P)), (rock_paper_scissors(),
                                                                          np.array([0.6, 0.3, 0.1]))]
    for G, pi in cases:
        try:
            got = float(fn(G.copy(), pi.copy()))
        except (TypeError, ValueError) as e:
            raise Mistake(f"my_exploitability must return one number; got an error: {e}") from None
        want = exploitability(G, pi)
        if not np.isfinite(got):
            raise Mistake("the exploitability is not finite")
        if abs(got - want) > 1e-9:
            hints = {
                "transposed": "P[i, j] is P(y_i ≻ y_j): the reply y_j's win rate against π is (P @ π)[j] "
                              "= Σ_i P[j, i]·π_i, not (Pᵀ @ π)[j] (that is π's win rate against y_j)",
                "no_half": "subtract ½: a reply that ties with π wins half the time, and that is no exploit",
                "value": "πᵀPπ − ½ is 0 for every π (π ties with itself); take the best reply y_j, max over j",
                "min": "take the best reply (max over j), not the worst",
            }
            for k, v in _exploit_variants(G, pi).items():
                if abs(got - v) < 1e-9:
                    raise Mistake(hints[k])
            raise Mistake(f"for P = {np.round(G, 3).tolist()} and π = {np.round(pi, 3).tolist()} the "
                          f"exploitability is {want:.6f}, got {got:.6f}")


def _md_variants(pi, P, mu, beta, eta):
    lp, lmu = np.log(pi), np.log(mu)

    def norm(z):
        z = np.exp(z - z.max())
        return z / z.sum()

    mix = norm((1 - eta * beta) * lp + eta * beta * lmu)
    return {
        "no_mixture": norm(lp + eta * P @ pi),
        "swapped": norm(eta * beta * lp + (1 - eta * beta) * lmu + eta * P @ norm(eta * beta * lp
                                                                                 + (1 - eta * beta) * lmu)),
        "arithmetic": norm(np.log((1 - eta * beta) * pi + eta * beta * mu)
                           + eta * P @ ((1 - eta * beta) * pi + eta * beta * mu)),
        "opponent_pi": norm(np.log(mix) + eta * P @ pi),
        "transposed": norm(np.log(mix) + eta * P.T @ mix),
    }


@exercise("ch9.nash_md_step", stub="my_nash_md_step", solution="ch9_beyond_bradley_terry:nash_md_step",
          title="one Nash-MD step")
def grade_nash_md_step(fn):
    rng = np.random.default_rng(2)
    P = random_preference_matrix(4, rng)
    mu = rng.dirichlet(np.full(4, 2.0))
    pi = rng.dirichlet(np.full(4, 2.0))
    beta, eta = 0.5, 0.8
    try:
        got = np.asarray(fn(pi.copy(), P.copy(), mu.copy(), beta, eta), dtype=float)
    except (TypeError, ValueError) as e:
        raise Mistake(f"my_nash_md_step must return the new policy as an array; got an error: {e}") from None
    if got.shape != (4,) or not np.all(np.isfinite(got)):
        raise Mistake(f"the new policy must be a finite array of shape (4,), got shape {got.shape}")
    if abs(got.sum() - 1) > 1e-9:
        raise Mistake("the new policy must sum to 1: normalise (softmax of the log-weights)")
    want = nash_md_step(pi, P, mu, beta, eta)
    if np.max(np.abs(got - want)) > 1e-9:
        hints = {
            "no_mixture": "step from the geometric mixture π^μ ∝ π^(1−ηβ)·π_ref^(ηβ), not from π itself: the "
                          "mixture is where the KL regulariser enters",
            "swapped": "the mixture weights are swapped: π^μ ∝ π^(1−ηβ)·π_ref^(ηβ) (mostly π, a little π_ref)",
            "arithmetic": "the mixture is geometric (a weighted mean of log-probabilities), not arithmetic",
            "opponent_pi": "the opponent is the mixture too: the gain is η·P(y ≻ π^μ) = η·(P @ π^μ)[y]",
            "transposed": "P[i, j] is P(y_i ≻ y_j): the win rate of y against π^μ is (P @ π^μ)[y], not (Pᵀ @ π^μ)",
        }
        for k, v in _md_variants(pi, P, mu, beta, eta).items():
            if np.max(np.abs(got - v)) < 1e-9:
                raise Mistake(hints[k])
        raise Mistake(f"the step from π = {np.round(pi, 4).tolist()} should give {np.round(want, 6).tolist()}, "
                      f"got {np.round(got, 6).tolist()}")
