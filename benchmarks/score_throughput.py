"""Reference-free scoring throughput: `personalign.evaluation.scoring.score_pairs` (batched, each prompt encoded once
per pair, the prefix a batch's prompts share once per batch)
vs a straightforward per-pair fp32 loop (two full forwards per pair), same model, same pairs, one run.

    python benchmarks/score_throughput.py [--pairs 64] [--prefix gold] [--batch-size 16]

Needs stages 0-2 (models/base, data/). Prints pairs/s of the loop, of the scorer in fp32 and in bf16 autocast, the
ratios (issue 5 target: >= 5x), how often bf16's correct/incorrect decisions agree with fp32's (allowed only at
>= 99%), and the scorer's forward FLOP rate as a share of this machine's matmul peak measured in the same run
(2048 x 2048 matmuls, fp32 and bf16). FLOPs count the weight matmuls only (attention scores left out), so the share
is a lower bound."""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch
import torch.nn.functional as F

from personalign.core.records import read_records
from personalign.evaluation.scoring import encode_pairs, prefix_batches, score_pairs
from personalign.lm.models import load_base
from personalign.lm.prompts import chat, prefixed_prompt


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """GFLOPS of a square matmul in `dtype` (best of `repeats`)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


@torch.inference_mode()
def per_pair_loop(model, tokenizer, pairs: pd.DataFrame) -> list[bool]:
    """The baseline: for each pair, prompt + y_w and prompt + y_l each through the model alone, in fp32."""
    correct = []
    for row in pairs.itertuples():
        means = []
        for response in (row.chosen, row.rejected):
            head = tokenizer(chat(tokenizer, None, row.prompt), add_special_tokens=False)["input_ids"]
            tail = tokenizer(response, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([head + tail])
            logps = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            picked = logps[torch.arange(ids.shape[1] - 1), ids[0, 1:]][len(head) - 1 :]
            means.append(picked.mean().item())
        correct.append(means[0] > means[1])
    return correct


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--prefix", default="gold", help="prefix type from data/prefixes.jsonl, or none")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    model, tokenizer, _ = load_base("models/base", "cpu", "float32")
    records = read_records("data/records.jsonl")
    pairs = records[records.split == "test"].head(args.pairs).reset_index(drop=True)
    if args.prefix != "none":
        table = pd.read_json("data/prefixes.jsonl", lines=True)
        text = dict(zip(*table[(table.prefix_type == args.prefix) & (table.seed == 0)][["user_id", "text"]].T.values))
        pairs = pairs.assign(
            prompt=[prefixed_prompt(args.prefix, text[u], x) for u, x in zip(pairs.user_id, pairs.prompt)]
        )
    score_pairs(model, tokenizer, pairs.head(2))  # warm-up

    loop, loop_s = timed(lambda: per_pair_loop(model, tokenizer, pairs))
    fp32, fp32_s = timed(lambda: score_pairs(model, tokenizer, pairs, args.batch_size))
    bf16, bf16_s = timed(lambda: score_pairs(model, tokenizer, pairs, args.batch_size, autocast_bf16=True))

    encoded = encode_pairs(tokenizer, pairs)
    tokens = sum(
        shared + sum(len(encoded[i][0]) - shared + len(encoded[i][1]) + len(encoded[i][2]) for i in index)
        for index, shared in prefix_batches([p for p, _, _ in encoded], args.batch_size)
    )  # what it runs
    head_rows = sum(1 + len(c) + len(r) for _, c, r in encoded)  # positions whose logits are computed
    embedding = model.get_input_embeddings().weight.numel()  # tied: also the LM head
    body = sum(p.numel() for p in model.parameters()) - embedding
    flops = 2 * (body * tokens + embedding * head_rows)  # weight matmuls only (attention scores not counted)
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    n = len(pairs)
    print(
        json.dumps(
            {
                "pairs": n,
                "prefix": args.prefix,
                "tokens_scored": tokens,
                "loop_fp32_pairs_per_s": round(n / loop_s, 2),
                "scorer_fp32_pairs_per_s": round(n / fp32_s, 2),
                "scorer_bf16_pairs_per_s": round(n / bf16_s, 2),
                "speedup_fp32": round(loop_s / fp32_s, 2),
                "speedup_bf16": round(loop_s / bf16_s, 2),
                "loop_vs_scorer_decisions_agree": float((pd.Series(loop) == fp32.correct).mean()),
                "bf16_vs_fp32_decisions_agree": float((bf16.correct == fp32.correct).mean()),
                "matmul_peak_gflops": {"fp32": round(peak32, 1), "bf16": round(peak16, 1)},
                "scorer_gflops": {"fp32": round(flops / fp32_s / 1e9, 1), "bf16": round(flops / bf16_s / 1e9, 1)},
                "share_of_peak": {
                    "fp32": round(flops / fp32_s / 1e9 / peak32, 3),
                    "bf16": round(flops / bf16_s / 1e9 / peak16, 3),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
