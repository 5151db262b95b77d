"""Chapter 6: likelihood displacement (notebook 06_likelihood_displacement.ipynb).

Razin, Malladi et al. 2024, "Unintentional Unalignment: Likelihood Displacement in Direct Preference
Optimization" [razin2024]; Ren & Sutherland 2024, "Learning Dynamics of LLM Finetuning" [ren2024].

The chapter's experiments (each a ``measure_*`` function the notebook and the tour both call, so they report the
same numbers), its claims, its tour checks and its exercise checkers. The library parts it builds on:
:mod:`prefkit.displacement_theory` (the gradient facts), :mod:`prefkit.ches` (CHES),
:mod:`prefkit.displacement_problems` (the cases) and :mod:`prefkit.displacement_training` (training with records).
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float_array, as_index_array
from ..ches import ches_score
from ..displacement_problems import (
    DisplacementProblem,
    EmbeddingPopulation,
    embedding_population,
    tabular_chain_problem,
    tabular_one_pair_problem,
    unconstrained_features_problem,
    yes_no_never_problem,
)
from ..displacement_theory import logp_chosen_velocity, logratio_gradient, squeeze_first_order
from ..displacement_tracking import displacement_step
from ..displacement_training import DisplacementRun, squeeze_trajectory, train_displacement
from .claims import Chapter
from .exercises import Mistake, exercise

CHAPTER = Chapter(6, "Likelihood displacement", "06_likelihood_displacement.ipynb")

__all__ = [
    "CHAPTER",
    "displacement_drops",
    "ches_displacement_correlation",
    "top_ches_share",
    "train_pairs",
    "ches_filter_experiment",
    "run_summary",
    "mitigation_table",
    "format_mitigation_table",
    "measure_tabular_one_pair",
    "measure_tabular_chain",
    "measure_unconstrained_features",
    "measure_yes_no_never",
    "measure_squeeze",
    "measure_ches_population",
    "ches_correlation_over_training",
    "measure_ches_filter",
    "measure_mitigations",
]

def displacement_drops(run: DisplacementRun) -> np.ndarray:
    """(m,) drop of log π(y_w|x) over a run, log π_start − log π_end; positive means displaced."""
    lc = run.logp_chosen
    return lc[0] - lc[-1]


def ches_displacement_correlation(ches, drops) -> float:
    """Spearman rank correlation between CHES and the measured drop of log π(y_w) (scipy.stats.spearmanr)."""
    from scipy.stats import spearmanr

    c = as_float_array(ches, "ches", ndim=1)
    dr = as_float_array(drops, "drops", ndim=1)
    if c.shape != dr.shape:
        raise ValueError(f"shape mismatch: ches has shape {c.shape} but drops has shape {dr.shape}")
    if c.shape[0] < 3:
        raise ValueError("need at least 3 pairs for a rank correlation")
    return float(spearmanr(c, dr).statistic)


def top_ches_share(ches, drops, fraction: float = 0.25) -> float:
    """Share of the total displacement Σ max(drop, 0) held by the ``fraction`` of pairs with the highest CHES.

    This measures concentration only. For pairs trained on their own (one θ_x per prompt) removing those
    pairs removes exactly this share; with one shared θ the pairs interact, and
    :func:`ches_filter_experiment` retrains on the filtered data instead.
    """
    c = as_float_array(ches, "ches", ndim=1)
    dr = as_float_array(drops, "drops", ndim=1)
    if c.shape != dr.shape:
        raise ValueError(f"shape mismatch: ches has shape {c.shape} but drops has shape {dr.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, int(round(fraction * c.shape[0])))
    top = np.argsort(-c, kind="stable")[:k]
    pos = np.maximum(dr, 0.0)
    total = pos.sum()
    return float(pos[top].sum() / total) if total > 0 else 0.0


def train_pairs(problem: DisplacementProblem, beta: float = 0.1, *, steps: int = 20, lr: float = 0.05,
                optimizer: str = "sgd", **kwargs) -> DisplacementRun:
    """:func:`train_displacement` with ``lr`` the step size *per pair*.

    fit_dpo's loss is the mean over the m pairs, so for ``optimizer="sgd"`` it is called with lr·m: the loss
    is then in effect the sum over pairs, as in one epoch of per-pair gradient steps, and removing pairs
    from the data leaves the step of every other pair unchanged. Adam is invariant to that scale, so its
    ``lr`` is passed as is.
    """
    m = int(np.asarray(problem.preferences).reshape(-1, 3).shape[0])
    fit_lr = lr * m if optimizer == "sgd" else lr
    return train_displacement(problem, beta, steps=steps, lr=fit_lr, optimizer=optimizer, **kwargs)


def _positive_total(drops) -> float:
    return float(np.maximum(drops, 0.0).sum())


def ches_filter_experiment(population: EmbeddingPopulation, *, beta: float = 0.1, fraction: float = 0.25,
                           steps: int = 20, lr: float = 0.05, optimizer: str = "sgd",
                           seed: int = 0, n_random: int = 5) -> dict:
    """Filter the data by CHES and retrain with one shared θ [razin2024, §5: filter, then train].

    Three runs of :func:`train_pairs` on ``population.problem(shared=True)``: all pairs; all but the
    ``fraction`` highest-CHES pairs; all but a random set of the same size (the control: ``n_random`` random sets
    drawn with ``seed``, their shares averaged).
    The displacement of a run is D = Σ max(drop, 0) over the pairs it trained on (drop = log π_start(y_w) −
    log π_end(y_w)).

    Returns
    -------
    dict with
        ``removed_share``: 1 − D(filtered)/D(all), the share of the displacement that filtering removes;
        ``random_removed_share``: the same for the random removal (mean over the ``n_random`` sets);
        ``kept_dlogp_full``, ``kept_dlogp_filtered``: mean Δ log π(y_w) over the kept pairs, trained with all
        pairs and trained on the kept pairs only (same subset, so comparable);
        ``kept_frac_displaced_full``, ``kept_frac_displaced_filtered``: fraction of kept pairs whose π(y_w)
        fell; ``keep`` (m,) bool; ``drops_full``, ``drops_filtered`` (m,) (NaN for the removed pairs).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = population.n_pairs
    k = int(round(fraction * n))
    if not 0 < k < n:
        raise ValueError(f"fraction={fraction} removes {k} of {n} pairs; it must remove some and keep some")
    ches = population.ches()
    keep = np.ones(n, bool)
    keep[np.argsort(-ches, kind="stable")[:k]] = False
    rng = np.random.default_rng(seed)
    kw = dict(steps=steps, lr=lr, optimizer=optimizer, record_every=steps)
    full = displacement_drops(train_pairs(population.problem(shared=True), beta, **kw))
    filt = np.full(n, np.nan)
    filt[keep] = displacement_drops(train_pairs(population.problem(shared=True, keep=keep), beta, **kw))
    d_full = _positive_total(full)
    random_shares = []
    for _ in range(n_random):
        keep_random = np.ones(n, bool)
        keep_random[rng.choice(n, size=k, replace=False)] = False
        rand = displacement_drops(train_pairs(population.problem(shared=True, keep=keep_random), beta, **kw))
        random_shares.append(1.0 - _positive_total(rand) / d_full if d_full > 0 else 0.0)
    return {
        "removed_share": 1.0 - _positive_total(filt[keep]) / d_full if d_full > 0 else 0.0,
        "random_removed_share": float(np.mean(random_shares)),
        "kept_dlogp_full": float(-full[keep].mean()),
        "kept_dlogp_filtered": float(-filt[keep].mean()),
        "kept_frac_displaced_full": float(np.mean(full[keep] > 0)),
        "kept_frac_displaced_filtered": float(np.mean(filt[keep] > 0)),
        "keep": keep, "drops_full": full, "drops_filtered": filt,
    }


