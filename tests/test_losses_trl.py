"""The loss types TRL 1.16 has (aot, aot_unpaired, apo_down, discopop, sigmoid_norm, sft) and f-DPO, checked two ways:

1. against formulas written here from the papers, independently of prefkit.losses (always runs);
2. against TRL 1.16's own code: ``DPOTrainer._compute_loss`` is called, unbound, on a stand-in trainer and model
   whose forward pass returns given per-token log-probs, so every line of TRL's loss runs on the same random numbers
   as prefkit's (float64, to 1e-10). Skipped where trl 1.16 is not installed (CI does not install it).

Each test names, in a comment, the plausible bug it catches.
"""

import collections
import contextlib
import math
import types

import numpy as np
import pytest
import torch

from prefkit.f_divergence import F_DPO_LOSS_TYPES, f_dpo_loss
from prefkit.losses import LOSSES, preference_loss

TRL_TYPES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
             "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]  # TRL 1.16's list
LENGTH_TYPES = ("ipo", "sigmoid_norm", "sft")  # the loss types where TRL uses the completion lengths
SMOOTHED = ("robust", "exo_pair", "aot", "aot_unpaired")  # the loss types where TRL uses label_smoothing


def log_sig(x):
    return -np.logaddexp(0.0, -x)


def sig(x):
    return np.exp(log_sig(x))


def _batch(seed, B=8, T=6):
    """Per-token policy log-probs of B chosen and B rejected completions (lengths 1..T, masked), and sequence-level
    reference log-probs; returns the token tensors, masks, lengths, and the sequence sums."""
    rng = np.random.default_rng(seed)
    n_w, n_l = rng.integers(1, T + 1, B), rng.integers(1, T + 1, B)
    ar = np.arange(T)
    mask_w, mask_l = (ar < n_w[:, None]).astype(float), (ar < n_l[:, None]).astype(float)  # (B, T)
    tok_w, tok_l = -rng.uniform(0, 2, (B, T)) * mask_w, -rng.uniform(0, 2, (B, T)) * mask_l  # (B, T)
    ref_w, ref_l = -rng.uniform(0, 1.6 * T, B), -rng.uniform(0, 1.6 * T, B)
    return dict(tok_w=tok_w, tok_l=tok_l, mask_w=mask_w, mask_l=mask_l, n_w=n_w, n_l=n_l, ref_w=ref_w,
                ref_l=ref_l, lw=tok_w.sum(1), ll=tok_l.sum(1))


def _prefkit(d, beta, loss_type, eps=0.0, f="reverse_kl", alpha=0.5):
    kw = dict(length_chosen=d["n_w"], length_rejected=d["n_l"]) if loss_type in LENGTH_TYPES else {}
    return f_dpo_loss(*(torch.as_tensor(d[k]) for k in ("lw", "ll", "ref_w", "ref_l")), beta, loss_type, eps,
                      f_divergence_type=f, alpha=alpha, **kw)


# --- 1. independent formulas ----------------------------------------------------------------------------------

def _reference(d, beta, loss_type, eps, tau=0.05):
    """Per-position losses written from the papers (TRL's formulas), independently of prefkit.losses."""
    c, r = d["lw"] - d["ref_w"], d["ll"] - d["ref_l"]
    m = beta * (c - r)
    if loss_type == "aot":  # sort the policy's and the reference's chosen-minus-rejected gaps separately
        delta = np.sort(d["lw"] - d["ll"]) - np.sort(d["ref_w"] - d["ref_l"])
        return -(1 - eps) * log_sig(beta * delta) - eps * log_sig(-beta * delta)
    if loss_type == "aot_unpaired":
        delta = np.sort(c) - np.sort(r)
        return -(1 - eps) * log_sig(beta * delta) - eps * log_sig(-beta * delta)
    if loss_type == "apo_down":
        return sig(beta * c) + 1 - sig(m)
    if loss_type == "discopop":
        return -log_sig(m) * (1 - sig(m / tau)) + np.exp(-m) * sig(m / tau)
    if loss_type == "sigmoid_norm":
        return -log_sig(beta * (c / d["n_w"] - r / d["n_l"]))
    if loss_type == "sft":  # mean over pairs = mean NLL over all chosen tokens of the batch
        return np.full(len(c), -d["tok_w"].sum() / d["mask_w"].sum())
    raise KeyError(loss_type)


NEW = ["aot", "aot_unpaired", "apo_down", "discopop", "sigmoid_norm", "sft"]


def test_table_has_every_trl_loss_type():
    # catches: a TRL 1.16 loss type missing from the table, or a row without its paper
    assert set(TRL_TYPES) <= set(LOSSES)
    for name in NEW:
        assert " et al. 20" in LOSSES[name].__doc__


