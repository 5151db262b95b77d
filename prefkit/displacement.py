"""Likelihood displacement: when DPO lowers the probability of the response it prefers (chapter 6).

Razin, Malladi et al. 2024, "Unintentional Unalignment: Likelihood Displacement in Direct Preference
Optimization" [razin2024]; Ren & Sutherland 2024, "Learning Dynamics of LLM Finetuning" [ren2024].

The chapter's cases, each built here and measured with the DPO code of chapters 4–5
(:func:`prefkit.losses.preference_loss`, :func:`prefkit.dpo.fit_dpo`):

1. tabular softmax, one pair per prompt — ∇_z[log π_w − log π_l] = e_w − e_l, so π(y_w) only rises
   (:func:`logratio_gradient`, :func:`tabular_one_pair_problem`);
2. tabular, a response chosen in one pair and rejected in another — π(y_w) can fall
(:func:`tabular_chain_problem`);
3. shared parameters, the single-token unconstrained-features model: logits = W h with h trained and W fixed
   (:func:`unconstrained_features_problem`);
4. the catastrophic case: "No" ≻ "Never" raises "Yes" (:func:`yes_no_never_problem`);
5. squeezing: a negative gradient on an unlikely response feeds the argmax (:func:`squeeze_trajectory`).

CHES (:func:`ches_score`) predicts which pairs displace; :func:`embedding_population` is a population of
pairs on which its rank correlation with the measured drop is computed, and :func:`mitigation_table` compares
the fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import as_float_array, as_index_array, check_beta, check_distribution
from .displacement_tracking import displacement_step

__all__ = [
    "logratio_gradient",
    "logp_chosen_velocity",
    "ches_score",
    "ches_scores",
    "response_hidden_states",
    "DisplacementProblem",
    "tabular_one_pair_problem",
    "tabular_chain_problem",
    "unconstrained_features_problem",
    "yes_no_never_problem",
    "train_displacement",
    "DisplacementRun",
    "squeeze_first_order",
    "squeeze_trajectory",
    "EmbeddingPopulation",
    "embedding_population",
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


# ----------------------------------------------------------------------------------------------------------
# the tabular fact and the first-order rate


def logratio_gradient(logits, chosen: int, rejected: int) -> np.ndarray:
    """∇_z [log softmax(z)_w − log softmax(z)_l], by torch autograd.

    The normaliser log Z(z) appears in both terms and cancels, so the exact answer is e_w − e_l [razin2024]:
    a single pair per prompt moves only its own two logits, and π(y_w) can only rise.

    Parameters
    ----------
    logits : (n_responses,) array of finite logits z.
    chosen, rejected : indices w ≠ l.

    Returns
    -------
    (n_responses,) float64 array.
    """
    z = as_float_array(logits, "logits", ndim=1)
    n = z.shape[0]
    w, l = _pair_indices(chosen, rejected, n)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(zt, dim=-1)
    (logp[w] - logp[l]).backward()
    return zt.grad.numpy().copy()


def logp_chosen_velocity(features, logits, chosen: int, rejected: int) -> float:
    """First-order rate of log π(y_w) under a gradient step on log π_w − log π_l, for a log-linear softmax.

    With π = softmax(z), z_y = z0_y + ⟨φ_y, θ⟩, gradient ascent on log π_w − log π_l moves θ along φ_w − φ_l
    (the normaliser cancels), and log π_w changes at the rate

        ⟨∇_θ log π_w, ∇_θ(log π_w − log π_l)⟩ = ⟨φ_w − φ̄, φ_w − φ_l⟩ = −CHES − ⟨φ̄, φ_w − φ_l⟩,

    with φ̄ = Σ_y π_y φ_y and CHES = ⟨φ_w, φ_l⟩ − ‖φ_w‖² the score of :func:`ches_score` with φ the summed
    hidden states. A plain gradient-descent step (``fit_dpo(..., optimizer="sgd")``) multiplies this by
    β·σ(−margin)·lr > 0, so to first order the sign is the sign of the change [razin2024, single-token
    analysis, with φ = token unembeddings]. Adam (fit_dpo's default) rescales each coordinate of the step,
    which breaks this link; the chapter uses plain SGD wherever it claims it.

    Parameters
    ----------
    features : (n_responses, d) array φ.
    logits : (n_responses,) current logits z.

    Returns
    -------
    float: the rate (negative means π(y_w) falls).
    """
    phi = as_float_array(features, "features", ndim=2)
    z = as_float_array(logits, "logits", ndim=1)
    if phi.shape[0] != z.shape[0]:
        raise ValueError(f"shape mismatch: features has {phi.shape[0]} responses but logits has {z.shape[0]}")
    w, l = _pair_indices(chosen, rejected, z.shape[0])
    pi = np.exp(z - np.logaddexp.reduce(z))
    phi_bar = pi @ phi  # (d,)
    return float((phi[w] - phi_bar) @ (phi[w] - phi[l]))


def _pair_indices(chosen, rejected, n):
    w, l = int(chosen), int(rejected)
    if not (0 <= w < n):
        raise ValueError(f"chosen={chosen} out of range for {n} responses")
    if not (0 <= l < n):
        raise ValueError(f"rejected={rejected} out of range for {n} responses")
    if w == l:
        raise ValueError("chosen and rejected must differ")
    return w, l


# ----------------------------------------------------------------------------------------------------------
# CHES


def _hidden(h, name):
    a = as_float_array(h, name, ndim=(2, 3))
    if a.shape[-2] == 0:
        raise ValueError(f"{name} has no positions (T = 0): a response needs at least one token")
    if a.shape[-1] == 0:
        raise ValueError(f"{name} has hidden size d = 0")
    return a


def ches_score(hidden_chosen, hidden_rejected, *, length_normalized: bool = False):
    """Centered hidden embedding similarity (CHES) of a pair [razin2024; their ``ches/ches.py``].

        CHES(x, y_w, y_l) = ⟨Σ_k h_w,k, Σ_k h_l,k⟩ − ‖Σ_k h_w,k‖²

    and, length-normalised, ⟨Σ_k h_w,k, Σ_k h_l,k⟩ / (|y_w|·|y_l|) − ‖Σ_k h_w,k‖² / |y_w|², i.e. the same with
    means in place of sums. h_k is the last hidden state at each prefix of the response: the position of
    the last prompt token and each response position except the final one, so there are T = |y| of them, one
    per predicted
    token. A high CHES (responses whose hidden states are alike) predicts that DPO lowers π(y_w).

    Parameters
    ----------
    hidden_chosen : (T_w, d) or (B, T_w, d) array.
    hidden_rejected : (T_l, d) or (B, T_l, d) array; T_l may differ from T_w, d and B may not.
    length_normalized : use means instead of sums.

    Returns
    -------
    float for (T, d) inputs, (B,) array for batched inputs.

    Raises
    ------
    ValueError
        if the hidden sizes d (or batch sizes) differ, an input is empty, or contains NaN/inf.
    """
    hw = _hidden(hidden_chosen, "hidden_chosen")
    hl = _hidden(hidden_rejected, "hidden_rejected")
    if hw.ndim != hl.ndim:
        raise ValueError(f"hidden_chosen has shape {hw.shape} but hidden_rejected has shape {hl.shape}; "
                         "give both as (T, d) or both as (B, T, d)")
    if hw.shape[-1] != hl.shape[-1]:
        raise ValueError(f"hidden size mismatch: hidden_chosen has d = {hw.shape[-1]} but "
                         f"hidden_rejected has d = {hl.shape[-1]}")
    if hw.ndim == 3 and hw.shape[0] != hl.shape[0]:
        raise ValueError(f"batch size mismatch: hidden_chosen has B = {hw.shape[0]}, hidden_rejected "
                         f"B = {hl.shape[0]}")
    agg = np.mean if length_normalized else np.sum
    sw = agg(hw, axis=-2)  # (..., d)
    sl = agg(hl, axis=-2)  # (..., d)
    out = np.sum(sw * sl, axis=-1) - np.sum(sw * sw, axis=-1)
    return float(out) if out.ndim == 0 else out


def response_hidden_states(hidden, prompt_length: int) -> np.ndarray:
    """The (T, d) rows of a sequence's hidden states that CHES sums [razin2024, ``ches/ches.py``].

    For a sequence (prompt ‖ response) of length L with hidden states ``hidden`` (L, d), these are the
    states that predict the response tokens: from the last prompt token (index prompt_length − 1) to the
    second-to-last position, so T = L − prompt_length = |y| rows.

    Raises
    ------
    ValueError
        if ``prompt_length`` < 1 or the response is empty (prompt_length ≥ L).
    """
    h = as_float_array(hidden, "hidden", ndim=2)
    p = int(prompt_length)
    if p < 1:
        raise ValueError(f"prompt_length must be >= 1, got {prompt_length}")
    if p >= h.shape[0]:
        raise ValueError(f"prompt_length={p} leaves no response positions in hidden of length {h.shape[0]}")
    return h[p - 1:-1]


def ches_scores(hidden_chosen, hidden_rejected, *, length_normalized: bool = False) -> np.ndarray:
    """:func:`ches_score` of each pair of two equally long lists of (T_i, d) arrays; returns (m,)."""
    if len(hidden_chosen) != len(hidden_rejected):
        raise ValueError(f"hidden_chosen has {len(hidden_chosen)} pairs but hidden_rejected has "
                         f"{len(hidden_rejected)}")
    return np.array([ches_score(a, b, length_normalized=length_normalized)
                     for a, b in zip(hidden_chosen, hidden_rejected, strict=True)], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# the cases


@dataclass
class DisplacementProblem:
    """A preference data set on an enumerable response set, with the policy family it is trained in.

    ``features`` None means a tabular policy; otherwise the log-linear policy π ∝ π_ref·exp(⟨θ, φ(x, y)⟩) of
    :class:`prefkit.policies.LogLinearPolicy` (for the unconstrained-features model, φ(x, y) = W_y and
    θ = h − h0).
    """

    pi_ref: np.ndarray  # (n_prompts, n_responses)
    preferences: np.ndarray  # (m, 3) int: (prompt, chosen, rejected)
    features: np.ndarray | None = None  # (n_prompts, n_responses, d)
    names: list[str] | None = None  # response names, if any
    note: str = ""


def tabular_one_pair_problem(n_prompts: int = 4, n_responses: int = 6, seed: int = 0) -> DisplacementProblem:
    """Tabular policy, one preference pair per prompt, random π_ref: case 1, where π(y_w) can only rise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_prompts, n_responses))
    pi_ref = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    prefs = np.array([[x, *rng.choice(n_responses, size=2, replace=False)] for x in range(n_prompts)])
    return DisplacementProblem(pi_ref, prefs, note="tabular, one pair per prompt")


