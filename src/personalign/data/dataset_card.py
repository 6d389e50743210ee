"""Dataset card: the statistics of WikiPersona App. E (counts, y_w/y_l lengths, agreement per axis) and a figure."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from personalign.core.figures import apply_style, legend


def _words(texts: pd.Series) -> np.ndarray:
    return texts.str.split().str.len().to_numpy()


def agreement_per_axis(records: pd.DataFrame) -> pd.DataFrame:
    """Table 9 analog: for each divergent (prompt, persona) the number of the axis's personas whose y_w is the
    same response; mean and std per axis, beside the value if everyone chose uniformly at random."""
    div = records[records.question_type == "divergent"].assign(axis=lambda d: d["axes"].str[0])
    rows = []
    for axis, group in div.groupby("axis", sort=True):
        counts = group.groupby(["prompt", "chosen"]).user_id.transform("count").to_numpy()
        personas = group.user_id.nunique()
        rows.append(
            {
                "axis": axis,
                "personas": personas,
                "prompts": group.prompt.nunique(),
                "mean_same_winner": round(float(counts.mean()), 4),
                "std_same_winner": round(float(counts.std(ddof=0)), 4),
            }
        )
    return pd.DataFrame(rows, columns=["axis", "personas", "prompts", "mean_same_winner", "std_same_winner"])


def length_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Word-length statistics of y_w and y_l by question type."""
    rows = []
    for qtype, group in records.groupby("question_type", sort=True):
        for side in ("chosen", "rejected"):
            n = _words(group[side])
            rows.append(
                {
                    "question_type": qtype,
                    "response": "y_w" if side == "chosen" else "y_l",
                    "mean_words": round(float(n.mean()), 2),
                    "median_words": float(np.median(n)),
                    "std_words": round(float(n.std(ddof=0)), 2),
                }
            )
        diff = _words(group.chosen) - _words(group.rejected)
        rows.append(
            {
                "question_type": qtype,
                "response": "y_w - y_l",
                "mean_words": round(float(diff.mean()), 2),
                "median_words": float(np.median(diff)),
                "std_words": round(float(diff.std(ddof=0)), 2),
            }
        )
    return pd.DataFrame(rows)


def card_statistics(records: pd.DataFrame, personas: pd.DataFrame, candidates: list[dict], k: int) -> dict:
    """Every number of the dataset card, JSON-ready (it is also the stage's DVC metrics file)."""
    funnel: Counter = Counter()
    for q in candidates:
        funnel.update(q["funnel"])
    pairs = records.groupby(["split", "question_type"]).size()
    per_persona = records.groupby(["user_id", "split"]).size().unstack(fill_value=0)
    agreement = agreement_per_axis(records)
    return {
        "personas": int(len(personas)),
        "axes": sorted({a for axes in personas["axes"] for a in axes}),
        "questions": {t: int(sum(1 for q in candidates if q["question_type"] == t)) for t in ("personal", "divergent")},
        "pairs": {f"{s}/{t}": int(n) for (s, t), n in pairs.items()},
        "pairs_total": int(len(records)),
        "pairs_per_persona": {
            s: {"min": int(per_persona[s].min()), "max": int(per_persona[s].max())} for s in per_persona.columns
        },
        "candidate_funnel": dict(sorted((k_, int(v)) for k_, v in funnel.items())),
        "y_w_longer_share": round(float((_words(records.chosen) > _words(records.rejected)).mean()), 4),
        "agreement_uniform_baseline": round(float(np.mean(agreement.personas) / k), 4) if len(agreement) else None,
        "agreement_per_axis": agreement.to_dict(orient="records"),
        "lengths": length_summary(records).to_dict(orient="records"),
    }


