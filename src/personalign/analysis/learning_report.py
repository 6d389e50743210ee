"""The learning study's report: each arm's paired difference from the base (reference-free and implicit-reward
accuracy, 95% intervals, Holm within the study) and the conclusion written from them; the figure is
training_figures.curves_figure. Fits nothing: reads the arms' scored examples."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd

from personalign.core.seeding import figure_rng
from personalign.stats.verdicts import ALPHA, holm, paired_difference


def summarize(arms: list, examples: pd.DataFrame, seed: int, n_resamples: int) -> pd.DataFrame:
    """Per arm: its levers, the reference-free accuracy of trained and base with the paired difference (user-clustered
    bootstrap CI, permutation p, MDD), and implicit-reward accuracy with its interval against chance (0.5); p-values
    Holm-adjusted over all the study's tests, and whether each difference is detectable."""

    rows = []
    for arm in arms:
        ex = examples[examples.arm == arm.name]
        ref_free = paired_difference(
            ex.trained_correct,
            ex.base_correct,
            groups=ex.user_id,
            rng=figure_rng(seed, f"learning-study/{arm.name}/reference-free"),
            n_resamples=n_resamples,
        )
        implicit = paired_difference(
            ex.implicit_correct,
            np.full(len(ex), 0.5),
            groups=ex.user_id,
            rng=figure_rng(seed, f"learning-study/{arm.name}/implicit"),
            n_resamples=n_resamples,
        )
        rows.append(
            asdict(arm)
            | {
                "train_pairs": int(ex.groupby("user_id").train_pairs.first().sum())
                if arm.system == "pm"
                else int(ex.train_pairs.iloc[0]),
                "test_pairs": len(ex),
                "users": ex.user_id.nunique(),
                "final_train_loss": ex.final_train_loss.mean(),
                "final_train_reward_accuracy": ex.final_train_reward_accuracy.mean(),
                "base_accuracy": ex.base_correct.mean(),
                "trained_accuracy": ex.trained_correct.mean(),
                "difference": ref_free.estimate,
                "ci_low": ref_free.ci_low,
                "ci_high": ref_free.ci_high,
                "p": ref_free.p,
                "mdd": ref_free.mdd,
                "implicit_accuracy": ex.implicit_correct.mean(),
                "implicit_ci_low": implicit.ci_low + 0.5,
                "implicit_ci_high": implicit.ci_high + 0.5,
                "implicit_p": implicit.p,
                "implicit_mdd": implicit.mdd,
            }
        )
    summary = pd.DataFrame(rows)
    # One family: every arm's two tests. A difference is detectable when its interval excludes 0 and its
    # Holm-adjusted p < 0.05, the rule of the pipeline's verdicts (personalign.stats.verdicts.decide).
    adjusted = holm(np.concatenate([summary.p.to_numpy(float), summary.implicit_p.to_numpy(float)]))
    summary["p_holm"], summary["implicit_p_holm"] = adjusted[: len(summary)], adjusted[len(summary) :]
    summary["detectable"] = ((summary.ci_low > 0) | (summary.ci_high < 0)) & (summary.p_holm < ALPHA)
    summary["implicit_detectable"] = ((summary.implicit_ci_low > 0.5) | (summary.implicit_ci_high < 0.5)) & (
        summary.implicit_p_holm < ALPHA
    )
    return summary


def conclusion(summary: pd.DataFrame, reference: dict, levers: tuple[str, ...]) -> str:
    """What the study found, in sentences built from the summary: per system along the pairs-per-user curve, the
    smallest size at which each accuracy differs detectably from the base (or that none did), then each lever arm
    against the reference arm's configuration."""

    def pts(v: float) -> str:
        return f"{v * 100:+.1f}"

    def mdd(v: float) -> str:
        return (
            "no test pair changed its decision"
            if math.isnan(v)
            else f"smallest detectable difference at the largest size {v * 100:.1f} points"
        )

    lines = []
    curve = summary[summary.apply(lambda r: all(r[k] == reference[k] for k in levers if k != "pairs_per_user"), axis=1)]
    for system, rows in curve.groupby("system", sort=False):
        rows = rows.sort_values("pairs_per_user")
        for column, label, mdd_column in (
            ("detectable", "reference-free accuracy (paired vs the base)", "mdd"),
            ("implicit_detectable", "implicit-reward accuracy (vs chance)", "implicit_mdd"),
        ):
            hit = rows[rows[column]]
            sizes = ", ".join(str(k) for k in rows.pairs_per_user)
            if hit.empty:
                lines.append(
                    f"- `{system}`, {label}: not detectable at any size tried ({sizes} divergent pairs per user; "
                    f"{mdd(rows[mdd_column].iloc[-1])})."
                )
            else:
                first = hit.iloc[0]
                value = (
                    f"{pts(first.difference)} [{pts(first.ci_low)}, {pts(first.ci_high)}] points"
                    if column == "detectable"
                    else f"{first.implicit_accuracy:.2f} [{first.implicit_ci_low:.2f}, {first.implicit_ci_high:.2f}]"
                )
                lines.append(
                    f"- `{system}`, {label}: detectable from {first.pairs_per_user} divergent pairs per user "
                    f"({first.train_pairs} training pairs): {value} (sizes tried: {sizes})."
                )
    others = summary.loc[~summary.index.isin(curve.index)]
    for row in others.itertuples():
        changed = ", ".join(
            f"{k} {getattr(row, k)} (reference {reference[k]})"
            for k in levers
            if k != "pairs_per_user" and getattr(row, k) != reference[k]
        )
        lines.append(
            f"- `{row.name}` ({row.system}, {row.pairs_per_user} pairs per user; {changed}): reference-free "
            f"{pts(row.difference)} [{pts(row.ci_low)}, {pts(row.ci_high)}] points vs the base (Holm p "
            f"{row.p_holm:.3f}, {'detectable' if row.detectable else 'not detectable'}), implicit-reward "
            f"accuracy {row.implicit_accuracy:.2f} [{row.implicit_ci_low:.2f}, {row.implicit_ci_high:.2f}] "
            f"(Holm p {row.implicit_p_holm:.3f}, {'detectable' if row.implicit_detectable else 'not detectable'})."
        )
    return (
        "Detectable: the 95% interval (clustered by user) excludes 0 (for implicit-reward accuracy: 0.5, chance) "
        f"and the Holm-adjusted p over all {2 * len(summary)} tests of the study is below 0.05.\n\n" + "\n".join(lines)
    )
