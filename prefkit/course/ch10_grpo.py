"""Chapter 10: GRPO and its relatives, checked exactly on bandits (notebook 10_grpo.ipynb).

The library is :mod:`prefkit.grpo` (advantages, KL estimators, TRL's loss, the exact expected update and its fixed
points); this module holds the chapter's experiments (``measure_*``), its claims, its tour checks and the checkers of
its two exercises (group advantages, the k3 estimator). Section 6 carries Dr. GRPO to chapter 7's tiny LM
(:func:`prefkit.lm.train_grpo_lm`), where every response is enumerated and the forward-KL optimum is exact.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import binom

from ..closed_form import kl_divergence, optimal_policy
from ..grpo import (
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
from ..policies import TabularPolicy
from ..policy_gradient import rloo_advantages
from ..problems import random_problem
from .claims import Chapter
from .exercises import Mistake, exercise

__all__ = [
    "CHAPTER",
    "BETA",
    "GROUP_SIZE",
    "FAR_EXAMPLE",
    "instance",
    "two_response_instance",
    "brute_force_direction",
    "two_response_fixed_point",
    "measure_advantages",
    "measure_k3",
    "k3_variance_path",
    "measure_fixed_points",
    "measure_effective_beta",
    "measure_training",
    "training_setting",
    "lm_setting",
    "measure_lm",
    "grade_group_advantages",
    "grade_k3",
]

CHAPTER = Chapter(10, "GRPO: group-relative advantages", "10_grpo.ipynb")

BETA = 0.5
GROUP_SIZE = 8

# ------------------------------------------------------------------------------------------------------------------
# claims, in the order of the notebook
# ------------------------------------------------------------------------------------------------------------------
S1 = "1. Group-relative advantages and the mean inside the group"
S2 = "2. The k3 estimator: an unbiased value with a biased gradient"
S3 = "3. Exact fixed points: what each variant optimises"
S4 = "4. The standard deviation sets a β per prompt"
S5 = "5. Sampled GRPO ends at the exact fixed point"
S6 = "6. GRPO on the tiny LM, evaluated exactly"

# bug it catches: a baseline that leaves the sample out (RLOO) or a std division would change the factor
LEAVE_IN = CHAPTER.claim("leave_in", "the group mean includes the sample itself, so the expected update is exactly "
                         "(G−1)/G times the policy gradient (G = 2, 4, 8): largest error", at_most=1e-12, section=S1)
# bug: a leave-one-out mean off by one sample, or ddof in the wrong place
RLOO = CHAPTER.claim("rloo", "G/(G−1) × the unscaled group advantage is RLOO's leave-one-out advantage: largest "
                     "difference", at_most=1e-12, section=S1, kind="precision")
# bug: a wrong multinomial weight or a missing −π·ΣA term in the enumeration over groups
ENUMERATION = CHAPTER.claim("enumeration", "the exact expected update (every multiset of G responses) equals autograd "
                            "of TRL's loss averaged over every ordered group: largest difference", at_most=1e-11,
                            section=S1, kind="precision")
# bug: the ratio the wrong way round (π/π_ref) makes E[k3] = χ²-like, not the KL
K3_UNBIASED = CHAPTER.claim("k3_unbiased", "E_π[k3] = KL(π‖π_ref) exactly (sum over the support): largest error",
                            at_most=1e-12, section=S2, kind="precision")
# bug: a sampler that draws from π_ref instead of π
K3_SAMPLED = CHAPTER.claim("k3_sampled", "the mean of 4,000 sampled k3 lies within 4 standard errors (exact "
                           "variance) of the exact KL: largest |error|/SE", at_most=4.0, section=S2)
# bug: k3 computed as k1 (no −1 + ratio terms) would give ratio ≈ 1
K3_VAR_NEAR = CHAPTER.claim("k3_var_near", "near π_ref (logits moved by 0.1) k3's variance is a small fraction of "
                            "k1's: largest Var k3 / Var k1", at_most=0.05, section=S2)
# bug: the same; the far example has π_ref/π = 98 on a response π rarely samples
K3_VAR_FAR = CHAPTER.claim("k3_var_far", "… but far from π_ref it can be larger: Var k3 / Var k1 on the example "
                           "π_ref = (0.98, 0.01, 0.01), π = (0.01, 0.495, 0.495)", at_least=10.0, section=S2)
# bug: differentiating k3 through the sampling too, or a sign error in ρ
K3_GRAD_FORWARD = CHAPTER.claim("k3_grad_forward", "k3 as a loss: its expected gradient is the gradient of the "
                                "forward KL(π_ref‖π), π − π_ref (autograd): largest error", at_most=1e-12,
                                section=S2, kind="precision")
K3_GRAD_NOT_REVERSE = CHAPTER.claim("k3_grad_not_reverse", "… not of KL(π‖π_ref) (they agree only to first order "
                                    "near π_ref): largest relative difference over prompts at π* of β = 0.5",
                                    at_least=0.1, section=S2)
# bug: k2 without the ½, or with the wrong sign of the log-ratio
K2_GRAD_REVERSE = CHAPTER.claim("k2_grad_reverse", "k2 = ½(log π/π_ref)² as a loss has expected gradient "
                                "∇KL(π‖π_ref) (autograd): largest error", at_most=1e-12, section=S2, kind="precision")
K1_GRAD_ZERO = CHAPTER.claim("k1_grad_zero", "k1 = log π/π_ref as a loss has expected gradient 0 (no "
                             "regularisation at all): largest |gradient|", at_most=1e-14, section=S2, kind="precision")
# bug: a KL term with the reverse-KL gradient, or no (G−1)/G factor, would move the fixed point
DR_FORWARD = CHAPTER.claim("dr_forward", "Dr. GRPO with TRL's k3 loss stops at the forward-KL optimum "
                           "β'π_ref/(λ − r) with β' = β·G/(G−1): largest |π − π_F|", at_most=1e-9, section=S3)
DR_NOT_PI_STAR = CHAPTER.claim("dr_not_pi_star", "… which is not π* of β: mean KL(π_fixed‖π*) over prompts",
                               at_least=1e-3, section=S3)
# bug: adding the KL to the reward without the detach, or forgetting the penalty
REWARD_PI_STAR = CHAPTER.claim("reward_pi_star", "Dr. GRPO with the KL as a penalty in the reward (r − β·k1, as "
                               "PPO) stops at π* of the stated β: largest |π − π*|", at_most=1e-8, section=S3)
# bug: a k2 loss without the leave-in factor would land on π*(β) instead
K2_SHIFTED = CHAPTER.claim("k2_shifted", "Dr. GRPO with k2 as a loss stops at π* of β·G/(G−1) (the leave-in mean "
                           "shrinks only the reward part): largest |π − π*(βG/(G−1))|", at_most=1e-8, section=S3)
# bug: normalising the KL penalty separately from the reward would leave π* non-stationary
GROUP_REWARD_STATIONARY = CHAPTER.claim("group_reward_stationary", "GRPO (std division) with the KL in the reward: "
                                        "π* is stationary (the penalised reward is β log Z for every response): "
                                        "largest |expected update|", at_most=1e-10, section=S3, kind="precision")
GROUP_K3_MOVES = CHAPTER.claim("group_k3_moves", "GRPO (std division) with TRL's k3 loss: π* is not stationary: "
                               "smallest largest-|expected update| over prompts", at_least=1e-3, section=S3)
# bug: ddof 0 instead of 1, or ε left out, in either the enumeration or the binomial sum
TWO_RESPONSE = CHAPTER.claim("two_response", "two responses: GRPO's fixed point from the root-find of the enumerated "
                             "update equals the binomial closed form: largest difference", at_most=1e-10,
                             section=S4, kind="precision")
BETA_EFF_SPREAD = CHAPTER.claim("beta_eff_spread", "GRPO's effective β differs across prompts: largest / smallest "
                                "β_eff(x) over 6 prompts", at_least=1.5, section=S4)
# bug: β_eff scaling with the variance, not the std, or with the std of π_ref instead of the fixed point's
BETA_EFF_SIGMA = CHAPTER.claim("beta_eff_sigma", "for large groups β_eff(x) → β·std_π(r|x) at the fixed point "
                               "(G = 1024, prompts where G·min π ≥ 50): largest |β_eff/(β·std) − 1|", at_most=0.05,
                               section=S4)
# bug: a sampled loop whose advantage or KL term differs from the exact update's would settle elsewhere
TRAIN_FIXED = CHAPTER.claim("train_fixed", "sampled GRPO (TRL defaults, G = 8, Adam) ends near the exact fixed "
                            "point: mean TV over prompts", at_most=0.03, section=S5)
# bug: advantages with the wrong sign, or the policy and reference log-probs swapped in k3 (then the KL term pushes
# away from π_ref): the objective falls instead of rising
LM_GAIN = CHAPTER.claim("lm_gain", "Dr. GRPO on the tiny LM (one action per response, 300 steps) climbs the objective "
                        "its update ascends, E[r_φ] − β'·KL(π_ref‖π) with β' = βG/(G−1): gain over π_ref as a "
                        "fraction of the exact optimum's (closed form)", at_least=0.3, section=S6)
TRAIN_NOT_PI_STAR = CHAPTER.claim("train_not_pi_star", "… and far from π* of the stated β: TV(π, π*) / TV(π, "
                                  "fixed point)", at_least=3.0, section=S5)


# ------------------------------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------------------------------
#: (π_ref, π): π rarely samples the response that π_ref favours, so π_ref/π = 98 there.
FAR_EXAMPLE = (np.array([[0.98, 0.01, 0.01]]), np.array([[0.01, 0.495, 0.495]]))


def instance(seed: int = 0):
    """The chapter's bandit: 3 prompts × 3 responses, π_ref = softmax(Gaussian), r of scale 1.5 (seeded)."""
    return random_problem(3, 3, seed=seed, reward_scale=1.5)


