"""Stage 6's figures from the results files of stages 4 and 5 (never a model): accuracy per prefix type for the
prompting baseline, personal models, multitask models, equity across users, prefix sensitivity and demographic
groups, each with 95% intervals from a user-level (cluster) bootstrap — over test pairs where a cell has fewer than 5
users — unless said otherwise, each figure with a generator of its own (`seeding.figure_rng`); the headline claims
of each figure as paired tests (`verdicts`), collected with the other stages' into one verdict table; and
figures/INDEX.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.config import MT_PREFIX_TYPES, POSITIVE_CONTROL_KINDS, PREFIX_TYPES
from personalign.figures import legend
from personalign.persona_sources import PAPER_NAME
from personalign.seeding import figure_rng
from personalign.statistics import (
    bootstrap_ci,
    ols_band,
    one_way_anova,
    pearson_with_ci,
    wilson_intervals_for_shares,
)
from personalign.verdicts import COLUMNS, Claim, formatted_verdicts, paired_difference, verdict_table
from personalign.win_rates import outcome_agreement

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


WIKIPERSONA = "WikiPersona"
WHOSE_BOAT = "Whose Boat"
PIPELINE = "this pipeline"


def paired_claim(
    family: str,
    claim: str,
    comparison: str,
    direction: int,
    a: pd.DataFrame,
    b: pd.DataFrame,
    seed: int,
    n_resamples: int,
    on: tuple[str, ...] = ("id",),
    paper: str = WIKIPERSONA,
) -> Claim:
    """One claim tested on the items `a` and `b` share (rows matched on `on`; columns `score` and `user_id`):
    mean(a - b) by `verdicts.paired_difference`, clustered by user, with a generator of its own so that no other
    claim moves it."""
    keys = list(on)
    for side, frame in (("a", a), ("b", b)):
        duplicated = frame.duplicated(keys)
        if duplicated.any():
            raise ValueError(f"{comparison}: side {side} holds item {frame[duplicated][keys].iloc[0].tolist()} twice")
    pairs = a[keys + ["user_id", "score"]].merge(b[keys + ["score"]], on=keys, suffixes=("_a", "_b"))
    if pairs.empty:
        return Claim(paper, family, claim, comparison, direction, None, missing="no item was scored for both sides")
    result = paired_difference(
        pairs.score_a.to_numpy(float),
        pairs.score_b.to_numpy(float),
        rng=figure_rng(seed, f"{family}: {comparison}"),
        groups=pairs.user_id.to_numpy(),
        n_resamples=n_resamples,
    )
    return Claim(paper, family, claim, comparison, direction, result)


def _cell(examples: pd.DataFrame, mask) -> pd.DataFrame:
    """Rows of `examples` under `mask` with `correct` as the paired `score`."""
    return examples[mask].assign(score=lambda t: t.correct.astype(float))


def _base(examples: pd.DataFrame, variant: str) -> pd.DataFrame:
    return _cell(examples, (examples.system == "base") & (examples.variant == variant))


def _mt_prefixes(runs: dict[str, dict]) -> dict[str, str]:
    return {name: run.get("prefix", "none") for name, run in runs.items() if run["kind"] == "mt"}


def _absent(family: str, claim: str, why: str) -> list[Claim]:
    return [Claim(WIKIPERSONA, family, claim, "—", 1, None, missing=why)]


def prompting_claims(examples: pd.DataFrame, seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 3, on every test pair, base model only: the gold persona prefix beats every other prompt (+1), and each
    other prefix changes accuracy little against no prefix (0)."""
    family = "WikiPersona Fig. 3 (prompting)"
    variants = {p: ("none" if p == "none" else f"{p}@0") for p in PREFIX_TYPES}
    present = [p for p, v in variants.items() if (examples[examples.system == "base"].variant == v).any()]
    if "none" not in present:
        return _absent(family, "prompting changes accuracy minimally", "the base model was not scored without a prefix")
    claims = []
    if "gold" in present:
        claims += [
            paired_claim(
                family,
                "the gold persona is the best prompt",
                f"base + gold vs base + {p}",
                1,
                _base(examples, variants["gold"]),
                _base(examples, variants[p]),
                seed,
                n_resamples,
            )
            for p in present
            if p != "gold"
        ]
    claims += [
        paired_claim(
            family,
            "prompting changes accuracy minimally",
            f"base + {p} vs base, no prefix",
            0,
            _base(examples, variants[p]),
            _base(examples, "none"),
            seed,
            n_resamples,
        )
        for p in present
        if p not in ("none", "gold")
    ]
    return claims


