"""Best-of-n sampling from the tiny LM, evaluated exactly (chapter 8).

Best-of-n draws n responses from the SFT model π_ref and keeps the one the learned reward model r_φ scores
highest. Over the enumerated V^L responses its distribution is exact: :func:`prefkit.best_of_n.best_of_n_policy`
with π_ref = the SFT model's enumerated distribution and reward = r_φ's enumerated table (Beirami et al. 2024).
Its gold reward E[r*], KL(π_bon‖π_ref) and KL(π_bon‖π*) then come out of :func:`prefkit.lm.exact.exact_metrics`
exactly, in the same units as chapter 7's RLHF and DPO rows.
"""

from __future__ import annotations

import numpy as np

from ..best_of_n import best_of_n_kl_bound, best_of_n_log_policy
from .exact import enumerate_log_probs, exact_metrics

__all__ = ["best_of_n_rows", "pipeline_best_of_n_rows"]


def best_of_n_rows(ref_logp, rm_table, reward, beta, ns) -> list[dict]:
    """One summary row per n: best-of-n on ``rm_table`` from π_ref, evaluated exactly on the true ``reward``.

    Parameters
    ----------
    ref_logp : (n_prompts, n_responses) log π_ref (the SFT model, enumerated)
    rm_table : (n_prompts, n_responses) the reward model's scores r_φ(x, y)
    reward : (n_prompts, n_responses) the true reward r*
    beta : float > 0, the β of π* ∝ π_ref·exp(r*/β) in ``kl_star`` and of the objective
    ns : iterable of ints ≥ 1

    Returns
    -------
    list of dicts with the keys of chapter 7's summary rows (``policy``, ``reward``, ``kl_ref``, ``kl_star``,
    ``objective``) plus ``n``, ``kl_bound`` = log n − (n − 1)/n and ``proxy`` = E_x E_π_bon[r_φ].
    """
    ref_logp = np.asarray(ref_logp, dtype=np.float64)
    ref_logp = ref_logp - np.logaddexp.reduce(ref_logp, axis=-1, keepdims=True)
    pi_ref = np.exp(ref_logp)
    pi_ref = pi_ref / pi_ref.sum(-1, keepdims=True)
    rows = []
    for n in ns:
        logp = best_of_n_log_policy(pi_ref, rm_table, int(n))
        m = exact_metrics(logp, ref_logp, reward, beta)
        rows.append({"policy": f"best-of-{int(n)}", "n": int(n), "reward": m["exact/reward"],
                     "kl_ref": m["exact/kl_ref"], "kl_star": m["exact/kl_star"], "objective": m["exact/objective"],
                     "kl_bound": best_of_n_kl_bound(int(n)),
                     "proxy": float(np.mean(np.sum(np.exp(logp) * rm_table, axis=-1)))})
    return rows


def pipeline_best_of_n_rows(res, ns) -> list[dict]:
    """:func:`best_of_n_rows` for a chapter-7 :class:`prefkit.lm.pipeline.PipelineResult` that ran "sft" and "rm".

    Enumerates the SFT model's log π_ref and the reward model's table over all V^L responses of every prompt.
    """
    if "rm" not in res.models:
        raise ValueError("the pipeline result has no reward model: run it with the 'rm' stage")
    task = res.task
    ref_logp = enumerate_log_probs(res.models["sft"], task)
    rm_table = res.models["rm"].table(task)
    return best_of_n_rows(ref_logp, rm_table, task.true_reward_table(), res.cfg.beta, ns)
