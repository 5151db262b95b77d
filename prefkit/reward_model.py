"""Reward models fitted by the Bradley-Terry loss (chapter 3, step 1 of classical RLHF).

A reward model r_φ(x, y) is fitted to preference pairs (x, y_w, y_l) by minimising

    ℓ = −log σ(r_φ(x, y_w) − r_φ(x, y_l) − m) + c·(r_φ(x, y_w) + r_φ(x, y_l))²

(Ouyang et al. 2022, Eq. 1; the optional margin m is Llama 2's (Touvron et al. 2023, Eq. 2); the centering
term with coefficient c is Eisenstein et al. 2023's, as in TRL's
``RewardTrainer(center_rewards_coefficient=c)``). Bradley-Terry only sees reward differences within a prompt,
so r_φ is identified at best up to a per-prompt shift f(x)
(:func:`prefkit.closed_form.reward_gap_up_to_shift` measures the distance modulo that shift).

Three models: ``"tabular"`` (one free reward per (x, y)), ``"linear"`` (r = ⟨w, φ(x, y)⟩) and ``"mlp"`` (a
small torch MLP on φ(x, y), or on one-hot (x, y) without features).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import (
    as_float_array,
    as_index_array,
    check_distribution,
    check_int,
    check_real,
    check_tensor,
    check_torch_seed,
    check_weights,
    finite_result,
    normalize_weights,
)

__all__ = [
    "reward_loss",
    "RewardModelResult",
    "fit_reward_model",
    "preference_accuracy",
    "reward_recovery_error",
    "REWARD_MODELS",
]

REWARD_MODELS = ("tabular", "linear", "mlp")


def reward_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor, margin=None,
                center_coef: float = 0.0) -> torch.Tensor:
    """Per-pair Bradley-Terry reward-model loss, shape (B,).

    ℓ_i = −log σ(r_w,i − r_l,i − m_i) + c·(r_w,i + r_l,i)²

    Parameters
    ----------
    reward_chosen, reward_rejected : (B,) tensors r_φ(x, y_w), r_φ(x, y_l)
    margin : (B,) tensor or float, optional; m_i (default 0)
    center_coef : float ≥ 0; c

    Raises
    ------
    ValueError
        naming the argument: NaN/inf inputs, shape mismatch, negative ``center_coef``; also when the centering
        term overflows float range.

    Returns
    -------
    (B,) tensor of per-pair losses. Reduction: ``.mean()`` of it equals TRL's ``RewardTrainer`` loss exactly,
    −mean log σ(r_w − r_l − m) + c·mean((r_w + r_l)²); take a weighted mean for weighted data.

    References
    ----------
    Ouyang et al. 2022, Eq. 1; Touvron et al. 2023 (Llama 2), Eq. 2 (margin); Eisenstein et al. 2023
    (centering).
    """
    check_tensor(reward_chosen, "reward_chosen")
    check_tensor(reward_rejected, "reward_rejected")
    if reward_chosen.shape != reward_rejected.shape:
        raise ValueError(f"shape mismatch: reward_chosen has shape {tuple(reward_chosen.shape)} but "
                         f"reward_rejected has shape {tuple(reward_rejected.shape)}")
    c = check_real(center_coef, "center_coef", lo=0.0)
    diff = reward_chosen - reward_rejected
    if margin is not None:
        m = torch.as_tensor(as_float_array(margin, "margin"), dtype=diff.dtype)
        if m.ndim > 0 and m.shape != diff.shape:
            raise ValueError(f"shape mismatch: margin has shape {tuple(m.shape)} but rewards have shape "
                             f"{tuple(diff.shape)}")
        diff = diff - m
    loss = -torch.nn.functional.logsigmoid(diff)
    if c > 0:
        loss = loss + c * (reward_chosen + reward_rejected) ** 2
        if not torch.all(torch.isfinite(loss)):
            raise ValueError("reward_chosen + reward_rejected is too large: the centering term overflows")
    return loss


class _Tabular(torch.nn.Module):
    def __init__(self, n_prompts: int, n_responses: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(n_prompts, n_responses, dtype=torch.float64))

    def forward(self) -> torch.Tensor:  # (n_prompts, n_responses)
        return self.table


class _Linear(torch.nn.Module):
    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.register_buffer("features", features)  # (n_prompts, n_responses, d)
        self.w = torch.nn.Parameter(torch.zeros(features.shape[-1], dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return self.features @ self.w


class _MLP(torch.nn.Module):
    def __init__(self, inputs: torch.Tensor, hidden: int, generator: torch.Generator):
        super().__init__()
        self.register_buffer("inputs", inputs)  # (n_prompts, n_responses, d_in)
        d = inputs.shape[-1]
        self.l1 = torch.nn.Linear(d, hidden, dtype=torch.float64)
        self.l2 = torch.nn.Linear(hidden, hidden, dtype=torch.float64)
        self.out = torch.nn.Linear(hidden, 1, dtype=torch.float64)
        with torch.no_grad():
            for lin in (self.l1, self.l2, self.out):
                bound = 1.0 / np.sqrt(lin.in_features)
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.uniform_(-bound, bound, generator=generator)

    def forward(self) -> torch.Tensor:
        h = torch.tanh(self.l1(self.inputs))
        h = torch.tanh(self.l2(h))
        return self.out(h).squeeze(-1)


@dataclass
class RewardModelResult:
    """The output of :func:`fit_reward_model`.

    Attributes
    ----------
    reward : (n_prompts, n_responses) array, r_φ(x, y) for every prompt and response
    model : the fitted torch module (its ``forward()`` returns the reward table)
    history : list of per-step dicts ``{"step", "loss"}`` (the training objective, penalties included)
    accuracy : weighted fraction of training pairs with r_φ(y_w) > r_φ(y_l)
    """

    reward: np.ndarray
    model: torch.nn.Module
    history: list = field(default_factory=list)
    accuracy: float = float("nan")
    kind: str = ""


def preference_accuracy(reward, preferences, weights=None) -> float:
    """Weighted fraction of pairs (x, y_w, y_l) with reward[x, y_w] > reward[x, y_l] (ties count 1/2)."""
    r = as_float_array(reward, "reward", ndim=2)
    prefs = as_index_array(preferences, "preferences", ncols=3)
    if len(prefs) == 0:
        raise ValueError("preferences is empty")
    if np.any(prefs[:, 0] >= r.shape[0]) or np.any(prefs[:, 1:] >= r.shape[1]):
        raise ValueError("preferences contains an index out of range for reward")
    w = normalize_weights(check_weights(weights, len(prefs)))  # ratios only: no overflow in the sums
    d = r[prefs[:, 0], prefs[:, 1]] - r[prefs[:, 0], prefs[:, 2]]
    hit = (d > 0) + 0.5 * (d == 0)
    return float(np.sum(w * hit) / np.sum(w))


def reward_recovery_error(reward, reward_true, pi_ref=None) -> float:
    """RMS distance between two rewards modulo a per-prompt shift: min_f sqrt(mean (r − r* − f(x))²).

    The minimising f(x) is the mean of r − r* over the prompt's responses (over π_ref's support when
    ``pi_ref`` is given; the mean is then taken over support entries only). 0 exactly when r = r* + f(x), the
    equivalence class that Bradley-Terry preferences identify.

    This is the RMS distance modulo f(x), the natural summary of a fitted reward model;
    :func:`prefkit.closed_form.reward_gap_up_to_shift` is the worst-case (max-norm) one, used for exact
    identities. Both vanish on the same pairs, and this one is ≤ 2× that one.
    """
    a = as_float_array(reward, "reward", ndim=2)
    b = as_float_array(reward_true, "reward_true", ndim=2)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: reward has shape {a.shape} but reward_true has shape {b.shape}")
    if a.size == 0:
        raise ValueError(f"reward has shape {a.shape}: no prompts or no responses, so there is no error to measure")
    mask = np.ones(a.shape, bool) if pi_ref is None else check_distribution(pi_ref, "pi_ref") > 0
    if mask.shape != a.shape:
        raise ValueError(f"shape mismatch: pi_ref has shape {mask.shape} but reward has shape {a.shape}")
    # rescale by the largest entry s (the distance is homogeneous of degree 1), so no square overflows
    s = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    s = s if s > 0 else 1.0
    d = np.where(mask, a / s - b / s, 0.0)
    f = d.sum(axis=-1, keepdims=True) / mask.sum(axis=-1, keepdims=True)
    err = float(np.sqrt(np.sum(np.where(mask, (d - f) ** 2, 0.0)) / mask.sum())) * s
    return finite_result(err, "the error overflows float64: reward and reward_true differ by more than 1e308")


def fit_reward_model(preferences, n_prompts: int, n_responses: int, *, model: str = "tabular", features=None,
                     weights=None, margin=None, center_coef: float = 0.0, l2: float = 1e-4,
                     steps: int | None = None, lr: float | None = None, hidden: int = 32,
                     seed: int = 0) -> RewardModelResult:
    """Fit r_φ(x, y) to preference pairs: minimise the weighted mean of :func:`reward_loss` + l2·‖params‖².

    Parameters
    ----------
    preferences : (m, 3) int array of (prompt, chosen, rejected)
    n_prompts, n_responses : the size of the reward table
    model : "tabular" | "linear" | "mlp"
        tabular: a free table r[x, y] (L-BFGS); linear: r = φ(x, y)·w (L-BFGS; needs ``features``); mlp: a
        2-hidden-layer tanh MLP on φ(x, y), or on one-hot(x) ⊕ one-hot(y) when ``features`` is None (Adam).
    features : (n_prompts, n_responses, d) array, optional
    weights : (m,) non-negative pair weights, optional (e.g. from ``Problem.preference_probabilities()``)
    margin : (m,) per-pair margins, optional; center_coef : centering coefficient c (see :func:`reward_loss`)
    l2 : ridge penalty on the parameters. For the tabular model it fixes the per-prompt shift (the
        minimum-norm solution), keeps rewards of never-compared responses at 0 and the MLE finite on
        separable data.
    steps, lr : optimiser iterations and step size (defaults: L-BFGS 200 iterations, lr 1; MLP 600 Adam steps,
        lr 0.01)
    hidden : MLP width; seed : seeds the MLP's initialisation

    Returns
    -------
    :class:`RewardModelResult` with ``.reward`` (n_prompts, n_responses), ``.accuracy`` and ``.history``.
    """
    if model not in REWARD_MODELS:
        raise ValueError(f"model must be one of {REWARD_MODELS}, got {model!r}")
    check_int(n_prompts, "n_prompts", 1)
    check_int(n_responses, "n_responses", 1)
    prefs = as_index_array(preferences, "preferences", ncols=3)
    if len(prefs) == 0:
        raise ValueError("preferences is empty")
    if np.any(prefs[:, 1] == prefs[:, 2]):
        row = int(np.flatnonzero(prefs[:, 1] == prefs[:, 2])[0])
        raise ValueError(f"preferences row {row}: chosen and rejected are the same response")
    if steps is not None:
        check_int(steps, "steps", 1)
    check_int(hidden, "hidden", 1)
    seed = check_torch_seed(seed)
    if lr is not None:
        lr = check_real(lr, "lr", lo=0.0, lo_open=True)
    center_coef = check_real(center_coef, "center_coef", lo=0.0)
    if np.any(prefs[:, 0] >= n_prompts):
        raise ValueError(f"preferences has a prompt index >= n_prompts={n_prompts}")
    if np.any(prefs[:, 1:] >= n_responses):
        raise ValueError(f"preferences has a response index >= n_responses={n_responses}")
    w = normalize_weights(check_weights(weights, len(prefs)))  # ratios only: no overflow in the sums
    if margin is not None:
        margin = as_float_array(margin, "margin", ndim=(0, 1))
        if margin.ndim == 1 and margin.shape != (len(prefs),):
            raise ValueError(f"margin must have shape ({len(prefs)},), got {margin.shape}")
        margin = torch.as_tensor(margin)
    l2 = check_real(l2, "l2", lo=0.0)
    phi = None
    if features is not None:
        phi = as_float_array(features, "features", ndim=3)
        if phi.shape[:2] != (n_prompts, n_responses):
            raise ValueError(f"shape mismatch: features has shape {phi.shape}; expected "
                             f"({n_prompts}, {n_responses}, d)")
        phi = torch.as_tensor(phi)
    gen = torch.Generator().manual_seed(int(seed))
    if model == "tabular":
        net = _Tabular(n_prompts, n_responses)
    elif model == "linear":
        if phi is None:
            raise ValueError("features is required for model='linear'")
        net = _Linear(phi)
    else:
        if phi is None:
            shape = (n_prompts, n_responses)
            eye_x = torch.eye(n_prompts, dtype=torch.float64)[:, None, :].expand(*shape, n_prompts)
            eye_y = torch.eye(n_responses, dtype=torch.float64)[None].expand(*shape, n_responses)
            phi = torch.cat([eye_x, eye_y], dim=-1)
        net = _MLP(phi, hidden, gen)

    x, yw, yl = (torch.as_tensor(prefs[:, i]) for i in range(3))
    w_t = torch.as_tensor(w / w.sum())
    params = list(net.parameters())

    def objective() -> torch.Tensor:
        table = net()
        if not bool(torch.isfinite(table).all()):
            raise ValueError(f"training diverged: the reward model's outputs became non-finite (l2={l2!r}, "
                             f"lr={lr!r}); lower l2 or lr")
        per_pair = reward_loss(table[x, yw], table[x, yl], margin=margin, center_coef=center_coef)
        penalty = l2 * sum((q ** 2).sum() for q in params)
        return (w_t * per_pair).sum() + penalty

    history = []
    if model in ("tabular", "linear"):
        opt = torch.optim.LBFGS(params, lr=1.0 if lr is None else lr,
                                max_iter=200 if steps is None else steps,
                                tolerance_grad=1e-10, tolerance_change=1e-14, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = objective()
            loss.backward()
            history.append({"step": len(history), "loss": float(loss.detach())})
            return loss

        opt.step(closure)
    else:
        opt = torch.optim.Adam(params, lr=0.01 if lr is None else lr)
        for t in range(600 if steps is None else steps):
            opt.zero_grad()
            loss = objective()
            loss.backward()
            opt.step()
            history.append({"step": t, "loss": float(loss.detach())})
    with torch.no_grad():
        table = net().detach().numpy().copy()
    return RewardModelResult(reward=table, model=net, history=history,
                             accuracy=preference_accuracy(table, prefs, w), kind=model)
