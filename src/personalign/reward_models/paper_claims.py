"""The reward-model paper's headline findings as claims decided by paired tests on the same test pairs
(personalign.stats.verdicts); each claim draws from its own figure_rng(base seed, family and comparison)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from personalign.core.seeding import figure_rng
from personalign.reward_models.evaluation import UPPER_BOUND
from personalign.reward_models.report import model_label
from personalign.stats.verdicts import Claim, paired_difference

PAPER = "Personalization Meets Reality"


FAMILIES = {
    "accuracy": "Personalization Meets Reality, Fig. 1 (accuracy)",
    "efficiency": "Personalization Meets Reality, Fig. 2 (sample efficiency)",
    "new_users": "Personalization Meets Reality, Fig. 3 (new users)",
    "tax": "Personalization Meets Reality, Fig. 4 (personalization tax)",
    "minority": "Personalization Meets Reality, Fig. 5 (minority users)",
}


def _claim(
    base_seed: int,
    family: str,
    claim: str,
    comparison: str,
    direction: int,
    a: pd.Series | None,
    b: pd.Series | float | None,
    missing: str = "",
) -> Claim:
    """One claim on the scores `a` and `b` (hits indexed by (id, user_id); `b` may be a constant such as chance),
    compared on the pairs both scored and resampled by user; its generator is its own (figure_rng of the family
    and the comparison), so adding a model, dataset or claim moves no other interval."""
    if a is not None and b is not None and not missing:
        if not isinstance(b, pd.Series):
            b = pd.Series(float(b), index=a.index)
        both = a.index.intersection(b.index).sort_values()
        if len(both):
            result = paired_difference(
                a.loc[both].to_numpy(float),
                b.loc[both].to_numpy(float),
                rng=figure_rng(base_seed, f"{family} | {comparison}"),
                groups=both.get_level_values("user_id").to_numpy(),
            )
            return Claim(PAPER, family, claim, comparison, direction, result)
        missing = "no test pair scored by both"
    return Claim(PAPER, family, claim, comparison, direction, None, missing or "not evaluated here")


def _hits(results: pd.DataFrame, model: str, **where) -> pd.Series | None:
    """1.0 / 0.0 per scored test pair of `model` (where column == value for each keyword), indexed by (id, user_id);
    None when the model has no such pairs."""
    keep = (results.model == model) & results.scored.astype(bool)
    for column, value in where.items():
        keep &= results[column] == value
    part = results[keep]
    if part.empty:
        return None
    return pd.Series(
        part.correct.astype(float).to_numpy(),
        index=pd.MultiIndex.from_arrays([part.id.astype(str), part.user_id.astype(str)], names=["id", "user_id"]),
    )


def _ranked(results: pd.DataFrame, exclude: Collection[str]) -> list[str]:
    """The models of `results` other than `exclude`, most accurate first (ties by name)."""
    accuracy = results[results.scored.astype(bool)].groupby("model").correct.mean().astype(float).dropna()
    accuracy = accuracy.drop([m for m in exclude if m in accuracy.index])
    return sorted(accuracy.index, key=lambda m: (-accuracy[m], m))


def _datasets(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "dataset" not in results.columns:
        return [("", results)]
    return [(str(d), part) for d, part in results.groupby("dataset", sort=True)]


def _prefix(dataset: str) -> str:
    return f"{dataset}: " if dataset else ""


def accuracy_claims(pairs: pd.DataFrame, base_seed: int) -> list[Claim]:
    """Fig. 1, per dataset (fit_and_score's scored pairs): Personalized RM beats every other method, Individual RM
    every method but the Personalized RM, and RAG is the weakest. Each is tested against the strongest (weakest
    for RAG) rival on these pairs, the hardest comparison for the claim."""
    family, claims = FAMILIES["accuracy"], []
    for dataset, part in _datasets(pairs):
        tests = (
            ("prm", ("prm",), "Personalized RM is the most accurate method", +1, 0),
            (
                "individual",
                ("prm", "individual"),
                "Individual RM is a strong baseline, second only to the Personalized RM",
                +1,
                0,
            ),
            ("rag", ("rag",), "RAG is the weakest method", -1, -1),
        )
        for model, exclude, claim, direction, pick in tests:
            rivals = _ranked(part, exclude)
            if _hits(part, model) is None or not rivals:
                claims.append(
                    _claim(
                        base_seed,
                        family,
                        claim,
                        f"{_prefix(dataset)}{model_label(model)}",
                        direction,
                        None,
                        None,
                        f"{model_label(model)} or its rivals not evaluated",
                    )
                )
                continue
            rival = rivals[pick]
            which = "least" if pick else "most"
            comparison = f"{_prefix(dataset)}{model_label(model)} − {model_label(rival)} (the {which} accurate rival)"
            claims.append(
                _claim(base_seed, family, claim, comparison, direction, _hits(part, model), _hits(part, rival))
            )
    return claims


def minority_claims(pairs: pd.DataFrame, minority_users: Collection[str], base_seed: int) -> list[Claim]:
    """Fig. 5, per dataset, on the minority users' test pairs: the Vanilla RM is below chance on them, and the
    Individual RM serves them better."""
    family, claims, minority = FAMILIES["minority"], [], set(map(str, minority_users))
    for dataset, part in _datasets(pairs):
        mine = part[part.user_id.astype(str).isin(minority)]
        missing = "" if len(mine) else "no minority user (majority-vote accuracy < 0.5) in the test pairs"
        claims.append(
            _claim(
                base_seed,
                family,
                "Vanilla RM fails minority users (below chance on them)",
                f"{_prefix(dataset)}Vanilla RM − 0.5 on minority users' pairs",
                -1,
                _hits(mine, "vanilla"),
                0.5,
                missing,
            )
        )
        claims.append(
            _claim(
                base_seed,
                family,
                "Individual RM preserves minority users' preferences",
                f"{_prefix(dataset)}Individual RM − Vanilla RM on minority users' pairs",
                +1,
                _hits(mine, "individual"),
                _hits(mine, "vanilla"),
                missing,
            )
        )
    return claims


def efficiency_claims(
    pairs: pd.DataFrame, base_seed: int, models: Sequence[str] = ("individual", "prm")
) -> list[Claim]:
    """Fig. 2 (sample_efficiency_pairs): more training pairs per user raise the accuracy of the methods that learn
    personalized RMs (the paper exempts those that do not, e.g. Conditional RM and GPO on P-SOUPS; default: the
    Individual and Personalized RM), tested as the largest size against the smallest on the same test pairs. Few
    claims per family on purpose: with 8 users a clustered sign-flip p is at least 2/256, so Holm over 7 could
    never decide."""
    family, claims = FAMILIES["efficiency"], []
    for dataset, part in _datasets(pairs):
        small, large = int(part.n_per_user.min()), int(part.n_per_user.max())
        for model in models:
            comparison = f"{_prefix(dataset)}{model_label(model)} at {large} − at {small} training pairs per user"
            claims.append(
                _claim(
                    base_seed,
                    family,
                    "More training pairs per user improve accuracy",
                    comparison,
                    +1,
                    _hits(part, model, n_per_user=large),
                    _hits(part, model, n_per_user=small),
                    "" if large > small else "one training size only",
                )
            )
    return claims


def new_user_claims(rows: pd.DataFrame, base_seed: int) -> list[Claim]:
    """Fig. 3, per n (new_user_adaptation's rows): GPO beats every other new-user method (the upper bound, an
    Individual RM on all of the user's data, excluded), tested against the strongest of them at that n."""
    family, claims = FAMILIES["new_users"], []
    for dataset, part in _datasets(rows):
        for n, at_n in part.groupby("n", sort=True):
            rivals = _ranked(at_n, ("gpo", UPPER_BOUND))
            gpo = _hits(at_n, "gpo")
            if gpo is None or not rivals:
                claims.append(
                    _claim(
                        base_seed,
                        family,
                        "GPO adapts best to new users",
                        f"{_prefix(dataset)}n={n}: GPO",
                        +1,
                        None,
                        None,
                        "GPO or its rivals not evaluated",
                    )
                )
                continue
            comparison = f"{_prefix(dataset)}n={n}: GPO − {model_label(rivals[0], True)} (the most accurate rival)"
            claims.append(
                _claim(base_seed, family, "GPO adapts best to new users", comparison, +1, gpo, _hits(at_n, rivals[0]))
            )
    return claims


def tax_claims(hits: pd.DataFrame, base_seed: int, before: str = "vanilla", after: str = "individual") -> list[Claim]:
    """Fig. 4 (benchmark_hits): personalization (`after`) costs RewardBench Safety and Reasoning against `before`,
    paired on the section's pairs (unweighted: each pair counts once, unlike the section score)."""
    claims = []
    for section in ("Safety", "Reasoning"):
        mine = hits[hits.section == section]
        scores = {}
        for model in (before, after):
            rows = mine[mine.model == model]
            scores[model] = (
                pd.Series(
                    rows.hit.to_numpy(float),
                    index=pd.MultiIndex.from_arrays(
                        [rows.row.astype(str), np.full(len(rows), "rewardbench")], names=["id", "user_id"]
                    ),
                )
                if len(rows)
                else None
            )
        comparison = f"RewardBench {section}: {model_label(after)} − {model_label(before)} (pairs, unweighted)"
        claims.append(
            _claim(
                base_seed,
                FAMILIES["tax"],
                f"Personalization costs {section.lower()}",
                comparison,
                -1,
                scores[after],
                scores[before],
                "" if len(mine) else f"no {section} subset in the RewardBench file",
            )
        )
    return claims


def reward_model_claims(
    base_seed: int,
    pairs: pd.DataFrame | None = None,
    minority_users: Collection[str] = (),
    efficiency: pd.DataFrame | None = None,
    new_users: pd.DataFrame | None = None,
    bench: pd.DataFrame | None = None,
) -> list[Claim]:
    """Every headline claim of the paper this stage tests, in the paper's figure order; a claim whose table is
    absent is listed as not tested, with the reason."""

    def absent(key: str, claim: str, why: str, direction: int) -> list[Claim]:
        return [Claim(PAPER, FAMILIES[key], claim, "—", direction, None, why)]

    no_models = "no reward models were fitted"
    claims = (
        accuracy_claims(pairs, base_seed)
        if pairs is not None
        else (absent("accuracy", "Personalized RM is the most accurate method", no_models, +1))
    )
    claims += (
        efficiency_claims(efficiency, base_seed)
        if efficiency is not None
        else (absent("efficiency", "More training pairs per user improve accuracy", no_models, +1))
    )
    claims += (
        new_user_claims(new_users, base_seed)
        if new_users is not None
        else (
            absent(
                "new_users",
                "GPO adapts best to new users",
                "no new-user adaptation (reward_models.new_users is 0 or too few users)",
                +1,
            )
        )
    )
    claims += (
        tax_claims(bench, base_seed)
        if bench is not None
        else [
            c
            for section in ("safety", "reasoning")
            for c in absent(
                "tax", f"Personalization costs {section}", "no RewardBench-format file (reward_models.rewardbench)", -1
            )
        ]
    )
    claims += (
        minority_claims(pairs, minority_users, base_seed)
        if pairs is not None
        else (absent("minority", "Vanilla RM fails minority users (below chance on them)", no_models, -1))
    )
    return claims
