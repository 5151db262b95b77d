"""Chapter 10's exercise checkers accept the reference solutions and name each plausible wrong answer."""

import numpy as np
import pytest

from prefkit.course import ch10_grpo as ch10
from prefkit.course.exercises import Mistake, _get, _reference


def _ref(key):
    fn = _reference(_get(f"ch10.{key}"))
    assert fn is not None, "solutions/ch10_grpo.py is missing"
    return fn


def test_references_pass():
    ch10.grade_group_advantages(_ref("group_advantages"))
    ch10.grade_k3(_ref("k3"))


def test_group_advantages_mistakes():
    def centred(R):
        return R - R.mean(-1, keepdims=True)

    cases = {
        "ddof 0": lambda R, s: centred(R) / (R.std(-1, keepdims=True) + 1e-4) if s else centred(R),
        "ε is missing": lambda R, s: centred(R) / R.std(-1, ddof=1, keepdims=True) if s else centred(R),
        "whole batch": lambda R, s: (R - R.mean()) / (R.std(ddof=1) + 1e-4) if s else R - R.mean(),
        "leave-one-out": lambda R, s: R - (R.sum(-1, keepdims=True) - R) / (R.shape[-1] - 1),
        "no division": lambda R, s: centred(R) / (R.std(-1, ddof=1, keepdims=True) + 1e-4),
        "shape": lambda R, s: centred(R).ravel(),
    }
    for hint, fn in cases.items():
        with pytest.raises(Mistake, match=hint):
            ch10.grade_group_advantages(fn)


def test_k3_mistakes():
    cases = {
        "k1": lambda lp, rp: lp - rp,
        "wrong way round": lambda lp, rp: np.exp(lp - rp) - (lp - rp) - 1,
        "the −1 is missing": lambda lp, rp: np.exp(rp - lp) - (rp - lp),
        "−log ρ term is missing": lambda lp, rp: np.exp(rp - lp) - 1,
        "shape": lambda lp, rp: (np.exp(rp - lp) - (rp - lp) - 1).sum(-1),
        "k3 is wrong": lambda lp, rp: 0.5 * (rp - lp) ** 2,
    }
    for hint, fn in cases.items():
        with pytest.raises(Mistake, match=hint):
            ch10.grade_k3(fn)


def test_two_response_closed_form_matches_root_find():
    P = ch10.two_response_instance(1, n_prompts=3)
    from prefkit.grpo import grpo_fixed_point

    np.testing.assert_allclose(ch10.two_response_fixed_point(P.pi_ref, P.reward, 0.5, 6),
                               grpo_fixed_point(P.pi_ref, P.reward, 0.5, 6), atol=1e-10)
