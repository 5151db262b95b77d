"""prefkit.losses against independent numpy formulas, torch autograd / finite differences, and fuzzing."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.losses import LOSSES, dpo_rewards, preference_loss, preference_metrics


def log_sig(x):
    return -np.logaddexp(0.0, -x)


def sig(x):
    return np.exp(log_sig(x))


# Written from the papers / TRL 1.16's DPOTrainer._compute_loss, independently of prefkit.losses.
# Arguments: c = chosen log-ratio, r = rejected log-ratio, b = beta, e = label smoothing.
REFERENCE = {
    "sigmoid": lambda c, r, b, e: -(1 - e) * log_sig(b * (c - r)) - e * log_sig(-b * (c - r)),
    "ipo": lambda c, r, b, e: (c - r - 1.0 / (2.0 * b)) ** 2,
    "hinge": lambda c, r, b, e: np.maximum(0.0, 1.0 - b * (c - r)),
    "robust": lambda c, r, b, e: ((1 - e) * -log_sig(b * (c - r)) - e * -log_sig(-b * (c - r))) / (1 - 2 * e),
    "bco_pair": lambda c, r, b, e: -log_sig(b * c) - log_sig(-b * r),
    "sppo_hard": lambda c, r, b, e: (c - 1 / (2 * b)) ** 2 + (r + 1 / (2 * b)) ** 2,
    "nca_pair": lambda c, r, b, e: -log_sig(b * c) - 0.5 * log_sig(-b * c) - 0.5 * log_sig(-b * r),
    "apo_zero": lambda c, r, b, e: 1 - sig(b * c) + sig(b * r),
    "exo_pair": lambda c, r, b, e: (sig(b * (c - r)) * (log_sig(b * (c - r)) - np.log(1 - e))
                                    + sig(-b * (c - r)) * (log_sig(-b * (c - r)) - np.log(e))),
    "aot_unpaired": lambda c, r, b, e: (-(1 - e) * log_sig(b * (np.sort(c) - np.sort(r)))
                                        - e * log_sig(-b * (np.sort(c) - np.sort(r)))),
    "apo_down": lambda c, r, b, e: sig(b * c) + 1 - sig(b * (c - r)),
    "discopop": lambda c, r, b, e: (-log_sig(b * (c - r)) * (1 - sig(b * (c - r) / 0.05))
                                    + np.exp(-b * (c - r)) * sig(b * (c - r) / 0.05)),
    "sigmoid_norm": lambda c, r, b, e: -log_sig(b * (c - r)),  # lengths 1 (tests/test_losses_trl.py: with lengths)
}
# aot (needs the raw log-probs) and sft (the chosen NLL) are checked in tests/test_losses_trl.py
NOT_LOGRATIO_ONLY = {"aot", "sft"}


def _batch(seed, B=16, scale=3.0):
    rng = np.random.default_rng(seed)
    return [-np.abs(rng.normal(0, scale, B)) for _ in range(4)]  # log-probs are <= 0


def test_table_is_complete():
    required = {"sigmoid", "ipo", "hinge", "robust"}
    wanted = {"bco_pair", "sppo_hard", "nca_pair", "apo_zero", "exo_pair", "aot", "aot_unpaired", "apo_down",
              "discopop", "sigmoid_norm", "sft"}
    assert required | wanted == set(LOSSES) == set(REFERENCE) | NOT_LOGRATIO_ONLY
    for fn in LOSSES.values():
        assert " et al. 20" in fn.__doc__  # the paper cited (AOT, LN-DPO and TRL's sft cite no equation number)


@pytest.mark.parametrize("loss_type", sorted(REFERENCE))
@pytest.mark.parametrize("beta", [0.05, 0.5, 3.0])
def test_matches_independent_formula(loss_type, beta):
    lw, ll, rw, rl = _batch(hash(loss_type) % 1000)
    eps = 0.1 if loss_type in {"sigmoid", "robust", "exo_pair"} else 0.0
    got = preference_loss(*map(torch.tensor, (lw, ll, rw, rl)), beta, loss_type, eps).numpy()
    want = REFERENCE[loss_type](lw - rw, ll - rl, beta, eps)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss_type", ["sigmoid", "robust"])
def test_label_smoothing_zero_is_dpo(loss_type):
    lw, ll, rw, rl = map(torch.tensor, _batch(3))
    np.testing.assert_allclose(preference_loss(lw, ll, rw, rl, 0.3, loss_type, 0.0),
                               -torch.nn.functional.logsigmoid(0.3 * ((lw - rw) - (ll - rl))), rtol=1e-14)


def test_dpo_gradient_is_sigmoid_of_minus_margin():
    """Rafailov et al. 2023, §4: d loss / d logp_chosen = −β·σ(−margin); pairs already right weigh less."""
    lw, ll, rw, rl = _batch(4)
    beta = 0.7
    t = torch.tensor(lw, requires_grad=True)
    preference_loss(t, torch.tensor(ll), torch.tensor(rw), torch.tensor(rl), beta).sum().backward()
    margin = beta * ((lw - rw) - (ll - rl))
    np.testing.assert_allclose(t.grad.numpy(), -beta * sig(-margin), rtol=1e-12)


@pytest.mark.parametrize("loss_type", sorted(LOSSES))
def test_gradcheck(loss_type):
    lw, ll, rw, rl = _batch(7, B=5)
    eps = 0.2 if loss_type in {"sigmoid", "robust", "exo_pair"} else 0.0
    if loss_type == "hinge":  # keep away from the kink at margin = 1
        ll = lw - rw + rl - 0.5 - np.linspace(0, 0.5, 5)  # margin in [0.2, 0.4]
    inputs = (torch.tensor(lw, requires_grad=True), torch.tensor(ll, requires_grad=True))
    assert torch.autograd.gradcheck(
        lambda a, b: preference_loss(a, b, torch.tensor(rw), torch.tensor(rl), 0.4, loss_type, eps), inputs)


def test_ipo_per_token_average_matches_trl_form():
    lw, ll, rw, rl = _batch(5, B=6)
    n_w, n_l = np.arange(1, 7), np.array([3, 1, 4, 1, 5, 0])
    tau = 0.25
    got = preference_loss(*map(torch.tensor, (lw, ll, rw, rl)), tau, "ipo",
                          length_chosen=torch.tensor(n_w), length_rejected=torch.tensor(n_l)).numpy()
    want = ((lw - rw) / n_w - (ll - rl) / np.maximum(n_l, 1) - 1 / (2 * tau)) ** 2
    np.testing.assert_allclose(got, want, rtol=1e-12)
    ones = np.ones(6)
    per_token = preference_loss(lw, ll, rw, rl, tau, "ipo", length_chosen=ones, length_rejected=ones)
    np.testing.assert_allclose(per_token, preference_loss(lw, ll, rw, rl, tau, "ipo"), rtol=1e-14)


def test_ipo_optimum_is_gap_one_over_two_tau():
    tau = 0.2
    h = torch.tensor([0.0], requires_grad=True)
    opt = torch.optim.LBFGS([h], lr=1, max_iter=50)

    def closure():
        opt.zero_grad()
        loss = preference_loss(h.double(), torch.zeros(1), torch.zeros(1), torch.zeros(1), tau, "ipo").sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert abs(h.item() - 1 / (2 * tau)) < 1e-5


def test_metrics_trl_names_and_values():
    lw, ll, rw, rl = _batch(8)
    beta = 0.1
    m = preference_metrics(lw, ll, rw, rl, beta)
    assert set(m) == {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                      "logps/chosen", "logps/rejected"}
    assert m["rewards/chosen"] == pytest.approx(np.mean(beta * (lw - rw)), abs=1e-14)
    assert m["rewards/rejected"] == pytest.approx(np.mean(beta * (ll - rl)), abs=1e-14)
    assert m["rewards/margins"] == pytest.approx(np.mean(beta * ((lw - rw) - (ll - rl))), abs=1e-14)
    assert m["rewards/accuracies"] == pytest.approx(np.mean((lw - rw) > (ll - rl)), abs=1e-14)
    assert m["logps/chosen"] == pytest.approx(lw.mean()) and m["logps/rejected"] == pytest.approx(ll.mean())
    w = np.zeros(16)
    w[3] = 2.0
    mw = preference_metrics(lw, ll, rw, rl, beta, weights=w)
    assert mw["logps/chosen"] == pytest.approx(lw[3])
    np.testing.assert_allclose(dpo_rewards(lw, rw, beta), beta * (lw - rw), rtol=1e-15)
    assert isinstance(dpo_rewards(torch.tensor(lw), torch.tensor(rw), beta), torch.Tensor)


@pytest.mark.parametrize("kwargs, match", [
    (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(loss_type="dpo"), "loss_type"), (dict(loss_type=None), "loss_type"),
    (dict(label_smoothing=0.5), "label_smoothing"), (dict(label_smoothing=-0.1), "label_smoothing"),
    (dict(loss_type="exo_pair"), "label_smoothing"),
    (dict(length_chosen=[1, 2]), "ipo"), (dict(loss_type="ipo", length_chosen=[1, 2]), "both"),
])
def test_bad_input_raises(kwargs, match):
    args = dict(beta=0.1, loss_type="sigmoid", label_smoothing=0.0)
    args.update(kwargs)
    x = torch.zeros(2)
    with pytest.raises(ValueError, match=match):
        preference_loss(x, x, x, x, **args)


def test_shape_and_nan_errors():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="ref_logp_rejected"):
        preference_loss(x, x, x, torch.zeros(4), 0.1)
    with pytest.raises(ValueError, match="logp_chosen"):
        preference_loss(torch.tensor([0.0, float("nan"), 0.0]), x, x, x, 0.1)
    with pytest.raises(ValueError, match="weights"):
        preference_metrics(x, x, x, x, 0.1, weights=[-1, 1, 1])
    for z in (np.zeros(3) + 1j, torch.zeros(3, dtype=torch.complex128)):
        with pytest.raises(ValueError, match="logp_rejected must be real"):
            preference_loss(x, z, x, x, 0.1)


finite = st.floats(-50, 0, allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(logps=st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=6),
       beta=st.floats(-1.0, 20.0), loss_type=st.sampled_from(sorted(LOSSES) + ["bogus"]),
       eps=st.floats(-0.2, 0.7), complex_col=st.sampled_from([None, 0, 1, 2, 3]), as_numpy=st.booleans())
def test_fuzz_finite_or_value_error(logps, beta, loss_type, eps, complex_col, as_numpy):
    columns = zip(*logps, strict=True)
    cols = [torch.tensor(c, dtype=torch.float64, requires_grad=i < 2) for i, c in enumerate(columns)]
    args = list(cols)
    if complex_col is not None:  # complex input is rejected, never silently cast to its real part
        z = np.asarray(logps)[:, complex_col] + 0.5j
        args[complex_col] = z if as_numpy else torch.as_tensor(z)
    elif as_numpy:
        args[2:] = [c.numpy() for c in cols[2:]]
    try:
        loss = preference_loss(*args, beta, loss_type, eps)
    except ValueError as e:
        bad_eps = not (0 <= eps < 0.5) or (loss_type == "exo_pair" and eps == 0)
        assert beta <= 0 or loss_type == "bogus" or bad_eps or "real" in str(e)
        return
    assert complex_col is None
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    # a loss that ignores a column (sft: the chosen NLL only) leaves its gradient None, i.e. zero
    assert all(c.grad is None or torch.isfinite(c.grad).all() for c in cols[:2])
    assert cols[0].grad is not None


def test_dpo_rewards_torch_and_numpy_agree_with_the_formula():
    # mutation testing (mutmut): the torch branch of dpo_rewards (β·(logp − ref_logp)) was unguarded; a sign or
    # operator slip there survived every test
    from prefkit.losses import dpo_rewards

    rng = np.random.default_rng(0)
    lp, ref = rng.normal(size=6), rng.normal(size=6)
    want = 0.3 * (lp - ref)
    np.testing.assert_allclose(dpo_rewards(lp, ref, 0.3), want, rtol=1e-14)
    got = dpo_rewards(torch.tensor(lp), torch.tensor(ref), 0.3)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)
    got = dpo_rewards(torch.tensor(lp), ref, 0.3)  # one tensor is enough for the torch branch
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


def test_sft_loss_without_lengths_is_the_chosen_nll():
    # mutation testing (mutmut): the default length n = 1 of the sft loss was unguarded
    from prefkit.losses import preference_loss

    lw, ll = torch.tensor([-1.5, -0.2], dtype=torch.float64), torch.tensor([-2.0, -3.0], dtype=torch.float64)
    z = torch.zeros(2, dtype=torch.float64)
    np.testing.assert_allclose(preference_loss(lw, ll, z, z, 0.5, "sft").numpy(), [1.5, 0.2], rtol=1e-14)


# ------------------------------------------------------------------------------------- mutation testing (issue 10)
def test_table_default_label_smoothing_is_zero():
    # mutation testing (mutmut): LOSSES[name](c, r, β) without ε, as the table's docstring allows, used no test; a
    # default ε = 1 survived for robust, aot and aot_unpaired (the losses that use ε; the others ignore it)
    lw, ll, rw, rl = (torch.tensor(a) for a in _batch(11, B=5))
    c, r = lw - rw, ll - rl
    for name in ("sigmoid", "robust", "aot_unpaired"):
        np.testing.assert_allclose(LOSSES[name](c, r, 0.4).numpy(), REFERENCE[name](c.numpy(), r.numpy(), 0.4, 0.0),
                                   rtol=1e-12, err_msg=name)
    got = LOSSES["aot"](c, r, 0.4, logp_chosen=lw, logp_rejected=ll, ref_logp_chosen=rw, ref_logp_rejected=rl)
    np.testing.assert_allclose(got.numpy(), preference_loss(lw, ll, rw, rl, 0.4, "aot", 0.0).numpy(), rtol=1e-14)
    assert not torch.allclose(got, preference_loss(lw, ll, rw, rl, 0.4, "aot", 0.2))  # ε matters for aot


def test_float32_policy_keeps_its_dtype_and_metrics_are_float64():
    # mutation testing (mutmut): the casts ref.to(logp) in dpo_rewards and n.to(logratio) in the per-token
    # average, and the float64 of preference_metrics, survived: a float32 policy got float64 losses and rewards
    # (its reference promoted them), and float32 metrics were averaged in float32
    lw, ll, rw, rl = _batch(12, B=6)
    lw32, ll32 = torch.tensor(lw, dtype=torch.float32), torch.tensor(ll, dtype=torch.float32)
    n = torch.tensor([1, 2, 3, 4, 5, 6])  # integer token counts
    for loss_type in ("ipo", "sigmoid_norm"):
        out = preference_loss(lw32, ll32, torch.tensor(rw), torch.tensor(rl), 0.3, loss_type, length_chosen=n,
                              length_rejected=n)
        assert out.dtype == torch.float32, loss_type
    assert dpo_rewards(lw32, torch.tensor(rw), 0.3).dtype == torch.float32
    # metrics of float32 log-probs and weights are float64 averages of their (exact) float32 values
    w32 = torch.tensor([0.1, 0.7, 0.2, 0.3, 0.9, 0.05], dtype=torch.float32)
    m = preference_metrics(lw32, ll32, torch.tensor(rw, dtype=torch.float32), torch.tensor(rl, dtype=torch.float32),
                           0.3, weights=w32)
    a, b, c, d, w = (t.numpy().astype(np.float64) for t in (lw32, ll32, torch.tensor(rw, dtype=torch.float32),
                                                            torch.tensor(rl, dtype=torch.float32), w32))
    want = {"rewards/chosen": 0.3 * (a - c), "rewards/rejected": 0.3 * (b - d),
            "rewards/margins": 0.3 * ((a - c) - (b - d)), "logps/chosen": a, "logps/rejected": b}
    for key, v in want.items():
        np.testing.assert_allclose(m[key], np.sum(w * v) / np.sum(w), rtol=1e-12, err_msg=key)


def test_metrics_of_one_pair_and_of_a_tie():
    # mutation testing (mutmut): a batch of one pair (numel == 1 refused instead of 0) and a tie counted as accurate
    # (>= for TRL's strict >) survived
    one = [torch.tensor([v], dtype=torch.float64) for v in (-1.0, -2.0, -1.5, -1.5)]
    m = preference_metrics(*one, 0.5)
    assert m["rewards/margins"] == pytest.approx(0.5 * (0.5 - -0.5), abs=1e-15)
    assert m["rewards/accuracies"] == 1.0
    tie = preference_metrics([-1.0, -1.0], [-2.0, -3.0], [-1.0, -1.0], [-2.0, -2.0], 0.5)  # pair 0 a tie, 1 right
    assert tie["rewards/accuracies"] == 0.5
    with pytest.raises(ValueError, match="empty"):
        preference_metrics([], [], [], [], 0.5)


def test_integer_tensors_and_a_mismatch_in_the_first_argument():
    # mutation testing (mutmut): integer tensors kept as integers (the cast to float64 dropped) and a shape check
    # that compared every argument with the second instead of the first survived
    x = torch.tensor([0, -1, -2])
    out = preference_loss(x, x - 1, x, x, 0.5)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), REFERENCE["sigmoid"](np.zeros(3), -np.ones(3), 0.5, 0.0), rtol=1e-14)
    z = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="logp_chosen has shape"):
        preference_loss(torch.zeros(4, dtype=torch.float64), z, z, z, 0.1)
