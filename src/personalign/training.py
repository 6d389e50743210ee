"""Preference tuning (stage 3, in progress): one entry point that turns a run spec and the canonical records into
training pairs and trains a LoRA adapter with trl's DPOTrainer, reference = the base model with the adapter disabled."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.prompts import PT_TEMPLATE, chat, prefixed_prompt
from personalign.seeding import stable_seed

RUN_KINDS = ("dpo", "pt", "pm", "mt")
PT_PERSONAS = ("gold", "inferred")


class TrainingDataError(ValueError):
    """A run cannot be assembled; the message names the run and the cause."""


@dataclass(frozen=True)
class RunSpec:
    """One training run. `prefix`: the MT prefix type or the PT persona source; `user`: the PM user;
    `held_out_fold`: MT's unseen fold; `fraction`: share of the training pairs used (PM data-efficiency)."""

    name: str
    kind: str
    prefix: str = "none"
    prefix_seed: int = 0
    user: str = ""
    held_out_fold: int | None = None
    fraction: float = 1.0
    seed: int = 0
    learning_rate: float = 2e-4
    epochs: int = 2
    batch_size: int = 4
    beta: float = 0.01
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    warmup_ratio: float = 0.1  # share of steps (transformers 5 reads a float < 1 in warmup_steps as a ratio)
    max_length: int = 256
    save_steps: int = 10
    precision: str = "fp32"  # fp32 | bf16 (autocast; on CPUs with AVX512-BF16/AMX several times the fp32 matmul rate)
    precompute_ref: bool = False  # reference log-probs computed once before training instead of every step


