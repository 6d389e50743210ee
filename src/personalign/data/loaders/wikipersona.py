"""WikiPersona (Tang et al.), the authors' released files, onto the canonical records and persona table.

Two inputs. The preference rows: name, prompt, chosen, rejected (each a chat message list, the response being the
content of its last assistant message, or plain text), question_type (personal, or common = canonical "divergent")
and an optional split. The persona table: one row per person with name, axis (a list of axis names), the CV fold
(`fold`, or `cv_fold`), and optional tag, category and prefix columns; `gold` (the GPT-4 persona written from the
person's name) becomes the persona's gold description, other prefix columns are listed in the notes. A user's id is
the slug of the name and every record of a person takes that person's fold from the table.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

from personalign.data.loaders.common import (
    DatasetError,
    LoadedDataset,
    is_missing,
    labelled_rows,
    loaded_dataset,
    persona,
    read_splits,
    record,
    row_split,
    text_field,
)

SOURCE = "wikipersona"
QUESTION_TYPES = {"personal": "personal", "common": "divergent", "divergent": "divergent"}
PERSONA_COLUMNS = ("name", "axis", "fold", "cv_fold", "tag", "category", "gold")


def slug(name: str) -> str:
    """A user id from a name: accents dropped, lowercase, every run of non-alphanumerics one "_", none at the ends."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")


def response_text(row: dict, name: str, where: str) -> str:
    """The response in `row[name]`: plain text, or the content of the last assistant message of a chat list."""
    if name not in row:
        raise DatasetError(f"{where}: missing field {name!r}")
    value = row[name]
    if isinstance(value, str):
        return text_field(row, name, where)
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise DatasetError(f"{where}: field {name!r} must be text or a chat message list, got {type(value).__name__}")
    for j, message in enumerate(value):
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise DatasetError(f"{where}: field '{name}[{j}]' must be a message with text 'role' and 'content'")
    replies = [message["content"] for message in value if message["role"] == "assistant"]
    if not replies:
        raise DatasetError(f"{where}: field {name!r} has no assistant message")
    if not replies[-1].strip():
        raise DatasetError(f"{where}: field {name!r}: the last assistant message is empty")
    return replies[-1]


def cv_fold(row: dict, where: str, n_folds: int) -> int:
    """A persona's CV fold from `fold` or else `cv_fold`: an integer in 0..n_folds-1 (a whole float, as a columnar
    file with gaps stores integers, counts as one; null or NaN as absent)."""
    for column in ("fold", "cv_fold"):
        value = row.get(column)
        if is_missing(value):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_folds:
            raise DatasetError(f"{where}: field {column!r} must be a fold in 0..{n_folds - 1}, got {value!r:.60}")
        return value
    raise DatasetError(f"{where}: missing field 'fold' (or 'cv_fold')")


def read_persona_table(path: str | Path, n_folds: int) -> tuple[dict[str, dict], list[str]]:
    """The persona table by person name (user_id, name, tag, axes, category, gold, fold) and the names of its prefix
    columns other than gold; a missing or malformed field, a fold outside [0, n_folds) or a repeated person stops."""
    table: dict[str, dict] = {}
    users: dict[str, str] = {}
    prefix_columns: set[str] = set()
    for where, row in labelled_rows(path):
        name = text_field(row, "name", where)
        axes = row.get("axis")
        if (
            not isinstance(axes, (list, tuple, np.ndarray))
            or not len(axes)
            or not all(isinstance(a, str) and a.strip() for a in axes)
        ):
            raise DatasetError(f"{where}: field 'axis' must be a non-empty list of axis names, got {axes!r:.60}")
        fold = cv_fold(row, where, n_folds)
        user_id = slug(name)
        if not user_id:
            raise DatasetError(f"{where}: field 'name' {name!r} has no letters or digits for a user id")
        if name in table or user_id in users:
            raise DatasetError(f"{where}: field 'name' {name!r} repeats person {users.get(user_id, name)!r}")
        users[user_id] = name
        optional = {
            key: text_field(row, key, where, allow_empty=True) if not is_missing(row.get(key)) else ""
            for key in ("tag", "category", "gold")
        }
        table[name] = {"user_id": user_id, "name": name, "axes": [str(a) for a in axes], "fold": fold, **optional}
        prefix_columns |= set(row) - set(PERSONA_COLUMNS)
    return table, sorted(prefix_columns)


def load_wikipersona(path: str | Path, personas_path: str | Path, n_folds: int = 5) -> LoadedDataset:
    """WikiPersona preference rows (`path`: a .json/.jsonl/.parquet/.csv file, or a directory of train/val/test files,
    see common.read_splits) with the persona table at `personas_path`; ids `wikipersona-<split>-<row:06d>`. A pair
    with identical responses is filtered and counted; folds come from the table and must lie in 0..n_folds-1."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    table, prefix_columns = read_persona_table(personas_path, n_folds)
    records: list[dict] = []
    counts = {"rows_read": 0, "records": 0, "identical_responses": 0}
    for file_split, rows in read_splits(path):
        for i, (where, row) in enumerate(rows):
            counts["rows_read"] += 1
            name = text_field(row, "name", where)
            if name not in table:
                raise DatasetError(f"{where}: field 'name': {name!r} is not in the persona table {personas_path}")
            person = table[name]
            prompt = text_field(row, "prompt", where)
            chosen = response_text(row, "chosen", where)
            rejected = response_text(row, "rejected", where)
            kind = text_field(row, "question_type", where)
            if kind not in QUESTION_TYPES:
                raise DatasetError(f"{where}: field 'question_type' must be personal or common, got {kind!r:.60}")
            split = row_split(row, where, file_split)
            if chosen == rejected:
                counts["identical_responses"] += 1
                continue
            records.append(
                record(
                    id=f"{SOURCE}-{split}-{i:06d}",
                    source=SOURCE,
                    user_id=person["user_id"],
                    user_name=name,
                    axes=person["axes"],
                    question_type=QUESTION_TYPES[kind],
                    prompt=prompt,
                    chosen=chosen,
                    rejected=rejected,
                    split=split,
                    fold=person["fold"],
                    chosen_persona_gold=person["gold"],
                )
            )
    counts["records"] = len(records)
    counts["personas"] = len(table)
    personas = [
        persona(
            user_id=p["user_id"], name=p["name"], tag=p["tag"], axes=p["axes"], category=p["category"], gold=p["gold"]
        )
        for p in table.values()
    ]
    notes = [
        "Each record's chosen_persona_gold is its user's gold persona; WikiPersona has no persona for the rejected "
        "response and no retrieved personas, so those fields are empty.",
        f"Folds are the persona table's CV folds ({n_folds} folds); the persona table has no demographics.",
    ]
    if prefix_columns:
        notes.append(
            f"Prefix columns of the persona table not carried into the canonical tables: {', '.join(prefix_columns)}."
        )
    without_gold = sum(not p["gold"].strip() for p in table.values())
    if without_gold:
        notes.append(f"{without_gold} of {len(table)} personas have no gold persona description.")
    unused = sorted(set(table) - {r["user_name"] for r in records})
    if unused:
        notes.append(f"{len(unused)} personas of the table have no records: {', '.join(unused)}.")
    return loaded_dataset(records, personas, counts, notes)
