"""`personalign`: validate params.yaml and run a pipeline stage's notebook with papermill (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from personalign.core import paths
from personalign.core.config import Params, ParamsError, load_params
from personalign.core.stages import ITEM_STAGES, REAL_DATA_NOTEBOOK, STAGES
from personalign.lm.embeddings import resolve_embedder
from personalign.lm.models import ModelUnavailable, resolve_model
from personalign.personas.conditioning import ConditioningError
from personalign.tuning.runs import resolve_run


# stage -> (notebook, params sections it receives)
def wall_time(seconds: float) -> str:
    """A duration as people read it: "42 s", "5 min 19 s", "1 h 02 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def stage_notebook(stage: str, params: Params) -> str:
    """The notebook a stage runs: build_data reads real datasets instead of building the world when told to."""
    if stage == "build_data" and params.build_data.source == "datasets":
        return REAL_DATA_NOTEBOOK
    return STAGES[stage].notebook


def check_params(path: str | Path) -> Params:
    """Everything that can be checked before compute: schema, ranges, and that the models resolve."""
    params = load_params(path)
    if params.build_data.source == "datasets":
        absent = [
            (name, spec.path)
            for name, spec in params.build_data.datasets.items()
            if not Path(spec.path).exists() and not spec.hub_id
        ]
        if absent:
            name, where = absent[0]
            raise ParamsError(
                f"{path}: build_data.datasets.{name}.path = {where!r}: no such file or directory "
                "(and no hub_id to load it from)"
            )
    checks = [("base.model", resolve_model, params.base.model)]
    checks.append(("base.embedding_model", resolve_embedder, params.base.embedding_model))
    if params.generators.strong.backend == "hf":
        checks.append(("generators.strong.model", resolve_model, params.generators.strong.model))
    if params.judge.backend == "hf":
        checks.append(("judge.model", resolve_model, params.judge.model))
    for key, resolve, name in checks:
        try:
            resolve(name)
        except ModelUnavailable as exc:
            raise ParamsError(f"{path}: {key} = {exc}") from None
    return params


def check_data(params: Params, stage: str | None = None) -> None:
    """Read the data files a stage reads as it would (`None`: every stage's), so that a malformed file stops before
    compute with the file, row and field (DatasetError): stage 1's real datasets (`build_data.source: datasets`) and
    stage 4's out-of-domain sets (`score.alignment_tax`, including its RewardBench subsets)."""
    if stage in (None, "build_data") and params.build_data.source == "datasets":
        from personalign.data.loaders.configured import load_datasets

        load_datasets(params.build_data.datasets, params.build_data.n_folds, params.base.seed)
    if stage in (None, "score"):
        from personalign.evaluation.alignment_tax import configured_sets

        tax = params.score.alignment_tax
        configured_sets(tax.paths, tax.rewardbench_subsets, tax.limit)


def run_stage(
    stage: str,
    params: Params,
    notebooks: Path,
    rendered: Path,
    item: str | None = None,
    params_file: str | Path = "params.yaml",
) -> Path:
    """Execute the stage's notebook with its params sections injected; the executed copy lands in `rendered`
    (for a fanned-out stage: rendered/<notebook stem>/<item>.ipynb, with `item` injected as well)."""
    import papermill

    from personalign.pipeline.rendered import write_record

    notebook, sections = stage_notebook(stage, params), STAGES[stage].sections
    out = rendered / STAGES[stage].notebook if item is None else rendered / Path(notebook).stem / f"{item}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:  # a probe write: permission bits alone do not tell (root ignores them; a read-only mount does not)
        with tempfile.NamedTemporaryFile(dir=out.parent):
            pass
        if out.exists():
            out.open("a").close()
    except OSError as exc:
        raise PermissionError(
            f"{out}: the rendered notebook cannot be written ({exc.strerror}); nothing was run"
        ) from None
    parameters = {name: getattr(params, name).model_dump() for name in sections}
    if item is not None:
        parameters["item"] = item
        parameters["params_file"] = str(params_file)
    papermill.execute_notebook(
        str(notebooks / notebook),
        str(out),
        parameters=parameters,
        log_output=True,
        progress_bar=False,
        kernel_name="python3",
        cwd=str(Path.cwd()),
    )
    write_record(out)
    write_environment(environment_path(stage, item))
    return out


def environment_path(stage: str, item: str | None = None, root: Path = Path("results/environment")) -> Path:
    """Where a stage's record of the machine and libraries that made its outputs lives (a DVC out of the stage)."""
    return root / (f"{stage}.json" if item is None else f"{stage}/{item}.json")


