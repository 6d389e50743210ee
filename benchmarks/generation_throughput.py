"""Throughput of the hf generator: batched generation vs one prompt at a time, same prompts, one run.

    python benchmarks/generation_throughput.py [--model-dir models/base] [--prompts 32] [--batch-size 16]

Reports generated tokens/s for both and their ratio (issue target: batched >= 4x on a 2-core CPU). Both arms use
greedy decoding with the same code path (HFGenerator, no cache), so they produce the same tokens."""

from __future__ import annotations

import argparse
import json
import time

from personalign.core.world import load_world
from personalign.lm.generation import ChatPrompt, HFGenerator, Sampling
from personalign.lm.models import load_base


def timed(generator: HFGenerator, prompts: list[ChatPrompt], sampling: Sampling) -> tuple[float, int, list[str]]:
    start = time.perf_counter()
    texts = generator.generate(prompts, sampling, [0] * len(prompts), desc=f"batch {generator.batch_size}")
    seconds = time.perf_counter() - start
    tokens = sum(len(generator.tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    return seconds, tokens, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="models/base")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    model, tokenizer, device = load_base(args.model_dir, "auto", "auto")
    world = load_world()
    questions = [q for axis in world.values() for q in axis.divergent_questions][: args.prompts]
    prompts = [ChatPrompt(q, "You are a helpful assistant. Answer in two or three sentences.") for q in questions]
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0)
    timed(HFGenerator(model, tokenizer, "warm-up", batch_size=args.batch_size), prompts[:2], sampling)

    one_s, one_tokens, one_texts = timed(HFGenerator(model, tokenizer, "bench", batch_size=1), prompts, sampling)
    batch_s, batch_tokens, batch_texts = timed(
        HFGenerator(model, tokenizer, "bench", batch_size=args.batch_size), prompts, sampling
    )
    agree = sum(a == b for a, b in zip(one_texts, batch_texts)) / len(prompts)
    report = {
        "device": device,
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "one_at_a_time_tokens_per_s": round(one_tokens / one_s, 1),
        "batched_tokens_per_s": round(batch_tokens / batch_s, 1),
        "speedup": round((batch_tokens / batch_s) / (one_tokens / one_s), 2),
        "identical_outputs_share": round(agree, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
