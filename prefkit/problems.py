"""Toy preference problems small enough that every quantity has an exact answer (chapters 2–5).

A :class:`Problem` holds ``n_prompts`` prompts x, ``n_responses`` discrete responses y, a reference policy
π_ref (tabular, optionally with features φ(x, y) for log-linear policies and reward models), and a true reward
r*(x, y). It samples preference data under Bradley-Terry on r* (chapter 1's
:func:`prefkit.bradley_terry.bt_probability`):

    P(y1 ≻ y2 | x) = σ(r*(x, y1) − r*(x, y2)).

Presets: :func:`three_response_toy`, :func:`random_problem`, :func:`tajwar_bandit` (Tajwar et al. 2024).

Preference data is an (m, 3) int array of (prompt, chosen, rejected) rows. It can be written to and read from
JSONL in TRL's shape, one pair per line: ``{"prompt": "x0", "chosen": "y2", "rejected": "y1"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import softmax

from ._validate import (
    as_float_array,
    as_index_array,
    check_distribution,
    check_int,
    check_path,
    check_real,
    check_seed,
    read_text_file,
    to_numpy,
)
from .bradley_terry import bt_probability
from .closed_form import optimal_policy

__all__ = [
    "Problem",
    "three_response_toy",
    "random_problem",
    "tajwar_bandit",
    "tanh_cauchy_bins",
    "write_preferences_jsonl",
    "read_preferences_jsonl",
    "as_distribution",
]


def as_distribution(policy, name: str = "policy") -> np.ndarray:
    """A policy as a float64 (n_prompts, n_responses) array of probabilities.

    ``policy`` may be an array of probabilities or a module from :mod:`prefkit.policies` (anything with a
    ``log_probs()`` method).
    """
    if hasattr(policy, "log_probs"):
        import torch

        with torch.no_grad():
            policy = policy.log_probs().exp().double().cpu().numpy()
    return check_distribution(policy, name)


def _pair_matrix(p: np.ndarray) -> np.ndarray:
    """q(i, j) ∝ p(i)·p(j) for i ≠ j: two distinct responses drawn from p. Shape (n, n), sums to 1."""
    q = np.outer(p, p)
    np.fill_diagonal(q, 0.0)
    s = q.sum()
    return q / s


@dataclass
class Problem:
    """A bandit preference problem: prompts x, responses y, π_ref(y|x), r*(x, y) and optional features φ(x,
    y).

    Attributes
    ----------
    pi_ref : (n_prompts, n_responses) array
        Each row a distribution. Responses with π_ref = 0 are never sampled.
    reward : (n_prompts, n_responses) array, the true reward r*.
    features : (n_prompts, n_responses, d) array or None
        φ(x, y) for log-linear policies and linear reward models.
    name : str
    """

    pi_ref: np.ndarray
    reward: np.ndarray
    features: np.ndarray | None = None
    name: str = "problem"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pi_ref = check_distribution(self.pi_ref, "pi_ref")
        if self.pi_ref.ndim != 2:
            raise ValueError(f"pi_ref must have shape (n_prompts, n_responses), got {self.pi_ref.shape}")
        self.reward = as_float_array(self.reward, "reward")
        if self.reward.shape != self.pi_ref.shape:
            raise ValueError(f"shape mismatch: reward has shape {self.reward.shape} but pi_ref has shape "
                             f"{self.pi_ref.shape}")
        if self.features is not None:
            self.features = as_float_array(self.features, "features", ndim=3)
            if self.features.shape[:2] != self.pi_ref.shape:
                raise ValueError(f"shape mismatch: features has shape {self.features.shape}; expected "
                                 f"{self.pi_ref.shape + ('d',)}")

    @property
    def n_prompts(self) -> int:
        return self.pi_ref.shape[0]

    @property
    def n_responses(self) -> int:
        return self.pi_ref.shape[1]

    def optimal_policy(self, beta) -> np.ndarray:
        """π* of the true reward at ``beta``: π_ref·exp(r*/β)/Z (see :func:`prefkit.optimal_policy`)."""
        return optimal_policy(self.pi_ref, self.reward, beta)

    def sample_preferences(self, n: int, rng=0, policy=None) -> np.ndarray:
        """Draw ``n`` labelled pairs: an (n, 3) int array of (prompt, chosen, rejected).

        Each row: x uniform over prompts; two *distinct* responses y1 ≠ y2 drawn from ``policy`` (default
        π_ref), i.e. the ordered pair (y1, y2) with probability ∝ π(y1|x)·π(y2|x), i ≠ j; then y1 is chosen
        with probability σ(r*(x, y1) − r*(x, y2)) (Bradley-Terry on r*), else y2.

        Parameters
        ----------
        n : int ≥ 0
        rng : numpy Generator or an integer seed (default 0: reproducible)
        policy : (n_prompts, n_responses) array or a :mod:`prefkit.policies` module, optional

        Raises
        ------
        ValueError
            naming ``n``, or ``policy`` when it is malformed or has fewer than two responses in some row's
            support.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        rng = check_seed(rng, "rng")
        pi = self.pi_ref if policy is None else as_distribution(policy)
        if pi.shape != self.pi_ref.shape:
            raise ValueError(f"shape mismatch: policy has shape {pi.shape} but pi_ref has shape "
                             f"{self.pi_ref.shape}")
        if np.any((pi > 0).sum(axis=-1) < 2):
            raise ValueError("policy must put mass on at least two responses for every prompt")
        out = np.zeros((int(n), 3), dtype=np.int64)
        x = rng.integers(0, self.n_prompts, size=int(n))
        out[:, 0] = x
        m = self.n_responses
        for xi in np.unique(x):
            rows = np.flatnonzero(x == xi)
            q = _pair_matrix(pi[xi]).ravel()
            flat = rng.choice(m * m, size=len(rows), p=q)
            y1, y2 = flat // m, flat % m
            p_first = bt_probability(self.reward[xi, y1], self.reward[xi, y2])
            first_wins = rng.random(len(rows)) < p_first
            out[rows, 1] = np.where(first_wins, y1, y2)
            out[rows, 2] = np.where(first_wins, y2, y1)
        return out

    def preference_probabilities(self, pairs="all") -> tuple[np.ndarray, np.ndarray]:
        """Exact (population) Bradley-Terry preference data on r*, as (prefs, weights).

        ``prefs`` is a (K, 3) int array listing, for every prompt x and every ordered pair (i, j) of distinct
        responses on π_ref's support, the row (x, i, j) ("i beats j"); ``weights`` (K,) is its probability
        (1/n_prompts)·q_x({i, j})·σ(r*(x, i) − r*(x, j)). The weights sum to 1, so Σ_k w_k·loss_k is the
        expected loss over the data distribution. Rows whose weight underflows to 0 are dropped.

        Parameters
        ----------
        pairs : "all", "pi_ref", or a policy (array / :mod:`prefkit.policies` module)
            How the unordered pair {i, j} is drawn: ``"all"`` uniform over the pairs on π_ref's support (every
            pair observed); ``"pi_ref"`` or a policy π: the distribution of :meth:`sample_preferences`,
            q({i, j}) ∝ 2·π(i)·π(j).
        """
        if isinstance(pairs, str):
            if pairs == "all":
                pi = (self.pi_ref > 0).astype(np.float64)
                pi = pi / pi.sum(axis=-1, keepdims=True)
            elif pairs == "pi_ref":
                pi = self.pi_ref
            else:
                raise ValueError(f"pairs must be 'all', 'pi_ref' or a policy, got {pairs!r}")
        else:
            pi = as_distribution(pairs, "pairs")
            if pi.shape != self.pi_ref.shape:
                raise ValueError(f"shape mismatch: pairs has shape {pi.shape}; expected {self.pi_ref.shape}")
        if np.any(((pi > 0) & (self.pi_ref > 0)).sum(axis=-1) < 2):
            raise ValueError("pairs must put mass on at least two responses of pi_ref's support for every "
                             "prompt")
        rows, weights = [], []
        for x in range(self.n_prompts):
            p = np.where(self.pi_ref[x] > 0, pi[x], 0.0)
            q = _pair_matrix(p)  # ordered (i, j); q(i, j) + q(j, i) = q({i, j})
            i, j = np.nonzero(q)
            w = (q[i, j] + q[j, i]) * bt_probability(self.reward[x, i], self.reward[x, j]) / self.n_prompts
            keep = w > 0
            rows.append(np.stack([np.full(keep.sum(), x), i[keep], j[keep]], axis=1))
            weights.append(w[keep])
        return np.concatenate(rows).astype(np.int64), np.concatenate(weights)


