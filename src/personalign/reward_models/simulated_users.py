"""PersonalLLM-style simulated users on the built-in world (Zollo et al.'s construction, with the world's personas as
the archetypes): each persona's simulated-judge utility is an archetypal reward model, each simulated user a
Dirichlet-weighted mixture of the archetypes' z-normalised scores, and every user labels the same candidate pairs —
so users disagree, some are minorities, and each has many pairs (stage 7's reward models and characterisation)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from personalign.data.loaders.common import LoadedDataset, frames, persona, record, user_folds
from personalign.lm.judge import SimulatedJudge, WorldPersonas, world_context

SOURCE = "simulated_users"


def archetype_scores(candidates: list[dict], personas: pd.DataFrame, judge: SimulatedJudge) -> pd.DataFrame:
    """One row per (question, distinct candidate text): qid, prompt, split, question_type, text, and one utility column
    per persona (u + λq as the simulated judge computes it, against the persona's world rivals)."""
    rows = []
    golds = dict(zip(personas.user_id, personas.gold))
    world = WorldPersonas.from_table(personas)
    judge.embedder.encode(
        [c["text"] for q in candidates for c in q["candidates"]]
        + [q["prompt"] for q in candidates]
        + list(golds.values())
    )  # one batched call fills the embedder's memo
    for q in sorted(candidates, key=lambda c: c["qid"]):
        texts = list(dict.fromkeys(c["text"] for c in q["candidates"] if c["text"].strip()))
        if len(texts) < 2:
            continue
        utilities = {}
        for user in golds:
            ctx = world_context(world, user, q["question_type"], q["prompt"])
            utilities[user] = judge.utilities(ctx, texts)
        for k, text in enumerate(texts):
            rows.append(
                {
                    "qid": q["qid"],
                    "prompt": q["prompt"],
                    "split": q["split"],
                    "question_type": q["question_type"],
                    "candidate": k,
                    "text": text,
                    **{u: float(v[k]) for u, v in utilities.items()},
                }
            )
    return pd.DataFrame(rows)


def simulated_users(
    scores: pd.DataFrame, archetypes: list[str], n_users: int, alpha: float, rng: np.random.Generator, n_folds: int = 5
) -> LoadedDataset:
    """`n_users` users with weights w ~ Dirichlet(alpha · 1) over the archetypes (drawn from `rng`, then CV folds);
    each archetype's scores are z-normalised over all candidates; every user labels every candidate pair of every
    question by utility w · z (chosen = higher; an exact tie is counted and left out). Ids
    `simulated_users-<qid>-<i>-<j>-<user>`; a smaller alpha puts users nearer single archetypes."""
    z = scores[archetypes].to_numpy(float)
    z = (z - z.mean(axis=0)) / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)
    weights = rng.dirichlet(np.full(len(archetypes), alpha), size=n_users)
    users = [f"sim{u:02d}" for u in range(n_users)]
    utility = z @ weights.T  # candidates x users
    folds = user_folds(users, n_folds, rng)
    records, ties = [], 0
    for qid, group in scores.groupby("qid", sort=True):
        index = group.index.to_numpy()
        first = group.iloc[0]
        for i, j in combinations(range(len(index)), 2):
            for u, user in enumerate(users):
                a, b = utility[index[i], u], utility[index[j], u]
                if a == b:
                    ties += 1
                    continue
                chosen, rejected = (
                    (group.text.iloc[i], group.text.iloc[j]) if a > b else (group.text.iloc[j], group.text.iloc[i])
                )
                records.append(
                    record(
                        id=f"{SOURCE}-{qid}-{i}-{j}-{user}",
                        source=SOURCE,
                        user_id=user,
                        question_type=first.question_type,
                        prompt=first.prompt,
                        chosen=chosen,
                        rejected=rejected,
                        split=first.split,
                        fold=folds[user],
                    )
                )
    people = [
        persona(
            user_id=user,
            category="simulated",
            demographics={"weights": {a: round(float(w), 6) for a, w in zip(archetypes, weights[u])}},
        )
        for u, user in enumerate(users)
    ]
    records_frame, personas_frame = frames(records, people)
    counts = {
        "questions": int(scores.qid.nunique()),
        "candidates": len(scores),
        "records": len(records),
        "tied_utilities": ties,
    }
    notes = [
        f"{n_users} simulated users, Dirichlet({alpha}) mixtures of {len(archetypes)} archetypes (the world's "
        "personas as judged by the simulated judge); every user labels every candidate pair."
    ]
    return LoadedDataset(records_frame, personas_frame, counts, notes)
