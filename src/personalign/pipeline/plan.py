"""`personalign plan`: the work a params file asks for, counted from the params alone (no model is loaded, no data
read but a `datasets` source's files): each stage's generated responses, training pairs and optimizer steps per run,
scored pairs, judge and strong-generator calls, and, from per-item costs stated in a costs file, an estimate of
GPU-hours and of API calls. Counts are of the main work items; where a filter may drop items (questions left with
fewer than two candidates, tournaments shorter than `diversity_k`) they are upper bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from personalign.core.config import Params, RunSpec
from personalign.core.world import load_world, select_personas
from personalign.tuning.runs import resolve_runs


class GpuSeconds(BaseModel):
    """GPU-seconds per item on the machine the estimate is for (stated assumptions, not measurements)."""

    model_config = ConfigDict(extra="forbid")

    generated_response: float = Field(ge=0)  # one sampled response of max_new_tokens (batched)
    training_pair_epoch: float = Field(ge=0)  # one preference pair through one DPO/SFT epoch (policy + reference)
    scored_pair: float = Field(ge=0)  # one pair's chosen and rejected log-probs under one system
    local_judgment: float = Field(ge=0)  # one verdict of a local (hf) judge


class Costs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hardware: str  # what the costs are for, e.g. "one H200, 7B base, vLLM sampling"
    gpu_seconds: GpuSeconds


def read_costs(path: str | Path) -> Costs:
    """A costs file (configs/costs/paper.yaml); ValueError naming the file and the bad key."""
    try:
        return Costs.model_validate(yaml.safe_load(Path(path).read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    except Exception as exc:  # pydantic's ValidationError: one line per bad key
        raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class PairCounts:
    """Preference pairs of the built dataset: train and test per user, the users and the folds."""

    train_per_user: dict[str, int]
    test_per_user: dict[str, int]
    n_folds: int

    @property
    def train(self) -> int:
        return sum(self.train_per_user.values())

    @property
    def test(self) -> int:
        return sum(self.test_per_user.values())


def _builtin_pairs(params: Params) -> tuple[PairCounts, list[tuple[str, str, int, str]]]:
    """The built-in world's pairs, and stage 1's rows (stage, item, count, unit): one pair per tournament, a
    divergent question labelled once for each persona of its axis."""
    data = params.build_data
    axes, per_axis = len(data.axes), data.personas_per_axis
    users = [p.user_id for p in select_personas(load_world(), data.axes, per_axis)]
    personal = len(users) * (data.personal_train_per_persona + data.personal_test_per_persona)
    divergent = axes * (data.divergent_train_per_axis + data.divergent_test_per_axis)
    tournaments = personal + divergent * per_axis
    rows = [
        ("1 build_data", "questions (personal + divergent)", personal + divergent, "questions"),
        ("1 build_data", "CoT headers (personal questions)", personal * data.cot_per_question, "generations"),
        ("1 build_data", "candidate responses", (personal + divergent) * data.candidates_per_question, "generations"),
        (
            "1 build_data",
            "tournament matches (labels)",
            tournaments * (data.diversity_k - 1),
            _judge_unit(params.judge.backend),
        ),
    ]
    train = data.personal_train_per_persona + data.divergent_train_per_axis
    test = data.personal_test_per_persona + data.divergent_test_per_axis
    return PairCounts({u: train for u in users}, {u: test for u in users}, data.n_folds), rows


def _dataset_pairs(params: Params) -> PairCounts:
    """A `datasets` source's pairs, counted from its files (as stage 1 loads them)."""
    from personalign.data.loaders.configured import load_datasets

    records = load_datasets(params.build_data.datasets, params.build_data.n_folds, params.base.seed).records
    counts = records.groupby(["split", "user_id"]).size()
    per_split = {
        split: counts[split].to_dict() if split in counts.index.get_level_values(0) else {}
        for split in ("train", "test")
    }
    return PairCounts(per_split["train"], per_split["test"], params.build_data.n_folds)


def run_pairs(run: RunSpec, pairs: PairCounts) -> int:
    """Training pairs of one run: every user's (dpo, pt, sft), all but the held-out fold's (mt), one user's (pm),
    times `fraction`."""
    if run.kind == "pm":
        total = pairs.train_per_user.get(run.user, 0)
    elif run.kind == "mt" and run.held_out_fold is not None:
        total = round(pairs.train * (pairs.n_folds - 1) / pairs.n_folds)
    else:
        total = pairs.train
    return math.floor(total * run.fraction)