def three_response_toy(reward=(1.0, 0.0, -1.0), pi_ref=None) -> Problem:
    """One prompt, three responses y_a ≻ y_b ≻ y_c: r* = (1, 0, −1), uniform π_ref, one-hot features.

    The toy of Azar et al. 2023, §5 (there with deterministic preferences) and of chapter 2's figures.
    """
    r = as_float_array(reward, "reward", ndim=1).reshape(1, -1)
    if pi_ref is None:
        p = np.full_like(r, 1.0 / r.shape[1])
    else:
        p = check_distribution(pi_ref, "pi_ref").reshape(1, -1)
    return Problem(p, r, features=np.eye(r.shape[1])[None], name="three_response_toy")


def random_problem(n_prompts: int = 4, n_responses: int = 6, seed: int = 0, *, d: int = 3,
                   reward_scale: float = 1.0, ref_scale: float = 1.0, support: float = 1.0,
                   realizable: bool = True, ref_from_features: bool = False) -> Problem:
    """A random instance: Gaussian features φ ∈ R^d, π_ref = softmax(ref_scale·g), r* linear in φ.

    Parameters
    ----------
    n_prompts : int ≥ 1; n_responses : int ≥ 2
    seed : an integer seed of ``np.random.default_rng``, or a Generator
    d : feature dimension, int ≥ 1
    reward_scale : r*(x, y) = reward_scale·⟨w*, φ(x, y)⟩ with w* ~ N(0, I/d); finite (0 gives r* ≡ 0)
    ref_scale : spread of π_ref's logits, finite ≥ 0 (0 gives uniform π_ref)
    support : fraction of responses per prompt with π_ref > 0 (at least 2 kept); the rest get π_ref = 0
    realizable : if False, r* gets independent N(0, reward_scale²) noise per (x, y), so no linear model in φ
        (and no log-linear policy) can represent it exactly.
    ref_from_features : if True, π_ref is itself log-linear in φ: π_ref(y|x) ∝ exp(ref_scale·⟨θ_ref, φ(x, y)⟩)
        with θ_ref ~ N(0, I/d) (stored in ``info["theta_ref"]``). Then π* = π_ref·exp(r*/β)/Z is log-linear in
        φ too (parameter θ_ref·ref_scale + w*·reward_scale/β when realizable), so a log-linear policy started
        at π_ref can represent it exactly. Default False: π_ref's logits are independent Gaussians (a
        log-linear policy then parametrises log π_ref + ⟨θ, φ⟩).
    """
    n_prompts = check_int(n_prompts, "n_prompts", 1)
    n_responses = check_int(n_responses, "n_responses", 2)
    d = check_int(d, "d", 1)
    reward_scale = check_real(reward_scale, "reward_scale")
    ref_scale = check_real(ref_scale, "ref_scale", lo=0.0)
    support = check_real(support, "support")
    if not 0 < support <= 1:
        raise ValueError(f"support must be in (0, 1], got {support!r}")
    rng = check_seed(seed)
    phi = rng.normal(size=(n_prompts, n_responses, d))
    w = rng.normal(size=d) / np.sqrt(d)
    reward = reward_scale * phi @ w
    if not realizable:
        reward = reward + reward_scale * rng.normal(size=reward.shape)
    info = {"w_star": w}
    if ref_from_features:
        theta_ref = rng.normal(size=d) / np.sqrt(d)
        logits = ref_scale * phi @ theta_ref
        info["theta_ref"] = theta_ref
    else:
        logits = ref_scale * rng.normal(size=(n_prompts, n_responses))
    if support < 1:
        k = max(2, int(round(support * n_responses)))
        for x in range(n_prompts):
            off = rng.permutation(n_responses)[k:]
            logits[x, off] = -np.inf
    pi_ref = softmax(logits, axis=-1)
    name = f"random_problem({n_prompts}, {n_responses}, seed={seed})"
    return Problem(pi_ref, reward, features=phi, name=name, info=info)


