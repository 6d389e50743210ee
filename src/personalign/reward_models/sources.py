"""The tables stage 7 characterises and fits reward models on: PersonalLLM-style simulated users of the built-in
world, stage 1's records per source, and the real datasets of `reward_models.datasets` found on this machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.core.config import Params
from personalign.data.loaders import LoadedDataset
from personalign.data.loaders.configured import load_datasets
from personalign.lm.judge import SimulatedJudge
from personalign.reward_models import simulated_users as su


@dataclass
class StageTables:
    """Canonical record tables by name, what was left out and why, and the simulated users (None when none)."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    simulated: LoadedDataset | None = None


def stage_tables(
    params: Params,
    records: pd.DataFrame,
    personas: pd.DataFrame,
    candidates: list[dict],
    embedder,
    rng: np.random.Generator,
) -> StageTables:
    """Simulated users first (built-in world and reward_models.simulated_users > 0; drawn from `rng`), then stage 1's
    records per source, then each configured real dataset present on this machine and not already a source."""
    cfg, found = params.reward_models, StageTables({})
    if params.build_data.source == "builtin" and cfg.simulated_users > 0:
        judge = SimulatedJudge(embedder, 0.0, params.judge.quality_weight, params.judge.tie_margin, params.base.seed)
        scores = su.archetype_scores(candidates, personas, judge)
        found.simulated = su.simulated_users(
            scores, list(personas.user_id), cfg.simulated_users, cfg.simulated_alpha, rng
        )
        found.tables["simulated_users"] = found.simulated.records
        found.notes += found.simulated.notes
    else:
        found.notes.append(
            "No simulated users: they need the built-in world (build_data.source builtin) and "
            "reward_models.simulated_users > 0."
        )
    for source, part in records.groupby("source", sort=True):
        found.tables[source] = part
    present = {n: spec for n, spec in cfg.datasets.items() if Path(spec.path).exists() and n not in found.tables}
    absent = sorted(n for n, spec in cfg.datasets.items() if not Path(spec.path).exists())
    if present:
        real = load_datasets(present, params.build_data.n_folds, params.base.seed)
        found.tables |= {name: part for name, part in real.records.groupby("source", sort=True)}
    if absent:
        found.notes.append(f"Not on this machine, so not characterised: {', '.join(absent)}.")
    return found


def table_sizes(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Records, users, training and test pairs per table."""
    return pd.DataFrame(
        {
            name: {
                "records": len(t),
                "users": t.user_id.nunique(),
                "train": int((t.split == "train").sum()),
                "test": int((t.split == "test").sum()),
            }
            for name, t in tables.items()
        }
    ).T


def labelled_only(tables: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The tables without pairs released without responses, and a note per table that had some."""
    unlabelled = {name: int((t.chosen.str.strip() == "").sum()) for name, t in tables.items()}
    notes = [f"{name}: {n} pairs released without responses are left out." for name, n in unlabelled.items() if n]
    return {name: t[t.chosen.str.strip() != ""] for name, t in tables.items()}, notes
