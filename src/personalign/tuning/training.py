"""Preference tuning (stage 3): one entry point that turns a run spec and the canonical records into training pairs
and trains a LoRA adapter with trl (DPOTrainer; SFTTrainer for SFT and the SFT phase of SFT-then-DPO runs). The DPO
reference is the base model with the adapter disabled, never a second copy."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.core import paths
from personalign.core.config import SOFT_PREFIX_TYPES, RunSpec
from personalign.core.locks import exclusive
from personalign.core.records import read_jsonl, read_records
from personalign.core.seeding import stable_seed
from personalign.lm.embeddings import Embedder
from personalign.lm.models import pick_device
from personalign.lm.prompts import chat
from personalign.personas.conditioning import run_prompts
from personalign.personas.soft_prefix import PREFIXES_FILE, VPLPrefix, pair_pools, save_prefixes
from personalign.tuning.shared_prompt import shared_prompt_trainer_class


class TrainingDataError(ValueError):
    """A run cannot be assembled; the message names the run and the cause."""


def training_pairs(
    run: RunSpec,
    records: pd.DataFrame,
    prefixes: pd.DataFrame | None = None,
    pair_personas: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The run's training pairs (id, user_id, prompt, chosen, rejected); `prompt` is the user message, with the
    persona (PT template) or the prefix (App. G.7-G.10) the run kind asks for."""
    where = f"run {run.name!r}"
    train = records[records.split == "train"].sort_values("id", ignore_index=True)
    if run.source:
        train = train[train.source == run.source]
        if train.empty:
            raise TrainingDataError(f"{where}: source {run.source!r} has no training pairs")
    if run.kind == "pm":
        train = train[train.user_id == run.user]
        if train.empty:
            raise TrainingDataError(f"{where}: user {run.user!r} has no training pairs")
    if run.kind == "mt" and run.held_out_fold is not None:
        train = train[train.fold != run.held_out_fold]
    if run.fraction < 1:
        # One order per (seed, user), whatever the run: a smaller fraction is a prefix of a larger one (nested subsets)
        keep = [
            rows.index[
                np.sort(
                    np.random.default_rng(stable_seed(run.seed, "fraction", user)).permutation(len(rows))[
                        : max(1, round(run.fraction * len(rows)))
                    ]
                )
            ]
            for user, rows in train.groupby("user_id", sort=True)
        ]
        train = train.loc[np.sort(np.concatenate(keep))]  # the same share of every user's pairs
    if train.empty:
        raise TrainingDataError(f"{where}: the training set is empty")
    prompts = run_prompts(run, train, prefixes, pair_personas)
    return pd.DataFrame(
        {
            "id": list(train.id),
            "user_id": list(train.user_id),
            "prompt": prompts,
            "chosen": list(train.chosen),
            "rejected": list(train.rejected),
        }
    )


def check_lengths(run: RunSpec, pairs: pd.DataFrame, tokenizer) -> None:
    """Stop before training when a prompt alone leaves no room for a response within max_length."""
    for row in pairs.itertuples():
        n = len(tokenizer(chat(tokenizer, None, row.prompt), add_special_tokens=False)["input_ids"])
        if n >= run.max_length:
            raise TrainingDataError(
                f"run {run.name!r}: the prompt of pair {row.id!r} has {n} tokens, not below max_length {run.max_length}"
            )


def conversational_dataset(pairs: pd.DataFrame, users: list[str] | None = None):
    """The pairs as trl's conversational preference dataset (prompt, chosen, rejected as chat messages); with `users`
    (a soft prefix's pool order), each pair's `user_index` in it."""
    from datasets import Dataset

    index = {user: i for i, user in enumerate(users or [])}
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r.prompt}],
                "chosen": [{"role": "assistant", "content": r.chosen}],
                "rejected": [{"role": "assistant", "content": r.rejected}],
            }
            | ({"user_index": index[r.user_id]} if users is not None else {})
            for r in pairs.itertuples()
        ]
    )


