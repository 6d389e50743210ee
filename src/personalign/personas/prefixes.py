"""Prefixes per user (WikiPersona §3.4): none, tag, name, few-shot, inferred persona (small and strong model), gold,
and shuffled controls; one table keyed by (user_id, prefix_type, seed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.core.seeding import stable_seed
from personalign.lm.generation import ChatPrompt, Generator, Sampling
from personalign.lm.prompts import FEW_SHOT_G9, PERSONA_FROM_PAIRS_G5, PERSONA_SHOT_G5, render_shots
from personalign.personas.rouge import rouge1, rouge_l, tokens

PREFIX_COLUMNS = ["user_id", "prefix_type", "seed", "text", "source_user_id"]


def sample_train_pairs(train: pd.DataFrame, user_id: str, k: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """k random (x, y_w) training pairs of one user, in a seeded order."""
    rows = train[train.user_id == user_id].sort_values("id")
    if len(rows) < k:
        raise ValueError(f"user {user_id!r} has {len(rows)} training pairs, fewer than the {k} asked for")
    picked = rows.iloc[rng.permutation(len(rows))[:k]]
    return list(zip(picked.prompt, picked.chosen))


def fixed_prefixes(personas: pd.DataFrame, seeds: list[int]) -> list[dict]:
    """none, tag, name and gold: the same text under every seed (tag and gold only for users that have one: a real
    dataset's users may have neither)."""
    rows = []
    for p in personas.itertuples():
        for seed in seeds:
            for kind, text in (("none", ""), ("tag", p.tag), ("name", p.name), ("gold", p.gold)):
                if kind in ("tag", "gold") and not text.strip():
                    continue
                rows.append(
                    {"user_id": p.user_id, "prefix_type": kind, "seed": seed, "text": text, "source_user_id": p.user_id}
                )
    return rows


def few_shot_prefixes(train: pd.DataFrame, users: list[str], seeds: list[int], k: int, base_seed: int) -> list[dict]:
    """k random train (x, y_w) pairs per user and seed, rendered as G.9 shots."""
    rows = []
    for user in users:
        for seed in seeds:
            rng = np.random.default_rng(stable_seed(base_seed, "few_shot", user, seed))
            shots = render_shots(FEW_SHOT_G9, sample_train_pairs(train, user, k, rng))
            rows.append(
                {"user_id": user, "prefix_type": "few_shot", "seed": seed, "text": shots, "source_user_id": user}
            )
    return rows


def inferred_persona_prefixes(
    train: pd.DataFrame,
    users: list[str],
    seeds: list[int],
    shots: int,
    generator: Generator,
    sampling: Sampling,
    base_seed: int,
    prefix_type: str,
) -> list[dict]:
    """A persona per user and seed, inferred by `generator` from `shots` random train pairs with prompt G.5."""
    jobs = []
    for user in users:
        for seed in seeds:
            rng = np.random.default_rng(stable_seed(base_seed, "persona_shots", user, seed))
            pairs = sample_train_pairs(train, user, shots, rng)
            jobs.append((user, seed, PERSONA_FROM_PAIRS_G5.format(shots=render_shots(PERSONA_SHOT_G5, pairs))))
    texts = generator.generate(
        [ChatPrompt(prompt) for _, _, prompt in jobs],
        sampling,
        [stable_seed(base_seed, prefix_type, user, seed) for user, seed, _ in jobs],
        desc=prefix_type,
    )
    return [
        {"user_id": user, "prefix_type": prefix_type, "seed": seed, "text": text, "source_user_id": user}
        for (user, seed, _), text in zip(jobs, texts)
    ]


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation of range(n) with no fixed point (n >= 2)."""
    if n < 2:
        raise ValueError("a derangement needs at least two users")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def shuffled_prefixes(prefixes: pd.DataFrame, base_seed: int) -> list[dict]:
    """For every prefix type and seed, `shuffled_<type>`: each user gets another user's prefix (a derangement);
    a type only one user has gets none."""
    rows = []
    for (kind, seed), group in prefixes.groupby(["prefix_type", "seed"], sort=True):
        if kind == "none" or len(group) < 2:
            continue
        group = group.sort_values("user_id")
        perm = derangement(len(group), np.random.default_rng(stable_seed(base_seed, "shuffle", kind, seed)))
        for user, donor in zip(group.itertuples(), group.iloc[perm].itertuples()):
            rows.append(
                {
                    "user_id": user.user_id,
                    "prefix_type": f"shuffled_{kind}",
                    "seed": int(seed),
                    "text": donor.text,
                    "source_user_id": donor.user_id,
                }
            )
    return rows


def prefix_table(rows: list[dict]) -> pd.DataFrame:
    """Rows as the prefix table, sorted by its key."""
    table = pd.DataFrame(rows, columns=PREFIX_COLUMNS)
    return table.sort_values(["user_id", "prefix_type", "seed"], ignore_index=True)


ROUGE_TYPES = ("few_shot", "persona", "persona_strong", "gold")


def rouge_scores(prefixes: pd.DataFrame, personas: pd.DataFrame, base_seed: int) -> pd.DataFrame:
    """Per (user, prefix type, seed): ROUGE-1/L of the prefix against the user's gold text and against a random
    other user's gold (WikiPersona Table 2's baseline row), and its word count. Only users with a gold text count,
    and only when at least two have one (else the frame is empty)."""

    gold = {u: g for u, g in zip(personas.user_id, personas.gold) if g.strip()}
    users = sorted(gold)
    rows = []
    scored = prefixes[prefixes.prefix_type.isin(ROUGE_TYPES) & prefixes.user_id.isin(users)] if len(users) > 1 else []
    for row in scored.itertuples() if len(scored) else []:
        rng = np.random.default_rng(stable_seed(base_seed, "random_gold", row.user_id, row.prefix_type, row.seed))
        others = [u for u in users if u != row.user_id]
        random_gold = gold[others[int(rng.integers(len(others)))]]
        rows.append(
            {
                "user_id": row.user_id,
                "prefix_type": row.prefix_type,
                "seed": row.seed,
                "r1": rouge1(row.text, gold[row.user_id]),
                "r1_random": rouge1(row.text, random_gold),
                "rl": rouge_l(row.text, gold[row.user_id]),
                "rl_random": rouge_l(row.text, random_gold),
                "words": len(tokens(row.text)),
            }
        )
    return pd.DataFrame(rows, columns=["user_id", "prefix_type", "seed", "r1", "r1_random", "rl", "rl_random", "words"])


def rouge_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Table 2 layout: rows R1, R1 (random), RL, RL (random), # words; one column per prefix type; mean ± std.
    A type with no rows (persona_strong without a strong generator) is marked absent, never filled in."""
    labels = {"r1": "R1", "r1_random": "R1 (random)", "rl": "RL", "rl_random": "RL (random)", "words": "# words"}
    table = {}
    for kind in ROUGE_TYPES:
        group = scores[scores.prefix_type == kind]
        if group.empty:
            table[kind] = dict.fromkeys(labels.values(), "absent")
            continue
        table[kind] = {
            label: (
                f"{group[c].mean():.0f} ± {group[c].std(ddof=0):.0f}"
                if c == "words"
                else f"{group[c].mean():.2f} ± {group[c].std(ddof=0):.2f}"
            )
            for c, label in labels.items()
        }
    return pd.DataFrame(table, index=list(labels.values()))
