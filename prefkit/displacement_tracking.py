"""What every DPO-family training loop records at each step (chapter 6, Razin et al. 2024).

For a preference pair (x, y_w, y_l) and a policy π over an enumerable response set, it records log π(y_w|x),
log π(y_l|x), the mass π puts on the responses in neither role, and the response whose probability rose the
most since the start of training (averaged over the prompts). Tabular policies, log-linear policies and the
tiny LM (whose responses are enumerated) all call :func:`displacement_step` with their current and initial
log-policies.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_float_array, as_index_array, check_same_shape

__all__ = ["displacement_step"]


def _log_policy(logp, name):
    """A (n_prompts, n_responses) table of log-probabilities: −inf allowed (probability 0), NaN, +inf and values
    above 0 (probabilities above 1) are not."""
    a = as_float_array(logp, name, ndim=2, finite=False, nonempty=True)
    if np.any(np.isnan(a)) or np.any(a > 1e-9):
        raise ValueError(f"{name} must hold log-probabilities (<= 0, -inf allowed, no NaN)")
    return a


def displacement_step(logp, logp_init, preferences) -> dict:
    """Displacement metrics of one training step, averaged over the preference pairs.

    Parameters
    ----------
    logp, logp_init : (n_prompts, n_responses) arrays
        log π_θ(y|x) now and at the start of training.
    preferences : (m, 3) int array of (prompt, chosen, rejected)

    Returns
    -------
    dict with
        ``logps/chosen``, ``logps/rejected``: mean log π(y_w|x), log π(y_l|x) over the pairs;
        ``mass/neither``: mean over pairs of 1 − π(y_w|x) − π(y_l|x);
        ``mass/neither_gain``: mean change of that mass since the start;
        ``top_gainer``: the response y whose probability rose most since the start, averaged over the
        distinct prompts of the pairs: argmax_y mean_x [π(y|x) − π_init(y|x)] (each prompt counts once,
        however many pairs it has; with one prompt this is that prompt's top gainer);
        ``top_gainer_gain``: that prompt-averaged rise.
    """
    logp = _log_policy(logp, "logp")
    logp_init = _log_policy(logp_init, "logp_init")
    check_same_shape(logp, logp_init, "logp", "logp_init")
    prefs = as_index_array(preferences, "preferences", ncols=3)
    if len(prefs) == 0:
        raise ValueError("preferences is empty: the metrics average over the pairs")
    n_prompts, n = logp.shape
    as_index_array(prefs[:, 0], "preferences (prompt column)", n=n_prompts)
    as_index_array(prefs[:, 1:], "preferences (response columns)", n=n)
    return _displacement_metrics(logp, logp_init, prefs, np.unique(prefs[:, 0]))


def _displacement_metrics(logp, logp_init, prefs, prompts) -> dict:
    """:func:`displacement_step` on checked inputs, with ``prompts`` = the distinct prompts of ``prefs`` (a
    training loop computes them once and calls this at every recorded step)."""
    x, w, l = prefs[:, 0], prefs[:, 1], prefs[:, 2]
    lp_w, lp_l = logp[x, w], logp[x, l]
    neither = 1.0 - np.exp(lp_w) - np.exp(lp_l)
    neither0 = 1.0 - np.exp(logp_init[x, w]) - np.exp(logp_init[x, l])
    gain = np.mean(np.exp(logp[prompts]) - np.exp(logp_init[prompts]), axis=0)  # (n_responses,) prompt-averaged
    top = int(np.argmax(gain))
    return {
        "logps/chosen": float(np.mean(lp_w)),
        "logps/rejected": float(np.mean(lp_l)),
        "mass/neither": float(np.mean(neither)),
        "mass/neither_gain": float(np.mean(neither - neither0)),
        "top_gainer": top,
        "top_gainer_gain": float(gain[top]),
    }