def tabular_chain_problem() -> DisplacementProblem:
    """Tabular policy on one prompt with three responses and the chain a ≻ b, b ≻ c: case 2.

    b is chosen in one pair and rejected in the other. At the first step (π uniform, both pairs weighted
    σ(0)) the logit gradients sum to e_a − e_b + e_b − e_c = e_a − e_c, so z_b does not move at first; later
    the two weights σ(−β·h) differ and z_b moves a little too. a's rising share squeezes b: π(b) falls
    although b is the chosen response of the pair (b, c).
    """
    pi_ref = np.full((1, 3), 1.0 / 3.0)
    prefs = np.array([[0, 0, 1], [0, 1, 2]])
    return DisplacementProblem(pi_ref, prefs, names=["a", "b", "c"], note="tabular chain a > b > c")


def _softmax_rows(z):
    z = np.asarray(z, dtype=np.float64)
    return np.exp(z - np.logaddexp.reduce(z, axis=-1, keepdims=True))


def unconstrained_features_problem(n_tokens: int = 40, d: int = 6, seed: int = 0) -> DisplacementProblem:
    """The single-token unconstrained-features model of [razin2024]: logits = W h, h trained, W fixed.

    W (n_tokens, d) is Gaussian and h0 too; the log-linear policy with φ(x, y) = W_y and θ = h − h0 is exactly
    this model. The pair (y_w, y_l) is chosen, among pairs with π_ref(y_w) ≥ 1/(2·n_tokens) whose first-order
    rate :func:`logp_chosen_velocity` is negative, as the one with the largest ⟨W_w, W_l⟩ − ‖W_w‖² (the
    single-token CHES, unembeddings in place of hidden states): DPO lowers π(y_w).

    The pair is *selected* for a negative first-order rate, so "rate ≤ 0" holds by construction and checks
    nothing; the informative claim is the measured drop of log π(y_w) after training.
    """
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n_tokens, d)) / np.sqrt(d)
    h0 = rng.normal(size=d)
    z0 = W @ h0
    pi_ref = _softmax_rows(z0)
    best, pair = -np.inf, None
    for w in range(n_tokens):
        if pi_ref[w] < 0.5 / n_tokens:
            continue
        for l in range(n_tokens):
            if l != w and logp_chosen_velocity(W, z0, w, l) < 0:
                score = W[w] @ W[l] - W[w] @ W[w]
                if score > best:
                    best, pair = score, (w, l)
    if pair is None:
        raise ValueError(f"seed={seed} gives no pair whose π(y_w) falls at first order; try another seed")
    prefs = np.array([[0, pair[0], pair[1]]])
    return DisplacementProblem(pi_ref[None], prefs, features=W[None], note="unconstrained features, W fixed")