def plan(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(work, runs): one row per counted item (stage, item, count, unit), and one per training run (run, kind,
    pairs, epochs, steps)."""
    if params.build_data.source == "builtin":
        pairs, rows = _builtin_pairs(params)
    else:
        pairs, rows = _dataset_pairs(params), []
    rows.append(("1 build_data", "preference pairs (train + test)", pairs.train + pairs.test, "pairs"))
    users = len(pairs.train_per_user | pairs.test_per_user)
    prefixes = params.prefixes
    persona_generator = params.generators.strong.backend != "none"
    rows += [
        ("2 infer_personas", "persona prefixes (base model)", users * len(prefixes.seeds), "generations"),
        ("2 infer_personas", "pair personas (chosen and rejected side)", 2 * (pairs.train + pairs.test), "generations"),
    ]
    if persona_generator:
        strong = "api calls" if params.generators.strong.backend == "openai" else "generations"
        rows.append(("2 infer_personas", "persona_strong prefixes", users * len(prefixes.seeds), strong))
    runs = resolve_runs(params.train, params.base.seed)
    run_rows = []
    for run in runs:
        n = run_pairs(run, pairs)
        steps = math.ceil(n / run.batch_size) * (run.epochs + run.sft_epochs)
        run_rows.append((run.name, run.kind, n, run.epochs + run.sft_epochs, steps))
    runs_table = pd.DataFrame(run_rows, columns=["run", "kind", "pairs", "epochs", "steps"])
    rows.append(
        (
            "3 train",
            f"pair-epochs over {len(runs)} runs",
            int((runs_table.pairs * runs_table.epochs).sum()),
            "pair-epochs",
        )
    )
    systems = len(params.score.base_prefixes) + 2 * len(runs)  # base under each prefix; each run and its reference
    rows.append(("4 score", "test pairs x systems (policy and reference)", pairs.test * systems, "scored pairs"))
    tax = params.score.alignment_tax
    rows.append(
        (
            "4 score",
            "alignment-tax items (runs with and without prefix, base)",
            tax.limit * (2 * len(tax.runs) + 1),
            "scored pairs",
        )
    )
    judged = params.generate_judge
    prompts = users * judged.prompts_per_type * (2 if params.build_data.source == "builtin" else 1)
    boat = len(judged.whose_boat.runs) * len(judged.whose_boat.persona_sides) * len(judged.whose_boat.persona_sources)
    table3 = 3 if judged.prefix_table.mt_run else 0  # base + P, MT, MT + P, each against the base without P
    comparisons = prompts * (boat + table3)
    rows += [
        ("5 generate_judge", "sampled responses", prompts * (2 * boat + (table3 + 1 if table3 else 0)), "generations"),
        ("5 generate_judge", "verdicts (2 aspects x 2 orders)", 4 * comparisons, _judge_unit(params.judge.backend)),
        (
            "5 generate_judge",
            "agreement verdicts (second judge)",
            4 * min(judged.agreement.sample, comparisons),
            _judge_unit(judged.agreement.judge.backend),
        ),
    ]
    work = pd.DataFrame(rows, columns=["stage", "item", "count", "unit"])
    return work, runs_table


def _judge_unit(backend: str) -> str:
    return {"openai": "api calls", "hf": "local judgments"}.get(backend, "simulated judgments")


def estimate(work: pd.DataFrame, costs: Costs) -> pd.DataFrame:
    """GPU-hours per stage from the stated per-item costs, and the API calls."""
    per_unit = {
        "generations": costs.gpu_seconds.generated_response,
        "pair-epochs": costs.gpu_seconds.training_pair_epoch,
        "scored pairs": costs.gpu_seconds.scored_pair,
        "local judgments": costs.gpu_seconds.local_judgment,
    }
    gpu_hours = work["count"] * work.unit.map(per_unit).fillna(0.0) / 3600
    api = work["count"].where(work.unit == "api calls", 0)
    return (
        pd.DataFrame({"stage": work.stage, "gpu_hours": gpu_hours, "api_calls": api})
        .groupby("stage", as_index=False)
        .sum()
    )


def report(params: Params, costs: Costs | None) -> str:
    """The plan as text: the work table, the runs table, and the estimate when costs are given."""
    work, runs = plan(params)
    parts = [
        "Work (counted from the params; upper bounds where a filter may drop items)",
        work.to_string(index=False),
        "",
        "Training runs",
        runs.to_string(index=False),
    ]
    if costs is not None:
        cost = estimate(work, costs)
        total = cost[["gpu_hours", "api_calls"]].sum()
        parts += [
            "",
            f"Estimate for {costs.hardware} (stated per-item costs, not measured)",
            cost.round({"gpu_hours": 2}).to_string(index=False),
            f"total: {total.gpu_hours:.1f} GPU-hours, {int(total.api_calls)} API calls",
        ]
    return "\n".join(parts)
