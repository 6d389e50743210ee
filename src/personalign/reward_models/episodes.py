"""Per-user episodes for the models that read a user's own pairs as context (VPL, GPO): training draws a context
set and disjoint targets from each user's training pairs; evaluation takes the context from the training pairs only
(a deterministic, capped subset per user), never from the pairs being scored."""

from __future__ import annotations

import numpy as np
import torch

from personalign.core.seeding import stable_seed
from personalign.reward_models.data import PreferenceData


def eligible_users(train: PreferenceData) -> dict[str, np.ndarray]:
    """Users with at least two training pairs (one for context, one as target), with their row indices."""
    return {u: rows for u, rows in train.user_index().items() if len(rows) >= 2}


def draw_episode(rows: np.ndarray, n_context: int, n_targets: int, rng: np.random.Generator):
    """(context rows, target rows), disjoint, drawn from one user's `rows`: at most half of them as targets and at
    least one as context."""
    perm = rng.permutation(rows)
    t = max(1, min(n_targets, len(rows) // 2))
    k = max(1, min(n_context, len(rows) - t))
    return perm[:k], perm[k : k + t]


def pad(groups: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices padded to `width` with 0, and the mask of real entries."""
    idx = np.zeros((len(groups), width), dtype=np.int64)
    mask = np.zeros((len(groups), width), dtype=bool)
    for i, g in enumerate(groups):
        idx[i, : len(g)] = g
        mask[i, : len(g)] = True
    return idx, mask


def episode_batch(
    users: dict[str, np.ndarray],
    names: list[str],
    users_per_step: int,
    context_size: tuple[int, int],
    targets_per_user: int,
    rng: np.random.Generator,
):
    """One meta-training step's episodes: up to `users_per_step` users, a context size drawn from `context_size`, and
    per user a context and targets of their training rows; returns (context rows, context mask, target rows, target
    mask) as padded tensors."""
    batch = names if len(names) <= users_per_step else sorted(rng.choice(names, users_per_step, replace=False))
    k = int(rng.integers(context_size[0], context_size[1] + 1))
    drawn = [draw_episode(users[u], k, targets_per_user, rng) for u in batch]
    c_idx, c_mask = (torch.from_numpy(a) for a in pad([c for c, _ in drawn], k))
    t_idx, t_mask = (torch.from_numpy(a) for a in pad([t for _, t in drawn], targets_per_user))
    return c_idx, c_mask, t_idx, t_mask


def evaluation_context(context: PreferenceData, user: str, cap: int, seed: int) -> np.ndarray:
    """Rows of `context` that condition `user` at evaluation: all of the user's pairs, or a subset of `cap` of them
    drawn from (seed, user) so it does not depend on the other users or on the pairs being scored."""
    rows = np.flatnonzero(context.user_ids == user)
    if len(rows) > cap:
        rows = np.sort(np.random.default_rng(stable_seed(seed, "context", user)).choice(rows, cap, replace=False))
    return rows
