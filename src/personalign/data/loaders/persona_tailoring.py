"""The persona-tailoring releases ("Whose Boat Does it Float?"): BeaverTails, Anthropic HHH and Mnemonic as HF
`save_to_disk` directories (splits fewshot, sft_train, sft_val, dpo_train, dpo_val, test; columns prompt, chosen,
rejected and the chosen/rejected personas, gold and retrieved), and the persona-inference set (prompt, chosen,
rejected). Each dataset becomes one user of the canonical table (its pairs carry their own personas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personalign.data.loaders.common import DatasetError, LoadedDataset, frames, persona, record, text_field

SPLITS = ("fewshot", "sft_train", "sft_val", "dpo_train", "dpo_val", "test")
COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_persona_gold",
    "rejected_persona_gold",
    "chosen_persona_retr",
    "rejected_persona_retr",
)
CANONICAL_SPLIT = {
    "sft_train": "sft_train",
    "sft_val": "sft_val",
    "dpo_train": "train",
    "dpo_val": "val",
    "test": "test",
}  # fewshot (the authors' prompt examples) is checked and counted, not used
LABELLED = ("chosen", "rejected", "chosen_persona_gold", "rejected_persona_gold")  # empty together in unlabelled tests


def _from_disk(path: Path):
    """`datasets.load_from_disk`, its failures (no dataset there, truncated or corrupt Arrow files) as DatasetError."""
    from datasets import load_from_disk

    try:
        return load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"{path}: not a `save_to_disk` dataset directory, or an unreadable one ({type(exc).__name__}: {exc})"
        ) from None


def _open(path: str | Path, hub_id: str = ""):
    """The DatasetDict at `path`, or from the hub by `hub_id` when the path is absent and an id is given."""
    from datasets import load_dataset

    path = Path(path)
    if path.exists():
        return _from_disk(path)
    if hub_id:
        return load_dataset(hub_id)
    raise DatasetError(f"{path}: no such dataset directory (and no hub id configured)")


def _split_rows(path: Path, split: str, data) -> list[dict]:
    """The rows of one split, checked: every column present and text; the responses and gold personas may be empty
    only all together (a test split released without labels)."""
    where = f"{path}/{split}"
    missing = [c for c in COLUMNS if c not in data.column_names]
    if missing:
        raise DatasetError(f"{where}: missing column {missing[0]!r} (expected {', '.join(COLUMNS)})")
    rows = data.to_list()
    for i, row in enumerate(rows):
        at = f"{where}: row {i}"
        text_field(row, "prompt", at)
        empty = [c for c in LABELLED if not text_field(row, c, at, allow_empty=True).strip()]
        if empty and (split != "test" or len(empty) != len(LABELLED)):
            raise DatasetError(f"{at}: field {empty[0]!r} is empty")
        for column in ("chosen_persona_retr", "rejected_persona_retr"):
            text_field(row, column, at, allow_empty=not empty)
        if not empty and row["chosen"] == row["rejected"]:
            raise DatasetError(f"{at}: fields 'chosen' and 'rejected' are identical")
    return rows


def load_persona_tailoring(
    name: str, path: str | Path, sizes: dict[str, int], rng: np.random.Generator, hub_id: str = ""
) -> LoadedDataset:
    """Dataset `name` as canonical records: `sizes[split]` rows (absent or None = all) drawn with `rng` from
    dpo_train (-> train), dpo_val (-> val), test (-> test), sft_train and sft_val (kept under those names: an
    SFT-then-DPO run's SFT phase), in their original order, ids `<name>-<split>-<row>`. The fewshot split is checked
    and counted only."""
    path = Path(path)
    data = _open(path, hub_id)
    absent = [s for s in SPLITS if s not in data]
    if absent:
        raise DatasetError(f"{path}: missing split {absent[0]!r} (expected {', '.join(SPLITS)})")
    records, counts, notes = [], {}, []
    for split in SPLITS:
        rows = _split_rows(path, split, data[split])
        counts[f"{split}_rows"] = len(rows)
        if split not in CANONICAL_SPLIT:
            counts[f"{split}_unused"] = len(rows)
            continue
        want = sizes.get(CANONICAL_SPLIT[split])
        keep = np.arange(len(rows)) if want is None or want >= len(rows) else np.sort(rng.permutation(len(rows))[:want])
        counts[f"{split}_not_drawn"] = len(rows) - len(keep)
        unlabelled = 0
        for i in keep:
            row = rows[int(i)]
            unlabelled += not row["chosen"].strip()
            records.append(
                record(
                    id=f"{name}-{split}-{int(i):06d}",
                    source=name,
                    user_id=name,
                    user_name=name,
                    split=CANONICAL_SPLIT[split],
                    **{c: row[c] for c in COLUMNS},
                )
            )
        if unlabelled:
            counts[f"{split}_without_responses"] = unlabelled
            notes.append(
                f"{name}: {unlabelled} of the {len(keep)} {split} rows used have no responses and no gold "
                "personas (released unlabelled): only generation with retrieved personas is possible there; "
                "accuracy and the P_gold cells are undefined for them."
            )
    counts["records"] = len(records)
    notes.append(
        f"{name}: the fewshot split ({counts['fewshot_rows']} rows, the authors' prompt examples) is checked "
        "and not used."
    )
    users = [persona(user_id=name, name=name, category="dataset")]
    records_frame, personas_frame = frames(records, users)
    return LoadedDataset(records_frame, personas_frame, counts, notes)


def load_persona_inference(path: str | Path, limit: int | None = None) -> pd.DataFrame:
    """The Whose Boat persona-inference set (columns prompt, chosen, rejected) as pairs with ids `pi-0000`..."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset directory")
    data = _from_disk(path)
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
