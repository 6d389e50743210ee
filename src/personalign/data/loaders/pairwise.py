"""Per-user pairwise preference files onto the canonical records: P-SOUPS (Jang et al.) and the DPO pairs of
PersonalLLM (Zollo et al.), both as rows of prompt, chosen, rejected and uid, the id of the user who holds the
preference (an integer or text). A user id is "u<n>" for an integer uid n (or digits-only text), the uid itself
otherwise; CV folds are dealt over users with a seeded generator. Neither source describes its users in words, so
every persona's gold description is empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from personalign.data.loaders.common import (
    DatasetError,
    LoadedDataset,
    loaded_dataset,
    persona,
    read_splits,
    record,
    row_split,
    text_field,
    user_folds,
)

SOURCE_NOTES = {
    "psoups": "P-SOUPS users are synthetic preference profiles (combinations of expertise, informativeness and style), "
    "known only by uid: no persona descriptions, axes or demographics.",
    "personal_llm_dpo": "PersonalLLM DPO users are simulated reward-model mixtures known only by uid: no persona "
    "descriptions, axes or demographics.",
}


def user_id(row: dict, where: str) -> str:
    """The canonical user id of a row's uid: "u<n>" for an integer or digits-only uid, the stripped text otherwise."""
    if "uid" not in row:
        raise DatasetError(f"{where}: missing field 'uid'")
    uid = row["uid"]
    if isinstance(uid, bool) or not isinstance(uid, (int, str)) or (isinstance(uid, str) and not uid.strip()):
        raise DatasetError(f"{where}: field 'uid' must be an integer or non-empty text, got {uid!r:.60}")
    if isinstance(uid, int) or uid.strip().isdigit():
        return f"u{int(uid)}"
    return uid.strip()


def load_pairwise(path: str | Path, source: str, rng: np.random.Generator, n_folds: int) -> LoadedDataset:
    """Rows of prompt, chosen, rejected, uid (and an optional split) at `path` as `source` records with ids
    `<source>-<split>-<row:06d>`; pairs with identical responses are filtered and counted."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    pairs: list[dict] = []
    counts = {"rows_read": 0, "records": 0, "identical_responses": 0}
    for file_split, rows in read_splits(path):
        for i, (where, row) in enumerate(rows):
            counts["rows_read"] += 1
            pair = {
                "user_id": user_id(row, where),
                "prompt": text_field(row, "prompt", where),
                "chosen": text_field(row, "chosen", where),
                "rejected": text_field(row, "rejected", where),
            }
            split = row_split(row, where, file_split)
            if pair["chosen"] == pair["rejected"]:
                counts["identical_responses"] += 1
                continue
            pairs.append({"id": f"{source}-{split}-{i:06d}", "split": split, **pair})
    folds = user_folds([p["user_id"] for p in pairs], n_folds, rng)
    records = [record(source=source, fold=folds[p["user_id"]], **p) for p in pairs]
    counts["records"] = len(records)
    personas = [persona(user_id=u) for u in sorted(folds)]
    notes = [SOURCE_NOTES[source], f"CV folds ({n_folds}) dealt over the {len(folds)} users with the seeded generator."]
    return loaded_dataset(records, personas, counts, notes)


def load_psoups(path: str | Path, rng: np.random.Generator, n_folds: int = 5) -> LoadedDataset:
    """P-SOUPS pairs (source "psoups"); `path` is a table file or a directory of train/val/test files."""
    return load_pairwise(path, "psoups", rng, n_folds)


def load_personal_llm_dpo(path: str | Path, rng: np.random.Generator, n_folds: int = 5) -> LoadedDataset:
    """PersonalLLM DPO pairs (source "personal_llm_dpo"); `path` is a table file or a directory of train/val/test
    files."""
    return load_pairwise(path, "personal_llm_dpo", rng, n_folds)