@pytest.mark.parametrize("loss_type", NEW)
@pytest.mark.parametrize("beta", [0.05, 0.5, 3.0])
def test_new_losses_match_the_papers(loss_type, beta):
    # catches: aot sorting the log-ratios instead of the policy's and reference's gaps (or not sorting at all), a
    # sign slip in apo_down, discopop's weights swapped between its logistic and exponential parts, sigmoid_norm
    # without the lengths, sft averaged per sequence instead of per token
    d = _batch(hash(loss_type) % 1000)
    eps = 0.1 if loss_type in SMOOTHED else 0.0
    got = _prefkit(d, beta, loss_type, eps).numpy()
    want = _reference(d, beta, loss_type, eps)
    if loss_type == "sft":  # prefkit returns each pair's share, TRL the batch value: the means agree
        np.testing.assert_allclose(got.mean(), want.mean(), rtol=1e-13)
        np.testing.assert_allclose(got, -d["lw"] / d["n_w"].mean(), rtol=1e-13)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss_type", NEW)
def test_new_losses_gradcheck(loss_type):
    # catches: a non-differentiable step (e.g. sorting with .detach(), an in-place op) in a new loss
    d = _batch(3, B=5)
    kw = dict(length_chosen=d["n_w"], length_rejected=d["n_l"]) if loss_type in LENGTH_TYPES else {}
    eps = 0.2 if loss_type in SMOOTHED else 0.0
    inputs = (torch.tensor(d["lw"], requires_grad=True), torch.tensor(d["ll"], requires_grad=True))
    assert torch.autograd.gradcheck(lambda a, b: preference_loss(a, b, torch.tensor(d["ref_w"]),
                                                                 torch.tensor(d["ref_l"]), 0.4, loss_type, eps, **kw),
                                    inputs)


def test_discopop_stays_finite_where_the_plain_formula_is_nan():
    # catches: computing exp(−m)·σ(m/τ) literally, which is inf·0 = NaN for m ≲ −709 (preference_loss would raise)
    z = torch.zeros(2, dtype=torch.float64)
    loss = preference_loss(torch.tensor([-900.0, -2000.0]), z, z, z, 1.0, "discopop")
    np.testing.assert_allclose(loss.numpy(), [900.0, 2000.0], rtol=1e-12)  # the logistic part alone remains


def test_lengths_are_refused_where_trl_does_not_use_them():
    # catches: silently ignoring lengths passed to a loss that does not use them
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="length_chosen"):
        preference_loss(z, z, z, z, 1.0, "sigmoid", length_chosen=[1, 2], length_rejected=[1, 2])
    with pytest.raises(ValueError, match="length_chosen"):
        preference_loss(z, z, z, z, 1.0, "sft", length_chosen=[1, -2], length_rejected=[1, 2])


# --- 2. TRL 1.16's own code -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trl_compute_loss():
    trl = pytest.importorskip("trl", reason="trl is not installed (pip install trl==1.16.0 transformers==5.24.0)")
    if not trl.__version__.startswith("1.16."):
        pytest.skip(f"these checks are against trl 1.16; found trl {trl.__version__}")
    from trl.trainer.dpo_trainer import DPOTrainer

    return DPOTrainer._compute_loss


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _trl(compute_loss, d, beta, loss_type, eps=0.0, f="reverse_kl", alpha=0.5, weights=None, dtype=torch.float64):
    """TRL's loss (a scalar) on the per-token log-probs of `d`. The stand-in model returns them as TRL's fused LM
    head does (zero outside the completion); the reference log-probs come precomputed, as with
    precompute_ref_log_probs=True. TRL builds label_smoothing tensors in the default dtype, so float64 is set."""
    B, T = d["tok_w"].shape
    log_probs = torch.as_tensor(np.concatenate([d["tok_w"], d["tok_l"]]), dtype=dtype)  # (2B, T) batch = [w, l]
    masks = np.concatenate([d["mask_w"], d["mask_l"]])
    completion_mask = torch.as_tensor(np.hstack([np.zeros((2 * B, 1)), masks]), dtype=torch.long)  # prompt token
    outputs = types.SimpleNamespace(log_probs=log_probs, entropy=torch.zeros_like(log_probs),
                                    mean_logits=torch.zeros_like(log_probs),
                                    is_top1=torch.zeros_like(log_probs, dtype=torch.bool))
    accelerator = types.SimpleNamespace(device="cpu", gather_for_metrics=lambda t: t, gather=lambda t: t)
    loss_types = loss_type if isinstance(loss_type, list) else [loss_type]
    trainer = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), accelerator=accelerator, ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type=f, f_alpha_divergence_coef=alpha, beta=beta, loss_types=loss_types,
        loss_weights=weights or [1.0] * len(loss_types), label_smoothing=eps,
        args=types.SimpleNamespace(discopop_tau=0.05), use_weighting=False, aux_loss_enabled=False,
        _metrics=collections.defaultdict(lambda: collections.defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros_like(completion_mask), "attention_mask": torch.ones_like(completion_mask),
              "completion_mask": completion_mask, "ref_chosen_logps": torch.as_tensor(d["ref_w"], dtype=dtype),
              "ref_rejected_logps": torch.as_tensor(d["ref_l"], dtype=dtype)}
    with _default_dtype(dtype):
        return float(compute_loss(trainer, lambda **kw: outputs, inputs, False))


