"""Shared fixtures: the real MiniLM embedder (shipped in a wheel) and the real world files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedder():
    from personalign.embeddings import Embedder

    return Embedder("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def world():
    from personalign.world import load_world

    return load_world()
