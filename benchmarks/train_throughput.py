"""Training throughput and peak memory: personalign's `train_adapter` vs trl's DPOTrainer with default settings and
an explicit reference model (a second copy of the base model), same pairs, same model, same LoRA, one run.

    python benchmarks/train_throughput.py [--pairs 32] [--precision bf16] [--precompute-ref]

Each arm runs in its own process so its peak resident memory (ru_maxrss) is its own; pairs/s is over the trainer's
construction and training (tokenisation and reference precomputation included, model loading not). Prints both
arms and the ratios (issue 4 target: >= 2x pairs/s, <= 0.7x peak memory)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def arm(name: str, pairs: int, precision: str, precompute_ref: bool) -> dict:
    from personalign.records import read_records
    from personalign.training import RunSpec, conversational_dataset, lora_config, train_adapter, training_pairs

    records = read_records("data/records.jsonl")
    run = RunSpec("bench", "dpo", epochs=1, batch_size=4, max_length=256, save_steps=10_000,
                  precision=precision, precompute_ref=precompute_ref)
    data = training_pairs(run, records).head(pairs)
    with tempfile.TemporaryDirectory() as tmp:
        if name == "personalign":
            seconds = train_adapter(run, data, "models/base", tmp)["train_seconds"]
        else:
            from trl import DPOConfig, DPOTrainer

            from personalign.models import load_base

            model, tokenizer, _ = load_base("models/base", "cpu", "float32")
            reference, _, _ = load_base("models/base", "cpu", "float32")
            args = DPOConfig(output_dir=tmp, per_device_train_batch_size=4, num_train_epochs=1, report_to=[],
                             max_length=256, save_strategy="no", use_cpu=True, beta=run.beta)
            started = time.perf_counter()
            DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=conversational_dataset(data),
                       processing_class=tokenizer, peft_config=lora_config(run)).train()
            seconds = time.perf_counter() - started
    return {"arm": name, "pairs": len(data), "seconds": round(seconds, 2), "pairs_per_s": round(len(data) / seconds, 3),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--precompute-ref", action="store_true")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, args.pairs, args.precision, args.precompute_ref)))
        return
    results = {}
    for name in ("trl_default", "personalign"):
        cmd = [sys.executable, __file__, "--arm", name, "--pairs", str(args.pairs), "--precision", args.precision]
        cmd += ["--precompute-ref"] if args.precompute_ref else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[name] = json.loads(out)
    base, ours = results["trl_default"], results["personalign"]
    results["speedup"] = round(ours["pairs_per_s"] / base["pairs_per_s"], 2)
    results["peak_memory_ratio"] = round(ours["peak_mib"] / base["peak_mib"], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
