"""Stage 4's accuracy cells: which test prompts each system is scored on (its conditions), whether a test user was
seen in its training, the per-example scores (reference-free, and implicit-reward against the reference model),
and their summaries per system × condition × question type × seen/unseen users (WikiPersona Fig. 3-5, App. L)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.core.config import SOFT_PREFIX_TYPES, BaseParams, RunSpec, ScoreParams
from personalign.core.hardware import resolve_precision
from personalign.core.persona_sources import ORACLE_SUFFIX, SEES_LABEL, TESTED_WITH
from personalign.core.seeding import stable_seed
from personalign.evaluation.scoring import score_pairs
from personalign.lm.artifacts import LoadedBase, ScoreCache, adapter_fingerprint
from personalign.lm.models import pick_device
from personalign.personas.conditioning import PT_VARIANTS, uses_persona_template, variant_prompts
from personalign.personas.prefixes import derangement
from personalign.personas.soft_prefix import PREFIXES_FILE, load_prefixes
from personalign.stats.preferences import prefers_chosen

SEEDED_PREFIXES = {"few_shot", "persona", "persona_strong"}  # prefix types whose text depends on a selection seed


class ScoringInputError(ValueError):
    """A condition asks for prompts stage 1 or 2 did not produce; the message names the condition."""


@dataclass(frozen=True)
class Condition:
    """One cell family of a system: `name` says what is measured, `variant` which prompts are scored
    ("none", "<prefix type>@<seed>" or one of PT_VARIANTS)."""

    system: str
    name: str
    variant: str

    @property
    def sees_label(self) -> bool:
        """The prompt carries a persona inferred from this test pair knowing y_w is preferred: an oracle, never a
        headline cell (its name ends in ORACLE_SUFFIX)."""
        return PT_VARIANTS.get(self.variant) in SEES_LABEL


def pt_condition(system: str, source: str) -> Condition:
    """The PT-template cell of `system` under a persona source, named as an oracle when the persona sees the label."""
    variant = f"pt_{source}"
    return Condition(system, variant + (ORACLE_SUFFIX if source in SEES_LABEL else ""), variant)


def pt_headline_condition(prefix: str) -> str:
    """The honest cell of a PT run trained on persona source `prefix`: the same kind of persona, not from the pair."""
    return f"pt_{TESTED_WITH[prefix]}"


def run_conditions(run: RunSpec, prefix_seeds: list[int], sensitivity: bool) -> list[Condition]:
    """A trained run's cells: its own inference prompt, and for MT runs (with `sensitivity`) the App. L cells — a
    new prefix seed, a wrong (shuffled) prefix, no prefix. A PT run is scored with the honest persona of the kind it
    trained on (`pt_headline_condition`) and, when it trained on pair personas, under the test pair's own pair
    persona as a labelled oracle. Seen and unseen users are split later, per row."""
    if uses_persona_template(run):
        own = [pt_condition(run.name, TESTED_WITH[run.prefix])]
        if run.prefix in SEES_LABEL:
            own.append(pt_condition(run.name, run.prefix))
        return own
    if run.kind != "mt" or run.prefix == "none":
        return [Condition(run.name, "no_prefix", "none")]
    cells = [Condition(run.name, "seen_prefix", f"{run.prefix}@{run.prefix_seed}")]
    if sensitivity:
        if run.prefix in SEEDED_PREFIXES:
            cells += [
                Condition(run.name, f"new_prefix_seed_{s}", f"{run.prefix}@{s}")
                for s in prefix_seeds
                if s != run.prefix_seed
            ]
        cells += [
            Condition(run.name, "shuffled_prefix", f"shuffled_{run.prefix}@{run.prefix_seed}"),
            Condition(run.name, "no_prefix", "none"),
        ]
    return cells


def is_soft(variant: str) -> bool:
    """Whether a prompt variant carries a soft prefix (a trained run's input embeddings) rather than a text."""
    return variant.split("@")[0].removeprefix("shuffled_") in SOFT_PREFIX_TYPES


def cell_soft_prefixes(run: RunSpec, run_dir: Path, variant: str) -> dict | None:
    """The soft prefixes a run's cell places before its prompts: none for text variants; for a vpl run's own cell
    each user's prefix from stage 3, for its shuffled cell another user's (a seeded derangement)."""

    if not is_soft(variant):
        return None
    table = load_prefixes(run_dir / PREFIXES_FILE)
    if variant.startswith("shuffled_"):
        users = sorted(table)
        donors = derangement(len(users), np.random.default_rng(stable_seed(run.seed, "shuffled", variant)))
        table = {user: table[users[j]] for user, j in zip(users, donors)}
    return table


def base_conditions(
    prefix_types: list[str], available: set[str], prefix_seeds: list[int], needed: set[str]
) -> list[Condition]:
    """The prompting baseline: the base model under each listed prefix type stage 2 computed (every seed of seeded
    types), plus every other text variant a trained run is scored on (the reference for its implicit-reward
    accuracy; a soft-prefix cell's reference is the base on the prompt alone, `none`)."""
    needed = {v for v in needed if not is_soft(v)}
    variants = []
    for prefix_type in prefix_types:
        if prefix_type == "none":
            variants.append("none")
        elif prefix_type in available:
            seeds = prefix_seeds if prefix_type in SEEDED_PREFIXES else [0]
            variants += [f"{prefix_type}@{s}" for s in seeds]
    variants += sorted(needed - set(variants))
    return [
        pt_condition("base", PT_VARIANTS[v])
        if v in PT_VARIANTS
        else Condition("base", v.split("@")[0] if v.endswith("@0") else v, v)
        for v in variants
    ]


def seen_users(run: RunSpec | None, test: pd.DataFrame) -> np.ndarray:
    """Per test row: True when the system trained on that user's pairs (the base model: False for everyone; a run
    trained on one dataset: the rows of that dataset)."""
    if run is None:
        return np.zeros(len(test), dtype=bool)
    if run.source:
        return (test.source == run.source).to_numpy()
    if run.kind == "pm":
        return (test.user_id == run.user).to_numpy()
    if run.kind == "mt" and run.held_out_fold is not None:
        return (test.fold != run.held_out_fold).to_numpy()
    return np.ones(len(test), dtype=bool)


def row_reductions(rows: pd.DataFrame, log_prob_reduction: dict[str, str], sources: set[str]) -> np.ndarray:
    """Per row, the log-prob reduction of its dataset (`score.log_prob_reduction`: "default" and dataset names, i.e.
    records sources); a dataset name that is not among `sources` is an error naming the key."""
    unknown = sorted(set(log_prob_reduction) - {"default"} - sources)
    if unknown:
        raise ScoringInputError(
            f"score.log_prob_reduction.{unknown[0]}: no dataset of that name in the records; "
            f"their sources are {', '.join(sorted(sources))}"
        )
    return np.array([log_prob_reduction.get(s, log_prob_reduction["default"]) for s in rows.source])


def examples_frame(
    condition: Condition,
    rows: pd.DataFrame,
    seen: np.ndarray,
    scores: pd.DataFrame,
    implicit_margin: np.ndarray | None,
    reductions: np.ndarray | str = "mean",
    implicit_precision: str = "",
) -> pd.DataFrame:
    """Per-example record of one condition: reference-free decision (each row under its dataset's log-prob
    reduction, `reductions`) and, given the implicit-reward margins log π/π_ref(y_w) − log π/π_ref(y_l)
    (`implicit_margins`, computed at `implicit_precision`), the implicit-reward decision margin > 0 (β > 0 does not
    change the sign)."""

    reductions = np.broadcast_to(np.asarray(reductions), (len(rows),))
    frame = pd.DataFrame(
        {
            "system": condition.system,
            "condition": condition.name,
            "variant": condition.variant,
            "sees_label": condition.sees_label,
            "id": list(rows.id),
            "source": list(rows.source),
            "user_id": list(rows.user_id),
            "question_type": list(rows.question_type),
            "seen": seen,
            "chosen_logp": scores.chosen_logp.to_numpy(),
            "chosen_tokens": scores.chosen_tokens.to_numpy(),
            "rejected_logp": scores.rejected_logp.to_numpy(),
            "rejected_tokens": scores.rejected_tokens.to_numpy(),
            "reduction": reductions,
            "correct": prefers_chosen(
                scores.chosen_logp, scores.chosen_tokens, scores.rejected_logp, scores.rejected_tokens, reductions
            ),
        }
    )
    frame["implicit_precision"] = implicit_precision if implicit_margin is not None else ""
    frame["implicit_correct"] = pd.array(
        [pd.NA] * len(frame) if implicit_margin is None else implicit_margin > 0, dtype="boolean"
    )
    return frame


class _Scorer:
    """Scores of the test pairs under a prompt variant by one model (the base, or a run named by its adapter id) at
    one precision, served from the ScoreCache when that exact scoring was done before. The base is loaded once
    (`LoadedBase`, placed by `base`)."""

    def __init__(self, base_dir, test: pd.DataFrame, prompts: dict[str, list[str]], batch_size: int, cache_root, base):
        self.loaded = LoadedBase.open(base_dir, base.device, base.dtype, base.adapters)
        self.test, self.prompts, self.batch_size = test, prompts, batch_size
        self.cache = ScoreCache(cache_root)

    def __call__(self, model, adapter_id: str, variant: str, precision: str, soft: dict | None = None) -> pd.DataFrame:
        pairs = self.test.assign(prompt=self.prompts[variant])
        settings = {"batch_size": self.batch_size, "precision": precision} | ({"soft_prefix": variant} if soft else {})
        key = ScoreCache.key(self.loaded.identity, adapter_id, pairs, settings)
        scores = self.cache.get(key)
        if scores is None:
            scores = score_pairs(
                model,
                self.loaded.tokenizer,
                pairs,
                self.batch_size,
                autocast_bf16=precision == "bf16",
                soft_prefixes=soft,
            )
            self.cache.put(key, scores)
        return scores.reset_index(drop=True)


def _check_adapters(adapters_dir: Path, runs: list[RunSpec]) -> None:
    for run in runs:
        if not (adapters_dir / run.name / "adapter").is_dir():
            raise ScoringInputError(f"run {run.name!r}: no trained adapter in {adapters_dir / run.name} (stage 3)")


def implicit_margins(scores: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """log π/π_ref(y_w) − log π/π_ref(y_l) per pair of `scores` (the reference's rows matched by id)."""
    ref = reference.set_index("id").loc[scores.id]
    return (scores.chosen_logp.to_numpy() - ref.chosen_logp.to_numpy()) - (
        scores.rejected_logp.to_numpy() - ref.rejected_logp.to_numpy()
    )


IMPLICIT_FLIP_LIMIT = 0.01  # share of implicit-reward decisions bf16 autocast may change before scoring uses fp32


def implicit_precision_check(
    base_dir: str | Path,
    adapters_dir: str | Path,
    runs: list[RunSpec],
    test: pd.DataFrame,
    prefixes: pd.DataFrame,
    pair_personas: pd.DataFrame | None,
    score: ScoreParams,
    prefix_seeds: list[int],
    cache_root: str | Path,
    base: BaseParams,
) -> dict:
    """The precision stage 4 scores in. `score.precision` resolves to fp32 here: fp32, nothing checked.
    Resolves to bf16: the implicit-reward decisions of the first run with a reference model (not SFT), on the test
    pairs of its first cell, under bf16 autocast and under fp32 — policy ≈ reference, so the margin is a small
    difference of large log-probs and bf16 rounding can flip its sign. Returns the run, cell, n, how many decisions
    differ, their share, the largest margin change, and `precision`: fp32 when the share exceeds IMPLICIT_FLIP_LIMIT
    (then every cell is scored in fp32: the reference scores an implicit decision needs are the base's cells, so
    one precision costs no more than two, and paired comparisons compare like with like), else bf16."""

    adapters_dir = Path(adapters_dir)
    run = next((r for r in runs if r.kind != "sft"), None)
    resolved = resolve_precision(score.precision, pick_device(base.device))
    if run is None or resolved == "fp32":
        return {
            "run": "",
            "condition": "",
            "n": 0,
            "differing": 0,
            "share": 0.0,
            "max_margin_change": 0.0,
            "limit": IMPLICIT_FLIP_LIMIT,
            "precision": resolved,
        }
    _check_adapters(adapters_dir, [run])
    condition = run_conditions(run, prefix_seeds, sensitivity=False)[0]
    prompts = {condition.variant: variant_prompts(condition.variant, test, prefixes, pair_personas)}
    scorer = _Scorer(base_dir, test, prompts, score.batch_size, cache_root, base)
    run_dir = adapters_dir / run.name
    policy, reference_model = scorer.loaded.run(run_dir)
    reference_id = "" if reference_model is None else f"{adapter_fingerprint(run_dir)}/reference"
    reference_model = scorer.loaded.base() if reference_model is None else reference_model
    soft = cell_soft_prefixes(run, run_dir, condition.variant)
    margins = {
        precision: implicit_margins(
            scorer(policy, adapter_fingerprint(run_dir), condition.variant, precision, soft),
            scorer(reference_model, reference_id, condition.variant, precision),
        )
        for precision in ("bf16", "fp32")
    }
    differing = int(((margins["bf16"] > 0) != (margins["fp32"] > 0)).sum())
    share = differing / len(test)
    return {
        "run": run.name,
        "condition": condition.name,
        "n": len(test),
        "differing": differing,
        "share": round(share, 6),
        "max_margin_change": round(float(np.abs(margins["bf16"] - margins["fp32"]).max()), 6),
        "limit": IMPLICIT_FLIP_LIMIT,
        "precision": "fp32" if share > IMPLICIT_FLIP_LIMIT else "bf16",
    }


def unscored_prefix_types(score: ScoreParams, prefixes: pd.DataFrame) -> list[str]:
    """The base prefix types of `score.base_prefixes` that stage 2 did not compute, so no base cell scores them."""
    return [p for p in score.base_prefixes if p != "none" and p not in set(prefixes.prefix_type)]


def score_systems(
    base_dir: str | Path,
    adapters_dir: str | Path,
    runs: list[RunSpec],
    test: pd.DataFrame,
    prefixes: pd.DataFrame,
    pair_personas: pd.DataFrame | None,
    score: ScoreParams,
    prefix_seeds: list[int],
    cache_root: str | Path,
    base: BaseParams,
    precision: str,
) -> pd.DataFrame:
    """Per-example scores of the base model (every base condition of `score.base_prefixes`) and of every run (its
    conditions; App. L's with `score.sensitivity`), all at `precision` (see `implicit_precision_check`). The base
    model is loaded once where `base` places it; each run is its adapter merged into a copy of it or switched on it
    (`LoadedBase`, `base.adapters`). Reference-free
    decisions use each dataset's `score.log_prob_reduction`; implicit-reward decisions are made on each run's own
    cell only (the prompt it trained with: the one the cells table and metrics report), against the base's cell
    under the same prompt (or the run's merged SFT model). Every prompt is built before any scoring, so missing
    inputs stop the stage before compute."""
    from tqdm.auto import tqdm

    precision = resolve_precision(precision, pick_device(base.device))
    adapters_dir = Path(adapters_dir)
    _check_adapters(adapters_dir, runs)
    reductions = row_reductions(test, score.log_prob_reduction, set(test.source))
    conditions = {run.name: run_conditions(run, prefix_seeds, score.sensitivity) for run in runs}
    needed = {c.variant for cells in conditions.values() for c in cells}
    conditions["base"] = base_conditions(score.base_prefixes, set(prefixes.prefix_type), prefix_seeds, needed)
    prompts = {
        c.variant: variant_prompts(c.variant, test, prefixes, pair_personas)
        for cells in conditions.values()
        for c in cells
    }
    scored = _Scorer(base_dir, test, prompts, score.batch_size, cache_root, base)
    bar = tqdm(total=sum(len(c) for c in conditions.values()), desc="score", unit="cell")

    frames = []
    for condition in conditions["base"]:
        frames.append(
            examples_frame(
                condition,
                test,
                seen_users(None, test),
                scored(scored.loaded.base(), "", condition.variant, precision),
                None,
                reductions,
            )
        )
        bar.update()
    for run in runs:
        run_dir = adapters_dir / run.name
        adapter_id = adapter_fingerprint(run_dir)
        policy, reference_model = scored.loaded.run(run_dir)
        for index, condition in enumerate(conditions[run.name]):
            scores = scored(
                policy, adapter_id, condition.variant, precision, cell_soft_prefixes(run, run_dir, condition.variant)
            )
            implicit = None  # SFT has no reference model; other cells than the run's own prompt feed no figure
            if run.kind != "sft" and index == 0:
                reference = (
                    scored(scored.loaded.base(), "", condition.variant, precision)
                    if reference_model is None
                    else scored(reference_model, f"{adapter_id}/reference", condition.variant, precision)
                )
                implicit = implicit_margins(scores, reference)
            frames.append(
                examples_frame(condition, test, seen_users(run, test), scores, implicit, reductions, precision)
            )
            bar.update()
        del policy, reference_model
    bar.close()
    return pd.concat(frames, ignore_index=True)