# ----------------------------------------------------------------------------------------------------------
# mitigations


SUMMARY_KEYS = ("dlogp_chosen", "frac_displaced", "neither_gain", "logratio_margin", "accuracy")


def run_summary(run: DisplacementRun, preferences=None) -> dict:
    """Displacement and preference margin of a run, over ``preferences`` (default: the pairs it trained on).

    The policy covers every prompt, so a run can be scored on pairs it did not train on (e.g. the pairs a
    CHES filter removed). Returns a dict with ``dlogp_chosen`` (mean change of log π(y_w|x); negative =
    displaced), ``frac_displaced`` (fraction of pairs whose π(y_w|x) fell), ``neither_gain`` (mean change of
    the mass on neither response), ``logratio_margin`` (mean h = Δlog π(y_w) − Δlog π(y_l), the β-free DPO
    margin; the policy starts at π_ref), ``accuracy`` (fraction of pairs with h > 0) and ``displacement`` (mean
    over pairs of max(−Δ log π(y_w), 0): only the falls count).
    """
    p = run.problem.preferences if preferences is None else as_index_array(preferences, "preferences",
                                                                             ncols=3)
    p = np.asarray(p).reshape(-1, 3)
    x, w, l = p[:, 0], p[:, 1], p[:, 2]
    d_chosen = run.logp[-1, x, w] - run.logp[0, x, w]
    h = d_chosen - (run.logp[-1, x, l] - run.logp[0, x, l])
    step = displacement_step(run.logp[-1], run.logp[0], p)
    return {
        "dlogp_chosen": float(np.mean(d_chosen)),
        "frac_displaced": float(np.mean(d_chosen < 0)),
        "neither_gain": step["mass/neither_gain"],
        "logratio_margin": float(np.mean(h)),
        "accuracy": float(np.mean(h > 0)),
        "displacement": float(np.mean(np.maximum(-d_chosen, 0.0))),
    }


def mitigation_table(population: EmbeddingPopulation, *, beta: float = 0.1, large_beta: float = 1.0,
                     sft_coef: float = 1.0, ches_fraction: float = 0.25, steps: int = 200, lr: float = 0.05,
                     optimizer: str = "adam", **fit_kwargs) -> list[dict]:
    """Train the population with one shared θ (pairs interact) under DPO and its mitigations.

    Rows: ``DPO`` at ``beta``; ``DPO + SFT (RPO)``, the term −sft_coef·log π(y_w) [TRL's ["sigmoid", "sft"]];
    ``CHES filter``, DPO without the ``ches_fraction`` highest-CHES pairs [razin2024]; ``IPO`` at τ = beta
    [Azar et al. 2023]; ``DPO, large beta`` at ``large_beta``. Training is :func:`train_pairs` (``lr`` per
    pair). Every row is scored on the same two sets of pairs, so the rows compare: :func:`run_summary` on all
    pairs (keys as there; for the CHES filter this includes the removed pairs, which it did not train on)
    and on the kept (lowest-CHES) pairs (keys prefixed ``kept/``), plus ``method``, ``run`` (the
    :class:`~prefkit.displacement_training.DisplacementRun`) and ``keep`` (the kept-pair mask).
    """
    ches = population.ches()
    k = int(round(ches_fraction * population.n_pairs))
    keep = np.ones(population.n_pairs, bool)
    keep[np.argsort(-ches, kind="stable")[:k]] = False
    shared = population.problem(shared=True)
    kept_prefs = population.preferences[keep]
    specs = [
        ("DPO", shared, dict(beta=beta)),
        ("DPO + SFT (RPO)", shared, dict(beta=beta, sft_coef=sft_coef)),
        ("CHES filter", population.problem(shared=True, keep=keep), dict(beta=beta)),
        ("IPO", shared, dict(beta=beta, loss_type="ipo")),
        ("DPO, large beta", shared, dict(beta=large_beta)),
    ]
    rows = []
    for name, prob, kw in specs:
        run = train_pairs(prob, steps=steps, lr=lr, optimizer=optimizer, **kw, **fit_kwargs)
        row = {"method": name, "run": run, **run_summary(run, population.preferences)}
        row.update({f"kept/{key}": v for key, v in run_summary(run, kept_prefs).items()})
        row["keep"] = keep
        rows.append(row)
    return rows


def format_mitigation_table(rows: list[dict]) -> str:
    """The rows of :func:`mitigation_table` as a markdown table (each cell: all pairs / kept pairs)."""
    head = ("| method | Δ log π(y_w) | displaced | Δ mass on neither | margin h | accuracy |")
    lines = [head, "|" + "---|" * (len(SUMMARY_KEYS) + 1)]
    for r in rows:
        cells = []
        for c in SUMMARY_KEYS:
            fmt = "{:+.3f}" if c in ("dlogp_chosen", "neither_gain", "logratio_margin") else "{:.3f}"
            cells.append(fmt.format(r[c]) + " / " + fmt.format(r[f"kept/{c}"]))
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the chapter's measurements, shared by the notebook and the tour (same function, same numbers)


