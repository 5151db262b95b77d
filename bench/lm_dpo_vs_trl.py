"""DPO training steps per second: prefkit's LM loop vs TRL's DPOTrainer, same CPU, same model, same batches.

Both sides train an equal-size GPT-2 built locally (no hub access) from the SAME initial weights on the SAME
batches. TRL runs ``transformers.GPT2LMHeadModel`` through ``trl.DPOTrainer`` (explicit ``ref_model``; a
character-level tokenizer built with ``tokenizers``; fp32 means ``bf16=False`` and
``gradient_checkpointing=False``; TRL appends EOS to every response, so our sequences carry the same EOS).
prefkit copies those weights into ``prefkit.lm.GPT`` (GPT-2's architecture, exact GELU) and runs its DPO step:
one forward pass over [chosen; rejected] and the loss ``prefkit.losses.preference_loss``, with the reference
log-probs computed once before training (π_ref is frozen; TRL, by default, runs the reference forward inside
every step).

Sizes: ~100k parameters (2 layers, width 64) and ~3M (4 layers, width 256); fp32 and bf16 (CPU autocast on our
side, ``bf16=True`` on TRL's). bf16 rows run only on a CPU with native bf16 (``avx512_bf16`` or ``amx_bf16`` in
/proc/cpuinfo): elsewhere bf16 is emulated, 5–40× slower than fp32 on both sides, and the rows are skipped with a
note (``--bf16 force`` runs them anyway, ``--bf16 off`` never).

The dataset holds ``steps × batch`` distinct pairs read in order by both sides
(TRL: ``train_sampling_strategy="sequential"``), so step t of each side sees the same batch, and the per-step
losses must agree (checked: fp32 to 1e-4, bf16 to 5e-2). Tokenisation happens before the timed steps on both
sides. Reported: median seconds per step after the warm-up steps, as steps/s, and TRL's time / ours; the
column "ratio, ref/step" repeats our loop with a reference forward inside every step (TRL's default), to show
how much of the gap the one-off reference log-probs explain.

The column "train_dpo_lm steps/s" times the library's own loop, :func:`prefkit.lm.train_dpo_lm` (fused AdamW,
reference log-probs once, exact evaluation off), on the chapter-7 synthetic language with the same model shape,
the same batch and the same sequence length (10 tokens: [BOS, 4 prompt tokens, SEP, 4 response tokens] vs TRL's
[4 prompt chars, SEP, 4 response chars, EOS]); it cannot share TRL's batches (another token layout), so its losses
are not compared, only its speed (fp32; the library autocasts to bf16 on CUDA only).

Run: ``python bench/lm_dpo_vs_trl.py [--steps 40] [--batch 32] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from prefkit.lm.model import GPT, GPTConfig, count_parameters  # noqa: E402
from prefkit.losses import preference_loss  # noqa: E402

CHARS = "abcdefgh"  # content tokens
SEP, EOS, PAD = "|", "$", "#"


def make_tokenizer():
    """A character-level PreTrainedTokenizerFast built locally (one id per character)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS + SEP + EOS + PAD)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=PAD)


def make_batch(n: int, seed: int = 0):
    """n learnable preference pairs: 4-char prompt + SEP; chosen = the prompt shifted by one letter (the
    chapter-7 reward's favourite), rejected = random 4 chars (TRL adds EOS to both; so do we)."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(len(CHARS), size=(n, 4))
    rejected = rng.integers(len(CHARS), size=(n, 4))
    word = lambda ids: "".join(CHARS[i] for i in ids)  # noqa: E731
    return {
        "prompt": [word(p) + SEP for p in prompts],
        "chosen": [word((p + 1) % len(CHARS)) for p in prompts],
        "rejected": [word(r) for r in rejected],
    }


def hf_model(n_layer: int, n_embd: int, n_head: int, vocab: int, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=16,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 2,
        pad_token_id=vocab - 1,
    )
    return GPT2LMHeadModel(cfg)


def prefkit_from_hf(hf) -> GPT:
    """Copy GPT-2 weights into prefkit's GPT (GPT-2's Conv1D stores (in, out): transpose)."""
    c = hf.config
    g = GPT(
        GPTConfig(
            vocab_size=c.vocab_size,
            block_size=c.n_positions,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
        )
    )
    sd = hf.state_dict()
    new = {
        "wte.weight": sd["transformer.wte.weight"],
        "wpe.weight": sd["transformer.wpe.weight"],
        "ln_f.weight": sd["transformer.ln_f.weight"],
        "ln_f.bias": sd["transformer.ln_f.bias"],
    }
    for i in range(c.n_layer):
        p = f"transformer.h.{i}."
        q = f"blocks.{i}."
        for a, b in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
            new[q + b + ".weight"], new[q + b + ".bias"] = sd[p + a + ".weight"], sd[p + a + ".bias"]
        for a, b in (
            ("attn.c_attn", "attn.qkv"),
            ("attn.c_proj", "attn.proj"),
            ("mlp.c_fc", "mlp.0"),
            ("mlp.c_proj", "mlp.2"),
        ):
            new[q + b + ".weight"] = sd[p + a + ".weight"].T.contiguous()
            new[q + b + ".bias"] = sd[p + a + ".bias"]
    g.load_state_dict(new)
    return g


def run_trl(model, ref, tok, data, batch, steps, beta, lr, bf16):
    """TRL's DPOTrainer for ``steps`` steps; returns (per-step losses, seconds per step after warm-up)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=lr,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=0.0,
            beta=beta,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            bf16=bf16,
            gradient_checkpointing=False,
            use_cpu=True,
            dataloader_num_workers=0,
            disable_tqdm=True,
            train_sampling_strategy="sequential",
            seed=0,
            max_length=None,
        )
        trainer = DPOTrainer(
            model=model,
            ref_model=ref,
            args=args,
            train_dataset=Dataset.from_dict(data),
            processing_class=tok,
            callbacks=[Clock()],
        )
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    dt = np.diff(stamps[WARMUP:])
    return np.array(losses), float(np.median(dt))


