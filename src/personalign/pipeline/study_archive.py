"""A finished run of another profile, kept beside the default one: its rendered notebooks, figures, tables, results
files, params.yaml and dvc.lock, copied as the pipeline wrote them into `notebooks/rendered/studies/<name>/` and
`figures/studies/<name>/` (the default profile's own outputs stay where dvc.yaml puts them)."""

from __future__ import annotations

import shutil
from pathlib import Path

MAX_RESULT_BYTES = 5_000_000  # larger results files (per-example dumps of big runs) are left out, and listed


def locked_outputs(workspace: Path, runs: set[str]) -> set[str]:
    """Every output path (file or folder) the workspace's dvc.lock records for a stage of its current pipeline: what
    its own run wrote. DVC keeps the entries of `train@<run>` items that params.yaml no longer has (a clone of this
    repository brings the default's); those are skipped."""
    import yaml

    lock = yaml.safe_load((workspace / "dvc.lock").read_text()) or {}
    return {
        out["path"]
        for name, stage in (lock.get("stages") or {}).items()
        if not name.startswith("train@") or name.removeprefix("train@") in runs
        for out in stage.get("outs", [])
    }


def _written_by_the_run(path: str, outputs: set[str]) -> bool:
    return any(path == out or path.startswith(out.rstrip("/") + "/") for out in outputs)


def archive_study(workspace: str | Path, repo: str | Path, name: str) -> list[str]:
    """Copy the outputs of the run in `workspace` into `repo`'s study folders for `name` (replacing earlier copies);
    returns the notes on what was left out. Only what the workspace's dvc.lock records as a stage output is copied,
    so files a clone of the repo brought along (the default run's figures) never pass for the study's. Refuses a
    workspace whose params.yaml names another profile."""
    import yaml

    workspace, repo = Path(workspace), Path(repo)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    profile = params.get("base", {}).get("profile")
    if profile != name:
        raise ValueError(f"{workspace / 'params.yaml'}: base.profile is {profile!r}, not {name!r}")
    outputs = locked_outputs(workspace, set((params.get("train") or {}).get("runs") or {}))
    notebooks, figures = repo / "notebooks/rendered/studies" / name, repo / "figures/studies" / name
    for target in (notebooks, figures):
        shutil.rmtree(target, ignore_errors=True)
    left_out = []
    for source, target, keep in (
        (workspace / "notebooks/rendered", notebooks, lambda p: p.suffix == ".ipynb" and "studies" not in p.parts),
        (workspace / "figures", figures / "figures", lambda p: "studies" not in p.parts),
        (workspace / "results", figures / "results", lambda p: True),
    ):
        for path in sorted(p for p in source.rglob("*") if p.is_file() and keep(p.relative_to(source))):
            if not _written_by_the_run(path.relative_to(workspace).as_posix(), outputs):
                continue
            if source.name == "results" and path.stat().st_size > MAX_RESULT_BYTES:
                left_out.append(f"{path.relative_to(workspace)} ({path.stat().st_size} bytes)")
                continue
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.relative_to(source))
    for file in ("params.yaml", "dvc.lock", "data/dataset_card.md"):
        shutil.copy2(workspace / file, figures / Path(file).name)
    return left_out
