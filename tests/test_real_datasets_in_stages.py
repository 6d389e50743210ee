"""How stages 2-6 treat real datasets: per-dataset training and retrieval, prefixes of users without a persona,
the Whose Boat cells per dataset (a persona the data lacks stays "—"), its table, intervals and paper comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign.analysis import judgment_tables, paper_claims, wikipersona_figures
from personalign.analysis.published import PAPER_DATASET, WHOSE_BOAT_TABLE
from personalign.core.config import GenerateJudgeParams, ParamsError, RunSpec, parse_params
from personalign.evaluation import comparisons as cmp
from personalign.evaluation.accuracy import seen_users
from personalign.personas import prefixes as px
from personalign.personas.pair_personas import retrieved_personas
from personalign.stats.verdicts import verdict_table
from personalign.tuning.training import TrainingDataError, training_pairs


def real_records() -> pd.DataFrame:
    """Two datasets, one user each; the second's test pairs were released without responses or gold personas."""
    rows = []
    for source in ("bt", "mnem"):
        for split in ("train", "test"):
            for i in range(3):
                labelled = not (source == "mnem" and split == "test")
                rows.append(
                    {
                        "id": f"{source}-{split}-{i:06d}",
                        "source": source,
                        "user_id": source,
                        "split": split,
                        "fold": 0,
                        "question_type": "none",
                        "prompt": f"{source} question {i} about {'boats' if i else 'trains'}?",
                        "chosen": f"good {source} answer {i}" if labelled else "",
                        "rejected": f"bad {source} answer {i}" if labelled else "",
                        "chosen_persona_gold": f"The user likes {source} detail {i}." if labelled else "",
                        "rejected_persona_gold": f"The user dislikes {source} detail {i}." if labelled else "",
                        "chosen_persona_retr": f"The user likes retrieved {source} {i}.",
                        "rejected_persona_retr": f"The user dislikes retrieved {source} {i}.",
                    }
                )
    return pd.DataFrame(rows)


def test_a_run_with_a_source_trains_and_counts_as_seen_on_that_dataset_only():
    records = real_records()
    pairs = training_pairs(RunSpec(name="pt_bt", kind="pt", prefix="gold", source="bt"), records)
    assert list(pairs.id) == [f"bt-train-{i:06d}" for i in range(3)]
    assert "The user likes bt detail 0." in pairs.prompt.iloc[0]
    with pytest.raises(TrainingDataError, match="source 'hhh' has no training pairs"):
        training_pairs(RunSpec(name="dpo_hhh", kind="dpo", source="hhh"), records)
    test = records[records.split == "test"]
    assert (
        list(seen_users(RunSpec(name="pt_bt", kind="pt", prefix="gold", source="bt"), test)) == [True] * 3 + [False] * 3
    )


def test_retrieval_stays_within_the_test_pairs_dataset():
    class WordEmbedder:  # a bag of words: "trains" and "boats" questions are each other's nearest within a source
        def encode(self, texts):
            vocab = sorted({w for t in texts for w in t.split()} | {"bt", "mnem", "boats?", "trains?"})
            vectors = np.array([[float(w in t.split()) for w in vocab] for t in texts])
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    records = real_records()
    train, test = records[records.split == "train"], records[records.split == "test"]
    personas = pd.DataFrame(
        {
            "id": train.id,
            "chosen_persona": [f"c {i}" for i in train.id],
            "rejected_persona": [f"r {i}" for i in train.id],
        }
    )
    retrieved = retrieved_personas(test, train, personas, WordEmbedder())
    source_of = dict(zip(records.id, records.source))
    assert all(source_of[t] == source_of[s] for t, s in zip(retrieved.id, retrieved.retr_source_id))
    assert retrieved.set_index("id").loc["mnem-test-000000", "retr_source_id"] == "mnem-train-000000"


def test_users_without_tag_or_gold_get_only_the_prefixes_they_can_have():
    personas = pd.DataFrame(
        [
            {"user_id": "bt", "name": "bt", "tag": "", "gold": ""},
            {"user_id": "mnem", "name": "mnem", "tag": "", "gold": ""},
        ]
    )
    rows = px.fixed_prefixes(personas, [0])
    assert sorted({r["prefix_type"] for r in rows}) == ["name", "none"]
    one_user = px.prefix_table(
        [r for r in rows if r["user_id"] == "bt"]
        + [{"user_id": "bt", "prefix_type": "persona", "seed": 0, "text": "x", "source_user_id": "bt"}]
    )
    assert px.shuffled_prefixes(one_user, 0) == []  # nobody to swap with
    scores = px.rouge_scores(px.prefix_table(rows), personas.assign(axes=[[], []]), 0)
    assert scores.empty and list(px.rouge_table(scores).iloc[0]) == ["absent"] * 4


