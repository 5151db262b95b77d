"""grpo_fixed_point from the inside: prompts with one response on the support, the start's check, a root that
falls exactly on the two-response grid, the root-find accepted without the flow fallback, and which errors are
passed through unwrapped. Written for mutation run 6 (``grpo_fixed_point``)."""

import numpy as np
import pytest

from prefkit.grpo import expected_grpo_direction, grpo_fixed_point


def _max_relative_direction(pi, q, r, beta, group_size, **kw):
    """max over the support of |d_y|/π(y): 0 at a stationary point (the quantity grpo_fixed_point's tol bounds)."""
    d = expected_grpo_direction(pi, q, r, beta, group_size, **kw)
    on = q > 0
    return float(np.max(np.abs(d[on]) / pi[on]))


# ------------------------------------------------------------------------- mutation run 6: grpo_fixed_point
def test_a_prompt_with_one_response_is_skipped_not_the_end():
    """A prompt whose π_ref puts all its mass on one response has the fixed point (1, 0, 0) and nothing to solve;
    the prompts after it must still be solved (each the same as alone). Bug caught (mutmut run 6): ``break``
    for ``continue`` there, which left every later prompt's row all zero."""
    q = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.6, 0.4]])
    r = np.array([[0.3, 0.1, 0.2], [1.0, 0.0, -0.5], [0.0, 2.0, -1.0]])
    fp = grpo_fixed_point(q, r, 0.5, 4)
    np.testing.assert_array_equal(fp[0], [1.0, 0.0, 0.0])
    for x in (1, 2):
        np.testing.assert_allclose(fp[x], grpo_fixed_point(q[x:x + 1], r[x:x + 1], 0.5, 4)[0], rtol=0, atol=1e-12)
        assert abs(fp[x].sum() - 1.0) <= 1e-12 and np.all(fp[x][q[x] == 0] == 0.0)
    assert _max_relative_direction(fp[1:], q[1:], r[1:], 0.5, 4) <= 1e-10


def test_start_must_be_positive_wherever_pi_ref_is():
    """The search runs on the start's logits, so a start with π(y) = 0 where π_ref(y) > 0 is refused by name (a
    zero off π_ref's support is fine). Bugs caught (mutmut run 6): the check removed, ``start < 0`` for
    ``start ≤ 0`` (a distribution is never negative: nothing refused), or ``q > 1`` for ``q > 0``."""
    q, r = np.array([[0.2, 0.3, 0.5]]), np.array([[1.0, 0.0, -0.5]])
    with pytest.raises(ValueError, match="start must be > 0 wherever pi_ref is"):
        grpo_fixed_point(q, r, 0.5, 4, start=[[0.5, 0.5, 0.0]])
    fp = grpo_fixed_point([[0.5, 0.5, 0.0]], [[1.0, 0.0, 3.0]], 0.5, 4, start=[[0.4, 0.6, 0.0]])
    assert fp[0, 2] == 0.0 and _max_relative_direction(fp, np.array([[0.5, 0.5, 0.0]]),
                                                       np.array([[1.0, 0.0, 3.0]]), 0.5, 4) <= 1e-10


@pytest.mark.parametrize("start", [None, [[0.9, 0.1]], [[0.2, 0.8]]])
def test_two_responses_whose_root_is_on_the_grid(start):
    """Equal rewards make every advantage 0, so the only force is the KL to π_ref: the fixed point is π_ref. With
    π_ref = (½, ½) the root is logit 0, a point of the two-response bracketing grid, where the residual is
    exactly 0; the sign change test must count a 0 (product ≤ 0) and return (½, ½) (to 1e-15). Bug caught (mutmut
    run 6): ``< 0`` for ``≤ 0`` (no sign change seen on either side of the exact zero: "no stationary point")."""
    fp = grpo_fixed_point([[0.5, 0.5]], [[1.0, 1.0]], 0.5, 4, start=start)
    np.testing.assert_allclose(fp, [[0.5, 0.5]], rtol=0, atol=1e-15)


@pytest.mark.parametrize("kw", [dict(scale_rewards="none"), dict(scale_rewards="none", kl_estimator="k2")])
def test_root_find_alone_with_the_runs_own_settings(kw):
    """With flow_steps=0 there is no fallback: the root-find from π* must be accepted on its own, which needs its
    check of d/π at the root to use the run's settings (scale_rewards, kl_estimator, ...). Three responses, so
    the multi-response root-find runs. Bugs caught (mutmut run 6): that check with the default settings instead
    of the run's, or with np.all(None) (never accepted), both hidden by the fallback until flow_steps=0."""
    q, r = np.array([[0.2, 0.3, 0.5]]), np.array([[1.0, 0.0, -0.5]])
    fp = grpo_fixed_point(q, r, 0.5, 4, flow_steps=0, **kw)
    assert _max_relative_direction(fp, q, r, 0.5, 4, **kw) <= 1e-10
    np.testing.assert_allclose(fp, grpo_fixed_point(q, r, 0.5, 4, **kw), rtol=0, atol=1e-12)


def test_no_stationary_point_is_reported_once_not_rewrapped():
    """β = 0 has no interior stationary point (GRPO without a KL drives π to a vertex); with flow_steps=0 the
    root-find's failure must come out as it was raised ("... within tol (<scipy's message>)"), not rewrapped as
    "the search left float64". Bugs caught (mutmut run 6): the pass-through test on the message inverted or
    never true (every "no stationary point" error rewrapped)."""
    with pytest.raises(ValueError, match=r"^no stationary point found for prompt 0 within tol \("):
        grpo_fixed_point([[0.2, 0.3, 0.5]], [[1.0, 0.0, -0.5]], 0.0, 4, flow_steps=0)
