"""The persona-tailoring loader (HF `save_to_disk` DatasetDicts of the "Whose Boat Does it Float?" releases), the
persona-inference loader, and `load_datasets`, which merges configured datasets into one canonical table.

Fixtures are JSON objects (split -> rows) under tests/fixtures/loaders/persona_tailoring, turned into `save_to_disk`
directories in tmp_path; malformed variants are small, named patches of the valid object. The real releases under
../shared/data/persona_tailoring are checked when that directory is on the machine."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign.core.config import DatasetSpec
from personalign.core.records import PERSONA_FIELDS, RECORD_FIELDS, validate_rows
from personalign.core.seeding import stable_seed
from personalign.data.loaders import DatasetError, load_persona_inference
from personalign.data.loaders.configured import load_datasets
from personalign.data.loaders.persona_tailoring import COLUMNS, load_persona_tailoring

FIX = Path(__file__).parent / "fixtures" / "loaders"
PT = FIX / "persona_tailoring"
PSOUPS = FIX / "pairwise" / "valid"  # train rows 0, 1, 3 (row 2 has identical responses), test rows 0, 1
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "persona_tailoring"

CANONICAL = {"sft_train": "sft_train", "sft_val": "sft_val", "dpo_train": "train", "dpo_val": "val", "test": "test"}
ALL = {"train": None, "val": None, "test": None, "sft_train": None, "sft_val": None}
LABELLED = ["chosen", "rejected", "chosen_persona_gold", "rejected_persona_gold"]


def fixture(name: str) -> dict[str, list[dict]]:
    return json.loads((PT / name).read_text(encoding="utf-8"))


def save(tmp_path: Path, splits: dict[str, list[dict]], name: str = "ds") -> Path:
    """The `save_to_disk` directory of a DatasetDict holding `splits` (split -> rows)."""
    from datasets import Dataset, DatasetDict

    path = tmp_path / name
    DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("pt"), fixture("valid.json"), "valid")


@pytest.fixture(scope="module")
def unlabelled_dir(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("pt"), fixture("unlabelled_test.json"), "unlabelled")


def load(path: Path, sizes: dict | None = None, seed: int = 0, name: str = "toy"):
    return load_persona_tailoring(name, path, ALL if sizes is None else sizes, np.random.default_rng(seed))


def check_records(records: pd.DataFrame, where: str) -> None:
    validate_rows(records.to_dict("records"), RECORD_FIELDS, where)
    assert records.id.is_unique and list(records.id) == sorted(records.id)


# ---------------------------------------------------------------- the valid fixture


def test_valid_fixture_ids_splits_and_columns(valid_dir):
    data = load(valid_dir, name="toy")
    check_records(data.records, "toy")
    raw = fixture("valid.json")
    expected = sorted(f"toy-{split}-{i:06d}" for split in CANONICAL for i in range(len(raw[split])))
    assert list(data.records.id) == expected  # fewshot rows are not records
    for rec in data.records.to_dict("records"):
        _, split, row = rec["id"].split("-")
        assert rec["split"] == CANONICAL[split]
        assert {c: rec[c] for c in COLUMNS} == raw[split][int(row)]  # every text and persona column carried over
        assert rec["user_id"] == rec["source"] == rec["user_name"] == "toy"
        assert (rec["fold"], rec["axes"], rec["question_type"]) == (0, [], "none")
    assert data.records.split.value_counts().to_dict() == {
        "train": 4,
        "sft_train": 3,
        "test": 3,
        "val": 2,
        "sft_val": 2,
    }
    validate_rows(data.personas.to_dict("records"), PERSONA_FIELDS, "toy personas")
    assert data.personas.to_dict("records") == [
        {"user_id": "toy", "name": "toy", "tag": "", "axes": [], "category": "dataset", "gold": "", "demographics": {}}
    ]


def test_valid_fixture_counts_and_notes(valid_dir):
    data = load(valid_dir)
    assert data.counts == {
        "fewshot_rows": 2,
        "fewshot_unused": 2,
        "sft_train_rows": 3,
        "sft_train_not_drawn": 0,
        "sft_val_rows": 2,
        "sft_val_not_drawn": 0,
        "dpo_train_rows": 4,
        "dpo_train_not_drawn": 0,
        "dpo_val_rows": 2,
        "dpo_val_not_drawn": 0,
        "test_rows": 3,
        "test_not_drawn": 0,
        "records": 14,
    }
    assert len(data.notes) == 1 and "fewshot split (2 rows" in data.notes[0] and "not used" in data.notes[0]


def test_sizes_draw_seeded_subsets_in_original_order(valid_dir):
    sizes = {"train": 2, "val": 0, "test": None, "sft_train": 1}  # sft_val absent: every row
    data = load(valid_dir, sizes, seed=7)
    check_records(data.records, "sized")
    per_split = data.records.groupby("split").id.apply(list).to_dict()
    assert {s: len(ids) for s, ids in per_split.items()} == {"train": 2, "sft_train": 1, "test": 3, "sft_val": 2}
    assert data.counts["dpo_train_not_drawn"] == 2 and data.counts["dpo_val_not_drawn"] == 2
    assert data.counts["sft_train_not_drawn"] == 2 and data.counts["sft_val_not_drawn"] == 0
    assert data.counts["test_not_drawn"] == 0 and data.counts["records"] == 8
    assert data.counts["dpo_train_rows"] == 4  # rows read are counted whether drawn or not
    raw = fixture("valid.json")
    rows = [int(i.rsplit("-", 1)[1]) for i in per_split["train"]]
    assert rows == sorted(rows) and len(set(rows)) == 2  # original order
    for rec in data.records[data.records.split == "train"].to_dict("records"):
        assert rec["prompt"] == raw["dpo_train"][int(rec["id"].rsplit("-", 1)[1])]["prompt"]

    again = load(valid_dir, sizes, seed=7)
    pd.testing.assert_frame_equal(again.records, data.records)
    assert again.counts == data.counts
    draws = {tuple(load(valid_dir, sizes, seed=s).records.id) for s in range(12)}
    assert len(draws) > 1  # another seed may draw other rows


def test_size_zero_means_none_and_none_means_all(valid_dir):
    nothing = load(valid_dir, {"train": 0, "val": 0, "test": 0, "sft_train": 0, "sft_val": 0})
    assert nothing.records.empty and list(nothing.records.columns) == list(RECORD_FIELDS)
    assert nothing.counts["records"] == 0 and nothing.counts["dpo_train_not_drawn"] == 4
    everything = load(valid_dir, {})  # absent = None = all
    pd.testing.assert_frame_equal(everything.records, load(valid_dir, ALL).records)
    bigger = load(valid_dir, {"train": 99})  # more than there are: all, nothing drawn
    assert (bigger.records.split == "train").sum() == 4 and bigger.counts["dpo_train_not_drawn"] == 0


def test_unlabelled_test_split(unlabelled_dir):
    data = load(unlabelled_dir, name="mnem")
    check_records(data.records, "mnem")
    test = data.records[data.records.split == "test"]
    assert len(test) == 3
    assert (test[LABELLED] == "").all().all()
    assert (test.chosen_persona_retr != "").all() and (test.rejected_persona_retr != "").all()
    assert (data.records[data.records.split != "test"].chosen != "").all()
    assert data.counts["test_without_responses"] == 3
    assert not any(k.endswith("_without_responses") for k in data.counts if k != "test_without_responses")
    note = next(n for n in data.notes if "test rows" in n)
    assert note.startswith("mnem: 3 of the 3 test rows")
    assert "only generation with retrieved personas is possible" in note

    sized = load(unlabelled_dir, {"test": 2}, name="mnem")
    assert sized.counts["test_without_responses"] == 2
    assert any("2 of the 2 test rows" in n for n in sized.notes)


def test_hub_id_is_used_when_the_path_is_absent(tmp_path, monkeypatch, valid_dir):
    import datasets

    calls = []
    monkeypatch.setattr(
        datasets, "load_dataset", lambda hub_id: calls.append(hub_id) or datasets.load_from_disk(str(valid_dir))
    )
    data = load_persona_tailoring("hub", tmp_path / "absent", {}, np.random.default_rng(0), hub_id="org/whose-boat")
    assert calls == ["org/whose-boat"] and data.counts["records"] == 14


# ---------------------------------------------------------------- malformed input


def _drop_split(d):
    del d["dpo_val"]


def _drop_column(d):
    for row in d["sft_val"]:
        del row["rejected_persona_retr"]


def _empty_chosen_in_dpo_train(d):
    d["dpo_train"][2]["chosen"] = "  "


def _only_chosen_empty_in_test(d):
    d["test"][1]["chosen"] = ""


def _int_prompt_column(d):  # one type per column and split: every prompt of dpo_val is an int
    for i, row in enumerate(d["dpo_val"]):
        row["prompt"] = 100 + i


def _identical_responses(d):
    d["dpo_train"][3]["rejected"] = d["dpo_train"][3]["chosen"]


def _null_gold_in_fewshot(d):
    d["fewshot"][1]["rejected_persona_gold"] = None


def _unlabelled_row_outside_test(d):
    d["sft_train"][0].update({c: "" for c in LABELLED})


def _unlabelled_test_without_retrieved(d):
    d["test"][2].update({c: "" for c in LABELLED}, chosen_persona_retr="")


MALFORMED = [  # (patch of valid.json, where the message points, what it names)
    (_drop_split, "", ["missing split 'dpo_val'"]),
    (_drop_column, "/sft_val", ["missing column 'rejected_persona_retr'"]),
    (_empty_chosen_in_dpo_train, "/dpo_train: row 2", ["field 'chosen' is empty"]),
    (_only_chosen_empty_in_test, "/test: row 1", ["field 'chosen' is empty"]),
    (_int_prompt_column, "/dpo_val: row 0", ["field 'prompt' must be text", "int 100"]),
    (_identical_responses, "/dpo_train: row 3", ["'chosen' and 'rejected' are identical"]),
    (_null_gold_in_fewshot, "/fewshot: row 1", ["field 'rejected_persona_gold' must be text"]),
    (_unlabelled_row_outside_test, "/sft_train: row 0", ["field 'chosen' is empty"]),
    (_unlabelled_test_without_retrieved, "/test: row 2", ["field 'chosen_persona_retr' is empty"]),
]


@pytest.mark.parametrize("patch, where, names", MALFORMED, ids=[m[0].__name__.strip("_") for m in MALFORMED])
def test_malformed_dataset_names_path_row_and_field(tmp_path, patch, where, names):
    splits = copy.deepcopy(fixture("valid.json"))
    patch(splits)
    path = save(tmp_path, splits)
    with pytest.raises(DatasetError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}{where}: "), message
    for name in names:
        assert name in message, message


def _empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _plain_file(tmp_path):
    (tmp_path / "data.json").write_text("{}")
    return tmp_path / "data.json"


@pytest.mark.parametrize(
    "make, names",
    [
        (_empty_directory, ["not a `save_to_disk` dataset directory"]),
        (_plain_file, ["not a `save_to_disk` dataset directory"]),
        (lambda tmp_path: tmp_path / "nowhere", ["no such dataset directory", "no hub id"]),
    ],
    ids=["empty_directory", "plain_file", "absent"],
)
def test_unreadable_path_names_the_path(tmp_path, make, names):
    path = make(tmp_path)
    with pytest.raises(DatasetError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: ")
    for name in names:
        assert name in str(err.value)


# ---------------------------------------------------------------- persona inference (fixture)


def inference_rows() -> list[dict]:
    return [{c: r[c] for c in ("prompt", "chosen", "rejected")} for r in fixture("valid.json")["dpo_train"]]


def test_persona_inference_fixture(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = inference_rows()
    path = tmp_path / "inference"
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(path))
    frame = load_persona_inference(path)
    assert list(frame.columns) == ["id", "prompt", "chosen", "rejected"]
    assert list(frame.id) == ["pi-0000", "pi-0001", "pi-0002", "pi-0003"]
    assert frame.drop(columns="id").to_dict("records") == rows
    pd.testing.assert_frame_equal(load_persona_inference(path, limit=2), frame.head(2))
    assert load_persona_inference(path, limit=0).empty

    single = tmp_path / "single"  # a bare Dataset directory reads the same
    Dataset.from_list(rows).save_to_disk(str(single))
    pd.testing.assert_frame_equal(load_persona_inference(single), frame)


def test_persona_inference_malformed(tmp_path):
    from datasets import Dataset

    rows = inference_rows()
    rows[1]["rejected"] = ""
    path = tmp_path / "bad"
    Dataset.from_list(rows).save_to_disk(str(path))
    with pytest.raises(DatasetError, match=r"row 1: field 'rejected' is empty or not text"):
        load_persona_inference(path)
    with pytest.raises(DatasetError, match="no such dataset directory"):
        load_persona_inference(tmp_path / "nowhere")


def test_persona_inference_non_dataset_directory_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="not a `save_to_disk` dataset directory"):
        load_persona_inference(_empty_directory(tmp_path))


# ---------------------------------------------------------------- load_datasets


def pt_spec(path: Path, **sizes) -> DatasetSpec:
    return DatasetSpec(format="persona_tailoring", path=str(path), **sizes)


def test_load_datasets_merges_persona_tailoring_datasets(valid_dir, unlabelled_dir):
    specs = {"beta": pt_spec(valid_dir), "alpha": pt_spec(unlabelled_dir, train=2, test=2)}
    data = load_datasets(specs, n_folds=5, base_seed=11)
    check_records(data.records, "merged")
    assert data.records.source.value_counts().to_dict() == {"alpha": 11, "beta": 14}
    assert (data.records.user_id == data.records.source).all()
    assert all(i.startswith(f"{s}-") for i, s in zip(data.records.id, data.records.source))
    assert list(data.personas.user_id) == ["alpha", "beta"] and len(data.personas) == 2
    assert set(data.counts) == {"alpha", "beta"}
    assert data.counts["alpha"]["dpo_train_not_drawn"] == 2 and data.counts["alpha"]["test_without_responses"] == 2
    assert data.counts["beta"]["records"] == 14 and "test_without_responses" not in data.counts["beta"]
    assert any(n.startswith("alpha: 2 of the 2 test rows") for n in data.notes)
    assert any(n.startswith("beta: the fewshot split") for n in data.notes)

    # each dataset is drawn with its own generator, seeded from the base seed and its name
    alone = load_persona_tailoring(
        "alpha",
        unlabelled_dir,
        {**ALL, "train": 2, "test": 2},
        np.random.default_rng(stable_seed(11, "dataset", "alpha")),
    )
    merged_alpha = data.records[data.records.source == "alpha"].reset_index(drop=True)
    pd.testing.assert_frame_equal(merged_alpha, alone.records)

    again = load_datasets(specs, n_folds=5, base_seed=11)
    pd.testing.assert_frame_equal(again.records, data.records)
    pd.testing.assert_frame_equal(again.personas, data.personas)
    assert again.counts == data.counts and again.notes == data.notes


def test_load_datasets_rejects_a_user_shared_by_two_datasets():
    specs = {
        "p_two": DatasetSpec(format="psoups", path=str(PSOUPS)),
        "p_one": DatasetSpec(format="psoups", path=str(PSOUPS)),
    }
    with pytest.raises(DatasetError) as err:
        load_datasets(specs, n_folds=5, base_seed=0)
    message = str(err.value)
    assert "datasets p_one, p_two both have user 'alice'" in message, message


def test_load_datasets_sizes_another_format(valid_dir):
    specs = {"ps": DatasetSpec(format="psoups", path=str(PSOUPS), train=2, test=0), "toy": pt_spec(valid_dir, val=1)}
    data = load_datasets(specs, n_folds=3, base_seed=5)
    check_records(data.records, "sized")
    ps = data.records[data.records.source == "ps"]
    everything = load_datasets({"ps": DatasetSpec(format="psoups", path=str(PSOUPS))}, n_folds=3, base_seed=5).records
    train = everything[everything.split == "train"]
    assert set(ps.split) == {"train"} and 1 <= len(ps) <= 2
    for prompt in set(ps.prompt):  # whole prompts are drawn: every user who labelled it stays
        assert set(ps[ps.prompt == prompt].id) == set(train[train.prompt == prompt].id)
    assert ps.fold.between(0, 2).all()
    assert data.counts["ps"]["train_not_drawn"] == len(train) - len(ps) and data.counts["ps"]["test_not_drawn"] == 2
    assert data.counts["ps"]["rows_read"] == 6  # the loader's own counts are kept
    assert data.counts["toy"]["dpo_val_not_drawn"] == 1 and (data.records.source == "toy").sum() == 13
    assert list(data.personas.user_id) == ["alice", "toy", "u1", "u2", "u3"]

    pd.testing.assert_frame_equal(load_datasets(specs, n_folds=3, base_seed=5).records, data.records)
    picks = {tuple(load_datasets(specs, n_folds=3, base_seed=s).records.id) for s in range(12)}
    assert len(picks) > 1  # another base seed may draw other prompts


# ---------------------------------------------------------------- the real releases


@pytest.fixture(scope="module")
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"../shared/data/persona_tailoring not on this machine (looked for {REAL.resolve()})")
    return REAL


def split_sizes(path: Path) -> dict[str, int]:
    from datasets import load_from_disk

    data = load_from_disk(str(path))
    return {split: data[split].num_rows for split in data}


def test_real_beavertails_loads_in_full(real):
    path = real / "BeaverTails"
    sizes = split_sizes(path)
    data = load_persona_tailoring("beavertails", path, ALL, np.random.default_rng(0))
    check_records(data.records, str(path))
    got = data.records.split.value_counts().to_dict()
    assert got == {CANONICAL[s]: n for s, n in sizes.items() if s in CANONICAL}
    assert all(data.counts[f"{s}_rows"] == n for s, n in sizes.items())
    assert data.counts["fewshot_unused"] == sizes["fewshot"] and data.counts["records"] == len(data.records)
    assert not any(k.endswith("_without_responses") or (k.endswith("_not_drawn") and v) for k, v in data.counts.items())
    for column in LABELLED:
        assert (data.records[column].str.strip() != "").all(), column
    assert (data.records.chosen != data.records.rejected).all()


def test_real_mnemonic_test_split_is_unlabelled(real):
    path = real / "Mnemonic"
    data = load_persona_tailoring("mnemonic", path, ALL, np.random.default_rng(0))
    check_records(data.records, str(path))
    test = data.records[data.records.split == "test"]
    assert len(test) == 500 and data.counts["test_without_responses"] == 500
    assert (test[LABELLED] == "").all().all()
    assert (test.chosen_persona_retr.str.strip() != "").all() and (test.rejected_persona_retr.str.strip() != "").all()
    assert (data.records[data.records.split != "test"].chosen != "").all()
    note = next(n for n in data.notes if "test rows" in n)
    assert "500 of the 500 test rows" in note and "only generation with retrieved personas is possible" in note

    sized = load_persona_tailoring("mnemonic", path, {"train": 8, "test": 4}, np.random.default_rng(1))
    counts = sized.records.split.value_counts().to_dict()
    assert counts["train"] == 8 and counts["test"] == 4 and sized.counts["test_without_responses"] == 4
    assert sized.counts["dpo_train_not_drawn"] == data.counts["dpo_train_rows"] - 8
    assert sized.counts["test_not_drawn"] == 496


def test_real_persona_inference(real):
    path = real / "inference-BeaverTails"
    rows = split_sizes(path)["train"]
    frame = load_persona_inference(path)
    assert list(frame.columns) == ["id", "prompt", "chosen", "rejected"] and len(frame) == rows
    assert list(frame.id) == [f"pi-{i:04d}" for i in range(rows)]
    assert frame[["prompt", "chosen", "rejected"]].map(lambda v: isinstance(v, str) and v.strip() != "").all().all()
    pd.testing.assert_frame_equal(load_persona_inference(path, limit=5), frame.head(5))
