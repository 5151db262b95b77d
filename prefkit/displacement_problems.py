"""The problems of chapter 6 (likelihood displacement): preference data on enumerable responses where DPO's
effect on π(y_w) can be computed exactly.

Razin, Malladi et al. 2024 [razin2024]. The cases:

1. tabular softmax, one pair per prompt: π(y_w) can only rise (:func:`tabular_one_pair_problem`);
2. tabular, a response chosen in one pair and rejected in another: π(y_w) can fall
   (:func:`tabular_chain_problem`);
3. shared parameters, the single-token unconstrained-features model: logits = W h with h trained and W fixed
   (:func:`unconstrained_features_problem`);
4. the catastrophic case: "No" ≻ "Never" raises "Yes" (:func:`yes_no_never_problem`);
5. a population of pairs in a "summed hidden state" model, on which CHES predicts the displacement
   (:func:`embedding_population`).

Train them with :func:`prefkit.displacement_training.train_displacement`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import (
    as_float_array,
    check_distribution,
    check_int,
    check_probability,
    check_real,
    check_seed,
    finite_result,
)
from .ches import ches_per_pair
from .displacement_theory import logp_chosen_velocity

__all__ = [
    "DisplacementProblem",
    "tabular_one_pair_problem",
    "tabular_chain_problem",
    "unconstrained_features_problem",
    "YES_NO_NEVER_TOKENS",
    "yes_no_never_problem",
    "EmbeddingPopulation",
    "embedding_population",
]


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

    def __post_init__(self):
        from .optima import _check_preferences

        self.pi_ref = check_distribution(self.pi_ref, "pi_ref")
        self.preferences = _check_preferences(self.preferences, self.pi_ref)
        if self.features is not None:
            self.features = as_float_array(self.features, "features", ndim=3)
            if self.features.shape[:2] != self.pi_ref.shape:
                raise ValueError(f"shape mismatch: features has shape {self.features.shape}; expected "
                                 f"{self.pi_ref.shape + ('d',)}")
        if self.names is not None:
            self.names = [str(v) for v in _names_list(self.names)]
            if len(self.names) != self.pi_ref.shape[1]:
                raise ValueError(f"names has {len(self.names)} entries for {self.pi_ref.shape[1]} responses")


def _names_list(names):
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise ValueError(f"names must be a list of response names, got {names!r}")
    return list(names)


def tabular_one_pair_problem(n_prompts: int = 4, n_responses: int = 6, seed: int = 0) -> DisplacementProblem:
    """Tabular policy, one preference pair per prompt, random π_ref: case 1, where π(y_w) can only rise."""
    n_prompts = check_int(n_prompts, "n_prompts", 1)
    n_responses = check_int(n_responses, "n_responses", 2)
    rng = check_seed(seed)
    logits = rng.normal(size=(n_prompts, n_responses))
    pi_ref = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    prefs = np.array([[x, *rng.choice(n_responses, size=2, replace=False)] for x in range(n_prompts)])
    return DisplacementProblem(pi_ref, prefs, note="tabular, one pair per prompt")


def tabular_chain_problem(seed: int | None = None, ref_scale: float = 0.5) -> DisplacementProblem:
    """Tabular policy on one prompt with three responses and the chain a ≻ b, b ≻ c: case 2.

    b is chosen in one pair and rejected in the other. At the first step (π uniform, both pairs weighted
    σ(0)) the logit gradients sum to e_a − e_b + e_b − e_c = e_a − e_c, so z_b does not move at first; later
    the two weights σ(−β·h) differ and z_b moves a little too. a's rising share squeezes b: π(b) falls
    although b is the chosen response of the pair (b, c).

    Parameters
    ----------
    seed : None for a uniform π_ref; otherwise π_ref = softmax(ref_scale·g), g ~ N(0, I), drawn with ``seed``.
    """
    if seed is None:
        pi_ref = np.full((1, 3), 1.0 / 3.0)
    else:
        ref_scale = check_real(ref_scale, "ref_scale", lo=0.0)
        pi_ref = _softmax_rows(ref_scale * check_seed(seed).normal(size=(1, 3)))
        if np.any(pi_ref == 0):
            raise ValueError(f"ref_scale={ref_scale!r} is too large: pi_ref underflows to 0 on a response")
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
    n_tokens = check_int(n_tokens, "n_tokens", 2)
    d = check_int(d, "d", 1)
    rng = check_seed(seed)
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


def yes_no_never_problem(jitter: float = 0.0, seed: int | None = None) -> DisplacementProblem:
    """The catastrophic case [razin2024, OLMo-1B: "No" ≻ "Never" raised P("Yes")], built by hand in d = 2.

    "No" and "Never" have nearly the same unembedding, so DPO moves h along W_No − W_Never, a direction almost
    orthogonal to both. "Yes" is placed along that direction, so the mass that leaves "Never" goes to
    "Yes", the response opposite in meaning, and π("No") falls with it.

    Parameters
    ----------
    jitter : standard deviation of Gaussian noise added to every unembedding (0: the hand-built W).
    seed : seeds that noise: an integer or a numpy Generator; None means 0 (reproducible).
    """
    jitter = check_real(jitter, "jitter", lo=0.0)
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
    if jitter:
        W = W + jitter * check_seed(0 if seed is None else seed).normal(size=W.shape)
    h0 = np.array([1.5, 0.0])
    with np.errstate(over="ignore", invalid="ignore"):
        pi_ref = finite_result(_softmax_rows(W @ h0)[None], f"jitter={jitter!r} is too large: the logits overflow")
    if np.any(pi_ref == 0):
        raise ValueError(f"jitter={jitter!r} is too large: pi_ref underflows to 0 on a response")
    prefs = np.array([[0, 1, 2]])  # "No" ≻ "Never"
    return DisplacementProblem(pi_ref, prefs, features=W[None], names=list(YES_NO_NEVER_TOKENS),
                               note='"No" > "Never" in the unconstrained-features model')


@dataclass
class EmbeddingPopulation:
    """One preference pair per prompt in a log-linear "summed hidden state" model.

    Each response y to prompt x is a token sequence; a linear recurrent encoder gives its hidden states
    h_1 = p_x, h_{k+1} = ρ·h_k + E[y_k] (|y| + 1 of them, one per predicted token, as in CHES, the last
    predicting the end-of-sequence token that ends every response, as in a real LM's data), and the
    policy is π_θ(y|x) ∝ π_ref(y|x)·exp(⟨θ_x, Σ_k h_k(x, y)⟩). For this model :func:`logp_chosen_velocity`
    makes the link
    exact: under plain gradient descent (one θ_x per prompt) the initial rate of log π(y_w) is
    −β·σ(0)·lr·(CHES + ⟨φ̄, φ_w − φ_l⟩); with Adam it is not.

    Attributes
    ----------
    pi_ref : (n_pairs, n_responses); features : (n_pairs, n_responses, d) summed hidden states φ(x, y);
    preferences : (n_pairs, 3) rows (x, 0, 1): response 0 is chosen, 1 rejected;
    hidden_chosen, hidden_rejected : lists of (|y| + 1, d) arrays; similarity : (n_pairs,) how alike y_w and y_l
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
        return ches_per_pair(self.hidden_chosen, self.hidden_rejected, length_normalized=length_normalized)

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
    """(T + 1, d) hidden states of a response of T tokens followed by end-of-sequence: h_1 = prompt,
    h_{k+1} = ρ·h_k + E[y_k]. State k predicts token k, and the last, h_{T+1}, predicts the end of sequence: it is
    the only one that reads y_T (without it, two responses that differ only in their last token, and any two
    one-token responses, would have the same features and no θ could tell them apart)."""
    hs = [prompt]
    for t in tokens:
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
    n_pairs, n_responses = check_int(n_pairs, "n_pairs", 1), check_int(n_responses, "n_responses", 3)
    d, vocab, max_len = check_int(d, "d", 1), check_int(vocab, "vocab", 2), check_int(max_len, "max_len", 1)
    rho = check_real(rho, "rho", lo=-1.0, hi=1.0 + 1e-12)
    prompt_scale = check_real(prompt_scale, "prompt_scale", lo=0.0)
    extend_prob = check_probability(extend_prob, "extend_prob")
    rng = check_seed(seed)
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
            h = _encode(y, prompt, E, rho)  # (T + 1, d)
            feats[x, r] = h.sum(axis=0)
            if r == 0:
                hw_list.append(h)
            elif r == 1:
                hl_list.append(h)
    pi_ref = _softmax_rows(0.5 * rng.normal(size=(n_pairs, n_responses)))
    prefs = np.stack([np.arange(n_pairs), np.zeros(n_pairs, dtype=np.int64),
                      np.ones(n_pairs, dtype=np.int64)], 1)
    return EmbeddingPopulation(pi_ref, feats, prefs, hw_list, hl_list, sims)