def _full_data_pms(runs: dict[str, dict]) -> dict[str, str]:
    return {
        n: r["user"]
        for n, r in runs.items()
        if r["kind"] == "pm" and r.get("fraction", 1.0) == 1.0 and r.get("seed", 0) == 0
    }


def personal_claims(examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 4. The paper's own-user vs other-users contrast sets different test pairs side by side, so it is not a
    paired comparison; what is paired is two systems on the same pairs, the user's own test pairs: the personal
    model vs the base model without a prefix, and vs every other user's personal model."""
    family = "WikiPersona Fig. 4 (personal models)"
    pms = _full_data_pms(runs)
    if not pms:
        return _absent(family, "a personal model fits its own user", "no full-data personal model in train.runs")
    claims = []
    for name, user in pms.items():
        own = examples.user_id == user
        mine = _cell(examples, own & (examples.system == name))
        claims.append(
            paired_claim(
                family,
                "a personal model beats prompting on its own user",
                f"{name} vs base, no prefix, on {user}'s test pairs",
                1,
                mine,
                _base(examples[own], "none"),
                seed,
                n_resamples,
            )
        )
        claims += [
            paired_claim(
                family,
                "a personal model fits its own user better than another user's model",
                f"{name} vs {other} on {user}'s test pairs",
                1,
                mine,
                _cell(examples, own & (examples.system == other)),
                seed,
                n_resamples,
            )
            for other in pms
            if other != name
        ]
    return claims


def data_efficiency_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """Fig. 13: per user, the personal models at the largest vs the smallest fraction of the user's training pairs
    (per test pair, the mean correctness over seeds) on the user's own test pairs."""
    family = "WikiPersona Fig. 13 (data efficiency)"
    pms = pd.DataFrame(
        [
            {"run": n, "user": r["user"], "fraction": float(r.get("fraction", 1.0))}
            for n, r in runs.items()
            if r["kind"] == "pm"
        ],
        columns=["run", "user", "fraction"],
    )
    curves = pms.groupby("user").filter(lambda part: part.fraction.nunique() > 1)
    if curves.empty:
        return _absent(family, "more training data, higher accuracy", "no user has personal models at two fractions")
    claims = []
    for user, part in curves.groupby("user", sort=True):
        ends = []
        for fraction in (part.fraction.max(), part.fraction.min()):
            names = list(part[part.fraction == fraction].run)
            own = _cell(examples, examples.system.isin(names) & (examples.user_id == user))
            ends.append((fraction, len(names), own.groupby(["id", "user_id"], as_index=False).score.mean()))
        (high, n_high, a), (low, n_low, b) = ends
        claims.append(
            paired_claim(
                family,
                "more training data, higher accuracy",
                f"{user}: PM on {high:.0%} vs {low:.0%} of the user's pairs (mean of {n_high} vs {n_low} seeds)",
                1,
                a,
                b,
                seed,
                n_resamples,
            )
        )
    return claims


def multitask_claims(examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 5: per prefix type, MT with its trained prefix on the users its fold held out vs the base model without a
    prefix, on the same test pairs."""
    family = "WikiPersona Fig. 5 (multitask, unseen users)"
    prefix_of = {n: p for n, p in _mt_prefixes(runs).items() if p != "none"}
    if not prefix_of:
        return _absent(family, "MT with a prefix generalises to unseen users", "no multitask run with a prefix")
    base = _base(examples, "none")
    return [
        paired_claim(
            family,
            "MT with a prefix beats the base model on unseen users",
            f"MT + {prefix} (unseen users) vs base, no prefix",
            1,
            _cell(
                examples,
                examples.system.isin([n for n, p in prefix_of.items() if p == prefix])
                & (examples.condition == "seen_prefix")
                & ~examples.seen,
            ),
            base,
            seed,
            n_resamples,
        )
        for prefix in [p for p in MT_PREFIX_TYPES if p in set(prefix_of.values())]
    ]


QUALITY_PREFIXES = ("few_shot", "persona", "persona_strong", "gold")  # the paper's "quality inferred preference"


def _mt_with_vs_without(
    examples: pd.DataFrame, runs: dict[str, dict], prefix: str, rows: pd.Series, seen: bool | None
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The scores of every MT run with `prefix` (its own prefix) and of the no-prefix MT run of the same fold on the
    same test pairs (`rows`; seen or unseen users, None: both), the folds pooled and keyed by (id, fold); None when
    no `prefix` run has a no-prefix run of its fold."""
    prefix_of = _mt_prefixes(runs)
    none_of_fold = {runs[n].get("held_out_fold"): n for n, p in prefix_of.items() if p == "none"}
    paired = [n for n, p in prefix_of.items() if p == prefix and runs[n].get("held_out_fold") in none_of_fold]
    if not paired:
        return None
    users = rows if seen is None else rows & (examples.seen == seen)
    sides = {"a": [], "b": []}
    for name in paired:
        fold = runs[name].get("held_out_fold")
        for side, system, condition in (("a", name, "seen_prefix"), ("b", none_of_fold[fold], "no_prefix")):
            sides[side].append(
                _cell(examples, (examples.system == system) & (examples.condition == condition) & users).assign(
                    fold=str(fold)
                )
            )
    return pd.concat(sides["a"]), pd.concat(sides["b"])


def multitask_prefix_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """Fig. 5's headline: on divergent questions, MT with a quality prefix (QUALITY_PREFIXES) beats MT without a
    prefix, for seen users and for unseen users. Each MT + prefix run is paired with the no-prefix MT run of its fold
    on the same test pairs; the folds' pairs are pooled (with k folds every user is unseen by one fold's runs and
    seen by the others')."""
    family = "WikiPersona Fig. 5 (MT + prefix vs MT, divergent)"
    claim = "MT with a quality prefix beats MT without one on divergent questions"
    divergent = examples.question_type == "divergent"
    claims = []
    for prefix in [p for p in QUALITY_PREFIXES if p in set(_mt_prefixes(runs).values())]:
        for seen, users in ((True, "seen users"), (False, "unseen users")):
            sides = _mt_with_vs_without(examples, runs, prefix, divergent, seen)
            if sides is not None:
                claims.append(
                    paired_claim(
                        family,
                        claim,
                        f"MT + {prefix} vs MT, no prefix: divergent, {users}",
                        1,
                        *sides,
                        seed,
                        n_resamples,
                        on=("id", "fold"),
                    )
                )
    return claims or _absent(family, claim, "no MT run with a quality prefix has a no-prefix MT run of the same fold")


def soft_prefix_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """§4.1 "soft embedding fails to capture contrast": MT with the vpl prefix beats MT without a prefix on personal
    questions (+1) but not on divergent ones (0), each run against the no-prefix MT run of its fold, seen and unseen
    users pooled."""
    family = "WikiPersona §4.1 (vpl soft prefix vs MT)"
    claims = []
    for question_type, direction in (("personal", 1), ("divergent", 0)):
        sides = _mt_with_vs_without(examples, runs, "vpl", examples.question_type == question_type, None)
        if sides is None:
            return _absent(
                family,
                "a soft prefix helps on personal questions, not on divergent ones",
                "no vpl MT run has a no-prefix MT run of the same fold",
            )
        claims.append(
            paired_claim(
                family,
                "a soft prefix helps on personal questions, not on divergent ones",
                f"MT + vpl vs MT, no prefix: {question_type}",
                direction,
                *sides,
                seed,
                n_resamples,
                on=("id", "fold"),
            )
        )
    return claims


def equity_claims(examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 6 ("better prefixes give more equitable improvements", i.e. not only users the base model already serves
    well gain): per MT prefix type, MT on the unseen users whose base accuracy without a prefix is at or below the
    median of the unseen users vs the base model on the same pairs."""
    family = "WikiPersona Fig. 6 (equity)"
    prefix_of = _mt_prefixes(runs)
    if not prefix_of:
        return _absent(family, "the users the base model serves worst gain too", "no multitask run")
    base = _base(examples, "none")
    per_user = base.groupby("user_id").score.mean()
    claims = []
    for prefix in [p for p in MT_PREFIX_TYPES if p in set(prefix_of.values())]:
        condition = "no_prefix" if prefix == "none" else "seen_prefix"
        mt = _cell(
            examples,
            examples.system.isin([n for n, p in prefix_of.items() if p == prefix])
            & (examples.condition == condition)
            & ~examples.seen,
        )
        unseen = per_user[per_user.index.isin(set(mt.user_id))]
        worst = set(unseen[unseen <= unseen.median()].index)
        claims.append(
            paired_claim(
                family,
                "the users the base model serves worst gain too",
                f"MT + {prefix} vs base, no prefix, on the {len(worst)} unseen users at or below "
                "the median base accuracy",
                1,
                mt[mt.user_id.isin(worst)],
                base,
                seed,
                n_resamples,
            )
        )
    return claims


def sensitivity_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """Fig. 15, where the paper makes each claim: on divergent questions a wrong (shuffled, another user's) prefix
    hurts (+1: own minus shuffled); on personal questions it changes little (0). Each MT run's own vs shuffled prefix
    on the same test pairs, seen and unseen users together."""
    family = "WikiPersona Fig. 15 (prefix sensitivity)"
    prefix_of = {n: p for n, p in _mt_prefixes(runs).items() if p != "none"}
    if not prefix_of:
        return _absent(family, "a wrong prefix hurts on divergent questions", "no multitask run with a prefix")
    claims = []
    for question_type, direction, claim in (
        ("divergent", 1, "a wrong prefix hurts on divergent questions"),
        ("personal", 0, "a wrong prefix changes little on personal questions"),
    ):
        for prefix in [p for p in MT_PREFIX_TYPES if p in set(prefix_of.values())]:
            mine = examples.system.isin([n for n, p in prefix_of.items() if p == prefix]) & (
                examples.question_type == question_type
            )
            claims.append(
                paired_claim(
                    family,
                    claim,
                    f"MT + {prefix}: own vs shuffled prefix, {question_type}",
                    direction,
                    _cell(examples, mine & (examples.condition == "seen_prefix")),
                    _cell(examples, mine & (examples.condition == "shuffled_prefix")),
                    seed,
                    n_resamples,
                    on=("system", "id"),
                )
            )
    return claims


def demographic_claims(table: pd.DataFrame) -> list[Claim]:
    """Fig. 16 ("no visible demographic bias", direction 0). Groups of a demographic attribute hold different users
    and so different test pairs: no paired comparison exists, and each attribute's row says so with its ANOVA."""
    family = "WikiPersona Fig. 16 (demographics)"
    if table.empty:
        return _absent(family, "no demographic bias", "the personas have none of analysis.demographic_attributes")
    return [
        Claim(
            WIKIPERSONA,
            family,
            "no demographic bias",
            f"{r.attribute} groups",
            0,
            None,
            missing=f"groups of different users are not paired; one-way ANOVA F = {r.f:.2f}, p = {r.p:.2f}",
        )
        for r in table.drop_duplicates("attribute").itertuples()
    ]


def positive_control_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000, control: str = ""
) -> list[Claim]:
    """The pipeline's positive control: a DPO, MT or PT run under the prompt it is scored with (no prefix, its own
    MT prefix, its PT persona cells, the label-seeing oracle among them, named as such) vs the untrained base model
    under the same prompt, on the held-out test pairs of the users it trained on. `control` names the run chosen in
    advance (analysis.positive_control): its rows form the "positive control" family and every other run's rows a
    family of their own, each Holm-adjusted apart; "": every run is in the positive control family."""
    claims_by_family = {
        "positive control": "positive control: training beats the untrained base on held-out pairs",
        "training vs base (other runs)": "training beats the untrained base on held-out pairs",
    }
    names = [n for n, r in runs.items() if r["kind"] in POSITIVE_CONTROL_KINDS]
    if not names:
        claim = claims_by_family["positive control"]
        return [Claim(PIPELINE, "positive control", claim, "—", 1, None, missing="no DPO, MT or PT run in train.runs")]
    claims = []
    for name in names:
        family = "positive control" if control in ("", name) else "training vs base (other runs)"
        run = examples[(examples.system == name) & examples.seen]
        if runs[name]["kind"] == "pt":
            conditions = list(dict.fromkeys(run.condition))
        else:
            conditions = ["no_prefix" if runs[name].get("prefix", "none") == "none" else "seen_prefix"]
        for condition in conditions:
            own = _cell(run, run.condition == condition)
            variant = own.variant.iloc[0] if len(own) else "none"
            label = "no prefix" if variant == "none" else f"+ {variant.split('@')[0]}"
            oracle = (
                " (oracle: the persona was inferred from the test pair knowing y_w)"
                if len(own) and own.sees_label.iloc[0]
                else ""
            )
            claims.append(
                paired_claim(
                    family,
                    claims_by_family[family],
                    f"{name} vs base, both {label}, on its users' test pairs{oracle}",
                    1,
                    own,
                    _base(examples, variant),
                    seed,
                    n_resamples,
                    paper=PIPELINE,
                )
            )
    return claims


def positive_control_summary(claims: list[Claim]) -> str:
    """One sentence on the positive-control family: how many of its rows have a 95% interval above 0, and how many
    are reproduced (interval above 0 and Holm-adjusted p < 0.05)."""
    table = verdict_table([c for c in claims if c.family == "positive control"])
    tested = table[table.n > 0]
    above = tested[tested.ci_low > 0]
    shown = "; ".join(
        f"{r.comparison}: {r.estimate * 100:+.1f} [{r.ci_low * 100:+.1f}, {r.ci_high * 100:+.1f}] points, "
        f"Holm p {r.p_holm:.3f}"
        for r in above.itertuples()
    )
    reproduced = int((tested.verdict == "reproduced").sum())
    return (
        f"Positive control: {len(above)} of {len(tested)} rows have a 95% interval above 0"
        + (f" ({shown})" if shown else "")
        + f"; {reproduced} reproduced (interval above 0 and Holm p < 0.05)."
    )


def whose_boat_claims(judgments: pd.DataFrame, boat: pd.DataFrame, seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Whose Boat (PT + P beats DPO + P, ΔPQ > 0) per judged cell of stage 5, paired over its evaluation prompts:
    per prompt, PT's wins and DPO's wins over the two aspects (Personalization and Quality, ties 0), so the mean
    difference is ΔPQ / 100 when there are no ties. Prompts with an invalid verdict are left out."""
    family = "Whose Boat (PT vs DPO)"
    claims = []
    for cell in boat[boat.setting != "average"].fillna({"missing": ""}).itertuples():
        claim = "PT + P beats DPO + P (ΔPQ > 0)"
        if cell.missing:
            claims.append(Claim(WHOSE_BOAT, family, claim, cell.setting, 1, None, missing=cell.missing))
            continue
        judged = judgments[
            (judgments.setting == cell.setting)
            & (judgments.personalization != "invalid")
            & (judgments.quality != "invalid")
        ]
        wins = {
            side: ((judged.personalization == side).astype(float) + (judged.quality == side)) / 2 for side in ("a", "b")
        }
        claims.append(
            paired_claim(
                family,
                claim,
                f"{cell.setting}: {cell.test} vs {cell.base}, wins per prompt",
                1,
                judged.assign(score=wins["a"]),
                judged.assign(score=wins["b"]),
                seed,
                n_resamples,
                paper=WHOSE_BOAT,
            )
        )
    return claims


def claims_markdown(claims: list[Claim]) -> str:
    """A figure's claims as a Markdown table under its family's name: comparison, n, estimate, 95% CI, half-width,
    MDD, Holm-adjusted p (within the family) and verdict."""
    table = verdict_table(claims)
    families = ", ".join(dict.fromkeys(table.family))
    return f"**{families}** — paired tests on the same items:\n\n" + formatted_verdicts(table).drop(
        columns=["paper"]
    ).to_markdown(index=False)


def collected_verdicts(own: pd.DataFrame, claims_dir: str | Path) -> pd.DataFrame:
    """Every stage's verdict table: each `claims_dir/*.csv` (written by the stages that decide claims, in
    verdict_table's columns) in name order, then `own`."""
    tables = []
    for path in sorted(Path(claims_dir).glob("*.csv")):
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; a claims file has verdict_table's columns")
        tables.append(table[COLUMNS].assign(resampled=lambda t: t.resampled.fillna("")))
    return pd.concat(tables + [own[COLUMNS]], ignore_index=True)


def _win_rate(outcomes: np.ndarray) -> float:
    wins, losses = np.sum(outcomes == "a"), np.sum(outcomes == "b")
    return float(wins / (wins + losses)) if wins + losses else float("nan")


def win_rate_intervals(judgments: pd.DataFrame, seed: int, n_resamples: int = 2000) -> pd.DataFrame:
    """Per comparison of stage 5: W/T/L shares with Wilson 95% intervals, and the Personalization and Quality win
    rates and ΔPQ with 95% percentile intervals from resampling evaluation prompts (P and Q of a prompt together);
    invalid verdicts are left out."""
    rng = figure_rng(seed, "win_rates_ci")
    rows = []
    for (setting, test, base), group in judgments.groupby(["setting", "test", "base"], sort=False):
        p, q = group.personalization.to_numpy(str), group.quality.to_numpy(str)
        row = {"setting": setting, "test": test, "base": base, "n": len(group)}
        for aspect, values in (("p", p), ("q", q)):
            valid = values[values != "invalid"]
            shares = wilson_intervals_for_shares({o: int(np.sum(valid == o)) for o in ("a", "tie", "b")})
            for outcome, name in (("a", "win"), ("tie", "tie"), ("b", "loss")):
                row[f"{aspect}_{name}"], row[f"{aspect}_{name}_low"], row[f"{aspect}_{name}_high"] = shares[outcome]
        index = rng.integers(0, len(group), size=(n_resamples, len(group)))
        p_draws = np.array([_win_rate(p[i]) for i in index])
        q_draws = np.array([_win_rate(q[i]) for i in index])
        for name, value, draws in (
            ("p_wr", _win_rate(p), p_draws),
            ("q_wr", _win_rate(q), q_draws),
            ("delta_pq", (_win_rate(p) + _win_rate(q) - 1) * 100, (p_draws + q_draws - 1) * 100),
        ):
            finite = draws[np.isfinite(draws)]
            row[name] = value
            row[f"{name}_low"], row[f"{name}_high"] = (
                np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan)
            )
        rows.append(row)
    return pd.DataFrame(rows)


def formatted_win_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Win rates and ΔPQ with their intervals, one row per comparison, numbers formatted once."""
    out = pd.DataFrame(
        index=pd.Index([f"{r.setting}: {r.test} vs {r.base}" for r in table.itertuples()], name="comparison")
    )
    for name, label, scale in (
        ("p_wr", "Person. win rate", 100),
        ("q_wr", "Quality win rate", 100),
        ("delta_pq", "ΔPQ", 1),
    ):
        out[label] = [
            f"{r[name] * scale:+.1f} [{r[name + '_low'] * scale:+.1f}, {r[name + '_high'] * scale:+.1f}]"
            if name == "delta_pq"
            else f"{r[name] * scale:.1f} [{r[name + '_low'] * scale:.1f}, {r[name + '_high'] * scale:.1f}]"
            for _, r in table.iterrows()
        ]
    out["n"] = list(table.n)
    return out


def order_agreement(judgments: pd.DataFrame) -> pd.DataFrame:
    """How far the judge agrees with itself across the two presentation orders (the orders as two labelers of each
    comparison): share of identical verdicts, Cohen's κ and Krippendorff's α (nominal), per aspect, over the
    comparisons where both orders gave a valid verdict. A position-biased judge scores low here."""
    rows = []
    for aspect in ("personalization", "quality"):
        stats = outcome_agreement(judgments[f"{aspect}_ab"].astype(str), judgments[f"{aspect}_ba"].astype(str))
        rows.append(
            {
                "aspect": aspect,
                **{k: stats[k] for k in ("n", "invalid", "agreement", "cohen_kappa", "krippendorff_alpha")},
            }
        )
    return pd.DataFrame(rows)


def whose_boat_intervals(boat: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Stage 5's Whose Boat table (`whose_boat.csv`) in the paper's layout with the 95% intervals of
    `win_rate_intervals` beside each judged cell's win rates and ΔPQ (the average row: mean of the cells, no
    interval); a cell the data lacks stays "—"."""
    ci = intervals.set_index("setting")

    def with_ci(row, name: str, scale: float, sign: str) -> str:
        if row.missing:
            return "—"
        value = f"{row[name] * scale:{sign}.1f}"
        if row.setting not in ci.index:
            return value
        low, high = ci.loc[row.setting, f"{name}_low"] * scale, ci.loc[row.setting, f"{name}_high"] * scale
        return f"{value} [{low:{sign}.1f}, {high:{sign}.1f}]"

    def wtl(row, aspect: str) -> str:
        return "—" if row.missing else "/".join(f"{row[f'{aspect}_{p}']:.1f}" for p in ("win", "tie", "loss"))

    rows = [r for _, r in boat.iterrows()]
    return pd.DataFrame(
        {
            "Dataset": [r.dataset if r.setting == "average" else f"{r.dataset} {r.side}" for r in rows],
            "π_base": [r.base for r in rows],
            "π_test": [r.test for r in rows],
            "Person. W/T/L": [wtl(r, "p") for r in rows],
            "Quality W/T/L": [wtl(r, "q") for r in rows],
            "Person. win rate": [with_ci(r, "p_wr", 100, "") for r in rows],
            "Quality win rate": [with_ci(r, "q_wr", 100, "") for r in rows],
            "ΔPQ": [with_ci(r, "delta_pq", 1, "+") for r in rows],
            "n": [int(r.n) for r in rows],
        }
    )


def _wtl(text: str) -> np.ndarray:
    return np.array([float(part) for part in text.split("/")])


def whose_boat_vs_paper(boat: pd.DataFrame, paper: pd.DataFrame, dataset_names: dict[str, str]) -> pd.DataFrame:
    """Each judged cell of this run beside the paper's cell of the same dataset, side and persona source (the
    paper's P_gold is our pair persona, its P_retr our retrieved one: the dataset's own or stage 2's) and the
    difference in ΔPQ; cells without a paper counterpart are left out. Last, when any cell matched, the average over
    the matched cells only (on both sides), never the paper's average over cells this run does not have."""
    rows = []
    for r in boat[(boat.missing.fillna("") == "") & (boat.setting != "average")].itertuples():
        persona = PAPER_NAME.get(r.source)
        if persona is None:
            continue
        match = paper[
            (paper.paper_dataset == dataset_names.get(r.dataset, ""))
            & (paper.side == r.side)
            & (paper.persona == persona)
        ]
        if match.empty:
            continue
        rows.append(
            {
                "cell": r.setting,
                "paper Person. W/T/L": match.p_wtl.iloc[0],
                "ours Person. W/T/L": f"{r.p_win:.1f}/{r.p_tie:.1f}/{r.p_loss:.1f}",
                "paper ΔPQ": float(match.delta_pq.iloc[0]),
                "ours ΔPQ": round(float(r.delta_pq), 1),
                "difference": round(float(r.delta_pq) - float(match.delta_pq.iloc[0]), 1),
                "n": int(r.n),
            }
        )
    columns = ["cell", "paper Person. W/T/L", "ours Person. W/T/L", "paper ΔPQ", "ours ΔPQ", "difference", "n"]
    if rows:
        table = pd.DataFrame(rows)
        paper_mean = np.mean([_wtl(t) for t in table["paper Person. W/T/L"]], axis=0)
        ours_mean = np.mean([_wtl(t) for t in table["ours Person. W/T/L"]], axis=0)
        rows.append(
            {
                "cell": f"average of these {len(table)} cells",
                "paper Person. W/T/L": "/".join(f"{v:.1f}" for v in paper_mean),
                "ours Person. W/T/L": "/".join(f"{v:.1f}" for v in ours_mean),
                "paper ΔPQ": round(table["paper ΔPQ"].mean(), 1),
                "ours ΔPQ": round(table["ours ΔPQ"].mean(), 1),
                "difference": round(table["ours ΔPQ"].mean() - table["paper ΔPQ"].mean(), 1),
                "n": int(table.n.sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class IndexEntry:
    """One row of figures/INDEX.md."""

    path: str
    stage: str
    params: str
    mirrors: str
    shows: str


def write_index(entries: list[IndexEntry], root: str | Path = ".") -> Path:
    """figures/INDEX.md: every figure and table file that exists, the stage and params that made it, and the paper
    figure or table it mirrors."""
    root = Path(root)
    lines = [
        "# Figures and tables",
        "",
        "Generated by stage 6 (`notebooks/06_analysis.ipynb`); every number comes from a results file a stage wrote.",
        "",
        "| file | stage | params | mirrors | what it shows |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        files = sorted(p.relative_to(root / "figures").as_posix() for p in (root / "figures").glob(entry.path))
        if files:
            listed = ", ".join(f"[{f}]({f})" for f in files)
            lines.append(f"| {listed} | {entry.stage} | {entry.params} | {entry.mirrors} | {entry.shows} |")
    path = root / "figures" / "INDEX.md"
    path.write_text("\n".join(lines) + "\n")
    return path


INDEX = [
    IndexEntry(
        "dataset_card.*",
        "1 build_data",
        "build_data, judge",
        "WikiPersona App. E, Table 9",
        "response lengths of y_w / y_l and judge agreement per axis",
    ),
    IndexEntry(
        "table2_persona_rouge.*",
        "2 infer_personas",
        "prefixes, generators",
        "WikiPersona Table 2",
        "ROUGE-1/L of inferred prefixes vs the gold persona and vs a random gold",
    ),
    IndexEntry(
        "train/*.png",
        "3 train",
        "train.defaults, train.runs.<run>",
        "App. H training",
        "loss and reward accuracy per step, one file per run (PDF beside each)",
    ),
    IndexEntry(
        "accuracy_cells.*",
        "4 score",
        "score, train.runs, prefixes.seeds",
        "WikiPersona Fig. 3-5 cells",
        "reference-free accuracy [Wilson 95% CI] per system x condition, implicit-reward accuracy",
    ),
    IndexEntry(
        "accuracy_prefixes.*",
        "4 score",
        "score, train.runs",
        "WikiPersona Fig. 3/4 (quick look)",
        "base vs MT seen / unseen per prefix type, Wilson intervals",
    ),
    IndexEntry(
        "accuracy_sensitivity.*",
        "4 score",
        "score, train.runs",
        "WikiPersona App. L (quick look)",
        "MT with own / new-seed / shuffled / no prefix",
    ),
    IndexEntry(
        "alignment_tax/*",
        "4 score",
        "score.alignment_tax",
        "WikiPersona Fig. 7",
        "out-of-domain accuracy of runs with and without their prefix vs the base model",
    ),
    IndexEntry(
        "table_whose_boat.*",
        "5 generate_judge",
        "generate_judge, judge",
        "Whose Boat table",
        "PT + P vs DPO + P: Personalization / Quality W/T/L, ΔPQ",
    ),
    IndexEntry(
        "table3_prefix_winrates.*",
        "5 generate_judge",
        "generate_judge, judge",
        "WikiPersona Table 3",
        "all pairs among base and MT with and without prefix: W/T/L, ΔPQ",
    ),
    IndexEntry(
        "analysis/verdicts.*",
        "6 analysis (rows of stages 2, 7 from results/claims/)",
        "analysis, train.runs",
        "every headline claim",
        "claim, paired comparison, n, estimate [95% CI], MDD, Holm p, verdict",
    ),
    IndexEntry(
        "analysis/whose_boat_ci.*",
        "6 analysis",
        "analysis, generate_judge",
        "Whose Boat table",
        "the Whose Boat table with 95% intervals of win rates and ΔPQ, and beside the paper's numbers",
    ),
    IndexEntry(
        "analysis/win_rates_ci.*",
        "6 analysis",
        "analysis, generate_judge",
        "Whose Boat table, WikiPersona Table 3",
        "win rates and ΔPQ with 95% intervals from resampling evaluation prompts",
    ),
    IndexEntry(
        "analysis/judge_order_agreement.*",
        "6 analysis",
        "analysis, judge",
        "Whose Boat (both orders)",
        "the judge's agreement with itself across presentation orders: Cohen's κ, Krippendorff's α",
    ),
    IndexEntry(
        "analysis/fig3_prompting.*",
        "6 analysis",
        "analysis",
        "WikiPersona Fig. 3",
        "prompting baseline per prefix type and question type, user-bootstrap 95% CIs",
    ),
    IndexEntry(
        "analysis/fig4_personal_models.*",
        "6 analysis",
        "analysis, train.runs",
        "WikiPersona Fig. 4",
        "personal models on their own user vs other users",
    ),
    IndexEntry(
        "analysis/fig13_data_efficiency.*",
        "6 analysis",
        "analysis, train.runs",
        "WikiPersona Fig. 13",
        "personal-model accuracy vs fraction of the user's data, per seed, 95% band",
    ),
    IndexEntry(
        "analysis/fig5_multitask.*",
        "6 analysis",
        "analysis, train.runs",
        "WikiPersona Fig. 5",
        "MT by prefix type, seen vs unseen users, personal vs divergent, base no-prefix line",
    ),
    IndexEntry(
        "analysis/fig6_equity.*",
        "6 analysis",
        "analysis, train.runs",
        "WikiPersona Fig. 6",
        "per-user MT-unseen vs base accuracy, y = x, OLS band, Pearson r and p per prefix type",
    ),
    IndexEntry(
        "analysis/fig15_sensitivity.*",
        "6 analysis",
        "analysis, train.runs",
        "WikiPersona Fig. 15",
        "MT with own / new-seed / shuffled / no prefix, seen and unseen users",
    ),
    IndexEntry(
        "analysis/fig16_demographics.*",
        "6 analysis",
        "analysis",
        "WikiPersona Fig. 16",
        "per-user accuracy by demographic attribute with one-way ANOVA",
    ),
    IndexEntry(
        "reward_models/table2_characterisation.*",
        "7 reward_models",
        "reward_models",
        "Personalization Meets Reality, Table 2",
        "divergence, high divergence, MV-ACC range, minority users, consistency, room for personalization",
    ),
    IndexEntry(
        "reward_models/mv_acc.*",
        "7 reward_models",
        "reward_models",
        "Personalization Meets Reality §4.2",
        "majority-vote accuracy per user and dataset, minority users highlighted",
    ),
    IndexEntry(
        "reward_models/fig1_accuracy.*",
        "7 reward_models",
        "reward_models",
        "Personalization Meets Reality Fig. 1",
        "accuracy of each reward model per dataset, user-level bootstrap 95% CIs",
    ),
    IndexEntry(
        "reward_models/fig2_sample_efficiency.*",
        "7 reward_models",
        "reward_models",
        "Personalization Meets Reality Fig. 2",
        "accuracy vs training pairs per user",
    ),
    IndexEntry(
        "reward_models/fig3_new_users.*",
        "7 reward_models",
        "reward_models",
        "Personalization Meets Reality Fig. 3",
        "new users from 30/100/300 pairs, with the baselines",
    ),
    IndexEntry(
        "reward_models/fig4_personalization_tax.*",
        "7 reward_models",
        "reward_models.rewardbench",
        "Personalization Meets Reality Fig. 4",
        "RewardBench sections before and after personalization",
    ),
    IndexEntry(
        "reward_models/fig5_per_user.*",
        "7 reward_models",
        "reward_models",
        "Personalization Meets Reality Fig. 5",
        "per-user accuracy of each model, minority users highlighted",
    ),
]