YES_NO_NEVER_TOKENS = ["Yes", "No", "Never", "Maybe", "Sure", "Perhaps", "Certainly", "Nope"]


def yes_no_never_problem() -> DisplacementProblem:
    """The catastrophic case [razin2024, OLMo-1B: "No" ≻ "Never" raised P("Yes")], built by hand in d = 2.

    "No" and "Never" have nearly the same unembedding, so DPO moves h along W_No − W_Never, a direction almost
    orthogonal to both. "Yes" is placed along that direction, so the mass that leaves "Never" goes to
    "Yes", the response opposite in meaning, and π("No") falls with it.
    """
    W = np.array([
        [-0.4, -2.5],  # Yes: along W_No − W_Never
        [2.0, 0.3],    # No
        [2.0, 0.9],    # Never
        [0.5, 0.5],    # Maybe
        [-0.5, 0.8],   # Sure
        [0.3, 0.0],    # Perhaps
        [-0.8, 0.3],   # Certainly
        [1.2, 1.0],    # Nope
    ])
    h0 = np.array([1.5, 0.0])
    pi_ref = _softmax_rows(W @ h0)[None]
    prefs = np.array([[0, 1, 2]])  # "No" ≻ "Never"
    return DisplacementProblem(pi_ref, prefs, features=W[None], names=list(YES_NO_NEVER_TOKENS),
                               note='"No" > "Never" in the unconstrained-features model')


