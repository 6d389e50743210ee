"""Loaders for public preference data saved locally (HF `save_to_disk` directories)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message names the path, the row and the field."""


def load_persona_inference(path: str | Path, limit: int | None = None) -> pd.DataFrame:
    """The Whose Boat persona-inference set (columns prompt, chosen, rejected) as pairs with ids `pi-0000`..."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset directory")
    data = load_from_disk(str(path))
    split = data["train"] if hasattr(data, "keys") else data
    frame = split.to_pandas()
    for column in ("prompt", "chosen", "rejected"):
        if column not in frame.columns:
            raise DatasetError(f"{path}: missing column {column!r}")
        bad = frame.index[~frame[column].map(lambda v: isinstance(v, str) and v.strip() != "")]
        if len(bad):
            raise DatasetError(f"{path}: row {int(bad[0])}: field {column!r} is empty or not text")
    frame = frame[["prompt", "chosen", "rejected"]].reset_index(drop=True)
    frame.insert(0, "id", [f"pi-{i:04d}" for i in range(len(frame))])
    return frame if limit is None else frame.head(limit)
