"""Checkpoints on disk for tests: the tiny model saved as stage 0 would, and random LoRA adapters saved as stage 3
would, so stages 4-5 code can load them by path."""

from __future__ import annotations

import copy
from pathlib import Path


def save_base(model, tokenizer, path: Path) -> Path:
    """The model and tokenizer saved as a plain checkpoint directory."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_random_adapter(model, path: Path, seed: int, scale: float = 1.0):
    """A rank-4 LoRA on every linear layer of a copy of `model`, randomly initialised from `seed` (its B matrices
    multiplied by `scale`), saved to `path`; returns the PeftModel."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    if scale != 1.0:
        with torch.no_grad():
            for name, weight in peft.named_parameters():
                if "lora_B" in name:
                    weight.mul_(scale)
    peft.save_pretrained(path)
    return peft
