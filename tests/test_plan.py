"""`personalign plan`: the work a params file asks for, counted without loading a model, and the estimate from a
costs file; the paper profile validates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from personalign.core.config import load_params
from personalign.core.world import load_world, select_personas
from personalign.lm import models
from personalign.pipeline import cli
from personalign.pipeline.plan import Costs, estimate, plan, read_costs, report

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "profiles" / "paper.yaml"


def test_the_paper_profile_validates_where_its_models_are_on_the_hub(monkeypatch):
    monkeypatch.setattr(models, "_hub_id_available", lambda repo_id: repo_id == "HuggingFaceH4/mistral-7b-sft-beta")
    params = cli.check_params(PAPER)
    assert params.base.profile == "paper" and params.train.defaults.qlora and params.build_data.n_folds == 5
    assert params.judge.backend == "openai" and params.generate_judge.backend == "vllm"
    defaults = params.train.defaults  # WikiPersona App. H (MT D_all) and its LoRA
    assert (defaults.learning_rate, defaults.batch_size, defaults.epochs, defaults.beta) == (5e-5, 40, 2, 0.01)
    assert (defaults.lora_r, defaults.lora_alpha, defaults.lora_dropout, defaults.max_length) == (8, 32, 0.1, 1024)


def test_plan_counts_the_paper_profile_from_its_params():
    params = load_params(PAPER)
    work, runs = plan(params)
    count = dict(zip(work.item, work["count"]))
    data = params.build_data
    personas = len(select_personas(load_world(), data.axes, data.personas_per_axis))
    assert personas == 54  # every persona of the built-in world (age has four)
    personal = personas * (data.personal_train_per_persona + data.personal_test_per_persona)
    divergent = len(data.axes) * (data.divergent_train_per_axis + data.divergent_test_per_axis)
    assert count["candidate responses"] == (personal + divergent) * data.candidates_per_question
    assert count["tournament matches (labels)"] == (personal + divergent * data.personas_per_axis) * 3
    train_per_user = data.personal_train_per_persona + data.divergent_train_per_axis
    pairs = {row.run: row for row in runs.itertuples()}
    assert pairs["dpo"].pairs == personas * train_per_user
    assert pairs["mt_tag_f0"].pairs == round(personas * train_per_user * 4 / 5)  # one fold of five held out
    pm = pairs["pm_noor_haddad"]
    assert (pm.pairs, pm.epochs, pm.steps) == (train_per_user, 10, 10 * math.ceil(train_per_user / 20))
    assert len(runs) == len(params.train.runs) == 52
    judged = work[work.item.str.startswith(("verdicts", "tournament"))]
    assert judged.unit.tolist() == ["api calls", "api calls"] and (judged["count"] > 0).all()


def test_the_estimate_is_the_counts_times_the_stated_costs():
    work, _ = plan(load_params(PAPER))
    costs = read_costs(ROOT / "configs" / "costs" / "paper.yaml")
    cost = estimate(work, costs)
    generations = work[work.unit == "generations"]["count"].sum()
    pair_epochs = work[work.unit == "pair-epochs"]["count"].sum()
    scored = work[work.unit == "scored pairs"]["count"].sum()
    expected = (
        generations * costs.gpu_seconds.generated_response
        + pair_epochs * costs.gpu_seconds.training_pair_epoch
        + scored * costs.gpu_seconds.scored_pair
    ) / 3600
    assert cost.gpu_hours.sum() == pytest.approx(expected)
    assert cost.api_calls.sum() == work[work.unit == "api calls"]["count"].sum()


def test_the_default_profile_asks_no_api_calls():
    work, runs = plan(load_params(ROOT / "params.yaml"))
    assert "api calls" not in set(work.unit)
    assert list(runs.run) == list(load_params(ROOT / "params.yaml").train.runs)


def test_plan_loads_no_model_and_prints_the_estimate(monkeypatch, capsys):
    def refuse(*_, **__):
        raise AssertionError("plan loaded a model")

    monkeypatch.setattr(models, "load_base", refuse)
    monkeypatch.setattr(models, "_hub_id_available", refuse)
    assert cli.main(["plan", str(PAPER), "--costs", str(ROOT / "configs" / "costs" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Training runs" in out and "GPU-hours" in out and "stated per-item costs, not measured" in out


def test_a_bad_costs_file_is_named(tmp_path, capsys):
    bad = tmp_path / "costs.yaml"
    bad.write_text(
        "hardware: x\ngpu_seconds: {generated_response: -1, training_pair_epoch: 1, scored_pair: 1, "
        "local_judgment: 1}\n"
    )
    assert cli.main(["plan", str(PAPER), "--costs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "generated_response" in err


def test_costs_are_a_closed_schema():
    with pytest.raises(Exception, match="extra"):
        Costs.model_validate(
            {
                "hardware": "x",
                "gpu_seconds": {
                    "generated_response": 1,
                    "training_pair_epoch": 1,
                    "scored_pair": 1,
                    "local_judgment": 1,
                    "other": 2,
                },
            }
        )
    assert "Work" in report(load_params(PAPER), None)
