"""The alignment tax measured with lm-evaluation-harness (the `harness` extra). Stage 4 scores its own multiple-choice
sets; this module gives numbers that can be compared with published harness results. It loads the stage-0 base and
each trained run as stages 4-5 do (`LoadedBase`: merged or switched, on `base.device` in `base.dtype`), runs harness
tasks on them, and reads each item's correctness from the harness's sample logs. For every run it then reports the
paired difference from the base on the same items, with its 95% interval and a verdict on WikiPersona §4.3's claim
that tuning costs reasoning. This is not a pipeline stage: run it by hand with
`python -m personalign.evaluation.harness --help`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from personalign.core import paths
from personalign.core.config import ParamsError, load_params
from personalign.core.seeding import figure_rng, seed_everything
from personalign.lm.artifacts import LoadedBase
from personalign.stats.verdicts import decide, holm, paired_difference

# WikiPersona §4.3: "Reasoning performance degrades across all personas" (a run scores below the base).
REASONING_TASKS = {"arc_easy": -1, "arc_challenge": -1, "piqa": -1, "hellaswag": -1, "winogrande": -1}
SCORE_COLUMNS = ["task", "doc_id", "system", "correct"]


class HarnessError(ValueError):
    """A harness run asked for something that cannot be run; the message names the task, run or option."""


def task_manager(include_path: str | None = None):
    """lm-evaluation-harness's task index (its own tasks and the YAML files under `include_path`); building it takes
    seconds, so one serves a whole harness run."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise HarnessError(
            "lm-evaluation-harness is not installed: pip install -e '.[harness]' (see the README)"
        ) from err
    return TaskManager(include_path=include_path)


def check_tasks(tasks: Sequence[str], directions: dict[str, int], manager) -> None:
    """Before any model is loaded: every task is one the harness knows (`manager`, from `task_manager`) and has a
    direction for the verdict (+1 / -1: the paper's sign of run - base; 0: the paper finds no difference)."""
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise HarnessError(f"task {unknown[0]!r} is not a task lm-evaluation-harness knows (its own or --include-path)")
    undirected = [t for t in tasks if t not in directions]
    if undirected:
        raise HarnessError(
            f"task {undirected[0]!r} has no direction for the verdict: give --direction {undirected[0]}=-1|0|1 "
            "(-1: the paper finds tuning lowers it)"
        )


