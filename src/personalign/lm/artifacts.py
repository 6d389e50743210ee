"""What the stages leave on disk and read back: fingerprints of a checkpoint or an adapter (the identity every cache
key uses), a trained run loaded plain or merged into the base (after its SFT adapter where it had one), and the
score cache. Imports no other personalign module; torch, transformers and peft only inside the loaders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd


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
        partial = path.with_suffix(".partial")
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
