"""displacement_step's input checks (mutation run 7): the log-policy tables and the preference columns."""

import numpy as np
import pytest

from prefkit.displacement_tracking import displacement_step

_LOGP = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]))
_PREFS = np.array([[0, 0, 1], [1, 1, 2]])


def test_nan_or_positive_log_probabilities_are_refused():
    """A NaN, or a log-probability above 0 (a probability above 1: 1e-6 and 0.5 here), in ``logp`` or ``logp_init``
    is a ValueError. Bugs caught (mutmut run 7): the NaN test dropped or joined to the positivity test with ``and``
    (NaN then flows into every metric), and the 1e-9 slack raised to 1 + 1e-9 (log π = 0.5 accepted)."""
    for bad in (np.nan, 1e-6, 0.5):
        table = _LOGP.copy()
        table[0, 2] = bad
        for args in ((table, _LOGP), (_LOGP, table)):
            with pytest.raises(ValueError, match="must hold log-probabilities"):
                displacement_step(*args, _PREFS)
    ok = _LOGP.copy()
    ok[0, :] = [0.0, -np.inf, -np.inf]  # probability 1 and 0 are allowed
    out = displacement_step(ok, _LOGP, _PREFS)
    assert np.isfinite(out["mass/neither"])


@pytest.mark.parametrize("prefs", [[[0, 0]], [[0, 0, 1, 2]], [[0, 0, 3]], [[0, 3, 1]], [[0, -1, 1]], [[0, 1, -1]],
                                   [[2, 0, 1]], [[-1, 0, 1]]])
def test_preference_columns_are_checked(prefs):
    """Preferences need exactly three columns, a prompt in range and both responses in range (no negative index
    wrapping to the last response). Bugs caught (mutmut run 7): ``ncols=3`` dropped (two columns then die with an
    IndexError, four pass silently) and the response check sliced from column 2 (a chosen index of 3 is an
    IndexError, -1 silently the last response)."""
    with pytest.raises(ValueError, match="preferences"):
        displacement_step(_LOGP, _LOGP, prefs)


def test_metrics_by_hand():
    """Every metric against a hand computation on two prompts (the tolerance is float64 rounding, 1e-15)."""
    logp0 = _LOGP
    p1 = np.array([[0.6, 0.1, 0.3], [0.1, 0.7, 0.2]])
    out = displacement_step(np.log(p1), logp0, _PREFS)
    p0 = np.exp(logp0)
    assert out["logps/chosen"] == pytest.approx(np.mean(np.log([0.6, 0.7])), abs=1e-15)
    assert out["logps/rejected"] == pytest.approx(np.mean(np.log([0.1, 0.2])), abs=1e-15)
    assert out["mass/neither"] == pytest.approx(np.mean([0.3, 0.1]), abs=1e-15)
    assert out["mass/neither_gain"] == pytest.approx(np.mean([0.3 - p0[0, 2], 0.1 - p0[1, 0]]), abs=1e-15)
    gain = (p1 - p0).mean(axis=0)
    assert out["top_gainer"] == int(np.argmax(gain)) and out["top_gainer_gain"] == pytest.approx(gain.max(), abs=1e-15)
