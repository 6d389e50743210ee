"""Train/test question splits and cross-validation folds over personas, stratified by axis."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_questions(
    questions: Sequence[str], n_train: int, n_test: int, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """A seeded draw of n_train + n_test distinct questions, split into train and test."""
    if n_train + n_test > len(questions):
        raise ValueError(f"asked for {n_train}+{n_test} questions but only {len(questions)} exist")
    order = rng.permutation(len(questions))
    picked = [questions[i] for i in order[: n_train + n_test]]
    return picked[:n_train], picked[n_train:]


def stratified_folds(users_by_axis: dict[str, list[str]], n_folds: int, rng: np.random.Generator) -> dict[str, int]:
    """Fold per user: within each axis users are shuffled and dealt round-robin, continuing where the
    previous axis stopped, so every fold holds each axis's users as evenly as possible (counts differ by <= 1)
    and the fold sizes stay balanced overall."""
    folds: dict[str, int] = {}
    offset = 0
    for axis in sorted(users_by_axis):
        users = users_by_axis[axis]
        for i, j in enumerate(rng.permutation(len(users))):
            user = users[j]
            if user in folds:
                raise ValueError(f"user {user!r} appears in more than one axis")
            folds[user] = (offset + i) % n_folds
        offset += len(users)
    return folds
