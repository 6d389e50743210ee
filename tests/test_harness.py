"""The alignment tax through lm-evaluation-harness: a real harness run of the tiny model and a trained-run adapter on a
local multiple-choice task, its per-item correctness checked against the model's own log-likelihoods, the paired
differences and verdicts, and bad requests named before any model is loaded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_checkpoints import save_base, save_random_adapter

from personalign.evaluation import harness

TASK = "personalign_tiny_mc"
ITEMS = [
    {
        "question": f"Question {i}: which word comes next in the list {i}?",
        "choices": choices,
        "answer": i % len(choices),
    }
    for i, choices in enumerate(
        [["red", "green", "blue"], ["one", "two"], ["cat", "dog", "bird", "fish"], ["up", "down"]] * 3
    )
]


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    """The harness's task index with a local task: a YAML over a JSON-lines file (no hub access)."""
    pytest.importorskip("lm_eval")
    folder = tmp_path_factory.mktemp("tasks")
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: acc\n"
    )
    return harness.task_manager(str(folder))


def own_correctness(model, tokenizer, item) -> float:
    """1.0 when the answer's choice has the highest summed log-likelihood after the question (the harness's
    `acc`: context, then " " + choice, no special tokens)."""
    context = tokenizer(item["question"], add_special_tokens=False).input_ids
    totals = []
    for choice in item["choices"]:
        whole = tokenizer(item["question"] + " " + choice, add_special_tokens=False).input_ids
        ids = torch.tensor([whole])
        with torch.no_grad():
            logps = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        targets = ids[0, len(context) :]
        totals.append(float(logps[len(context) - 1 :].gather(1, targets[:, None]).sum()))
    return float(int(np.argmax(totals)) == item["answer"])


@pytest.mark.parametrize("adapters", ["merged", "switched"])
def test_the_harness_scores_the_base_and_a_run_item_by_item(tiny, tmp_path, manager, monkeypatch, adapters):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model, tokenizer = tiny
    base_dir = save_base(model, tokenizer, tmp_path / "base")
    run_dir = tmp_path / "adapters" / "dpo"
    peft = save_random_adapter(model, run_dir / "adapter", seed=3, scale=50.0)
    harness.check_tasks([TASK], {TASK: -1}, manager)

    scores = harness.item_scores(
        base_dir,
        {"dpo": run_dir},
        [TASK],
        manager,
        device="cpu",
        dtype="float32",
        adapters=adapters,
        batch_size=4,
        seed=0,
    )
    assert list(scores.columns) == harness.SCORE_COLUMNS
    assert scores.groupby("system").size().to_dict() == {"base": len(ITEMS), "dpo": len(ITEMS)}
    got = {s: scores[scores.system == s].set_index("doc_id")["correct"].sort_index().tolist() for s in ("base", "dpo")}
    assert got["base"] != got["dpo"]  # the adapter changes answers, so the check below tells the systems apart
    for system, reference in (("base", model), ("dpo", peft.eval())):
        assert got[system] == [own_correctness(reference, tokenizer, item) for item in ITEMS], system

    table = harness.tax_differences(scores, {TASK: -1}, base_seed=1, n_resamples=200)
    row = table.iloc[0]
    assert (row.task, row.run, row.n) == (TASK, "dpo", len(ITEMS))
    assert row.difference == pytest.approx(row.run_accuracy - row.base_accuracy)
    assert row.ci_low <= row.difference <= row.ci_high
    assert row.verdict.startswith(("reproduced", "contradicted", "inconclusive"))


def test_paired_differences_use_the_same_items_and_give_verdicts():
    rng = np.random.default_rng(0)
    n = 400
    base = rng.random(n) < 0.7
    worse = base & (rng.random(n) < 0.8)  # the run loses ~14 points, only on items the base got right
    same = base.copy()
    scores = pd.concat(
        [
            pd.DataFrame({"task": "arc_easy", "doc_id": range(n), "system": s, "correct": v.astype(float)})
            for s, v in (("base", base), ("worse", worse), ("same", same))
        ]
    )
    table = harness.tax_differences(scores, harness.REASONING_TASKS, base_seed=7, n_resamples=500).set_index("run")
    assert table.loc["worse", "verdict"] == "reproduced"
    assert table.loc["worse", "difference"] == pytest.approx(worse.mean() - base.mean())
    assert table.loc["same", "verdict"].startswith("inconclusive")

    with pytest.raises(harness.HarnessError, match="'arc_easy': run 'worse' and the base were not scored on the same"):
        harness.tax_differences(
            scores[~((scores.system == "worse") & (scores.doc_id == 5))], harness.REASONING_TASKS, base_seed=7
        )


def test_bad_requests_are_named_before_a_model_is_loaded(tmp_path, manager, capsys):
    with pytest.raises(harness.HarnessError, match="task 'no_such_task' is not a task lm-evaluation-harness knows"):
        harness.check_tasks(["no_such_task"], {"no_such_task": -1}, manager)
    with pytest.raises(harness.HarnessError, match=f"task '{TASK}' has no direction .* --direction {TASK}="):
        harness.check_tasks([TASK], dict(harness.REASONING_TASKS), manager)
    with pytest.raises(harness.HarnessError, match="run 'dpo' has no trained adapter"):
        harness.item_scores(tmp_path, {"dpo": tmp_path / "dpo"}, [TASK], manager)

    params = tmp_path / "params.yaml"
    params.write_text("base:\n  seed: 1\n")
    assert harness.main(["--tasks", TASK, "--params", str(params), "--direction", f"{TASK}=2"]) == 2
    assert f"--direction '{TASK}=2' must be TASK=-1, TASK=0 or TASK=1" in capsys.readouterr().err
