"""Issue 16: a corpus of bad params files (tests/bad_inputs/params/, each headed `# expect: <message part>`); each
must stop `personalign validate` with exit code 2, one line per error naming the file and the key, no traceback,
and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from personalign.cli import main

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
    assert all(line.startswith(f"{path}: ") for line in message.splitlines())  # one line per error, each naming the file
    assert list(tmp_path.iterdir()) == []
