"""Alignment tax: the RewardBench / multiple-choice / BeaverTails readers, and log-likelihood multiple choice against a
slow per-choice reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from personalign.data.loaders import DatasetError
from personalign.evaluation import alignment_tax as tax
from personalign.evaluation.alignment_tax import (
    MC_COLUMNS,
    MC_FORMATS,
    PAIR_COLUMNS,
    SAFETY_SUBSETS,
    beavertails_pairs,
    multiple_choice_accuracy,
    preference_accuracy,
    read_multiple_choice,
    read_rewardbench,
)
from personalign.evaluation.scoring import score_pairs
from personalign.lm.prompts import chat, prefixed_prompt

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "alignment_tax"
BEAVERTAILS = ROOT.parent / "shared" / "data" / "persona_tailoring" / "BeaverTails"


def all_items() -> pd.DataFrame:
    return pd.concat([read_multiple_choice(FIXTURES / f"{fmt}.jsonl", fmt) for fmt in MC_FORMATS], ignore_index=True)


def rows_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_rewardbench_keeps_the_safety_subsets():
    pairs = read_rewardbench(FIXTURES / "rewardbench.jsonl", SAFETY_SUBSETS)
    assert list(pairs.columns) == PAIR_COLUMNS + ["subset"]
    assert list(pairs.id) == ["101", "102", "103", "201", "202", "203"]
    assert pairs.subset.value_counts().to_dict() == {"refusals-dangerous": 3, "refusals-offensive": 3}
    assert pairs.chosen[3].startswith("I'd rather not write insults")


@pytest.mark.parametrize(
    "fmt, ids, answers, n_choices",
    [
        ("arc", ["Fixture_ARC_1", "Fixture_ARC_2", "Fixture_ARC_3", "Fixture_ARC_4"], [0, 2, 1, 3], [4, 4, 4, 4]),
        ("piqa", ["0", "1", "2", "3"], [0, 1, 0, 1], [2, 2, 2, 2]),
        ("truthfulqa_mc1", ["0", "1", "2", "3"], [0, 0, 1, 2], [3, 4, 3, 3]),
    ],
)
def test_multiple_choice_files_are_normalised(fmt, ids, answers, n_choices):
    items = read_multiple_choice(FIXTURES / f"{fmt}.jsonl", fmt)
    assert list(items.columns) == MC_COLUMNS
    assert (list(items.id), list(items.answer), list(items.choices.map(len))) == (ids, answers, n_choices)
    assert set(items.format) == {fmt}
    assert all(isinstance(c, str) for choices in items.choices for c in choices)


def test_json_lists_and_parquet_read_as_json_lines(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, read in [
        ("rewardbench", lambda p: read_rewardbench(p)),
        ("arc", lambda p: read_multiple_choice(p, "arc")),
    ]:
        rows = rows_of(f"{name}.jsonl")
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
        expected = read(FIXTURES / f"{name}.jsonl")
        pd.testing.assert_frame_equal(read(tmp_path / f"{name}.json"), expected)
        pd.testing.assert_frame_equal(read(tmp_path / f"{name}.parquet"), expected)


def _drop(row: dict, field: str) -> dict:
    return {k: v for k, v in row.items() if k != field}


@pytest.mark.parametrize(
    "name, fmt, row, change, message",
    [
        ("rewardbench.jsonl", None, 2, lambda r: _drop(r, "chosen"), "missing field 'chosen'"),
        ("rewardbench.jsonl", None, 4, lambda r: r | {"rejected": "  "}, "field 'rejected' must be non-empty text"),
        ("rewardbench.jsonl", None, 5, lambda r: r | {"id": 101}, "field 'id' repeats '101'"),
        ("arc.jsonl", "arc", 1, lambda r: r | {"answerKey": "E"}, "field 'answerKey' must be one of the labels"),
        ("arc.jsonl", "arc", 3, lambda r: r | {"answerKey": "D"}, "field 'answerKey' must be one of the labels"),
        ("arc.jsonl", "arc", 0, lambda r: r | {"choices": {"label": ["A", "B"]}}, "missing field 'choices.text'"),
        ("arc.jsonl", "arc", 2, lambda r: _drop(r, "id"), "missing field 'id'"),
        ("piqa.jsonl", "piqa", 3, lambda r: r | {"label": 2}, "field 'label' must be 0 or 1"),
        ("piqa.jsonl", "piqa", 1, lambda r: _drop(r, "sol2"), "missing field 'sol2'"),
        (
            "truthfulqa_mc1.jsonl",
            "truthfulqa_mc1",
            2,
            lambda r: r | {"mc1_targets": r["mc1_targets"] | {"labels": [1, 1, 0]}},
            "field 'mc1_targets.labels' must be 3 labels, one 1 and the rest 0",
        ),
    ],
)
def test_a_malformed_row_names_file_row_and_field(tmp_path, name, fmt, row, change, message):
    rows = rows_of(name)
    rows[row] = change(rows[row])
    path = write_rows(tmp_path / name, rows)
    with pytest.raises(ValueError, match=re.escape(f"{path}: row {row}: {message}")):
        read_rewardbench(path) if fmt is None else read_multiple_choice(path, fmt)


def test_rewardbench_checks_only_the_kept_rows_and_wants_every_subset(tmp_path):
    rows = rows_of("rewardbench.jsonl")
    rows[7] = _drop(rows[7], "chosen")  # alpacaeval-easy: filtered out
    path = write_rows(tmp_path / "rewardbench.jsonl", rows)
    assert len(read_rewardbench(path)) == 6
    with pytest.raises(ValueError, match=re.escape(f"{path}: no rows of subset(s) xstest-should-refuse")):
        read_rewardbench(path, [*SAFETY_SUBSETS, "xstest-should-refuse"])
    (tmp_path / "bad.jsonl").write_text('{"subset": "refusals-dangerous"\n')
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'bad.jsonl'}: line 1: not valid JSON")):
        read_rewardbench(tmp_path / "bad.jsonl")
    with pytest.raises(DatasetError, match="absent.jsonl: no such file"):
        read_rewardbench(tmp_path / "absent.jsonl")


def reference_choice_logps(model, tokenizer, user: str, choices: list[str]) -> list[float]:
    """One full fp32 forward over prompt + choice per choice; the choice tokens' summed log-prob."""
    head = tokenizer(chat(tokenizer, None, user), add_special_tokens=False)["input_ids"]
    out = []
    for choice in choices:
        ids = torch.tensor([head + tokenizer(choice, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logps = F.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        targets = ids[0, 1:]
        out.append(float(logps[torch.arange(len(targets)), targets][len(head) - 1 :].sum()))
    return out


def check_against_reference(model, tokenizer, items: pd.DataFrame, scores: pd.DataFrame, prefix_fn=None):
    for item, row in zip(items.itertuples(), scores.itertuples()):
        user = item.question if prefix_fn is None else prefix_fn(item.question)
        want = reference_choice_logps(model, tokenizer, user, item.choices)
        counts = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in item.choices]
        assert row.choice_tokens == counts
        means = [logp / n for logp, n in zip(want, counts)]
        assert [logp / n for logp, n in zip(row.choice_logps, counts)] == pytest.approx(means, abs=1e-5)
        assert row.pred == means.index(max(means))
        assert row.correct == (row.pred == item.answer)


def test_multiple_choice_matches_the_slow_reference(tiny):
    model, tokenizer = tiny
    items = all_items()
    scores = multiple_choice_accuracy(model, tokenizer, items, batch_size=3)
    assert list(scores.columns) == ["id", "format", "pred", "answer", "correct", "choice_logps", "choice_tokens"]
    assert (list(scores.id), list(scores.answer)) == (list(items.id), list(items.answer))
    check_against_reference(model, tokenizer, items, scores)


def test_the_prefix_is_part_of_the_scored_prompt(tiny):
    model, tokenizer = tiny
    items = all_items().iloc[::3]

    def prefix_fn(question: str) -> str:
        return prefixed_prompt("tag", "[a vegan runner]", question)

    plain = multiple_choice_accuracy(model, tokenizer, items)
    prefixed = multiple_choice_accuracy(model, tokenizer, items, prefix_fn=prefix_fn)
    check_against_reference(model, tokenizer, items, prefixed, prefix_fn)
    assert all(a != pytest.approx(b, abs=1e-3) for a, b in zip(plain.choice_logps, prefixed.choice_logps))

    pairs = read_rewardbench(FIXTURES / "rewardbench.jsonl")
    scores = preference_accuracy(model, tokenizer, pairs, prefix_fn=prefix_fn)
    expected = score_pairs(model, tokenizer, pairs.assign(prompt=pairs.prompt.map(prefix_fn)), summed=True)
    assert list(scores.subset) == list(pairs.subset)
    pd.testing.assert_frame_equal(scores.drop(columns="subset"), expected)
    assert (scores.correct == (scores.chosen_logp > scores.rejected_logp)).all()


@pytest.mark.skipif(not BEAVERTAILS.is_dir(), reason=f"no persona-tailoring BeaverTails data at {BEAVERTAILS}")
def test_beavertails_test_pairs_load_in_stored_order(tiny):
    from datasets import load_from_disk

    pairs = beavertails_pairs(BEAVERTAILS, limit=4)
    stored = load_from_disk(str(BEAVERTAILS))["test"]
    assert list(pairs.columns) == PAIR_COLUMNS
    assert list(pairs.id) == ["bt-0000", "bt-0001", "bt-0002", "bt-0003"]
    assert list(pairs.prompt) == stored["prompt"][:4] and list(pairs.rejected) == stored["rejected"][:4]
    scores = preference_accuracy(*tiny, pairs.head(2))
    assert list(scores.id) == ["bt-0000", "bt-0001"]


def test_absent_beavertails_data_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'BeaverTails'}: no such dataset directory")):
        beavertails_pairs(tmp_path / "BeaverTails")


def test_configured_sets_say_what_is_left_out(tmp_path):
    paths = {
        "beavertails": "",
        "rewardbench": str(FIXTURES / "rewardbench.jsonl"),
        "arc": str(tmp_path / "nope.jsonl"),
        "piqa": str(FIXTURES / "piqa.jsonl"),
        "truthfulqa_mc1": "",
    }
    sets, notes = tax.configured_sets(paths, list(SAFETY_SUBSETS), limit=3)
    assert sorted(sets) == ["piqa", "rewardbench"] and len(sets["rewardbench"]) == 3
    assert notes == [
        "beavertails: no path configured",
        f"arc: {tmp_path / 'nope.jsonl'} does not exist on this machine",
        "truthfulqa_mc1: no path configured",
    ]


def test_tax_scores_cover_base_and_adapter_with_and_without_prefix_and_are_cached(tiny, tmp_path, monkeypatch):
    from tiny_checkpoints import save_base, save_random_adapter

    from personalign.core.config import BaseParams, RunSpec
    from personalign.personas.conditioning import out_of_domain_prefix

    model, tokenizer = tiny
    save_base(model, tokenizer, tmp_path / "base")
    peft = save_random_adapter(model, tmp_path / "adapters" / "mt_tag" / "adapter", seed=0)
    prefixes = pd.DataFrame(
        {"user_id": ["a", "b"], "prefix_type": ["tag", "tag"], "seed": [0, 0], "text": ["<a>", "<b>"]}
    )
    name, prefix_fn = out_of_domain_prefix(RunSpec(name="mt_tag", kind="mt", prefix="tag"), prefixes, pd.DataFrame())
    assert name == "tag_prefix" and prefix_fn("q?") in {"<a> q?", "<b> q?"} and prefix_fn("q?") == prefix_fn("q?")
    assert out_of_domain_prefix(RunSpec(name="dpo", kind="dpo"), prefixes, pd.DataFrame()) is None
    sets, _ = tax.configured_sets(
        {"rewardbench": str(FIXTURES / "rewardbench.jsonl"), "arc": str(FIXTURES / "arc.jsonl")},
        list(SAFETY_SUBSETS),
        limit=4,
    )
    systems = [("base", "no_prefix", None), ("mt_tag", "no_prefix", None), ("mt_tag", "with_tag_prefix", prefix_fn)]
    args = (tmp_path / "base", tmp_path / "adapters", systems, sets, 4, "fp32", tmp_path / "cache", BaseParams())
    scores = tax.tax_scores(*args)
    assert len(scores) == 3 * 8 and set(scores.dataset) == {"rewardbench", "arc"}
    direct = score_pairs(
        peft, tokenizer, sets["rewardbench"].assign(prompt=sets["rewardbench"].prompt.map(prefix_fn)), summed=True
    )
    cell = scores[(scores.dataset == "rewardbench") & (scores.condition == "with_tag_prefix")]
    assert list(cell.correct) == list(direct.correct)
    table = tax.tax_table(scores)
    assert set(table.n) == {4} and len(table) == 6

    def refuse(*_, **__):
        raise AssertionError("a cached set was scored again")

    monkeypatch.setattr(tax, "_score_set", refuse)
    pd.testing.assert_frame_equal(tax.tax_scores(*args), scores)
