"""personalign.pipeline.rendered: a rerun that computes the same results writes the same rendered notebook."""

from __future__ import annotations

import json

from personalign.pipeline.rendered import INJECTED_ID, as_record, clean_stream, write_record

ROOT = "/home/me/personalign"


def executed(stderr: list[str], start: str) -> dict:
    """A minimal executed notebook as papermill writes it, with run-specific timestamps and a random injected id."""
    timing = {"duration": 1.5, "start_time": start, "end_time": start, "status": "completed", "exception": False}
    return {
        "metadata": {"papermill": {"parameters": {"base": {"seed": 1}}, **timing}},
        "cells": [
            {
                "cell_type": "code",
                "id": f"id-{start}",
                "metadata": {"tags": ["injected-parameters"], "papermill": dict(timing)},
                "outputs": [],
                "source": "base = {}",
                "execution_count": 1,
            },
            {
                "cell_type": "code",
                "id": "cell-01",
                "execution_count": 2,
                "source": "train()",
                "metadata": {"tags": [], "execution": {"iopub.status.busy": start}, "papermill": dict(timing)},
                "outputs": [{"output_type": "stream", "name": "stderr", "text": s} for s in stderr]
                + [
                    {
                        "output_type": "execute_result",
                        "data": {"text/plain": ["0.5"]},
                        "metadata": {},
                        "execution_count": 2,
                    }
                ],
            },
        ],
    }


def test_two_runs_with_the_same_results_give_the_same_record():
    first = executed(
        [
            "train:   0%|          | 0/4 [00:00<?, ?step/s]\n",
            "train:  50%|#####     | 2/4 [00:01<00:01, 1.9step/s]\n",
            "train: 100%|##########| 4/4 [00:02<00:00, 1.8step/s]\n",
        ],
        "2026-12-01T01:00:00",
    )
    second = executed(
        ["train:   0%|          | 0/4 [00:00<?, ?step/s]\r", "train: 100%|##########| 4/4 [00:03<00:00, 1.2step/s]\n"],
        "2026-12-02T09:30:00",
    )
    a, b = as_record(first, ROOT), as_record(second, ROOT)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["cells"][0]["id"] == INJECTED_ID and "duration" not in a["metadata"]["papermill"]
    assert a["cells"][1]["outputs"][0]["text"] == "train: 100%|##########| 4/4\n"
    assert a["cells"][1]["outputs"][1]["data"] == {"text/plain": ["0.5"]}  # results are never touched


def test_a_repeated_warning_is_kept_once_and_paths_lose_the_checkout():
    warning = (
        f"{ROOT}/.venv/lib/python3.11/site-packages/x/y.py:12: FutureWarning: `a` is deprecated\n  warnings.warn(\n"
    )
    text = (
        warning + "step 1\n" + warning + "step 2\n" + f"{ROOT}/src/personalign/z.py:3: UserWarning: other\n  warn()\n"
    )
    assert clean_stream(text, ROOT) == (
        ".venv/lib/python3.11/site-packages/x/y.py:12: FutureWarning: `a` is deprecated\n  warnings.warn(\n"
        "step 1\nstep 2\nsrc/personalign/z.py:3: UserWarning: other\n  warn()\n"
    )


def test_two_bars_and_plain_lines_keep_their_order():
    text = (
        "a:   0%|     | 0/2 [00:00<?, ?it/s]\na: 100%|#####| 2/2 [00:00<00:00, 9it/s]\n"
        "loaded 3 rows\nb: 100%|#| 1/1 [00:01<00:00]\n"
    )
    assert clean_stream(text, ROOT) == "a: 100%|#####| 2/2\nloaded 3 rows\nb: 100%|#| 1/1\n"


def test_write_record_rewrites_the_file(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(executed([f"{tmp_path}/x.py:1: UserWarning: w\n"], "t0")))
    write_record(path, tmp_path)
    notebook = json.loads(path.read_text())
    assert notebook["cells"][1]["outputs"][0]["text"] == "x.py:1: UserWarning: w\n"
    assert "execution" not in notebook["cells"][1]["metadata"]


def test_styler_ids_are_numbered_and_addresses_dropped():
    def styled(uid: str, address: str) -> dict:
        html = f'<style>#T_{uid}_row0_col0 {{color: red}}</style><table id="T_{uid}">'
        plain = f"<pandas.io.formats.style.Styler at 0x{address}>"
        output = {"output_type": "display_data", "metadata": {}, "data": {"text/html": [html], "text/plain": [plain]}}
        return {"metadata": {}, "cells": [{"cell_type": "code", "id": "c", "metadata": {}, "outputs": [output]}]}

    a, b = as_record(styled("7c30c", "7f472532e010"), ROOT), as_record(styled("eb0a9", "7f39c12bcd10"), ROOT)
    assert a == b
    data = a["cells"][0]["outputs"][0]["data"]
    assert data["text/html"] == ['<style>#T_00001_row0_col0 {color: red}</style><table id="T_00001">']
    assert data["text/plain"] == ["<pandas.io.formats.style.Styler>"]


def test_the_trainer_progress_bar_loses_its_elapsed_time():
    """transformers' notebook progress bar shows the elapsed time: two trainings of one run differ only there."""

    def trained(elapsed: str) -> dict:
        html = ["<progress value='8' max='8'></progress>\n", f"      [8/8 {elapsed}, Epoch 1/1]\n"]
        output = {"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}
        return {"metadata": {}, "cells": [{"cell_type": "code", "id": "c", "metadata": {}, "outputs": [output]}]}

    a, b = as_record(trained("00:15"), ROOT), as_record(trained("01:02:03"), ROOT)
    assert a == b
    assert a["cells"][0]["outputs"][0]["data"]["text/html"][1] == "      [8/8, Epoch 1/1]\n"
