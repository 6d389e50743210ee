"""The real datasets of `build_data.datasets`, each read by its format's loader, sized as configured and merged into
one canonical table whose `source` is the dataset's name."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.core.seeding import stable_seed
from personalign.data.loaders.common import DatasetError, LoadedDataset
from personalign.data.loaders.persona_tailoring import load_persona_tailoring
from personalign.data.loaders.registry import LOADERS

SIZED_SPLITS = ("train", "val", "test", "sft_train", "sft_val")


def _read(name: str, spec, n_folds: int, rng: np.random.Generator) -> LoadedDataset:
    """One dataset through its format's loader."""
    if spec.format == "persona_tailoring":
        sizes = {split: getattr(spec, split) for split in SIZED_SPLITS}
        return load_persona_tailoring(name, spec.path, sizes, rng, spec.hub_id)
    loader = LOADERS[spec.format]
    if spec.format == "wikipersona":
        if not spec.persona_table:
            raise DatasetError(f"build_data.datasets.{name}: format wikipersona needs persona_table = <file>")
        return loader(spec.path, spec.persona_table, n_folds=n_folds)
    if spec.format in ("tldr", "personal_llm"):
        return loader(
            spec.path,
            spec.users,
            rng=rng,
            n_folds=n_folds,
            **({"alpha": spec.alpha} if spec.format == "personal_llm" else {}),
        )
    return loader(spec.path, rng=rng, n_folds=n_folds)


def _sized(name: str, loaded: LoadedDataset, spec, rng: np.random.Generator) -> LoadedDataset:
    """At most the configured number of records per split (None = all), kept in id order; the rest is counted as
    `<split>_not_drawn`. Whole prompts are drawn (in an order shuffled with `rng`, while they fit), so the users who
    labelled a prompt stay together and disagreement between them can still be measured."""
    keep, counts = [], dict(loaded.counts)
    for split, rows in loaded.records.groupby("split", sort=True):
        want = getattr(spec, split)
        if want is not None and want < len(rows):
            prompts = np.array(sorted(set(rows.prompt)), dtype=object)
            sizes = rows.prompt.value_counts()
            chosen, total = set(), 0
            for prompt in prompts[rng.permutation(len(prompts))]:
                if total + sizes[prompt] <= want:
                    chosen.add(prompt)
                    total += sizes[prompt]
            drawn = rows[rows.prompt.isin(chosen)]
        else:
            drawn = rows
        counts[f"{split}_not_drawn"] = counts.get(f"{split}_not_drawn", 0) + len(rows) - len(drawn)
        keep.append(drawn)
    records = pd.concat(keep).sort_values("id", ignore_index=True) if keep else loaded.records
    return LoadedDataset(records, loaded.personas, counts, loaded.notes)


def load_datasets(specs: dict, n_folds: int, base_seed: int) -> LoadedDataset:
    """Every configured dataset, each with its own seeded generator, as one table: `source` and the id prefix are
    the dataset's name; counts are kept per dataset (`counts[name]`). Two datasets sharing a user id is an error."""
    records, personas, counts, notes = [], [], {}, []
    for name, spec in sorted(specs.items()):
        rng = np.random.default_rng(stable_seed(base_seed, "dataset", name))
        loaded = _read(name, spec, n_folds, rng)
        if spec.format != "persona_tailoring":
            loaded = _sized(name, loaded, spec, rng)
        frame = loaded.records.copy()
        prefix = frame.source.astype(str) + "-"
        frame["id"] = [f"{name}-{i.removeprefix(p)}" for i, p in zip(frame.id, prefix)]
        frame["source"] = name
        records.append(frame)
        personas.append(loaded.personas)
        counts[name] = dict(loaded.counts)
        notes += loaded.notes
    users = pd.concat([p.assign(dataset=n) for p, n in zip(personas, sorted(specs))], ignore_index=True)
    shared = users[users.user_id.duplicated(keep=False)]
    if len(shared):
        first = shared.iloc[0].user_id
        raise DatasetError(
            f"build_data.datasets: datasets {', '.join(sorted(set(shared[shared.user_id == first].dataset)))}"
            f" both have user {first!r}; load them in separate runs or rename the users in one file"
        )
    return LoadedDataset(
        pd.concat(records).sort_values("id", ignore_index=True),
        users.drop(columns="dataset").sort_values("user_id", ignore_index=True),
        counts,
        notes,
    )