def write_environment(path: Path) -> None:
    """The library versions and hardware class that made a stage's outputs (personalign.core.hardware.fingerprint)."""
    import json

    from personalign.core.hardware import fingerprint

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint(), indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="personalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a params file and stop with one message per error")
    validate.add_argument("params", nargs="?", default="params.yaml")
    run = sub.add_parser("run", help="validate params, then execute one stage's notebook with papermill")
    run.add_argument("stage", choices=sorted(STAGES))
    run.add_argument("--params", default="params.yaml")
    run.add_argument("--notebooks", default="notebooks", type=Path)
    run.add_argument("--rendered", default="notebooks/rendered", type=Path)
    run.add_argument("--item", help="the item of a fanned-out stage (train: a key of train.runs)")
    train = sub.add_parser(
        "train",
        help="train one run of train.runs without a notebook (works under torchrun and "
        "accelerate launch; the train stage's notebook calls it for num_processes > 1)",
    )
    train.add_argument("run_name")
    train.add_argument("--params", default="params.yaml")
    train.add_argument("--out", type=Path, help="output directory (default: models/adapters/RUN_NAME)")
    plan = sub.add_parser(
        "plan",
        help="count the work a params file asks for (runs, pairs, generations, judge calls) without loading a "
        "model, and estimate GPU-hours and API calls from a costs file",
    )
    plan.add_argument("params", nargs="?", default="params.yaml")
    plan.add_argument("--costs", type=Path, help="per-item costs, e.g. configs/costs/paper.yaml")
    archive = sub.add_parser(
        "archive-study",
        help="copy the outputs of a finished run of another profile (in WORKSPACE) "
        "into notebooks/rendered/studies/NAME and figures/studies/NAME",
    )
    archive.add_argument("workspace", type=Path)
    archive.add_argument("name", help="the study's name: the workspace's base.profile")
    args = parser.parse_args(argv)
    if args.command == "archive-study":
        return _archive(args)
    if args.command == "plan":
        return _plan(args)
    try:
        params = check_params(args.params)
    except ParamsError as exc:
        print(f"personalign: invalid parameters\n{exc}", file=sys.stderr)
        return 2
    if args.command in ("validate", "run"):
        from personalign.data.loaders.common import DatasetError

        try:
            check_data(params, args.stage if args.command == "run" else None)
        except DatasetError as exc:
            print(f"personalign: invalid data\n{exc}", file=sys.stderr)
            return 2
    if args.command == "validate":
        print(f"{args.params}: ok")
        return 0
    item_error = _check_item(args, params)
    if item_error:
        print(f"personalign: {item_error}", file=sys.stderr)
        return 2
    if args.command == "train":
        return _train(args, params)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from papermill.exceptions import PapermillExecutionError

    from personalign.core.locks import LockedError, exclusive

    name = args.stage + (f"@{args.item}" if args.item else "")
    started = time.monotonic()
    try:
        with exclusive(paths.LOCKS / f"{name}.lock", f"stage {name}"):
            out = run_stage(args.stage, params, args.notebooks, args.rendered, args.item, args.params)
    except (PermissionError, LockedError) as exc:
        print(f"personalign: {exc}", file=sys.stderr)
        return 2
    except PapermillExecutionError as exc:
        print(
            f"personalign: stage {args.stage} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"the executed notebook up to the failure is in {args.rendered}",
            file=sys.stderr,
        )
        return 1
    print(f"personalign: stage {name} done in {wall_time(time.monotonic() - started)} -> {out}")
    return 0


def _plan(args) -> int:
    """The work and, with --costs, the estimate; the params' schema is checked, the models are not resolved."""
    from personalign.pipeline.plan import read_costs, report

    try:
        params = load_params(args.params)
        costs = read_costs(args.costs) if args.costs else None
    except (ParamsError, ValueError) as exc:
        print(f"personalign: invalid input\n{exc}", file=sys.stderr)
        return 2
    print(report(params, costs))
    return 0


def _archive(args) -> int:
    """`personalign archive-study WORKSPACE NAME`: keep another profile's run beside the default one."""
    from personalign.pipeline.study_archive import archive_study

    try:
        left_out = archive_study(args.workspace, Path.cwd(), args.name)
    except (OSError, ValueError) as exc:
        print(f"personalign: {exc}", file=sys.stderr)
        return 2
    for note in left_out:
        print(f"personalign: left out {note}", file=sys.stderr)
    print(f"personalign: {args.workspace} archived as study {args.name!r}")
    return 0


def _check_item(args, params: Params) -> str | None:
    """The --item / run name must name an entry of the stage's list, and only fanned-out stages take one."""
    name = getattr(args, "item", None) if args.command == "run" else args.run_name
    stage = args.stage if args.command == "run" else "train"
    if stage not in ITEM_STAGES:
        return f"stage {stage} takes no --item" if name else None
    if name is None:
        return f"stage {stage} needs --item NAME (one of train.runs: {', '.join(params.train.runs) or 'none'})"
    try:
        resolve_run(name, params.train, params.base.seed)
    except ParamsError as exc:
        return f"{args.params}: {exc}"
    return None


def _train(args, params: Params) -> int:
    """`personalign train RUN`: the library's training entry point, one JSON summary line per process."""
    import json
    import os

    from personalign.tuning.training import (
        TrainingDataError,
        run_inputs,
        soft_prefix_pools,
        train_adapter,
        work_dir_for,
    )

    try:
        run = resolve_run(args.run_name, params.train, params.base.seed)
        pairs, sft_pairs = run_inputs(run)
        out = args.out or paths.ADAPTERS / run.name
        pools = soft_prefix_pools(run, params.base.embedding_model)
        summary = train_adapter(
            run,
            pairs,
            paths.BASE_MODEL,
            out,
            work_dir_for(run, pairs, paths.TRAIN_CACHE, pools),
            sft_pairs,
            pools,
        )
    except (ParamsError, TrainingDataError, ConditioningError) as exc:
        print(f"personalign: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"rank": int(os.environ.get("RANK", 0)), **summary}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
