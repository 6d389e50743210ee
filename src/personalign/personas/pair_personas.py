"""Whose Boat persona inference: for each pair the persona preferring y_w and the one preferring y_l, P_retr by
retrieval, and the check (Finding 1) that a judge simulating each inferred persona prefers its own side's response
more often than one simulating a persona inferred for another pair."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.core.seeding import figure_rng, stable_seed
from personalign.data.loaders import load_persona_inference
from personalign.lm.embeddings import Embedder
from personalign.lm.generation import ChatPrompt, Generator, Sampling
from personalign.lm.judge import OTHER_SIDE, Judge, pair_context
from personalign.lm.prompts import PAIR_PERSONA
from personalign.stats.statistics import wilson_interval
from personalign.stats.verdicts import Claim, paired_difference

FINDING_1 = "Whose Boat Finding 1"
SIDES = ("chosen", "rejected")


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


def retrieved_personas(
    test: pd.DataFrame, train: pd.DataFrame, personas: pd.DataFrame, embedder: Embedder
) -> pd.DataFrame:
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
        out.append(
            pd.DataFrame(
                {
                    "id": list(queries.id),
                    "retr_source_id": list(nearest.id),
                    "chosen_persona_retr": list(nearest.chosen_persona),
                    "rejected_persona_retr": list(nearest.rejected_persona),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def inference_sets(paths: dict[str, str], limit: int) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The configured persona-inference sets (`prefixes.inference_check_data`) by name, the first `limit` pairs of
    each with the name as their user_id (results are labelled by it); and the names of those skipped: not on this
    machine, or every one when `limit` is 0."""
    loaded, skipped = {}, []
    for name, path in paths.items():
        if limit == 0 or not Path(path).exists():
            skipped.append(name)
        else:
            loaded[name] = load_persona_inference(path, limit).assign(user_id=name)
    return loaded, skipped


def control_pairs(n: int, rng: np.random.Generator) -> np.ndarray:
    """For each of n pairs the index of another pair, uniform over the other n - 1, drawn from `rng`."""
    if n < 2:
        raise ValueError(f"the persona-inference control needs at least two pairs, got {n}")
    return (np.arange(n) + rng.integers(1, n, size=n)) % n


def picks_own_side(judge: Judge, pair, personas, side: str) -> bool:
    """Does a judge simulating the `side` persona of `personas` (a pair's row), contrasted with its other side's
    persona, prefer `pair`'s `side` response over its other one?"""
    other = OTHER_SIDE[side]
    ctx = pair_context(
        f"{personas.id}:{side}",
        getattr(personas, f"{side}_persona"),
        getattr(personas, f"{other}_persona"),
        pair.prompt,
    )
    return judge.prefers(ctx, getattr(pair, side), getattr(pair, other))


def inference_check(pairs: pd.DataFrame, judge: Judge, rng: np.random.Generator) -> pd.DataFrame:
    """Per pair and side (Whose Boat Finding 1, contrastive and paired): does the persona inferred for that side,
    contrasted with the other side's persona, prefer its own side's response (`<side>_own`); and does the persona
    inferred for the same side of another pair (`control_id`, drawn with `rng`) do so (`<side>_control`: chance,
    measured)? `pairs` needs id, user_id, prompt, chosen, rejected, chosen_persona and rejected_persona."""
    pairs = pairs.sort_values("id", ignore_index=True)
    controls = pairs.iloc[control_pairs(len(pairs), rng)]
    rows = []
    for pair, control in zip(pairs.itertuples(), controls.itertuples()):
        record = {"id": pair.id, "user_id": pair.user_id, "control_id": control.id}
        for side in SIDES:
            record[f"{side}_own"] = picks_own_side(judge, pair, pair, side)
            record[f"{side}_control"] = picks_own_side(judge, pair, control, side)
        rows.append(record)
    return pd.DataFrame(rows)


def inference_claims(checks: dict[str, pd.DataFrame], base_seed: int) -> list[Claim]:
    """One claim per dataset and side: inferred personas pick their own side more often than a persona inferred for
    another pair (paired per pair, clustered by user; each claim resampled with its own generator)."""
    claims = []
    for dataset, check in checks.items():
        for side in SIDES:
            rng = figure_rng(base_seed, f"{FINDING_1}/{dataset}/{side}")
            result = paired_difference(check[f"{side}_own"], check[f"{side}_control"], rng=rng, groups=check.user_id)
            claims.append(
                Claim(
                    "Whose Boat",
                    FINDING_1,
                    f"an inferred {side} persona prefers the {side} response "
                    f"more often than another pair's {side} persona does",
                    f"{dataset}: own vs another pair's {side} persona",
                    +1,
                    result,
                )
            )
    return claims


def rounded(value: float) -> float | None:
    """A number for the metrics file: four decimals, None for nan."""
    return None if math.isnan(value) else round(float(value), 4)


def inference_summary(checks: dict[str, pd.DataFrame], verdicts: pd.DataFrame) -> list[dict]:
    """Per dataset and side (the order of `inference_claims`, whose verdict rows `verdicts` holds): the rates at which
    the own and the control persona pick the side, with Wilson 95% CIs, and the paired difference with its verdict."""
    out = []
    keys = [(dataset, side, check) for dataset, check in checks.items() for side in SIDES]
    for (dataset, side, check), verdict in zip(keys, verdicts.itertuples(), strict=True):
        row = {"dataset": dataset, "persona": side, "n": len(check), "users": int(check.user_id.nunique())}
        for kind in ("own", "control"):
            k = int(check[f"{side}_{kind}"].sum())
            low, high = wilson_interval(k, len(check))
            row.update(
                {
                    f"{kind}_rate": round(k / len(check), 4),
                    f"{kind}_ci_low": round(low, 4),
                    f"{kind}_ci_high": round(high, 4),
                }
            )
        row.update(
            {
                key: rounded(getattr(verdict, column))
                for key, column in (
                    ("difference", "estimate"),
                    ("difference_ci_low", "ci_low"),
                    ("difference_ci_high", "ci_high"),
                    ("mdd", "mdd"),
                    ("p_holm", "p_holm"),
                )
            }
        )
        row["verdict"] = verdict.verdict
        out.append(row)
    return out