def tanh_cauchy_bins(n_actions: int = 100, mode: int = 20, scale: float = 0.1) -> np.ndarray:
    """A binned tanh-Cauchy distribution over actions 0..n_actions−1 (Tajwar et al. 2024's π_ref), exactly.

    u = tanh(c) with c ~ Cauchy(loc, scale) lies in (−1, 1). Split (−1, 1) into ``n_actions`` equal bins;
    action a is bin [−1 + 2a/n, −1 + 2(a+1)/n], and π_ref(a) is the exact probability of that bin,
    F(atanh(u_{a+1})) − F(atanh(u_a)) with the Cauchy CDF F(c) = 1/2 + arctan((c − loc)/scale)/π (no
    sampling). loc = atanh(−1 + 2(mode + 1/2)/n) puts the Cauchy centre at the centre of bin ``mode``. With
    the defaults the mode is action 20 (π_ref ≈ 0.097) and π_ref(70) ≈ 6e-4. The Cauchy's heavy tails leave
    visible mass in the two end bins (≈ 0.020 at action 0 and 0.011 at action 99). Tajwar et al. histogram
    samples of a tanh-Cauchy instead; this is the exact limit of that histogram.
    """
    n_actions = check_int(n_actions, "n_actions", 2)
    mode = check_int(mode, "mode", 0)
    if mode >= n_actions:
        raise ValueError(f"mode must be in [0, n_actions), got {mode!r}")
    scale = check_real(scale, "scale", lo=0.0, lo_open=True)
    edges = np.linspace(-1.0, 1.0, n_actions + 1)
    loc = np.arctanh(-1.0 + 2.0 * (mode + 0.5) / n_actions)
    c = np.arctanh(edges[1:-1])
    cdf = np.concatenate([[0.0], 0.5 + np.arctan((c - loc) / scale) / np.pi, [1.0]])
    p = np.diff(cdf)
    return p / p.sum()


