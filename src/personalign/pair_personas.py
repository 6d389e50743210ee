"""Whose Boat persona inference: for each pair the persona preferring y_w and the one preferring y_l, P_retr by
retrieval, and the check that a judge given each inferred persona prefers the matching response."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.embeddings import Embedder
from personalign.generation import ChatPrompt, Generator, Sampling
from personalign.judge import Judge, JudgeContext
from personalign.prompts import PAIR_PERSONA
from personalign.seeding import stable_seed
from personalign.statistics import wilson_interval


def first_sentence(text: str) -> str:
    """The first sentence of a completion (the prompt asks for one)."""
    text = " ".join(text.split())
    for stop in (". ", "! ", "? "):
        if stop in text:
            text = text[: text.index(stop) + 1]
    return text


def infer_pair_personas(
    pairs: pd.DataFrame, generator: Generator, sampling: Sampling, base_seed: int, desc: str = "pair personas"
) -> pd.DataFrame:
    """Columns id, chosen_persona, rejected_persona: the same prompt with y_w first, then with y_l first."""
    prompts, seeds = [], []
    for row in pairs.itertuples():
        for side, first, second in (("chosen", row.chosen, row.rejected), ("rejected", row.rejected, row.chosen)):
            prompts.append(ChatPrompt(PAIR_PERSONA.format(x=row.prompt, first=first, second=second)))
            seeds.append(stable_seed(base_seed, "pair_persona", row.id, side))
    texts = [first_sentence(t) for t in generator.generate(prompts, sampling, seeds, desc=desc)]
    return pd.DataFrame({"id": list(pairs.id), "chosen_persona": texts[0::2], "rejected_persona": texts[1::2]})


def retrieved_personas(test: pd.DataFrame, train: pd.DataFrame, personas: pd.DataFrame, embedder: Embedder) -> pd.DataFrame:
    """P_retr for each test pair: the personas inferred for the nearest training prompt of the same source (MiniLM
    cosine; only the prompts are compared). `personas` has the id, chosen_persona and rejected_persona columns of the
    training pairs."""
    train = train.merge(personas, on="id").sort_values("id", ignore_index=True)
    out = []
    for source, queries in test.sort_values("id").groupby("source", sort=True):
        pool = train[train.source == source].reset_index(drop=True)
        if pool.empty:
            raise ValueError(f"source {source!r} has test pairs but no training pairs to retrieve personas from")
        similarity = embedder.encode(list(queries.prompt)) @ embedder.encode(list(pool.prompt)).T
        nearest = pool.iloc[np.argmax(similarity, axis=1)]
        out.append(pd.DataFrame({
            "id": list(queries.id),
            "retr_source_id": list(nearest.id),
            "chosen_persona_retr": list(nearest.chosen_persona),
            "rejected_persona_retr": list(nearest.rejected_persona),
        }))
    return pd.concat(out, ignore_index=True)


def inference_check(pairs: pd.DataFrame, judge: Judge) -> pd.DataFrame:
    """Per pair: does the judge, simulating the inferred chosen persona, prefer y_w; and, simulating the
    inferred rejected persona, prefer y_l? `pairs` needs id, prompt, chosen, rejected and both personas."""
    rows = []
    for row in pairs.itertuples():
        chosen_ctx = JudgeContext(f"{row.id}:chosen", row.chosen_persona, (), row.prompt)
        rejected_ctx = JudgeContext(f"{row.id}:rejected", row.rejected_persona, (), row.prompt)
        rows.append(
            {
                "id": row.id,
                "chosen_persona_prefers_chosen": judge.prefers(chosen_ctx, row.chosen, row.rejected),
                "rejected_persona_prefers_rejected": judge.prefers(rejected_ctx, row.rejected, row.chosen),
            }
        )
    return pd.DataFrame(rows)


def check_summary(checks: pd.DataFrame, dataset: str) -> list[dict]:
    """Both accuracies with Wilson 95% CIs."""
    out = []
    for column, persona in (("chosen_persona_prefers_chosen", "chosen"), ("rejected_persona_prefers_rejected", "rejected")):
        k, n = int(checks[column].sum()), len(checks)
        low, high = wilson_interval(k, n)
        out.append({"dataset": dataset, "persona": persona, "n": n, "accuracy": round(k / n, 4) if n else None,
                    "ci_low": round(low, 4), "ci_high": round(high, 4)})
    return out
