"""Reddit TL;DR human comparisons (Stiennon et al., OpenAI summarize-from-feedback "comparisons") onto the canonical
records, the annotators (worker ids) as users, following "When Personalization Meets Reality" (after Park et al.):
only the `n_users` workers with the most comparisons are kept.

A row: info (post, optional title; CNN/DM rows carry `article` instead of a post), summaries (two objects with
text), choice (0 or 1, the index of the preferred summary), worker, and an optional split (train, valid1/valid2 =
val, test). The prompt is the title, a blank line and the post when there is a title, else the post."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from personalign.data.loaders.common import (
    DatasetError,
    LoadedDataset,
    is_missing,
    loaded_dataset,
    persona,
    read_splits,
    record,
    row_split,
    text_field,
    user_folds,
)

SOURCE = "tldr"


def nested_text(parent: dict, key: str, name: str, where: str) -> str:
    """`parent[key]` as non-empty text; errors name the field by its dotted `name` (e.g. 'info.post')."""
    return text_field({name: parent[key]} if key in parent else {}, name, where)


def comparison(row: dict, where: str) -> dict:
    """The prompt, the two summaries, the choice and the worker of one comparison row, every field checked."""
    info = row.get("info")
    if not isinstance(info, dict):
        raise DatasetError(f"{where}: field 'info' must be an object with a post, got {info!r:.60}")
    if is_missing(info.get("post")) and not is_missing(info.get("article")):
        post = nested_text(info, "article", "info.article", where)
    else:
        post = nested_text(info, "post", "info.post", where)
    title = None if is_missing(info.get("title")) else info["title"]
    if title is not None and not isinstance(title, str):
        raise DatasetError(f"{where}: field 'info.title' must be text, got {type(title).__name__}")
    summaries = row.get("summaries")
    if not isinstance(summaries, (list, tuple, np.ndarray)) or len(summaries) != 2:
        raise DatasetError(f"{where}: field 'summaries' must be a list of 2 summaries, got {summaries!r:.60}")
    texts = []
    for j, summary in enumerate(summaries):
        if not isinstance(summary, dict):
            raise DatasetError(f"{where}: field 'summaries[{j}]' must be an object with text")
        texts.append(nested_text(summary, "text", f"summaries[{j}].text", where))
    choice = row.get("choice")
    if isinstance(choice, bool) or not isinstance(choice, int) or choice not in (0, 1):
        raise DatasetError(f"{where}: field 'choice' must be 0 or 1, got {choice!r:.60}")
    return {
        "prompt": f"{title.strip()}\n\n{post}" if title and title.strip() else post,
        "chosen": texts[choice],
        "rejected": texts[1 - choice],
        "worker": text_field(row, "worker", where),
    }


def load_tldr(path: str | Path, n_users: int = 5, *, rng: np.random.Generator, n_folds: int = 5) -> LoadedDataset:
    """TL;DR comparisons at `path` (a table file, or a directory of train/val/test files) as records of the `n_users`
    workers with the most comparisons over all rows read (ties: the smaller worker id); rows of other workers are
    filtered and counted (filtered_other_workers), as are pairs of identical summaries (identical_responses). Ids are
    `tldr-<split>-<row:06d>`; CV folds are dealt over the kept workers with `rng`."""
    if n_users < 1 or n_folds < 1:
        raise ValueError(f"n_users and n_folds must be at least 1, got {n_users} and {n_folds}")
    rows = []
    for file_split, labelled in read_splits(path):
        for i, (where, row) in enumerate(labelled):
            pair = comparison(row, where)
            split = row_split(row, where, file_split)
            rows.append({"id": f"{SOURCE}-{split}-{i:06d}", "split": split, **pair})
    per_worker = Counter(r["worker"] for r in rows)
    kept = sorted(per_worker, key=lambda w: (-per_worker[w], w))[:n_users]
    folds = user_folds(kept, n_folds, rng)
    counts = {
        "rows_read": len(rows),
        "records": 0,
        "filtered_other_workers": 0,
        "identical_responses": 0,
        "workers": len(per_worker),
    }
    records = []
    for r in rows:
        if r["worker"] not in folds:
            counts["filtered_other_workers"] += 1
        elif r["chosen"] == r["rejected"]:
            counts["identical_responses"] += 1
        else:
            records.append(
                record(
                    id=r["id"],
                    source=SOURCE,
                    user_id=r["worker"],
                    prompt=r["prompt"],
                    chosen=r["chosen"],
                    rejected=r["rejected"],
                    split=r["split"],
                    fold=folds[r["worker"]],
                )
            )
    counts["records"] = len(records)
    personas = [persona(user_id=w) for w in kept]
    notes = [
        f"Users are the {len(kept)} workers with the most comparisons of {len(per_worker)}: "
        + ", ".join(f"{w} ({per_worker[w]})" for w in kept)
        + f"; {counts['filtered_other_workers']} rows of other "
        "workers were filtered (filtered_other_workers).",
        "TL;DR annotators are known only by worker id: no persona descriptions, axes or demographics.",
        f"CV folds ({n_folds}) dealt over the kept workers with the seeded generator.",
    ]
    if len(per_worker) < n_users:
        notes.append(f"Only {len(per_worker)} workers in the data, fewer than the {n_users} users asked for.")
    return loaded_dataset(records, personas, counts, notes, "comparisons of identical summaries")
