"""Does a rerun reproduce the committed outputs? Byte identity is promised for the same pinned libraries and the same
hardware class (personalign.core.hardware); elsewhere outputs are only statistically equivalent, and this says so.
`python -m personalign.pipeline.reproduction STAGE ...` compares the working tree's dvc.lock with the committed one
(git HEAD)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from personalign.core.hardware import hardware_class, library_versions
from personalign.pipeline.cli import environment_path


def out_hashes(lock_text: str, stages: list[str]) -> dict[str, str]:
    """path -> md5 of every output of the given stages recorded in a dvc.lock text, the rendered notebooks included
    (they are records without timestamps or timings: personalign.pipeline.rendered)."""
    stages_lock = (yaml.safe_load(lock_text) or {}).get("stages", {})
    hashes = {}
    for stage in stages:
        if stage not in stages_lock:
            raise KeyError(f"stage {stage!r} is not in dvc.lock")
        for out in stages_lock[stage].get("outs", []) or []:
            hashes[out["path"]] = out.get("md5", "")
    return hashes


def differing_outputs(committed_lock: str, current_lock: str, stages: list[str]) -> list[str]:
    """Outputs of the stages whose md5 differs between two dvc.lock texts."""
    before, after = out_hashes(committed_lock, stages), out_hashes(current_lock, stages)
    return sorted(path for path in before if before[path] != after.get(path))


def same_environment(recorded: dict) -> list[str]:
    """What differs between a recorded environment (results/environment/*.json) and this machine: empty when the
    hardware class and every library version match."""
    here = {"hardware": hardware_class(), "libraries": library_versions()}
    return [
        f"{part}.{key}: recorded {recorded.get(part, {}).get(key)!r}, here {value!r}"
        for part in ("hardware", "libraries")
        for key, value in here[part].items()
        if recorded.get(part, {}).get(key) != value
    ]


def _committed(path: str, rev: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personalign.pipeline.reproduction", description=__doc__)
    parser.add_argument("stages", nargs="+", help="dvc.lock stage names: build_data, train@dpo, ...")
    parser.add_argument("--rev", default="HEAD", help="the commit whose outputs should be reproduced")
    args = parser.parse_args(argv)
    differences = []
    for stage in args.stages:
        name, _, item = stage.partition("@")  # a fanned-out stage's item: train@dpo
        recorded = json.loads(_committed(environment_path(name, item or None).as_posix(), args.rev))
        differences += [f"{stage}: {line}" for line in same_environment(recorded)]
    changed = differing_outputs(_committed("dvc.lock", args.rev), Path("dvc.lock").read_text(), args.stages)
    if differences:
        print(
            "reproduction: this machine differs from the one that made the committed outputs, so they are "
            "expected to be statistically equivalent, not byte-identical:\n  " + "\n  ".join(differences)
        )
        print(f"reproduction: {len(changed)} output(s) differ: {', '.join(changed) or 'none'}")
        return 0
    if changed:
        print(
            "reproduction: same hardware class and libraries as the committed outputs, yet these differ: "
            + ", ".join(changed),
            file=sys.stderr,
        )
        return 1
    print(f"reproduction: every output of {', '.join(args.stages)} is byte-identical to {args.rev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
