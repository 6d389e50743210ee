"""The canonical record and persona tables: schema checks name the file, row and field; files are byte-stable."""

from __future__ import annotations

import pytest

from personalign.core.records import RecordError, read_jsonl, read_records, write_jsonl, write_records


def record(**overrides):
    row = {
        "id": "u1:q1",
        "source": "builtin",
        "user_id": "u1",
        "user_name": "U One",
        "axes": ["diet"],
        "question_type": "personal",
        "prompt": "x",
        "chosen": "a",
        "rejected": "b",
        "split": "train",
        "fold": 0,
        "chosen_persona_gold": "g",
        "rejected_persona_gold": "",
        "chosen_persona_retr": "",
        "rejected_persona_retr": "",
    }
    row.update(overrides)
    return row


def test_round_trip_and_byte_stability(tmp_path):
    rows = [record(id="u1:q2"), record()]
    a = write_records(rows, tmp_path / "a.jsonl")
    b = write_records(list(reversed(rows)), tmp_path / "b.jsonl")
    assert a.read_bytes() == b.read_bytes()
    frame = read_records(a)
    assert list(frame.id) == ["u1:q1", "u1:q2"]


@pytest.mark.parametrize(
    "bad, expected",
    [
        (record(fold="0"), "row 1: field 'fold' must be"),
        (record(split="dev"), "row 1: split 'dev' not in"),
        (record(question_type="common"), "row 1: question_type 'common' not in"),
        ({k: v for k, v in record().items() if k != "prompt"}, "row 1: missing fields ['prompt']"),
        (record(fold=True), "row 1: field 'fold' must be"),
    ],
)
def test_schema_errors_name_the_row_and_field(tmp_path, bad, expected):
    with pytest.raises(RecordError) as info:
        write_records([record(id="u0:q0"), bad], tmp_path / "r.jsonl")
    assert expected in str(info.value) and "r.jsonl" in str(info.value)


def test_malformed_jsonl_names_the_line(tmp_path):
    path = write_jsonl([{"a": 1}], tmp_path / "x.jsonl")
    path.write_text(path.read_text() + "{oops\n")
    with pytest.raises(RecordError, match="x.jsonl: line 2: not valid JSON"):
        read_jsonl(path)