def two_response_instance(seed: int = 0, n_prompts: int = 6):
    """``n_prompts`` prompts with two responses each, rewards of scale 1.5 (seeded)."""
    return random_problem(n_prompts, 2, seed=seed, reward_scale=1.5)


def brute_force_direction(pi, pi_ref, reward, beta, group_size, *, scale_rewards="group", kl_estimator="k3",
                          kl_in="loss") -> np.ndarray:
    """−E[∇_z loss] by autograd of :func:`prefkit.grpo.grpo_loss` on a :class:`TabularPolicy`, averaged over every
    *ordered* group (n^G of them): the independent reference for :func:`prefkit.grpo.expected_grpo_direction`."""
    pi = np.asarray(pi, dtype=np.float64)
    n = pi.shape[1]
    out = np.zeros(pi.shape)
    for x in range(pi.shape[0]):
        pol = TabularPolicy(pi[x:x + 1])
        ref = torch.tensor(np.log(pi_ref[x]))
        total = torch.zeros(n, dtype=torch.float64)
        for tup in itertools.product(range(n), repeat=group_size):
            y = torch.tensor(tup)
            logp = pol.log_probs()[0, y]  # (G,)
            with torch.no_grad():
                R = torch.tensor(reward[x])[y]
                if kl_in == "reward":
                    R = R - beta * kl_estimate(logp, ref[y], kl_estimator)
                A = group_advantages(R, scale_rewards)
            loss, _ = grpo_loss(logp, logp.detach(), ref[y], A, beta if kl_in == "loss" else 0.0,
                                kl_estimator=kl_estimator)
            (g,) = torch.autograd.grad(loss, pol.logits)
            total -= float(np.prod(pi[x, list(tup)])) * g[0]
        out[x] = total.numpy()
    return out