def lora_config(run: RunSpec):
    """The run's LoRA adapter on every linear layer (WikiPersona App. H: r=8, alpha=32, dropout=0.1)."""
    from peft import LoraConfig

    return LoraConfig(
        r=run.lora_r,
        lora_alpha=run.lora_alpha,
        lora_dropout=run.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def sft_dataset(pairs: pd.DataFrame):
    """(prompt, chosen) as trl's conversational prompt-completion dataset: the loss falls on the response only."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r.prompt}],
                "completion": [{"role": "assistant", "content": r.chosen}],
            }
            for r in pairs.itertuples()
        ]
    )


CHECKPOINT_LAST_FILES = ("trainer_state.json",)  # what the Trainer writes last: without it a checkpoint is torn
SOFT_PREFIX_CHECKPOINT = "soft_prefix.pt"  # a soft prefix's weights and RNG state in a checkpoint, written after it


def _last_checkpoint(directory: Path, needs: tuple[str, ...] = ()) -> str | None:
    """The newest complete checkpoint in `directory`: one a kill interrupted while it was written (no
    trainer_state.json, or a file in `needs` missing) is skipped, so the one before it is resumed from."""
    checkpoints = sorted(
        (p for p in directory.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    complete = [p for p in checkpoints if all((p / f).is_file() for f in (*CHECKPOINT_LAST_FILES, *needs))]
    return str(complete[-1]) if complete else None


def run_inputs(run: RunSpec, data_dir: str | Path = paths.DATA) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The run's training pairs from the stage 1-2 tables in data_dir, and its SFT pairs: the records' sft_train
    split where the dataset has one (the persona-tailoring data), else None (the run's own pairs are used)."""

    data_dir = Path(data_dir)
    records = read_records(data_dir / "records.jsonl")
    tables = {}
    for name in ("prefixes", "pair_personas"):
        path = data_dir / f"{name}.jsonl"
        tables[name] = pd.DataFrame(read_jsonl(path)) if path.exists() else None
    pairs = training_pairs(run, records, tables["prefixes"], tables["pair_personas"])
    sft = records[records.split == "sft_train"]
    if sft.empty:
        return pairs, None
    return pairs, training_pairs(run, sft.assign(split="train"), tables["prefixes"], tables["pair_personas"])


def has_soft_prefix(run: RunSpec) -> bool:
    """Whether the run learns a soft prefix (an MT run with a prefix of SOFT_PREFIX_TYPES) instead of reading a text."""
    return run.kind == "mt" and run.prefix in SOFT_PREFIX_TYPES


def soft_prefix_pools(run: RunSpec, embedding_model: str, data_dir: str | Path = paths.DATA):
    """For a run with a soft prefix (vpl), the pair pools it reads (personas.soft_prefix.pair_pools): every user
    with training pairs in stage 1's records, seen by the run or not, embedded with base.embedding_model; None for
    other runs."""
    if not has_soft_prefix(run):
        return None

    records = read_records(Path(data_dir) / "records.jsonl")
    return pair_pools(records, run.vpl_pool, run.seed, Embedder(embedding_model).encode)


def training_curve(log_path: str | Path) -> pd.DataFrame:
    """The JSONL training log as a table: phase, step, loss, reward accuracy and margin (DPO), token accuracy (SFT)."""

    log = pd.DataFrame(read_jsonl(log_path))
    columns = {
        "rewards/accuracies": "reward_accuracy",
        "rewards/margins": "reward_margin",
        "mean_token_accuracy": "token_accuracy",
    }
    log = log.rename(columns=columns)
    keep = ["phase", "step", "loss", "learning_rate"] + [c for c in columns.values() if c in log]
    return log[keep]


def run_metrics(run: RunSpec, pairs: pd.DataFrame, curve: pd.DataFrame) -> dict:
    """The run's summary for `dvc metrics`: data size, steps, and loss / reward accuracy / margin averaged over the
    last quarter of the final phase's steps (single steps of 4 pairs are too noisy to report alone)."""
    final = curve[curve.phase == curve.phase.iloc[-1]]
    tail = final.tail(max(1, len(final) // 4))
    metrics = {
        "kind": run.kind,
        "prefix": run.prefix,
        "user": run.user,
        "held_out_fold": run.held_out_fold,
        "fraction": run.fraction,
        "seed": run.seed,
        "precision": run.precision,
        "pairs": len(pairs),
        "users": int(pairs.user_id.nunique()),
        "steps": int(final.step.max()),
        "first_loss": round(float(final.loss.iloc[0]), 4),
        "final_loss": round(float(tail.loss.mean()), 4),
    }
    for column in ("reward_accuracy", "reward_margin", "token_accuracy"):
        if column in tail and tail[column].notna().any():
            metrics[f"final_{column}"] = round(float(tail[column].mean()), 4)
    return metrics


def work_dir_for(run: RunSpec, pairs: pd.DataFrame, root: str | Path, pools=None) -> Path:
    """Where checkpoints of this exact run (spec, data and a soft prefix's pair pools) live while it trains: a changed
    spec or changed data never resumes from another run's checkpoint."""
    digest = hashlib.sha256(json.dumps(run.model_dump(), sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(pairs, index=False).values.tobytes())
    if pools is not None:
        digest.update(json.dumps(pools.users).encode() + pools.features.tobytes() + pools.mask.tobytes())
    return Path(root) / f"{run.name}-{digest.hexdigest()[:12]}"


def use_qlora(run: RunSpec, device: str) -> bool:
    """Whether the base is loaded in 4 bits (QLoRA): only when the run asks (`qlora: true`, so the same params give
    the same model on every machine), which needs CUDA and bitsandbytes."""
    if run.qlora and not (device == "cuda" and importlib.util.find_spec("bitsandbytes") is not None):
        raise TrainingDataError(f"run {run.name!r}: qlora true needs a CUDA device and the bitsandbytes package")
    return run.qlora


def load_for_training(base_dir: str | Path, run: RunSpec):
    """(model, right-padding tokenizer, device): the frozen base in the run's precision, 4-bit under QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device("auto")
    kwargs = {"dtype": torch.bfloat16 if run.precision == "bf16" else torch.float32}
    if use_qlora(run, device):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    if "quantization_config" in kwargs:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=run.gradient_checkpointing)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


def _keep_freed_memory_in_the_heap() -> None:
    """glibc serves large tensors with fresh mmap pages and unmaps them on free; a training step allocates and frees
    hundreds of them, and the page faults cost about a third of CPU training time here. Keep them in the heap."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 31)


class _JsonlLog:
    """The run's training log, one JSON line per logging step and phase; survives a kill, trimmed on resume."""

    KEYS = {"loss", "learning_rate", "grad_norm", "epoch", "mean_token_accuracy", "soft_prefix/kl"}

    def __init__(self, path: Path):
        self.path = path

    def trim(self, phase: str, step: int) -> None:
        """Drop this phase's lines after `step` (they are redone from the checkpoint)."""
        if not self.path.exists():
            return
        lines = [
            ln
            for ln in self.path.read_text().splitlines()
            if json.loads(ln)["phase"] != phase or json.loads(ln)["step"] <= step
        ]
        self.path.write_text("".join(f"{ln}\n" for ln in lines))

    def callback(self, phase: str):
        from transformers import TrainerCallback

        path, keys = self.path, self.KEYS

        class Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs and state.is_world_process_zero:
                    keep = {k: v for k, v in logs.items() if k in keys or k.startswith("rewards/")}
                    with path.open("a") as fh:
                        fh.write(json.dumps({"phase": phase, "step": state.global_step, **keep}, sort_keys=True) + "\n")

        return Callback()


def _on_disk(dataset, path: Path):
    """The dataset saved under the run's work dir and read back, so that trl's cache files (tokenisation, precomputed
    reference log-probs) live there: shared by every process of a distributed run and reused when a run resumes.
    Each process writes its own copy and renames it into place; the first rename wins (the copies are identical)."""
    import os

    from datasets import load_from_disk

    if not path.exists():
        staging = path.with_name(f"{path.name}.{os.getpid()}")
        dataset.save_to_disk(str(staging))
        try:
            staging.rename(path)
        except OSError:
            shutil.rmtree(staging)
    return load_from_disk(str(path))


def _fit(
    phase: str,
    run: RunSpec,
    model,
    tokenizer,
    dataset,
    work_dir: Path,
    log: _JsonlLog,
    device: str,
    epochs: int,
    learning_rate: float,
    soft_prefix=None,
):
    """One trl training phase (`sft` or `dpo`), resumed from its last checkpoint in work_dir if there is one; a DPO
    phase with `soft_prefix` (a VPLPrefix) trains it with the adapter."""
    from transformers import set_seed
    from trl import DPOConfig, SFTConfig, SFTTrainer

    resume = _last_checkpoint(work_dir, (SOFT_PREFIX_CHECKPOINT,) if soft_prefix is not None else ())
    log.trim(phase, int(resume.rsplit("-", 1)[1]) if resume else 0)
    common = dict(
        output_dir=str(work_dir),
        per_device_train_batch_size=run.batch_size,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        warmup_steps=run.warmup_ratio,
        max_length=run.max_length,
        logging_steps=1,
        save_strategy="steps",
        save_steps=run.save_steps,
        seed=run.seed,
        data_seed=run.seed,
        report_to=[],
        use_cpu=device == "cpu",
        bf16=run.precision == "bf16",
        activation_checkpointing=run.gradient_checkpointing,
    )
    dataset = _on_disk(dataset, work_dir / "dataset")
    set_seed(run.seed)  # the LoRA initialisation draws before the Trainer seeds itself
    if phase == "sft":
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(run),
            callbacks=[log.callback(phase)],
        )
    else:
        args = DPOConfig(**common, beta=run.beta, precompute_ref_log_probs=run.precompute_ref)
        trainer = shared_prompt_trainer_class()(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(run),
            callbacks=[log.callback(phase)],
        )
        if soft_prefix is not None:
            _attach_soft_prefix(trainer, run, soft_prefix, resume)
    result = trainer.train(resume_from_checkpoint=resume)
    return trainer, result, resume


def _attach_soft_prefix(trainer, run: RunSpec, soft_prefix, resume: str | None) -> None:
    """Make the trainer place the soft prefix and optimise it with the adapter (a submodule of the model, so its
    parameters reach the optimizer); its state is saved with each checkpoint and restored on resume."""
    import torch
    from transformers import TrainerCallback

    if not trainer._shared():
        raise TrainingDataError(
            f"run {run.name!r}: the {run.prefix!r} prefix trains in one process, without "
            "gradient checkpointing (set train.defaults.num_processes: 1, gradient_checkpointing: false)"
        )
    trainer.soft_prefix, trainer.kl_weight = soft_prefix, run.vpl_kl_weight
    trainer.model.add_module("soft_prefix", soft_prefix.to(next(trainer.model.parameters()).device))
    if resume:
        soft_prefix.restore(torch.load(Path(resume) / SOFT_PREFIX_CHECKPOINT, weights_only=False))

    class SaveSoftPrefix(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                target = Path(args.output_dir) / f"checkpoint-{state.global_step}" / SOFT_PREFIX_CHECKPOINT
                torch.save(soft_prefix.checkpoint_state(), target)

    trainer.add_callback(SaveSoftPrefix())


def new_soft_prefix(run: RunSpec, model, pools):
    """The run's VPLPrefix for `model`, its map starting at the model's mean input embedding and spread."""

    embeddings = model.get_input_embeddings().weight.detach().float()
    return VPLPrefix(
        pools,
        embeddings.shape[1],
        run.vpl_tokens,
        run.vpl_latent_dim,
        run.vpl_hidden,
        run.vpl_context,
        embeddings.mean(0),
        float(embeddings.std()),
        stable_seed(run.seed, "vpl"),
    )


def train_adapter(
    run: RunSpec,
    pairs: pd.DataFrame,
    base_dir: str | Path,
    out_dir: str | Path,
    work_dir: str | Path | None = None,
    sft_pairs: pd.DataFrame | None = None,
    pools=None,
) -> dict:
    """Train the run's LoRA adapter (DPO, or SFT for kind `sft`; with `sft_epochs`, SFT on `sft_pairs` — default: the
    run's own pairs — merged into the base before DPO), resuming from the last checkpoint in `work_dir`.
    Writes out_dir/adapter (PEFT format), out_dir/sft_adapter (SFT-then-DPO only; see `load_trained`),
    out_dir/run.json (the resolved spec) and out_dir/log.jsonl; the checkpoints are removed once the run is done.
    A `vpl` run needs `pools` (`soft_prefix_pools`) and also writes every pooled user's soft prefix
    (soft_prefix.PREFIXES_FILE). One process trains a run at a time: another one stops with LockedError."""
    _keep_freed_memory_in_the_heap()
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    first = int(os.environ.get("RANK", "0")) == 0  # one lock per launch: the other ranks share rank 0's work dir
    with exclusive(work_dir / ".lock", f"run {run.name!r}") if first else contextlib.nullcontext():
        return _train_locked(run, pairs, base_dir, out_dir, work_dir, sft_pairs, pools)


def _train_locked(
    run: RunSpec, pairs: pd.DataFrame, base_dir, out_dir: Path, work_dir: Path, sft_pairs: pd.DataFrame | None, pools
) -> dict:
    """`train_adapter` once its work dir is this process's."""
    soft = has_soft_prefix(run)
    if soft and pools is None:
        raise TrainingDataError(
            f"run {run.name!r}: the {run.prefix!r} prefix needs the users' pair pools (soft_prefix_pools)"
        )
    model, tokenizer, device = load_for_training(base_dir, run)
    check_lengths(run, pairs, tokenizer)
    log = _JsonlLog(work_dir / "log.jsonl")
    started = time.perf_counter()
    if run.kind == "sft":
        trainer, result, resume = _fit(
            "sft",
            run,
            model,
            tokenizer,
            sft_dataset(pairs),
            work_dir / "sft",
            log,
            device,
            run.epochs,
            run.learning_rate,
        )
    else:
        if run.sft_epochs:
            model = _sft_then_merge(
                run, model, tokenizer, pairs if sft_pairs is None else sft_pairs, work_dir, log, device
            )
        soft_prefix = new_soft_prefix(run, model, pools) if soft else None
        trainer, result, resume = _fit(
            "dpo",
            run,
            model,
            tokenizer,
            conversational_dataset(pairs, pools.users if soft else None),
            work_dir / "dpo",
            log,
            device,
            run.epochs,
            run.learning_rate,
            soft_prefix,
        )
    seconds = time.perf_counter() - started
    trainer.save_model(str(out_dir / "adapter"))
    if trainer.accelerator.is_main_process:
        _stable_adapter_config(out_dir / "adapter")
        if run.sft_epochs and run.kind != "sft":
            shutil.copytree(work_dir / "sft_adapter", out_dir / "sft_adapter", dirs_exist_ok=True)
        (out_dir / "run.json").write_text(json.dumps(run.model_dump(), indent=2, sort_keys=True) + "\n")
        if soft:
            save_prefixes(out_dir / PREFIXES_FILE, soft_prefix.users, soft_prefix.prefixes())
        shutil.copy(log.path, out_dir / "log.jsonl")
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "run": run.name,
        "kind": run.kind,
        "pairs": len(pairs),
        "steps": trainer.state.global_step,
        "train_loss": round(result.training_loss, 6),
        "losses": [h["loss"] for h in history],
        "train_seconds": round(seconds, 3),
        "resumed_from": resume,
    }


def _stable_adapter_config(adapter_dir: Path) -> None:
    """peft writes `target_modules` from a set, in an order that changes with Python's string hashing; sort it so
    that the same run gives the same adapter_config.json."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _sft_then_merge(
    run: RunSpec, model, tokenizer, sft_pairs: pd.DataFrame, work_dir: Path, log: _JsonlLog, device: str
):
    """The SFT phase of an SFT-then-DPO run (skipped when a previous attempt finished it), merged into the base."""
    from peft import PeftModel

    adapter = work_dir / "sft_adapter"
    if not (adapter / "adapter_config.json").exists():
        trainer, _, _ = _fit(
            "sft",
            run,
            model,
            tokenizer,
            sft_dataset(sft_pairs),
            work_dir / "sft",
            log,
            device,
            run.sft_epochs,
            run.sft_learning_rate,
        )
        trainer.save_model(str(adapter))
        if trainer.accelerator.is_main_process:
            _stable_adapter_config(adapter)
        trainer.accelerator.wait_for_everyone()
        model = trainer.accelerator.unwrap_model(trainer.model)
        return model.merge_and_unload()
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def launcher_command(
    run_name: str, num_processes: int, accelerate_config: str = "", params_file: str = "params.yaml"
) -> list[str]:
    """The command that trains `run_name` on `num_processes` processes: `accelerate launch` with the given config
    file (configs/accelerate/: single GPU, DDP, DeepSpeed ZeRO-2), else `torchrun` (the launcher that works for
    CPU/gloo as well)."""
    if accelerate_config:
        if not Path(accelerate_config).is_file():
            raise TrainingDataError(
                f"run {run_name!r}: train.defaults.accelerate_config {accelerate_config!r} is not a file"
            )
        head = ["accelerate", "launch", "--config_file", accelerate_config, "--num_processes", str(num_processes)]
    else:
        head = ["torchrun", "--standalone", "--nproc_per_node", str(num_processes)]
    return head + ["-m", "personalign", "train", run_name, "--params", params_file]