def training_pairs(
    run: RunSpec, records: pd.DataFrame, prefixes: pd.DataFrame | None = None,
    pair_personas: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The run's training pairs (id, user_id, prompt, chosen, rejected); `prompt` is the user message, with the
    persona (PT template) or the prefix (App. G.7-G.10) the run kind asks for."""
    where = f"run {run.name!r}"
    if run.kind not in RUN_KINDS:
        raise TrainingDataError(f"{where}: unknown kind {run.kind!r}; allowed: {', '.join(RUN_KINDS)}")
    train = records[records.split == "train"].sort_values("id", ignore_index=True)
    if run.kind == "pm":
        train = train[train.user_id == run.user]
        if train.empty:
            raise TrainingDataError(f"{where}: user {run.user!r} has no training pairs")
    if run.kind == "mt" and run.held_out_fold is not None:
        train = train[train.fold != run.held_out_fold]
    if not 0 < run.fraction <= 1:
        raise TrainingDataError(f"{where}: fraction must be in (0, 1], got {run.fraction}")
    if run.fraction < 1:
        rng = np.random.default_rng(stable_seed(run.seed, "fraction", run.name))
        keep = max(1, round(run.fraction * len(train)))
        train = train.iloc[np.sort(rng.permutation(len(train))[:keep])]
    if train.empty:
        raise TrainingDataError(f"{where}: the training set is empty")
    prompts = list(train.prompt)
    if run.kind == "pt":
        prompts = [PT_TEMPLATE.format(x=x, persona=p) for x, p in zip(prompts, _pt_personas(run, train, pair_personas))]
    elif run.kind == "mt" and run.prefix != "none":
        prompts = [prefixed_prompt(run.prefix, p, x) for x, p in zip(prompts, _user_prefixes(run, train, prefixes))]
    return pd.DataFrame(
        {"id": list(train.id), "user_id": list(train.user_id), "prompt": prompts,
         "chosen": list(train.chosen), "rejected": list(train.rejected)}
    )


def _pt_personas(run: RunSpec, train: pd.DataFrame, pair_personas: pd.DataFrame | None) -> list[str]:
    """The chosen persona per pair: the gold persona, or the one inferred from the pair itself (stage 2)."""
    if run.prefix == "gold":
        personas = list(train.chosen_persona_gold)
    elif run.prefix == "inferred":
        if pair_personas is None:
            raise TrainingDataError(f"run {run.name!r}: PT with inferred personas needs stage 2's pair personas")
        lookup = dict(zip(pair_personas.id, pair_personas.chosen_persona))
        personas = [lookup.get(i, "") for i in train.id]
    else:
        raise TrainingDataError(f"run {run.name!r}: PT persona {run.prefix!r}; allowed: {', '.join(PT_PERSONAS)}")
    missing = [i for i, p in zip(train.id, personas) if not p]
    if missing:
        raise TrainingDataError(f"run {run.name!r}: no {run.prefix} persona for pair {missing[0]!r}")
    return personas


def _user_prefixes(run: RunSpec, train: pd.DataFrame, prefixes: pd.DataFrame | None) -> list[str]:
    """The MT prefix of each pair's user (prefix type `run.prefix`, seed `run.prefix_seed`)."""
    table = None if prefixes is None else prefixes[
        (prefixes.prefix_type == run.prefix) & (prefixes.seed == run.prefix_seed)
    ]
    if table is None or table.empty:
        raise TrainingDataError(
            f"run {run.name!r}: no prefixes of type {run.prefix!r} (seed {run.prefix_seed}) were computed in stage 2"
        )
    lookup = dict(zip(table.user_id, table.text))
    missing = sorted(set(train.user_id) - set(lookup))
    if missing:
        raise TrainingDataError(f"run {run.name!r}: user {missing[0]!r} has no {run.prefix!r} prefix")
    return [lookup[u] for u in train.user_id]


def check_lengths(run: RunSpec, pairs: pd.DataFrame, tokenizer) -> None:
    """Stop before training when a prompt alone leaves no room for a response within max_length."""
    for row in pairs.itertuples():
        n = len(tokenizer(chat(tokenizer, None, row.prompt), add_special_tokens=False)["input_ids"])
        if n >= run.max_length:
            raise TrainingDataError(
                f"run {run.name!r}: the prompt of pair {row.id!r} has {n} tokens, not below max_length {run.max_length}"
            )


def conversational_dataset(pairs: pd.DataFrame):
    """The pairs as trl's conversational preference dataset (prompt, chosen, rejected as chat messages)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": r.prompt}], "chosen": [{"role": "assistant", "content": r.chosen}],
             "rejected": [{"role": "assistant", "content": r.rejected}]}
            for r in pairs.itertuples()
        ]
    )


def lora_config(run: RunSpec):
    """The run's LoRA adapter on every linear layer (WikiPersona App. H: r=8, alpha=32, dropout=0.1)."""
    from peft import LoraConfig

    return LoraConfig(r=run.lora_r, lora_alpha=run.lora_alpha, lora_dropout=run.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _last_checkpoint(directory: Path) -> str | None:
    checkpoints = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(checkpoints[-1]) if checkpoints else None


def resolve_run(name: str, train) -> RunSpec:
    """The flat spec of run `name` of a `train` params section: the run's own fields over train.defaults."""
    run = train.runs[name]
    merged = train.defaults.model_dump() | {k: v for k, v in run.model_dump().items() if v is not None}
    return RunSpec(name=name, **merged)


def work_dir_for(run: RunSpec, pairs: pd.DataFrame, root: str | Path) -> Path:
    """Where checkpoints of this exact run (spec and data) live while it trains: a changed spec or changed data
    never resumes from another run's checkpoint."""
    digest = hashlib.sha256(json.dumps(asdict(run), sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(pairs, index=False).values.tobytes())
    return Path(root) / f"{run.name}-{digest.hexdigest()[:12]}"


def train_adapter(
    run: RunSpec, pairs: pd.DataFrame, base_dir: str | Path, out_dir: str | Path, work_dir: str | Path | None = None
) -> dict:
    """Train the run's LoRA adapter with DPO, resuming from the last checkpoint in `work_dir` if there is one.
    Writes out_dir/adapter (PEFT format), out_dir/run.json (the resolved spec) and out_dir/log.jsonl (one line per
    step: loss, learning rate, reward accuracy and margins); the checkpoints are removed once the run is done."""
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from personalign.models import load_base

    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer, device = load_base(base_dir, "auto", "float32")
    check_lengths(run, pairs, tokenizer)
    log_path = work_dir / "log.jsonl"

    class JsonlLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.is_world_process_zero:
                keep = {k: v for k, v in logs.items() if k in {"loss", "learning_rate", "grad_norm", "epoch"}
                        or k.startswith("rewards/")}
                with log_path.open("a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **keep}, sort_keys=True) + "\n")

    resume = _last_checkpoint(work_dir)
    step = int(resume.rsplit("-", 1)[1]) if resume else 0
    kept = [ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] <= step] if log_path.exists() else []
    log_path.write_text("".join(f"{ln}\n" for ln in kept))
    args = DPOConfig(
        output_dir=str(work_dir), per_device_train_batch_size=run.batch_size, num_train_epochs=run.epochs,
        learning_rate=run.learning_rate, beta=run.beta, warmup_steps=run.warmup_ratio, max_length=run.max_length,
        logging_steps=1, save_strategy="steps", save_steps=run.save_steps, seed=run.seed, data_seed=run.seed,
        report_to=[], use_cpu=device == "cpu", bf16=run.precision == "bf16",
        precompute_ref_log_probs=run.precompute_ref,
    )
    peft = lora_config(run)
    started = time.perf_counter()
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=conversational_dataset(pairs), processing_class=tokenizer,
        peft_config=peft, callbacks=[JsonlLog()],
    )
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(out_dir / "adapter"))
    (out_dir / "run.json").write_text(json.dumps(asdict(run), indent=2, sort_keys=True) + "\n")
    shutil.copy(log_path, out_dir / "log.jsonl")
    shutil.rmtree(work_dir)
    return {"run": run.name, "pairs": len(pairs), "steps": trainer.state.global_step,
            "train_loss": round(result.training_loss, 6), "train_seconds": round(seconds, 3),
            "resumed_from": resume}
