"""Shared fixtures: the real MiniLM embedder (shipped in a wheel), the real world files, the tiny random model."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedder():
    from personalign.lm.embeddings import Embedder

    return Embedder("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def world():
    from personalign.core.world import load_world

    return load_world()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(model, tokenizer) of the smoke profile's randomly initialised 2-layer Llama, saved and reloaded as stage 0
    does."""
    from personalign.lm.models import load_base, resolve_model, write_base_checkpoint

    out = tmp_path_factory.mktemp("tiny")
    write_base_checkpoint(resolve_model("tiny-random-llama"), out, seed=0)
    model, tokenizer, _ = load_base(out, "cpu", "float32")
    return model, tokenizer


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for the module (tiny reward heads run far faster without thread overhead)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
