"""A run's resolved spec: train.defaults under the run's own entry of train.runs, its seed derived from base.seed,
precision `auto` resolved for this machine. Every stage reads runs through `resolve_run`; torch is not imported."""

from __future__ import annotations

from personalign.core.config import ParamsError, RunHyperparameters, RunSpec, TrainParams
from personalign.core.hardware import resolve_precision
from personalign.core.seeding import stable_seed
from personalign.lm.models import pick_device


def resolve_run(name: str, train: TrainParams, base_seed: int) -> RunSpec:
    """The spec of run `name` of a `train` params section."""
    if name not in train.runs:
        raise ParamsError(f"run {name!r} is not in train.runs; defined runs: {', '.join(train.runs) or 'none'}")
    entry = train.runs[name]
    hyperparameters = train.defaults.model_dump(include=set(RunHyperparameters.model_fields))
    overrides = {key: value for key, value in entry.model_dump().items() if value is not None}
    spec = hyperparameters | overrides
    spec["seed"] = stable_seed(base_seed, "train", entry.seed) % 2**31
    spec["precision"] = resolve_precision(spec["precision"], pick_device("auto"))  # what load_for_training uses
    return RunSpec(name=name, **spec)


def resolve_runs(train: TrainParams, base_seed: int) -> list[RunSpec]:
    """Every run of train.runs, in params order."""
    return [resolve_run(name, train, base_seed) for name in train.runs]
