"""Chapter 3's exercise checkers: the reference solution passes, and each plausible wrong answer is rejected with a
hint that names the mistake."""

import pytest

from prefkit.course import ch3_classical_rlhf as ch3
from prefkit.course.exercises import Mistake, _get, _reference, exercises_of


def _ref(exercise_id):
    fn = _reference(_get(exercise_id))
    if fn is None:
        pytest.skip("the reference solutions (solutions/) are absent")
    return fn


def test_chapter_registers_both_exercises():
    assert [e.id for e in exercises_of(3)] == ["ch3.reinforce_loss", "ch3.rloo_advantages"]


def test_references_pass():
    ch3.grade_reinforce_loss(_ref("ch3.reinforce_loss"))
    ch3.grade_rloo_advantages(_ref("ch3.rloo_advantages"))


def test_library_functions_pass():
    from prefkit.policy_gradient import reinforce_loss, rloo_advantages

    ch3.grade_reinforce_loss(reinforce_loss)
    ch3.grade_rloo_advantages(rloo_advantages)


@pytest.mark.parametrize("wrong, hint", [
    (lambda logp, adv: -(logp * adv).mean(), "gradient flows into the advantages"),
    (lambda logp, adv: (logp * adv.detach()).mean(), "wrong sign"),
    (lambda logp, adv: -(logp * adv.detach()).sum(), "sum over samples"),
    (lambda logp, adv: -(logp * adv.detach()), "must be a scalar"),
    (lambda logp, adv: -(logp.detach() * adv.detach()).mean(), "no gradient to logp"),
    (lambda logp, adv: -(logp.exp() * adv.detach()).mean(), "expected −mean"),
    (lambda logp, adv: float(-(logp * adv).mean()), "torch tensor"),
])
def test_reinforce_loss_rejects_each_mistake_with_its_hint(wrong, hint):
    with pytest.raises(Mistake, match=hint):
        ch3.grade_reinforce_loss(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda r: r - r.mean(-1, keepdim=True), "includes the sample itself"),
    (lambda r: r - (r.sum(-1, keepdim=True) - r) / r.shape[-1], "divided by k"),
    (lambda r: r - (r.sum(0, keepdim=True) - r) / (r.shape[0] - 1), "over the batch"),
    (lambda r: (r - r.mean(-1, keepdim=True))[..., :-1], "shape"),
    (lambda r: (r.sum(-1, keepdim=True) - r) / (r.shape[-1] - 1) - r, "differ from"),
])
def test_rloo_advantages_rejects_each_mistake_with_its_hint(wrong, hint):
    with pytest.raises(Mistake, match=hint):
        ch3.grade_rloo_advantages(wrong)


def test_every_claim_has_a_check_and_a_section():
    sections = {spec.section for spec in ch3.CHAPTER.claims.values()}
    assert "" not in sections
    assert [name for name, _ in ch3.CHAPTER.checks]


def test_pipeline_regret_is_measured_directly():
    """regret/total, regret/reward_model and shortfall/rl come from objective values; by the Gibbs identity they equal
    β·KL(π_RL‖π*), β·KL(π*(r̂)‖π*) and β·KL(π_RL‖π*(r̂)), computed here independently."""
    from types import SimpleNamespace

    import numpy as np

    from prefkit.closed_form import kl_divergence, optimal_policy
    from prefkit.problems import random_problem

    P = random_problem(3, 5, seed=1)
    rng = np.random.default_rng(0)
    r_hat = P.reward + 0.3 * rng.normal(size=P.reward.shape)
    pi_rl = optimal_policy(P.pi_ref, r_hat + 0.1 * rng.normal(size=P.reward.shape), 0.5)
    pi_hat = optimal_policy(P.pi_ref, r_hat, 0.5)
    res = SimpleNamespace(reward_model=SimpleNamespace(reward=r_hat), pi=pi_rl, pi_star_model=pi_hat)
    g = ch3.pipeline_regret(res, P, 0.5)
    pi_star = P.optimal_policy(0.5)
    assert g["regret/total"] == pytest.approx(0.5 * np.mean(kl_divergence(pi_rl, pi_star)), abs=1e-12)
    assert g["regret/reward_model"] == pytest.approx(0.5 * np.mean(kl_divergence(pi_hat, pi_star)), abs=1e-12)
    assert g["shortfall/rl"] == pytest.approx(0.5 * np.mean(kl_divergence(pi_rl, pi_hat)), abs=1e-12)
    assert g["shortfall/rl"] > 1e-4 and g["regret/reward_model"] > 1e-3
