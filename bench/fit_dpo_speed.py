"""Benchmark: the time of one default ``fit_dpo`` against one exact loss-and-gradient evaluation on the same arrays.

The instance is the issue-16 one: 100 prompts × 50 responses, every unordered pair of a prompt's responses
(C(50, 2)·100 = 122,500) entered in both orders with exact Bradley-Terry probabilities from r* as weights
(:meth:`prefkit.problems.Problem.preference_probabilities`, 245,000 weighted rows). ``fit_dpo`` runs with its
default settings (the deterministic L-BFGS solver to a max-abs gradient of 1e-10), and once more with
``record_every=1`` (a history row at every step).

The peer, measured in the same run and interleaved with the fits, is the floor of any first-order solver: one exact
evaluation of the DPO loss Σ_k w_k·(−log σ(β·[(z_w − z_l) − (ref_w − ref_l)])) of the tabular logits and of its
gradient, written directly (plain torch autograd on ``log_softmax``; plain numpy with the gradient by hand), no
input checks. The numbers to read are the ratios: fit time ÷ floor evaluation, and the loss evaluations per fit
(an ideal solver that does nothing but evaluate would take evaluations × floor). A cProfile run of the default fit
shows where the rest goes (the parts overlap: the finiteness checks run inside the loss evaluations).

Usage: python bench/fit_dpo_speed.py [--quick] [--prompts N] [--responses M] [--beta B] [--repeat K]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def floor_torch(pi_ref, prefs, w, beta):
    """One loss + gradient of the tabular DPO loss in plain torch (autograd), no checks. Returns (loss, grad)."""
    x, yw, yl = (torch.as_tensor(c) for c in prefs.T)
    ref = torch.log(torch.as_tensor(pi_ref))  # (n_prompts, n)
    ref_margin = ref[x, yw] - ref[x, yl]  # (m,)
    w_t = torch.as_tensor(w / w.sum())  # (m,)

    def run():
        z = ref.clone().requires_grad_(True)  # the logits at π_ref
        logp = torch.log_softmax(z, dim=-1)  # (n_prompts, n)
        margin = beta * (logp[x, yw] - logp[x, yl] - ref_margin)  # (m,)
        loss = (w_t * -torch.nn.functional.logsigmoid(margin)).sum()
        loss.backward()
        return float(loss.detach()), z.grad.numpy()

    return run


def floor_numpy(pi_ref, prefs, w, beta):
    """The same loss and its gradient by hand in numpy: ∂L/∂z_x = Σ_k −w_k·β·σ(−m_k)·(e_w − e_l) (the softmax's
    normaliser cancels in z_w − z_l)."""
    n_prompts, n = pi_ref.shape
    x, yw, yl = prefs.T
    ref = np.log(pi_ref)
    iw, il = x * n + yw, x * n + yl  # flat indices, (m,)
    ref_margin = ref.ravel()[iw] - ref.ravel()[il]
    wn = w / w.sum()

    def run():
        z = ref.ravel()  # the logits at π_ref (log π_ref, already normalised)
        margin = beta * (z[iw] - z[il] - ref_margin)  # (m,)
        loss = float(wn @ np.logaddexp(0.0, -margin))
        coef = -wn * beta / (1.0 + np.exp(margin))  # w·∂ℓ/∂m·β, (m,)
        g = np.bincount(iw, coef, n_prompts * n) - np.bincount(il, coef, n_prompts * n)
        return loss, g.reshape(n_prompts, n)

    return run


def best_of(fns, repeat):
    """Best wall time of each callable over ``repeat`` interleaved rounds."""
    best = {k: float("inf") for k in fns}
    out = {}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            out[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best, out


# what the profile reports: (label, how to find the function, which time). Keys of pstats entries are
# (file, line, function name); "cum" = cumulative (callees included), "tot" = own time only.
PARTS = [
    ("loss+gradient evaluations", ("dpo.py", "loss_and_grad"), "cum"),
    ("history rows (record)", ("dpo.py", "record"), "cum"),
    ("  of which TRL metrics", ("losses.py", "preference_metrics"), "cum"),
    ("  of which displacement keys", ("displacement_tracking.py", "displacement_step"), "cum"),
    ("finiteness checks (torch.isfinite)", ("", "<built-in method torch.isfinite>"), "tot"),
    ("input checks once (_check_data)", ("dpo.py", "_check_data"), "cum"),
    ("no-minimiser check (_obstruction)", ("dpo.py", "_obstruction"), "cum"),
    ("  of which union-find (optima._components)", ("optima.py", "_components"), "cum"),
    ("scipy L-BFGS-B itself", ("_lbfgsb_py.py", "_minimize_lbfgsb"), "tot"),
]


def profile_shares(fn):
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof)
    total = max(v[3] for v in st.stats.values())  # the outermost call's cumulative time
    rows = []
    for label, (file_end, name), kind in PARTS:
        t = 0.0
        for (file, _, func), (_, _, tt, ct, _) in st.stats.items():
            if func == name and file.endswith(file_end):
                t += ct if kind == "cum" else tt
        rows.append((label, t))
    return total, rows


def main():
    import prefkit as pk
    from prefkit.dpo import fit_dpo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 prompts, best of 2, no profile")
    ap.add_argument("--prompts", type=int, default=None, help="number of prompts (default 100; 20 with --quick)")
    ap.add_argument("--responses", type=int, default=50)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=None, help="best of this many runs (default 3; 2 with --quick)")
    args, _ = ap.parse_known_args()  # ./dev bench passes its arguments to every script
    n_prompts = args.prompts or (20 if args.quick else 100)
    repeat = args.repeat or (2 if args.quick else 3)

    P = pk.random_problem(n_prompts, args.responses, seed=0, reward_scale=2.0)
    prefs, w = P.preference_probabilities("all")  # (x, i, j) and (x, j, i) with weights p and 1 − p
    print(f"fit_dpo on {n_prompts} prompts x {args.responses} responses, {len(prefs):,} weighted rows "
          f"(every unordered pair in both orders), beta={args.beta:g}; best of {repeat}, one thread; "
          f"load average {open('/proc/loadavg').read().split()[0]}")

    def fit(**kw):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the default fit must converge without a warning
            return fit_dpo(P.pi_ref, prefs, args.beta, weights=w, **kw)

    fns = {"torch": floor_torch(P.pi_ref, prefs, w, args.beta), "numpy": floor_numpy(P.pi_ref, prefs, w, args.beta),
           "fit": fit, "fit_every": lambda: fit(record_every=1)}
    best, out = best_of(fns, repeat)

    # the peers agree with each other and with the fit's first history row (the loss at π_ref)
    (lt, gt), (ln, gn) = out["torch"], out["numpy"]
    res, every = out["fit"], out["fit_every"]
    assert abs(lt - ln) < 1e-12 and np.abs(gt - gn).max() < 1e-12, (lt, ln)
    assert abs(res.history[0]["loss"] - lt) < 1e-12
    tv = pk.total_variation(res.pi, P.optimal_policy(args.beta))
    floor = min(best["torch"], best["numpy"])
    print(f"  floor: one loss+gradient, plain torch {best['torch'] * 1e3:.2f} ms, plain numpy "
          f"{best['numpy'] * 1e3:.2f} ms (agree to {abs(lt - ln):.0e})")
    for name, r in (("default", res), ("record_every=1", every)):
        t = best["fit" if name == "default" else "fit_every"]
        last = r.history[-1]
        evals = last["cost/loss_evals"]
        err = pk.total_variation(r.pi, P.optimal_policy(args.beta))
        print(f"  fit_dpo ({name:<14}) {t:7.3f} s = {t / floor:6.1f} floor evaluations; {last['step']} steps, "
              f"{evals} loss evaluations, {len(r.history)} history rows; time per evaluation "
              f"{t / evals / floor:4.2f} x floor; TV(pi, pi*) {err:.1e}")
    assert tv < 1e-4 and res.converged, tv

    if not args.quick:
        total, rows = profile_shares(fit)
        print(f"  cProfile of one default fit ({total:.3f} s under the profiler; parts overlap):")
        for label, t in rows:
            print(f"    {label:<44} {t:7.3f} s  {100 * t / total:5.1f} %")


if __name__ == "__main__":
    main()
