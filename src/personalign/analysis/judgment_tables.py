"""Stage 5's judgments as tables: win rates, the Whose Boat layout, Table 3, the stage's metrics and qualitative
examples (stage 5), and win rates with 95% intervals, the agreement of the two presentation orders and the Whose Boat
comparison with the paper's published win/tie/loss counts (stage 6). Reads judged outcomes; runs no model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from personalign.core.persona_sources import PAPER_NAME
from personalign.core.seeding import figure_rng
from personalign.stats.statistics import wilson_intervals_for_shares
from personalign.stats.win_rates import outcome_agreement, summary_row

if TYPE_CHECKING:
    from personalign.evaluation.comparisons import Request, WhoseBoatCell


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


def _rounded(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def stage_metrics(boat: pd.DataFrame, table3: pd.DataFrame, invalid: int, agreement: pd.DataFrame) -> dict:
    """Stage 5's summary for results/generate_judge/metrics.json: win rates and ΔPQ of each Whose Boat cell and each
    Table 3 pair, the count of invalid verdicts, and the agreement with the second judge (undefined values: null)."""

    def rates(r) -> dict:
        return {
            "p_wr": _rounded(r.p_wr, 4),
            "q_wr": _rounded(r.q_wr, 4),
            "delta_pq": _rounded(r.delta_pq, 2),
            "n": int(r.n),
        }

    return {
        "whose_boat": {r.setting: rates(r) for r in boat.itertuples() if not r.missing},
        "table3": {f"{r.test} vs {r.base}": rates(r) for r in table3.itertuples()},
        "invalid_verdicts": invalid,
        "judge_agreement": {
            r.aspect: {
                "n": int(r.n),
                "agreement": _rounded(r.agreement, 4),
                "cohen_kappa": _rounded(r.cohen_kappa, 4),
                "krippendorff_alpha": _rounded(r.krippendorff_alpha, 4),
            }
            for r in agreement.itertuples()
        },
    }


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:400]


def qualitative_examples(
    shown: pd.DataFrame, requests: list[Request], generations: pd.DataFrame, outcomes: pd.DataFrame, whose_boat
) -> list[str]:
    """One Markdown block per shown row: its prompt and gold persona, each system's response in Table 3 and in the
    first Whose Boat cell of the row's dataset (first persona side and source), and the row's Table 3 outcomes."""
    blocks = []
    for row in shown.itertuples():
        lines = [
            f"**{row.id}** ({row.question_type}) — {_cell_text(row.prompt)}",
            "",
            f"*Persona (gold):* {_cell_text(row.chosen_persona_gold)[:240] or '(none in the data)'}…",
            "",
            "| system | response |",
            "|---|---|",
        ]
        for system, setting, _, _ in requests:
            if setting in ("table3", f"{row.source}/{whose_boat.persona_sides[0]}/{whose_boat.persona_sources[0]}"):
                text = generations[
                    (generations.system == system.name) & (generations.setting == setting) & (generations.id == row.id)
                ].response
                if len(text):
                    lines.append(f"| {system.name} ({setting}) | {_cell_text(text.iloc[0])} |")
        judged = outcomes[(outcomes.id == row.id) & (outcomes.setting == "table3")]
        if len(judged):
            lines += [
                "",
                "Table 3 outcomes (P, Q): "
                + "; ".join(f"{r.test} vs {r.base}: {r.personalization}, {r.quality}" for r in judged.itertuples()),
            ]
        blocks.append("\n".join(lines))
    return blocks


def win_rate_table(outcomes: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per comparison (grouped by `keys`): P and Q W/T/L %, win rates, ΔPQ, n and invalid counts."""
    rows = []
    for key, group in outcomes.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), **summary_row(group.personalization, group.quality)})
    return pd.DataFrame(rows)


NUMBERS = ["p_win", "p_tie", "p_loss", "q_win", "q_tie", "q_loss", "p_wr", "q_wr", "delta_pq"]


def whose_boat_table(outcomes: pd.DataFrame, cells: list[WhoseBoatCell]) -> pd.DataFrame:
    """The Whose Boat table's numbers, one row per cell in configuration order (P and Q W/T/L %, win rates, ΔPQ,
    n); a cell the data lacks keeps NaN numbers and says why in `missing`. Last, the paper's average row: the mean
    of the judged cells' numbers."""
    rows = []
    for cell in cells:
        judged = outcomes[outcomes.setting == cell.setting]
        numbers = summary_row(judged.personalization, judged.quality) if len(judged) else {"n": 0}
        rows.append(
            {
                "setting": cell.setting,
                "dataset": cell.dataset,
                "side": cell.side,
                "source": cell.source,
                "base": f"{cell.dpo.model} + P_{cell.source}",
                "test": f"{cell.pt.model} + P_{cell.source}",
                **{k: numbers.get(k, float("nan")) for k in NUMBERS},
                "n": numbers["n"],
                "missing": cell.missing,
            }
        )
    table = pd.DataFrame(rows)
    judged = table[table.missing == ""]
    average = {
        "setting": "average",
        "dataset": "average",
        "side": "",
        "source": "",
        "base": "DPO",
        "test": "PT",
        **judged[NUMBERS].mean().to_dict(),
        "n": int(judged.n.sum()),
        "missing": "",
    }
    return pd.concat([table, pd.DataFrame([average])], ignore_index=True)


def whose_boat_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout of `whose_boat_table`: Dataset, π_base, π_test, Person. W/T/L, Quality W/T/L, ΔPQ, n;
    a cell the data lacks shows "—"."""

    def wtl(row, aspect):
        if row.missing:
            return "—"
        return "/".join(f"{row[f'{aspect}_{part}']:.1f}" for part in ("win", "tie", "loss"))

    return pd.DataFrame(
        {
            "Dataset": [r.dataset if r.setting == "average" else f"{r.dataset} {r.side}" for r in table.itertuples()],
            "π_base": list(table.base),
            "π_test": list(table.test),
            "Person. W/T/L": [wtl(r, "p") for _, r in table.iterrows()],
            "Quality W/T/L": [wtl(r, "q") for _, r in table.iterrows()],
            "ΔPQ": ["—" if r.missing else f"{r.delta_pq:+.1f}" for r in table.itertuples()],
            "n": list(table.n.astype(int)),
        }
    )


def formatted(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The paper's layout: `keys`, Person. W/T/L, Quality W/T/L (percent, one decimal), ΔPQ (signed), n."""

    def wtl(row, aspect):
        return "/".join(f"{row[f'{aspect}_{part}']:.1f}" for part in ("win", "tie", "loss"))

    out = table[keys].copy()
    out["Person. W/T/L"] = [wtl(r, "p") for _, r in table.iterrows()]
    out["Quality W/T/L"] = [wtl(r, "q") for _, r in table.iterrows()]
    out["ΔPQ"] = [f"{d:+.1f}" for d in table.delta_pq]
    out["n"] = table.n.astype(int)
    out["invalid (P/Q)"] = [f"{p}/{q}" for p, q in zip(table.p_invalid, table.q_invalid)]
    out.index = pd.Index([" / ".join(map(str, k)) for k in table[keys].itertuples(index=False)], name=" / ".join(keys))
    return out.drop(columns=keys)