def tajwar_bandit(n_actions: int = 100, *, mode: int = 20, mu: float = 70.0, width: float = 10.0,
                  scale: float = 0.1) -> Problem:
    """The 100-action bandit of Tajwar et al. 2024 ("Preference Fine-Tuning of LLMs Should Leverage
    Suboptimal, On-Policy Data", bandit experiments): the reward peak sits where π_ref puts little mass.

    One prompt; actions a = 0..99; π_ref = :func:`tanh_cauchy_bins` (mode at action 20); reward
    r*(a) = exp(−((a − μ)/10)²) with μ = 70 (their ``reward_4``). Features (for log-linear policies and linear
    reward models): 10 Gaussian bumps φ_k(a) = exp(−((a − 10k)/width)²), k = 0..9, so r* = φ_7 is realizable.
    """
    n_actions = check_int(n_actions, "n_actions", 2)
    mu = check_real(mu, "mu")
    width = check_real(width, "width", lo=0.0, lo_open=True)
    a = np.arange(n_actions, dtype=np.float64)
    pi_ref = tanh_cauchy_bins(n_actions, mode, scale)[None]
    centres = np.arange(0, n_actions, 10, dtype=np.float64)
    with np.errstate(over="ignore"):  # a tiny width: exp(−inf) = 0, exactly the limit
        reward = np.exp(-(((a - mu) / width) ** 2))[None]
        phi = np.exp(-(((a[:, None] - centres[None, :]) / width) ** 2))[None]
    return Problem(pi_ref, reward, features=phi, name="tajwar_bandit",
                   info={"mode": mode, "mu": mu, "width": width, "scale": scale})


# ---------------------------------------------------------------- JSONL in TRL's prompt/chosen/rejected shape


def _names(names, arg):
    """Optional names: None, or a list of them (strings or numbers; written with str)."""
    if names is None:
        return None
    names = to_numpy(names)
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__") or not hasattr(names, "__getitem__"):
        raise ValueError(f"{arg} must be a list of names, got {names!r}")
    names = [str(v) for v in names]
    if len(set(names)) != len(names):
        raise ValueError(f"{arg} has a duplicated name")
    return names


