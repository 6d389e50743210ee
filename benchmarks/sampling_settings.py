"""Sampling time of the hf generator under the settings stages 1, 2 and 5 choose between: the sampling precision
(fp32, or bf16 autocast over the fp32 weights: `models.sampling_precision`) and the batch size, against the former
default (fp32, batch 16), same prompts and seeds, one process.

    python benchmarks/sampling_settings.py [--model-dir models/base] [--prompts 64] [--repeats 2]

Each arm samples the same prompts with stage 1's sampling settings (temperature 0.9, top-p 0.95, 64 new tokens);
the arms run in turn, `--repeats` rounds, and each arm's best round counts (the machine's other load only ever
slows a round down). Prints seconds per arm, the ratio to the baseline arm, and whether bf16 reproduces the fp32
samples (it need not: different rounding, different draws; both are valid samples of the same model)."""

from __future__ import annotations

import argparse
import json
import time

from personalign.core.hardware import fingerprint
from personalign.core.world import load_world
from personalign.lm.generation import ChatPrompt, HFGenerator, Sampling
from personalign.lm.models import load_base

ARMS = (("fp32", 16), ("fp32", 64), ("bf16", 16), ("bf16", 32), ("bf16", 64))  # the first is the baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="models/base")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    model, tokenizer, _ = load_base(args.model_dir, "cpu", "float32")
    questions = [q for axis in load_world().values() for q in axis.divergent_questions][: args.prompts]
    prompts = [ChatPrompt(q) for q in questions]
    seeds = list(range(len(prompts)))
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.9, top_p=0.95)
    HFGenerator(model, tokenizer, "warm-up", batch_size=8, precision="bf16").generate(prompts[:8], sampling, seeds[:8])

    best, texts = {}, {}
    for _ in range(args.repeats):
        for precision, batch in ARMS:
            generator = HFGenerator(model, tokenizer, "bench", batch_size=batch, precision=precision)
            started = time.perf_counter()
            texts[precision, batch] = generator.generate(prompts, sampling, seeds, desc=f"{precision} batch {batch}")
            seconds = time.perf_counter() - started
            best[precision, batch] = min(seconds, best.get((precision, batch), float("inf")))
    baseline = best[ARMS[0]]
    print(
        json.dumps(
            {
                "hardware": fingerprint(),
                "prompts": len(prompts),
                "max_new_tokens": args.max_new_tokens,
                "repeats": args.repeats,
                "baseline": f"{ARMS[0][0]} batch {ARMS[0][1]}",
                "arms": [
                    {
                        "precision": p,
                        "batch_size": b,
                        "seconds": round(best[p, b], 2),
                        "speedup_vs_baseline": round(baseline / best[p, b], 2),
                        "same_samples_as_fp32_batch_16": round(
                            sum(x == y for x, y in zip(texts[p, b], texts[ARMS[0]])) / len(prompts), 3
                        ),
                    }
                    for p, b in ARMS
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
