"""What the stages leave on disk and read back: fingerprints of a checkpoint or an adapter (the identity every cache
key uses), a trained run loaded plain or merged into the base (after its SFT adapter where it had one), and the
score cache; the base loaded once with its trained runs merged or switched on it (LoadedBase). Torch, transformers
and peft are imported only inside the loaders."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from personalign.lm.models import load_base


def model_fingerprint(model_dir: str | Path) -> str:
    """A short hash of a checkpoint's config and weights, so the cache never mixes two models' outputs."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*")):
        if path.suffix in {".json", ".safetensors", ".jinja"} and path.name != "personalign_base.json":
            digest.update(path.name.encode())
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


class ScoreCache:
    """Finished scores of one (model, adapter, prompts, precision) on disk, so a rerun scores only what changed;
    each entry is written whole (to a temporary name, then renamed), so a killed run keeps the finished ones."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(model_id: str, adapter_id: str, pairs: pd.DataFrame, settings: dict) -> str:
        payload = json.dumps(
            [model_id, adapter_id, settings, pairs[["id", "prompt", "chosen", "rejected"]].values.tolist()]
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def get(self, key: str) -> pd.DataFrame | None:
        path = self.root / f"{key}.json"
        return pd.read_json(path, orient="split", dtype=False) if path.exists() else None

    def put(self, key: str, scores: pd.DataFrame) -> None:
        path = self.root / f"{key}.json"
        partial = path.with_suffix(f".{os.getpid()}.partial")  # queued experiments may write the same key at once
        partial.write_text(scores.to_json(orient="split", double_precision=15))
        partial.replace(path)


def adapter_fingerprint(path: str | Path) -> str:
    """A short hash of every file under a directory (an adapter's identity for the score cache)."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            digest.update(str(file.relative_to(path)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def sft_merged(base, run_dir: Path):
    """A copy of the in-memory base with the run's SFT adapter merged into it (a plain copy for a run without an SFT
    phase)."""
    import copy

    from peft import PeftModel

    model = copy.deepcopy(base)
    if (run_dir / "sft_adapter").is_dir():
        model = PeftModel.from_pretrained(model, str(run_dir / "sft_adapter")).merge_and_unload()
    return model


def merged_run(base, run_dir: Path, with_reference: bool = True):
    """A trained run as a plain model: its adapter merged into a copy of the in-memory base model (an unmerged LoRA
    makes every forward several times slower on a CPU), after its SFT adapter where it had an SFT phase. Returns
    (policy, reference): the reference is the merged SFT model for SFT-then-DPO runs (with `with_reference`), None
    when it is the base or not asked for."""
    import copy

    from peft import PeftModel

    model = sft_merged(base, run_dir)
    reference = copy.deepcopy(model) if with_reference and (run_dir / "sft_adapter").is_dir() else None
    return PeftModel.from_pretrained(model, str(run_dir / "adapter")).merge_and_unload(), reference


ADAPTER_LOADING = ("merged", "switched")  # base.adapters: how stages 4-5 run a trained run (LoadedBase)


class AdapterView:
    """One loaded base carrying several LoRA adapters, seen with `adapters` switched on (several at once add up: an
    SFT-then-DPO run is its SFT and its DPO adapter together) or, with None, with every adapter off (the base).
    Callable and `generate` like a model; anything else is read from the PEFT model."""

    def __init__(self, peft_model, adapters: list[str] | None):
        self._peft, self._adapters = peft_model, adapters

    def _switched(self):
        if self._adapters is None:
            return self._peft.disable_adapter()
        self._peft.base_model.set_adapter(self._adapters)
        return contextlib.nullcontext()

    def __call__(self, *args, **kwargs):
        with self._switched():
            return self._peft(*args, **kwargs)

    def generate(self, *args, **kwargs):
        with self._switched():
            return self._peft.generate(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._peft, name)


class LoadedBase:
    """The stage-0 base loaded once where `base.device` / `base.dtype` place it, with stage 3's trained runs on it
    as `base.adapters` says: `merged` (each run's adapter merged into a copy of the base: the fastest forward on a
    CPU, one extra copy of the model at a time) or `switched` (every adapter loaded onto the one base and switched on
    by name: one copy of the model however many runs, the way for a big model on a GPU; equal to merged up to float
    rounding). Once a run is switched in, the base itself is `base()` (adapters off), never the model passed in.
    `identity` (the checkpoint's fingerprint, device, dtype and adapter loading) is what cache keys hold."""

    def __init__(self, model, tokenizer, fingerprint: str, device: str, adapters: str = "merged"):
        if adapters not in ADAPTER_LOADING:
            raise ValueError(f"adapters must be one of {ADAPTER_LOADING}, got {adapters!r}")
        self._base, self.tokenizer, self.device, self.adapters, self._peft = model, tokenizer, device, adapters, None
        self.identity = f"{fingerprint}@{device}/{str(model.dtype).removeprefix('torch.')}/{adapters}"

    @classmethod
    def open(cls, base_dir: str | Path, device: str = "auto", dtype: str = "auto", adapters: str = "merged"):
        """The checkpoint in `base_dir` loaded for inference (`models.load_base`)."""
        model, tokenizer, dev = load_base(base_dir, device, dtype)
        return cls(model, tokenizer, model_fingerprint(base_dir), str(dev), adapters)

    def base(self):
        """The base model with no adapter."""
        return self._base if self._peft is None else AdapterView(self._peft, None)

    def run(self, run_dir: Path, with_reference: bool = True):
        """(policy, reference) of a run as `merged_run` gives them: the reference is the SFT model of an
        SFT-then-DPO run (with `with_reference`), None when it is the base or not asked for."""
        if self.adapters == "merged":
            return merged_run(self._base, run_dir, with_reference)
        names = [self._load(run_dir, part) for part in ("sft_adapter", "adapter") if (run_dir / part).is_dir()]
        reference = AdapterView(self._peft, names[:-1]) if with_reference and len(names) > 1 else None
        return AdapterView(self._peft, names), reference

    def _load(self, run_dir: Path, part: str) -> str:
        from peft import PeftModel

        name = f"{run_dir.name}__{part}"
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base, str(run_dir / part), adapter_name=name)
        elif name not in self._peft.peft_config:
            self._peft.load_adapter(str(run_dir / part), adapter_name=name)
        return name


def load_trained(base_dir: str | Path, run_dir: str | Path, dtype: str = "float32"):
    """A trained run as a model: the base, with the SFT adapter merged when the run had an SFT phase, and the run's
    adapter on top (a PeftModel, so `disable_adapter()` gives back the reference)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir = Path(run_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    if (run_dir / "sft_adapter").is_dir():
        model = PeftModel.from_pretrained(model, str(run_dir / "sft_adapter")).merge_and_unload()
    return PeftModel.from_pretrained(model, str(run_dir / "adapter"))
