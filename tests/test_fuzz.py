"""Fuzz every exported function of ``prefkit.__all__`` (prefkit.lm has its own tests): bad input gets a clear
error and nothing escapes.

For each function a small valid call is written out below (``CASES``). Hypothesis then replaces one argument
at a time by a hostile value: NaN, ±inf, a complex number, an empty array, a huge (×1e300, 1e308) or tiny
(×1e-300, 5e-324) value, a wrong shape, a negative value, index −1, None, a string, a bool, a float where an
integer belongs, a torch tensor that requires grad. The function must then either

* return a result in which no number is NaN or ±inf (the few documented ±inf values are listed in
  ``INF_ALLOWED``), or
* raise ``ValueError`` whose message names one of the function's arguments (``inspect.signature``) or, for a
  file argument, the file.

Any other exception, a NaN/inf in the output, a ``ComplexWarning`` (numpy dropping an imaginary part) or a
ValueError that names no argument fails the test. The examples are derandomised and the budget fixed
(``EXAMPLES`` per function, fewer for the training loops), so the file runs in well under a minute on one core.

Skipped exports (not callable with data, or result containers built only by the fits), by name:
``LOSSES`` (a dict; its entries are fuzzed through ``preference_loss``), ``BradleyTerryFit``,
``PlackettLuceFit``, ``GaoFit``, ``RewardCurve``, ``RewardModelResult``, ``RLResult``, ``DPOResult``,
``RLHFPipelineResult``, ``DisplacementRun``, ``EmbeddingPopulation``, ``TrainedPolicy``, ``FDPOFit``,
``GRPOResult`` (result records whose numbers are checked through the functions that return them). Modules in
``PENDING_MODULES`` (none now) would be left out until they pass.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefkit

SKIPPED = {
    "LOSSES", "FDPOFit", "GRPOResult", "ConvergenceWarning",
    "BradleyTerryFit", "PlackettLuceFit", "GaoFit", "RewardCurve", "RewardModelResult", "RLResult",
    "DPOResult", "RLHFPipelineResult", "DisplacementRun", "EmbeddingPopulation", "TrainedPolicy",
}

# Modules of work in progress: their valid calls are in CASES, but they are not fuzzed while their module is in
# this set. Empty since issue 11 (prefkit.grpo passes at the default budget and at PREFKIT_FUZZ_EXAMPLES=400).
PENDING_MODULES: set[str] = set()

EXAMPLES = int(os.environ.get("PREFKIT_FUZZ_EXAMPLES", 60))  # hypothesis examples per function
EXAMPLES_SLOW = max(1, EXAMPLES // 4)  # for the training loops

# ----------------------------------------------------------------------------------------------- valid calls
PI = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
R = np.array([[1.0, 0.0, -1.0], [0.5, -0.5, 2.0]])
PREFS = np.array([[0, 0, 1], [0, 1, 2], [1, 2, 0], [1, 0, 1]])
CMP = np.array([[0, 1], [1, 2], [2, 0], [1, 0]])
RANKS = np.array([[0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1]])
PMAT = np.array([[0.5, 0.7, 0.2], [0.3, 0.5, 0.6], [0.8, 0.4, 0.5]])
BASEBALL = prefkit.load_baseball()
FEAT = np.arange(18, dtype=float).reshape(2, 3, 3) % 5 / 5.0


_TMP = Path(tempfile.mkdtemp(prefix="prefkit_fuzz_"))
JSONL = _TMP / "prefs.jsonl"
JSONL.write_text("".join(json.dumps({"prompt": f"x{x}", "chosen": f"y{w}", "rejected": f"y{l}"}) + "\n"
                         for x, w, l in PREFS.tolist()))
CSV = _TMP / "judgements.csv"
CSV.write_text("left,right,winner\na,b,left\nb,c,tie\nc,a,right\nb,a,left\n")


def _t(*v):
    return torch.tensor(np.asarray(v, dtype=np.float64))


def _problem():
    return prefkit.Problem(PI.copy(), R.copy(), FEAT.copy())


def _dproblem():
    return prefkit.tabular_chain_problem()


CASES = {
    # Bradley-Terry
    "sigmoid": lambda: dict(x=[0.0, 3.0]),
    "log_sigmoid": lambda: dict(x=[0.0, -3.0]),
    "bt_probability": lambda: dict(strength_i=[1.0, 0.0], strength_j=[0.0, 2.0], order_effect=0.1),
    "bt_log_likelihood": lambda: dict(strengths=[0.5, 0.0, -0.5], comparisons=CMP.copy(),
                                      weights=[1.0, 2.0, 1.0, 0.5]),
    "bt_log_likelihood_gradient": lambda: dict(strengths=[0.5, 0.0, -0.5], comparisons=CMP.copy(),
                                               weights=[1.0, 2.0, 1.0, 0.5]),
    "bt_fisher_information": lambda: dict(strengths=[0.5, 0.0, -0.5], comparisons=CMP.copy(),
                                          weights=[1.0, 2.0, 1.0, 0.5]),
    "fit_bradley_terry": lambda: dict(comparisons=CMP.copy(), n_items=3, weights=[1.0, 2.0, 1.0, 0.5], l2=0.0,
                                      tol=1e-10),
    "mle_obstruction": lambda: dict(comparisons=CMP.copy(), n_items=3, weights=[1.0, 2.0, 1.0, 0.5]),
    "sample_comparisons": lambda: dict(strengths=[0.5, 0.0, -0.5], n=5, rng=0),
    # best-of-n, over-optimisation
    "best_of_n_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), n=4),
    "best_of_n_log_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), n=4),
    "best_of_n_kl": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), n=4),
    "best_of_n_kl_bound": lambda: dict(n=4),
    "best_of_n_curve": lambda: dict(pi_ref=PI.copy(), gold=R.copy(), proxy=R[::-1].copy(), ns=[1, 2, 4]),
    "fit_gao": lambda: dict(d=[0.0, 0.5, 1.0, 1.5, 2.0], gain=[0.0, 0.4, 0.6, 0.7, 0.6], form="bon"),
    "gao_bon": lambda: dict(d=[0.0, 1.0, 2.0], alpha=1.0, beta=0.2),
    "gao_rl": lambda: dict(d=[0.0, 1.0, 2.0], alpha=1.0, beta=0.2),
    "kl_optimal_curve": lambda: dict(pi_ref=PI.copy(), gold=R.copy(), proxy=R[::-1].copy(), betas=[0.5, 1.0]),
    "policy_curve": lambda: dict(pi_ref=PI.copy(), gold=R.copy(), proxy=R[::-1].copy(),
                                 policies=[PI.copy(), PI[:, ::-1].copy()], knob=[1.0, 2.0]),
    # the closed form
    "argmax_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy()),
    "implied_reward": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), beta=0.5),
    "kl_divergence": lambda: dict(p=PI[:, ::-1].copy(), q=PI.copy()),
    "kl_divergence_logspace": lambda: dict(logp=np.log(PI[:, ::-1]), logq=np.log(PI)),
    "kl_regularized_objective": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), reward=R.copy(),
                                             beta=0.5),
    "log_partition": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5),
    "optimal_log_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5),
    "optimal_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5),
    "reward_gap_up_to_shift": lambda: dict(reward=R.copy(), reward_true=R[::-1].copy(), pi_ref=PI.copy()),
    "reward_kl_frontier": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), betas=[0.5, 1.0]),
    "rewards_from_preference_probabilities": lambda: dict(prob_beats_first=[[0.5, 0.7, 0.2]]),
    "dpo_solution_set": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, preferences=PREFS.copy()),
    "dpo_landing_point": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, preferences=PREFS.copy()),
    "ipo_optimum": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy(), tau=0.5, weights=[1.0, 2.0, 1.0, 1.0]),
    # Plackett-Luce, Nash
    "all_rankings": lambda: dict(n_items=3, length=2),
    "fit_plackett_luce": lambda: dict(rankings=RANKS.copy(), n_items=3, weights=[1.0, 2.0, 1.0, 0.5], l2=0.0),
    "pl_fisher_information": lambda: dict(strengths=[0.5, 0.0, -0.5], rankings=RANKS.copy(),
                                          weights=[1.0, 2.0, 1.0, 0.5]),
    "pl_log_likelihood": lambda: dict(strengths=[0.5, 0.0, -0.5], rankings=RANKS.copy(),
                                      weights=[1.0, 2.0, 1.0, 0.5]),
    "pl_log_likelihood_gradient": lambda: dict(strengths=[0.5, 0.0, -0.5], rankings=RANKS.copy(),
                                               weights=[1.0, 2.0, 1.0, 0.5]),
    "pl_log_probability": lambda: dict(strengths=[0.5, 0.0, -0.5], rankings=RANKS.copy()),
    "pl_mle_obstruction": lambda: dict(rankings=RANKS.copy(), n_items=3, weights=[1.0, 2.0, 1.0, 0.5]),
    "sample_rankings": lambda: dict(strengths=[0.5, 0.0, -0.5], n=4, rng=0, length=2),
    "exploitability": lambda: dict(P=PMAT.copy(), pi=[0.2, 0.3, 0.5], pi_ref=[1 / 3] * 3, beta=0.5),
    "nash_equilibrium": lambda: dict(P=PMAT.copy()),
    "nash_md": lambda: dict(P=PMAT.copy(), pi_ref=[0.2, 0.3, 0.5], beta=0.5, eta=0.5, steps=5,
                            pi0=[1 / 3] * 3),
    "nash_md_step": lambda: dict(pi=[1 / 3] * 3, P=PMAT.copy(), pi_ref=[0.2, 0.3, 0.5], beta=0.5, eta=0.5),
    "regularized_nash": lambda: dict(P=PMAT.copy(), pi_ref=[0.2, 0.3, 0.5], beta=0.5),
    # data and problems
    "PairwiseData": lambda: dict(names=["a", "b", "c"], comparisons=CMP.copy(), weights=[1.0, 1.0, 1.0, 0.5],
                                 winner_first=[True, False, True, True]),
    "load_baseball": lambda: dict(path=None),
    "load_llmfao": lambda: dict(path=CSV),
    "load_pairwise_csv": lambda: dict(path=CSV, left="left", right="right", winner="winner", left_wins=("left",),
                                      right_wins=("right",), ties=("tie",)),
    "Problem": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), features=FEAT.copy()),
    "random_problem": lambda: dict(n_prompts=2, n_responses=3, seed=0, d=2, reward_scale=1.0, ref_scale=1.0,
                                   support=1.0),
    "read_preferences_jsonl": lambda: dict(path=JSONL, n_prompts=2, n_responses=3),
    "tajwar_bandit": lambda: dict(n_actions=20, mode=5, mu=10.0, width=3.0, scale=0.1),
    "tanh_cauchy_bins": lambda: dict(n_actions=20, mode=5, scale=0.1),
    "three_response_toy": lambda: dict(reward=(1.0, 0.0, -1.0), pi_ref=[0.2, 0.3, 0.5]),
    "write_preferences_jsonl": lambda: dict(path=_TMP / "out.jsonl", preferences=PREFS.copy(),
                                           response_names=["a", "b", "c"]),
    # likelihood displacement
    "logratio_gradient": lambda: dict(logits=[0.0, 1.0, -1.0], chosen=0, rejected=2),
    "logp_chosen_velocity": lambda: dict(features=FEAT[0].copy(), logits=[0.0, 1.0, -1.0], chosen=0, rejected=2),
    "squeeze_first_order": lambda: dict(pi=[0.2, 0.3, 0.5], rejected=1),
    "ches_score": lambda: dict(hidden_chosen=FEAT[0].copy(), hidden_rejected=FEAT[1, :2].copy()),
    "ches_per_pair": lambda: dict(hidden_chosen=[FEAT[0].copy(), FEAT[1].copy()],
                                  hidden_rejected=[FEAT[1, :2].copy(), FEAT[0, :1].copy()]),
    "response_hidden_states": lambda: dict(hidden=FEAT[0].copy(), prompt_length=1),
    "DisplacementProblem": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy()),
    "embedding_population": lambda: dict(n_pairs=3, n_responses=4, d=2, vocab=3, max_len=2, rho=0.5,
                                         prompt_scale=0.5, extend_prob=0.5, seed=0),
    "tabular_one_pair_problem": lambda: dict(n_prompts=2, n_responses=3, seed=0),
    "tabular_chain_problem": lambda: dict(seed=0, ref_scale=0.5),
    "unconstrained_features_problem": lambda: dict(n_tokens=8, d=3, seed=0),
    "yes_no_never_problem": lambda: dict(jitter=0.1, seed=0),
    # policies and reward models (torch)
    "TabularPolicy": lambda: dict(pi_ref=PI.copy()),
    "LogLinearPolicy": lambda: dict(pi_ref=PI.copy(), features=FEAT.copy(), theta=[0.1, 0.0, -0.1]),
    "make_policy": lambda: dict(pi_ref=PI.copy(), features=FEAT.copy()),
    "reward_loss": lambda: dict(reward_chosen=_t(1.0, 0.0), reward_rejected=_t(0.0, 0.5), margin=_t(0.1, 0.0),
                                center_coef=0.01),
    "fit_reward_model": lambda: dict(preferences=PREFS.copy(), n_prompts=2, n_responses=3, weights=[1.0] * 4,
                                     l2=1e-4, steps=5, seed=0),
    "preference_accuracy": lambda: dict(reward=R.copy(), preferences=PREFS.copy(), weights=[1.0, 2.0, 1.0, 1.0]),
    "reward_recovery_error": lambda: dict(reward=R.copy(), reward_true=R[::-1].copy(), pi_ref=PI.copy()),
    # policy gradients, RL
    "rloo_advantages": lambda: dict(rewards=_t([1.0, 0.0, 2.0])),
    "reinforce_loss": lambda: dict(logp=_t(-1.0, -2.0), advantages=_t(0.5, -0.5), reduction="mean"),
    "ppo_clip_loss": lambda: dict(logp=_t(-1.0, -2.0), old_logp=_t(-1.1, -1.9), advantages=_t(0.5, -0.5),
                                  clip_eps=0.2, reduction="mean"),
    "kl_penalized_reward": lambda: dict(reward=_t(1.0, 0.0), logp=_t(-1.0, -2.0), ref_logp=_t(-1.1, -1.9),
                                        beta=0.5),
    "rlhf_objective": lambda: dict(logp=torch.log(_t(*PI)), ref_logp=torch.log(_t(*PI[:, ::-1])), reward=_t(*R),
                                   beta=0.5),
    "exact_policy_gradient": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), reward=R.copy(), beta=0.5),
    "train_rlhf": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, steps=3, k=2, seed=0),
    "classical_rlhf": lambda: dict(problem=_problem(), beta=0.5, n_pairs=10, seed=0,
                                   rm_kwargs={"steps": 3}, rl_kwargs={"steps": 3, "k": 2}),
    "gap_decomposition": lambda: dict(pi_final=PI[:, ::-1].copy(), pi_ref=PI.copy(), reward_true=R.copy(),
                                      reward_model=R[::-1].copy(), beta=0.5),
    # DPO
    "preference_loss": lambda: dict(logp_chosen=_t(-1.0, -2.0), logp_rejected=_t(-2.0, -1.0),
                                    ref_logp_chosen=_t(-1.5, -1.5), ref_logp_rejected=_t(-1.5, -1.5), beta=0.5,
                                    loss_type="sigmoid", label_smoothing=0.1),
    "dpo_rewards": lambda: dict(logp=_t(-1.0, -2.0), ref_logp=_t(-1.5, -1.5), beta=0.5),
    "preference_metrics": lambda: dict(logp_chosen=_t(-1.0, -2.0), logp_rejected=_t(-2.0, -1.0),
                                       ref_logp_chosen=_t(-1.5, -1.5), ref_logp_rejected=_t(-1.5, -1.5), beta=0.5,
                                       weights=_t(1.0, 2.0)),
    "fit_dpo": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy(), beta=0.5, weights=[1.0, 2.0, 1.0, 1.0],
                            loss_type="ipo", optimizer="lbfgs", steps=5),
    "fit_dpo_online": lambda: dict(problem=_problem(), beta=0.5, rounds=1, pairs_per_round=5, steps_per_round=2,
                                   seed=0),
    "dpo_obstruction": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy(), weights=[1.0, 2.0, 1.0, 1.0]),
    "total_variation": lambda: dict(p=PI[:, ::-1].copy(), q=PI.copy()),
    "dpo_loss_value": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), preferences=PREFS.copy(), beta=0.5,
                                   weights=[1.0, 2.0, 1.0, 1.0]),
    "listwise_loss": lambda: dict(logps=_t([-1.0, -2.0, -3.0]), ref_logps=_t([-2.0, -2.0, -2.0]), beta=0.5),
    "ranking_probabilities": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), k=2),
    "fit_listwise_dpo": lambda: dict(pi_ref=PI.copy(), rankings=np.array([[0, 0, 1, 2], [1, 2, 0, 1]]), beta=0.5,
                                     weights=[1.0, 2.0], steps=5),
    "displacement_step": lambda: dict(logp=np.log(PI[:, ::-1]), logp_init=np.log(PI), preferences=PREFS.copy()),
    "train_displacement": lambda: dict(problem=_dproblem(), beta=0.5, steps=3, lr=0.05),
    "squeeze_trajectory": lambda: dict(pi_ref=[0.2, 0.3, 0.5], rejected=1, beta=1.0, steps=3, lr=0.5),
    # variants of one function ("name#variant"): other methods and code paths, fuzzed the same way
    "fit_bradley_terry#mm_order_effect": lambda: dict(comparisons=BASEBALL.comparisons.copy(), n_items=7,
                                                      weights=BASEBALL.weights.copy(), method="mm",
                                                      winner_first=BASEBALL.winner_first.copy()),
    "fit_bradley_terry#l2": lambda: dict(comparisons=CMP[:2].copy(), n_items=3, weights=[1.0, 2.0], l2=0.1),
    "fit_plackett_luce#mm": lambda: dict(rankings=RANKS.copy(), weights=[1.0, 2.0, 1.0, 0.5], method="mm"),
    "fit_dpo#newton": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy(), beta=0.5, loss_type="ipo",
                                   optimizer="newton", steps=3),
    "fit_dpo#adam_features": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy(), beta=0.5, features=FEAT.copy(),
                                          optimizer="adam", steps=3, lr=0.1, sft_coef=0.1),
    "preference_loss#ipo_lengths": lambda: dict(logp_chosen=_t(-1.0, -2.0), logp_rejected=_t(-2.0, -1.0),
                                                ref_logp_chosen=_t(-1.5, -1.5), ref_logp_rejected=_t(-1.5, -1.5),
                                                beta=0.5, loss_type="ipo", length_chosen=_t(2.0, 3.0),
                                                length_rejected=_t(1.0, 4.0)),
    "fit_reward_model#linear": lambda: dict(preferences=PREFS.copy(), n_prompts=2, n_responses=3, model="linear",
                                            features=FEAT.copy(), margin=[0.1, 0.0, 0.2, 0.0], steps=5),
    "train_rlhf#ppo": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, method="ppo", steps=2, k=2,
                                   clip_eps=0.2, ppo_epochs=2, features=FEAT.copy()),
    "train_rlhf#exact": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, method="exact", steps=3, lr=0.5),
    # GRPO (issue 15)
    "group_advantages": lambda: dict(rewards=_t([1.0, 0.0, 2.0, 1.0]), scale_rewards="group", eps=1e-4),
    "kl_estimate": lambda: dict(logp=_t(-1.0, -2.0), ref_logp=_t(-1.5, -1.5), estimator="k3"),
    "grpo_loss": lambda: dict(logp=_t(-1.0, -2.0), old_logp=_t(-1.1, -1.9), ref_logp=_t(-1.5, -1.5),
                              advantages=_t(0.5, -0.5), beta=0.1, epsilon_low=0.2, epsilon_high=0.3),
    "train_grpo": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.1, group_size=2, steps=2, lr=0.05, seed=0),
    "kl_estimator_moments": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy()),
    "kl_estimator_expected_gradient": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), estimator="k3"),
    "expected_grpo_direction": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), reward=R.copy(), beta=0.1,
                                            group_size=2),
    "grpo_fixed_point": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, group_size=2, flow_steps=50),
    "forward_kl_optimal_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5),
    "effective_beta": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), reward=R.copy()),
    # f-DPO
    "f_function": lambda: dict(u=[0.5, 1.0, 2.0], f_divergence_type="js_divergence", alpha=0.5),
    "f_score": lambda: dict(logratio=[-1.0, 0.0, 1.0], f_divergence_type="alpha_divergence", alpha=0.5),
    "f_normalizer": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, f_divergence_type="js_divergence"),
    "f_optimal_policy": lambda: dict(pi_ref=PI.copy(), reward=R.copy(), beta=0.5, f_divergence_type="js_divergence"),
    "f_divergence_value": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), f_divergence_type="alpha_divergence",
                                       alpha=0.5),
    "f_regularized_objective": lambda: dict(pi=PI[:, ::-1].copy(), pi_ref=PI.copy(), reward=R.copy(), beta=0.5,
                                            f_divergence_type="js_divergence"),
    "f_dpo_loss": lambda: dict(logp_chosen=_t(-1.0, -2.0), logp_rejected=_t(-2.0, -1.0),
                               ref_logp_chosen=_t(-1.5, -1.5), ref_logp_rejected=_t(-1.5, -1.5), beta=0.5,
                               f_divergence_type="js_divergence"),
    "fit_f_dpo": lambda: dict(pi_ref=PI.copy(), preferences=PREFS.copy(), beta=0.5, weights=[1.0, 2.0, 1.0, 1.0],
                              f_divergence_type="js_divergence", max_iter=20),
}

SLOW = {"fit_bradley_terry#mm_order_effect", "fit_dpo#newton", "fit_dpo#adam_features", "fit_reward_model#linear",
        "train_rlhf#ppo", "train_rlhf#exact", "fit_bradley_terry", "fit_plackett_luce", "fit_reward_model",
        "train_rlhf", "classical_rlhf", "fit_dpo",
        "fit_dpo_online", "fit_listwise_dpo", "train_displacement", "fit_f_dpo", "f_optimal_policy", "f_normalizer",
        "f_regularized_objective", "train_grpo", "grpo_fixed_point", "expected_grpo_direction",
        "embedding_population", "unconstrained_features_problem", "regularized_nash", "nash_equilibrium"}

# outputs that may hold ±inf by documented design (never NaN): name -> why
INF_ALLOWED = {
    "log_sigmoid": "log σ(−inf) = −inf",
    "bt_probability": "an infinite strength (an item off the support) is accepted and loses with probability 1",
    "best_of_n_log_policy": "log 0 = -inf off pi_ref's support",
    "optimal_log_policy": "log 0 = -inf off pi_ref's support",
    "implied_reward": "beta*log(pi/pi_ref) is -inf where pi = 0",
    "kl_divergence": "+inf exactly when p puts mass where q has none",
    "kl_divergence_logspace": "+inf exactly when p puts mass where q has none",
    "kl_regularized_objective": "-inf when pi puts mass where pi_ref has none",
    "reward_kl_frontier": "never inf in practice; listed for the same reason as kl_divergence",
    "displacement_step": "log-probs of -inf are the log of a probability 0",
    "TabularPolicy": "log pi_ref = -inf off the support",
    "LogLinearPolicy": "log pi_ref = -inf off the support",
    "make_policy": "log pi_ref = -inf off the support",
    "rlhf_objective": "never inf in practice",
    "DisplacementProblem": "",
    "dpo_solution_set": "log-probabilities of -inf off the support",
}
INF_ALLOWED_NAMES = set(INF_ALLOWED)


def _pending():
    return {k for k in set(prefkit.__all__) | set(CASES)
            if getattr(_fn(k), "__module__", "") in PENDING_MODULES}


def test_every_export_is_fuzzed_or_skipped():
    names = set(prefkit.__all__) - _pending()
    fuzzed = {k.split("#")[0] for k in set(CASES) - _pending()}
    skipped = SKIPPED - _pending()
    assert names == fuzzed | skipped, (names - fuzzed - skipped, fuzzed - names)


# ------------------------------------------------------------------------------------------------- mutations
def _as_array(v):
    if isinstance(v, torch.Tensor):
        return v.detach().numpy().astype(np.float64)
    return np.asarray(v)


def _like(v, a):
    """``a`` in the type of ``v`` (a tensor stays a tensor)."""
    if isinstance(v, torch.Tensor):
        return torch.as_tensor(a) if a.dtype.kind != "c" else torch.as_tensor(a)
    return a


def _numeric(v):
    if isinstance(v, (bool, str, type(None))) or callable(v):
        return False
    try:
        a = _as_array(v)
    except Exception:
        return False
    return a.dtype.kind in "biuf"


def _scale(v, s):
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return type(v)(v * s) if isinstance(v, float) else v * s
    with np.errstate(over="ignore"):
        a = _as_array(v).astype(np.float64) * s
    return _like(v, a)


def _put(v, x):
    """v with its first entry replaced by x (a scalar becomes x)."""
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return x
    a = _as_array(v).astype(np.float64 if isinstance(x, float) else np.asarray(x).dtype).copy()
    if a.size == 0:
        return v
    a.flat[0] = x
    return _like(v, a)


def _complex(v):
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return complex(v, 1.0)
    a = _as_array(v).astype(np.complex128) + 1e-3j
    return torch.as_tensor(a) if isinstance(v, torch.Tensor) else a


def _empty(v):
    a = _as_array(v)
    shape = (0,) + a.shape[1:] if a.ndim else (0,)
    return _like(v, np.zeros(shape, dtype=a.dtype))


def _drop_last(v):
    a = _as_array(v)
    if a.ndim == 0:
        return _like(v, a.reshape(1, 1))
    return _like(v, a[..., :-1].copy())


def _add_axis(v):
    return _like(v, _as_array(v)[None].copy())


def _grad_tensor(v):
    a = _as_array(v).astype(np.float64)
    return torch.tensor(a, requires_grad=True)


MUTATIONS = {
    "nan": lambda v: _put(v, float("nan")),
    "inf": lambda v: _put(v, float("inf")),
    "-inf": lambda v: _put(v, float("-inf")),
    "complex": _complex,
    "empty": _empty,
    "huge": lambda v: _scale(v, 1e300),
    "max": lambda v: _put(v, 1e308),
    "tiny": lambda v: _scale(v, 1e-300),
    "subnormal": lambda v: _put(v, 5e-324),
    "negative": lambda v: _scale(v, -1),
    "minus_one": lambda v: _put(v, -1) if _as_array(v).dtype.kind in "iu" else _put(v, -1.0),
    "zero": lambda v: _scale(v, 0),
    "drop_last": _drop_last,
    "add_axis": _add_axis,
    "float_for_int": lambda v: _put(v, 1.5),
    "grad_tensor": _grad_tensor,
}
GENERIC = {
    "none": lambda v: None,
    "string": lambda v: "a",
    "bool": lambda v: True,
    "object": lambda v: object(),
    "ragged": lambda v: [[1.0], [1.0, 2.0]],
}


def _mutate(value, kind):
    if kind in GENERIC:
        return GENERIC[kind](value)
    if not _numeric(value):
        if isinstance(value, list) and value and _numeric(value[0]):  # a list of arrays: mutate the first
            return [_mutate(value[0], kind), *value[1:]]
        return None
    return MUTATIONS[kind](value)


# ------------------------------------------------------------------------------------------------ the check
def _numbers(obj, depth=0):
    """Every float array/number reachable in a result (arrays, tensors, dicts, lists, dataclasses, fits)."""
    if depth > 4 or obj is None or isinstance(obj, (str, bytes, bool, type)):
        return
    if isinstance(obj, torch.nn.Module):
        if hasattr(obj, "log_probs"):
            with torch.no_grad():
                yield "log_probs", obj.log_probs().double().numpy(), True
        for name, p in obj.named_parameters():
            yield name, p.detach().double().numpy(), False
        return
    if isinstance(obj, torch.Tensor):
        yield "tensor", obj.detach().double().numpy(), False
        return
    if isinstance(obj, (np.ndarray, np.generic, int, float)):
        a = np.asarray(obj)
        if a.dtype.kind in "iufc":
            yield "array", a, False
        return
    if hasattr(obj, "toarray"):  # scipy sparse
        yield "sparse", obj.toarray(), False
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            for name, a, inf_ok in _numbers(v, depth + 1):
                yield f"{k}.{name}", a, inf_ok
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj[:50]):
            for name, a, inf_ok in _numbers(v, depth + 1):
                yield f"[{i}].{name}", a, inf_ok
        return
    attrs = [a for a in ("strengths", "stderr", "covariance", "order_effect", "order_effect_stderr",
                         "log_likelihood", "policy", "pi", "reward", "history", "gap", "pi_star", "pi_ref",
                         "features", "weights", "comparisons", "preferences", "logp", "kl", "gold", "proxy",
                         "alpha", "beta", "r2", "similarity", "rl", "reward_model")
             if hasattr(type(obj), a) or a in getattr(obj, "__dict__", {})]
    for a in attrs:
        try:
            v = getattr(obj, a)
        except ValueError:
            continue
        for name, arr, inf_ok in _numbers(v, depth + 1):
            yield f"{a}.{name}", arr, inf_ok or a in ("pi_ref", "features", "logp", "pi_star")


def _fn(key):
    """The function of a CASES key ("name" or "name#variant")."""
    return getattr(prefkit, key.split("#")[0])


def _param_names(fn):
    target = fn.__init__ if inspect.isclass(fn) else fn
    return [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]


def _check_call(name, kwargs, mutated_arg):
    fn = _fn(name)
    with warnings.catch_warnings(), contextlib.chdir(_TMP):  # a relative path written lands in the temp folder
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        try:
            out = fn(**kwargs)
        except ValueError as exc:
            msg = str(exc)
            names = _param_names(fn)
            files = [str(v) for k, v in kwargs.items()
                     if hasattr(v, "__fspath__") or ("path" in k and isinstance(v, str))]
            assert any(n in msg for n in names) or any(f in msg for f in files), (
                f"{name}({mutated_arg} mutated): ValueError names no argument of {names}: {msg}")
            return "error"
    for where, a, inf_ok in _numbers(out):
        a = np.asarray(a)
        if a.dtype.kind == "c":
            pytest.fail(f"{name}({mutated_arg} mutated): complex output at {where}")
        if a.dtype.kind != "f":
            continue
        assert not np.isnan(a).any(), f"{name}({mutated_arg} mutated): NaN in the output at {where}"
        if name not in INF_ALLOWED_NAMES and not inf_ok:
            assert np.isfinite(a).all(), f"{name}({mutated_arg} mutated): inf in the output at {where}"
    return "ok"


DRAWN = ["scale_by_10^e", "drawn_values"]  # mutations whose parameters hypothesis draws
ALL_KINDS = sorted(MUTATIONS) + sorted(GENERIC) + DRAWN


def _drawn(value, kind, data):
    """A numeric argument multiplied by 10**e (e from -330 to 308), or refilled entry by entry with any floats."""
    if isinstance(value, list) and value and _numeric(value[0]):
        return [_drawn(value[0], kind, data), *value[1:]]
    if not _numeric(value):
        return None
    if kind == "scale_by_10^e":
        return _scale(value, 10.0 ** data.draw(st.integers(-330, 308), label="e"))
    a = _as_array(value).astype(np.float64)
    vals = data.draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
                              min_size=a.size, max_size=a.size), label="values")
    return _like(value, np.asarray(vals, dtype=np.float64).reshape(a.shape)) if a.ndim else vals[0]


def _fuzz(name, data):
    base = CASES[name]()
    args = list(base)
    if not args:
        return
    arg = data.draw(st.sampled_from(args), label="argument")
    kinds = ALL_KINDS if _numeric(base[arg]) or isinstance(base[arg], list) else sorted(GENERIC)
    kind = data.draw(st.sampled_from(kinds), label="mutation")
    kwargs = dict(base)
    kwargs[arg] = _drawn(base[arg], kind, data) if kind in DRAWN else _mutate(base[arg], kind)
    _check_call(name, kwargs, f"{arg}:{kind}")


def test_every_valid_case_runs():
    """The base calls themselves are valid: they return without error, with finite outputs."""
    for name in sorted(set(CASES) - _pending()):
        assert _check_call(name, CASES[name](), "none") == "ok", name


FAST = sorted(set(CASES) - SLOW - _pending())


@pytest.mark.parametrize("name", FAST)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz(name, data):
    _fuzz(name, data)


@pytest.mark.parametrize("name", sorted(SLOW - _pending()))
@settings(max_examples=EXAMPLES_SLOW, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_slow(name, data):
    _fuzz(name, data)