def _name(prefix: str, i: int, names) -> str:
    return f"{prefix}{i}" if names is None else str(names[i])


def write_preferences_jsonl(path, preferences, *, prompt_names=None, response_names=None) -> Path:
    """Write (prompt, chosen, rejected) rows as JSONL in TRL's shape, one pair per line.

    Each line is ``{"prompt": "x<i>", "chosen": "y<j>", "rejected": "y<k>"}`` (or the given names:
    ``prompt_names[i]``, ``response_names[j]``), which TRL's ``DPOTrainer``/``RewardTrainer`` accept as a text
    preference dataset.
    """
    prefs = as_index_array(preferences, "preferences", ncols=3)
    prompt_names = _names(prompt_names, "prompt_names")
    response_names = _names(response_names, "response_names")
    for names, cols, arg in ((prompt_names, [0], "prompt_names"), (response_names, [1, 2], "response_names")):
        if names is not None and len(prefs) and int(prefs[:, cols].max()) >= len(names):
            raise ValueError(f"{arg} has {len(names)} names but preferences holds index {int(prefs[:, cols].max())}")
    path = check_path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a directory, not a file")
    lines = []
    for x, w, l in prefs.tolist():
        row = {"prompt": _name("x", x, prompt_names), "chosen": _name("y", w, response_names),
               "rejected": _name("y", l, response_names)}
        lines.append(json.dumps(row) + "\n")
    try:
        with path.open("w", encoding="utf-8") as f:
            f.writelines(lines)
    except OSError as exc:
        raise ValueError(f"path {path} cannot be written ({exc.strerror or exc})") from None
    return path


def _parse(value, prefix: str, names, where: str, key: str) -> int:
    if names is not None:
        lookup = {str(n): i for i, n in enumerate(names)}
        if str(value) in lookup:
            return lookup[str(value)]
        raise ValueError(f"{where}: {key} {value!r} is not a known name")
    if isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be {prefix}<index> or an integer, got {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.startswith(prefix) and value[len(prefix):].isdigit():
        return int(value[len(prefix):])
    raise ValueError(f"{where}: {key} must be '{prefix}<index>' or a non-negative integer, got {value!r}")


def read_preferences_jsonl(path, *, prompt_names=None, response_names=None, n_prompts=None,
                           n_responses=None) -> np.ndarray:
    """Read TRL-shaped JSONL (``prompt``/``chosen``/``rejected``) into an (m, 3) int array.

    Values are ``"x<i>"``/``"y<j>"`` strings, plain integers, or — given ``prompt_names``/``response_names`` —
    those names. Blank lines are skipped. With ``n_prompts``/``n_responses``, indices are range-checked.

    Raises
    ------
    ValueError
        naming the file: a missing file, a directory, bytes that are not UTF-8; "<file>:<line>: ..." (the
        physical line) for a line that is not a JSON object, lacks a key, holds an unknown value or an
        out-of-range index, or has chosen == rejected.
    """
    path = check_path(path)
    prompt_names = _names(prompt_names, "prompt_names")
    response_names = _names(response_names, "response_names")
    n_prompts = None if n_prompts is None else check_int(n_prompts, "n_prompts", 1)
    n_responses = None if n_responses is None else check_int(n_responses, "n_responses", 2)
    rows = []
    text = read_text_file(path, allow_empty=True)  # ValueError naming the file: missing, a directory, not UTF-8
    for lineno, line in enumerate(text.split("\n"), start=1):  # physical lines (CRLF: json skips the \r)
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object with prompt/chosen/rejected")
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in obj]
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
        x = _parse(obj["prompt"], "x", prompt_names, where, "prompt")
        w = _parse(obj["chosen"], "y", response_names, where, "chosen")
        l = _parse(obj["rejected"], "y", response_names, where, "rejected")
        if n_prompts is not None and x >= n_prompts:
            raise ValueError(f"{where}: prompt index {x} out of range for {n_prompts} prompts")
        for key, v in (("chosen", w), ("rejected", l)):
            if n_responses is not None and v >= n_responses:
                raise ValueError(f"{where}: {key} index {v} out of range for {n_responses} responses")
        if w == l:
            raise ValueError(f"{where}: chosen and rejected are the same response")
        rows.append((x, w, l))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)
