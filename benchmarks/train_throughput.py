"""Training throughput and peak memory: personalign's `train_adapter` (the params.yaml defaults: bf16 base, LoRA in
fp32, precomputed reference, prompt encoded once per pair) vs trl's DPOTrainer with default settings and an explicit
reference model (a second copy of the base model), same pairs, same model, same LoRA, one epoch.

    python benchmarks/train_throughput.py [--pairs 32] [--data dpo|pt_gold] [--with-fp32-baseline]

Needs stages 0-2 (models/base, data/). Each arm runs in its own process, so its peak resident memory (ru_maxrss) is
its own; pairs/s is over the trainer's construction and training (tokenisation and reference precomputation
included, model loading not). trl 1.16's DPOConfig defaults are bf16 autocast and gradient checkpointing on; the
optional third arm is trl with fp32 (bf16=False), the baseline the issue's figures were measured against. Prints
every arm and the ratios (issue 4 target: >= 2x pairs/s, <= 0.7x peak memory against trl's default)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

DATA = {"dpo": ("dpo", "none"), "pt_gold": ("pt", "gold")}  # short prompts; ~380-token persona prompts


def arm(name: str, pairs: int, data: str) -> dict:
    import pandas as pd

    from personalign.core.config import RunSpec
    from personalign.core.records import read_records
    from personalign.tuning.training import conversational_dataset, lora_config, train_adapter, training_pairs

    kind, prefix = DATA[data]
    run = RunSpec(name="bench", kind=kind, prefix=prefix, epochs=1, save_steps=10_000)
    prefixes = pd.read_json("data/prefixes.jsonl", lines=True)
    pairs_table = training_pairs(run, read_records("data/records.jsonl"), prefixes).head(pairs)
    with tempfile.TemporaryDirectory() as tmp:
        if name == "personalign":
            seconds = train_adapter(run, pairs_table, "models/base", tmp)["train_seconds"]
        else:
            from trl import DPOConfig, DPOTrainer

            from personalign.lm.models import load_base

            model, tokenizer, _ = load_base("models/base", "cpu", "float32")
            reference, _, _ = load_base("models/base", "cpu", "float32")
            tokenizer.padding_side = "right"
            settings = {"bf16": False} if name == "trl_fp32" else {}
            args = DPOConfig(
                output_dir=tmp,
                per_device_train_batch_size=run.batch_size,
                num_train_epochs=1,
                report_to=[],
                max_length=run.max_length,
                save_strategy="no",
                use_cpu=True,
                beta=run.beta,
                **settings,
            )
            started = time.perf_counter()
            DPOTrainer(
                model=model,
                ref_model=reference,
                args=args,
                train_dataset=conversational_dataset(pairs_table),
                processing_class=tokenizer,
                peft_config=lora_config(run),
            ).train()
            seconds = time.perf_counter() - started
    return {
        "arm": name,
        "pairs": len(pairs_table),
        "seconds": round(seconds, 2),
        "pairs_per_s": round(len(pairs_table) / seconds, 3),
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--data", default="dpo", choices=sorted(DATA))
    parser.add_argument("--with-fp32-baseline", action="store_true")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, args.pairs, args.data)))
        return
    arms = ["trl_default", "personalign"] + (["trl_fp32"] if args.with_fp32_baseline else [])
    results = {}
    for name in arms:
        cmd = [sys.executable, __file__, "--arm", name, "--pairs", str(args.pairs), "--data", args.data]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[name] = json.loads(out)
    ours = results["personalign"]
    for name in arms:
        if name != "personalign":
            results[f"vs_{name}"] = {
                "speedup": round(ours["pairs_per_s"] / results[name]["pairs_per_s"], 2),
                "peak_memory_ratio": round(ours["peak_mib"] / results[name]["peak_mib"], 2),
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