# ----------------------------------------------------------------------------------------------------------
# training with per-step, per-pair records


@dataclass
class DisplacementRun:
    """A DPO-family run on a :class:`DisplacementProblem`, recorded at every step.

    ``logp`` (steps + 1, n_prompts, n_responses) holds log π_θ before the first step and after each step;
    ``history`` is :func:`prefkit.dpo.fit_dpo`'s per-step list of dicts (TRL metrics +
    :func:`displacement_step`).
    """

    problem: DisplacementProblem
    logp: np.ndarray
    history: list = field(default_factory=list)
    result: object = None

    @property
    def logp_chosen(self) -> np.ndarray:
        """(steps + 1, m) log π(y_w|x) of every pair along training."""
        p = self.problem.preferences
        return self.logp[:, p[:, 0], p[:, 1]]

    @property
    def logp_rejected(self) -> np.ndarray:
        """(steps + 1, m) log π(y_l|x) of every pair along training."""
        p = self.problem.preferences
        return self.logp[:, p[:, 0], p[:, 2]]

    def tracked(self) -> dict:
        """:func:`displacement_step` of every recorded step against the start: dict of (steps + 1,) arrays."""
        rows = [displacement_step(lp, self.logp[0], self.problem.preferences) for lp in self.logp]
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def train_displacement(problem: DisplacementProblem, beta: float = 0.1, *, steps: int = 200, lr: float = 0.05,
                       loss_type: str = "sigmoid", sft_coef: float = 0.0, weights=None, record_every: int = 1,
                       **fit_kwargs) -> DisplacementRun:
    """Train ``problem`` with :func:`prefkit.dpo.fit_dpo` and record log π_θ along the way.

    Parameters
    ----------
    problem : :class:`DisplacementProblem`.
    beta, loss_type, sft_coef, weights : passed to ``fit_dpo`` (``sft_coef`` is the RPO term −sft_coef·log
    π_w). steps, lr : optimiser steps and learning rate.
    record_every : keep log π_θ (and fit_dpo's history) every this many steps (1 = all).
    **fit_kwargs : passed on to ``fit_dpo``, e.g. ``optimizer="sgd"`` (the default is fit_dpo's, Adam).

    Returns
    -------
    :class:`DisplacementRun`.
    """
    from .dpo import fit_dpo

    beta = check_beta(beta)
    snaps: list[np.ndarray] = []

    def _record(step, policy):
        if step % record_every == 0:
            with torch.no_grad():
                snaps.append(policy.log_probs().detach().numpy().copy())

    res = fit_dpo(problem.pi_ref, problem.preferences, beta, weights=weights, loss_type=loss_type,
                  features=problem.features, sft_coef=sft_coef, steps=steps, lr=lr, callback=_record,
                  record_every=record_every, **fit_kwargs)
    with torch.no_grad():
        final = res.model.log_probs().detach().numpy().copy()
    if not snaps:
        snaps = [np.log(problem.pi_ref)]
    if not np.array_equal(snaps[-1], final):
        snaps.append(final)
    return DisplacementRun(problem, np.stack(snaps), list(getattr(res, "history", [])), res)


