"""Chapter 7's course module: claims, tour checks, and the exercise checker against right and wrong answers."""

import numpy as np
import pytest
from scipy.special import logsumexp

from prefkit.course import Mistake
from prefkit.course import ch7_tiny_lm as ch7
from prefkit.course.exercises import _get, _reference


def _reference_solution():
    ref = _reference(_get("ch7.kl_to_optimal"))
    if ref is None:
        pytest.skip("solutions/ is absent")
    return ref


def _log_star(ref_logp, reward, beta):
    s = ref_logp + reward / beta
    return s - logsumexp(s, axis=-1, keepdims=True)


def reversed_kl(logp, ref_logp, reward, beta):
    ls = _log_star(ref_logp, reward, beta)
    return np.sum(np.exp(ls) * (ls - logp), axis=-1)


def unnormalised(logp, ref_logp, reward, beta):
    return np.sum(np.exp(logp) * (logp - ref_logp - reward / beta), axis=-1)


def no_ref(logp, ref_logp, reward, beta):
    ls = reward / beta - logsumexp(reward / beta, axis=-1, keepdims=True)
    return np.sum(np.exp(logp) * (logp - ls), axis=-1)


def times_beta(logp, ref_logp, reward, beta):
    return np.sum(np.exp(logp) * (logp - _log_star(ref_logp, reward, 1 / beta)), axis=-1)


def naive_exp(logp, ref_logp, reward, beta):
    w = np.exp(ref_logp) * np.exp(reward / beta)
    return np.sum(np.exp(logp) * (logp - np.log(w / w.sum(-1, keepdims=True))), axis=-1)


def summed(logp, ref_logp, reward, beta):
    return np.sum(np.exp(logp) * (logp - _log_star(ref_logp, reward, beta)))


def test_checker_accepts_reference():
    ch7.grade_kl_to_optimal(_reference_solution())


@pytest.mark.parametrize("wrong, words", [
    (reversed_kl, "reversed KL"),
    (unnormalised, "not normalised"),
    (no_ref, "π_ref is missing"),
    (times_beta, "multiplied by β"),
    (naive_exp, "overflows"),
    (summed, "one KL per prompt"),
])
def test_checker_names_the_mistake(wrong, words):
    with pytest.raises(Mistake, match=words):
        ch7.grade_kl_to_optimal(wrong)


def test_claims_have_sections_and_are_all_measured():
    keys = set(ch7.CHAPTER.claims)
    assert all(spec.section for spec in ch7.CHAPTER.claims.values())
    assert {"enum_sum", "enum_logp", "gibbs"} <= {k for k, s in ch7.CHAPTER.claims.items() if s.kind == "precision"}

    class Ctx:
        seed, fast = 0, True

    measured = {spec.id for spec in ch7.tour_enumeration(Ctx())}
    assert measured == {"ch7.enum_sum", "ch7.enum_logp"}
    # the pipeline check measures every other claim (measure_pipeline's keys)
    assert keys - {"enum_sum", "enum_logp"} == set(_few_steps_measures())


def _few_steps_measures():
    from prefkit.lm import LMConfig

    few = dict(sft_steps=20, rm_steps=5, rlhf_steps=3, dpo_steps=5, pairs_per_prompt=8, rlhf_k=2, eval_every=5)
    res = ch7.run_chapter_pipeline(LMConfig(preset="small", device="cpu", progress=False, **few), echo=lambda *a: 0)
    return ch7.measure_pipeline(res)


def test_measures_of_a_short_run_are_finite_and_gibbs_holds():
    m = _few_steps_measures()
    assert all(np.isfinite(v) for v in m.values())
    assert ch7.GIBBS.passes(m["gibbs"])
    assert 0 <= m["rm_agreement"] <= 1


def test_enumeration_errors_are_tiny():
    e = ch7.enumeration_errors(seed=3)
    assert ch7.ENUM_SUM.passes(e["sum_error"]) and ch7.ENUM_LOGP.passes(e["logp_error"])


def test_data_kl_to_uniform_matches_entropy():
    from prefkit.lm import SyntheticLanguage

    task = SyntheticLanguage(vocab=3, response_len=2, prompt_len=2, n_prompts=2, seed=1)
    p = np.exp(task.data_log_probs())
    want = np.mean(np.log(9) + np.sum(p * np.log(p), -1))
    assert ch7.data_kl_to_uniform(task) == pytest.approx(want, abs=1e-12)


def test_tour_setting_is_the_tiny_preset_with_fewer_steps_and_the_notebook_keeps_the_default():
    from prefkit.lm import LMConfig

    full, default = ch7.tour_pipeline_config(seed=4), LMConfig(seed=4, progress=False)
    assert ch7.tour_pipeline_config(seed=4, fast=True) == ch7.pipeline_config(4, fast=True)
    assert ch7.pipeline_config(4) == default  # the notebook's full run and `prefkit lm pipeline`
    assert full.preset == "tiny" and full.seed == 4
    for k, v in ch7.TOUR_STEPS.items():
        assert getattr(full, k) == v < getattr(default, k)
    # only the step counts and how often it evaluates differ from the default (language, model, batches, learning
    # rates, β are the same)
    assert full.eval_every == ch7.TOUR_EVAL_EVERY < default.eval_every
    differ = {*ch7.TOUR_STEPS, "eval_every"}
    same = {k: v for k, v in full.to_dict().items() if k not in differ}
    assert same == {k: v for k, v in default.to_dict().items() if k not in differ}
