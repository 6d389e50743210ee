"""The reward-model study's tables and figures (the paper's Figures 1-5): labels, interval tables, accuracy,
per-user, sample-efficiency, new-user and personalization-tax figures. Reads result tables; fits nothing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from personalign.core.figures import apply_style, legend, users_column
from personalign.reward_models.evaluation import MODEL_LABELS, NEW_USER_LABELS, NEW_USER_METHODS, UPPER_BOUND
from personalign.reward_models.rewardbench import REWARDBENCH_SECTIONS


def model_label(name: str, new_users: bool = False) -> str:
    """The display name of a model (of a new-user method with `new_users`)."""
    first, second = (NEW_USER_LABELS, MODEL_LABELS) if new_users else (MODEL_LABELS, NEW_USER_LABELS)
    return first.get(name, second.get(name, name))


def model_order(names, new_users: bool = False) -> list[str]:
    """Models in the paper's order (new-user methods in NEW_USER_METHODS order with `new_users`)."""
    rank: dict[str, int] = {}
    for i, n in enumerate(
        (list(NEW_USER_METHODS) + list(MODEL_LABELS)) if new_users else (list(MODEL_LABELS) + list(NEW_USER_METHODS))
    ):
        rank.setdefault(n, i)
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def interval_table(frame: pd.DataFrame, rows: str, columns: str, new_users: bool = False) -> pd.DataFrame:
    """The appendix-table layout of an accuracy frame (accuracy, low, high): one row per `rows` value (models shown
    by name), one column per `columns` value, cells "0.812 [0.801, 0.827]"."""
    cells = frame.assign(
        cell=[f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(frame.accuracy, frame.low, frame.high)]
    )
    table = cells.pivot(index=rows, columns=columns, values="cell")
    if rows == "model":
        table = table.loc[model_order(table.index, new_users)]
        table.index = [model_label(n, new_users) for n in table.index]
    table.index.name, table.columns.name = rows, None
    return table.fillna("—")


def _yerr(frame: pd.DataFrame) -> np.ndarray:
    return np.vstack([frame.accuracy - frame.low, frame.high - frame.accuracy]).clip(min=0)


