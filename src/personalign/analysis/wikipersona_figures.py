"""Stage 6's WikiPersona figures from the results files of stages 4 and 5 (never a model): accuracy per prefix type
for the prompting baseline, personal models, multitask models, equity across users, prefix sensitivity and
demographic groups, each with 95% intervals from a user-level (cluster) bootstrap — over test pairs where a cell has
fewer than 5 users — unless said otherwise, each figure with a generator of its own (`seeding.figure_rng`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.core.config import MT_PREFIX_TYPES, PREFIX_TYPES
from personalign.core.figures import legend
from personalign.core.seeding import figure_rng
from personalign.stats.statistics import (
    bootstrap_ci,
    ols_band,
    one_way_anova,
    pearson_with_ci,
)

QUESTION_TYPES = ("personal", "divergent")


MIN_USERS_FOR_CLUSTERS = 5  # below this many users a cell's interval resamples its test pairs instead


def _ci(cell: pd.DataFrame, rng: np.random.Generator, n_resamples: int) -> tuple[float, float, float]:
    """Mean correctness with a 95% percentile interval: resampling users (rows of one user move together) when the
    cell holds at least MIN_USERS_FOR_CLUSTERS users, its test pairs otherwise (one user's cell would collapse)."""
    clustered = cell.user_id.nunique() >= MIN_USERS_FOR_CLUSTERS
    return bootstrap_ci(
        cell.correct.to_numpy(float),
        np.mean,
        rng=rng,
        n_resamples=n_resamples,
        groups=cell.user_id.to_numpy() if clustered else None,
    )


def _bars(ax, table: pd.DataFrame, x: str, hue: str, order: list[str], hue_order: list[str]) -> None:
    """Grouped bars of `mean` with [low, high] error bars; `table` has one row per (x, hue)."""
    width = 0.8 / max(len(hue_order), 1)
    for j, level in enumerate(hue_order):
        part = table[table[hue] == level].set_index(x).reindex(order)
        positions = np.arange(len(order)) + (j - (len(hue_order) - 1) / 2) * width
        keep = part["mean"].notna().to_numpy()
        ax.bar(
            positions[keep],
            part["mean"][keep],
            width,
            color=f"C{j}",
            label=level,
            yerr=[(part["mean"] - part["low"])[keep], (part["high"] - part["mean"])[keep]],
            capsize=2,
        )
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
    ax.set_ylim(0, 1)


def _nothing(message: str):
    """A figure that says why it is empty (the runs it needs are not in train.runs)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(5, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def cell_means(
    examples: pd.DataFrame, keys: list[str], rng: np.random.Generator, n_resamples: int = 2000
) -> pd.DataFrame:
    """Accuracy per group of `keys` with n, users and a bootstrap 95% interval (see `_ci`)."""
    rows = []
    for key, cell in examples.groupby(keys, sort=True):
        mean, low, high = _ci(cell, rng, n_resamples)
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                "n": len(cell),
                "n_users": cell.user_id.nunique(),
                "mean": mean,
                "low": low,
                "high": high,
            }
        )
    return pd.DataFrame(rows)


def prompting_baseline(examples: pd.DataFrame, seed: int, n_resamples: int = 2000) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 3 analog: the base model's reference-free accuracy per prefix type and question type."""
    import matplotlib.pyplot as plt

    rng = figure_rng(seed, "fig3_prompting")
    base = examples[(examples.system == "base") & examples.variant.isin([f"{p}@0" for p in PREFIX_TYPES] + ["none"])]
    base = base.assign(prefix=base.variant.str.split("@").str[0])
    table = cell_means(base, ["prefix", "question_type"], rng, n_resamples)
    order = [p for p in PREFIX_TYPES if p in set(table.prefix)]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _bars(ax, table.rename(columns={"question_type": "questions"}), "prefix", "questions", order, list(QUESTION_TYPES))
    ax.set_xlabel("prefix type (prompting, no training)")
    ax.set_ylabel("reference-free accuracy")
    legend(ax, title="questions", loc="lower right", frameon=True)
    fig.tight_layout()
    return table, fig


def personal_models(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 4 analog: each full-data personal model on its own user's test pairs vs other users'."""
    import matplotlib.pyplot as plt

    rng = figure_rng(seed, "fig4_personal_models")
    names = [
        n for n, r in runs.items() if r["kind"] == "pm" and r.get("fraction", 1.0) == 1.0 and r.get("seed", 0) == 0
    ]
    pm = examples[examples.system.isin(names)]
    pm = pm.assign(users=np.where(pm.seen, "trained user", "other users"))
    if pm.empty:
        return pd.DataFrame(), _nothing("no full-data personal model (kind pm, fraction 1, seed 0) in train.runs")
    table = cell_means(pm, ["system", "users"], rng, n_resamples)
    fig, ax = plt.subplots(figsize=(max(3.5, 1.6 * len(names) + 1), 3.2))
    _bars(ax, table, "system", "users", names, ["trained user", "other users"])
    ax.set_ylabel("reference-free accuracy")
    legend(ax, loc="lower right", frameon=True)
    fig.tight_layout()
    return table, fig


def data_efficiency(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 13 analog: a personal model's accuracy on its own user vs the fraction of that user's training
    pairs, one point per seed, the mean over seeds and a 95% band (bootstrap over the user's test pairs)."""
    import matplotlib.pyplot as plt

    rng = figure_rng(seed, "fig13_data_efficiency")
    rows = []
    for name, run in runs.items():
        if run["kind"] != "pm":
            continue
        own = examples[(examples.system == name) & examples.seen]
        if own.empty:
            continue
        mean, low, high = bootstrap_ci(own.correct.to_numpy(float), np.mean, rng=rng, n_resamples=n_resamples)
        rows.append(
            {
                "user": run["user"],
                "fraction": float(run.get("fraction", 1.0)),
                "seed": int(run.get("seed", 0)),
                "run": name,
                "n": len(own),
                "accuracy": mean,
                "low": low,
                "high": high,
            }
        )
    if not rows:
        return pd.DataFrame(), _nothing("no personal model (kind pm) in train.runs")
    table = pd.DataFrame(rows).sort_values(["user", "fraction", "seed"], ignore_index=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k, (user, part) in enumerate(table.groupby("user", sort=True)):
        if part.fraction.nunique() < 2:
            continue
        mean = part.groupby("fraction").agg(accuracy=("accuracy", "mean"), low=("low", "mean"), high=("high", "mean"))
        ax.plot(mean.index, mean.accuracy, color=f"C{k}", marker="o", label=f"{user} (mean over seeds)")
        ax.fill_between(mean.index, mean.low, mean.high, color=f"C{k}", alpha=0.2)
        ax.scatter(part.fraction, part.accuracy, color=f"C{k}", s=12, alpha=0.6)
    ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("fraction of the user's training pairs")
    ax.set_ylabel("reference-free accuracy (own user)")
    ax.set_ylim(0, 1)
    legend(ax, loc="lower right", frameon=True)
    fig.tight_layout()
    return table, fig


def multitask_models(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 5 analog: MT accuracy with its trained prefix per prefix type, seen vs unseen users, per
    question type, with the base model without a prefix as a line."""
    import matplotlib.pyplot as plt

    rng = figure_rng(seed, "fig5_multitask")
    prefix_of = {n: r.get("prefix", "none") for n, r in runs.items() if r["kind"] == "mt"}
    mt = examples[examples.system.isin(list(prefix_of)) & examples.condition.isin(["seen_prefix", "no_prefix"])]
    mt = mt[(mt.condition == "seen_prefix") | (mt.system.map(prefix_of) == "none")]
    mt = mt.assign(prefix=mt.system.map(prefix_of), users=np.where(mt.seen, "seen users", "unseen users"))
    if mt.empty:
        return pd.DataFrame(), _nothing("no multitask model (kind mt) in train.runs")
    table = cell_means(mt, ["prefix", "question_type", "users"], rng, n_resamples)
    base = examples[(examples.system == "base") & (examples.variant == "none")]
    base_table = cell_means(base, ["question_type"], rng, n_resamples)
    order = [p for p in MT_PREFIX_TYPES if p in set(table.prefix)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, question_type in zip(axes, QUESTION_TYPES):
        _bars(ax, table[table.question_type == question_type], "prefix", "users", order, ["seen users", "unseen users"])
        line = base_table[base_table.question_type == question_type]["mean"]
        if len(line):
            ax.axhline(float(line.iloc[0]), color="C3", lw=1.2, label="base, no prefix")
        ax.set_title(f"{question_type} questions")
        ax.set_xlabel("MT prefix type")
    axes[0].set_ylabel("reference-free accuracy")
    legend(axes[1], loc="lower right", frameon=True)
    fig.tight_layout()
    return pd.concat([table, base_table.assign(prefix="base none", users="all")], ignore_index=True), fig


def equity(by_user: pd.DataFrame, runs: dict[str, dict]) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 6 analog: per user, MT accuracy as an unseen user (the MT run whose held-out fold holds the
    user, with its trained prefix) vs the base model's accuracy without a prefix; one panel per prefix type, y = x,
    an OLS fit with its 95% band, Pearson r and p."""
    import matplotlib.pyplot as plt

    prefix_of = {n: r.get("prefix", "none") for n, r in runs.items() if r["kind"] == "mt"}
    base = by_user[(by_user.system == "base") & (by_user.variant == "none")].set_index("user_id").accuracy
    unseen = by_user[
        by_user.system.isin(list(prefix_of))
        & ~by_user.seen
        & ((by_user.condition == "seen_prefix") | (by_user.system.map(prefix_of) == "none"))
    ]
    points = unseen.assign(prefix=unseen.system.map(prefix_of), base=unseen.user_id.map(base))
    prefixes = [p for p in MT_PREFIX_TYPES if p in set(points.prefix)]
    if not prefixes:
        return pd.DataFrame(), _nothing("no multitask model with a held-out fold in train.runs")
    stats, grid = [], np.linspace(0, 1, 21)
    fig, axes = plt.subplots(
        1, max(len(prefixes), 1), figsize=(2.6 * max(len(prefixes), 1) + 0.5, 2.9), squeeze=False, sharey=True
    )
    for ax, prefix in zip(axes[0], prefixes):
        part = points[points.prefix == prefix]
        result = pearson_with_ci(part.base.to_numpy(float), part.accuracy.to_numpy(float))
        stats.append({"prefix": prefix, **result})
        ax.scatter(part.base, part.accuracy, s=14, color="C0")
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
        if part.base.nunique() > 2:
            band = ols_band(part.base.to_numpy(float), part.accuracy.to_numpy(float), grid)
            ax.plot(band.x, band.fit, color="C1")
            ax.fill_between(band.x, band.low, band.high, color="C1", alpha=0.2)
        ax.set_title(f"{prefix}\nr = {result['r']:.2f}, p = {result['p']:.2f} (n = {result['n']})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("base, no prefix")
    axes[0][0].set_ylabel("MT, unseen user")
    fig.tight_layout()
    return pd.DataFrame(stats), fig


def sensitivity(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 15 analog: MT accuracy per prefix type with the trained prefix, a new prefix seed, another
    user's prefix and none, for seen and unseen users."""
    import matplotlib.pyplot as plt

    rng = figure_rng(seed, "fig15_sensitivity")
    prefix_of = {n: r.get("prefix", "none") for n, r in runs.items() if r["kind"] == "mt" and r.get("prefix") != "none"}
    data = examples[examples.system.isin(list(prefix_of))]
    names = {"seen_prefix": "own prefix", "shuffled_prefix": "shuffled", "no_prefix": "no prefix"}
    data = data.assign(
        prefix=data.system.map(prefix_of),
        cell=data.condition.map(lambda c: names.get(c, "new seed")) + np.where(data.seen, ", seen", ", unseen"),
    )
    if data.empty:
        return pd.DataFrame(), _nothing("no multitask model with a prefix in train.runs")
    table = cell_means(data, ["prefix", "cell"], rng, n_resamples)
    order = [
        f"{c}, {s}"
        for c in ("own prefix", "new seed", "shuffled", "no prefix")
        for s in ("seen", "unseen")
        if f"{c}, {s}" in set(table.cell)
    ]
    prefixes = [p for p in MT_PREFIX_TYPES if p in set(table.prefix)]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _bars(ax, table, "cell", "prefix", order, prefixes)
    ax.set_ylabel("reference-free accuracy")
    legend(ax, title="MT prefix type", loc="lower right", ncols=max(len(prefixes), 1), frameon=True)
    fig.tight_layout()
    return table, fig


def age_bracket(age) -> str:
    """Age in three brackets (the personas' ages span ~20-80)."""
    age = int(age)
    return "under 40" if age < 40 else ("40-59" if age < 60 else "60 and over")


def demographics(
    by_user: pd.DataFrame, personas: pd.DataFrame, system: str, condition: str, attributes: list[str]
) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 16 analog: per-user accuracy of one system × condition grouped by demographic attribute,
    with a one-way ANOVA across each attribute's groups (users are the units)."""
    import matplotlib.pyplot as plt

    cell = by_user[(by_user.system == system) & (by_user.condition == condition)]
    demo = pd.DataFrame(list(personas.demographics), index=personas.user_id)
    attributes = [a for a in attributes if a in demo]
    if not attributes or cell.empty:
        return pd.DataFrame(), _nothing("no configured demographic attribute in the persona table (or no such cell)")
    if "age" in demo:
        demo["age"] = demo.age.map(age_bracket)
    tests, rows = [], []
    fig, axes = plt.subplots(1, len(attributes), figsize=(2.8 * len(attributes) + 0.5, 3.2), squeeze=False, sharey=True)
    for ax, attribute in zip(axes[0], attributes):
        groups = cell.user_id.map(demo[attribute]) if attribute in demo else pd.Series(dtype=str)
        part = cell.assign(group=groups.to_numpy())
        result = one_way_anova(part.accuracy.to_numpy(float), part.group.to_numpy())
        tests.append({"attribute": attribute, **result})
        means = part.groupby("group", sort=True).accuracy.agg(["mean", "size"])
        rows += [
            {"attribute": attribute, "group": g, "users": int(r["size"]), "mean": r["mean"]}
            for g, r in means.iterrows()
        ]
        ax.bar(range(len(means)), means["mean"], color="C0")
        ax.scatter(part.group.map({g: i for i, g in enumerate(means.index)}), part.accuracy, color="k", s=8, zorder=3)
        ax.set_xticks(range(len(means)), means.index, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{attribute}\nANOVA F = {result['f']:.2f}, p = {result['p']:.2f}", fontsize=8)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel(f"{system} ({condition}) accuracy per user")
    fig.tight_layout()
    return pd.DataFrame(tests).merge(pd.DataFrame(rows), on="attribute", how="right"), fig