def card_figure(records: pd.DataFrame, k: int):
    """Three panels: y_w/y_l length distributions, y_w - y_l length difference, agreement per axis."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    long = pd.concat(
        [
            pd.DataFrame({"words": _words(records[side]), "response": label, "question type": records.question_type})
            for side, label in (("chosen", "y_w"), ("rejected", "y_l"))
        ],
        ignore_index=True,
    )
    sns.histplot(long, x="words", hue="response", element="step", stat="count", common_bins=True, ax=axes[0])
    axes[0].set_title("Response length (words)")
    diff = pd.DataFrame(
        {"y_w - y_l (words)": _words(records.chosen) - _words(records.rejected), "question type": records.question_type}
    )
    sns.boxplot(
        diff, x="question type", y="y_w - y_l (words)", ax=axes[1], order=sorted(diff["question type"].unique())
    )
    axes[1].axhline(0, color="grey", lw=0.8, ls="--")
    axes[1].set_title("Length difference per pair")
    agreement = agreement_per_axis(records)
    if len(agreement):
        sns.barplot(agreement, x="axis", y="mean_same_winner", ax=axes[2], color=sns.color_palette()[2])
        axes[2].errorbar(
            range(len(agreement)), agreement.mean_same_winner, yerr=agreement.std_same_winner, fmt="none", c="k", lw=1
        )
        axes[2].axhline(agreement.personas.mean() / k, color="grey", lw=0.8, ls="--", label="uniform choice")
        legend(axes[2], loc="upper right")
    axes[2].set_title("Personas sharing the same y_w (divergent)")
    axes[2].set_ylabel("mean ± sd")
    fig.tight_layout()
    return fig


def card_markdown(stats: dict, params: dict) -> str:
    """The dataset card as Markdown: what the data is, how it was built, and its statistics."""
    build = params["build_data"]
    lines = [
        "# Dataset card: built-in persona preference dataset",
        "",
        f"Built by stage 1 (`build_data`) from the built-in world of fictional personas with base model "
        f"`{params['base']['model']}`, judge `{params['judge']['backend']}` (noise {params['judge']['noise']}), "
        f"seed {params['base']['seed']}. Axes: {', '.join(stats['axes'])}; {stats['personas']} personas.",
        "",
        "## Counts",
        "",
        pd.DataFrame([stats["questions"]]).to_markdown(index=False),
        "",
        pd.Series(stats["pairs"], name="pairs").rename_axis("split/question type").to_frame().to_markdown(),
        "",
        "Pairs per persona: "
        + "; ".join(f"{s}: {v['min']}–{v['max']}" for s, v in stats["pairs_per_persona"].items())
        + f". Total pairs: {stats['pairs_total']}.",
        "",
        "## Candidate funnel",
        "",
        f"{build['candidates_per_question']} candidates per question → drop short (< {build['min_response_words']} "
        f"words) and duplicate → tightest quality span of {build['quality_keep']} → k-means selection of "
        f"{build['diversity_k']}.",
        "",
        pd.Series(stats["candidate_funnel"], name="count").rename_axis("step").to_frame().to_markdown(),
        "",
        "## Lengths (words)",
        "",
        pd.DataFrame(stats["lengths"]).to_markdown(index=False),
        "",
        f"y_w is longer than y_l in {stats['y_w_longer_share']:.1%} of pairs.",
        "",
        "## Agreement per axis (WikiPersona Table 9 analog)",
        "",
        "Number of the axis's personas preferring the same y as y_w, per divergent (prompt, persona); smaller means "
        f"less agreement. If every persona chose uniformly among the k candidates the mean would be about "
        f"{stats['agreement_uniform_baseline']}.",
        "",
        pd.DataFrame(stats["agreement_per_axis"]).to_markdown(index=False)
        if stats["agreement_per_axis"]
        else "(no divergent questions)",
        "",
    ]
    return "\n".join(lines)


def datasets_statistics(
    records: pd.DataFrame, personas: pd.DataFrame, counts: dict[str, dict[str, int]], notes: list[str]
) -> dict:
    """The card of real datasets, JSON-ready: per source the rows read and used (by split), users, pairs without
    responses, and the notes of its loader; lengths over labelled pairs."""
    labelled = records[records.chosen.str.strip() != ""]
    per_source = {}
    for source, group in records.groupby("source", sort=True):
        per_source[source] = {
            "users": int(group.user_id.nunique()),
            "pairs": {s: int(n) for s, n in group.groupby("split").size().items()},
            "pairs_without_responses": int((group.chosen.str.strip() == "").sum()),
            "with_persona": {
                c: int((group[c].str.strip() != "").sum())
                for c in (
                    "chosen_persona_gold",
                    "rejected_persona_gold",
                    "chosen_persona_retr",
                    "rejected_persona_retr",
                )
            },
            "loader_counts": dict(sorted(counts.get(source, {}).items())),
        }
    return {
        "sources": per_source,
        "users": int(len(personas)),
        "pairs_total": int(len(records)),
        "y_w_longer_share": round(float((_words(labelled.chosen) > _words(labelled.rejected)).mean()), 4)
        if len(labelled)
        else None,
        "lengths": length_summary(labelled.assign(question_type=labelled.source))
        .rename(columns={"question_type": "source"})
        .to_dict(orient="records"),
        "notes": list(notes),
    }


def datasets_markdown(stats: dict, params: dict) -> str:
    """The dataset card of real datasets as Markdown: where each came from, what was used, what it lacks."""
    specs = params["build_data"]["datasets"]
    lines = [
        "# Dataset card: real preference datasets",
        "",
        f"Loaded by stage 1 (`build_data`, `source: datasets`), seed {params['base']['seed']}. "
        f"{stats['users']} users, {stats['pairs_total']} pairs in the canonical table.",
        "",
    ]
    for source, s in stats["sources"].items():
        spec = specs[source]
        drawn = ", ".join(
            f"{k} {'all' if spec[k] is None else spec[k]}" for k in ("train", "val", "test", "sft_train", "sft_val")
        )
        lines += [
            f"## {source}",
            "",
            f"Format `{spec['format']}` from `{spec['path']}`; rows drawn: {drawn}.",
            "",
            pd.Series(s["pairs"], name="pairs").rename_axis("split").to_frame().to_markdown(),
            "",
            f"Users: {s['users']}. Pairs without responses: {s['pairs_without_responses']}.",
            "",
            pd.Series(s["with_persona"], name="pairs with text").rename_axis("persona field").to_frame().to_markdown(),
            "",
            "Loader counts (every row read, drawn, filtered):",
            "",
            pd.Series(s["loader_counts"], name="rows").rename_axis("count").to_frame().to_markdown(),
            "",
        ]
    lines += ["## Lengths (words, labelled pairs)", "", pd.DataFrame(stats["lengths"]).to_markdown(index=False), ""]
    if stats["y_w_longer_share"] is not None:
        lines += [f"y_w is longer than y_l in {stats['y_w_longer_share']:.1%} of labelled pairs.", ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in stats["notes"]] + [""]
    return "\n".join(lines)