def measure_tabular_one_pair(*, steps: int = 100, lr: float = 0.05, beta: float = 0.1, seed: int = 0) -> dict:
    """Case 1. ``grad_error``: max |autograd ∇_z(log π_w − log π_l) − (e_w − e_l)| over the pairs at π_ref;
    ``min_step_change``: the smallest one-step change of log π(y_w) over all steps and pairs (≥ 0: monotone);
    ``min_total_change``: the smallest total rise of log π(y_w)."""
    prob = tabular_one_pair_problem(seed=seed)
    errs = []
    for x, w, l in prob.preferences:
        e = np.zeros(prob.pi_ref.shape[1])
        e[w], e[l] = 1.0, -1.0
        errs.append(np.max(np.abs(logratio_gradient(np.log(prob.pi_ref[x]), w, l) - e)))
    run = train_displacement(prob, beta, steps=steps, lr=lr)
    lc = run.logp_chosen
    return {"grad_error": float(max(errs)), "min_step_change": float(np.diff(lc, axis=0).min()),
            "min_total_change": float((lc[-1] - lc[0]).min()), "run": run}


def measure_tabular_chain(*, steps: int = 100, lr: float = 0.05, beta: float = 0.1, seed: int | None = None) -> dict:
    """Case 2. ``dlogp_b``: change of log π(b) where b is chosen in (b, c) and rejected in (a, b); π_ref uniform
    (``seed`` None) or drawn with ``seed`` (:func:`prefkit.displacement_problems.tabular_chain_problem`)."""
    run = train_displacement(tabular_chain_problem(seed), beta, steps=steps, lr=lr)
    return {"dlogp_b": float(run.logp[-1, 0, 1] - run.logp[0, 0, 1]), "run": run}


def measure_unconstrained_features(*, steps: int = 100, lr: float = 5.0, beta: float = 0.1, seed: int = 0,
                                   check_lr: float = 1e-4) -> dict:
    """Case 3, trained by plain gradient descent (``fit_dpo(..., optimizer="sgd")``).

    ``rate``: first-order rate of log π(y_w) at π_ref (:func:`logp_chosen_velocity`; negative by the choice
    of the pair); ``first_step_error``: relative error of the first-order prediction
    Δ log π(y_w) ≈ check_lr·β·σ(0)·rate against one measured SGD step of size ``check_lr``;
    ``dlogp_chosen``: change of log π(y_w) over ``steps`` steps of size ``lr``; ``top_gainer``: the response
    that gained most; ``redraws``: how many draws had no pair whose π(y_w) falls at first order (each is
    redrawn with the next seed, ``seed + 1000·k``).
    """
    for k in range(100):
        try:
            prob = unconstrained_features_problem(seed=seed + 1000 * k)
            break
        except ValueError:
            continue
    else:  # pragma: no cover - never seen
        raise RuntimeError(f"100 draws from seed {seed} gave no displacing pair")
    _, w, l = prob.preferences[0]
    W, pi = prob.features[0], prob.pi_ref[0]
    rate = logp_chosen_velocity(W, np.log(pi), w, l)
    one = train_displacement(prob, beta, steps=1, lr=check_lr, optimizer="sgd")
    predicted = check_lr * beta * 0.5 * rate  # σ(0) = 1/2 at π_ref
    measured = float(one.logp_chosen[-1, 0] - one.logp_chosen[0, 0])
    run = train_displacement(prob, beta, steps=steps, lr=lr, optimizer="sgd")
    gain = np.exp(run.logp[-1, 0]) - pi
    return {"rate": float(rate), "first_step_error": abs(measured - predicted) / abs(predicted),
            "dlogp_chosen": float(run.logp_chosen[-1, 0] - run.logp_chosen[0, 0]),
            "top_gainer": int(np.argmax(gain)), "redraws": k, "problem": prob, "run": run}


def measure_yes_no_never(*, steps: int = 150, lr: float = 2.0, beta: float = 0.1, jitter: float = 0.0,
                         seed: int | None = None, optimizer: str = "sgd") -> dict:
    """Case 4, trained by plain gradient descent, on the hand-built unembeddings with Gaussian noise of size
    ``jitter`` drawn with ``seed`` (:func:`prefkit.displacement_problems.yes_no_never_problem`).

    Plain gradient descent moves h along W_No − W_Never, the direction "Yes" was built along. Adam rescales each
    coordinate of h's step, so it moves h along another direction; the hand-built case happens to survive that
    only because W_No − W_Never lies on a coordinate axis (``optimizer="adam"`` to see it break under noise).

    ``dlogp_no``: change of log π("No"); ``p_yes_start``, ``p_yes_end``: π("Yes") before and after;
    ``top_gainer``: name of the response that gained most."""
    prob = yes_no_never_problem(jitter, seed)
    run = train_displacement(prob, beta, steps=steps, lr=lr, optimizer=optimizer)
    p0, p1 = np.exp(run.logp[0, 0]), np.exp(run.logp[-1, 0])
    yes, no = prob.names.index("Yes"), prob.names.index("No")
    return {"dlogp_no": float(np.log(p1[no]) - np.log(p0[no])), "p_yes_start": float(p0[yes]),
            "p_yes_end": float(p1[yes]), "top_gainer": prob.names[int(np.argmax(p1 - p0))], "run": run}


