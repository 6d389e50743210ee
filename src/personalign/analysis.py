"""Stage 6's figures from the results files of stages 4 and 5 (never a model): accuracy per prefix type for the
prompting baseline, personal models, multitask models, equity across users, prefix sensitivity and demographic
groups, each with 95% intervals from a user-level (cluster) bootstrap — over test pairs where a cell has fewer than 5
users — unless said otherwise; and figures/INDEX.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.accuracy import pt_headline_condition
from personalign.persona_sources import PAPER_NAME
from personalign.statistics import (
    bootstrap_ci,
    bootstrap_difference_ci,
    cohen_kappa,
    krippendorff_alpha,
    ols_band,
    one_way_anova,
    paired_permutation_test,
    pearson_with_ci,
    sign_test,
    wilson_intervals_for_shares,
)

PREFIX_ORDER = ("none", "tag", "name", "few_shot", "persona", "persona_strong", "gold")
QUESTION_TYPES = ("personal", "divergent")


MIN_USERS_FOR_CLUSTERS = 5  # below this many users a cell's interval resamples its test pairs instead


def _ci(cell: pd.DataFrame, rng: np.random.Generator, n_resamples: int) -> tuple[float, float, float]:
    """Mean correctness with a 95% percentile interval: resampling users (rows of one user move together) when the
    cell holds at least MIN_USERS_FOR_CLUSTERS users, its test pairs otherwise (one user's cell would collapse)."""
    clustered = cell.user_id.nunique() >= MIN_USERS_FOR_CLUSTERS
    return bootstrap_ci(cell.correct.to_numpy(float), np.mean, rng=rng, n_resamples=n_resamples,
                        groups=cell.user_id.to_numpy() if clustered else None)


def _bars(ax, table: pd.DataFrame, x: str, hue: str, order: list[str], hue_order: list[str]) -> None:
    """Grouped bars of `mean` with [low, high] error bars; `table` has one row per (x, hue)."""
    width = 0.8 / max(len(hue_order), 1)
    for j, level in enumerate(hue_order):
        part = table[table[hue] == level].set_index(x).reindex(order)
        positions = np.arange(len(order)) + (j - (len(hue_order) - 1) / 2) * width
        keep = part["mean"].notna().to_numpy()
        ax.bar(positions[keep], part["mean"][keep], width, color=f"C{j}", label=level,
               yerr=[(part["mean"] - part["low"])[keep], (part["high"] - part["mean"])[keep]], capsize=2)
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
    ax.set_ylim(0, 1)


def _nothing(message: str):
    """A figure that says why it is empty (the runs it needs are not in train.runs)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(5, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def cell_means(examples: pd.DataFrame, keys: list[str], rng: np.random.Generator,
               n_resamples: int = 2000) -> pd.DataFrame:
    """Accuracy per group of `keys` with n, users and a bootstrap 95% interval (see `_ci`)."""
    rows = []
    for key, cell in examples.groupby(keys, sort=True):
        mean, low, high = _ci(cell, rng, n_resamples)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "n": len(cell),
                     "n_users": cell.user_id.nunique(), "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def prompting_baseline(examples: pd.DataFrame, rng: np.random.Generator,
        n_resamples: int = 2000) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 3 analog: the base model's reference-free accuracy per prefix type and question type."""
    import matplotlib.pyplot as plt

    base = examples[(examples.system == "base") & examples.variant.isin([f"{p}@0" for p in PREFIX_ORDER] + ["none"])]
    base = base.assign(prefix=base.variant.str.split("@").str[0])
    table = cell_means(base, ["prefix", "question_type"], rng, n_resamples)
    order = [p for p in PREFIX_ORDER if p in set(table.prefix)]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _bars(ax, table.rename(columns={"question_type": "questions"}), "prefix", "questions", order, list(QUESTION_TYPES))
    ax.set_xlabel("prefix type (prompting, no training)")
    ax.set_ylabel("reference-free accuracy")
    ax.legend(title="questions", loc="lower right", frameon=True)
    fig.tight_layout()
    return table, fig


def personal_models(examples: pd.DataFrame, runs: dict[str, dict], rng: np.random.Generator,
        n_resamples: int = 2000) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 4 analog: each full-data personal model on its own user's test pairs vs other users'."""
    import matplotlib.pyplot as plt

    names = [n for n, r in runs.items() if r["kind"] == "pm" and r.get("fraction", 1.0) == 1.0 and r.get("seed", 0) == 0]
    pm = examples[examples.system.isin(names)]
    pm = pm.assign(users=np.where(pm.seen, "trained user", "other users"))
    if pm.empty:
        return pd.DataFrame(), _nothing("no full-data personal model (kind pm, fraction 1, seed 0) in train.runs")
    table = cell_means(pm, ["system", "users"], rng, n_resamples)
    fig, ax = plt.subplots(figsize=(max(3.5, 1.6 * len(names) + 1), 3.2))
    _bars(ax, table, "system", "users", names, ["trained user", "other users"])
    ax.set_ylabel("reference-free accuracy")
    ax.legend(loc="lower right", frameon=True)
    fig.tight_layout()
    return table, fig


def data_efficiency(examples: pd.DataFrame, runs: dict[str, dict], rng: np.random.Generator,
        n_resamples: int = 2000) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 13 analog: a personal model's accuracy on its own user vs the fraction of that user's training
    pairs, one point per seed, the mean over seeds and a 95% band (bootstrap over the user's test pairs)."""
    import matplotlib.pyplot as plt

    rows = []
    for name, run in runs.items():
        if run["kind"] != "pm":
            continue
        own = examples[(examples.system == name) & examples.seen]
        if own.empty:
            continue
        mean, low, high = bootstrap_ci(own.correct.to_numpy(float), np.mean, rng=rng, n_resamples=n_resamples)
        rows.append({"user": run["user"], "fraction": float(run.get("fraction", 1.0)), "seed": int(run.get("seed", 0)),
                     "run": name, "n": len(own), "accuracy": mean, "low": low, "high": high})
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
    ax.legend(loc="lower right", frameon=True)
    fig.tight_layout()
    return table, fig


def multitask_models(examples: pd.DataFrame, runs: dict[str, dict], rng: np.random.Generator,
        n_resamples: int = 2000) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 5 analog: MT accuracy with its trained prefix per prefix type, seen vs unseen users, per
    question type, with the base model without a prefix as a line."""
    import matplotlib.pyplot as plt

    prefix_of = {n: r.get("prefix", "none") for n, r in runs.items() if r["kind"] == "mt"}
    mt = examples[examples.system.isin(list(prefix_of)) & examples.condition.isin(["seen_prefix", "no_prefix"])]
    mt = mt[(mt.condition == "seen_prefix") | (mt.system.map(prefix_of) == "none")]
    mt = mt.assign(prefix=mt.system.map(prefix_of), users=np.where(mt.seen, "seen users", "unseen users"))
    if mt.empty:
        return pd.DataFrame(), _nothing("no multitask model (kind mt) in train.runs")
    table = cell_means(mt, ["prefix", "question_type", "users"], rng, n_resamples)
    base = examples[(examples.system == "base") & (examples.variant == "none")]
    base_table = cell_means(base, ["question_type"], rng, n_resamples)
    order = [p for p in PREFIX_ORDER if p in set(table.prefix)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, question_type in zip(axes, QUESTION_TYPES):
        _bars(ax, table[table.question_type == question_type], "prefix", "users", order, ["seen users", "unseen users"])
        line = base_table[base_table.question_type == question_type]["mean"]
        if len(line):
            ax.axhline(float(line.iloc[0]), color="C3", lw=1.2, label="base, no prefix")
        ax.set_title(f"{question_type} questions")
        ax.set_xlabel("MT prefix type")
    axes[0].set_ylabel("reference-free accuracy")
    axes[1].legend(loc="lower right", frameon=True)
    fig.tight_layout()
    return pd.concat([table, base_table.assign(prefix="base none", users="all")], ignore_index=True), fig


def equity(by_user: pd.DataFrame, runs: dict[str, dict]) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 6 analog: per user, MT accuracy as an unseen user (the MT run whose held-out fold holds the
    user, with its trained prefix) vs the base model's accuracy without a prefix; one panel per prefix type, y = x,
    an OLS fit with its 95% band, Pearson r and p."""
    import matplotlib.pyplot as plt

    prefix_of = {n: r.get("prefix", "none") for n, r in runs.items() if r["kind"] == "mt"}
    base = by_user[(by_user.system == "base") & (by_user.variant == "none")].set_index("user_id").accuracy
    unseen = by_user[by_user.system.isin(list(prefix_of)) & ~by_user.seen
                     & ((by_user.condition == "seen_prefix") | (by_user.system.map(prefix_of) == "none"))]
    points = unseen.assign(prefix=unseen.system.map(prefix_of), base=unseen.user_id.map(base))
    prefixes = [p for p in PREFIX_ORDER if p in set(points.prefix)]
    if not prefixes:
        return pd.DataFrame(), _nothing("no multitask model with a held-out fold in train.runs")
    stats, grid = [], np.linspace(0, 1, 21)
    fig, axes = plt.subplots(1, max(len(prefixes), 1), figsize=(2.6 * max(len(prefixes), 1) + 0.5, 2.9),
                             squeeze=False, sharey=True)
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


def sensitivity(examples: pd.DataFrame, runs: dict[str, dict], rng: np.random.Generator,
        n_resamples: int = 2000) -> tuple[pd.DataFrame, object]:
    """WikiPersona Fig. 15 analog: MT accuracy per prefix type with the trained prefix, a new prefix seed, another
    user's prefix and none, for seen and unseen users."""
    import matplotlib.pyplot as plt

    prefix_of = {n: r.get("prefix", "none") for n, r in runs.items() if r["kind"] == "mt" and r.get("prefix") != "none"}
    data = examples[examples.system.isin(list(prefix_of))]
    names = {"seen_prefix": "own prefix", "shuffled_prefix": "shuffled", "no_prefix": "no prefix"}
    data = data.assign(prefix=data.system.map(prefix_of),
                       cell=data.condition.map(lambda c: names.get(c, "new seed")) + np.where(data.seen, ", seen", ", unseen"))
    if data.empty:
        return pd.DataFrame(), _nothing("no multitask model with a prefix in train.runs")
    table = cell_means(data, ["prefix", "cell"], rng, n_resamples)
    order = [f"{c}, {s}" for c in ("own prefix", "new seed", "shuffled", "no prefix") for s in ("seen", "unseen")
             if f"{c}, {s}" in set(table.cell)]
    prefixes = [p for p in PREFIX_ORDER if p in set(table.prefix)]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _bars(ax, table, "cell", "prefix", order, prefixes)
    ax.set_ylabel("reference-free accuracy")
    ax.legend(title="MT prefix type", loc="lower right", ncols=max(len(prefixes), 1), frameon=True)
    fig.tight_layout()
    return table, fig


def age_bracket(age) -> str:
    """Age in three brackets (the personas' ages span ~20-80)."""
    age = int(age)
    return "under 40" if age < 40 else ("40-59" if age < 60 else "60 and over")


def demographics(by_user: pd.DataFrame, personas: pd.DataFrame, system: str, condition: str,
                 attributes: list[str]) -> tuple[pd.DataFrame, object]:
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
        rows += [{"attribute": attribute, "group": g, "users": int(r["size"]), "mean": r["mean"]}
                 for g, r in means.iterrows()]
        ax.bar(range(len(means)), means["mean"], color="C0")
        ax.scatter(part.group.map({g: i for i, g in enumerate(means.index)}), part.accuracy, color="k", s=8, zorder=3)
        ax.set_xticks(range(len(means)), means.index, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{attribute}\nANOVA F = {result['f']:.2f}, p = {result['p']:.2f}", fontsize=8)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel(f"{system} ({condition}) accuracy per user")
    fig.tight_layout()
    return pd.DataFrame(tests).merge(pd.DataFrame(rows), on="attribute", how="right"), fig


def comparison_pairs(runs: dict[str, dict]) -> list[tuple[str, tuple[str, str], tuple[str, str]]]:
    """The headline paired comparisons on the same test prompts: each MT run with its prefix vs the base model
    without one and vs its shuffled prefix; each PT run vs the first DPO run trained on the same dataset with the
    same SFT phase."""
    pairs = []
    for name, run in runs.items():
        dpo = next((n for n, r in runs.items() if r["kind"] == "dpo" and r.get("source", "") == run.get("source", "")
                    and r.get("sft_epochs") == run.get("sft_epochs")), None)
        if run["kind"] == "mt" and run.get("prefix", "none") != "none":
            pairs.append((f"{name}: own prefix vs base, no prefix", (name, "seen_prefix"), ("base", "none")))
            pairs.append((f"{name}: own vs shuffled prefix", (name, "seen_prefix"), (name, "shuffled_prefix")))
        if run["kind"] == "pt" and dpo is not None:
            pairs.append((f"{name} vs {dpo}", (name, pt_headline_condition(run["prefix"])), (dpo, "no_prefix")))
    return pairs


def paired_tests(examples: pd.DataFrame, runs: dict[str, dict], rng: np.random.Generator,
                 n_resamples: int = 2000) -> pd.DataFrame:
    """Per comparison, on the test prompts both systems were scored on: accuracies, the difference with a 95%
    user-level bootstrap interval, a paired permutation p-value and a sign-test p-value."""
    rows = []
    for label, (sys_a, cond_a), (sys_b, cond_b) in comparison_pairs(runs):
        a = examples[(examples.system == sys_a) & (examples.condition == cond_a)].set_index("id")
        b = examples[(examples.system == sys_b) & (examples.condition == cond_b)].set_index("id")
        ids = sorted(set(a.index) & set(b.index))
        if not ids:
            continue
        x, y = a.loc[ids].correct.to_numpy(float), b.loc[ids].correct.to_numpy(float)
        diff, low, high = bootstrap_difference_ci(x, y, rng, n_resamples=n_resamples, groups=a.loc[ids].user_id.to_numpy())
        rows.append({"comparison": label, "n": len(ids), "accuracy_a": x.mean(), "accuracy_b": y.mean(),
                     "difference": diff, "ci_low": low, "ci_high": high,
                     "permutation_p": paired_permutation_test(x, y, rng, n_resamples=n_resamples),
                     "sign_test_p": sign_test(x, y)})
    return pd.DataFrame(rows, columns=["comparison", "n", "accuracy_a", "accuracy_b", "difference", "ci_low", "ci_high",
                                       "permutation_p", "sign_test_p"])


def _win_rate(outcomes: np.ndarray) -> float:
    wins, losses = np.sum(outcomes == "a"), np.sum(outcomes == "b")
    return float(wins / (wins + losses)) if wins + losses else float("nan")


def win_rate_intervals(judgments: pd.DataFrame, rng: np.random.Generator, n_resamples: int = 2000) -> pd.DataFrame:
    """Per comparison of stage 5: W/T/L shares with Wilson 95% intervals, and the Personalization and Quality win
    rates and ΔPQ with 95% percentile intervals from resampling evaluation prompts (P and Q of a prompt together);
    invalid verdicts are left out."""
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
        for name, value, draws in (("p_wr", _win_rate(p), p_draws), ("q_wr", _win_rate(q), q_draws),
                                   ("delta_pq", (_win_rate(p) + _win_rate(q) - 1) * 100, (p_draws + q_draws - 1) * 100)):
            finite = draws[np.isfinite(draws)]
            row[name] = value
            row[f"{name}_low"], row[f"{name}_high"] = (np.percentile(finite, [2.5, 97.5]) if finite.size
                                                       else (np.nan, np.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def formatted_win_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Win rates and ΔPQ with their intervals, one row per comparison, numbers formatted once."""
    out = pd.DataFrame(index=pd.Index([f"{r.setting}: {r.test} vs {r.base}" for r in table.itertuples()],
                                      name="comparison"))
    for name, label, scale in (("p_wr", "Person. win rate", 100), ("q_wr", "Quality win rate", 100),
                               ("delta_pq", "ΔPQ", 1)):
        out[label] = [f"{r[name] * scale:+.1f} [{r[name + '_low'] * scale:+.1f}, {r[name + '_high'] * scale:+.1f}]"
                      if name == "delta_pq" else
                      f"{r[name] * scale:.1f} [{r[name + '_low'] * scale:.1f}, {r[name + '_high'] * scale:.1f}]"
                      for _, r in table.iterrows()]
    out["n"] = list(table.n)
    return out


def order_agreement(judgments: pd.DataFrame) -> pd.DataFrame:
    """How far the judge agrees with itself across the two presentation orders (the orders as two labelers of each
    comparison): share of identical verdicts, Cohen's κ and Krippendorff's α (nominal), per aspect, over the
    comparisons where both orders gave a valid verdict. A position-biased judge scores low here."""
    rows = []
    for aspect in ("personalization", "quality"):
        ab, ba = judgments[f"{aspect}_ab"].astype(str), judgments[f"{aspect}_ba"].astype(str)
        valid = (ab != "invalid") & (ba != "invalid")
        codes = {label: k for k, label in enumerate(("a", "tie", "b"))}
        ratings = np.array([[codes[x], codes[y]] for x, y in zip(ab[valid], ba[valid])], dtype=float)
        rows.append({"aspect": aspect, "n": int(valid.sum()), "invalid": int((~valid).sum()),
                     "agreement": float((ab[valid] == ba[valid]).mean()) if valid.any() else np.nan,
                     "cohen_kappa": cohen_kappa(ab[valid], ba[valid]) if valid.any() else np.nan,
                     "krippendorff_alpha": krippendorff_alpha(ratings) if valid.any() else np.nan})
    return pd.DataFrame(rows)


def formatted_paired_tests(table: pd.DataFrame) -> pd.DataFrame:
    """The paired tests, numbers formatted once."""
    out = pd.DataFrame(index=pd.Index(list(table.comparison), name="comparison"))
    out["n"] = list(table.n)
    out["accuracy A"] = [f"{v:.3f}" for v in table.accuracy_a]
    out["accuracy B"] = [f"{v:.3f}" for v in table.accuracy_b]
    out["A - B [95% CI]"] = [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                             zip(table.difference, table.ci_low, table.ci_high)]
    out["permutation p"] = [f"{v:.3f}" for v in table.permutation_p]
    out["sign test p"] = [f"{v:.3f}" for v in table.sign_test_p]
    return out


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
    return pd.DataFrame({
        "Dataset": [r.dataset if r.setting == "average" else f"{r.dataset} {r.side}" for r in rows],
        "π_base": [r.base for r in rows], "π_test": [r.test for r in rows],
        "Person. W/T/L": [wtl(r, "p") for r in rows], "Quality W/T/L": [wtl(r, "q") for r in rows],
        "Person. win rate": [with_ci(r, "p_wr", 100, "") for r in rows],
        "Quality win rate": [with_ci(r, "q_wr", 100, "") for r in rows],
        "ΔPQ": [with_ci(r, "delta_pq", 1, "+") for r in rows], "n": [int(r.n) for r in rows],
    })


def whose_boat_vs_paper(boat: pd.DataFrame, paper: pd.DataFrame, dataset_names: dict[str, str]) -> pd.DataFrame:
    """Each judged cell of this run beside the paper's cell of the same dataset, side and persona source (the
    paper's P_gold is our pair persona, its P_retr our retrieved one: the dataset's own or stage 2's) and the
    difference in ΔPQ; cells without a paper counterpart are left out."""
    rows = []
    for r in boat[boat.missing.fillna("") == ""].itertuples():
        persona = PAPER_NAME.get(r.source) if r.setting != "average" else ""
        if persona is None:
            continue
        match = paper[(paper.paper_dataset == dataset_names.get(r.dataset, "")) & (paper.side == r.side)
                      & (paper.persona == persona)]
        if match.empty:
            continue
        ours = f"{r.p_win:.1f}/{r.p_tie:.1f}/{r.p_loss:.1f}"
        rows.append({"cell": r.setting, "paper Person. W/T/L": match.p_wtl.iloc[0], "ours Person. W/T/L": ours,
                     "paper ΔPQ": match.delta_pq.iloc[0], "ours ΔPQ": round(float(r.delta_pq), 1),
                     "difference": round(float(r.delta_pq) - float(match.delta_pq.iloc[0]), 1), "n": int(r.n)})
    return pd.DataFrame(rows, columns=["cell", "paper Person. W/T/L", "ours Person. W/T/L", "paper ΔPQ", "ours ΔPQ",
                                       "difference", "n"])



def verdict_whose_boat(versus: pd.DataFrame, boat: pd.DataFrame) -> str:
    """How this run's Whose Boat cells compare with the paper's: signs, sizes, and why they differ."""
    judged = boat[(boat.missing == "") & (boat.setting != "average")]
    if judged.empty:
        return "No Whose Boat cell was judged in this run."
    positive = int((judged.delta_pq > 0).sum())
    cells = versus[versus.cell != "average"]
    text = (f"{positive} of {len(judged)} judged cells have ΔPQ > 0 (PT + P ahead of DPO + P); mean ΔPQ "
            f"{judged.delta_pq.mean():+.1f} over {int(judged.n.sum())} judged prompts. ")
    if len(cells):
        same_sign = int((np.sign(cells["ours ΔPQ"]) == np.sign(cells["paper ΔPQ"])).sum())
        text += (f"Against the paper's {len(cells)} matching cells (mean ΔPQ {cells['paper ΔPQ'].mean():+.1f}), "
                 f"{same_sign} have the same sign and the mean difference is {cells['difference'].mean():+.1f} "
                 "points. ")
    else:
        text += "None of this run's datasets is one of the paper's, so there is nothing to set beside it. "
    return text + ("Expect smaller and noisier effects than the paper's: its PT and DPO models are multi-billion "
                   "parameter models trained on the full training sets and judged by a strong LLM, while here a 135M "
                   "model with a LoRA adapter is trained for a few CPU steps on a subset, samples short responses, and "
                   "the judge is the configured one (the simulated embedding judge by default), on a few dozen "
                   "prompts per cell — so an interval that spans 0 means the run cannot tell, not that PT does not help.")


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
    lines = ["# Figures and tables", "",
             "Generated by stage 6 (`notebooks/06_analysis.ipynb`); every number comes from a results file a stage wrote.",
             "", "| file | stage | params | mirrors | what it shows |", "|---|---|---|---|---|"]
    for entry in entries:
        files = sorted(p.relative_to(root / "figures").as_posix() for p in (root / "figures").glob(entry.path))
        if files:
            listed = ", ".join(f"[{f}]({f})" for f in files)
            lines.append(f"| {listed} | {entry.stage} | {entry.params} | {entry.mirrors} | {entry.shows} |")
    path = root / "figures" / "INDEX.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    """Whether two [low, high] intervals overlap."""
    return bool(a["low"] <= b["high"] and b["low"] <= a["high"])


def verdict_prompting(table: pd.DataFrame) -> str:
    """Two or three sentences: best prefix against no prefix, whether the intervals separate them, the paper."""
    overall = table.groupby("prefix")["mean"].mean()
    best, none = overall.idxmax(), overall.get("none", np.nan)
    none_rows = table[table.prefix == "none"].set_index("question_type")
    separated = [f"{r.prefix} ({r.question_type})" for r in table.itertuples() if r.prefix != "none"
                 and r.question_type in none_rows.index and not _overlap(pd.Series(r._asdict()), none_rows.loc[r.question_type])]
    return (f"Averaged over question types, accuracy spans {overall.max() - overall.min():.2f} across prefix types "
            f"(best: {best}, {overall.max():.2f}; no prefix: {none:.2f}); "
            + (f"the intervals of {', '.join(separated)} do not overlap the no-prefix bar. " if separated else
               "every prefix's interval overlaps the no-prefix bar of its question type. ")
            + "WikiPersona finds prompting changes little, with the gold persona best (Fig. 3): the small effect is "
            f"{'consistent' if not separated else 'not what we see'} here, and the gold-best ordering is "
            f"{'reproduced' if best == 'gold' else 'not reproduced'}.")


def verdict_personal(table: pd.DataFrame) -> str:
    """PM own user vs others."""
    if table.empty:
        return "The runs this figure needs are not in `train.runs`; nothing to compare."
    parts, better = [], []
    for system, rows in table.groupby("system", sort=True):
        rows = rows.set_index("users")
        if {"trained user", "other users"} <= set(rows.index):
            own, other = rows.loc["trained user"], rows.loc["other users"]
            parts.append(f"{system} {own['mean'] - other['mean']:+.2f} (intervals "
                         f"{'overlap' if _overlap(own, other) else 'separate'}, own user n = {int(own['n'])})")
            if own["low"] > other["high"]:
                better.append(system)
    return ("Own-user minus other-users accuracy: " + "; ".join(parts) + ". WikiPersona finds personal models fit "
            "their own user clearly better than others (Fig. 4); "
            + (f"here that holds for {', '.join(better)}." if better else
               "here no personal model is clearly better on its own user, so that is not reproduced at this scale."))


def verdict_data_efficiency(table: pd.DataFrame) -> str:
    """Accuracy trend with the fraction of training data."""
    if table.empty:
        return "The runs this figure needs are not in `train.runs`; nothing to compare."
    curves = table.groupby("user").filter(lambda part: part.fraction.nunique() > 1)
    if curves.empty:
        return "No user has personal models at two or more data fractions; there is no curve to compare."
    parts, rising, overlapping = [], [], []
    for user, part in curves.groupby("user", sort=True):
        mean = part.groupby("fraction").agg(accuracy=("accuracy", "mean"), low=("low", "mean"), high=("high", "mean"))
        rising.append(mean.accuracy.iloc[-1] > mean.accuracy.iloc[0])
        overlapping.append(_overlap(mean.iloc[0], mean.iloc[-1]))
        mean = mean.accuracy
        parts.append(f"{user}: {mean.iloc[0]:.2f} at {mean.index[0]:.0%} to {mean.iloc[-1]:.2f} at {mean.index[-1]:.0%}")
    return ("Own-user accuracy (mean over seeds), " + "; ".join(parts) + f", each point on {int(curves.n.min())} "
            "test pairs. WikiPersona reports PM accuracy improving with more data (Fig. 13); the direction is "
            + ("the same here" if all(rising) else "not reproduced here")
            + (", and the smallest and largest fractions' intervals overlap." if all(overlapping) else "."))


def verdict_multitask(table: pd.DataFrame) -> str:
    """MT seen vs unseen against the base line."""
    if table.empty:
        return "The runs this figure needs are not in `train.runs`; nothing to compare."
    unseen = table[table.users == "unseen users"]
    base = table[table.users == "all"].set_index("question_type")
    best = unseen.loc[unseen["mean"].idxmax()]
    above = [f"{r.prefix} ({r.question_type})" for r in unseen.itertuples()
             if r.question_type in base.index and r.low > base.loc[r.question_type, "mean"]]
    return (f"The best unseen-user cell is {best.prefix} on {best.question_type} questions ({best['mean']:.2f}, "
            f"95% CI {best.low:.2f}-{best.high:.2f}, n = {int(best.n)}). WikiPersona finds quality prefixes let MT "
            "generalise to unseen users above the base model (Fig. 5); "
            + (f"here the intervals of {', '.join(above)} lie above the base line." if above else
               "here no unseen-user interval lies entirely above the base model's line, so that is not reproduced "
               "at this scale."))


def verdict_equity(table: pd.DataFrame) -> str:
    """Pearson r per prefix type."""
    if table.empty:
        return "The runs this figure needs are not in `train.runs`; nothing to compare."
    parts = [f"{r.prefix}: r = {r.r:.2f} (p = {r.p:.2f}, n = {r.n})" for r in table.itertuples()]
    spread = table.r.max() - table.r.min()
    return ("Per prefix type, " + "; ".join(parts) + ". WikiPersona finds better prefixes give lower correlation "
            "with the base model, i.e. more equitable gains (Fig. 6); "
            + (f"here r varies by only {spread:.2f} across prefix types, so no prefix is more equitable than another "
               "at this scale." if spread < 0.2 else f"here r varies by {spread:.2f} across prefix types."))


def verdict_sensitivity(table: pd.DataFrame) -> str:
    """Own vs shuffled prefix."""
    if table.empty:
        return "The runs this figure needs are not in `train.runs`; nothing to compare."
    rows = table.set_index(["prefix", "cell"])
    parts, separated = [], []
    for prefix in sorted(set(table.prefix)):
        if (prefix, "own prefix, seen") in rows.index and (prefix, "shuffled, seen") in rows.index:
            own, wrong = rows.loc[(prefix, "own prefix, seen")], rows.loc[(prefix, "shuffled, seen")]
            parts.append(f"{prefix} {own['mean'] - wrong['mean']:+.2f}")
            if not _overlap(own, wrong):
                separated.append(prefix)
    return ("Own minus shuffled prefix, seen users: " + ", ".join(parts) + ". WikiPersona finds wrong prefixes "
            "hurt, mainly on divergent questions (Fig. 15); "
            + (f"here the intervals separate for {', '.join(separated)}." if separated else
               "here every own-prefix interval overlaps its shuffled one, so the effect is not reproduced at this scale."))


def verdict_demographics(table: pd.DataFrame) -> str:
    """ANOVA per attribute."""
    if table.empty:
        return "The personas have none of `analysis.demographic_attributes`; nothing to compare."
    tests = table.drop_duplicates("attribute")
    parts = [f"{r.attribute}: F = {r.f:.2f}, p = {r.p:.2f}" for r in tests.itertuples()]
    significant = [r.attribute for r in tests.itertuples() if r.p < 0.05]
    return ("One-way ANOVA across groups, " + "; ".join(parts) + f" (largest group: {int(table.users.max())} users). "
            "WikiPersona sees no visible demographic bias (Fig. 16); "
            + (f"here {', '.join(significant)} differ at p < 0.05." if significant else
               "here no attribute differs at p < 0.05 either, though with this few users per group that is weak evidence."))


INDEX = [
    IndexEntry("dataset_card.*", "1 build_data", "build_data, judge", "WikiPersona App. E, Table 9",
               "response lengths of y_w / y_l and judge agreement per axis"),
    IndexEntry("table2_persona_rouge.*", "2 infer_personas", "prefixes, generators", "WikiPersona Table 2",
               "ROUGE-1/L of inferred prefixes vs the gold persona and vs a random gold"),
    IndexEntry("train/*.png", "3 train", "train.defaults, train.runs.<run>", "App. H training",
               "loss and reward accuracy per step, one file per run (PDF beside each)"),
    IndexEntry("accuracy_cells.*", "4 score", "score, train.runs, prefixes.seeds", "WikiPersona Fig. 3-5 cells",
               "reference-free accuracy [Wilson 95% CI] per system x condition, implicit-reward accuracy"),
    IndexEntry("accuracy_prefixes.*", "4 score", "score, train.runs", "WikiPersona Fig. 3/4 (quick look)",
               "base vs MT seen / unseen per prefix type, Wilson intervals"),
    IndexEntry("accuracy_sensitivity.*", "4 score", "score, train.runs", "WikiPersona App. L (quick look)",
               "MT with own / new-seed / shuffled / no prefix"),
    IndexEntry("alignment_tax/*", "4 score", "score.alignment_tax", "WikiPersona Fig. 7",
               "out-of-domain accuracy of runs with and without their prefix vs the base model"),
    IndexEntry("table_whose_boat.*", "5 generate_judge", "generate_judge, judge", "Whose Boat table",
               "PT + P vs DPO + P: Personalization / Quality W/T/L, ΔPQ"),
    IndexEntry("table3_prefix_winrates.*", "5 generate_judge", "generate_judge, judge", "WikiPersona Table 3",
               "all pairs among base and MT with and without prefix: W/T/L, ΔPQ"),
    IndexEntry("analysis/paired_tests.*", "6 analysis", "analysis, train.runs", "WikiPersona Fig. 5 / Whose Boat",
               "headline system pairs on the same prompts: difference [user-bootstrap CI], permutation and sign tests"),
    IndexEntry("analysis/whose_boat_ci.*", "6 analysis", "analysis, generate_judge", "Whose Boat table",
               "the Whose Boat table with 95% intervals of win rates and ΔPQ, and beside the paper's numbers"),
    IndexEntry("analysis/win_rates_ci.*", "6 analysis", "analysis, generate_judge", "Whose Boat table, WikiPersona Table 3",
               "win rates and ΔPQ with 95% intervals from resampling evaluation prompts"),
    IndexEntry("analysis/judge_order_agreement.*", "6 analysis", "analysis, judge", "Whose Boat (both orders)",
               "the judge's agreement with itself across presentation orders: Cohen's κ, Krippendorff's α"),
    IndexEntry("analysis/fig3_prompting.*", "6 analysis", "analysis", "WikiPersona Fig. 3",
               "prompting baseline per prefix type and question type, user-bootstrap 95% CIs"),
    IndexEntry("analysis/fig4_personal_models.*", "6 analysis", "analysis, train.runs", "WikiPersona Fig. 4",
               "personal models on their own user vs other users"),
    IndexEntry("analysis/fig13_data_efficiency.*", "6 analysis", "analysis, train.runs", "WikiPersona Fig. 13",
               "personal-model accuracy vs fraction of the user's data, per seed, 95% band"),
    IndexEntry("analysis/fig5_multitask.*", "6 analysis", "analysis, train.runs", "WikiPersona Fig. 5",
               "MT by prefix type, seen vs unseen users, personal vs divergent, base no-prefix line"),
    IndexEntry("analysis/fig6_equity.*", "6 analysis", "analysis, train.runs", "WikiPersona Fig. 6",
               "per-user MT-unseen vs base accuracy, y = x, OLS band, Pearson r and p per prefix type"),
    IndexEntry("analysis/fig15_sensitivity.*", "6 analysis", "analysis, train.runs", "WikiPersona Fig. 15",
               "MT with own / new-seed / shuffled / no prefix, seen and unseen users"),
    IndexEntry("analysis/fig16_demographics.*", "6 analysis", "analysis", "WikiPersona Fig. 16",
               "per-user accuracy by demographic attribute with one-way ANOVA"),
    IndexEntry("reward_models/table2_characterisation.*", "7 reward_models", "reward_models",
               "Personalization Meets Reality, Table 2",
               "divergence, high divergence, MV-ACC range, minority users, consistency, room for personalization"),
    IndexEntry("reward_models/mv_acc.*", "7 reward_models", "reward_models", "Personalization Meets Reality §4.2",
               "majority-vote accuracy per user and dataset, minority users highlighted"),
    IndexEntry("reward_models/fig1_accuracy.*", "7 reward_models", "reward_models", "Personalization Meets Reality Fig. 1",
               "accuracy of each reward model per dataset, user-level bootstrap 95% CIs"),
    IndexEntry("reward_models/fig2_sample_efficiency.*", "7 reward_models", "reward_models",
               "Personalization Meets Reality Fig. 2", "accuracy vs training pairs per user"),
    IndexEntry("reward_models/fig3_new_users.*", "7 reward_models", "reward_models",
               "Personalization Meets Reality Fig. 3", "new users from 30/100/300 pairs, with the baselines"),
    IndexEntry("reward_models/fig4_personalization_tax.*", "7 reward_models", "reward_models.rewardbench",
               "Personalization Meets Reality Fig. 4", "RewardBench sections before and after personalization"),
    IndexEntry("reward_models/fig5_per_user.*", "7 reward_models", "reward_models",
               "Personalization Meets Reality Fig. 5", "per-user accuracy of each model, minority users highlighted"),
]

