"""The pipeline's stages in one table: each stage's number, notebook and the params keys it reads. The CLI
(`personalign run`), dvc.yaml's dependency lists (personalign.pipeline.pipeline_deps) and figures/INDEX.md
(personalign.analysis.index) are derived from it; a test holds dvc.yaml's stages and commands equal to it."""

from __future__ import annotations

from dataclasses import dataclass

# Whole sections unless a key is known not to reach the stage's outputs: stage 1 labels pairs with Judge.prefers,
# which never reads judge.tie_margin (tested in tests/test_pipeline_deps.py).
JUDGE_LABEL_KEYS = (
    "judge.backend",
    "judge.noise",
    "judge.quality_weight",
    "judge.model",
    "judge.base_url",
    "judge.api_key_env",
    "judge.timeout_s",
    "judge.max_retries",
    "judge.max_new_tokens",
)


@dataclass(frozen=True)
class Stage:
    """One DVC stage: `personalign run <name>` executes `notebook` with the params sections its `params` keys
    belong to injected."""

    number: int
    notebook: str
    params: tuple[str, ...]

    @property
    def sections(self) -> tuple[str, ...]:
        """The params sections the notebook is given, in the order of `params`."""
        return tuple(dict.fromkeys(key.split(".")[0] for key in self.params))


STAGES: dict[str, Stage] = {
    "base_model": Stage(
        0, "00_base_model.ipynb", ("base.seed", "base.model", "base.revision", "base.device", "base.dtype")
    ),
    "build_data": Stage(
        1,
        "01_build_data.ipynb",
        (
            "base.seed",
            "base.model",
            "base.device",
            "base.dtype",
            "base.embedding_model",
            "build_data",
            *JUDGE_LABEL_KEYS,
        ),
    ),
    "infer_personas": Stage(
        2,
        "02_infer_personas.ipynb",
        (
            "base.seed",
            "base.model",
            "base.device",
            "base.dtype",
            "base.embedding_model",
            "prefixes",
            "generators.strong",
            "judge",
        ),
    ),
    "train": Stage(3, "03_train.ipynb", ("base.seed", "base.embedding_model", "train.defaults", "train.runs.${key}")),
    "score": Stage(
        4,
        "04_score.ipynb",
        (
            "base.seed",
            "base.device",
            "base.dtype",
            "base.adapters",
            "prefixes.seeds",
            "train.defaults",
            "train.runs",
            "score",
        ),
    ),
    "generate_judge": Stage(
        5,
        "05_generate_judge.ipynb",
        (
            "base.seed",
            "base.device",
            "base.dtype",
            "base.adapters",
            "base.embedding_model",
            "generators.systems",
            "judge",
            "train.runs",
            "generate_judge",
        ),
    ),
    "analysis": Stage(6, "06_analysis.ipynb", ("base.seed", "judge.backend", "train.runs", "analysis")),
    "reward_models": Stage(
        7,
        "07_reward_models.ipynb",
        (
            "base.seed",
            "base.embedding_model",
            "build_data.source",
            "build_data.n_folds",
            "judge.quality_weight",
            "judge.tie_margin",
            "reward_models",
        ),
    ),
}
ITEM_STAGES = {"train"}  # stages fanned out by DVC `foreach`: one notebook run per item (`--item NAME`)
REAL_DATA_NOTEBOOK = "01_load_data.ipynb"  # stage build_data with `build_data.source: datasets`


def stage_notebooks(stage: str) -> tuple[str, ...]:
    """Every notebook `stage` may execute (the CLI picks one by its params)."""
    own = STAGES[stage].notebook
    return (own, REAL_DATA_NOTEBOOK) if stage == "build_data" else (own,)


def stage_label(stage: str) -> str:
    """The stage as figures/INDEX.md names it: its number and name."""
    return f"{STAGES[stage].number} {stage}"
