"""`personalign`: validate params.yaml and run a pipeline stage's notebook with papermill (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from personalign.config import ParamsError, Params, load_params

# stage -> (notebook, params sections it receives)
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "base_model": ("00_base_model.ipynb", ("base",)),
    "build_data": ("01_build_data.ipynb", ("base", "build_data", "judge")),
    "infer_personas": ("02_infer_personas.ipynb", ("base", "prefixes", "generators", "judge")),
}


def check_params(path: str | Path) -> Params:
    """Everything that can be checked before compute: schema, ranges, and that the models resolve."""
    from personalign.embeddings import resolve_embedder
    from personalign.models import resolve_model

    params = load_params(path)
    resolve_model(params.base.model)
    resolve_embedder(params.base.embedding_model)
    if params.generators.strong.backend == "hf":
        resolve_model(params.generators.strong.model, key="generators.strong.model")
    return params


def run_stage(stage: str, params: Params, notebooks: Path, rendered: Path) -> Path:
    """Execute the stage's notebook with its params sections injected; the executed copy lands in `rendered`."""
    import papermill

    notebook, sections = STAGES[stage]
    out = rendered / notebook
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = {name: getattr(params, name).model_dump() for name in sections}
    papermill.execute_notebook(
        str(notebooks / notebook), str(out), parameters=parameters, log_output=True, progress_bar=False,
        kernel_name="python3", cwd=str(Path.cwd()),
    )
    return out


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
    args = parser.parse_args(argv)
    try:
        params = check_params(args.params)
    except ParamsError as exc:
        print(f"personalign: invalid parameters\n{exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        print(f"{args.params}: ok")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from papermill.exceptions import PapermillExecutionError

    try:
        out = run_stage(args.stage, params, args.notebooks, args.rendered)
    except PapermillExecutionError as exc:
        print(
            f"personalign: stage {args.stage} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"the executed notebook up to the failure is {args.rendered / STAGES[args.stage][0]}",
            file=sys.stderr,
        )
        return 1
    print(f"personalign: stage {args.stage} done -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
