"""Issue 18.5: a queued experiment (`dvc exp run --queue`, run in DVC's temporary copy of the workspace) reads the
inputs outside the repository that a workspace run reads, shares the content-keyed caches, and gives the same
results."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from personalign.core import paths
from personalign.core.config import parse_params

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def fake_queue_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace with an input beside it (../shared/x.jsonl) and DVC's temporary copy of it."""
    workspace, copy = tmp_path / "ws", tmp_path / "ws" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "x.jsonl").write_text("{}\n")
    return workspace, copy


def test_a_queued_copy_knows_its_workspace(tmp_path):
    workspace, copy = fake_queue_copy(tmp_path)
    assert paths.dvc_queue_workspace(copy) == workspace.resolve()
    assert paths.dvc_queue_workspace(copy / "notebooks") == workspace.resolve()
    assert paths.dvc_queue_workspace(workspace) is None


def test_an_outside_input_is_read_from_the_workspace_in_a_queued_copy(tmp_path, monkeypatch):
    workspace, copy = fake_queue_copy(tmp_path)
    monkeypatch.chdir(workspace)
    assert paths.external("../shared/x.jsonl") == Path("../shared/x.jsonl")  # the workspace: as written
    monkeypatch.chdir(copy)
    assert paths.external("../shared/x.jsonl") == workspace.resolve() / "../shared/x.jsonl"
    assert paths.external("../shared/x.jsonl").is_file()
    assert paths.external("missing.jsonl") == workspace.resolve() / "missing.jsonl"  # absent in both: still named
    params = parse_params({"score": {"alignment_tax": {"beavertails": "../shared/x.jsonl", "arc": ""}}})
    assert Path(params.score.alignment_tax.beavertails).is_file() and params.score.alignment_tax.arc == ""
    assert Path(params.prefixes.inference_check_data["inference-BeaverTails"]).is_absolute()  # defaults too


def test_a_queued_copy_shares_the_content_keyed_caches_and_keeps_its_own_locks(tmp_path):
    workspace, copy = fake_queue_copy(tmp_path)
    code = "from personalign.core import paths; print(paths.CACHE, paths.SCORE_CACHE, paths.LOCKS, paths.TRAIN_CACHE)"
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    shown = subprocess.run([sys.executable, "-c", code], cwd=copy, capture_output=True, text=True, env=env, check=True)
    cache, scores, locks, train = shown.stdout.split()
    assert Path(cache) == workspace.resolve() / ".cache/personalign" and Path(scores) == Path(cache) / "scores"
    assert (locks, train) == (".cache/personalign/locks", ".cache/personalign/train")


def records_md5(lock: dict) -> str:
    """The md5 a dvc.lock records for stage 1's records."""
    return next(o["md5"] for o in lock["stages"]["build_data"]["outs"] if o["path"] == "data/records.jsonl")


def dvc(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.pipeline
def test_queued_experiments_give_the_workspace_results(tmp_path):
    """Two experiments of the real-data smoke profile's stages 0-1 (which read ../shared), queued and run two at a
    time, each against the same experiment run in the workspace: the same records, byte for byte."""
    if not (SHARED / "data" / "persona_tailoring").is_dir():
        pytest.skip(f"{SHARED} is not on this machine")
    from test_pipeline import repo_copy

    (tmp_path / "shared").symlink_to(SHARED)  # the copy sits beside ../shared, as the repository does
    workspace = repo_copy(tmp_path / "ws", "persona_tailoring_smoke.yaml")
    (workspace / "dvc.lock").unlink()  # the default profile's lock: its outputs are not in this copy's cache
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "profile"], cwd=workspace, check=True
    )
    seeds = (11, 12)
    for seed in seeds:
        dvc("exp", "run", "--queue", "-n", f"seed{seed}", "-S", f"base.seed={seed}", "build_data", cwd=workspace)
    dvc("queue", "start", "-j", "2", cwd=workspace)
    deadline = time.monotonic() + 1500
    while "Queued" in (status := dvc("queue", "status", cwd=workspace)) or "Running" in status:
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert "Failed" not in status, dvc("queue", "logs", f"seed{seeds[0]}", cwd=workspace)
    refs = subprocess.run(
        ["git", "for-each-ref", "refs/exps", "--format=%(refname) %(objectname)"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    queued = {}  # each experiment's records, by the md5 its dvc.lock (an experiment commit) records
    for seed in seeds:
        rev = next(line.split()[1] for line in refs if line.split() and line.split()[0].endswith(f"/seed{seed}"))
        lock = subprocess.run(["git", "show", f"{rev}:dvc.lock"], cwd=workspace, capture_output=True, text=True)
        queued[seed] = records_md5(yaml.safe_load(lock.stdout))
    for seed in seeds:
        params = yaml.safe_load((workspace / "params.yaml").read_text())
        params["base"]["seed"] = seed
        (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        dvc("repro", "build_data", cwd=workspace)
        assert records_md5(yaml.safe_load((workspace / "dvc.lock").read_text())) == queued[seed], f"seed {seed}"
    assert queued[seeds[0]] != queued[seeds[1]]  # the seeds matter, so the equality above is not vacuous
