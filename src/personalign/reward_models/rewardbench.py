"""RewardBench in the reward-model study (the paper's personalization tax, section 5): reading the benchmark's
local copy, its sections, scoring a fitted model on it, and the tax per section."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from personalign.data.loaders.common import read_table
from personalign.evaluation.alignment_tax import read_rewardbench
from personalign.reward_models import PreferenceData, UnseenUserError, preference_data
from personalign.reward_models.evaluation import _as_user

# RewardBench v1 (allenai/reward-bench, rewardbench/constants.py SUBSET_MAPPING and EXAMPLE_COUNTS, as of commit
# 6552e93, Sep 2024). A section's score is the mean of its subsets' accuracies weighted by these counts
# (rewardbench/utils.py calculate_scores_per_section), subsets without results left out of both sums. math-prm has
# 447 pairs but counts 984 = 6 x 164, as much as the six code subsets together, so with every subset present
# Reasoning = (acc(math-prm) + mean acc(hep-*)) / 2.
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}


REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "math-prm": 984,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}


SECTION_OF = {subset: section for section, subsets in REWARDBENCH_SECTIONS.items() for subset in subsets}


def rewardbench_sections(per_subset: pd.DataFrame, counts: Mapping[str, int] | None = None) -> pd.DataFrame:
    """RewardBench section scores from per-subset accuracies (columns subset, accuracy; n is not used): each
    section's accuracy is the mean of its subsets' accuracies weighted by `counts` (default the official
    REWARDBENCH_EXAMPLE_COUNTS, where math-prm weighs as much as all code subsets together). Subsets without an
    accuracy are left out and listed in missing_subsets, never filled; a section without any is NaN. Columns
    section, accuracy, weight (total count of the subsets used), n_subsets, missing_subsets."""
    counts = REWARDBENCH_EXAMPLE_COUNTS if counts is None else counts
    known = per_subset.dropna(subset=["accuracy"]).drop_duplicates("subset").set_index("subset").accuracy
    rows = []
    for section, subsets in REWARDBENCH_SECTIONS.items():
        present = [s for s in subsets if s in known.index]
        weight = float(sum(counts[s] for s in present))
        accuracy = sum(float(known[s]) * counts[s] for s in present) / weight if weight else math.nan
        rows.append(
            {
                "section": section,
                "accuracy": accuracy,
                "weight": weight,
                "n_subsets": len(present),
                "missing_subsets": ", ".join(s for s in subsets if s not in known.index),
            }
        )
    return pd.DataFrame(rows)


def read_rewardbench_all(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The RewardBench-format pairs of every official subset present in a local file (alignment_tax.read_rewardbench
    reads and checks them; columns id, prompt, chosen, rejected, subset) and the official subsets absent from it."""

    present = {row.get("subset") for row in read_table(path)}
    wanted = [s for s in SECTION_OF if s in present]
    missing = [s for s in SECTION_OF if s not in present]
    records = (
        read_rewardbench(path, wanted)
        if wanted
        else pd.DataFrame(columns=["id", "prompt", "chosen", "rejected", "subset"])
    )
    return records, missing


def rewardbench_preference_data(
    path: str | Path, embedder, user_id: str = "rewardbench"
) -> tuple[PreferenceData, np.ndarray, list[str]]:
    """(pairs, subset of each pair, missing official subsets) of a local RewardBench file, embedded with `embedder`
    (personalign.reward_models.preference_data); every pair is attributed to `user_id`."""

    records, missing = read_rewardbench_all(path)
    data = preference_data(records.assign(user_id=user_id), embedder)
    return data, records.subset.to_numpy(dtype=object), missing


def benchmark_hits(
    models: Mapping[str, object],
    bench: PreferenceData,
    subsets: ArrayLike,
    users: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Whether each fitted model ranks each benchmark pair right (`subsets`: the subset of each pair). A model named
    in `users` is scored once per listed user id (the pairs attributed to that user, i.e. that user's reward model)
    and its hit is the share of those copies that rank the pair right; the others are scored once on `bench` as
    given. Columns model, row (the pair's index in `bench`), subset, section ("" outside RewardBench v1), n_users,
    hit."""
    subsets = np.asarray(subsets, dtype=object)
    if subsets.shape != (len(bench),):
        raise ValueError(f"benchmark_hits: {len(subsets)} subset labels for {len(bench)} pairs")
    users = users or {}
    frames = []
    for name, model in models.items():
        copies = list(users.get(name) or [None])
        hits = np.zeros(len(bench))
        for user in copies:
            try:
                margins = np.asarray(model.margins(bench if user is None else _as_user(bench, user)), np.float64)
            except UnseenUserError as error:
                raise ValueError(
                    f"benchmark_hits: {name} scores per user; name the user ids to score the "
                    f"benchmark as in users[{name!r}] ({error})"
                ) from error
            hits += margins > 0
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "row": np.arange(len(bench)),
                    "subset": subsets,
                    "section": [SECTION_OF.get(s, "") for s in subsets],
                    "n_users": len(copies),
                    "hit": hits / len(copies),
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "row", "subset", "section", "n_users", "hit"])
    )


def personalization_tax(hits: pd.DataFrame, counts: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Each model's accuracy on the benchmark (benchmark_hits) per subset and per RewardBench section. Columns model,
    kind ("subset" or "section"), name, section, n_pairs, n_users, accuracy, missing (official subset absent /
    section without any subset) and missing_subsets (section rows)."""
    present = sorted(
        set(hits.subset), key=lambda s: (list(SECTION_OF).index(s) if s in SECTION_OF else len(SECTION_OF), s)
    )
    rows = []
    for name, mine in hits.groupby("model", sort=False):
        accuracy, sizes = mine.groupby("subset").hit.mean(), mine.subset.value_counts()
        n_users = int(mine.n_users.iloc[0])
        for subset in present:
            rows.append(
                {
                    "model": name,
                    "kind": "subset",
                    "name": subset,
                    "section": SECTION_OF.get(subset, ""),
                    "n_pairs": int(sizes[subset]),
                    "n_users": n_users,
                    "accuracy": float(accuracy[subset]),
                    "missing": False,
                    "missing_subsets": "",
                }
            )
        for subset in (s for s in SECTION_OF if s not in sizes.index):
            rows.append(
                {
                    "model": name,
                    "kind": "subset",
                    "name": subset,
                    "section": SECTION_OF[subset],
                    "n_pairs": 0,
                    "n_users": n_users,
                    "accuracy": math.nan,
                    "missing": True,
                    "missing_subsets": "",
                }
            )
        sections = rewardbench_sections(
            pd.DataFrame({"subset": accuracy.index, "accuracy": accuracy.to_numpy()}), counts
        )
        for record in sections.to_dict("records"):
            rows.append(
                {
                    "model": name,
                    "kind": "section",
                    "name": record["section"],
                    "section": record["section"],
                    "n_pairs": int(sum(sizes.get(s, 0) for s in REWARDBENCH_SECTIONS[record["section"]])),
                    "n_users": n_users,
                    "accuracy": record["accuracy"],
                    "missing": record["n_subsets"] == 0,
                    "missing_subsets": record["missing_subsets"],
                }
            )
    return pd.DataFrame(rows)
