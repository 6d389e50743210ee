"""The input every reward model takes: aligned arrays of pair ids, user ids, frozen sentence embeddings of prompt,
chosen and rejected response, and the texts themselves (for the judges that read them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class UnseenUserError(KeyError):
    """A model that keeps per-user parameters was asked to score a user it never saw at fit time."""

    def __init__(self, model: str, users: Sequence[str]):
        self.model, self.users = model, list(users)
        shown = ", ".join(map(repr, self.users[:5])) + (" ..." if len(self.users) > 5 else "")
        super().__init__(f"{model} has no parameters for user(s) {shown}: they have no training pairs")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


def _texts(values, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, "", dtype=object)
    arr = np.asarray(list(values), dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"PreferenceData: {name} has {arr.shape[0]} entries, expected {n}")
    return arr


@dataclass(frozen=True, eq=False, repr=False)
class PreferenceData:
    """n preference pairs as aligned arrays; row i says user `user_ids[i]` preferred `chosen` over `rejected` for
    `prompt`. Embeddings are float32 (n, d); the texts default to empty strings (synthetic data has none)."""

    ids: np.ndarray
    user_ids: np.ndarray
    prompt_emb: np.ndarray
    chosen_emb: np.ndarray
    rejected_emb: np.ndarray
    prompts: np.ndarray | None = field(default=None)
    chosen: np.ndarray | None = field(default=None)
    rejected: np.ndarray | None = field(default=None)

    def __post_init__(self):
        ids = np.asarray([str(i) for i in self.ids], dtype=object)
        n = len(ids)
        users = np.asarray([str(u) for u in self.user_ids], dtype=object)
        if users.shape != (n,):
            raise ValueError(f"PreferenceData: {len(users)} user ids for {n} pairs")
        embs = {}
        for name in ("prompt_emb", "chosen_emb", "rejected_emb"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if arr.ndim != 2 or arr.shape[0] != n:
                raise ValueError(f"PreferenceData: {name} has shape {arr.shape}, expected ({n}, d)")
            embs[name] = arr
        if len({a.shape[1] for a in embs.values()}) != 1:
            raise ValueError("PreferenceData: prompt, chosen and rejected embeddings differ in dimension")
        values = {"ids": ids, "user_ids": users, **embs}
        for name in ("prompts", "chosen", "rejected"):
            values[name] = _texts(getattr(self, name), n, name)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"PreferenceData({len(self)} pairs, {len(set(self.user_ids))} users, dim {self.dim})"

    @property
    def dim(self) -> int:
        return self.prompt_emb.shape[1]

    def users(self) -> list[str]:
        """The distinct user ids, sorted."""
        return sorted(set(self.user_ids))

    def user_index(self) -> dict[str, np.ndarray]:
        """Row indices of each user's pairs, in row order."""
        return {u: np.flatnonzero(self.user_ids == u) for u in self.users()}

    def subset(self, rows) -> PreferenceData:
        """The pairs at `rows` (indices or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return PreferenceData(
            self.ids[rows],
            self.user_ids[rows],
            self.prompt_emb[rows],
            self.chosen_emb[rows],
            self.rejected_emb[rows],
            self.prompts[rows],
            self.chosen[rows],
            self.rejected[rows],
        )

    def swapped(self) -> PreferenceData:
        """The same pairs with chosen and rejected exchanged (every label flipped)."""
        return PreferenceData(
            self.ids,
            self.user_ids,
            self.prompt_emb,
            self.rejected_emb,
            self.chosen_emb,
            self.prompts,
            self.rejected,
            self.chosen,
        )


def preference_data(records: pd.DataFrame, embedder) -> PreferenceData:
    """PreferenceData of a canonical record table (columns id, user_id, prompt, chosen, rejected; callers pick the
    split), every distinct text embedded once with `embedder.encode`."""
    missing = [c for c in ("id", "user_id", "prompt", "chosen", "rejected") if c not in records.columns]
    if missing:
        raise ValueError(f"preference_data: records lack column(s) {missing}")
    prompts, chosen, rejected = (records[c].astype(str).tolist() for c in ("prompt", "chosen", "rejected"))
    unique = sorted(set(prompts) | set(chosen) | set(rejected))
    vectors = np.asarray(embedder.encode(unique), dtype=np.float32)  # (0, d) when there are no records
    row = {t: i for i, t in enumerate(unique)}

    def embed(texts):
        return vectors[np.asarray([row[t] for t in texts], dtype=np.int64)]

    return PreferenceData(
        records["id"].astype(str).to_numpy(),
        records["user_id"].astype(str).to_numpy(),
        embed(prompts),
        embed(chosen),
        embed(rejected),
        prompts,
        chosen,
        rejected,
    )


def evaluate(model, data: PreferenceData) -> pd.DataFrame:
    """Per-pair correctness of a fitted model: columns id, user_id, margin (r(x, chosen) - r(x, rejected)) and
    correct (margin > 0; a tie counts as wrong). Overall accuracy is `correct.mean()`, per-user accuracy
    `groupby("user_id").correct.mean()`."""
    margins = np.asarray(model.margins(data), dtype=np.float64)
    if margins.shape != (len(data),):
        raise ValueError(f"{type(model).__name__}.margins returned shape {margins.shape} for {len(data)} pairs")
    return pd.DataFrame(
        {"id": data.ids.astype(str), "user_id": data.user_ids.astype(str), "margin": margins, "correct": margins > 0}
    )
