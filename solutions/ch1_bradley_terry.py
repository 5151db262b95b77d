"""Chapter 1 exercises: reference solutions and their checkers (for instructors; notebook 01 imports them).

Exercise 1: one sweep of Hunter's (2004) MM algorithm for Bradley-Terry strengths,
    γ_i ← W_i / Σ_{j≠i} (n_ij + n_ji)/(γ_i + γ_j),   γ = e^θ,  W_i = Σ_j n_ij.
Exercise 2: the standard error of a contrast from the covariance, SE(θ_i − θ_j) = sqrt(C_ii + C_jj − 2·C_ij).

Each ``check_*`` compares a student's function with an exact answer (the MM update written out entry by
entry, the MLE from :func:`prefkit.fit_bradley_terry`, a closed form) and raises ``AssertionError`` with a
hint on the first mismatch.
"""

import numpy as np

import prefkit

__all__ = ["mm_update", "contrast_stderr", "check_mm_update", "check_contrast_stderr"]


def mm_update(strengths, wins):
    """Reference solution. ``wins[i, j]`` = n_ij, times i beat j (n, n). Returns the new θ, centered to mean
    0."""
    theta = np.asarray(strengths, dtype=float)
    wins = np.asarray(wins, dtype=float)
    gamma = np.exp(theta - theta.max())  # the update is scale-free; rescaling avoids overflow
    games = wins + wins.T  # n_ij + n_ji
    denom = (games / (gamma[:, None] + gamma[None, :])).sum(axis=1)  # the diagonal has no games
    new = np.log(wins.sum(axis=1)) - np.log(denom)
    return new - new.mean()


def contrast_stderr(covariance, i, j):
    """Reference solution: sqrt(C_ii + C_jj − 2·C_ij)."""
    c = np.asarray(covariance, dtype=float)
    return float(np.sqrt(c[i, i] + c[j, j] - 2 * c[i, j]))


def _instance(seed, n=6, m=300):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n)
    comps = prefkit.sample_comparisons(theta, m, rng)
    while prefkit.mle_obstruction(comps, n) is not None:  # keep instances whose MLE exists
        comps = prefkit.sample_comparisons(theta, m, rng)
    wins = np.zeros((n, n))
    np.add.at(wins, (comps[:, 0], comps[:, 1]), 1.0)
    return comps, wins


def check_mm_update(fn) -> bool:
    """Check a student's ``fn(strengths, wins) -> new strengths`` (n,). Returns True or raises
    AssertionError."""
    for seed in range(3):
        comps, wins = _instance(seed)
        n = len(wins)
        theta = np.random.default_rng(10 + seed).standard_normal(n)
        got = np.asarray(fn(theta, wins), dtype=float)
        assert got.shape == (n,), f"shape {got.shape}, expected ({n},)"
        assert np.all(np.isfinite(got)), (
            "non-finite strengths: work with γ = exp(θ − max θ) to avoid overflow"
        )
        gamma = np.exp(theta)
        want = np.array(
            [
                np.log(
                    wins[i].sum()
                    / sum((wins[i, j] + wins[j, i]) / (gamma[i] + gamma[j]) for j in range(n) if j != i)
                )
                for i in range(n)
            ]
        )
        want -= want.mean()
        got_c = got - got.mean()
        assert np.allclose(got_c, want, atol=1e-10), (
            "one update differs from Hunter's formula "
            f"(max abs diff {np.max(np.abs(got_c - want)):.2e} after centering): "
            "γ_i ← W_i / Σ_j (n_ij + n_ji)/(γ_i + γ_j)"
        )
        # the MM property: every sweep raises the likelihood, and the sweeps converge to the MLE
        ll = prefkit.bt_log_likelihood(theta, comps)
        for _ in range(3000):
            theta_next = np.asarray(fn(theta, wins), dtype=float)
            ll_next = prefkit.bt_log_likelihood(theta_next, comps)
            assert ll_next >= ll - 1e-9, "the log-likelihood went down: an MM sweep must never lower it"
            if np.max(np.abs(theta_next - theta - np.mean(theta_next - theta))) < 1e-12:
                theta = theta_next
                break
            theta, ll = theta_next, ll_next
        mle = prefkit.fit_bradley_terry(comps, n).strengths
        err = np.max(np.abs(theta - theta.mean() - mle))
        assert err < 1e-8, f"the sweeps did not reach the MLE (max abs diff {err:.2e})"
    print("check_mm_update: one sweep matches Hunter's formula, sweeps raise ℓ and converge to the MLE")
    return True


def check_contrast_stderr(fn) -> bool:
    """Check a student's ``fn(covariance, i, j) -> SE(θ_i − θ_j)``. Returns True or raises AssertionError."""
    # two items, n_ab wins to n_ba: SE(θ_a − θ_b) = sqrt(1/n_ab + 1/n_ba) exactly
    fit = prefkit.fit_bradley_terry([[0, 1], [1, 0]], weights=[6.0, 3.0])
    got = fn(fit.covariance, 0, 1)
    assert np.isclose(got, np.sqrt(1 / 6 + 1 / 3), atol=1e-10), (
        f"two items, 6 wins to 3: got {got}, expected sqrt(1/6 + 1/3) = {np.sqrt(1 / 6 + 1 / 3):.6f}"
    )
    comps, _ = _instance(5)
    fit = prefkit.fit_bradley_terry(comps)
    for i, j in [(0, 1), (2, 5), (3, 3)]:
        got = fn(fit.covariance, i, j)
        want = fit.contrast_stderr(i, j)
        assert np.isclose(got, want, atol=1e-10), (
            f"items ({i}, {j}): got {got}, expected {want} (C_ij enters twice)"
        )
    # gauge-free: the same contrast from the covariance in another gauge (θ_0 = 0) gives the same answer
    k = fit.n_items
    proj = np.eye(k) - np.outer(np.ones(k), np.eye(k)[0])  # θ ↦ θ − θ_0
    c0 = proj @ fit.covariance @ proj.T
    assert np.isclose(fn(c0, 2, 4), fit.contrast_stderr(2, 4), atol=1e-10), (
        "the answer must not depend on the gauge"
    )
    print("check_contrast_stderr: closed form, random instance and gauge invariance all match")
    return True
