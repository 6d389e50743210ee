"""Stage 4's accuracy cells: which test prompts each system is scored on (its conditions), whether a test user was
seen in its training, the per-example scores (reference-free, and implicit-reward against the reference model),
and their summaries per system × condition × question type × seen/unseen users (WikiPersona Fig. 3-5, App. L)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.persona_sources import PERSONA_SOURCES, SEES_LABEL, TESTED_WITH, PersonaSourceError, persona_texts
from personalign.prompts import PT_TEMPLATE, prefixed_prompt
from personalign.statistics import wilson_interval
from personalign.training import RunSpec

SEEDED_PREFIXES = {"few_shot", "persona", "persona_strong"}  # prefix types whose text depends on a selection seed
PT_VARIANTS = {f"pt_{source}": source for source in PERSONA_SOURCES}  # the PT template with the chosen persona
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


def variant_prompts(variant: str, test: pd.DataFrame, prefixes: pd.DataFrame,
                    pair_personas: pd.DataFrame | None) -> list[str]:
    """The user message of every test pair under a prompt variant."""
    if variant == "none":
        return list(test.prompt)
    if variant in PT_VARIANTS:
        try:
            personas = persona_texts(test, pair_personas, "chosen", PT_VARIANTS[variant])
        except PersonaSourceError as exc:
            raise ScoringInputError(f"prompt variant {variant!r}: {exc}") from exc
        return [PT_TEMPLATE.format(x=x, persona=p) for x, p in zip(test.prompt, personas)]
    prefix_type, _, seed = variant.partition("@")
    table = prefixes[(prefixes.prefix_type == prefix_type) & (prefixes.seed == int(seed or 0))]
    lookup = dict(zip(table.user_id, table.text))
    missing = sorted(set(test.user_id) - set(lookup))
    if missing:
        raise ScoringInputError(f"prompt variant {variant!r}: stage 2 computed no such prefix for user {missing[0]!r}")
    return [prefixed_prompt(prefix_type, lookup[u], x) for u, x in zip(test.user_id, test.prompt)]


def run_conditions(run: RunSpec, prefix_seeds: list[int], sensitivity: bool) -> list[Condition]:
    """A trained run's cells: its own inference prompt, and for MT runs (with `sensitivity`) the App. L cells — a
    new prefix seed, a wrong (shuffled) prefix, no prefix. A PT run is scored with the honest persona of the kind it
    trained on (`pt_headline_condition`) and, when it trained on pair personas, under the test pair's own pair
    persona as a labelled oracle. Seen and unseen users are split later, per row."""
    if run.kind == "pt" or (run.kind == "sft" and run.prefix != "none"):
        own = [pt_condition(run.name, TESTED_WITH[run.prefix])]
        if run.prefix in SEES_LABEL:
            own.append(pt_condition(run.name, run.prefix))
        return own
    if run.kind != "mt" or run.prefix == "none":
        return [Condition(run.name, "no_prefix", "none")]
    cells = [Condition(run.name, "seen_prefix", f"{run.prefix}@{run.prefix_seed}")]
    if sensitivity:
        if run.prefix in SEEDED_PREFIXES:
            cells += [Condition(run.name, f"new_prefix_seed_{s}", f"{run.prefix}@{s}")
                      for s in prefix_seeds if s != run.prefix_seed]
        cells += [Condition(run.name, "shuffled_prefix", f"shuffled_{run.prefix}@{run.prefix_seed}"),
                  Condition(run.name, "no_prefix", "none")]
    return cells


def base_conditions(prefix_types: list[str], available: set[str], prefix_seeds: list[int],
                    needed: set[str]) -> list[Condition]:
    """The prompting baseline: the base model under each listed prefix type stage 2 computed (every seed of seeded
    types), plus every other variant a trained run is scored on (the reference for its implicit-reward accuracy)."""
    variants = []
    for prefix_type in prefix_types:
        if prefix_type == "none":
            variants.append("none")
        elif prefix_type in available:
            seeds = prefix_seeds if prefix_type in SEEDED_PREFIXES else [0]
            variants += [f"{prefix_type}@{s}" for s in seeds]
    variants += sorted(needed - set(variants))
    return [pt_condition("base", PT_VARIANTS[v]) if v in PT_VARIANTS
            else Condition("base", v.split("@")[0] if v.endswith("@0") else v, v) for v in variants]


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


def examples_frame(condition: Condition, rows: pd.DataFrame, seen: np.ndarray, scores: pd.DataFrame,
                   reference: pd.DataFrame | None) -> pd.DataFrame:
    """Per-example record of one condition: reference-free decision and, given the reference model's scores of the
    same prompts, the implicit-reward decision log π/π_ref(y_w) > log π/π_ref(y_l) (β > 0 does not change the sign)."""
    frame = pd.DataFrame({
        "system": condition.system, "condition": condition.name, "variant": condition.variant,
        "sees_label": condition.sees_label, "id": list(rows.id), "user_id": list(rows.user_id), "question_type": list(rows.question_type),
        "seen": seen, "chosen_logp": scores.chosen_logp.to_numpy(), "chosen_tokens": scores.chosen_tokens.to_numpy(),
        "rejected_logp": scores.rejected_logp.to_numpy(), "rejected_tokens": scores.rejected_tokens.to_numpy(),
        "correct": scores.correct.to_numpy(),
    })
    if reference is None:
        frame["implicit_correct"] = pd.array([pd.NA] * len(frame), dtype="boolean")
    else:
        ref = reference.set_index("id").loc[frame.id]
        margin = (frame.chosen_logp.to_numpy() - ref.chosen_logp.to_numpy()) - (
            frame.rejected_logp.to_numpy() - ref.rejected_logp.to_numpy())
        frame["implicit_correct"] = pd.array(margin > 0, dtype="boolean")
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
                rows.append({
                    "system": system, "condition": condition, "variant": variant, "question_type": question_type,
                    "users": users, "n": len(cell), "accuracy": hits / len(cell), "ci_low": low, "ci_high": high,
                    "implicit_accuracy": float(implicit.astype(bool).mean()) if len(implicit) else np.nan,
                })
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


def by_user(examples: pd.DataFrame) -> pd.DataFrame:
    """Per-user accuracy of every system × condition (what the equity analysis of stage 6 correlates)."""
    grouped = examples.groupby(["system", "condition", "variant", "user_id", "seen"], sort=True)
    return grouped.agg(n=("correct", "size"), accuracy=("correct", "mean")).reset_index()


class ScoreCache:
    """Finished scores of one (model, adapter, prompts, precision) on disk, so a rerun scores only what changed;
    each entry is written whole (to a temporary name, then renamed), so a killed run keeps the finished ones."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(model_id: str, adapter_id: str, pairs: pd.DataFrame, settings: dict) -> str:
        payload = json.dumps([model_id, adapter_id, settings, pairs[["id", "prompt", "chosen", "rejected"]].values.tolist()])
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def get(self, key: str) -> pd.DataFrame | None:
        path = self.root / f"{key}.json"
        return pd.read_json(path, orient="split", dtype=False) if path.exists() else None

    def put(self, key: str, scores: pd.DataFrame) -> None:
        path = self.root / f"{key}.json"
        partial = path.with_suffix(".partial")
        partial.write_text(scores.to_json(orient="split", double_precision=15))
        partial.replace(path)


