"""Params validation: every user error stops with one message naming the key and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from personalign.core.config import ParamsError, load_params, parse_params
from personalign.lm import models
from personalign.pipeline.cli import check_params

ROOT = Path(__file__).resolve().parents[1]


def errors_for(raw) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(raw, source="p.yaml")
    return str(info.value)


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))])
def test_shipped_params_files_are_valid(path, monkeypatch):
    monkeypatch.setattr(models, "_hub_id_available", lambda repo_id: True)  # the paper profile's base is a hub id
    params = check_params(path)
    assert params.base.seed >= 0


def test_params_yaml_matches_the_defaults():
    """Every key of params.yaml equals the code's default, except the list of training runs (empty in code) and the
    run named as the positive control."""
    shipped = load_params(ROOT / "params.yaml")
    assert shipped.model_copy(
        update={
            "train": shipped.train.model_copy(update={"runs": {}}),
            "analysis": shipped.analysis.model_copy(update={"positive_control": ""}),
        }
    ) == parse_params({})
    assert len(shipped.train.runs) == 7  # the default runs (sized by the learning study)


def test_a_stage_checks_only_the_sections_it_reads():
    """A stage parses just its sections: another section's defaults (score.alignment_tax.runs names mt_persona_f0)
    say nothing about the smoke profile's runs, while the whole file with that section absent is refused."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    sections = {"base": raw["base"], "train": raw["train"]}
    assert "mt_persona_f0" not in parse_params(sections, stage_sections=True).train.runs
    assert "score.alignment_tax.runs[2] = 'mt_persona_f0' is not in train.runs" in errors_for(sections)
    with pytest.raises(ParamsError, match="is not in train.runs"):
        parse_params({**sections, "score": {"alignment_tax": {"runs": ["nope"]}}}, stage_sections=True)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"base": {"sed": 1}}, "unknown key 'base.sed'; allowed keys in section 'base': seed, model"),
        ({"trainer": {}}, "unknown key 'trainer'; allowed keys in the top level: base, build_data, judge"),
        ({"base": {"seed": "abc"}}, "base.seed must be of type int (got str 'abc')"),
        ({"base": {"seed": -3}}, "base.seed = -3 is out of range; must be >= 0"),
        (
            {"base": {"device": "gpu"}},
            "base.device = 'gpu' is not allowed; allowed values: 'auto', 'cpu', 'cuda' or 'mps'",
        ),
        ({"build_data": {"axes": ["food"]}}, "build_data.axes: unknown axis 'food'; allowed: politics, diet, sports"),
        ({"build_data": {"top_p": 1.5}}, "build_data.top_p = 1.5 is out of range; must be <= 1.0"),
        ({"build_data": {"batch_size": 2.5}}, "build_data.batch_size must be of type int (got float 2.5)"),
        ({"judge": {"backend": "gpt5"}}, "judge.backend = 'gpt5' is not allowed; allowed values: 'simulated', 'hf' or"),
        ({"judge": {"backend": "hf"}}, "judge: backend 'hf' needs model = <Hugging Face id or local directory>"),
        ({"judge": {"backend": "openai", "model": "m"}}, "judge: backend 'openai' needs base_url = http(s)://"),
        (
            {"build_data": {"quality_keep": 2, "diversity_k": 4}},
            "need diversity_k <= quality_keep <= candidates_per_question",
        ),
        ({"build_data": {"axes": []}}, "build_data.axes: list should have at least 1 item"),
        (
            {"score": {"base_prefixes": ["none", "vpl"]}},
            "'vpl' is a soft prefix an MT run learns; the base model has none",
        ),
        ([1, 2], "p.yaml: the file must be a mapping of sections"),
    ],
)
def test_bad_params_name_the_key_and_the_allowed_values(raw, expected):
    message = errors_for(raw)
    assert expected in message
    assert message.startswith("p.yaml")


def test_every_error_is_reported_at_once():
    message = errors_for({"base": {"seed": -1, "dtype": "int8"}, "judge": {"noise": -1.0}})
    assert len(message.splitlines()) == 3


