"""Seed every global RNG from `base.seed` (code that draws should still take a numpy Generator explicitly)."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's legacy RNG, torch and transformers; return a fresh Generator for explicit use."""
    import torch
    from transformers import set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_seed(seed)
    return np.random.default_rng(seed)
