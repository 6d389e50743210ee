"""What every loader shares: the error type, the loaded result, reading local table files with row numbers,
field checks that name file/row/field, canonical record rows, and seeded CV folds over users."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from personalign.core.records import PERSONA_FIELDS, RECORD_FIELDS

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message names the path, the row and the field."""


@dataclass
class LoadedDataset:
    """Canonical records and personas of one source, with counts of every row read, kept or filtered (by reason)
    and notes for the dataset card (what the source lacks, what a later stage cannot do with it)."""

    records: pd.DataFrame
    personas: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_table(path: str | Path) -> list[dict]:
    """Rows of a .jsonl, .json (a list of objects), .parquet or .csv file; a malformed line or a non-object row is
    reported with the file and its row number (1-based line for JSONL, 0-based index otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(_utf8_lines(path), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(rows[-1], dict):
                raise DatasetError(f"{path}: line {n}: expected a JSON object, got {type(rows[-1]).__name__}")
        return rows
    if suffix == ".json":
        try:
            data = json.loads("\n".join(_utf8_lines(path)))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise DatasetError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
        return data
    if suffix == ".parquet":
        try:
            return pq.read_table(path).to_pylist()  # plain lists and scalars, as a JSON file would give
        except (OSError, ValueError) as exc:  # pyarrow: truncated file, bad magic bytes, corrupt pages
            raise DatasetError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    if suffix == ".csv":
        _utf8_lines(path)
        try:
            return pd.read_csv(path, keep_default_na=False).to_dict("records")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DatasetError(f"{path}: not a well-formed CSV ({str(exc).strip()})") from None
    raise DatasetError(f"{path}: unsupported file type {suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}")


def text_field(row: dict, name: str, where: str, allow_empty: bool = False) -> str:
    """`row[name]` as a string; stops with `where` (file and row) and the field when it is missing, not text, or
    empty (unless `allow_empty`)."""
    if name not in row:
        raise DatasetError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field {name!r} must be text, got {type(value).__name__} {value!r:.60}")
    if not allow_empty and not value.strip():
        raise DatasetError(f"{where}: field {name!r} is empty")
    return value


def record(
    *,
    id: str,
    source: str,
    user_id: str,
    prompt: str,
    chosen: str,
    rejected: str,
    split: str,
    fold: int = 0,
    user_name: str = "",
    axes: list[str] | None = None,
    question_type: str = "none",
    chosen_persona_gold: str = "",
    rejected_persona_gold: str = "",
    chosen_persona_retr: str = "",
    rejected_persona_retr: str = "",
) -> dict:
    """One canonical record (DESIGN.md); persona fields stay empty where the source has none."""
    row = {
        "id": id,
        "source": source,
        "user_id": user_id,
        "user_name": user_name or user_id,
        "axes": list(axes or []),
        "question_type": question_type,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "split": split,
        "fold": int(fold),
        "chosen_persona_gold": chosen_persona_gold,
        "rejected_persona_gold": rejected_persona_gold,
        "chosen_persona_retr": chosen_persona_retr,
        "rejected_persona_retr": rejected_persona_retr,
    }
    assert list(row) == list(RECORD_FIELDS)
    return row


def persona(
    *,
    user_id: str,
    name: str = "",
    tag: str = "",
    axes: list[str] | None = None,
    category: str = "",
    gold: str = "",
    demographics: dict | None = None,
) -> dict:
    """One row of the persona table; a source without persona descriptions leaves `gold` empty."""
    row = {
        "user_id": user_id,
        "name": name or user_id,
        "tag": tag,
        "axes": list(axes or []),
        "category": category,
        "gold": gold,
        "demographics": dict(demographics or {}),
    }
    assert list(row) == list(PERSONA_FIELDS)
    return row


def frames(records: list[dict], personas: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records sorted by id and personas sorted by user_id, as DataFrames in the canonical column order."""
    records = sorted(records, key=lambda r: r["id"])
    personas = sorted(personas, key=lambda p: p["user_id"])
    return (pd.DataFrame(records, columns=list(RECORD_FIELDS)), pd.DataFrame(personas, columns=list(PERSONA_FIELDS)))


