"""Seed every global RNG from `base.seed` (code that draws should still take a numpy Generator explicitly)."""

from __future__ import annotations

import hashlib
import random

import numpy as np


def stable_seed(*parts: object) -> int:
    """A 32-bit seed derived from the parts' text, so one item's randomness never depends on another's."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:4], "little")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's legacy RNG, torch and transformers; return a fresh Generator for explicit use."""
    import torch
    from transformers import set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_seed(seed)
    return np.random.default_rng(seed)


def figure_rng(base_seed: int, name: str) -> np.random.Generator:
    """A Generator of its own for one figure, table or claim family, so adding or removing another one never moves
    its resampling."""
    return np.random.default_rng(stable_seed(base_seed, "figure", name))
