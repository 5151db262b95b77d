"""Exact evaluation of the tiny LM: scoring all V^L responses with the prompt/prefix cache, against the full
sequences (before) and against one forward pass over the distinct tokens (the limit).

Before: :func:`prefkit.lm.enumerate_log_probs` with ``cache=False`` runs the V^(L−1) sequences
[BOS, x, SEP, y_1..y_{L−1}] of every prompt, recomputing the P + 2 prompt positions and every shared prefix.
After (the default): the prompt runs once and each level of the prefix tree is fed after its parent's key/value
cache (:meth:`prefkit.lm.GPT.extend`), so each prompt and prefix is computed once. The limit: one forward pass
(no cache) over as many token positions as the tree has, n·(P + 2 + V + … + V^(L−1)), in rows of the full
length. Also: one whole :meth:`prefkit.lm.ExactEvaluator.evaluate` (enumeration plus the exact KLs).

Minimum of ``--repeat`` runs, one torch thread, float32, same process (ratios are measured in the same run).
Run: ``python bench/lm_exact_eval.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from prefkit.lm import GPT, ExactEvaluator, SyntheticLanguage, enumerate_log_probs, tiny_config  # noqa: E402


def best(f, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"one torch thread, float32, minimum of {args.repeat} runs; load average {os.getloadavg()[0]:.1f}")
    print("| task | responses per prompt | distinct tokens | one forward over them | before (full sequences) | "
          "after (prompt + prefix cache) | after / limit | speed-up | ExactEvaluator.evaluate |")
    print("|---|---|---|---|---|---|---|---|---|")
    tasks = [("tiny preset (V=8, L=4, 16 prompts)", SyntheticLanguage()),
             ("V=16, L=4, 16 prompts", SyntheticLanguage(vocab=16, response_len=4))]
    for name, task in tasks:
        torch.manual_seed(0)
        model = GPT(tiny_config(task.vocab_size, task.seq_len)).eval()
        V, L, P2 = task.vocab, task.response_len, task.prompt_len + 2
        distinct = task.n_prompts * (P2 + sum(V**t for t in range(1, L)))
        T = P2 + L - 1
        seq = torch.randint(0, V, (-(-distinct // T), T), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            t_limit = best(lambda: model(seq), args.repeat)  # noqa: B023
        t_after = best(lambda: enumerate_log_probs(model, task), args.repeat)  # noqa: B023
        t_before = best(lambda: enumerate_log_probs(model, task, cache=False), max(1, args.repeat // 2))  # noqa: B023
        ev = ExactEvaluator(model, task, 1.0)
        t_eval = best(lambda: ev.evaluate(model), args.repeat)  # noqa: B023
        print(f"| {name} | {V**L:,} | {distinct:,} | {t_limit * 1e3:.0f} ms | {t_before * 1e3:.0f} ms | "
              f"{t_after * 1e3:.0f} ms | {t_after / t_limit:.2f}× | {t_before / t_after:.1f}× | "
              f"{t_eval * 1e3:.0f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