def loaded_dataset(
    records: list[dict],
    personas: list[dict],
    counts: dict,
    notes: list[str],
    identical: str = "rows with identical chosen and rejected responses",
) -> LoadedDataset:
    """A loader's result: the rows as canonical frames (`frames`), its counts, and its notes with one more saying how
    many `identical` were filtered, when any were (counts["identical_responses"])."""
    if counts.get("identical_responses"):
        notes.append(f"{counts['identical_responses']} {identical} were filtered (identical_responses).")
    records_frame, personas_frame = frames(records, personas)
    return LoadedDataset(records_frame, personas_frame, counts, notes)


def user_folds(user_ids: list[str], n_folds: int, rng: np.random.Generator) -> dict[str, int]:
    """A CV fold per user: the sorted distinct users shuffled with `rng` and dealt round-robin."""
    users = sorted(set(user_ids))
    return {users[j]: i % n_folds for i, j in enumerate(rng.permutation(len(users)))}


DIRECTORY_SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "test": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "valid1": "val",
    "valid2": "val",
}


def _utf8_lines(path: Path) -> list[str]:
    """The file's lines as text; a line that is not UTF-8 is an error naming the file and the line."""
    lines = path.read_bytes().split(b"\n")
    for n, line in enumerate(lines, 1):
        try:
            lines[n - 1] = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: line {n}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
    return lines


def labelled_rows(path: str | Path) -> list[tuple[str, dict]]:
    """The rows of one table file (`read_table`), each with the label that error messages use for it: 'FILE: line N'
    (1-based) for JSONL, 'FILE: row I' (0-based) otherwise; a file without rows is an error."""
    path = Path(path)
    rows = read_table(path)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    if path.suffix.lower() == ".jsonl":
        labels = [f"{path}: line {n}" for n, line in enumerate(_utf8_lines(path), 1) if line.strip()]
    else:
        labels = [f"{path}: row {i}" for i in range(len(rows))]
    return list(zip(labels, rows))


def read_splits(path: str | Path) -> list[tuple[str | None, list[tuple[str, dict]]]]:
    """A loader's input as (split, labelled rows) per file. A file is read whole with split None (each row's own, see
    `row_split`); a directory is read as its `train`, `val` and `test` files (any suffix of TABLE_SUFFIXES, at most one
    per split, at least one in all), the file's name giving the split of its rows."""
    path = Path(path)
    if not path.is_dir():
        return [(None, labelled_rows(path))]
    files = []
    for split in DIRECTORY_SPLITS:
        found = [path / f"{split}{suffix}" for suffix in TABLE_SUFFIXES if (path / f"{split}{suffix}").is_file()]
        if len(found) > 1:
            raise DatasetError(f"{path}: more than one {split} file: {', '.join(f.name for f in found)}")
        files += [(split, found[0])] if found else []
    if not files:
        raise DatasetError(f"{path}: no train, val or test file (suffix {', '.join(TABLE_SUFFIXES)})")
    return [(split, labelled_rows(file)) for split, file in files]


def is_missing(value: object) -> bool:
    """Whether a cell is empty: None, or NaN (how columnar files fill a row's gap in a column)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_split(row: dict, where: str, file_split: str | None) -> str:
    """A row's canonical split: its `split` field (train, val or test; valid, validation, valid1 and valid2 mean val;
    missing or empty: none), else its file's split, else train. A field disagreeing with its file's is an error."""
    value = row.get("split")
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        return file_split or "train"
    if not isinstance(value, str) or value.strip().lower() not in SPLIT_ALIASES:
        raise DatasetError(f"{where}: field 'split' must be one of {', '.join(SPLIT_ALIASES)}, got {value!r:.60}")
    split = SPLIT_ALIASES[value.strip().lower()]
    if file_split is not None and split != file_split:
        raise DatasetError(f"{where}: field 'split' is {value!r} in the {file_split} file")
    return split