def run_prefkit(model, ref, tok, data, batch, steps, beta, lr, bf16, ref_each_step=False):
    """prefkit's DPO loop on the same batches: ref log-probs once, one forward over [chosen; rejected]."""
    from prefkit.lm.train import completion_log_probs

    def enc(texts):
        return torch.tensor([tok(t)["input_ids"] for t in texts])

    prompt_len = len(tok(data["prompt"][0])["input_ids"])
    chosen = enc([p + c + EOS for p, c in zip(data["prompt"], data["chosen"], strict=True)])  # (N, T)
    rejected = enc([p + r + EOS for p, r in zip(data["prompt"], data["rejected"], strict=True)])  # (N, T)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), amp:  # π_ref is frozen: its log-probs once, for every pair
        ref_w = completion_log_probs(ref(chosen[:, :-1]), chosen, prompt_len)  # (N,)
        ref_l = completion_log_probs(ref(rejected[:, :-1]), rejected, prompt_len)  # (N,)
    batches = [
        torch.cat([chosen[s : s + batch], rejected[s : s + batch]]) for s in range(0, steps * batch, batch)
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses, stamps = [], []
    for t, ids in enumerate(batches):  # ids: (2B, T), chosen then rejected
        sl = slice(t * batch, (t + 1) * batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logp = completion_log_probs(model(ids[:, :-1]), ids, prompt_len)  # (2B,)
        if ref_each_step:  # the ablation: a reference forward inside every step, as TRL does by default
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                r = completion_log_probs(ref(ids[:, :-1]), ids, prompt_len)
            ref_w[sl], ref_l[sl] = r[:batch], r[batch:]
        loss = preference_loss(logp[:batch], logp[batch:], ref_w[sl], ref_l[sl], beta).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        stamps.append(time.perf_counter())
    dt = np.diff(stamps[WARMUP:])
    return np.array([float(x) for x in losses]), float(np.median(dt))


WARMUP = 5


def native_bf16() -> bool | None:
    """True/False when /proc/cpuinfo lists (or lacks) avx512_bf16 or amx_bf16; None when it cannot tell."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_library(n_layer, n_embd, n_head, batch, steps, beta, lr):
    """Seconds per step of :func:`prefkit.lm.train_dpo_lm` itself (after a warm-up run), same shapes."""
    from prefkit.lm import GPT, Preferences, SyntheticLanguage, clone, train_dpo_lm, trainable_copy

    task = SyntheticLanguage(vocab=len(CHARS), response_len=4, prompt_len=4, n_prompts=64, seed=0)
    torch.manual_seed(0)
    ref = clone(GPT(GPTConfig(vocab_size=task.vocab_size, block_size=16, n_layer=n_layer, n_head=n_head,
                              n_embd=n_embd)))
    rng = np.random.default_rng(0)
    m = batch * steps
    prompt = rng.integers(task.n_prompts, size=m)
    prefs = Preferences(prompt, (task.prompts[prompt] + 1) % task.vocab, rng.integers(task.vocab, size=(m, 4)))
    kw = dict(batch_size=batch, lr=lr, progress=False)
    train_dpo_lm(trainable_copy(ref), ref, task, prefs, beta, steps=WARMUP, **kw)  # warm-up
    r = train_dpo_lm(trainable_copy(ref), ref, task, prefs, beta, steps=steps, **kw)
    return r.wall_s / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32, help="preference pairs per step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sizes", default="100k,3M")
    ap.add_argument(
        "--repeats", type=int, default=3, help="alternate the two sides this many times; keep the best"
    )
    ap.add_argument("--bf16", choices=("auto", "force", "off"), default="auto",
                    help="bf16 rows: auto = only on a CPU with native bf16 (default)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    try:
        import trl  # noqa: F401
        from datasets import Dataset  # noqa: F401
    except ImportError as exc:
        print(f"TRL benchmark skipped: {exc} (install requirements-bench.txt)")
        return 0
    import transformers
    import trl

    tok = make_tokenizer()
    data = make_batch(args.batch * args.steps)
    shapes = {"100k": (2, 64, 4), "3M": (4, 256, 4)}
    print(
        f"DPO steps/s, prefkit vs TRL {trl.__version__} DPOTrainer "
        f"(transformers {transformers.__version__}), "
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} pairs, {args.steps} steps "
        f"(median step time after {WARMUP} warm-up steps, best of {args.repeats} alternating runs); "
        f"same init, same batches"
    )
    has_bf16 = native_bf16()
    run_bf16 = args.bf16 == "force" or (args.bf16 == "auto" and has_bf16)
    if not run_bf16:
        why = {"off": "--bf16 off", "auto": "this CPU has no native bf16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo)"
               if has_bf16 is False else "cannot tell whether this CPU has native bf16"}[args.bf16]
        print(f"bf16 rows skipped: {why}; emulated bf16 runs 5-40x slower than fp32 on both sides "
              "(--bf16 force runs them)")
    print(
        f"{'size':>6} {'params':>9} {'dtype':>5} {'TRL steps/s':>12} {'prefkit steps/s':>16} {'ratio':>6} "
        f"{'ratio, ref/step':>13} {'train_dpo_lm steps/s':>21} {'ratio':>6} {'max |loss diff|':>16}  losses match"
    )
    ok = True
    for size in args.sizes.split(","):
        n_layer, n_embd, n_head = shapes[size]
        for bf16 in (False, True) if run_bf16 else (False,):
            dt_trl = dt_ours = dt_abl = float("inf")
            for _ in range(args.repeats):  # alternate; keep each side's fastest run (the machine is shared)
                hf = hf_model(n_layer, n_embd, n_head, len(tok), seed=0)
                ours = prefkit_from_hf(hf)
                ours_ref = copy.deepcopy(ours).eval().requires_grad_(False)
                hf_ref = copy.deepcopy(hf).eval().requires_grad_(False)
                common = (tok, data, args.batch, args.steps, args.beta, args.lr, bf16)
                l_trl, dt = run_trl(hf, hf_ref, *common)
                dt_trl = min(dt_trl, dt)
                l_ours, dt = run_prefkit(ours, ours_ref, *common)
                dt_ours = min(dt_ours, dt)
                _, dt = run_prefkit(
                    prefkit_from_hf(hf_model(n_layer, n_embd, n_head, len(tok), seed=0)),
                    ours_ref,
                    *common,
                    ref_each_step=True,
                )
                dt_abl = min(dt_abl, dt)
            if bf16:
                lib = "n/a (CUDA only)"
                lib_ratio = ""
            else:
                dt_lib = min(run_library(n_layer, n_embd, n_head, args.batch, args.steps, args.beta, args.lr)
                             for _ in range(args.repeats))
                lib, lib_ratio = f"{1 / dt_lib:.1f}", f"{dt_trl / dt_lib:.2f}x"
            n = min(len(l_trl), len(l_ours))
            diff = float(np.max(np.abs(l_trl[:n] - l_ours[:n])))
            tol = 5e-2 if bf16 else 1e-4
            match = n == args.steps and diff <= tol
            ok &= match
            print(
                f"{size:>6} {count_parameters(ours):>9,} {'bf16' if bf16 else 'fp32':>5} {1 / dt_trl:>12.1f} "
                f"{1 / dt_ours:>16.1f} {dt_trl / dt_ours:>5.2f}x {dt_trl / dt_abl:>12.2f}x {lib:>21} {lib_ratio:>6} "
                f"{diff:>16.2e}  "
                f"{'yes' if match else 'NO'} (tol {tol:g}; loss {l_ours[0]:.4f} -> {l_ours[-1]:.4f})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
