"""The canonical preference record, the persona table, and their deterministic JSONL files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "source": str,
    "user_id": str,
    "user_name": str,
    "axes": list,
    "question_type": str,
    "prompt": str,
    "chosen": str,
    "rejected": str,
    "split": str,
    "fold": int,
    "chosen_persona_gold": str,
    "rejected_persona_gold": str,
    "chosen_persona_retr": str,
    "rejected_persona_retr": str,
}
PERSONA_FIELDS: dict[str, type | tuple[type, ...]] = {
    "user_id": str,
    "name": str,
    "tag": str,
    "axes": list,
    "category": str,
    "gold": str,
    "demographics": dict,
}
QUESTION_TYPES = ("personal", "divergent", "none")
SPLITS = ("train", "test", "val", "sft_train", "sft_val")  # sft_*: the SFT phase of SFT-then-DPO runs


class RecordError(ValueError):
    """A row breaks the canonical schema; the message names the file, the row and the field."""


def validate_rows(rows: list[dict], fields: dict, where: str) -> None:
    """Check every row has exactly the schema's fields with the right types and allowed values."""
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        extra = [f for f in row if f not in fields]
        if missing or extra:
            raise RecordError(f"{where}: row {i}: missing fields {missing}, unexpected fields {extra}")
        for name, kind in fields.items():
            if not isinstance(row[name], kind) or (kind is int and isinstance(row[name], bool)):
                raise RecordError(f"{where}: row {i}: field {name!r} must be {kind}, got {row[name]!r:.60}")
        if "question_type" in row and row["question_type"] not in QUESTION_TYPES:
            raise RecordError(f"{where}: row {i}: question_type {row['question_type']!r} not in {QUESTION_TYPES}")
        if "split" in row and row["split"] not in SPLITS:
            raise RecordError(f"{where}: row {i}: split {row['split']!r} not in {SPLITS}")


def write_json(value, path: str | Path, indent: int = 2) -> Path:
    """`value` as key-sorted JSON with a final newline (equal values give equal bytes); parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=indent, sort_keys=True) + "\n")
    return path


def write_jsonl(rows: Iterable[dict], path: str | Path, sort_key: str | None = None) -> Path:
    """One JSON object per line, keys sorted, rows sorted by `sort_key`: same rows => same bytes."""
    rows = list(rows)
    if sort_key:
        rows.sort(key=lambda r: r[sort_key])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a malformed line is reported with its line number."""
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
    return rows


def write_records(rows: list[dict], path: str | Path) -> Path:
    validate_rows(rows, RECORD_FIELDS, str(path))
    return write_jsonl(rows, path, sort_key="id")


def _read_validated(path: str | Path, fields) -> pd.DataFrame:
    rows = read_jsonl(path)
    validate_rows(rows, fields, str(path))
    return pd.DataFrame(rows, columns=list(fields))


def read_records(path: str | Path) -> pd.DataFrame:
    """The canonical record table as a DataFrame, validated."""
    return _read_validated(path, RECORD_FIELDS)


def write_personas(rows: list[dict], path: str | Path) -> Path:
    validate_rows(rows, PERSONA_FIELDS, str(path))
    return write_jsonl(rows, path, sort_key="user_id")


def read_personas(path: str | Path) -> pd.DataFrame:
    """The persona table as a DataFrame, validated."""
    return _read_validated(path, PERSONA_FIELDS)