# ----------------------------------------------------------------------------------------------------------
# squeezing


def squeeze_first_order(pi, rejected: int) -> np.ndarray:
    """First-order change of log π under one unit gradient step that lowers log π(y_l) on tabular logits.

    Δz = −∇_z log π_l = π − e_l, so Δ log π_y = Δz_y − ⟨π, Δz⟩ = π_y − [y = l] − (‖π‖² − π_l)
    [ren2024, the squeezing effect]. A response gains iff π_y > ‖π‖² − π_l: when y_l is unlikely and
    π is peaky, ‖π‖² ≈ max π², and only the argmax (π_max ≥ ‖π‖²) gains.

    Parameters
    ----------
    pi : (n_responses,) distribution.
    rejected : l.

    Returns
    -------
    (n_responses,) array: d log π / d(step size).
    """
    p = check_distribution(pi, "pi")
    if p.ndim != 1:
        raise ValueError(f"pi must have shape (n_responses,), got {p.shape}")
    n = p.shape[0]
    l = int(as_index_array(rejected, "rejected", n=n))
    e = np.zeros(n)
    e[l] = 1.0
    return p - e - (p @ p - p[l])


def squeeze_trajectory(pi_ref, rejected: int, *, beta: float = 1.0, steps: int = 100,
                       lr: float = 0.5) -> dict:
    """Gradient descent on tabular logits with the rejected half of the DPO loss, −log σ(−β·log π_l/π_ref,l).

    This is the "negative gradient" of [ren2024]: :func:`prefkit.losses.preference_loss` with the chosen
    log-ratio held at 0. Each step calls :func:`displacement_step` with the pair (argmax of π_ref, y_l).

    Returns
    -------
    dict with ``pi`` (steps + 1, n_responses), ``argmax``, ``history`` (per-step displacement dicts).
    """
    from .losses import preference_loss

    p = check_distribution(pi_ref, "pi_ref")
    if p.ndim != 1:
        raise ValueError(f"pi_ref must have shape (n_responses,), got {p.shape}")
    n = p.shape[0]
    l = int(as_index_array(rejected, "rejected", n=n))
    beta = check_beta(beta)
    ref = torch.tensor(np.log(p), dtype=torch.float64)
    z = torch.nn.Parameter(ref.clone())
    opt = torch.optim.SGD([z], lr=lr)
    top = int(np.argmax(p))
    prefs = np.array([[0, top, l]])
    zero = torch.zeros(1, dtype=torch.float64)
    logp0 = np.log(p)[None]
    traj = [p.copy()]
    history = []
    for _ in range(steps):
        logp = torch.log_softmax(z, dim=-1)
        loss = preference_loss(zero, logp[l:l + 1], zero, ref[l:l + 1], beta).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            lp = torch.log_softmax(z, dim=-1).numpy().copy()
        traj.append(np.exp(lp))
        history.append(displacement_step(lp[None], logp0, prefs))
    return {"pi": np.stack(traj), "argmax": top, "history": history}


# ----------------------------------------------------------------------------------------------------------
# a population of pairs in an embedding model: CHES predicts the displacement


