"""Chapter 5 exercises: reference solutions and their checkers (for instructors; notebook 05 imports them).

Exercise 1: IPO's optimum on Azar et al.'s triangle y_a ≻ y_b ≻ y_c (deterministic, all pairs, uniform π_ref).
Exercise 2: IPO's optimal log-ratio gap for one pair observed with preference probability p.
The checkers compare with :func:`prefkit.ipo_optimum` (the general closed form, itself checked against
brute-force minimisation in tests/test_free_lunch.py) and raise ``AssertionError`` with a hint.
"""

import numpy as np

import prefkit

__all__ = ["ipo_triangle_optimum", "ipo_pair_gap", "check_ipo_triangle", "check_ipo_pair_gap"]


def ipo_triangle_optimum(tau):
    """Reference solution: the least-squares potentials on the triangle are u = (1, 0, −1)/(3τ), so
    π ∝ (e^{1/(3τ)}, 1, e^{−1/(3τ)})."""
    e = np.exp(np.array([1.0, 0.0, -1.0]) / (3 * tau))
    return e / e.sum()


def ipo_pair_gap(p, tau):
    """Reference solution: minimise p·(h − 1/(2τ))² + (1 − p)·(−h − 1/(2τ))² in h: h = (2p − 1)/(2τ)."""
    return (p - 0.5) / tau


def check_ipo_triangle(fn) -> bool:
    """Check ``fn(tau) -> (3,) policy`` against :func:`prefkit.ipo_optimum` for several τ."""
    prefs, w = prefkit.azar_preferences()
    for tau in (0.05, 0.2, 1.0, 10.0):
        got = np.asarray(fn(tau), dtype=float)
        want = prefkit.ipo_optimum(np.full((1, 3), 1 / 3), prefs, tau, w)[0]
        assert got.shape == (3,), f"tau={tau}: shape {got.shape}, expected (3,)"
        assert np.allclose(got, want, atol=1e-10), (f"tau={tau}: got {got}, expected {want} (hint: solve the "
                                                    "least-squares problem on the three log-ratio gaps)")
    print("check_ipo_triangle: all cases pass")
    return True


def check_ipo_pair_gap(fn) -> bool:
    """Check ``fn(p, tau) -> h`` (the optimal log π(y1)/π(y2) − log π_ref(y1)/π_ref(y2))."""
    for p in (0.5, 0.7, 0.95, 1.0):
        for tau in (0.1, 1.0):
            pi = prefkit.ipo_optimum(np.array([[0.5, 0.5]]), [[0, 0, 1], [0, 1, 0]], tau, [p, 1 - p])
            want = float(np.log(pi[0, 0] / pi[0, 1]))
            got = float(fn(p, tau))
            assert abs(got - want) < 1e-9, f"p={p}, tau={tau}: got {got}, expected {want}"
    print("check_ipo_pair_gap: all cases pass")
    return True