def accuracy_figure(summary: pd.DataFrame):
    """Figure 1: accuracy per model (bars, one colour per dataset when a dataset column exists) with the
    user-level 95% intervals; the 0.5 chance line dashed. Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    models = model_order(summary.model)
    datasets = sorted(summary.dataset.unique()) if "dataset" in summary.columns else [None]
    width = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(models) * max(1, len(datasets) / 2) + 2), 3.2))
    for j, dataset in enumerate(datasets):
        part = summary if dataset is None else summary[summary.dataset == dataset]
        part = part.set_index("model").reindex([m for m in models if m in set(part.model)]).reset_index()
        x = np.array([models.index(m) for m in part.model]) + (j - (len(datasets) - 1) / 2) * width
        ax.bar(
            x,
            part.accuracy,
            width * 0.95,
            yerr=_yerr(part),
            capsize=2,
            color=f"C{j}",
            label=dataset if dataset is not None else "_nolegend_",
        )
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(models)), [model_label(m) for m in models], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI, users resampled)")
    ax.set_title("Reward-model accuracy per method")
    if datasets != [None]:
        legend(ax, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def per_user_figure(per_user: pd.DataFrame):
    """Figure 5: each user's accuracy per model (one panel per dataset when that column exists), minority users as
    red triangles, the others as dots; the 0.5 line dashed. Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    datasets = sorted(per_user.dataset.unique()) if "dataset" in per_user.columns else [None]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.8 * len(datasets) + 1.2, 3.2), squeeze=False)
    labelled: set[bool] = set()
    for ax, dataset in zip(axes[0], datasets):
        part = per_user if dataset is None else per_user[per_user.dataset == dataset]
        models = model_order(part.model)
        for i, model in enumerate(models):
            mine = part[part.model == model].sort_values("user_id")
            styles = {False: ("user", "C0", "o"), True: ("minority user", "C3", "v")}
            users_column(ax, i, mine.accuracy.to_numpy(), mine.minority.to_numpy(), styles, 20, labelled)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(models)), [model_label(m) for m in models], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy per user")
        ax.set_title("Per-user accuracy" + (f": {dataset}" if dataset is not None else ""))
    legend(axes[0][-1], frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def sample_efficiency_figure(curve: pd.DataFrame):
    """Figure 2: test accuracy against training pairs per user (log axis), one line per model with its 95% band
    (one panel per dataset when that column exists). Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    datasets = sorted(curve.dataset.unique()) if "dataset" in curve.columns else [None]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets) + 1.6, 3.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = curve if dataset is None else curve[curve.dataset == dataset]
        for i, model in enumerate(model_order(part.model)):
            line = part[part.model == model].sort_values("n_per_user")
            ax.plot(line.n_per_user, line.accuracy, marker="o", ms=3, color=f"C{i}", label=model_label(model))
            ax.fill_between(line.n_per_user, line.low, line.high, color=f"C{i}", alpha=0.15, lw=0)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if part.n_per_user.nunique() > 1:
            ax.set_xscale("log")
        ax.set_xlabel("training pairs per user")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.set_title("Sample efficiency" + (f": {dataset}" if dataset is not None else ""))
    legend(axes[0][-1], frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def new_user_figure(summary: pd.DataFrame):
    """Figure 3: new users' accuracy against their labelled pairs n (accuracy_summary of new_user_adaptation's
    rows), one line per method with 95% error bars; the upper bound (Individual RM on all of the user's data)
    dashed. Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    fig, ax = plt.subplots(figsize=(5.8, 3.2))
    sizes = sorted(summary.n.unique())
    for i, model in enumerate(model_order(summary.model, new_users=True)):
        line = summary[summary.model == model].sort_values("n")
        style = {"ls": "--", "color": "black"} if model == UPPER_BOUND else {"color": f"C{i}", "marker": "o", "ms": 3}
        ax.errorbar(line.n, line.accuracy, yerr=_yerr(line), capsize=2, label=model_label(model, True), **style)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    if len(sizes) > 1:
        ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labelled pairs of the new user (n)")
    ax.set_ylabel("accuracy on the new users")
    ax.set_ylim(0, 1)
    ax.set_title("Adaptation to new users")
    legend(ax, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def tax_figure(tax: pd.DataFrame, before: str = "vanilla", after: str = "individual"):
    """Figure 4: RewardBench section accuracy before (`before`, default the Vanilla RM) and after personalization
    (`after`, default the Individual RM, averaged over users), the change written above each pair. Returns the
    Figure; ValueError when either model has no section rows."""
    import matplotlib.pyplot as plt

    sections = tax[tax.kind == "section"]
    parts = {
        m: sections[sections.model == m].set_index("name").reindex(list(REWARDBENCH_SECTIONS)).accuracy
        for m in (before, after)
    }
    for m, values in parts.items():
        if values.isna().all():
            raise ValueError(f"tax_figure: no RewardBench section accuracy for model {m!r}")
    apply_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    x = np.arange(len(REWARDBENCH_SECTIONS))
    ax.bar(x - 0.2, parts[before], 0.4, color="C7", label=f"before: {model_label(before)}")
    ax.bar(x + 0.2, parts[after], 0.4, color="C0", label=f"after: {model_label(after)}")
    for i, (a, b) in enumerate(zip(parts[before], parts[after])):
        if not (math.isnan(a) or math.isnan(b)):
            ax.text(
                i,
                max(a, b) + 0.02,
                f"{b - a:+.2f}",
                ha="center",
                va="bottom",
                fontsize=8,
                color="C3" if b < a else "C2",
            )
        elif math.isnan(a) and math.isnan(b):
            ax.text(i, 0.02, "missing", ha="center", va="bottom", fontsize=8, color="grey")
    ax.set_xticks(x, list(REWARDBENCH_SECTIONS))
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("RewardBench accuracy")
    ax.set_title("Personalization tax")
    legend(ax, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def stage_metrics(characterised, summary: pd.DataFrame | None) -> dict:
    """Stage 7's summary for results/reward_models.json: each dataset's divergence rate, users, minority users and
    room for personalization, and each reward model's accuracy per dataset."""
    metrics = {
        "characterisation": {
            r.name: {
                "divergence_rate": r.divergence_rate,
                "n_users": r.n_users,
                "n_minority_users": r.n_minority_users,
                "room": r.room,
            }
            for r in characterised
        }
    }
    if summary is not None:
        metrics["accuracy"] = {f"{r.dataset}/{r.model}": round(float(r.accuracy), 4) for r in summary.itertuples()}
    return metrics