@dataclass
class EmbeddingPopulation:
    """One preference pair per prompt in a log-linear "summed hidden state" model.

    Each response y to prompt x is a token sequence; a linear recurrent encoder gives its hidden states
    h_1 = p_x, h_{k+1} = ρ·h_k + E[y_k] (T = |y| of them, one per predicted token, as in CHES), and the
    policy is π_θ(y|x) ∝ π_ref(y|x)·exp(⟨θ_x, Σ_k h_k(x, y)⟩). For this model :func:`logp_chosen_velocity`
    makes the link
    exact: under plain gradient descent (one θ_x per prompt) the initial rate of log π(y_w) is
    −β·σ(0)·lr·(CHES + ⟨φ̄, φ_w − φ_l⟩); with Adam it is not.

    Attributes
    ----------
    pi_ref : (n_pairs, n_responses); features : (n_pairs, n_responses, d) summed hidden states φ(x, y);
    preferences : (n_pairs, 3) rows (x, 0, 1): response 0 is chosen, 1 rejected;
    hidden_chosen, hidden_rejected : lists of (T, d) arrays; similarity : (n_pairs,) how alike y_w and y_l
    were drawn (the fraction of y_w's tokens kept in y_l).
    """

    pi_ref: np.ndarray
    features: np.ndarray
    preferences: np.ndarray
    hidden_chosen: list
    hidden_rejected: list
    similarity: np.ndarray

    @property
    def n_pairs(self) -> int:
        return int(self.preferences.shape[0])

    def ches(self, length_normalized: bool = False) -> np.ndarray:
        """(n_pairs,) CHES of each pair."""
        return ches_scores(self.hidden_chosen, self.hidden_rejected, length_normalized=length_normalized)

    def problem(self, *, shared: bool = True, keep=None) -> DisplacementProblem:
        """The pairs as a :class:`DisplacementProblem`.

        ``shared=True``: one θ for all prompts (pairs interact through it). ``shared=False``: block features
        e_x ⊗ φ(x, y), one θ_x per prompt, so one run trains every pair on its own (exactly as separate
        runs would, with Adam, or with SGD at step size lr·m since fit_dpo's loss is a mean over the m pairs).
        ``keep``: boolean mask or indices of the pairs to keep.
        """
        idx = np.arange(self.n_pairs) if keep is None else np.flatnonzero(
            np.asarray(keep)) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        prefs = self.preferences[idx]
        if shared:
            return DisplacementProblem(self.pi_ref, prefs, self.features,
                                       note="embedding population, shared θ")
        P, R, d = self.features.shape
        block = np.zeros((P, R, P * d))
        for x in range(P):
            block[x, :, x * d:(x + 1) * d] = self.features[x]
        return DisplacementProblem(self.pi_ref, prefs, block, note="embedding population, one θ per prompt")


def _encode(tokens, prompt, E, rho):
    """(T, d) hidden states of a response: h_1 = prompt, h_{k+1} = ρ·h_k + E[y_k]."""
    hs = [prompt]
    for t in tokens[:-1]:
        hs.append(rho * hs[-1] + E[t])
    return np.stack(hs)


