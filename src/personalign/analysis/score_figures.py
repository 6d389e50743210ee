"""Stage 4's figures: accuracy per prefix type (WikiPersona Fig. 3/4), prefix sensitivity (App. L) and the
alignment tax on out-of-domain sets (§4.3), from the scored tables; no model is loaded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.core.config import MT_PREFIX_TYPES, RunSpec
from personalign.core.figures import legend
from personalign.stats.statistics import wilson_interval


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
            ax.bar(
                i + (j - (len(hue_order) - 1) / 2) * width,
                mean,
                width,
                color=f"C{j}",
                yerr=[[mean - low], [high - mean]],
                capsize=2,
                label=level if i == 0 or ax.get_legend() is None else None,
            )
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
    own = examples[
        examples.system.isin(list(mt_prefix)) & examples.condition.isin(["seen_prefix"])
        | (examples.system.map(mt_prefix) == "none")
    ]
    own = own.assign(prefix=own.system.map(mt_prefix), who=np.where(own.seen, "MT, seen users", "MT, unseen users"))
    data = pd.concat([base, own], ignore_index=True)
    order = [p for p in MT_PREFIX_TYPES if p in set(data.prefix)]
    who = [w for w in ("base (prompting)", "MT, seen users", "MT, unseen users") if w in set(data.who)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, question_type in zip(axes, ("personal", "divergent")):
        _accuracy_bars(ax, data[data.question_type == question_type], "prefix", "who", order, who)
        ax.set_title(f"{question_type} questions")
        ax.set_xlabel("prefix type at inference")
    axes[0].set_ylabel("reference-free accuracy")
    legend(axes[1], loc="lower right", frameon=True)
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
    data = data.assign(prefix=data.system.map(mt_prefix), cell=cell + np.where(data.seen, ", seen", ", unseen"))
    order = [
        f"{c}, {s}"
        for c in ("own prefix", "new prefix seed", "shuffled prefix", "no prefix")
        for s in ("seen", "unseen")
        if f"{c}, {s}" in set(data.cell)
    ]
    prefixes = [p for p in ("tag", "name", "few_shot", "persona", "persona_strong", "gold") if p in set(data.prefix)]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _accuracy_bars(ax, data, "cell", "prefix", order, prefixes)
    ax.set_ylabel("reference-free accuracy")
    legend(ax, title="MT prefix type", loc="lower right", ncols=len(prefixes), frameon=True)
    fig.tight_layout()
    return fig


def tax_figure(table: pd.DataFrame):
    """Accuracy per out-of-domain set: the base model and each run, without and with its prefix (Fig. 7 style)."""
    import matplotlib.pyplot as plt

    datasets = sorted(set(table.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets) + 1, 3.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = table[table.dataset == dataset].reset_index(drop=True)
        labels = [f"{s} ({c})" if c != "no_prefix" else s for s, c in zip(part.system, part.condition)]
        colors = [
            "0.5" if s == "base" else ("C0" if c == "no_prefix" else "C1") for s, c in zip(part.system, part.condition)
        ]
        ax.barh(
            range(len(part)),
            part.accuracy,
            color=colors,
            xerr=[part.accuracy - part.ci_low, part.ci_high - part.accuracy],
            capsize=2,
        )
        ax.set_yticks(range(len(part)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(dataset)
        ax.set_xlabel("accuracy")
    fig.tight_layout()
    return fig
