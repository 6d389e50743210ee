"""Stage 4's tables and sentences from the scored examples: accuracy per cell with Wilson intervals, the metrics
tree, per-user accuracy, the length diagnostic and the sentences the notebook shows. Reads scores; runs no model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.core.persona_sources import ORACLE_SUFFIX
from personalign.stats.preferences import prefers_chosen
from personalign.stats.statistics import wilson_interval


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
