"""prefkit: a numerical laboratory for preference learning.

Classical RLHF and DPO on problems small enough that every quantity has an exact answer, with the theory checked
against those answers. This namespace lists the names a user calls. The numpy parts (Bradley-Terry, the closed
form, the problems, the data loaders) are imported at once; the torch parts (policies, reward models, RL, DPO,
displacement) load on first use, so ``import prefkit`` does not import torch.

The chapters (experiments, claims, exercises, the tour) are in :mod:`prefkit.course`, which the library never
imports; the tiny transformer is :mod:`prefkit.lm`.
"""

from typing import TYPE_CHECKING

# --- numpy only: imported with the package ---------------------------------------------------------------------
from ._validate import ConvergenceWarning
from .best_of_n import best_of_n_kl, best_of_n_kl_bound, best_of_n_log_policy, best_of_n_policy
from .bradley_terry import (
    BradleyTerryFit,
    bt_fisher_information,
    bt_log_likelihood,
    bt_log_likelihood_gradient,
    bt_probability,
    fit_bradley_terry,
    log_sigmoid,
    mle_obstruction,
    sample_comparisons,
    sigmoid,
)
from .ches import ches_per_pair, ches_score, response_hidden_states
from .closed_form import (
    argmax_policy,
    implied_reward,
    kl_divergence,
    kl_divergence_logspace,
    kl_regularized_objective,
    log_partition,
    optimal_log_policy,
    optimal_policy,
    reward_gap_up_to_shift,
    reward_kl_frontier,
    rewards_from_preference_probabilities,
)
from .displacement_problems import (
    DisplacementProblem,
    EmbeddingPopulation,
    embedding_population,
    tabular_chain_problem,
    tabular_one_pair_problem,
    unconstrained_features_problem,
    yes_no_never_problem,
)
from .displacement_theory import logp_chosen_velocity, logratio_gradient, squeeze_first_order
from .loaders import PairwiseData, load_baseball, load_llmfao, load_pairwise_csv
from .nash import exploitability, nash_equilibrium, nash_md, nash_md_step, regularized_nash
from .optima import dpo_landing_point, dpo_solution_set, ipo_optimum
from .overoptimisation import (
    GaoFit,
    RewardCurve,
    best_of_n_curve,
    fit_gao,
    gao_bon,
    gao_rl,
    kl_optimal_curve,
    policy_curve,
)
from .plackett_luce import (
    PlackettLuceFit,
    all_rankings,
    fit_plackett_luce,
    pl_fisher_information,
    pl_log_likelihood,
    pl_log_likelihood_gradient,
    pl_log_probability,
    pl_mle_obstruction,
    sample_rankings,
)
from .problems import (
    Problem,
    random_problem,
    read_preferences_jsonl,
    tajwar_bandit,
    tanh_cauchy_bins,
    three_response_toy,
    write_preferences_jsonl,
)

# --- torch: loaded on first use (name -> module) ---------------------------------------------------------------
_LAZY = {
    # policies
    "TabularPolicy": "policies", "LogLinearPolicy": "policies", "make_policy": "policies",
    "TrainedPolicy": "policies",
    # reward models
    "reward_loss": "reward_model", "RewardModelResult": "reward_model", "fit_reward_model": "reward_model",
    "preference_accuracy": "reward_model", "reward_recovery_error": "reward_model",
    # policy gradients, RL, the classical RLHF pipeline
    "rloo_advantages": "policy_gradient", "reinforce_loss": "policy_gradient", "ppo_clip_loss": "policy_gradient",
    "kl_penalized_reward": "policy_gradient", "rlhf_objective": "policy_gradient",
    "exact_policy_gradient": "policy_gradient", "RLResult": "rl", "train_rlhf": "rl",
    "RLHFPipelineResult": "rlhf_pipeline", "classical_rlhf": "rlhf_pipeline", "gap_decomposition": "rlhf_pipeline",
    # preference losses and DPO
    "LOSSES": "losses", "preference_loss": "losses", "dpo_rewards": "losses", "preference_metrics": "losses",
    "DPOResult": "dpo", "fit_dpo": "dpo", "fit_dpo_online": "dpo", "dpo_obstruction": "dpo",
    "total_variation": "dpo", "dpo_loss_value": "dpo",
    # f-DPO: other f-divergences than the reverse KL (Wang et al. 2023; TRL's f_divergence_type)
    "f_function": "f_divergence", "f_score": "f_divergence", "f_divergence_value": "f_divergence",
    "f_regularized_objective": "f_divergence", "f_normalizer": "f_divergence", "f_optimal_policy": "f_divergence",
    "f_dpo_loss": "f_divergence", "FDPOFit": "f_divergence", "fit_f_dpo": "f_divergence",
    # DPO on rankings (Plackett-Luce)
    "listwise_loss": "listwise", "ranking_probabilities": "listwise", "fit_listwise_dpo": "listwise",
    # likelihood displacement
    "displacement_step": "displacement_tracking", "DisplacementRun": "displacement_training",
    "train_displacement": "displacement_training", "squeeze_trajectory": "displacement_training",
    # GRPO and its relatives (chapter 10)
    "group_advantages": "grpo", "kl_estimate": "grpo", "grpo_loss": "grpo", "GRPOResult": "grpo",
    "train_grpo": "grpo", "kl_estimator_moments": "grpo", "kl_estimator_expected_gradient": "grpo",
    "expected_grpo_direction": "grpo", "grpo_fixed_point": "grpo", "forward_kl_optimal_policy": "grpo",
    "effective_beta": "grpo",
}