@pytest.mark.parametrize(
    "model, expected",
    [
        ("no-such-model", "base.model = 'no-such-model' cannot be resolved; allowed: smollm2-135m-instruct"),
        ("/definitely/not/here", "cannot be resolved"),
    ],
)
def test_unresolvable_model_is_a_params_error(tmp_path, model, expected, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"base": {"model": model}}))
    with pytest.raises(ParamsError) as info:
        check_params(path)
    assert expected in str(info.value)


def test_directory_without_config_is_rejected(tmp_path):
    (tmp_path / "m").mkdir()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"base": {"model": str(tmp_path / "m")}}))
    with pytest.raises(ParamsError, match="is a directory without config.json"):
        check_params(path)


def test_cli_prints_one_message_and_no_traceback(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base:\n  seed: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "personalign", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "base.seed = -1 is out of range" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_a_run_name_used_twice_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  runs:\n    dpo: {kind: dpo}\n    dpo: {kind: pt, prefix: gold}\n")
    with pytest.raises(ParamsError, match="key 'dpo' is used twice \\(line 4\\)"):
        load_params(path)


@pytest.mark.parametrize(
    "run, expected",
    [
        ({"kind": "pm"}, "train.runs.r: kind 'pm' needs a user"),
        (
            {"kind": "pt", "prefix": "tag"},
            "kind 'pt' needs a persona source as prefix (gold, pair, dataset_pair), got 'tag'",
        ),
        ({"kind": "mt", "prefix": "gpt4"}, "kind 'mt' prefix 'gpt4' is not a prefix type; allowed: none, tag"),
        ({"kind": "mt", "prefix": "gpt4"}, "persona_strong, gold, vpl"),
        ({"kind": "ppo"}, "train.runs.r.kind = 'ppo' is not allowed; allowed values: 'dpo', 'pt', 'pm', 'mt' or 'sft'"),
    ],
)
def test_bad_runs_name_the_run(run, expected):
    assert expected in errors_for({"train": {"runs": {"r": run}}})


def test_a_rendered_notebook_that_cannot_be_written_stops_the_stage_before_it_runs(tmp_path, monkeypatch):
    """Issue 16.7: the probe write fails (here: the rendered path is a directory), so nothing runs."""
    from personalign.pipeline.cli import main

    monkeypatch.chdir(ROOT)
    rendered = tmp_path / "rendered"
    (rendered / "00_base_model.ipynb").mkdir(parents=True)  # where the notebook would go is not a file
    assert main(["run", "base_model", "--params", str(ROOT / "profiles/smoke.yaml"), "--rendered", str(rendered)]) == 2
    assert sorted(p.name for p in rendered.iterdir()) == ["00_base_model.ipynb"]


def test_a_stage_already_running_in_this_folder_is_refused(tmp_path, monkeypatch, capsys):
    """Issue 16.5: a second `personalign run` of the same stage stops at once, naming the process that runs it."""
    import os

    from personalign.core.locks import exclusive
    from personalign.pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    with exclusive(tmp_path / ".cache/personalign/locks/base_model.lock", "stage base_model"):
        assert (
            main(
                [
                    "run",
                    "base_model",
                    "--params",
                    str(ROOT / "profiles/smoke.yaml"),
                    "--notebooks",
                    str(ROOT / "notebooks"),
                    "--rendered",
                    str(tmp_path / "rendered"),
                ]
            )
            == 2
        )
    assert f"stage base_model is in use by process {os.getpid()}" in capsys.readouterr().err
    assert not (tmp_path / "rendered").exists() and not (tmp_path / "models").exists()


def test_a_run_s_defaults_are_params_yaml_s_train_defaults():
    """One home for a run's defaults: RunSpec's are train.defaults' (config.RunHyperparameters), and params.yaml
    repeats them, so a run resolved from the default profile without overrides equals RunSpec(name, kind)."""
    from personalign.core.config import RunHyperparameters, RunSpec, TrainDefaults
    from personalign.tuning.runs import resolve_run

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    assert params.train.defaults == TrainDefaults()
    resolved = resolve_run("dpo", params.train, params.base.seed)
    bare = RunSpec(name="dpo", kind="dpo", seed=resolved.seed, precision=resolved.precision)
    assert resolved == bare
    assert set(RunSpec.model_fields) == set(RunHyperparameters.model_fields) | {
        "name",
        "kind",
        "prefix",
        "prefix_seed",
        "user",
        "source",
        "held_out_fold",
        "fraction",
        "seed",
    }
