"""Training the chapter-6 problems with DPO-family losses, recording log π_θ at every step.

:func:`train_displacement` runs :func:`prefkit.dpo.fit_dpo` on a
:class:`~prefkit.displacement_problems.DisplacementProblem` and keeps the whole log-policy along the way, so the
displacement of each pair can be read off; :func:`squeeze_trajectory` runs the negative gradient alone (the
rejected half of the DPO loss) on tabular logits [ren2024, the squeezing effect].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import check_beta, check_distribution, check_index, check_int, check_real
from .displacement_problems import DisplacementProblem
from .displacement_tracking import displacement_step

__all__ = ["DisplacementRun", "train_displacement", "squeeze_trajectory"]


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
                       optimizer: str = "adam", loss_type: str = "sigmoid", sft_coef: float = 0.0, weights=None,
                       record_every: int = 1, **fit_kwargs) -> DisplacementRun:
    """Train ``problem`` with :func:`prefkit.dpo.fit_dpo` and record log π_θ along the way.

    Parameters
    ----------
    problem : :class:`DisplacementProblem`.
    beta, loss_type, sft_coef, weights : passed to ``fit_dpo`` (``sft_coef`` is the RPO term −sft_coef·log
    π_w).
    steps, lr, optimizer : the training dynamics: ``"adam"`` (default) or ``"sgd"`` (plain gradient descent, where
    the first-order rates of :mod:`prefkit.displacement_theory` hold), ``steps`` steps of size ``lr``. The
    chapter is about what happens *during* training, so the default is a gradient method, not fit_dpo's exact
    solver.
    record_every : keep log π_θ (and fit_dpo's history) every this many steps (1 = all).
    **fit_kwargs : passed on to ``fit_dpo``.

    Returns
    -------
    :class:`DisplacementRun`.
    """
    from .dpo import fit_dpo

    if not isinstance(problem, DisplacementProblem):
        raise ValueError(f"problem must be a DisplacementProblem, got {type(problem).__name__}")
    beta = check_beta(beta)
    record_every = check_int(record_every, "record_every", 1)
    snaps: list[np.ndarray] = []

    def _record(step, policy):
        if step % record_every == 0:
            with torch.no_grad():
                snaps.append(policy.log_probs().detach().numpy().copy())

    res = fit_dpo(problem.pi_ref, problem.preferences, beta, weights=weights, loss_type=loss_type,
                  features=problem.features, sft_coef=sft_coef, optimizer=optimizer, steps=steps, lr=lr,
                  callback=_record, record_every=record_every, **fit_kwargs)
    with torch.no_grad():
        final = res.model.log_probs().detach().numpy().copy()
    if not snaps:
        snaps = [np.log(problem.pi_ref)]
    if not np.array_equal(snaps[-1], final):
        snaps.append(final)
    return DisplacementRun(problem, np.stack(snaps), list(getattr(res, "history", [])), res)


def squeeze_trajectory(pi_ref, rejected: int, *, beta: float = 1.0, steps: int = 100,
                       lr: float = 0.5) -> dict:
    """Gradient descent on tabular logits with the rejected half of the DPO loss, −log σ(−β·log π_l/π_ref,l).

    This is the "negative gradient" of [ren2024]: :func:`prefkit.losses.preference_loss` with the chosen
    log-ratio held at 0. Each step calls :func:`displacement_step` with the pair (y_top, y_l), y_top the most
    likely response under π_ref other than y_l (the argmax of π_ref, unless y_l is it: then the runner-up).
    ``rejected`` must have π_ref > 0 (its log-ratio is undefined otherwise).

    Returns
    -------
    dict with ``pi`` (steps + 1, n_responses), ``argmax`` (of π_ref), ``chosen`` (y_top, the pair's other
    response), ``history`` (per-step displacement dicts, for the pair (y_top, y_l)).
    """
    from .losses import preference_loss

    p = check_distribution(pi_ref, "pi_ref")
    if p.ndim != 1:
        raise ValueError(f"pi_ref must have shape (n_responses,), got {p.shape}")
    n = p.shape[0]
    l = check_index(rejected, "rejected", n)
    beta = check_beta(beta)
    steps = check_int(steps, "steps", 0)
    lr = check_real(lr, "lr", lo=0.0, lo_open=True)
    if not p[l] > 0:
        raise ValueError(f"rejected={rejected!r} has pi_ref = 0: its log-ratio log(π/π_ref) is undefined")
    if n < 2:
        raise ValueError("pi_ref needs at least 2 responses: the rejected one and one to compare it with")
    with np.errstate(divide="ignore"):
        ref = torch.tensor(np.log(p), dtype=torch.float64)
    z = torch.nn.Parameter(ref.clone())
    opt = torch.optim.SGD([z], lr=lr)
    top = int(np.argmax(np.where(np.arange(n) == l, -1.0, p)))  # the most likely response other than y_l
    prefs = np.array([[0, top, l]])
    zero = torch.zeros(1, dtype=torch.float64)
    logp0 = ref.numpy()[None].copy()
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
        if not np.all(np.isfinite(lp) | (p == 0)):
            raise ValueError(f"the descent diverged (non-finite log-probabilities): lr={lr!r} or beta={beta!r} "
                             "too large")
        traj.append(np.exp(lp))
        history.append(displacement_step(lp[None], logp0, prefs))
    return {"pi": np.stack(traj), "argmax": int(np.argmax(p)), "chosen": top, "history": history}
