"""The stage notebooks under notebooks/ are sources: no outputs, no execution counts (their executed copies live in
notebooks/rendered/, written by `personalign run`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SOURCES = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_every_stage_has_a_source_notebook():
    assert len(SOURCES) >= 9


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_a_source_notebook_is_stripped(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    dirty = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count") is not None]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs or execution counts; strip them before committing"
