"""What each DVC stage depends on, computed rather than written by hand: its code dependencies are the import closure
of its notebooks (plus the `personalign run` entry point), its params dependencies the keys it is declared to read.
`python -m personalign.pipeline.pipeline_deps --write` rewrites dvc.yaml's lists; `--check` exits 1 when they differ."""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

import yaml

from personalign.core.stages import STAGES, stage_notebooks

PACKAGE = "personalign"
SRC = Path("src") / PACKAGE

STAGE_NOTEBOOKS: dict[str, tuple[str, ...]] = {stage: stage_notebooks(stage) for stage in STAGES}
STAGE_PARAMS: dict[str, tuple[str, ...]] = {stage: spec.params for stage, spec in STAGES.items()}
# `personalign run STAGE` validates params.yaml and resolves the models before the notebook starts (cli.check_params)
# and records the machine afterwards (cli.write_environment), holding the stage's lock (locks.exclusive), and rewrites
# the executed notebook as a record (rendered.write_record); cli's other lazy imports serve other commands
ENTRY_MODULES = (
    "personalign.core.config",
    "personalign.lm.models",
    "personalign.lm.embeddings",
    "personalign.core.hardware",
    "personalign.core.locks",
    "personalign.pipeline.rendered",
)


def _module_file(module: str, root: Path) -> Path | None:
    """The source file of a personalign module (a package's __init__.py), or None when it is not one."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root / Path(*parts[1:]) if len(parts) > 1 else root
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def imported_modules(source: str, module: str = "") -> set[str]:
    """Every personalign module a piece of code imports, at any depth of the code (function-level imports count)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                name = ".".join(package + ([name] if name else []))
            if name.split(".")[0] != PACKAGE:
                continue
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)  # `from personalign import training`
    return found