@pytest.mark.parametrize("loss_type", TRL_TYPES)
def test_every_loss_type_matches_trl(trl_compute_loss, loss_type):
    # catches: any departure from TRL 1.16 in a formula, in the per-token lengths (ipo, sigmoid_norm, sft), in the
    # label smoothing (robust, exo_pair, aot), in aot's sorting, or in which log-probs are subtracted from which
    worst = 0.0
    for seed in range(3):
        d = _batch(seed)
        for beta in (0.05, 0.3, 2.0):
            for eps in ((0.0, 0.1, 0.3) if loss_type in SMOOTHED and loss_type != "exo_pair" else
                        (1e-3, 0.2) if loss_type == "exo_pair" else (0.0,)):
                got = float(_prefkit(d, beta, loss_type, eps).mean())
                want = _trl(trl_compute_loss, d, beta, loss_type, eps)
                worst = max(worst, abs(got - want) / max(1.0, abs(want)))
    assert worst < 1e-10, worst  # measured: at most 4e-16


def test_trl_ignores_label_smoothing_for_sigmoid(trl_compute_loss):
    # the documented departure: prefkit's sigmoid with ε > 0 is cDPO (Mitchell 2023); TRL 1.16's ignores ε.
    # Catches: the departure disappearing silently (in either library).
    d = _batch(7)
    want = _trl(trl_compute_loss, d, 0.3, "sigmoid", 0.2)
    assert abs(want - float(_prefkit(d, 0.3, "sigmoid", 0.0).mean())) < 1e-12
    assert abs(want - float(_prefkit(d, 0.3, "sigmoid", 0.2).mean())) > 1e-3


def test_rpo_combination_matches_trl(trl_compute_loss):
    # catches: the sft term on the wrong response or with the wrong normalisation when combined (RPO:
    # loss_type=["sigmoid", "sft"], loss_weights=[1, w])
    d = _batch(8)
    want = _trl(trl_compute_loss, d, 0.2, ["sigmoid", "sft"], weights=[1.0, 0.7])
    got = float(_prefkit(d, 0.2, "sigmoid").mean() + 0.7 * _prefkit(d, 0.2, "sft").mean())
    assert abs(got - want) < 1e-12


@pytest.mark.parametrize("f", ["forward_kl", "js_divergence"])
@pytest.mark.parametrize("loss_type", F_DPO_LOSS_TYPES)
def test_f_divergences_match_trl(trl_compute_loss, f, loss_type):
    # catches: a score off TRL's by a constant (it would survive in sigmoid but not in ipo/sigmoid_norm with
    # unequal lengths), the wrong f', or scores not divided by the lengths
    worst = 0.0
    for seed in range(3):
        d = _batch(20 + seed)
        for beta in (0.1, 1.0):
            eps = {"exo_pair": 0.01, "robust": 0.1}.get(loss_type, 0.0)
            got = float(_prefkit(d, beta, loss_type, eps, f=f).mean())
            want = _trl(trl_compute_loss, d, beta, loss_type, eps, f=f)
            worst = max(worst, abs(got - want) / max(1.0, abs(want)))
    assert worst < 1e-10, worst


@pytest.mark.parametrize("alpha", [0.5, 0.2, -0.5, 1.0])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "sigmoid_norm"])
def test_alpha_divergence_matches_trl_in_float32(trl_compute_loss, alpha, loss_type):
    # TRL's alpha-divergence has no float64 path (its clamp table lacks float64: KeyError), so it runs in float32
    # here and agrees to float32's precision. Catches: the α convention (TRL's a vs Wang et al.'s 1 − a), the
    # a = 1 fallback to the reverse KL.
    d = _batch(30, T=3)
    want = _trl(trl_compute_loss, d, 0.5, loss_type, f="alpha_divergence", alpha=alpha, dtype=torch.float32)
    got = float(_prefkit(d, 0.5, loss_type, f="alpha_divergence", alpha=alpha).mean())
    assert abs(got - want) < 1e-5 * max(1.0, abs(want))
    if alpha != 1.0:
        with pytest.raises(KeyError):
            _trl(trl_compute_loss, d, 0.5, loss_type, f="alpha_divergence", alpha=alpha)
    assert math.isfinite(got)
