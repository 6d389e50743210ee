"""Issue 16: a corpus of bad params files (tests/bad_inputs/params/, each headed `# expect: <message part>`); each
must stop `personalign validate` with exit code 2, one line per error naming the file and the key, no traceback,
and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from personalign.pipeline.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
PARAMS = sorted((CORPUS / "params").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name}: the first line must be `# expect: <message part>`"
    return first.removeprefix("# expect: ")


def test_the_corpus_is_large_enough():
    assert len(PARAMS) >= 60


@pytest.mark.parametrize("path", PARAMS, ids=[p.stem for p in PARAMS])
def test_a_bad_params_file_stops_validate_with_one_message(path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written would land here
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith("personalign: invalid parameters\n")
    message = err.removeprefix("personalign: invalid parameters\n").strip()
    assert expected_message(path) in message
    assert all(
        line.startswith(f"{path}: ") for line in message.splitlines()
    )  # one line per error, each naming the file
    assert list(tmp_path.iterdir()) == []


DATA_CASES = yaml.safe_load((CORPUS / "data" / "cases.yaml").read_text())
TESTS = Path(__file__).parent


def validate_dataset(spec: dict, tmp_path: Path, capsys) -> tuple[int, str]:
    """`personalign validate` on a params file whose only dataset is `spec`; (exit code, stderr)."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"build_data": {"source": "datasets", "datasets": {"bad": spec}}}))
    capsys.readouterr()  # drop what building the case printed
    code = main(["validate", str(params)])
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing computed or written
    return code, err


def test_the_data_corpus_is_large_enough():
    assert len(DATA_CASES) + len(ARROW_DAMAGE) >= 30


@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_a_malformed_data_file_stops_validate_with_the_file_row_and_field(name, tmp_path, capsys):
    case = DATA_CASES[name]
    spec = {"format": case["format"], "path": str(TESTS / case["path"])}
    if "persona_table" in case:
        spec["persona_table"] = str(TESTS / case["persona_table"])
    code, err = validate_dataset(spec, tmp_path, capsys)
    assert code == 2 and err.startswith("personalign: invalid data\n")
    for part in case["expect"]:
        assert part in err


ARROW_DAMAGE = {"truncated": "OSError", "missing_state": "FileNotFoundError"}


@pytest.mark.parametrize("damage", sorted(ARROW_DAMAGE))
def test_a_damaged_arrow_dataset_stops_validate(damage, tmp_path, capsys):
    """A persona-tailoring `save_to_disk` directory (built from the loader fixture), then damaged: an Arrow file cut
    in half, or its state file removed."""
    import json

    from datasets import Dataset, DatasetDict

    splits = json.loads((TESTS / "fixtures/loaders/persona_tailoring/valid.json").read_text())
    target = tmp_path / "data" / "bt"
    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(target))
    split = sorted(splits)[0]
    arrow = next(target.glob(f"{split}/*.arrow"))
    if damage == "truncated":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    else:
        (target / split / "state.json").unlink()
    work = tmp_path / "work"
    work.mkdir()
    code, err = validate_dataset({"format": "persona_tailoring", "path": str(target)}, work, capsys)
    assert code == 2 and err.startswith("personalign: invalid data\n") and str(target) in err
    assert ARROW_DAMAGE[damage] in err


FIXTURE_SETS = TESTS / "fixtures" / "alignment_tax"
TAX_CASES = {  # name: (alignment_tax params, damage to the RewardBench rows, message parts)
    "subset_not_in_the_file": (
        {"rewardbench_subsets": ["refusals-dangerous", "xstest-should-refuse"]},
        None,
        ["rewardbench.jsonl: no rows of subset(s) xstest-should-refuse"],
    ),
    "kept_row_without_chosen": (
        {},
        lambda rows: [rows[0] | {"chosen": ""}, *rows[1:]],
        ["rewardbench.jsonl: row 0", "'chosen' must be non-empty text"],
    ),
    "control_valid_sets_pass": ({"arc": str(FIXTURE_SETS / "arc.jsonl")}, None, []),
}


@pytest.mark.parametrize("name", sorted(TAX_CASES))
def test_stage_4s_out_of_domain_sets_are_checked_by_validate(name, tmp_path, capsys, monkeypatch):
    """`personalign validate` reads score.alignment_tax's files as stage 4 would (its RewardBench subsets included),
    so a set that stage 4 would reject stops validate, naming the file; a valid set passes."""
    import json

    tax, damage, parts = TAX_CASES[name]
    rows = [json.loads(line) for line in (FIXTURE_SETS / "rewardbench.jsonl").read_text().splitlines()]
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "rewardbench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (damage or list)(rows)))
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {"score": {"alignment_tax": {"beavertails": "", "rewardbench": str(sets / "rewardbench.jsonl")} | tax}}
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # anything written would land here
    capsys.readouterr()
    code = main(["validate", str(params)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and list(work.iterdir()) == []
    if not parts:  # the control: a well-formed set passes
        assert code == 0 and out == f"{params}: ok\n"
        return
    assert code == 2 and out == "" and err.startswith("personalign: invalid data\n")
    for part in parts:
        assert part in err


def test_run_stops_on_its_stages_bad_file_before_the_notebook(tmp_path, capsys, monkeypatch):
    """`personalign run score` reads stage 4's out-of-domain sets before papermill starts: a RewardBench file without
    a configured subset stops it with exit code 2, and no rendered notebook or result is written."""
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "score": {
                    "alignment_tax": {
                        "beavertails": "",
                        "rewardbench": str(FIXTURE_SETS / "rewardbench.jsonl"),
                        "rewardbench_subsets": ["donotanswer"],
                    }
                }
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["run", "score", "--params", str(params)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "no rows of subset(s) donotanswer" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