def _notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            text = "".join(cell["source"])
            lines.append("\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return "\n".join(lines)


def import_closure(modules: set[str], root: Path) -> set[Path]:
    """The files of the given personalign modules and of everything they import, transitively (a package's
    __init__.py is imported with any of its modules)."""
    files: set[Path] = set()
    pending = sorted(modules)
    while pending:
        module = pending.pop()
        path = _module_file(module, root)
        if path is None or path in files:
            continue
        files.add(path)
        parents = [".".join(module.split(".")[:i]) for i in range(2, len(module.split(".")))]
        pending.extend(parents)
        own = module if path.name != "__init__.py" else module + ".__init__"
        pending.extend(imported_modules(path.read_text(), own))
    return files


def _has_data_files(folder: Path) -> bool:
    return any(p.is_file() and p.suffix != ".py" for p in folder.iterdir())


def code_deps(stage: str, repo: Path = Path(".")) -> list[str]:
    """The stage's notebooks and the source files its code can import, as dvc.yaml paths; a subpackage with data
    files (the world's YAML) is listed as its folder, so the data come with it; any other by its imported modules."""
    root = repo / SRC
    modules = set(ENTRY_MODULES)
    for notebook in STAGE_NOTEBOOKS[stage]:
        modules |= imported_modules(_notebook_source(repo / "notebooks" / notebook))
    files = import_closure(modules, root) | {root / "pipeline" / "cli.py"}
    paths = set()
    for path in files:
        relative = path.relative_to(root)
        data_folder = next(
            (folder for folder in relative.parents if folder.parts and _has_data_files(root / folder)), None
        )
        if data_folder is not None:
            paths.add((SRC / data_folder).as_posix())
        elif relative != Path("__init__.py"):
            paths.add((SRC / relative).as_posix())
    notebooks = [f"notebooks/{name}" for name in STAGE_NOTEBOOKS[stage]]
    return notebooks + sorted(paths)


def _is_code_dep(entry: str) -> bool:
    return entry.startswith(("src/", "notebooks/")) and not entry.startswith("notebooks/rendered")


TRAINING_CURVES = "training_loss"  # dvc.yaml's top-level plot overlaying every run's loss curve


def training_curves_plot(repo: Path = Path(".")) -> str:
    """dvc.yaml's top-level `plots:` block: one overlay of the loss per step of every run in params.yaml's
    train.runs (stage 3's results/train/<run>/curve.csv)."""
    runs = yaml.safe_load((repo / "params.yaml").read_text())["train"]["runs"]
    lines = [
        "plots:  # written by `python -m personalign.pipeline.pipeline_deps write` from params.yaml's train.runs",
        f"  - {TRAINING_CURVES}:",
        "      template: linear",
        "      x: step",
        "      y:",
    ]
    lines += [f"        results/train/{run}/curve.csv: loss" for run in runs]
    return "\n".join(lines) + "\n"


def rewritten(dvc_yaml: str, repo: Path = Path(".")) -> str:
    """dvc.yaml's text with each stage's code deps and params replaced by the computed ones (data deps, outs,
    comments and order kept; the code deps take the place of the first code dep listed), and the training-curves
    plot at the end."""
    out: list[str] = []
    stage = section = None
    emitted = False
    stages_part = dvc_yaml.split("\nplots:", 1)[0].rstrip("\n")
    for line in stages_part.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        is_item = stripped.startswith("- ")
        if stripped and not is_item and not stripped.startswith("#"):
            key, _, value = stripped.partition(":")
            if indent == 2 and not value.strip():
                stage = key
            section, emitted = (key if not value.strip() else None), False
            out.append(line)
            if section == "params" and stage in STAGE_PARAMS:
                out.extend(f"{' ' * (indent + 2)}- {key}" for key in STAGE_PARAMS[stage])
            continue
        if is_item and stage in STAGE_NOTEBOOKS:
            entry = stripped[2:].split("#")[0].strip()
            if section == "params":
                continue
            if section == "deps" and _is_code_dep(entry):
                if not emitted:
                    out.extend(f"{' ' * indent}- {dep}" for dep in code_deps(stage, repo))
                    emitted = True
                continue
        out.append(line)
    return "\n".join(out) + "\n\n" + training_curves_plot(repo)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_hash(path: Path) -> str:
    """DVC's md5 of a file, or of a folder (md5 of the sorted JSON list of {md5, relpath}, with a .dir suffix)."""
    if path.is_file():
        return _md5(path)
    entries = sorted(
        (
            {"md5": _md5(file), "relpath": file.relative_to(path).as_posix()}
            for file in path.rglob("*")
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc"
        ),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def stale_dependencies(repo: Path = Path(".")) -> dict[str, list[str]]:
    """Per stage of dvc.lock: the recorded code dependencies (files no stage writes) and params values that differ
    from the working tree. Needs no DVC cache: committed outputs must have been made by the committed code."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text()) or {}
    params = yaml.safe_load((repo / "params.yaml").read_text()) or {}
    stages = lock.get("stages", {})
    produced = {out["path"].rstrip("/") for stage in stages.values() for out in stage.get("outs", []) or []}
    stale: dict[str, list[str]] = {}
    for name, stage in sorted(stages.items()):
        changed = []
        for dep in stage.get("deps", []) or []:
            path = dep["path"].rstrip("/")
            if any(path == out or path.startswith(out + "/") or out.startswith(path + "/") for out in produced):
                continue
            here = repo / path
            if not here.exists():
                changed.append(f"{path} (deleted)")
            elif dvc_hash(here) != dep.get("md5"):
                changed.append(path)
        for values in (stage.get("params") or {}).values():
            for key, recorded in values.items():
                node = params
                for part in key.split("."):
                    node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
                if node != recorded:
                    changed.append(f"params {key}")
        if changed:
            stale[name] = changed
    return stale


_ABSENT = object()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personalign.pipeline.pipeline_deps", description=__doc__)
    parser.add_argument(
        "mode",
        choices=["check", "write", "show", "lock"],
        help="check: dvc.yaml lists the computed deps; write: make it so; show: print them; "
        "lock: dvc.lock's recorded code and params match the working tree",
    )
    parser.add_argument("--dvc-yaml", default="dvc.yaml", type=Path)
    args = parser.parse_args(argv)
    current = args.dvc_yaml.read_text()
    computed = rewritten(current, args.dvc_yaml.parent)
    if args.mode == "show":
        for stage in STAGE_NOTEBOOKS:
            print(f"{stage}: {', '.join(code_deps(stage, args.dvc_yaml.parent))}")
        return 0
    if args.mode == "lock":
        stale = stale_dependencies(args.dvc_yaml.parent)
        for stage, changed in stale.items():
            print(f"{stage}: {', '.join(changed)}")
        if stale:
            print(
                f"{len(stale)} stage(s) of dvc.lock were not made by the committed code and params: rerun them "
                "(`dvc repro`) before committing their outputs",
                file=sys.stderr,
            )
        return 1 if stale else 0
    if args.mode == "write":
        args.dvc_yaml.write_text(computed)
        return 0
    if computed != current:
        import difflib

        sys.stdout.writelines(
            difflib.unified_diff(current.splitlines(True), computed.splitlines(True), "dvc.yaml", "computed")
        )
        print(
            f"{args.dvc_yaml}: code or params dependencies differ from the computed ones; run "
            "`python -m personalign.pipeline.pipeline_deps write`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