def system_scores(model, tokenizer, tasks: Sequence[str], manager, *, limit: int | None, batch_size: int, seed: int):
    """One model on the harness tasks: columns task, doc_id, correct (the task's `acc` for each logged item)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size),
        tasks=list(tasks),
        limit=limit,
        log_samples=True,
        task_manager=manager,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    rows = []
    for task in tasks:
        samples = out["samples"].get(task)
        if not samples or "acc" not in samples[0]:
            raise HarnessError(f"task {task!r} logged no per-item 'acc' (only multiple-choice tasks are supported)")
        rows += [(task, int(s["doc_id"]), float(s["acc"])) for s in samples]
    return pd.DataFrame(rows, columns=["task", "doc_id", "correct"])


def item_scores(
    base_dir: str | Path,
    runs: dict[str, Path],
    tasks: Sequence[str],
    manager,
    *,
    device: str = "auto",
    dtype: str = "auto",
    adapters: str = "merged",
    limit: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """The base (system "base", scored first, before any adapter is on it) and every run (by name) on the tasks,
    loaded as `base.device`, `base.dtype` and `base.adapters` say: columns task, doc_id, system, correct."""
    missing = [name for name, run_dir in runs.items() if not (Path(run_dir) / "adapter").is_dir()]
    if missing:
        raise HarnessError(f"run {missing[0]!r} has no trained adapter in {runs[missing[0]]} (run stage 3 first)")
    loaded = LoadedBase.open(base_dir, device, dtype, adapters)
    systems = {"base": lambda: loaded.base()} | {
        name: (lambda run_dir=Path(run_dir): loaded.run(run_dir, with_reference=False)[0])
        for name, run_dir in runs.items()
    }
    frames = []
    for system, model in systems.items():
        seed_everything(seed)
        scores = system_scores(model(), loaded.tokenizer, tasks, manager, limit=limit, batch_size=batch_size, seed=seed)
        frames.append(scores.assign(system=system))
    return pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]


def tax_differences(
    scores: pd.DataFrame, directions: dict[str, int], *, base_seed: int, n_resamples: int = 2000
) -> pd.DataFrame:
    """Each run minus the base on the same items of each task: accuracies, the paired difference with its 95%
    interval, permutation p (Holm-adjusted over every row), smallest detectable difference and verdict."""
    wide = scores.pivot_table(index=["task", "doc_id"], columns="system", values="correct")
    rows = []
    for task, items in wide.groupby(level="task"):
        for run in (c for c in items.columns if c != "base"):
            pair = items[["base", run]].dropna()
            if len(pair) != len(items):
                raise HarnessError(f"task {task!r}: run {run!r} and the base were not scored on the same items")
            rng = figure_rng(base_seed, f"harness/{task}/{run}")
            diff = paired_difference(pair[run].to_numpy(), pair["base"].to_numpy(), rng=rng, n_resamples=n_resamples)
            rows.append(
                {
                    "task": task,
                    "run": run,
                    "n": diff.n,
                    "base_accuracy": float(pair["base"].mean()),
                    "run_accuracy": float(pair[run].mean()),
                    "difference": diff.estimate,
                    "ci_low": diff.ci_low,
                    "ci_high": diff.ci_high,
                    "p": diff.p,
                    "mdd": diff.mdd,
                    "direction": directions[task],
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p"].to_numpy())
    table["verdict"] = [
        decide(r.ci_low, r.ci_high, r.p_holm, r.direction, r.mdd) for r in table.itertuples(index=False)
    ]
    return table


def _directions(pairs: list[str]) -> dict[str, int]:
    directions = dict(REASONING_TASKS)
    for pair in pairs:
        task, sep, value = pair.partition("=")
        if not sep or value.strip() not in ("-1", "0", "1"):
            raise HarnessError(f"--direction {pair!r} must be TASK=-1, TASK=0 or TASK=1")
        directions[task.strip()] = int(value)
    return directions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m personalign.evaluation.harness",
        description="The alignment tax with lm-evaluation-harness: the base and trained runs on harness tasks, each "
        "run's paired difference from the base.",
    )
    parser.add_argument(
        "--tasks", required=True, help="comma-separated harness tasks (multiple choice), e.g. arc_easy,piqa"
    )
    parser.add_argument("--params", default="params.yaml", help="base.device, base.dtype, base.seed and the runs")
    parser.add_argument("--runs", help="comma-separated runs (default: score.alignment_tax.runs)")
    parser.add_argument("--limit", type=int, help="items per task (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--include-path", help="a folder of task YAML files of your own")
    parser.add_argument(
        "--direction", action="append", default=[], metavar="TASK=D", help="the paper's sign of run - base"
    )
    parser.add_argument("--n-resamples", type=int, default=2000)
    parser.add_argument(
        "--out", default=str(paths.RESULTS / "harness"), help="folder for item_scores.csv, differences.csv"
    )
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        runs = [r.strip() for r in args.runs.split(",")] if args.runs else list(params.score.alignment_tax.runs)
        directions = _directions(args.direction)
        manager = task_manager(args.include_path)
        check_tasks(tasks, directions, manager)
        scores = item_scores(
            paths.BASE_MODEL,
            {run: paths.ADAPTERS / run for run in runs},
            tasks,
            manager,
            device=params.base.device,
            dtype=params.base.dtype,
            adapters=params.base.adapters,
            limit=args.limit,
            batch_size=args.batch_size,
            seed=params.base.seed,
        )
    except (HarnessError, ParamsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = tax_differences(scores, directions, base_seed=params.base.seed, n_resamples=args.n_resamples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "item_scores.csv", index=False)
    table.to_csv(out / "differences.csv", index=False, float_format="%.6g")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table[["task", "run", "n", "difference", "ci_low", "ci_high", "verdict"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
