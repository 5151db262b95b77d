"""What every DPO-family training loop records at each step (chapter 6, Razin et al. 2024).

For a preference pair (x, y_w, y_l) and a policy π over an enumerable response set, it records log π(y_w|x),
log π(y_l|x), the mass π puts on the responses in neither role, and the response whose probability rose the
most since the start of training (averaged over the prompts). Tabular policies, log-linear policies and the
tiny LM (whose responses are enumerated) all call :func:`displacement_step` with their current and initial
log-policies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["displacement_step"]


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
    logp = np.asarray(logp, dtype=np.float64)
    logp_init = np.asarray(logp_init, dtype=np.float64)
    prefs = np.asarray(preferences, dtype=np.int64).reshape(-1, 3)
    x, w, l = prefs[:, 0], prefs[:, 1], prefs[:, 2]
    p, p0 = np.exp(logp), np.exp(logp_init)
    neither = 1.0 - p[x, w] - p[x, l]
    neither0 = 1.0 - p0[x, w] - p0[x, l]
    prompts = np.unique(x) if len(x) else np.zeros(1, dtype=np.int64)
    gain = np.mean(p[prompts] - p0[prompts], axis=0)  # (n_responses,) prompt-averaged rise
    top = int(np.argmax(gain))
    return {
        "logps/chosen": float(np.mean(logp[x, w])) if len(x) else float("nan"),
        "logps/rejected": float(np.mean(logp[x, l])) if len(x) else float("nan"),
        "mass/neither": float(np.mean(neither)) if len(x) else float("nan"),
        "mass/neither_gain": float(np.mean(neither - neither0)) if len(x) else float("nan"),
        "top_gainer": top,
        "top_gainer_gain": float(gain[top]),
    }
