"""Training curves: one run's loss, reward accuracy and margin per step (stage 3), and the learning study's
held-out accuracy per arm."""

from __future__ import annotations

import pandas as pd

from personalign.core.figures import apply_style, legend


def curve_figure(curve: pd.DataFrame, title: str):
    """Loss and reward accuracy (DPO) or token accuracy (SFT) per step: each step faint, a 5-step running mean bold,
    one colour per phase."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    apply_style()
    accuracy = (
        "reward_accuracy" if "reward_accuracy" in curve and curve.reward_accuracy.notna().any() else "token_accuracy"
    )
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8))
    colours = dict(zip(curve.phase.unique(), sns.color_palette()))
    for ax, column in ((axes[0], "loss"), (axes[1], accuracy)):
        for phase, rows in curve.groupby("phase", sort=False):
            values = rows[column].astype(float)
            ax.plot(rows.step, values, color=colours[phase], alpha=0.3, linewidth=0.8)
            ax.plot(
                rows.step,
                values.rolling(5, min_periods=1).mean(),
                color=colours[phase],
                linewidth=1.8,
                label=f"{phase} (5-step mean)",
            )
        ax.set(xlabel="step", ylabel=column.replace("_", " "))
    axes[1].set_ylim(-0.05, 1.05)
    legend(axes[0], loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_figure(summary: pd.DataFrame, reference: dict, levers: tuple[str, ...], systems: dict):
    """Two panels against training pairs per user (reference levers): the paired reference-free difference from the
    base and the implicit-reward accuracy, each with its 95% interval, one line per system; lever arms as open
    markers at their size."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    on_curve = summary.apply(lambda r: all(r[k] == reference[k] for k in levers if k != "pairs_per_user"), axis=1)
    colours = dict(zip(systems, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    panels = (
        ("difference", "ci_low", "ci_high", 0.0, "reference-free accuracy − base (points)", 100),
        ("implicit_accuracy", "implicit_ci_low", "implicit_ci_high", 0.5, "implicit-reward accuracy", 1),
    )
    for ax, (y, low, high, null, label, scale) in zip(axes, panels):
        for system, rows in summary[on_curve].groupby("system", sort=False):
            rows = rows.sort_values("pairs_per_user")
            shift = 0.15 * (list(systems).index(system) - 2)  # systems side by side at a shared size
            ax.errorbar(
                rows.pairs_per_user + shift,
                rows[y] * scale,
                yerr=[(rows[y] - rows[low]) * scale, (rows[high] - rows[y]) * scale],
                marker="o",
                capsize=3,
                label=system,
                color=colours[system],
            )
        for row in summary[~on_curve].itertuples():
            ax.errorbar(
                row.pairs_per_user + 0.6,
                getattr(row, y) * scale,
                yerr=[
                    [(getattr(row, y) - getattr(row, low)) * scale],
                    [(getattr(row, high) - getattr(row, y)) * scale],
                ],
                marker="s",
                mfc="white",
                capsize=2,
                color=colours[row.system],
                alpha=0.8,
            )
            ax.annotate(row.name, (row.pairs_per_user + 0.8, getattr(row, y) * scale), fontsize=6)
        ax.axhline(null * scale, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("divergent training pairs per user")
        ax.set_ylabel(label)
    legend(axes[0], fontsize=8)
    fig.suptitle("Learning study: held-out divergent test pairs, 95% intervals clustered by user", fontsize=10)
    fig.tight_layout()
    return fig