def whose_boat_settings(**changes) -> GenerateJudgeParams:
    raw = {
        "whose_boat": {
            "runs": {"bt": {"dpo": "dpo_bt", "pt": "pt_bt"}, "mnem": {"dpo": "dpo_m", "pt": "pt_m"}},
            "persona_sources": ["dataset_retr", "dataset_pair"],
        },
        "prefix_table": {"mt_run": ""},
    }
    raw.update(changes)
    return parse_params({"generate_judge": raw}).generate_judge


def test_whose_boat_cells_per_dataset_keep_missing_personas_missing():
    records = real_records()
    rows = records[records.split == "test"]
    cells = cmp.whose_boat_cells(rows, None, whose_boat_settings().whose_boat)
    assert [c.setting for c in cells] == [
        f"{d}/{side}/{src}"
        for d in ("bt", "mnem")
        for side in ("chosen", "rejected")
        for src in ("dataset_retr", "dataset_pair")
    ]
    by_setting = {c.setting: c for c in cells}
    assert by_setting["bt/rejected/dataset_pair"].personas[0] == "The user dislikes bt detail 0."
    assert (
        set(by_setting["mnem/chosen/dataset_retr"].rows.source) == {"mnem"}
        and not by_setting["mnem/chosen/dataset_retr"].missing
    )
    assert "no chosen persona (dataset_pair)" in by_setting["mnem/chosen/dataset_pair"].missing
    assert by_setting["mnem/chosen/dataset_pair"].personas == ()
    assert by_setting["bt/chosen/dataset_retr"].pt == cmp.System("PT + P", "pt_bt", "pt")


def test_comparison_runs_and_datasets_are_checked_before_compute():
    settings = whose_boat_settings()
    cmp.check_comparison_runs(settings, ["dpo_bt", "pt_bt", "dpo_m", "pt_m"], {"bt", "mnem"})
    with pytest.raises(cmp.ComparisonInputError, match=r"whose_boat.runs.mnem.pt = 'pt_m' is not in train.runs"):
        cmp.check_comparison_runs(settings, ["dpo_bt", "pt_bt", "dpo_m"], {"bt", "mnem"})
    with pytest.raises(cmp.ComparisonInputError, match="dataset 'mnem' has no test prompts"):
        cmp.check_comparison_runs(settings, ["dpo_bt", "pt_bt", "dpo_m", "pt_m"], {"bt"})
    with pytest.raises(ParamsError, match="persona_sources"):
        parse_params({"generate_judge": {"whose_boat": {"persona_sources": ["paper"]}}})


def judged(cells, wins: dict[str, list[str]]) -> pd.DataFrame:
    out = []
    for cell in cells:
        if cell.missing:
            continue
        for i, (p, q) in enumerate(zip(wins[cell.setting], reversed(wins[cell.setting]))):
            out.append(
                {
                    "id": f"{cell.setting}:{i}",
                    "user_id": cell.dataset,
                    "setting": cell.setting,
                    "test": "PT + P",
                    "base": "DPO + P",
                    "personalization": p,
                    "quality": q,
                }
            )
    return pd.DataFrame(out)


def test_the_whose_boat_table_has_the_papers_layout_an_average_row_and_dashes():
    rows = real_records()[lambda r: r.split == "test"]
    cells = cmp.whose_boat_cells(rows, None, whose_boat_settings().whose_boat)
    outcomes = judged(cells, {c.setting: ["a", "a", "b"] if c.dataset == "bt" else ["a", "tie", "tie"] for c in cells})
    table = judgment_tables.whose_boat_table(outcomes, cells)
    bt = table.set_index("setting").loc["bt/chosen/dataset_retr"]
    # P: a, a, b -> 66.7/0/33.3, win rate 2/3; Q (reversed): b, a, a -> the same; ΔPQ = (2/3 + 2/3 - 1) * 100
    assert (round(bt.p_win, 1), round(bt.p_loss, 1), round(bt.delta_pq, 2)) == (66.7, 33.3, 33.33)
    mnem = table.set_index("setting").loc["mnem/chosen/dataset_retr"]  # P: a, tie, tie; Q: tie, tie, a
    assert mnem.p_wr == 1.0 and mnem.q_wr == 1.0 and mnem.delta_pq == 100.0
    assert table.set_index("setting").loc["mnem/chosen/dataset_pair"].n == 0
    average = table.iloc[-1]
    judged_cells = table[(table.missing == "") & (table.setting != "average")]
    assert average.setting == "average" and len(judged_cells) == 6
    assert average.delta_pq == pytest.approx(judged_cells.delta_pq.mean())
    layout = judgment_tables.whose_boat_layout(table)
    assert list(layout.columns) == ["Dataset", "π_base", "π_test", "Person. W/T/L", "Quality W/T/L", "ΔPQ", "n"]
    assert layout.iloc[0].tolist()[:6] == [
        "bt chosen",
        "dpo_bt + P_dataset_retr",
        "pt_bt + P_dataset_retr",
        "66.7/0.0/33.3",
        "66.7/0.0/33.3",
        "+33.3",
    ]
    assert layout[layout.Dataset == "mnem chosen"].ΔPQ.tolist() == ["+100.0", "—"]