def squeeze_distributions(seed: int | None = None, n_responses: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A peaky and a flat distribution for the squeezing demo; y_l is the last (least likely) response.

    ``seed`` None gives the fixed pair ``PEAKY``, ``FLAT``. Otherwise the peaky π has its mode (response 0) at
    U(0.8, 0.9) and the rest split by a Dirichlet(1); the flat π is a Dirichlet(200) draw (near uniform). Both
    are sorted in decreasing order, so y_l = the last response is the least likely one.
    """
    if seed is None:
        return PEAKY.copy(), FLAT.copy()
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.8, 0.9)
    peaky = np.concatenate([[top], (1 - top) * np.sort(rng.dirichlet(np.ones(n_responses - 1)))[::-1]])
    flat = np.sort(rng.dirichlet(np.full(n_responses, 200.0)))[::-1]
    return peaky, flat


PEAKY = np.array([0.85, 0.08, 0.05, 0.015, 0.005])
FLAT = np.array([0.26, 0.24, 0.22, 0.2, 0.08])


def measure_squeeze(*, steps: int = 30, lr: float = 0.5, seed: int | None = None, n_random: int = 20) -> dict:
    """Case 5, on a peaky π and a flat one (:func:`squeeze_distributions`; y_l = the least likely response).

    ``first_order_error``: max |:func:`squeeze_first_order` − (one step of size 1e-6)/1e-6| over the two and
    ``n_random`` Dirichlet(0.5) draws with a random y_l (``seed``); ``peaky_argmax_share``,
    ``flat_argmax_share``: the argmax's share of the total probability gained after ``steps`` negative-gradient
    steps; ``peaky_n_gainers``, ``flat_n_gainers``: how many responses gained."""
    import torch

    peaky, flat = squeeze_distributions(seed)
    rng = np.random.default_rng(None if seed is None else seed + 1)
    cases = [(peaky, len(peaky) - 1), (flat, len(flat) - 1)]
    for _ in range(n_random):
        pi = rng.dirichlet(np.full(int(rng.integers(2, 8)), 0.5))
        pi = np.clip(pi, 1e-6, None)
        cases.append((pi / pi.sum(), int(rng.integers(len(pi)))))
    eta, err = 1e-6, 0.0
    for pi, l in cases:
        z = torch.tensor(np.log(pi), requires_grad=True)
        torch.log_softmax(z, -1)[l].backward()
        stepped = torch.log_softmax((z - eta * z.grad).detach(), -1).numpy()
        err = max(err, float(np.max(np.abs(squeeze_first_order(pi, l) - (stepped - np.log(pi)) / eta))))
    out = {"first_order_error": err}
    for name, pi in (("peaky", peaky), ("flat", flat)):
        l = len(pi) - 1
        traj = squeeze_trajectory(pi, l, steps=steps, lr=lr)
        gain = traj["pi"][-1] - traj["pi"][0]
        pos = gain[gain > 0]
        out[f"{name}_argmax_share"] = float(max(gain[int(np.argmax(pi))], 0.0) / pos.sum())
        out[f"{name}_n_gainers"] = int(pos.size)
        out[f"{name}_traj"] = traj
    return out


def measure_ches_population(*, n_pairs: int = 80, steps: int = 20, lr: float = 1.0, beta: float = 0.1,
                            fraction: float = 0.25, seed: int = 0) -> dict:
    """CHES on :func:`embedding_population`, every pair trained on its own (one θ_x per prompt) for a short
    run of plain gradient descent (:func:`train_pairs`, ``lr`` per pair), where the first-order link of
    :func:`logp_chosen_velocity` holds.

    ``spearman``, ``spearman_normalized``: rank correlation of CHES (and its length-normalised form) with
    the drop of log π(y_w); ``top_share``: share of the displacement held by the ``fraction`` highest-CHES
    pairs (:func:`top_ches_share`: concentration, pairs trained alone); ``frac_displaced``: fraction of
    pairs whose π(y_w) fell."""
    pop = embedding_population(n_pairs, seed=seed)
    run = train_pairs(pop.problem(shared=False), beta, steps=steps, lr=lr, optimizer="sgd",
                      record_every=steps)
    drops = displacement_drops(run)
    ches = pop.ches()
    return {"spearman": ches_displacement_correlation(ches, drops),
            "spearman_normalized": ches_displacement_correlation(pop.ches(length_normalized=True), drops),
            "top_share": top_ches_share(ches, drops, fraction), "frac_displaced": float(np.mean(drops > 0)),
            "ches": ches, "drops": drops, "population": pop}


def ches_correlation_over_training(population: EmbeddingPopulation, steps_list, *, beta: float = 0.1,
                                   lr: float = 1.0) -> list[float]:
    """Spearman(CHES, drop of log π(y_w)) after each number of steps in ``steps_list`` (pairs trained on
    their own by plain gradient descent, ``lr`` per pair, as in :func:`measure_ches_population`)."""
    ches = population.ches()
    out = []
    for k in steps_list:
        run = train_pairs(population.problem(shared=False), beta, steps=int(k), lr=lr, optimizer="sgd",
                          record_every=max(int(k), 1))
        out.append(ches_displacement_correlation(ches, displacement_drops(run)))
    return out


def measure_ches_filter(*, n_pairs: int = 80, steps: int = 20, lr: float = 0.05, beta: float = 0.1,
                        fraction: float = 0.25, seed: int = 0) -> dict:
    """:func:`ches_filter_experiment` on :func:`embedding_population` (``n_pairs``, ``seed``): one shared θ,
    plain gradient descent, a short run. Adds ``ches``, the population's CHES per pair (what the filter ranked)."""
    pop = embedding_population(n_pairs, seed=seed)
    out = ches_filter_experiment(pop, beta=beta, fraction=fraction, steps=steps, lr=lr, optimizer="sgd", seed=seed)
    out["ches"] = pop.ches()
    return out


def measure_mitigations(*, n_pairs: int = 80, steps: int = 200, lr: float = 0.05, beta: float = 0.1,
                        large_beta: float = 1.0, sft_coef: float = 1.0, ches_fraction: float = 0.25,
                        seed: int = 0) -> dict:
    """:func:`mitigation_table` on :func:`embedding_population` (``n_pairs``, ``seed``), shared θ, Adam.

    Adam, because the rows' losses have very different scales (IPO's squared loss, the NLL term of RPO):
    plain SGD at one step size is no fair comparison (IPO at τ = 0.1 diverges where DPO crawls).

    Returns ``rows`` (the table), ``by_method`` (method → row) and, for each mitigation ``rpo``, ``ipo``,
    ``large_beta``, ``ches`` (the CHES filter):

    - ``<m>_removed``: the share of plain DPO's displacement it removes, 1 − D_m / D_DPO, where D is the mean over
      all pairs of max(−Δ log π(y_w), 0) (for the filter: over the kept pairs, the ones it trains on);
    - ``<m>_margin_ratio``: its mean log-ratio margin h over plain DPO's (all pairs; the filter: kept pairs).

    And for IPO, whose loss Σ_i (h_i − 1/(2β))² is a least-squares problem in θ (h_i = ⟨θ, φ_w,i − φ_l,i⟩ exactly
    for a log-linear policy, the normaliser cancels): ``ipo_exact_margins`` the margins at its exact optimum
    (numpy least squares, independent of fit_dpo), ``ipo_margin_error`` the root-mean-square over pairs of
    h_i(trained) − h_i(exact), divided by the target 1/(2β).

    Why plain DPO gets many kept (lowest-CHES) pairs wrong: ``dpo_kept_accuracy`` (trained, with all pairs),
    ``filter_kept_accuracy`` (the same pairs, trained without the removed ones), and at plain DPO's exact optimum
    (:func:`dpo_shared_optimum`, one θ for all pairs) ``optimum_kept_accuracy`` and ``optimum_removed_accuracy``,
    the accuracy on the kept and on the removed (highest-CHES) pairs; ``separable``: whether one θ can put every
    pair right (a linear program), ``removed_pair_length_ratio``: mean ‖φ_w − φ_l‖ of the removed pairs over the
    kept ones'.
    """
    pop = embedding_population(n_pairs, seed=seed)
    rows = mitigation_table(pop, beta=beta, large_beta=large_beta, sft_coef=sft_coef,
                            ches_fraction=ches_fraction, steps=steps, lr=lr, optimizer="adam")
    by = {r["method"]: r for r in rows}
    dpo = by["DPO"]
    names = {"rpo": "DPO + SFT (RPO)", "ipo": "IPO", "large_beta": "DPO, large beta", "ches": "CHES filter"}
    out = {"rows": rows, "by_method": by}
    for key, method in names.items():
        pre = "kept/" if key == "ches" else ""
        out[f"{key}_removed"] = 1.0 - by[method][pre + "displacement"] / dpo[pre + "displacement"]
        out[f"{key}_margin_ratio"] = by[method][pre + "logratio_margin"] / dpo[pre + "logratio_margin"]
    # IPO's exact optimum: least squares in θ
    x, w, l = pop.preferences.T
    A = pop.features[x, w] - pop.features[x, l]  # (m, d): h_i = ⟨θ, a_i⟩
    target = 1.0 / (2.0 * beta)
    theta_ipo = np.linalg.lstsq(A, np.full(A.shape[0], target), rcond=None)[0]
    exact = A @ theta_ipo
    run_ipo = by["IPO"]["run"]
    h_ipo = (run_ipo.logp[-1, x, w] - run_ipo.logp[0, x, w]) - (run_ipo.logp[-1, x, l] - run_ipo.logp[0, x, l])
    out["ipo_exact_margins"] = exact
    out["ipo_margin_error"] = float(np.sqrt(np.mean((h_ipo - exact) ** 2)) / target)
    # plain DPO on the kept pairs
    keep = dpo["keep"]
    run_dpo = dpo["run"]  # h_i = ⟨θ, a_i⟩ for the log-linear policy
    h_dpo = (run_dpo.logp[-1, x, w] - run_dpo.logp[0, x, w]) - (run_dpo.logp[-1, x, l] - run_dpo.logp[0, x, l])
    out["dpo_kept_accuracy"] = dpo["kept/accuracy"]
    out["filter_kept_accuracy"] = by["CHES filter"]["kept/accuracy"]
    opt = dpo_shared_optimum(A, beta)
    out["optimum_kept_accuracy"] = float(np.mean(opt["margins"][keep] > 0))
    out["optimum_removed_accuracy"] = float(np.mean(opt["margins"][~keep] > 0))
    out["separable"] = opt["separable"]
    out["dpo_trained_margins"] = h_dpo
    out["removed_pair_length_ratio"] = float(np.linalg.norm(A[~keep], axis=1).mean()
                                             / np.linalg.norm(A[keep], axis=1).mean())
    return out


def dpo_shared_optimum(pair_features, beta: float = 0.1) -> dict:
    """Plain DPO's exact optimum for a log-linear policy with one θ shared by all pairs, independent of fit_dpo.

    With π_θ(y|x) ∝ π_ref(y|x)·exp⟨θ, φ(x, y)⟩ the margin of pair i is h_i = ⟨θ, a_i⟩, a_i = φ(x_i, y_w,i) −
    φ(x_i, y_l,i) (the normaliser cancels), so the DPO loss mean_i −log σ(β·h_i) is a logistic regression with
    every label +1 and no intercept. Solved by scipy's BFGS in float64 with the exact gradient. When some θ puts
    every pair right (``separable``, decided by a linear program) the loss has no minimiser and the margins
    returned are those of that separating θ.

    Parameters
    ----------
    pair_features : (m, d) array of a_i.

    Returns
    -------
    dict with ``theta`` (d,), ``margins`` (m,) h_i at the optimum, ``separable`` (bool), ``grad_norm``.
    """
    from scipy.optimize import linprog, minimize

    A = as_float_array(pair_features, "pair_features", ndim=2)
    m, d = A.shape
    lp = linprog(np.zeros(d), A_ub=-A, b_ub=-np.ones(m), bounds=[(None, None)] * d, method="highs")
    if lp.status == 0:
        return {"theta": lp.x, "margins": A @ lp.x, "separable": True, "grad_norm": 0.0}

    def loss(t):
        z = beta * (A @ t)
        return float(np.mean(np.logaddexp(0.0, -z))), -beta * (A.T @ np.exp(-np.logaddexp(0.0, z))) / m

    res = minimize(loss, np.zeros(d), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    return {"theta": res.x, "margins": A @ res.x, "separable": False, "grad_norm": float(np.linalg.norm(res.jac))}



# ----------------------------------------------------------------------------------------------------------
# claims (each written once; the notebook's sections are the headings of 06_likelihood_displacement.ipynb)

S_TAB = "2. When it cannot happen: a tabular softmax, one pair per prompt"
S_CHAIN = "3a. Tabular, a response that is chosen in one pair and rejected in another"
S_FEAT = "3b. Shared parameters: the unconstrained-features model"
S_YNN = '3c. The catastrophic case: preferring "No" over "Never" raises "Yes"'
S_SQZ = "3d. The squeezing effect (Ren & Sutherland 2024)"
S_CHES = "4. CHES: which pairs displace?"
S_FILT = "4b. Filtering by CHES, then retraining with one shared θ"
S_MIT = "5. Mitigations"
S_ACC = "5b. Why plain DPO gets more of the lowest-CHES pairs wrong"

TAB_GRAD = CHAPTER.claim("tabular_gradient", "tabular softmax: ∇_z(log π_w − log π_l) by autograd equals e_w − e_l: "
                         "largest error", at_most=1e-12, section=S_TAB, kind="precision")
TAB_STEP = CHAPTER.claim("one_pair_monotone", "one pair per prompt: smallest one-step change of log π(y_w), over all "
                         "pairs and steps", at_least=-1e-12, section=S_TAB)
TAB_RISE = CHAPTER.claim("one_pair_rises", "one pair per prompt: smallest total rise of log π(y_w)", at_least=0.1,
                         section=S_TAB)
CHAIN = CHAPTER.claim("chain_displaces", "chain a≻b, b≻c: change of log π(b), though b is chosen in (b, c)",
                      at_most=-1.0, section=S_CHAIN)
VEL_AUTOGRAD = CHAPTER.claim("velocity_autograd", "first-order rate of log π(y_w): formula vs autograd, "
                             "absolute error", at_most=1e-12, section=S_FEAT, kind="precision")
FIRST_STEP = CHAPTER.claim("first_step", "first-order rate vs one plain gradient step of size 1e-4: relative error",
                           at_most=1e-3, section=S_FEAT)
FEAT = CHAPTER.claim("features_displace", "logits = W h, h trained: change of log π(y_w) after plain gradient "
                     "descent", at_most=-1.0, section=S_FEAT)
YNN_NO = CHAPTER.claim("no_falls", '"No" ≻ "Never": change of log π("No")', at_most=-1.0, section=S_YNN)
YNN_YES = CHAPTER.claim("yes_rises", '"No" ≻ "Never": π("Yes") after DPO (about 0.01 before)', at_least=0.5,
                        section=S_YNN)
YNN_TOP = CHAPTER.claim("yes_top_gainer", '"No" ≻ "Never": "Yes" is the response that gains most', flag=True,
                        section=S_YNN)
SQZ_FIRST = CHAPTER.claim("squeeze_first_order", "squeezing: first-order formula vs one step of size 1e-6, "
                          "largest error", at_most=1e-5, section=S_SQZ, kind="precision")
SQZ_PEAKY = CHAPTER.claim("squeeze_peaky", "peaky π: the argmax's share of all the probability gained",
                          at_least=0.999, section=S_SQZ)
SQZ_FLAT = CHAPTER.claim("squeeze_flat", "flat π: the argmax's share of all the probability gained", at_most=0.75,
                         section=S_SQZ)
CHES_RHO = CHAPTER.claim("ches_spearman", "CHES vs measured drop of log π(y_w), pairs trained alone: Spearman "
                         "rank correlation", at_least=0.5, section=S_CHES)
CHES_TOP = CHAPTER.claim("ches_top_share", "pairs trained alone: share of the displacement held by the 25% "
                         "highest-CHES pairs (a random quarter holds about 0.25)", at_least=0.5, section=S_CHES)
CHES_FADES = CHAPTER.claim("ches_fades", "best rank correlation minus the one after 400 steps (CHES is first-order)",
                           at_least=0.05, section=S_CHES)
CHES_LATE = CHAPTER.claim("ches_late", "Spearman rank correlation after 400 steps (still predicts)", at_least=0.3,
                          section=S_CHES)
FILT_SHARE = CHAPTER.claim("filter_removes", "one shared θ: share of the displacement removed by dropping the 25% "
                           "highest-CHES pairs", at_least=0.5, section=S_FILT)
FILT_RANDOM = CHAPTER.claim("filter_beats_random", "... minus the share removed by dropping a random 25% (mean of "
                            "5 draws)", at_least=0.1, section=S_FILT)
FILT_KEPT = CHAPTER.claim("filter_helps_kept", "kept pairs: mean change of log π(y_w), filtered data minus all "
                          "pairs", at_least=0.0, section=S_FILT)
DPO_DISP = CHAPTER.claim("dpo_displaces", "plain DPO, one shared θ: mean change of log π(y_w)", at_most=-1.0,
                         section=S_MIT)
RPO_REMOVED = CHAPTER.claim("rpo_removes", "DPO + SFT (RPO): share of plain DPO's displacement it removes",
                            at_least=0.9, section=S_MIT)
IPO_REMOVED = CHAPTER.claim("ipo_removes", "IPO: share of plain DPO's displacement it removes", at_least=0.5,
                            section=S_MIT)
BETA_REMOVED = CHAPTER.claim("large_beta_removes", "β = 1 instead of 0.1: share of plain DPO's displacement it "
                             "removes", at_least=0.5, section=S_MIT)
RPO_MARGIN = CHAPTER.claim("rpo_margin", "RPO: its mean margin h over plain DPO's (RPO gives up the margin)",
                           at_most=0.2, section=S_MIT)
IPO_MARGIN = CHAPTER.claim("ipo_margin", "IPO: its mean margin h over plain DPO's", within=(0.1, 0.6),
                           section=S_MIT)
BETA_MARGIN = CHAPTER.claim("large_beta_margin", "β = 1: its mean margin h over plain DPO's", within=(0.1, 0.6),
                            section=S_MIT)
IPO_EXACT = CHAPTER.claim("ipo_reaches_optimum", "IPO's margins vs its exact optimum (least squares): RMS "
                          "error / target 1/(2β)", at_most=0.25, section=S_MIT)
OPT_GAP = CHAPTER.claim("optimum_accuracy_gap", "DPO's exact optimum, one θ: accuracy on the 25% highest-CHES "
                        "pairs minus on the rest", at_least=0.1, section=S_ACC)
NOT_SEPARABLE = CHAPTER.claim("no_theta_fits_all", "no single θ puts every pair's margin above 0 (linear program)",
                              flag=True, section=S_ACC)


# ----------------------------------------------------------------------------------------------------------
# tour checks (the notebook calls the same measure_* functions)


@CHAPTER.check("tabular, one pair per prompt: pi(y_w) only rises")
def tour_tabular_one_pair(ctx):
    m = measure_tabular_one_pair(steps=50 if ctx.fast else 100, seed=ctx.seed)
    return {TAB_GRAD: m["grad_error"], TAB_STEP: m["min_step_change"], TAB_RISE: m["min_total_change"]}


@CHAPTER.check("tabular chain a>b>c: pi(b) falls")
def tour_tabular_chain(ctx):
    return {CHAIN: measure_tabular_chain(seed=ctx.seed)["dlogp_b"]}


@CHAPTER.check("unconstrained features: pi(y_w) falls")
def tour_unconstrained(ctx):
    m = measure_unconstrained_features(seed=ctx.seed)
    prob = m["problem"]
    _, w, l = prob.preferences[0]
    W, pi0 = prob.features[0], prob.pi_ref[0]
    return {VEL_AUTOGRAD: velocity_autograd_error(W, pi0, w, l), FIRST_STEP: m["first_step_error"],
            FEAT: m["dlogp_chosen"]}


def velocity_autograd_error(features, pi_ref, chosen: int, rejected: int) -> float:
    """|:func:`logp_chosen_velocity` − ⟨∇_θ log π_w, ∇_θ(log π_w − log π_l)⟩ by torch autograd| at θ = 0."""
    import torch

    from ..policies import LogLinearPolicy

    pol = LogLinearPolicy(np.asarray(pi_ref)[None], np.asarray(features)[None])
    lp = pol.log_probs()[0]
    g_w = torch.autograd.grad(lp[chosen], pol.theta, retain_graph=True)[0]
    g_margin = torch.autograd.grad(lp[chosen] - lp[rejected], pol.theta)[0]
    return abs(logp_chosen_velocity(features, np.log(pi_ref), chosen, rejected) - float(g_w @ g_margin))


@CHAPTER.check('"No" > "Never" raises "Yes"')
def tour_yes_no_never(ctx):
    m = measure_yes_no_never(jitter=0.1, seed=ctx.seed)
    if ctx.figdir is not None:
        from ..plotting.displacement import plot_displacement_trajectory

        run = m["run"]
        ctx.savefig(plot_displacement_trajectory(run.logp, run.problem.preferences, names=run.problem.names,
                                                 title='"No" > "Never" raises "Yes"'), "ch6_yes_no_never.png")
    return {YNN_NO: m["dlogp_no"], YNN_YES: m["p_yes_end"], YNN_TOP: m["top_gainer"] == "Yes"}


@CHAPTER.check("squeezing: a negative gradient feeds the argmax")
def tour_squeeze(ctx):
    m = measure_squeeze(seed=ctx.seed)
    return {SQZ_FIRST: m["first_order_error"], SQZ_PEAKY: m["peaky_argmax_share"],
            SQZ_FLAT: m["flat_argmax_share"]}


@CHAPTER.check("CHES predicts displacement")
def tour_ches(ctx):
    m = measure_ches_population(n_pairs=40 if ctx.fast else 80, seed=ctx.seed)
    rhos = ches_correlation_over_training(m["population"], [5, 20, 60, 150, 400])
    if ctx.figdir is not None:
        from ..plotting.displacement import plot_ches_scatter

        ctx.savefig(plot_ches_scatter(m["ches"], m["drops"]), "ch6_ches_scatter.png")
    return {CHES_RHO: m["spearman"], CHES_TOP: m["top_share"], CHES_FADES: max(rhos) - rhos[-1],
            CHES_LATE: rhos[-1]}


@CHAPTER.check("CHES filter, retrained with one shared theta")
def tour_ches_filter(ctx):
    # 80 pairs in both settings (0.1 s): with fewer, dropping a random quarter can remove almost as much
    # displacement as dropping the highest-CHES quarter (0.09 at 60 pairs, seed 6), and the kept pairs' gain
    # can be as small as 0.006 (40 pairs)
    m = measure_ches_filter(n_pairs=80, seed=ctx.seed)
    return {FILT_SHARE: m["removed_share"], FILT_RANDOM: m["removed_share"] - m["random_removed_share"],
            FILT_KEPT: m["kept_dlogp_filtered"] - m["kept_dlogp_full"]}


@CHAPTER.check("mitigations: RPO, IPO, larger beta")
def tour_mitigations(ctx):
    # 80 pairs in both settings (under a second): with 40, one θ can separate every pair at some seeds (seed 2)
    m = measure_mitigations(n_pairs=80, seed=ctx.seed)
    return {DPO_DISP: m["by_method"]["DPO"]["dlogp_chosen"], RPO_REMOVED: m["rpo_removed"],
            IPO_REMOVED: m["ipo_removed"], BETA_REMOVED: m["large_beta_removed"], RPO_MARGIN: m["rpo_margin_ratio"],
            IPO_MARGIN: m["ipo_margin_ratio"], BETA_MARGIN: m["large_beta_margin_ratio"],
            IPO_EXACT: m["ipo_margin_error"],
            OPT_GAP: m["optimum_removed_accuracy"] - m["optimum_kept_accuracy"], NOT_SEPARABLE: not m["separable"]}


# ----------------------------------------------------------------------------------------------------------
# exercise checkers


def _finite_array(value, shape, what):
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Mistake(f"{what} must be numbers, got {type(value).__name__}") from None
    if a.shape != shape:
        raise Mistake(f"{what} has shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise Mistake(f"{what} is not finite (NaN or inf)")
    return a


def _ches_candidates(hw_seq, hl_seq, p, normalized):
    """The right CHES and the plausible wrong ones, each from full-sequence hidden states (prompt length p)."""
    agg = np.mean if normalized else np.sum

    right_w, right_l = hw_seq[p - 1:-1], hl_seq[p - 1:-1]
    sw, sl = agg(right_w, axis=0), agg(right_l, axis=0)
    out = {"right": sw @ sl - sw @ sw}
    out["the −‖Σ_k h_w,k‖² term is missing: CHES = ⟨Σ h_w, Σ h_l⟩ − ‖Σ h_w‖²"] = sw @ sl
    out["the subtracted norm must be the chosen response's, ‖Σ_k h_w,k‖², not the rejected one's"] = sw @ sl - sl @ sl
    out["the sign is flipped: CHES = ⟨Σ h_w, Σ h_l⟩ − ‖Σ h_w‖² (high when the responses are alike)"] = sw @ sw - sw @ sl
    ssum_w, ssum_l = np.sum(right_w, axis=0), np.sum(right_l, axis=0)
    smean_w, smean_l = np.mean(right_w, axis=0), np.mean(right_l, axis=0)
    if normalized:
        out["length_normalized=True asks for means over the positions, not sums"] = ssum_w @ ssum_l - ssum_w @ ssum_w
    else:
        out["length_normalized=False asks for sums over the positions, not means"] = (smean_w @ smean_l
                                                                                     - smean_w @ smean_w)
    for rows, hint in (
        ((slice(p, None)), "wrong positions: the states that predict the response run from the last prompt token "
                           "(index prompt_length − 1) to the second-to-last position, not from prompt_length on"),
        ((slice(p - 1, None)), "wrong positions: leave out the final position (it predicts no response token); "
                               "use prompt_length − 1 … L − 2"),
        ((slice(0, -1)), "wrong positions: the prompt's states (before index prompt_length − 1) predict no "
                         "response token"),
    ):
        a, b = hw_seq[rows], hl_seq[rows]
        if len(a) and len(b):
            sa, sb = agg(a, axis=0), agg(b, axis=0)
            out[hint] = sa @ sb - sa @ sa
    return out


@exercise("ch6.ches", stub="my_ches", solution="ch6_displacement:ches_solution", title="CHES from hidden states")
def grade_ches(fn):
    """Check ``fn(hidden_chosen (L_w, d), hidden_rejected (L_l, d), prompt_length, length_normalized) -> float``
    against :func:`prefkit.ches_score` of :func:`prefkit.response_hidden_states` (Razin et al. 2024's ``ches.py``)
    on random sequences that share a prompt; names the mistake when it is one of the plausible ones."""
    from ..ches import response_hidden_states

    rng = np.random.default_rng(6)
    for i in range(12):
        d, p = int(rng.integers(2, 6)), int(rng.integers(2, 5))
        prompt = rng.normal(size=(p, d))
        hw = np.vstack([prompt, rng.normal(size=(int(rng.integers(2, 6)), d))])
        hl = np.vstack([prompt, rng.normal(size=(int(rng.integers(2, 6)), d))])
        normalized = bool(i % 2)
        got = fn(hw.copy(), hl.copy(), p, normalized)
        got = float(_finite_array(got, (), f"my_ches(..., length_normalized={normalized})"))
        want = ches_score(response_hidden_states(hw, p), response_hidden_states(hl, p),
                          length_normalized=normalized)
        if abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            continue
        for hint, value in _ches_candidates(hw, hl, p, normalized).items():
            if hint != "right" and abs(got - value) <= 1e-9 * max(1.0, abs(value)):
                raise Mistake(hint)
        raise Mistake(f"CHES is {want:.6g} on a random pair (prompt length {p}, length_normalized={normalized}) "
                      f"but my_ches gave {got:.6g}: sum (or average) the states that predict the response tokens, "
                      "then ⟨Σ h_w, Σ h_l⟩ − ‖Σ h_w‖²")


@exercise("ch6.squeeze_rate", stub="my_squeeze_rate", solution="ch6_displacement:squeeze_rate_solution",
          title="the squeezing rate")
def grade_squeeze_rate(fn):
    """Check ``fn(pi (n,), rejected) -> (n,)``, the first-order change of log π per unit step that lowers
    log π(y_l) on softmax logits, against :func:`prefkit.squeeze_first_order` (Ren & Sutherland 2024)."""
    rng = np.random.default_rng(6)
    for _ in range(12):
        n = int(rng.integers(3, 8))
        pi = rng.dirichlet(np.full(n, 0.7))
        l = int(rng.integers(n))
        got = _finite_array(fn(pi.copy(), l), (n,), "my_squeeze_rate(pi, rejected)")
        want = squeeze_first_order(pi, l)
        if np.allclose(got, want, atol=1e-10):
            continue
        e = np.eye(n)[l]
        wrong = {
            "wrong sign: lowering log π(y_l) moves the logits by +(π − e_l), and the rate is that minus its "
            "π-weighted mean": -want,
            "this is the change of the logits, π − e_l: log π also subtracts the change of log Z, ⟨π, Δz⟩":
                pi - e,
            "⟨π, Δz⟩ = ‖π‖² − π_l: the π_l term is missing": pi - e - pi @ pi,
            "this is the change of π, not of log π: divide by π": pi * want,
        }
        for hint, value in wrong.items():
            if np.allclose(got, value, atol=1e-10):
                raise Mistake(hint)
        raise Mistake("my_squeeze_rate differs from the exact first-order change of log π (largest difference "
                      f"{np.max(np.abs(got - want)):.3g}): write Δz for a unit step on −log π_l, then "
                      "Δ log π_y = Δz_y − ⟨π, Δz⟩")


@exercise("ch6.catastrophe", stub="my_catastrophe", solution="ch6_displacement:catastrophe_solution",
          title="build a catastrophe")
def grade_catastrophe(fn, *, steps: int = 150, lr: float = 2.0, beta: float = 0.1):
    """Check ``fn() -> (W (n_tokens ≥ 3, d), h0 (d,))``: DPO on token 1 ≻ token 2 in the unconstrained-features
    model (logits = W h, plain gradient descent as in the chapter) must make token 0 (π < 0.2 at first) the top
    gainer with π > 0.5, and lower π(token 1)."""
    out = fn()
    if not isinstance(out, tuple) or len(out) != 2:
        raise Mistake("my_catastrophe must return a pair (W, h0)")
    W = np.asarray(out[0], dtype=np.float64)
    h0 = np.asarray(out[1], dtype=np.float64)
    if W.ndim != 2 or W.shape[0] < 3 or h0.shape != (W.shape[1],):
        raise Mistake(f"need W of shape (n_tokens ≥ 3, d) and h0 of shape (d,), got {W.shape} and {h0.shape}")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(h0))):
        raise Mistake("W and h0 must be finite")
    z = W @ h0
    pi0 = np.exp(z - np.logaddexp.reduce(z))
    if pi0[0] >= 0.2:
        raise Mistake(f"token 0 must start unlikely, but π(token 0) = {pi0[0]:.3f} at h0: choose h0 with a low "
                      "logit W_0·h0")
    prob = DisplacementProblem(pi0[None], np.array([[0, 1, 2]]), W[None])
    run = train_displacement(prob, beta, steps=steps, lr=lr, optimizer="sgd")
    p1 = np.exp(run.logp[-1, 0])
    direction = W[1] - W[2]
    cos = float(W[0] @ direction / (np.linalg.norm(W[0]) * np.linalg.norm(direction) + 1e-300))
    if p1[1] >= pi0[1]:
        raise Mistake("π(token 1) rose: DPO moves h along W_1 − W_2; for the chosen token to lose, W_1 and W_2 must "
                      "be nearly the same vector, so that W_1 − W_2 is almost orthogonal to W_1")
    top = int(np.argmax(p1 - pi0))
    if top != 0 or p1[0] <= 0.5:
        raise Mistake(f"the mass went to token {top}, not token 0 (π(token 0) ends at {p1[0]:.3f}; the cosine of "
                      f"W_0 with W_1 − W_2 is {cos:.2f}): DPO moves h along W_1 − W_2, so W_0 must point along it "
                      "and beat every other token in that direction")

# --- the slides against what was measured (the notebook's closing table) -------------------------------------------
CHAPTER.slide("DPO can lower the probability of the preferred response (Razin et al. 2024).",
              ["one_pair_rises", "chain_displaces", "features_displace", "dpo_displaces"],
              "agrees, with a condition: never for a tabular softmax with one pair per prompt; yes once responses "
              "or parameters are shared")
CHAPTER.slide("The mass can move to responses neither side named, sometimes to the opposite one.",
              ["yes_rises", "yes_top_gainer"], "agrees: \"No\" ≻ \"Never\" makes \"Yes\" the top gainer")
CHAPTER.slide("CHES predicts which pairs displace, and filtering them helps.",
              ["ches_spearman", "filter_removes", "filter_beats_random"],
              "agrees: CHES ranks the pairs, and dropping the highest-CHES quarter removes more displacement than "
              "dropping a random quarter")