def two_response_fixed_point(pi_ref, reward, beta, group_size, eps: float = 1e-4) -> np.ndarray:
    """GRPO's (std division, k3 loss) stationary policy for two responses, from a binomial sum.

    With N ~ Bin(G, π_0) draws of response 0, q = N/G and Δ = r_0 − r_1: the group mean is r_1 + Δq, the std
    (ddof 1) |Δ|·sqrt(G q(1−q)/(G−1)), and each draw of response 0 has A = Δ(1−q)/(std + ε); the expected update of
    logit 0 is E[q·Δ(1−q)/(std + ε)] − β(π_0 − π_ref,0). Its root in π_0 is found by brentq.
    """
    out = np.zeros(np.shape(pi_ref))
    k = np.arange(group_size + 1)
    q = k / group_size
    for x in range(out.shape[0]):
        delta = reward[x, 0] - reward[x, 1]
        std = abs(delta) * np.sqrt(group_size * q * (1 - q) / (group_size - 1))
        term = q * delta * (1 - q) / (std + eps)

        def d0(p0, term=term, p_ref0=pi_ref[x, 0]):
            return float(np.sum(binom.pmf(k, group_size, p0) * term)) - beta * (p0 - p_ref0)

        p0 = brentq(d0, 1e-12, 1 - 1e-12, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
        out[x] = (p0, 1 - p0)
    return out


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def measure_advantages(seed: int = 0) -> dict:
    """The leave-in factor (G−1)/G, the RLOO identity and the enumeration against autograd, on :func:`instance`."""
    rng = np.random.default_rng(seed)
    P = instance(seed)
    pi = rng.dirichlet(np.ones(3), size=3)
    rbar = np.sum(pi * P.reward, axis=-1, keepdims=True)
    leave_in = max(float(np.max(np.abs(expected_grpo_direction(pi, P.pi_ref, P.reward, 0.0, G, scale_rewards="none")
                                       - (G - 1) / G * pi * (P.reward - rbar)))) for G in (2, 4, 8))
    R = torch.as_tensor(rng.normal(size=(5, 6)))
    rloo = float(torch.max(torch.abs(6 / 5 * group_advantages(R, "none") - rloo_advantages(R))))
    enum = 0.0
    for kw in ({"scale_rewards": "group"}, {"scale_rewards": "none"},
               {"scale_rewards": "group", "kl_estimator": "k1", "kl_in": "reward"}):
        a = expected_grpo_direction(pi, P.pi_ref, P.reward, BETA, 3, **kw)
        b = brute_force_direction(pi, P.pi_ref, P.reward, BETA, 3, **kw)
        enum = max(enum, float(np.max(np.abs(a - b))))
    return {"leave_in": leave_in, "rloo": rloo, "enumeration": enum}


def _kl_grads(pi, pi_ref):
    """∇_z KL(π_ref‖softmax z) and ∇_z KL(softmax z‖π_ref) at z = log π, by autograd (per prompt)."""
    z = torch.tensor(np.log(pi), requires_grad=True)
    ref = torch.tensor(np.log(pi_ref))
    logp = torch.log_softmax(z, dim=-1)
    forward = (ref.exp() * (ref - logp)).sum()
    (g_fwd,) = torch.autograd.grad(forward, z)
    logp = torch.log_softmax(z, dim=-1)
    reverse = (logp.exp() * (logp - ref)).sum()
    (g_rev,) = torch.autograd.grad(reverse, z)
    return g_fwd.numpy(), g_rev.numpy()


def measure_k3(seed: int = 0, n_samples: int = 4000) -> dict:
    """k1/k2/k3 as values (exact moments, a sampled mean) and as losses (exact expected gradients vs autograd)."""
    rng = np.random.default_rng(seed + 10)
    P = instance(seed)
    far = optimal_policy(P.pi_ref, P.reward, BETA)
    near = _softmax(np.log(P.pi_ref) + 0.1 * rng.normal(size=P.pi_ref.shape))
    unbiased, var_near, z_max = 0.0, 0.0, 0.0
    for pi in (far, near):
        mom = kl_estimator_moments(pi, P.pi_ref)
        kl = kl_divergence(pi, P.pi_ref)
        unbiased = max(unbiased, float(np.max(np.abs(mom["k3"]["mean"] - kl))),
                       float(np.max(np.abs(mom["k1"]["mean"] - kl))))
    mom_near = kl_estimator_moments(near, P.pi_ref)
    var_near = float(np.max(mom_near["k3"]["var"] / mom_near["k1"]["var"]))
    mom_far = kl_estimator_moments(far, P.pi_ref)
    kl_far = kl_divergence(far, P.pi_ref)
    for x in range(far.shape[0]):
        y = rng.choice(far.shape[1], size=n_samples, p=far[x])
        k3 = kl_estimate(torch.tensor(np.log(far[x, y])), torch.tensor(np.log(P.pi_ref[x, y])), "k3").numpy()
        z_max = max(z_max, abs(k3.mean() - kl_far[x]) / np.sqrt(mom_far["k3"]["var"][x] / n_samples))
    fe = kl_estimator_moments(FAR_EXAMPLE[1], FAR_EXAMPLE[0])
    g_fwd, g_rev = _kl_grads(far, P.pi_ref)
    g3 = kl_estimator_expected_gradient(far, P.pi_ref, "k3")
    g2 = kl_estimator_expected_gradient(far, P.pi_ref, "k2")
    g1 = kl_estimator_expected_gradient(far, P.pi_ref, "k1")
    rel = np.linalg.norm(g3 - g_rev, axis=-1) / np.linalg.norm(g_rev, axis=-1)
    return {"unbiased": unbiased, "sampled_z": float(z_max), "var_near": var_near,
            "var_far": float(fe["k3"]["var"][0] / fe["k1"]["var"][0]),
            "grad_forward": float(np.max(np.abs(g3 - g_fwd))), "grad_not_reverse": float(np.max(rel)),
            "grad_k2": float(np.max(np.abs(g2 - g_rev))), "grad_k1": float(np.max(np.abs(g1)))}


def k3_variance_path(pi_ref, reward, ts) -> dict:
    """Along π_t = softmax(log π_ref + t·r) (one prompt), the exact KL and the variances of k1 and k3."""
    out = {"t": np.asarray(ts, dtype=float), "kl": [], "var_k1": [], "var_k3": []}
    for t in out["t"]:
        pi = _softmax(np.log(pi_ref) + t * reward)
        m = kl_estimator_moments(pi, pi_ref)
        out["kl"].append(float(np.mean(kl_divergence(pi, pi_ref))))
        out["var_k1"].append(float(np.mean(m["k1"]["var"])))
        out["var_k3"].append(float(np.mean(m["k3"]["var"])))
    return {k: np.asarray(v) for k, v in out.items()}


def measure_fixed_points(seed: int = 0, beta: float = BETA, group_size: int = GROUP_SIZE) -> dict:
    """Every variant's exact fixed point on :func:`instance`, against the closed forms it should equal."""
    P = instance(seed)
    q, r, G = P.pi_ref, P.reward, group_size
    pi_star = optimal_policy(q, r, beta)
    fp = {
        "Dr. GRPO, k3 loss": grpo_fixed_point(q, r, beta, G, scale_rewards="none"),
        "GRPO, k3 loss (TRL)": grpo_fixed_point(q, r, beta, G, scale_rewards="group"),
        "Dr. GRPO, k1 in reward": grpo_fixed_point(q, r, beta, G, scale_rewards="none", kl_estimator="k1",
                                                   kl_in="reward"),
        "Dr. GRPO, k2 loss": grpo_fixed_point(q, r, beta, G, scale_rewards="none", kl_estimator="k2"),
    }
    forward = forward_kl_optimal_policy(q, r, beta * G / (G - 1))
    d_reward = expected_grpo_direction(pi_star, q, r, beta, G, scale_rewards="group", kl_estimator="k1",
                                       kl_in="reward")
    d_k3 = expected_grpo_direction(pi_star, q, r, beta, G, scale_rewards="group")
    return {
        "problem": P, "pi_star": pi_star, "fixed_points": fp,
        "dr_forward": float(np.max(np.abs(fp["Dr. GRPO, k3 loss"] - forward))),
        "dr_not_pi_star": float(np.mean(kl_divergence(fp["Dr. GRPO, k3 loss"], pi_star))),
        "reward_pi_star": float(np.max(np.abs(fp["Dr. GRPO, k1 in reward"] - pi_star))),
        "k2_shifted": float(np.max(np.abs(fp["Dr. GRPO, k2 loss"] - optimal_policy(q, r, beta * G / (G - 1))))),
        "group_reward_stationary": float(np.max(np.abs(d_reward))),
        "group_k3_moves": float(np.min(np.max(np.abs(d_k3), axis=-1))),
    }


def measure_effective_beta(seed: int = 0, beta: float = BETA, group_sizes=(4, 16, 64, 1024)) -> dict:
    """GRPO's per-prompt effective β on :func:`two_response_instance`: root-find vs binomial closed form, and
    β_eff(x)/β against std_π(r|x) at the fixed point for each group size."""
    P = two_response_instance(seed)
    q, r = P.pi_ref, P.reward
    out = {"group_sizes": tuple(group_sizes), "ratio": {}, "sigma": {}}
    fp8 = grpo_fixed_point(q, r, beta, GROUP_SIZE, scale_rewards="group")
    out["two_response"] = float(np.max(np.abs(fp8 - two_response_fixed_point(q, r, beta, GROUP_SIZE))))
    for G in group_sizes:
        fp = two_response_fixed_point(q, r, beta, G)
        be = effective_beta(fp, q, r)
        mean = np.sum(fp * r, axis=-1)
        out["ratio"][G] = be / beta
        out["sigma"][G] = np.sqrt(np.sum(fp * (r - mean[:, None]) ** 2, axis=-1))
    b8 = effective_beta(fp8, q, r)
    out["spread"] = float(b8.max() / b8.min())
    # the large-G limit needs many draws of both responses: prompts where G·min_y π(y) ≥ 50 at the largest G
    Gmax = max(group_sizes)
    fp = two_response_fixed_point(q, r, beta, Gmax)
    keep = Gmax * fp.min(axis=-1) >= 50
    out["sigma_limit"] = (float(np.max(np.abs(out["ratio"][Gmax][keep] / out["sigma"][Gmax][keep] - 1)))
                          if keep.any() else float("nan"))
    return out


def training_setting(fast: bool) -> dict:
    """The sampled run of section 5: steps and learning-rate schedule (fast: 300 steps; full: 800)."""
    return {"steps": 300 if fast else 800, "lr": 0.05, "lr_decay": 0.02, "group_size": GROUP_SIZE}


def measure_training(seed: int = 0, fast: bool = False) -> dict:
    """Sampled GRPO (TRL defaults: std division, k3 loss, ε = 1e-4) on :func:`instance` against its exact fixed
    point and π*: mean TV over prompts, and the run itself."""
    P = instance(seed)
    s = training_setting(fast)
    fp = grpo_fixed_point(P.pi_ref, P.reward, BETA, s["group_size"], scale_rewards="group")
    res = train_grpo(P.pi_ref, P.reward, BETA, group_size=s["group_size"], steps=s["steps"], lr=s["lr"],
                     lr_decay=s["lr_decay"], seed=seed, record_every=max(1, s["steps"] // 100))
    pi_star = optimal_policy(P.pi_ref, P.reward, BETA)

    def tv(a, b):
        return float(np.mean(0.5 * np.abs(a - b).sum(-1)))

    return {"run": res, "fixed_point": fp, "pi_star": pi_star, "tv_fixed": tv(res.pi, fp),
            "tv_pi_star": tv(res.pi, pi_star)}


def lm_setting(seed: int = 0):
    """Section 6's pipeline: chapter 7's quick setting (:meth:`prefkit.lm.LMConfig.tour`: the "small" preset, V=4,
    L=3, 8 prompts) with 300 steps of Dr. GRPO at lr 3e-3, one action per response (``grpo_per_token=False``:
    the bandit of sections 1–5 over the 64 responses), G = 8."""
    from ..lm import LMConfig

    return LMConfig.tour(seed=seed, grpo_steps=300, grpo_lr=3e-3, grpo_scale_rewards="none", grpo_per_token=False,
                         grpo_group_size=GROUP_SIZE)


def measure_lm(seed: int = 0) -> dict:
    """SFT → reward model → Dr. GRPO on the tiny LM (:func:`lm_setting`), measured exactly against the objective
    its expected update ascends.

    With the KL as TRL's k3 loss and no std division, the expected update is that of E_π[r_φ] − β'·KL(π_ref‖π),
    β' = β·G/(G−1) (section 3), whose maximiser is :func:`prefkit.grpo.forward_kl_optimal_policy` applied to π_ref
    and the reward model's table. Returns ``gain`` = (J'(π) − J'(π_ref)) / (J'(π_F) − J'(π_ref)) averaged over
    prompts, the exact per-prompt objectives, the pipeline result (its ``rows`` hold the exact summary) and
    KL(π‖π_F), KL(π‖π*_RM).
    """
    from ..closed_form import kl_divergence_logspace, optimal_log_policy
    from ..lm import ExactEvaluator
    from .ch7_tiny_lm import run_chapter_pipeline

    cfg = lm_setting(seed)
    res = run_chapter_pipeline(cfg, echo=lambda *a: None, stages=("sft", "rm", "grpo"))
    ev = ExactEvaluator(res.models["sft"], res.task, cfg.beta)
    r_phi = res.models["rm"].table(res.task)  # (n_prompts, V^L), the reward model's score of every response
    pi_ref = np.exp(ev.ref_logp)
    G = cfg.grpo_group_size
    beta_prime = cfg.beta * G / (G - 1)
    log_pi_f = np.log(forward_kl_optimal_policy(pi_ref, r_phi, beta_prime))
    log_pi = ev.log_policy(res.models["grpo"])

    def objective(logp):  # E_π[r_φ] − β'·KL(π_ref‖π), per prompt
        return np.sum(np.exp(logp) * r_phi, -1) - beta_prime * np.sum(pi_ref * (ev.ref_logp - logp), -1)

    j_ref, j, j_f = objective(ev.ref_logp), objective(log_pi), objective(log_pi_f)
    star_rm = optimal_log_policy(pi_ref, r_phi, cfg.beta)
    return {"gain": float(np.mean(j - j_ref) / np.mean(j_f - j_ref)), "objective": j, "objective_ref": j_ref,
            "objective_max": j_f, "beta_prime": beta_prime, "result": res,
            "kl_fixed": float(np.mean(kl_divergence_logspace(log_pi, log_pi_f))),
            "kl_star_rm": float(np.mean(kl_divergence_logspace(log_pi, star_rm)))}


# ------------------------------------------------------------------------------------------------------------------
# tour checks
# ------------------------------------------------------------------------------------------------------------------
@CHAPTER.check("group advantages and the leave-in mean")
def tour_advantages(ctx):
    m = measure_advantages(ctx.seed)
    return {LEAVE_IN: m["leave_in"], RLOO: m["rloo"], ENUMERATION: m["enumeration"]}


@CHAPTER.check("k3: value and gradient")
def tour_k3(ctx):
    m = measure_k3(ctx.seed)
    if ctx.figdir is not None:
        from ..plotting.grpo import plot_k3_variance

        P = instance(ctx.seed)
        ctx.savefig(plot_k3_variance(k3_variance_path(P.pi_ref[:1], P.reward[:1], np.linspace(0, 6, 61))),
                    "ch10_k3_variance.png")
    return {K3_UNBIASED: m["unbiased"], K3_SAMPLED: m["sampled_z"], K3_VAR_NEAR: m["var_near"],
            K3_VAR_FAR: m["var_far"], K3_GRAD_FORWARD: m["grad_forward"], K3_GRAD_NOT_REVERSE: m["grad_not_reverse"],
            K2_GRAD_REVERSE: m["grad_k2"], K1_GRAD_ZERO: m["grad_k1"]}


@CHAPTER.check("exact fixed points")
def tour_fixed_points(ctx):
    m = measure_fixed_points(ctx.seed)
    if ctx.figdir is not None:
        from ..plotting.grpo import plot_fixed_points

        P = m["problem"]
        ctx.savefig(plot_fixed_points(P.pi_ref[0], m["pi_star"][0], {k: v[0] for k, v in m["fixed_points"].items()}),
                    "ch10_fixed_points.png")
    return {DR_FORWARD: m["dr_forward"], DR_NOT_PI_STAR: m["dr_not_pi_star"], REWARD_PI_STAR: m["reward_pi_star"],
            K2_SHIFTED: m["k2_shifted"], GROUP_REWARD_STATIONARY: m["group_reward_stationary"],
            GROUP_K3_MOVES: m["group_k3_moves"]}


@CHAPTER.check("effective β per prompt")
def tour_effective_beta(ctx):
    m = measure_effective_beta(ctx.seed, group_sizes=(4, 1024) if ctx.fast else (4, 16, 64, 1024))
    if ctx.figdir is not None:
        from ..plotting.grpo import plot_effective_beta

        ctx.savefig(plot_effective_beta(m["sigma"], m["ratio"]), "ch10_effective_beta.png")
    return {TWO_RESPONSE: m["two_response"], BETA_EFF_SPREAD: m["spread"], BETA_EFF_SIGMA: m["sigma_limit"]}


@CHAPTER.check("sampled GRPO")
def tour_training(ctx):
    m = measure_training(ctx.seed, ctx.fast)
    if ctx.figdir is not None:
        from ..plotting.grpo import plot_training

        ctx.savefig(plot_training(m["run"], m["fixed_point"], m["pi_star"]), "ch10_training.png")
    return {TRAIN_FIXED: m["tv_fixed"], TRAIN_NOT_PI_STAR: m["tv_pi_star"] / m["tv_fixed"]}


@CHAPTER.check("GRPO on the tiny LM", slow=True)
def tour_lm(ctx):
    return {LM_GAIN: measure_lm(ctx.seed)["gain"]}


# ------------------------------------------------------------------------------------------------------------------
# exercises: group advantages and k3
# ------------------------------------------------------------------------------------------------------------------
def _as_array(out, what):
    if isinstance(out, torch.Tensor):
        out = out.detach().numpy()
    try:
        return np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise Mistake(f"{what} must return an array of numbers, got {type(out).__name__}") from None


def _adv_reference(R, scale):
    return group_advantages(torch.as_tensor(R), scale).numpy()


@exercise("ch10.group_advantages", stub="my_group_advantages", solution="ch10_grpo:group_advantages",
          title="GRPO's group advantages")
def grade_group_advantages(fn):
    """Check ``fn(rewards, scale) -> advantages`` for rewards of shape (B, G) and scale True/False (TRL's
    ``scale_rewards="group"`` / ``"none"``, ε = 1e-4, std with ddof 1) against :func:`prefkit.grpo.group_advantages`.

    Rejects, naming the mistake: the wrong shape; the std with ddof 0 (numpy's default); no ε (a group with equal
    rewards gives NaN); the mean or std over the whole batch instead of each group; a leave-one-out mean (RLOO's);
    dividing when ``scale`` is False.
    """
    rng = np.random.default_rng(0)
    R = rng.normal(size=(4, 6))
    for scale in (True, False):
        with np.errstate(all="ignore"):
            got = _as_array(fn(R.copy(), scale), "my_group_advantages")
        want = _adv_reference(R, "group" if scale else "none")
        if got.shape != want.shape:
            raise Mistake(f"returns shape {got.shape} for rewards of shape (4, 6): one advantage per sample, (B, G)")
        if np.allclose(got, want, rtol=1e-10, atol=1e-12):
            continue
        mean = R.mean(-1, keepdims=True)
        if scale and np.allclose(got, (R - mean) / (R.std(-1, keepdims=True) + 1e-4), rtol=1e-8):
            raise Mistake("the std has ddof 0 (numpy's default): TRL uses torch's std, with Bessel's correction "
                          "(ddof=1)")
        if scale and np.allclose(got, (R - mean) / R.std(-1, ddof=1, keepdims=True), rtol=1e-8):
            raise Mistake("ε is missing: divide by std + 1e-4, or a group whose rewards are all equal gives 0/0")
        if np.allclose(got, (R - R.mean()) / ((R.std(ddof=1) + 1e-4) if scale else 1.0), rtol=1e-8) or (
                scale and np.allclose(got, (R - mean) / (R.std(ddof=1) + 1e-4), rtol=1e-8)):
            raise Mistake("the mean or the std is taken over the whole batch: both are per group (the last axis, "
                          "keepdims=True)")
        loo = R - (R.sum(-1, keepdims=True) - R) / 5
        if np.allclose(got, loo, rtol=1e-8) or (scale and np.allclose(got, loo / (R.std(-1, ddof=1, keepdims=True)
                                                                                + 1e-4), rtol=1e-8)):
            raise Mistake("that is RLOO's leave-one-out mean: GRPO subtracts the mean of the whole group, the sample "
                          "included")
        if not scale and np.allclose(got, _adv_reference(R, "group"), rtol=1e-8):
            raise Mistake("with scale=False (Dr. GRPO) the advantage is r − mean only: no division by the std")
        raise Mistake(f"advantages are wrong (scale={scale}, largest error {np.max(np.abs(got - want)):.3g}): "
                      "A = (r − mean_group)/(std_group + 1e-4), or r − mean_group without scaling")
    flat = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
    with np.errstate(all="ignore"):
        got = _as_array(fn(flat.copy(), True), "my_group_advantages")
    if not np.all(np.isfinite(got)):
        raise Mistake("a group whose rewards are all equal gives NaN: add ε = 1e-4 to the std (its advantages are 0)")
    if not np.allclose(got, _adv_reference(flat, "group"), rtol=1e-10, atol=1e-12):
        raise Mistake("a group with equal rewards must get advantages 0, and (0, 1, 0, 1) gets ±0.5/(std + 1e-4)")


def _k3_cases():
    rng = np.random.default_rng(1)
    logp = np.log(rng.dirichlet(np.ones(5), size=4))
    ref = np.log(rng.dirichlet(np.ones(5), size=4))
    return logp, ref


@exercise("ch10.k3", stub="my_k3", solution="ch10_grpo:k3", title="Schulman's k3 estimator")
def grade_k3(fn):
    """Check ``fn(logp, ref_logp) -> k3`` elementwise against :func:`prefkit.grpo.kl_estimate` (``"k3"``).

    Rejects, naming the mistake: the wrong shape; k1 (log π − log π_ref); the ratio the wrong way round
    (π/π_ref); a missing −1; a missing log-ratio term; not ≥ 0; not 0 where π = π_ref.
    """
    logp, ref = _k3_cases()
    with np.errstate(all="ignore"):
        got = _as_array(fn(logp.copy(), ref.copy()), "my_k3")
    lt, rt = torch.tensor(logp), torch.tensor(ref)
    want = kl_estimate(lt, rt, "k3").numpy()
    if got.shape != want.shape:
        raise Mistake(f"returns shape {got.shape}: k3 is elementwise, shape {want.shape}")
    if np.allclose(got, want, rtol=1e-10, atol=1e-12):
        same = _as_array(fn(logp.copy(), logp.copy()), "my_k3")
        if not np.allclose(same, 0.0, atol=1e-14):
            raise Mistake("k3 must be exactly 0 where π = π_ref")
        return
    log_rho = ref - logp
    if np.allclose(got, -log_rho, rtol=1e-8):
        raise Mistake("that is k1 = log π − log π_ref (unbiased, but it can be negative and has a high variance): "
                      "k3 = ρ − 1 − log ρ with ρ = π_ref/π")
    if np.allclose(got, np.exp(-log_rho) + log_rho - 1, rtol=1e-8):
        raise Mistake("the ratio is the wrong way round: ρ = π_ref/π = exp(ref_logp − logp), not π/π_ref")
    if np.allclose(got, np.exp(log_rho) - log_rho, rtol=1e-8):
        raise Mistake("the −1 is missing: k3 = ρ − 1 − log ρ, which is 0 at ρ = 1")
    if np.allclose(got, np.exp(log_rho) - 1, rtol=1e-8):
        raise Mistake("the −log ρ term is missing: k3 = ρ − 1 − log ρ (ρ − 1 alone has mean 0 under π)")
    if np.any(got < -1e-12):
        raise Mistake("k3 is negative somewhere: ρ − 1 − log ρ ≥ 0 for every ρ > 0")
    raise Mistake(f"k3 is wrong (largest error {np.max(np.abs(got - want)):.3g}): k3 = ρ − 1 − log ρ with "
                  "ρ = exp(ref_logp − logp)")