def test_intervals_and_the_paper_comparison_of_the_whose_boat_table():
    rows = real_records()[lambda r: r.split == "test"]
    cells = cmp.whose_boat_cells(rows, None, whose_boat_settings().whose_boat)
    outcomes = judged(cells, {c.setting: ["a", "a", "b"] for c in cells})
    table = judgment_tables.whose_boat_table(outcomes, cells)
    intervals = judgment_tables.win_rate_intervals(outcomes, 0, 200)
    shown = judgment_tables.whose_boat_intervals(table, intervals)
    first = shown.iloc[0]
    assert first["ΔPQ"].startswith("+33.3 [") and first["Person. win rate"].startswith("66.7 [")
    assert shown[shown.Dataset == "mnem chosen"]["ΔPQ"].tolist()[1] == "—"
    versus = judgment_tables.whose_boat_vs_paper(
        table, WHOSE_BOAT_TABLE, {"bt": "bt", "mnem": "mnemonic", "average": "average"}
    )
    # bt: 4 cells; mnem: the two retrieved-persona cells (the paper has no Mnemonic P_gold cells); their average
    assert list(versus.cell) == [
        "bt/chosen/dataset_retr",
        "bt/chosen/dataset_pair",
        "bt/rejected/dataset_retr",
        "bt/rejected/dataset_pair",
        "mnem/chosen/dataset_retr",
        "mnem/rejected/dataset_retr",
        "average of these 6 cells",
    ]
    first, average = versus.iloc[0], versus.iloc[-1]
    assert (first["paper ΔPQ"], first["ours ΔPQ"], first["difference"]) == (21.3, 33.3, 12.0)
    assert average["paper ΔPQ"] == round((21.3 + 12.5 + 17.9 + 21.3 + 20.7 + 13.3) / 6, 1)  # not the paper's 18.4
    claims = verdict_table(paper_claims.whose_boat_claims(outcomes, table, 0, 200))
    assert len(claims) == len(table) - 1 and (claims.n[claims.verdict.str.startswith("not tested")] == 0).all()
    assert claims.n.max() == 3 and (claims.resampled[claims.n > 0] == "pairs").all()  # one user per cell
    assert PAPER_DATASET["beavertails"] == "bt"


def test_demographics_without_attributes_draw_a_note_not_an_error():
    table, fig = wikipersona_figures.demographics(
        pd.DataFrame(columns=["system", "condition", "user_id", "accuracy"]),
        pd.DataFrame({"user_id": ["bt"], "demographics": [{}]}),
        "base",
        "none",
        ["age"],
    )
    assert table.empty and fig.texts
    assert (
        paper_claims.demographic_claims(table)[0].missing == "the personas have none of analysis.demographic_attributes"
    )


def test_a_dataset_path_that_does_not_exist_stops_before_compute(tmp_path):
    import yaml

    from personalign.pipeline.cli import check_params, main

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "profiles/persona_tailoring.yaml").read_text())
    params["build_data"]["datasets"]["mnemonic"]["path"] = str(tmp_path / "nowhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"build_data.datasets.mnemonic.path = '.*nowhere': no such file"):
        check_params(tmp_path / "params.yaml")
    assert main(["run", "build_data", "--params", str(tmp_path / "params.yaml")]) == 2
    bad = dict(
        params,
        build_data=dict(params["build_data"], datasets={"Big Set": params["build_data"]["datasets"]["mnemonic"]}),
    )
    with pytest.raises(ParamsError, match="dataset name 'Big Set' must be lowercase"):
        parse_params(bad)
    with pytest.raises(ParamsError, match="source 'datasets' needs at least one entry"):
        parse_params(dict(params, build_data=dict(params["build_data"], datasets={})))