def directory_fingerprint(path: str | Path) -> str:
    """A short hash of every file under a directory (an adapter's identity for the score cache)."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            digest.update(str(file.relative_to(path)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def merged_run(base, run_dir: Path):
    """A trained run as a plain model: its adapter merged into a copy of the in-memory base model (an unmerged LoRA
    makes every forward several times slower on a CPU), after its SFT adapter where it had an SFT phase. Returns
    (policy, reference): the reference is the merged SFT model for SFT-then-DPO runs, None when it is the base."""
    import copy

    from peft import PeftModel

    model, reference = copy.deepcopy(base), None
    if (run_dir / "sft_adapter").is_dir():
        model = PeftModel.from_pretrained(model, str(run_dir / "sft_adapter")).merge_and_unload()
        reference = copy.deepcopy(model)
    return PeftModel.from_pretrained(model, str(run_dir / "adapter")).merge_and_unload(), reference


def score_systems(base_dir: str | Path, adapters_dir: str | Path, runs: list[RunSpec], test: pd.DataFrame,
                  prefixes: pd.DataFrame, pair_personas: pd.DataFrame | None, base_prefixes: list[str],
                  prefix_seeds: list[int], sensitivity: bool, batch_size: int, precision: str,
                  cache_root: str | Path) -> pd.DataFrame:
    """Per-example scores of the base model (every base condition) and of every run (its conditions). The base
    model is loaded once; each run is its adapter merged into a copy of it in memory (`merged_run`). Every prompt is
    built before any scoring, so missing inputs stop the stage before compute."""
    from tqdm.auto import tqdm

    from personalign.generation import model_fingerprint
    from personalign.models import load_base
    from personalign.scoring import score_pairs

    adapters_dir = Path(adapters_dir)
    for run in runs:
        if not (adapters_dir / run.name / "adapter").is_dir():
            raise ScoringInputError(f"run {run.name!r}: no trained adapter in {adapters_dir / run.name} (stage 3)")
    conditions = {run.name: run_conditions(run, prefix_seeds, sensitivity) for run in runs}
    needed = {c.variant for cells in conditions.values() for c in cells}
    conditions["base"] = base_conditions(base_prefixes, set(prefixes.prefix_type), prefix_seeds, needed)
    prompts = {c.variant: variant_prompts(c.variant, test, prefixes, pair_personas)
               for cells in conditions.values() for c in cells}
    settings = {"batch_size": batch_size, "precision": precision}
    cache, base_id = ScoreCache(cache_root), model_fingerprint(base_dir)
    model, tokenizer, _ = load_base(base_dir, "cpu", "float32")
    bar = tqdm(total=sum(len(c) for c in conditions.values()), desc="score", unit="cell")

    def scored(model, adapter_id: str, variant: str) -> pd.DataFrame:
        pairs = test.assign(prompt=prompts[variant])
        key = ScoreCache.key(base_id, adapter_id, pairs, settings)
        scores = cache.get(key)
        if scores is None:
            scores = score_pairs(model, tokenizer, pairs, batch_size, autocast_bf16=precision == "bf16")
            cache.put(key, scores)
        return scores.reset_index(drop=True)

    frames, base_scores = [], {}
    for condition in conditions["base"]:
        base_scores[condition.variant] = scored(model, "", condition.variant)
        frames.append(examples_frame(condition, test, seen_users(None, test), base_scores[condition.variant], None))
        bar.update()
    for run in runs:
        run_dir = adapters_dir / run.name
        adapter_id = directory_fingerprint(run_dir)
        policy, reference_model = merged_run(model, run_dir)
        for condition in conditions[run.name]:
            scores = scored(policy, adapter_id, condition.variant)
            if run.kind == "sft":
                reference = None  # SFT has no reference model: implicit-reward accuracy does not apply
            elif reference_model is None:
                reference = base_scores[condition.variant]
            else:
                reference = scored(reference_model, f"{adapter_id}/reference", condition.variant)
            frames.append(examples_frame(condition, test, seen_users(run, test), scores, reference))
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

    wanted = {("overall", "all"): "overall", ("personal", "all"): "personal", ("divergent", "all"): "divergent",
              ("overall", "seen"): "seen users", ("overall", "unseen"): "unseen users"}
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


def _accuracy_bars(ax, data: pd.DataFrame, x: str, hue: str, order: list[str], hue_order: list[str]) -> None:
    """Grouped bars of mean `correct` with Wilson 95% intervals."""
    width = 0.8 / max(len(hue_order), 1)
    for j, level in enumerate(hue_order):
        for i, key in enumerate(order):
            cell = data[(data[x] == key) & (data[hue] == level)]
            if cell.empty:
                continue
            hits, n = int(cell.correct.sum()), len(cell)
            low, high = wilson_interval(hits, n)
            mean = hits / n
            ax.bar(i + (j - (len(hue_order) - 1) / 2) * width, mean, width, color=f"C{j}",
                   yerr=[[mean - low], [high - mean]], capsize=2, label=level if i == 0 or ax.get_legend() is None else None)
    ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.set_ylim(0, 1)


def prefix_figure(examples: pd.DataFrame, runs: list[RunSpec]):
    """WikiPersona Fig. 3/4 at this scale: reference-free accuracy per prefix type for the base model (prompting),
    the MT models on seen users and on unseen users, per question type, with Wilson 95% intervals."""
    import matplotlib.pyplot as plt

    mt_prefix = {r.name: r.prefix for r in runs if r.kind == "mt"}
    base = examples[(examples.system == "base") & ~examples.variant.str.contains("shuffled|pt_", regex=True)]
    base = base.assign(prefix=base.variant.str.split("@").str[0], who="base (prompting)")
    own = examples[examples.system.isin(list(mt_prefix)) & examples.condition.isin(["seen_prefix"])
                   | (examples.system.map(mt_prefix) == "none")]
    own = own.assign(prefix=own.system.map(mt_prefix), who=np.where(own.seen, "MT, seen users", "MT, unseen users"))
    data = pd.concat([base, own], ignore_index=True)
    order = [p for p in ("none", "tag", "name", "few_shot", "persona", "persona_strong", "gold")
             if p in set(data.prefix)]
    who = [w for w in ("base (prompting)", "MT, seen users", "MT, unseen users") if w in set(data.who)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, question_type in zip(axes, ("personal", "divergent")):
        _accuracy_bars(ax, data[data.question_type == question_type], "prefix", "who", order, who)
        ax.set_title(f"{question_type} questions")
        ax.set_xlabel("prefix type at inference")
    axes[0].set_ylabel("reference-free accuracy")
    axes[1].legend(loc="lower right", frameon=True)
    fig.tight_layout()
    return fig


def sensitivity_figure(examples: pd.DataFrame, runs: list[RunSpec]):
    """WikiPersona App. L at this scale: MT accuracy (all questions) per prefix type when the prefix is the trained
    one, a new seed's, another user's (shuffled) or absent, for seen and unseen users."""
    import matplotlib.pyplot as plt

    mt_prefix = {r.name: r.prefix for r in runs if r.kind == "mt" and r.prefix != "none"}
    data = examples[examples.system.isin(list(mt_prefix))]
    if data.empty:
        return None
    names = {"seen_prefix": "own prefix", "shuffled_prefix": "shuffled prefix", "no_prefix": "no prefix"}
    cell = data.condition.map(lambda c: names.get(c, "new prefix seed"))
    data = data.assign(prefix=data.system.map(mt_prefix),
                       cell=cell + np.where(data.seen, ", seen", ", unseen"))
    order = [f"{c}, {s}" for c in ("own prefix", "new prefix seed", "shuffled prefix", "no prefix")
             for s in ("seen", "unseen") if f"{c}, {s}" in set(data.cell)]
    prefixes = [p for p in ("tag", "name", "few_shot", "persona", "persona_strong", "gold") if p in set(data.prefix)]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _accuracy_bars(ax, data, "cell", "prefix", order, prefixes)
    ax.set_ylabel("reference-free accuracy")
    ax.legend(title="MT prefix type", loc="lower right", ncols=len(prefixes), frameon=True)
    fig.tight_layout()
    return fig