def embedding_population(n_pairs: int = 80, n_responses: int = 32, d: int = 8, vocab: int = 16,
                         max_len: int = 4, rho: float = 0.5, prompt_scale: float = 0.5,
                         extend_prob: float = 0.5, seed: int = 0) -> EmbeddingPopulation:
    """Draw an :class:`EmbeddingPopulation`.

    Per prompt: p_x ~ N(0, prompt_scale²·I/d); y_w has a uniform length in 1..max_len and uniform tokens. With
    probability ``extend_prob`` y_l is y_w followed by 1..max_len random tokens (a longer answer that
    starts the same way); otherwise y_l keeps each token of y_w with probability s ~ U(0, 1) (and its length
    with probability s).
    So the pairs range from near-duplicates (high CHES) to unrelated responses. The other n_responses − 2
    responses are random; log π_ref ~ N(0, 0.5²) normalised; token embeddings E ~ N(0, I/d).
    """
    if n_pairs < 1 or n_responses < 3 or d < 1 or vocab < 2 or max_len < 1:
        raise ValueError("need n_pairs ≥ 1, n_responses ≥ 3, d ≥ 1, vocab ≥ 2, max_len ≥ 1")
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(vocab, d)) / np.sqrt(d)
    feats = np.zeros((n_pairs, n_responses, d))
    hw_list, hl_list, sims = [], [], np.zeros(n_pairs)
    for x in range(n_pairs):
        prompt = prompt_scale * rng.normal(size=d) / np.sqrt(d)
        s = rng.uniform()
        yw = rng.integers(vocab, size=rng.integers(1, max_len + 1))
        if rng.uniform() < extend_prob:
            yl = np.concatenate([yw, rng.integers(vocab, size=rng.integers(1, max_len + 1))])
            s = len(yw) / len(yl)
        else:
            Tl = len(yw) if rng.uniform() < s else int(rng.integers(1, max_len + 1))
            yl = np.array([yw[k] if (k < len(yw) and rng.uniform() < s) else rng.integers(vocab)
                           for k in range(Tl)])
            if len(yl) == len(yw) and np.array_equal(yl, yw):  # the two responses must differ
                yl[-1] = (yl[-1] + 1 + rng.integers(vocab - 1)) % vocab
        sims[x] = s
        others = [rng.integers(vocab, size=rng.integers(1, max_len + 1)) for _ in range(n_responses - 2)]
        for r, y in enumerate([yw, yl, *others]):
            h = _encode(y, prompt, E, rho)  # (T, d)
            feats[x, r] = h.sum(axis=0)
            if r == 0:
                hw_list.append(h)
            elif r == 1:
                hl_list.append(h)
    pi_ref = _softmax_rows(0.5 * rng.normal(size=(n_pairs, n_responses)))
    prefs = np.stack([np.arange(n_pairs), np.zeros(n_pairs, dtype=np.int64),
                      np.ones(n_pairs, dtype=np.int64)], 1)
    return EmbeddingPopulation(pi_ref, feats, prefs, hw_list, hl_list, sims)


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
                           seed: int = 0) -> dict:
    """Filter the data by CHES and retrain with one shared θ [razin2024, §5: filter, then train].

    Three runs of :func:`train_pairs` on ``population.problem(shared=True)``: all pairs; all but the
    ``fraction`` highest-CHES pairs; all but a random set of the same size (drawn with ``seed``, the control).
    The displacement of a run is D = Σ max(drop, 0) over the pairs it trained on (drop = log π_start(y_w) −
    log π_end(y_w)).

    Returns
    -------
    dict with
        ``removed_share``: 1 − D(filtered)/D(all), the share of the displacement that filtering removes;
        ``random_removed_share``: the same for the random removal;
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
    keep_random = np.ones(n, bool)
    keep_random[np.random.default_rng(seed).choice(n, size=k, replace=False)] = False
    kw = dict(steps=steps, lr=lr, optimizer=optimizer, record_every=steps)
    full = displacement_drops(train_pairs(population.problem(shared=True), beta, **kw))
    filt = np.full(n, np.nan)
    filt[keep] = displacement_drops(train_pairs(population.problem(shared=True, keep=keep), beta, **kw))
    rand = displacement_drops(train_pairs(population.problem(shared=True, keep=keep_random), beta, **kw))
    d_full = _positive_total(full)
    return {
        "removed_share": 1.0 - _positive_total(filt[keep]) / d_full if d_full > 0 else 0.0,
        "random_removed_share": 1.0 - _positive_total(rand) / d_full if d_full > 0 else 0.0,
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
    margin; the policy starts at π_ref) and ``accuracy`` (fraction of pairs with h > 0).
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
    and on the kept (lowest-CHES) pairs (keys prefixed ``kept/``), plus ``method``.
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
        row = {"method": name, **run_summary(run, population.preferences)}
        row.update({f"kept/{key}": v for key, v in run_summary(run, kept_prefs).items()})
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


def measure_tabular_chain(*, steps: int = 100, lr: float = 0.05, beta: float = 0.1) -> dict:
    """Case 2. ``dlogp_b``: change of log π(b) where b is chosen in (b, c) and rejected in (a, b)."""
    run = train_displacement(tabular_chain_problem(), beta, steps=steps, lr=lr)
    return {"dlogp_b": float(run.logp[-1, 0, 1] - run.logp[0, 0, 1]), "run": run}


def measure_unconstrained_features(*, steps: int = 100, lr: float = 5.0, beta: float = 0.1, seed: int = 0,
                                   check_lr: float = 1e-4) -> dict:
    """Case 3, trained by plain gradient descent (``fit_dpo(..., optimizer="sgd")``).

    ``rate``: first-order rate of log π(y_w) at π_ref (:func:`logp_chosen_velocity`; negative by the choice
    of the pair); ``first_step_error``: relative error of the first-order prediction
    Δ log π(y_w) ≈ check_lr·β·σ(0)·rate against one measured SGD step of size ``check_lr``;
    ``dlogp_chosen``: change of log π(y_w) over ``steps`` steps of size ``lr``; ``top_gainer``: the response
    that gained most."""
    prob = unconstrained_features_problem(seed=seed)
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
            "top_gainer": int(np.argmax(gain)), "run": run}


def measure_yes_no_never(*, steps: int = 150, lr: float = 0.05, beta: float = 0.1) -> dict:
    """Case 4, trained with Adam (fit_dpo's default). ``dlogp_no``: change of log π("No");
    ``p_yes_start``, ``p_yes_end``: π("Yes") before and after;
    ``top_gainer``: name of the response that gained most."""
    prob = yes_no_never_problem()
    run = train_displacement(prob, beta, steps=steps, lr=lr)
    p0, p1 = np.exp(run.logp[0, 0]), np.exp(run.logp[-1, 0])
    yes, no = prob.names.index("Yes"), prob.names.index("No")
    return {"dlogp_no": float(np.log(p1[no]) - np.log(p0[no])), "p_yes_start": float(p0[yes]),
            "p_yes_end": float(p1[yes]), "top_gainer": prob.names[int(np.argmax(p1 - p0))], "run": run}


PEAKY = np.array([0.85, 0.08, 0.05, 0.015, 0.005])
FLAT = np.array([0.26, 0.24, 0.22, 0.2, 0.08])


def measure_squeeze(*, steps: int = 30, lr: float = 0.5) -> dict:
    """Case 5, on a peaky π (argmax 0.85, y_l = the least likely, 0.005) and a flat one (same y_l index).

    ``first_order_error``: max |:func:`squeeze_first_order` − (one step of size 1e-6)/1e-6|;
    ``peaky_argmax_share``, ``flat_argmax_share``: the argmax's share of the total probability gained after
    ``steps`` negative-gradient steps; ``peaky_n_gainers``, ``flat_n_gainers``: how many responses gained."""
    eta, l = 1e-6, len(PEAKY) - 1
    z = torch.tensor(np.log(PEAKY), requires_grad=True)
    torch.log_softmax(z, -1)[l].backward()
    stepped = torch.log_softmax((z - eta * z.grad).detach(), -1).numpy()
    err = float(np.max(np.abs(squeeze_first_order(PEAKY, l) - (stepped - np.log(PEAKY)) / eta)))
    out = {"first_order_error": err}
    for name, pi in (("peaky", PEAKY), ("flat", FLAT)):
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
    plain gradient descent, a short run."""
    pop = embedding_population(n_pairs, seed=seed)
    return ches_filter_experiment(pop, beta=beta, fraction=fraction, steps=steps, lr=lr, optimizer="sgd",
                                  seed=seed)


def measure_mitigations(*, n_pairs: int = 80, steps: int = 200, lr: float = 0.05, beta: float = 0.1,
                        large_beta: float = 1.0, sft_coef: float = 1.0, ches_fraction: float = 0.25,
                        seed: int = 0) -> dict:
    """:func:`mitigation_table` on :func:`embedding_population` (``n_pairs``, ``seed``), shared θ, Adam.

    Adam, because the rows' losses have very different scales (IPO's squared loss, the NLL term of RPO):
    plain SGD at one step size is no fair comparison (IPO at τ = 0.1 diverges where DPO crawls).

    Returns ``rows`` (the table), ``by_method`` (method → row), the improvements over plain DPO of the mean
    Δ log π(y_w) on all pairs, ``rpo_gain``, ``ches_gain``, ``ipo_gain``, ``large_beta_gain``, and on the
    kept (lowest-CHES) pairs, the same keys with ``_kept`` (positive = less displacement); and
    ``rpo_margin_ratio``, RPO's mean margin h over plain DPO's (all pairs).
    """
    pop = embedding_population(n_pairs, seed=seed)
    rows = mitigation_table(pop, beta=beta, large_beta=large_beta, sft_coef=sft_coef,
                            ches_fraction=ches_fraction, steps=steps, lr=lr, optimizer="adam")
    by = {r["method"]: r for r in rows}
    names = {"rpo_gain": "DPO + SFT (RPO)", "ches_gain": "CHES filter", "ipo_gain": "IPO",
             "large_beta_gain": "DPO, large beta"}
    out = {"rows": rows, "by_method": by}
    for key, method in names.items():
        out[key] = by[method]["dlogp_chosen"] - by["DPO"]["dlogp_chosen"]
        out[f"{key}_kept"] = by[method]["kept/dlogp_chosen"] - by["DPO"]["kept/dlogp_chosen"]
    out["rpo_margin_ratio"] = by["DPO + SFT (RPO)"]["logratio_margin"] / by["DPO"]["logratio_margin"]
    return out
