"""Where the persona of a preference pair comes from: one vocabulary for the PT runs' training personas (stage 3),
the PT accuracy cells (stage 4) and the Whose Boat comparisons (stage 5). "gold" means only the world's gold persona
of the user; a persona inferred from the pair itself, knowing which response is preferred, is a "pair" persona (the
Whose Boat paper's P_gold), and scoring a test pair under its own pair persona is an oracle that sees the label."""

from __future__ import annotations

import pandas as pd

PERSONA_SOURCES = {
    "gold": "the world's gold persona of the pair's user (records' *_persona_gold of a world of personas; chosen side)",
    "pair": "inferred in stage 2 from the pair itself, knowing which response is preferred (Whose Boat's P_gold)",
    "retr": "inferred in stage 2 for the nearest training prompt (Whose Boat's P_retr)",
    "dataset_pair": "the dataset's own persona inferred from the pair (records' *_persona_gold; the paper's P_gold)",
    "dataset_retr": "the dataset's own retrieved persona (records' *_persona_retr; the paper's P_retr)",
}
SEES_LABEL = frozenset({"pair", "dataset_pair"})  # on a test pair: an oracle, never a headline cell
PT_TRAINING_SOURCES = ("gold", "pair", "dataset_pair")  # personas a PT run can train on (train pairs have no retr)
TESTED_WITH = {"gold": "gold", "pair": "retr", "dataset_pair": "dataset_retr"}  # honest test persona of the same kind
PAPER_NAME = {"pair": "gold", "dataset_pair": "gold", "retr": "retr", "dataset_retr": "retr"}  # published.py's cells
ORACLE_SUFFIX = "_oracle_sees_label"  # condition name of a cell whose prompt was inferred knowing y_w is preferred


class PersonaSourceError(ValueError):
    """A persona source the data does not provide; the message names the source, side and pair."""


def persona_texts(rows: pd.DataFrame, pair_personas: pd.DataFrame | None, side: str, source: str) -> list[str]:
    """The `side` (chosen / rejected) persona of every row (records columns id, *_persona_gold, *_persona_retr) from
    `source` (a key of PERSONA_SOURCES); `pair_personas` is stage 2's table (id, chosen_persona, rejected_persona,
    chosen_persona_retr, rejected_persona_retr). An empty persona is an error naming the pair."""
    if source not in PERSONA_SOURCES:
        raise PersonaSourceError(f"unknown persona source {source!r}; allowed: {', '.join(PERSONA_SOURCES)}")
    if source == "gold":
        if side != "chosen":
            raise PersonaSourceError("persona source 'gold' has a chosen side only")
        texts = list(rows.chosen_persona_gold)
    elif source.startswith("dataset_"):
        texts = list(rows[f"{side}_persona_{'gold' if source == 'dataset_pair' else 'retr'}"])
    else:
        if pair_personas is None:
            raise PersonaSourceError(f"persona source {source!r} needs stage 2's pair personas")
        column = f"{side}_persona" + ("_retr" if source == "retr" else "")
        lookup = dict(zip(pair_personas.id, pair_personas[column]))
        texts = [lookup.get(i, "") for i in rows.id]
    missing = [i for i, t in zip(rows.id, texts) if not str(t).strip()]
    if missing:
        raise PersonaSourceError(f"no {side} persona ({source}) for pair {missing[0]!r}")
    return texts