if TYPE_CHECKING:  # for editors and type checkers: the lazy names, imported explicitly
    from .displacement_tracking import displacement_step  # noqa: F401
    from .displacement_training import DisplacementRun, squeeze_trajectory, train_displacement  # noqa: F401
    from .dpo import (  # noqa: F401
        DPOResult,
        dpo_loss_value,
        dpo_obstruction,
        fit_dpo,
        fit_dpo_online,
        total_variation,
    )
    from .f_divergence import (  # noqa: F401
        FDPOFit,
        f_divergence_value,
        f_dpo_loss,
        f_function,
        f_normalizer,
        f_optimal_policy,
        f_regularized_objective,
        f_score,
        fit_f_dpo,
    )
    from .grpo import (  # noqa: F401
        GRPOResult,
        effective_beta,
        expected_grpo_direction,
        forward_kl_optimal_policy,
        group_advantages,
        grpo_fixed_point,
        grpo_loss,
        kl_estimate,
        kl_estimator_expected_gradient,
        kl_estimator_moments,
        train_grpo,
    )
    from .listwise import fit_listwise_dpo, listwise_loss, ranking_probabilities  # noqa: F401
    from .losses import LOSSES, dpo_rewards, preference_loss, preference_metrics  # noqa: F401
    from .policies import LogLinearPolicy, TabularPolicy, TrainedPolicy, make_policy  # noqa: F401
    from .policy_gradient import (  # noqa: F401
        exact_policy_gradient,
        kl_penalized_reward,
        ppo_clip_loss,
        reinforce_loss,
        rlhf_objective,
        rloo_advantages,
    )
    from .reward_model import (  # noqa: F401
        RewardModelResult,
        fit_reward_model,
        preference_accuracy,
        reward_loss,
        reward_recovery_error,
    )
    from .rl import RLResult, train_rlhf  # noqa: F401
    from .rlhf_pipeline import RLHFPipelineResult, classical_rlhf, gap_decomposition  # noqa: F401


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prefkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    # the warning every fit gives when it stops short of its tolerance
    "ConvergenceWarning",
    # Bradley-Terry
    "BradleyTerryFit", "bt_fisher_information", "bt_log_likelihood", "bt_log_likelihood_gradient", "bt_probability",
    "fit_bradley_terry", "log_sigmoid", "mle_obstruction", "sample_comparisons", "sigmoid",
    # best-of-n and over-optimisation (chapter 8)
    "best_of_n_policy", "best_of_n_log_policy", "best_of_n_kl", "best_of_n_kl_bound", "GaoFit", "RewardCurve",
    "best_of_n_curve", "fit_gao", "gao_bon", "gao_rl", "kl_optimal_curve", "policy_curve",
    # the closed form
    "argmax_policy", "implied_reward", "kl_divergence", "kl_divergence_logspace", "kl_regularized_objective",
    "log_partition", "optimal_log_policy", "optimal_policy", "reward_gap_up_to_shift", "reward_kl_frontier",
    "rewards_from_preference_probabilities",
    # where DPO-family losses are minimised, in closed form
    "dpo_solution_set", "dpo_landing_point", "ipo_optimum",
    # Plackett-Luce rankings and preferences without a reward (chapter 9)
    "PlackettLuceFit", "all_rankings", "fit_plackett_luce", "pl_fisher_information", "pl_log_likelihood",
    "pl_log_likelihood_gradient", "pl_log_probability", "pl_mle_obstruction", "sample_rankings",
    "exploitability", "nash_equilibrium", "nash_md", "nash_md_step", "regularized_nash",
    # data and problems
    "PairwiseData", "load_baseball", "load_llmfao", "load_pairwise_csv", "Problem", "random_problem",
    "read_preferences_jsonl", "tajwar_bandit", "tanh_cauchy_bins", "three_response_toy", "write_preferences_jsonl",
    # likelihood displacement: the gradient facts, CHES, the problems
    "logratio_gradient", "logp_chosen_velocity", "squeeze_first_order", "ches_score", "ches_per_pair",
    "response_hidden_states", "DisplacementProblem", "EmbeddingPopulation", "embedding_population",
    "tabular_one_pair_problem", "tabular_chain_problem", "unconstrained_features_problem", "yes_no_never_problem",
    *_LAZY,
]

__version__ = "0.2.0"
