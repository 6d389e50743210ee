"""Stage 4's accuracy cells: which test prompts each system is scored on (its conditions), whether a test user was
seen in its training, the per-example scores (reference-free, and implicit-reward against the reference model),
and their summaries per system × condition × question type × seen/unseen users (WikiPersona Fig. 3-5, App. L)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.artifacts import ScoreCache, adapter_fingerprint, merged_run, model_fingerprint
from personalign.conditioning import PT_VARIANTS, uses_persona_template, variant_prompts
from personalign.config import SOFT_PREFIX_TYPES, RunSpec, ScoreParams
from personalign.hardware import resolve_precision
from personalign.models import load_base
from personalign.persona_sources import SEES_LABEL, TESTED_WITH
from personalign.prefixes import derangement
from personalign.scoring import prefers_chosen, score_pairs
from personalign.seeding import stable_seed
from personalign.soft_prefix import PREFIXES_FILE, load_prefixes
from personalign.statistics import wilson_interval

SEEDED_PREFIXES = {"few_shot", "persona", "persona_strong"}  # prefix types whose text depends on a selection seed
ORACLE_SUFFIX = "_oracle_sees_label"  # condition name of a cell whose prompt was inferred knowing y_w is preferred


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


def summarize(examples: pd.DataFrame) -> pd.DataFrame:
    """Accuracy cells: per system × condition × question type (personal / divergent / overall) × users (seen /
    unseen / all), with n, reference-free accuracy and its Wilson 95% interval, and implicit-reward accuracy."""
    rows = []
    for (system, condition, variant), group in examples.groupby(["system", "condition", "variant"], sort=True):
        for question_type in ("overall", "personal", "divergent"):
            by_type = group if question_type == "overall" else group[group.question_type == question_type]
            for users in ("all", "seen", "unseen"):
                cell = by_type if users == "all" else by_type[by_type.seen == (users == "seen")]
                if cell.empty or (users != "all" and system == "base"):
                    continue
                hits = int(cell.correct.sum())
                low, high = wilson_interval(hits, len(cell))
                implicit = cell.implicit_correct.dropna()
                rows.append(
                    {
                        "system": system,
                        "condition": condition,
                        "variant": variant,
                        "question_type": question_type,
                        "users": users,
                        "n": len(cell),
                        "accuracy": hits / len(cell),
                        "ci_low": low,
                        "ci_high": high,
                        "implicit_accuracy": float(implicit.astype(bool).mean()) if len(implicit) else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def metrics_tree(cells: pd.DataFrame) -> dict:
    """Cells for `dvc metrics`: system -> condition -> "<question type>/<users>" -> accuracy (and implicit)."""
    tree: dict = {}
    for row in cells.itertuples():
        leaf = tree.setdefault(row.system, {}).setdefault(row.condition, {})
        leaf[f"{row.question_type}/{row.users}"] = round(float(row.accuracy), 4)
        if not np.isnan(row.implicit_accuracy):
            leaf[f"{row.question_type}/{row.users}/implicit"] = round(float(row.implicit_accuracy), 4)
    return tree


def length_diagnostic(examples: pd.DataFrame) -> pd.DataFrame:
    """Why the base model's reference-free accuracy sits where it does, per dataset (records source): without a
    prefix, accuracy under mean and under summed log-probs with Wilson 95% intervals, over all test pairs and over
    those where y_w has more, as many or fewer tokens than y_l (share of pairs and mean token difference y_w − y_l)."""

    base = examples[(examples.system == "base") & (examples.variant == "none")]
    rows = []
    for source, group in base.groupby("source", sort=True):
        difference = (group.chosen_tokens - group.rejected_tokens).to_numpy()
        decisions = {
            r: prefers_chosen(group.chosen_logp, group.chosen_tokens, group.rejected_logp, group.rejected_tokens, r)
            for r in ("mean", "sum")
        }
        for pairs, mask in (
            ("all", difference == difference),
            ("y_w longer", difference > 0),
            ("same length", difference == 0),
            ("y_w shorter", difference < 0),
        ):
            if not mask.any():
                continue
            row = {
                "dataset": source,
                "pairs": pairs,
                "n": int(mask.sum()),
                "share": float(mask.mean()),
                "token_difference": float(difference[mask].mean()),
            }
            for reduction, correct in decisions.items():
                hits = int(correct[mask].sum())
                row[f"accuracy_{reduction}"] = hits / int(mask.sum())
                row[f"ci_low_{reduction}"], row[f"ci_high_{reduction}"] = wilson_interval(hits, int(mask.sum()))
            rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "pairs",
            "n",
            "share",
            "token_difference",
            "accuracy_mean",
            "ci_low_mean",
            "ci_high_mean",
            "accuracy_sum",
            "ci_low_sum",
            "ci_high_sum",
        ],
    )


def length_sentences(diagnostic: pd.DataFrame) -> str:
    """One paragraph per dataset of `length_diagnostic`, every number read from it: how often y_w is the longer
    response, accuracy under both reductions, and whether the pairs where y_w is shorter stay below chance."""

    def acc(row, reduction: str) -> str:
        return (
            f"{getattr(row, f'accuracy_{reduction}'):.2f} [{getattr(row, f'ci_low_{reduction}'):.2f}, "
            f"{getattr(row, f'ci_high_{reduction}'):.2f}]"
        )

    paragraphs = []
    for dataset, table in diagnostic.groupby("dataset", sort=True):
        cells = {r.pairs: r for r in table.itertuples()}
        overall, longer, shorter = cells["all"], cells.get("y_w longer"), cells.get("y_w shorter")
        text = (
            f"**{dataset}** ({overall.n} test pairs, base model, no prefix): y_w has more tokens than y_l in "
            f"{longer.share if longer else 0:.0%} of pairs (mean difference {overall.token_difference:+.1f} "
            f"tokens). Reference-free accuracy is {acc(overall, 'mean')} with mean token log-probs and "
            f"{acc(overall, 'sum')} with summed log-probs."
        )
        if longer is not None and shorter is not None:
            text += (
                f" Where y_w is longer: {acc(longer, 'mean')} (mean), {acc(longer, 'sum')} (sum); where it is "
                f"shorter (n={shorter.n}): {acc(shorter, 'mean')} (mean), {acc(shorter, 'sum')} (sum)."
            )
            longer_below = min(longer.ci_high_mean, longer.ci_high_sum) < 0.5
            if shorter.ci_high_mean < 0.5:
                text += (
                    " Even where y_w is shorter the model prefers y_l beyond chance, so length alone does not "
                    "explain the deficit: the base model finds the rejected responses themselves more likely."
                )
            elif longer_below and max(shorter.ci_low_mean, shorter.ci_low_sum) > 0.5:
                text += (
                    " Accuracy is below chance where y_w is longer and above it where y_w is shorter: the "
                    "length difference of the pairs drives the deficit, not the label direction."
                )
            elif longer_below:
                text += (
                    f" Accuracy is below chance where y_w is longer; the {shorter.n} pairs where it is shorter are "
                    "too few to tell whether length alone explains it."
                )
            else:
                text += " Neither length group is below chance beyond its interval."
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def by_user(examples: pd.DataFrame) -> pd.DataFrame:
    """Per-user accuracy of every system × condition (what the equity analysis of stage 6 correlates)."""
    grouped = examples.groupby(["system", "condition", "variant", "user_id", "seen"], sort=True)
    return grouped.agg(n=("correct", "size"), accuracy=("correct", "mean")).reset_index()


class _Scorer:
    """Scores of the test pairs under a prompt variant by one model (the base, or a merged run named by its adapter
    id) at one precision, served from the ScoreCache when that exact scoring was done before."""

    def __init__(self, base_dir, test: pd.DataFrame, prompts: dict[str, list[str]], batch_size: int, cache_root):

        self.model, self.tokenizer, _ = load_base(base_dir, "cpu", "float32")
        self.test, self.prompts, self.batch_size = test, prompts, batch_size
        self.cache, self.base_id = ScoreCache(cache_root), model_fingerprint(base_dir)

    def __call__(self, model, adapter_id: str, variant: str, precision: str, soft: dict | None = None) -> pd.DataFrame:

        pairs = self.test.assign(prompt=self.prompts[variant])
        settings = {"batch_size": self.batch_size, "precision": precision} | ({"soft_prefix": variant} if soft else {})
        key = ScoreCache.key(self.base_id, adapter_id, pairs, settings)
        scores = self.cache.get(key)
        if scores is None:
            scores = score_pairs(
                model, self.tokenizer, pairs, self.batch_size, autocast_bf16=precision == "bf16", soft_prefixes=soft
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
    resolved = resolve_precision(score.precision, "cpu")
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
    scorer = _Scorer(base_dir, test, prompts, score.batch_size, cache_root)
    run_dir = adapters_dir / run.name
    policy, reference_model = merged_run(scorer.model, run_dir)
    reference_model = scorer.model if reference_model is None else reference_model
    reference_id = "" if reference_model is scorer.model else f"{adapter_fingerprint(run_dir)}/reference"
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


def implicit_precision_sentence(check: dict) -> str:
    """What `implicit_precision_check` found, in words, every number read from it."""
    if not check["run"]:
        return (
            f"Every cell is scored in **{check['precision']}** (`score.precision` on this machine); there is no "
            "bf16 rounding of implicit-reward margins to check."
        )
    return (
        f"On the {check['n']} test pairs of `{check['run']}` / `{check['condition']}`, bf16 autocast and fp32 "
        f"disagree on {check['differing']} implicit-reward decisions ({check['share']:.1%}; largest change of a "
        f"margin {check['max_margin_change']:.4f} nats). Above {check['limit']:.0%} every cell is scored in fp32 "
        f"(one precision for reference-free and implicit-reward decisions alike), so every accuracy below uses "
        f"**{check['precision']}**."
    )


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
    precision: str,
) -> pd.DataFrame:
    """Per-example scores of the base model (every base condition of `score.base_prefixes`) and of every run (its
    conditions; App. L's with `score.sensitivity`), all at `precision` (see `implicit_precision_check`). The base
    model is loaded once; each run is its adapter merged into a copy of it in memory (`merged_run`). Reference-free
    decisions use each dataset's `score.log_prob_reduction`; implicit-reward decisions are made on each run's own
    cell only (the prompt it trained with: the one the cells table and metrics report), against the base's cell
    under the same prompt (or the run's merged SFT model). Every prompt is built before any scoring, so missing
    inputs stop the stage before compute."""
    from tqdm.auto import tqdm

    precision = resolve_precision(precision, "cpu")  # scoring runs on the CPU (_Scorer loads the base there)
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
    scored = _Scorer(base_dir, test, prompts, score.batch_size, cache_root)
    bar = tqdm(total=sum(len(c) for c in conditions.values()), desc="score", unit="cell")

    frames = []
    for condition in conditions["base"]:
        frames.append(
            examples_frame(
                condition,
                test,
                seen_users(None, test),
                scored(scored.model, "", condition.variant, precision),
                None,
                reductions,
            )
        )
        bar.update()
    for run in runs:
        run_dir = adapters_dir / run.name
        adapter_id = adapter_fingerprint(run_dir)
        policy, reference_model = merged_run(scored.model, run_dir)
        for index, condition in enumerate(conditions[run.name]):
            scores = scored(
                policy, adapter_id, condition.variant, precision, cell_soft_prefixes(run, run_dir, condition.variant)
            )
            implicit = None  # SFT has no reference model; other cells than the run's own prompt feed no figure
            if run.kind != "sft" and index == 0:
                reference = (
                    scored(scored.model, "", condition.variant, precision)
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


def cells_table(cells: pd.DataFrame, oracles: bool = False) -> pd.DataFrame:
    """The cells as a readable table: one row per system × condition; reference-free accuracy with its Wilson 95%
    interval by question type (all users) and by seen/unseen users (all questions), and implicit-reward accuracy.
    The honest cells by default; with `oracles`, only the cells whose prompt sees the test label."""
    cells = cells[cells.condition.str.endswith(ORACLE_SUFFIX) == oracles]

    def fmt(row) -> str:
        return f"{row.accuracy:.3f} [{row.ci_low:.2f}, {row.ci_high:.2f}] (n={row.n})"

    wanted = {
        ("overall", "all"): "overall",
        ("personal", "all"): "personal",
        ("divergent", "all"): "divergent",
        ("overall", "seen"): "seen users",
        ("overall", "unseen"): "unseen users",
    }
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in cells.itertuples():
        column = wanted.get((row.question_type, row.users))
        if column is None:
            continue
        entry = rows.setdefault((row.system, row.condition), {})
        entry[column] = fmt(row)
        if column == "overall":
            entry["implicit (overall)"] = "" if np.isnan(row.implicit_accuracy) else f"{row.implicit_accuracy:.3f}"
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=[*wanted.values(), "implicit (overall)"])
    table.index = pd.Index([f"{system} / {condition}" for system, condition in table.index], name="system / condition")
    return table.fillna("")
