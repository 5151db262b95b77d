"""overoptimisation: Gao et al.'s forms, their least-squares fit, and exact gold/proxy curves."""

import numpy as np
import pytest

from prefkit.best_of_n import best_of_n_kl
from prefkit.closed_form import kl_divergence, optimal_policy
from prefkit.overoptimisation import best_of_n_curve, fit_gao, gao_bon, gao_rl, kl_optimal_curve, policy_curve


@pytest.mark.parametrize("form,f", [("bon", gao_bon), ("rl", gao_rl)])
def test_fit_recovers_exact_parameters(form, f):
    d = np.linspace(0.05, 3, 30)
    fit = fit_gao(d, f(d, 1.3, 0.4), form)
    assert abs(fit.alpha - 1.3) < 1e-10 and abs(fit.beta - 0.4) < 1e-10 and fit.r2 > 1 - 1e-12
    # the fitted peak is where the curve's slope vanishes (finite differences)
    h = 1e-6
    slope = (f(fit.peak_d + h, 1.3, 0.4) - f(fit.peak_d - h, 1.3, 0.4)) / (2 * h)
    assert abs(slope) < 1e-6


def test_fit_reports_poor_fit_honestly():
    d = np.linspace(0.1, 3, 30)
    fit = fit_gao(d, np.sin(4 * d), "bon")
    assert fit.r2 < 0.5
    with pytest.raises(ValueError, match="form"):
        fit_gao(d, d, "ppo")
    with pytest.raises(ValueError, match="3 points"):
        fit_gao(d[:2], d[:2])


def test_curves_are_exact():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=3)
    gold, proxy = rng.normal(size=(2, 3, 6))
    c = best_of_n_curve(p, gold, proxy, [1, 4, 16])
    assert np.allclose(c.kl, [np.mean(best_of_n_kl(p, proxy, n)) for n in (1, 4, 16)])
    assert c.kl[0] < 1e-12 and abs(c.gold[0] - c.gold_ref) < 1e-12 and np.all(np.diff(c.proxy) >= -1e-12)
    k = kl_optimal_curve(p, gold, proxy, [10.0, 1.0, 0.1])
    pol = optimal_policy(p, proxy, 1.0)
    assert abs(k.kl[1] - np.mean(kl_divergence(pol, p))) < 1e-12
    assert abs(k.gold[1] - np.mean((pol * gold).sum(-1))) < 1e-12
    pc = policy_curve(p, gold, proxy, [pol], [1.0])
    assert abs(pc.kl[0] - k.kl[1]) < 1e-12 and np.allclose(pc.d, np.sqrt(pc.kl))
