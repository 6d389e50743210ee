"""Typed parameters: params.yaml parsed into validated models, with one clear message per user error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from personalign.core import paths
from personalign.core.persona_sources import PT_TRAINING_SOURCES
from personalign.core.world import AXIS_IDS, demographic_attributes, load_world, select_personas


class ParamsError(ValueError):
    """A user error in a params file; the message names the file, the key and what is allowed."""


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # run, dataset and user names
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # api_key_env: the name of a variable, never a key


def safe_name(what: str, name: Any) -> str:
    """`name` when it is safe to place in a DVC stage name, a command line and a folder name; else ValueError."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or digit "
            "(it becomes a DVC stage name, a command-line argument and a folder name)"
        )
    return name


def env_var_name(name: str) -> str:
    """`name` when it looks like an environment variable's name ("": an endpoint without a key); a pasted key is
    refused without repeating it."""
    if name and not ENV_NAME.fullmatch(name):
        raise ValueError(
            "must be the NAME of an environment variable holding the key (letters, digits and _, not "
            "starting with a digit, e.g. OPENAI_API_KEY), never the key itself; the value given is not "
            "shown here"
        )
    return name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseParams(_Section):
    """`base`: seed, model, device, dtype and the embedding model shared by every stage."""

    seed: int = Field(1234, ge=0, le=2**32 - 1)
    model: str = "smollm2-135m-instruct"
    revision: str = ""  # a hub model's commit, tag or branch ("": its default branch; the resolved commit is recorded)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    adapters: Literal["merged", "switched"] = "merged"  # stages 4-5: runs merged into a copy of the base, or switched
    embedding_model: str = "all-minilm-l6-v2"
    profile: str = "default"


DATASET_FORMATS = ("persona_tailoring", "wikipersona", "psoups", "personal_llm_dpo", "tldr", "personal_llm")


def dataset_names(datasets: dict) -> dict:
    """A `datasets` mapping whose names (the records' `source`) are lowercase safe names other than `builtin`."""
    bad = [n for n in datasets if not SAFE_NAME.fullmatch(n) or n != n.lower() or "-" in n or n == "builtin"]
    if bad:
        raise ValueError(f"dataset name {bad[0]!r} must be lowercase letters, digits and _ (and not 'builtin')")
    return datasets


def _external(path: str) -> str:
    return str(paths.external(path)) if path else path


# A params path to an input outside the pipeline: read from the workspace by a queued experiment (paths.external)
ExternalPath = Annotated[str, AfterValidator(_external)]


class DatasetSpec(_Section):
    """One real dataset of `build_data.datasets` (the key becomes the records' `source`): its format, a local path
    (or, for users with hub access, an HF dataset id used when the path is absent), rows drawn per canonical split
    (null = every row, 0 = none), and the format's own options."""

    format: Literal[DATASET_FORMATS]  # type: ignore[valid-type]
    path: ExternalPath
    hub_id: str = ""
    train: int | None = Field(None, ge=0)  # rows drawn per canonical split; null: every row, 0: none
    val: int | None = Field(None, ge=0)
    test: int | None = Field(None, ge=0)
    sft_train: int | None = Field(None, ge=0)
    sft_val: int | None = Field(None, ge=0)
    persona_table: ExternalPath = ""  # wikipersona: the persona table file (name, axis, fold, tag, prefix columns)
    users: int = Field(5, ge=1, le=100_000)  # tldr: most frequent workers kept; personal_llm: simulated users
    alpha: float = Field(1.0, gt=0.0, le=1000.0)  # personal_llm: Dirichlet concentration of the users' weights


class BuildDataParams(_Section):
    """`build_data`: stage 1, the WikiPersona dataset procedure at configurable scale (`source: builtin`), or the
    real datasets listed in `datasets` (`source: datasets`)."""

    source: Literal["builtin", "datasets"] = "builtin"
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    axes: list[str] = Field(default_factory=lambda: ["politics", "diet"], min_length=1)
    personas_per_axis: int = Field(5, ge=2, le=5)
    divergent_train_per_axis: int = Field(16, ge=1, le=24)
    divergent_test_per_axis: int = Field(8, ge=1, le=24)
    personal_train_per_persona: int = Field(5, ge=1, le=20)
    personal_test_per_persona: int = Field(5, ge=1, le=20)
    cot_per_question: int = Field(2, ge=1, le=10)
    candidates_per_question: int = Field(6, ge=2, le=100)
    quality_keep: int = Field(5, ge=2, le=100)
    diversity_k: int = Field(4, ge=2, le=16)
    max_new_tokens: int = Field(64, ge=8, le=2048)
    cot_max_new_tokens: int = Field(40, ge=8, le=512)
    min_response_words: int = Field(5, ge=1, le=200)
    temperature: float = Field(0.9, gt=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=1024)
    n_folds: int = Field(5, ge=2, le=50)
    rejected: Literal["random", "lowest"] = (
        "random"  # y_l: a seeded random non-winner (WikiPersona) | the lowest utility
    )

    @field_validator("axes")
    @classmethod
    def _known_axes(cls, axes: list[str]) -> list[str]:
        unknown = [a for a in axes if a not in AXIS_IDS]
        if unknown:
            raise ValueError(f"unknown axis {unknown[0]!r}; allowed: {', '.join(AXIS_IDS)}")
        if len(set(axes)) != len(axes):
            raise ValueError("axes must not repeat")
        return axes

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, datasets: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        return dataset_names(datasets)

    @model_validator(mode="after")
    def _sizes_fit(self) -> BuildDataParams:
        if self.source == "datasets" and not self.datasets:
            raise ValueError("source 'datasets' needs at least one entry in build_data.datasets")
        if self.divergent_train_per_axis + self.divergent_test_per_axis > 24:
            raise ValueError("divergent_train_per_axis + divergent_test_per_axis must be <= 24 (questions per axis)")
        if self.personal_train_per_persona + self.personal_test_per_persona > 20:
            raise ValueError(
                "personal_train_per_persona + personal_test_per_persona must be <= 20 (questions per persona)"
            )
        if not self.diversity_k <= self.quality_keep <= self.candidates_per_question:
            raise ValueError("need diversity_k <= quality_keep <= candidates_per_question")
        return self


class _ModelBackend(_Section):
    """A model behind a backend, shared by the judge and the generators: a local causal LM (HF id or local directory)
    or an OpenAI-compatible endpoint, whose key is read from the environment variable named in `api_key_env`, never
    from this file."""

    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(60.0, gt=0.0, le=3600.0)
    max_retries: int = Field(5, ge=0, le=20)
    concurrency: int = Field(4, ge=1, le=256)  # requests in flight at once to an openai endpoint

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, name: str) -> str:
        return env_var_name(name)

    def _check_endpoint(self, backend: str) -> None:
        if backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("backend 'openai' needs base_url = http(s)://host[:port]/v1")


class JudgeParams(_ModelBackend):
    """`judge`: which judge labels preferences and judges win rates: `simulated` (noise and quality_weight are its
    knobs), `hf` (a local causal LM) or `openai` (an OpenAI-compatible endpoint). tie_margin: |score difference|
    below it is a tie (simulated: utility, hf: log-probability of the answer letter)."""

    backend: Literal["simulated", "hf", "openai"] = "simulated"
    noise: float = Field(0.0, ge=0.0, le=10.0)
    quality_weight: float = Field(0.1, ge=0.0, le=10.0)
    tie_margin: float = Field(0.01, ge=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=8, le=8192)

    @model_validator(mode="after")
    def _complete(self) -> JudgeParams:
        if self.backend == "hf" and not self.model:
            raise ValueError("backend 'hf' needs model = <Hugging Face id or local directory>")
        if self.backend == "openai" and not self.model:
            raise ValueError("backend 'openai' needs model = <the endpoint's model name>")
        self._check_endpoint(self.backend)
        return self


class GeneratorParams(_ModelBackend):
    """A text generator: `none` (not configured), `hf` (a local causal LM) or `openai` (an OpenAI-compatible
    endpoint)."""

    backend: Literal["none", "hf", "openai"] = "none"
    batch_size: int = Field(8, ge=1, le=1024)

    @model_validator(mode="after")
    def _complete(self) -> GeneratorParams:
        if self.backend != "none" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model")
        self._check_endpoint(self.backend)
        return self


class GeneratorsParams(_Section):
    """`generators`: extra generators beside the base model; `strong` infers the persona_strong prefix; `systems`
    is the OpenAI-compatible server that samples stage 5's compared systems with `generate_judge.backend: openai`:
    the base under `model`, each run's adapter under the run's name (as `vllm serve <base> --enable-lora
    --lora-modules <run>=models/adapters/<run>/adapter ...` names them)."""

    strong: GeneratorParams = Field(default_factory=GeneratorParams)
    systems: GeneratorParams = Field(default_factory=GeneratorParams)


class PrefixesParams(_Section):
    """`prefixes`: stage 2, prefixes per user, chosen/rejected personas per pair, the persona-inference check."""

    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    few_shot_k: int = Field(2, ge=1, le=10)
    persona_shots: int = Field(4, ge=1, le=20)
    persona_max_new_tokens: int = Field(160, ge=8, le=2048)
    pair_persona_max_new_tokens: int = Field(40, ge=8, le=512)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=1024)
    inference_check_data: dict[str, ExternalPath] = Field(
        default_factory=lambda: {"inference-BeaverTails": "../shared/data/persona_tailoring/inference-BeaverTails"},
        validate_default=True,
    )
    inference_check_limit: int = Field(100, ge=0, le=100000)

    @field_validator("inference_check_limit")
    @classmethod
    def _control_needs_another_pair(cls, limit: int) -> int:
        if limit == 1:
            raise ValueError("must be 0 (no check) or at least 2: the control persona comes from another pair")
        return limit

    @field_validator("inference_check_data", mode="before")
    @classmethod
    def _named_sets(cls, sets: Any) -> Any:
        if isinstance(sets, str):
            raise ValueError(
                f"must be a mapping name -> path (each result is labelled by its name), got the plain "
                f"path {sets!r}; write e.g. `inference_check_data: {{inference-BeaverTails: {sets}}}`"
            )
        if isinstance(sets, dict) and any(not isinstance(n, str) or not n.strip() for n in sets):
            raise ValueError("every set needs a non-empty name")
        return sets

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        return seeds


LearningRate = Annotated[float, Field(gt=0.0, le=1.0)]
Epochs = Annotated[int, Field(ge=1, le=100)]
BatchSize = Annotated[int, Field(ge=1, le=1024)]
Beta = Annotated[float, Field(gt=0.0, le=10.0)]
MaxLength = Annotated[int, Field(ge=16, le=32768)]
SftEpochs = Annotated[int, Field(ge=0, le=100)]


class RunHyperparameters(_Section):
    """A run's hyperparameters, with their one set of defaults (params.yaml's `train.defaults` repeats them; a test
    holds the two equal). Those a run may override in `train.runs` are typed by the aliases above."""

    learning_rate: LearningRate = 5e-4
    epochs: Epochs = 1
    batch_size: BatchSize = 4
    beta: Beta = 0.1
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1, le=4096)
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)  # transformers 5 reads a float < 1 in warmup_steps as a ratio
    max_length: MaxLength = 544
    sft_epochs: SftEpochs = 0  # > 0: SFT on (prompt, chosen) first, merged before DPO (Whose Boat)
    sft_learning_rate: LearningRate = 2e-4
    save_steps: int = Field(5, ge=1, le=100000)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the hardware runs it natively
    precompute_ref: bool = True  # reference log-probs computed once before training instead of every step
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, one more forward
    qlora: bool = False  # true: the base in 4 bits (needs CUDA and bitsandbytes); never chosen by the machine
    vpl_tokens: int = Field(1, ge=1, le=64)  # the vpl prefix: soft tokens before the prompt (App. K: one)
    vpl_latent_dim: int = Field(8, ge=1, le=1024)  # dimension of the user latent z
    vpl_hidden: int = Field(64, ge=1, le=8192)  # width of the pair encoder
    vpl_context: int = Field(8, ge=1, le=1024)  # pairs drawn per training forward (App. K: N = 8)
    vpl_pool: int = Field(16, ge=1, le=4096)  # each user's pairs the prefix reads (App. K: K = 16)
    vpl_kl_weight: float = Field(0.01, ge=0.0, le=100.0)  # weight of KL(q(z | pairs) || N(0, I)) beside the DPO loss


class TrainDefaults(RunHyperparameters):
    """`train.defaults`: hyperparameters every run starts from (WikiPersona App. H, scaled down for the CPU), and how
    a run is launched."""

    num_processes: int = Field(1, ge=1, le=1024)
    accelerate_config: str = ""


PREFIX_TYPES = ("none", "tag", "name", "few_shot", "persona", "persona_strong", "gold")  # text prefixes (stage 2)
SOFT_PREFIX_TYPES = ("vpl",)  # input embeddings an MT run learns, not a text (personalign.personas.soft_prefix)
MT_PREFIX_TYPES = (*PREFIX_TYPES, *SOFT_PREFIX_TYPES)
RunKind = Literal["dpo", "pt", "pm", "mt", "sft"]
RUN_KINDS: tuple[str, ...] = get_args(RunKind)
POSITIVE_CONTROL_KINDS = ("dpo", "mt", "pt")  # runs trained on many users' pairs, each compared with the base


class RunIdentity(_Section):
    """What a run trains on: its kind, prefix or persona source, user, dataset, held-out fold, data fraction, seed.
    `prefix`: the MT prefix type or the PT persona source; `user`: the PM user; `source`: the dataset whose pairs
    it trains on ("": all); `held_out_fold`: MT's unseen fold; `fraction`: share of each user's pairs used (seeded)."""

    kind: RunKind
    prefix: str = "none"
    prefix_seed: int = Field(0, ge=0)
    user: str = ""
    source: str = ""  # train on this dataset's pairs only (a key of build_data.datasets); "": every source
    held_out_fold: int | None = Field(None, ge=0)
    fraction: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)

    @field_validator("user")
    @classmethod
    def _safe_user(cls, user: str) -> str:
        return safe_name("user", user) if user else user

    @model_validator(mode="after")
    def _kind_fields(self) -> RunIdentity:
        if self.kind == "pm" and not self.user:
            raise ValueError("kind 'pm' needs a user")
        if self.kind == "pt" and self.prefix not in PT_TRAINING_SOURCES:
            raise ValueError(
                f"kind 'pt' needs a persona source as prefix ({', '.join(PT_TRAINING_SOURCES)}), got {self.prefix!r}"
            )
        if self.kind == "sft" and self.prefix not in ("none", *PT_TRAINING_SOURCES):
            raise ValueError(
                f"kind 'sft' prefix must be none or a PT persona source "
                f"({', '.join(PT_TRAINING_SOURCES)}), got {self.prefix!r}"
            )
        if self.kind == "mt" and self.prefix not in MT_PREFIX_TYPES:
            raise ValueError(
                f"kind 'mt' prefix {self.prefix!r} is not a prefix type; allowed: {', '.join(MT_PREFIX_TYPES)}"
            )
        return self


class TrainRun(RunIdentity):
    """One entry of `train.runs` (the key is the run's name). Hyperparameters left out come from train.defaults."""

    learning_rate: LearningRate | None = None
    epochs: Epochs | None = None
    batch_size: BatchSize | None = None
    beta: Beta | None = None
    max_length: MaxLength | None = None
    sft_epochs: SftEpochs | None = None


class RunSpec(RunIdentity, RunHyperparameters):
    """One training run, resolved: its identity and every hyperparameter (personalign.tuning.runs.resolve_run builds it
    from train.defaults and the run's entry). The one run type of every stage; torch-free."""

    name: str


class TrainParams(_Section):
    """`train`: stage 3, one DVC stage instance per entry of `runs`."""

    defaults: TrainDefaults = Field(default_factory=TrainDefaults)
    runs: dict[str, TrainRun] = Field(default_factory=dict)

    @field_validator("runs", mode="before")
    @classmethod
    def _safe_run_names(cls, runs: Any) -> Any:
        for name in runs if isinstance(runs, dict) else ():
            safe_name("run name", name)
        return runs

    @model_validator(mode="after")
    def _soft_prefix_runs_fit_their_trainer(self) -> TrainParams:
        """A soft prefix (vpl) trains in one process without gradient checkpointing (tuning.shared_prompt)."""
        split = self.defaults.gradient_checkpointing or self.defaults.num_processes > 1
        for name, run in self.runs.items():
            if run.prefix in SOFT_PREFIX_TYPES and split:
                raise ValueError(
                    f"runs.{name}: a soft prefix ({run.prefix}) trains in one process without gradient "
                    "checkpointing; set train.defaults.gradient_checkpointing: false and num_processes: 1, or drop "
                    "the run"
                )
        return self


class AlignmentTaxParams(_Section):
    """Out-of-domain checks (WikiPersona §4.3): local files, each optional; a set without a file is skipped."""

    runs: list[str] = Field(default_factory=lambda: ["dpo", "pt_pair", "mt_persona_f0"])
    limit: int = Field(32, ge=1, le=1_000_000)
    beavertails: ExternalPath = Field("../shared/data/persona_tailoring/BeaverTails", validate_default=True)
    rewardbench: ExternalPath = ""
    rewardbench_subsets: list[str] = Field(default_factory=lambda: ["refusals-dangerous", "refusals-offensive"])
    arc: ExternalPath = ""
    piqa: ExternalPath = ""
    truthfulqa_mc1: ExternalPath = ""

    @property
    def paths(self) -> dict[str, str]:
        """Each out-of-domain set's configured path ("": not configured), by set name."""
        return {name: getattr(self, name) for name in ("beavertails", "rewardbench", "arc", "piqa", "truthfulqa_mc1")}


class ScoreParams(_Section):
    """`score`: stage 4, reference-free and implicit-reward accuracy of the base model and every trained run."""

    base_prefixes: list[str] = Field(
        default_factory=lambda: ["none", "tag", "name", "few_shot", "persona", "persona_strong", "gold"]
    )
    sensitivity: bool = False
    batch_size: int = Field(16, ge=1, le=4096)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the hardware runs it natively
    log_prob_reduction: dict[str, Literal["mean", "sum"]] = Field(default_factory=lambda: {"default": "mean"})
    alignment_tax: AlignmentTaxParams = Field(default_factory=AlignmentTaxParams)

    @field_validator("log_prob_reduction")
    @classmethod
    def _default_reduction(cls, reductions: dict[str, str]) -> dict[str, str]:
        if "default" not in reductions:
            raise ValueError("needs a `default` entry (mean | sum); other keys name datasets (records sources)")
        return reductions

    @field_validator("base_prefixes")
    @classmethod
    def _known_prefixes(cls, types: list[str]) -> list[str]:
        unknown = [t for t in types if t not in PREFIX_TYPES]
        soft = [t for t in unknown if t in SOFT_PREFIX_TYPES]
        if soft:
            raise ValueError(
                f"{soft[0]!r} is a soft prefix an MT run learns; the base model has none (allowed: "
                f"{', '.join(PREFIX_TYPES)})"
            )
        if unknown:
            raise ValueError(f"unknown prefix type {unknown[0]!r}; allowed: {', '.join(PREFIX_TYPES)}")
        return types


class WhoseBoatRuns(_Section):
    """The DPO run (π_base, given the persona as "I am ...") and the PT run (π_test) compared on one dataset."""

    dpo: str
    pt: str


class WhoseBoatParams(_Section):
    """The Whose Boat layout: PT + P vs DPO + P ("I am ..."), per dataset (a records `source`: `builtin` for the
    built-in world), persona side and persona source (personalign.core.persona_sources: `pair` / `retr` inferred in
    stage 2 from the test pair / the nearest training prompt, `dataset_pair` / `dataset_retr` the dataset's own
    columns, `gold` the world's gold persona of the user, chosen side only)."""

    runs: dict[str, WhoseBoatRuns] = Field(
        default_factory=lambda: {"builtin": WhoseBoatRuns(dpo="dpo", pt="pt_pair")}, min_length=1
    )
    persona_sides: list[Literal["chosen", "rejected"]] = Field(default_factory=lambda: ["chosen", "rejected"])
    persona_sources: list[Literal["pair", "retr", "dataset_pair", "dataset_retr", "gold"]] = Field(
        default_factory=lambda: ["pair", "retr"]
    )


class PrefixTableParams(_Section):
    """WikiPersona Table 3: all pairs among the base model and an MT run, each with and without its prefix
    (`mt_run: ""`: no Table 3, e.g. for datasets without per-user prefixes)."""

    mt_run: str = "mt_persona_f0"
    prefix: Literal[PREFIX_TYPES] = "persona"  # type: ignore[valid-type]


class JudgeAgreementParams(_Section):
    """How far the configured judge agrees with a second judge (DESIGN.md: a reported κ, not an assumption):
    `sample` of stage 5's comparisons, drawn with a generator seeded from base.seed (0: not measured), judged again
    by `judge` (default: the hf judge on the stage-0 base model; an openai endpoint when configured)."""

    sample: int = Field(32, ge=0, le=1_000_000)
    judge: JudgeParams = Field(default_factory=lambda: JudgeParams(backend="hf", model="models/base"))


class GenerateJudgeParams(_Section):
    """`generate_judge`: stage 5, sampled responses of the compared systems and pairwise win rates."""

    backend: Literal["hf", "vllm", "openai"] = "hf"  # vllm: CUDA + vllm, adapters as LoRA requests; openai: a server
    # (generators.systems) serving the base and each run's adapter by name
    prompts_per_type: int = Field(1, ge=1, le=1000)
    max_new_tokens: int = Field(64, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=4096)
    qualitative_examples: int = Field(3, ge=0, le=100)
    whose_boat: WhoseBoatParams = Field(default_factory=WhoseBoatParams)
    prefix_table: PrefixTableParams = Field(default_factory=PrefixTableParams)
    agreement: JudgeAgreementParams = Field(default_factory=JudgeAgreementParams)


class AnalysisParams(_Section):
    """`analysis`: stage 6, statistics and figures from the results files."""

    n_resamples: int = Field(2000, ge=100, le=1_000_000)
    demographic_attributes: list[str] = Field(
        default_factory=lambda: ["gender", "age", "education_level", "economic_status"]
    )
    demographics_system: str = "base"
    demographics_condition: str = "none"
    positive_control: str = ""  # the run named in advance as the positive control ("": every DPO, MT and PT run)


REWARD_MODEL_NAMES = ("vanilla", "individual", "conditional", "prm", "vpl", "gpo", "rag")


class RewardModelsParams(_Section):
    """`reward_models`: stage 7, dataset characterisation and personalized reward models ("When Personalization
    Meets Reality") on frozen sentence embeddings: PersonalLLM-style simulated users over the world's personas, the
    stage-1 records, and any `datasets` present on this machine (same entries as build_data.datasets)."""

    simulated_users: int = Field(8, ge=0, le=1000)  # 0: none (needs the built-in world's candidates)
    simulated_alpha: float = Field(0.1, gt=0.0, le=1000.0)
    datasets: dict[str, DatasetSpec] = Field(
        default_factory=lambda: {
            name: DatasetSpec(format="persona_tailoring", path=f"../shared/data/persona_tailoring/{folder}")
            for name, folder in (("beavertails", "BeaverTails"), ("mnemonic", "Mnemonic"))
        }
    )
    train_on: list[Literal["simulated_users", "records"]] = Field(
        default_factory=lambda: ["simulated_users", "records"]
    )
    models: list[Literal[REWARD_MODEL_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(REWARD_MODEL_NAMES), min_length=1
    )
    train_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [10, 30, 100, 300], min_length=1)
    new_users: int = Field(2, ge=0, le=100)
    new_user_pairs: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [30, 100, 300])
    rewardbench: ExternalPath = ""  # personalization tax: a RewardBench file (prompt, chosen, rejected, subset, id)
    n_resamples: int = Field(1000, ge=100, le=1_000_000)

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, datasets: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        return dataset_names(datasets)


class Params(_Section):
    """The whole params file: one section per stage plus `base`."""

    base: BaseParams = Field(default_factory=BaseParams)
    build_data: BuildDataParams = Field(default_factory=BuildDataParams)
    judge: JudgeParams = Field(default_factory=JudgeParams)
    generators: GeneratorsParams = Field(default_factory=GeneratorsParams)
    prefixes: PrefixesParams = Field(default_factory=PrefixesParams)
    train: TrainParams = Field(default_factory=TrainParams)
    score: ScoreParams = Field(default_factory=ScoreParams)
    generate_judge: GenerateJudgeParams = Field(default_factory=GenerateJudgeParams)
    analysis: AnalysisParams = Field(default_factory=AnalysisParams)
    reward_models: RewardModelsParams = Field(default_factory=RewardModelsParams)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Params:
        """Settings of one section that another section's values make meaningless, refused before any compute. A whole
        params file is checked with every section (an absent one is its defaults, as the pipeline would run it); a
        stage's parse of just the sections it reads (context {"stage_sections": True}) checks only between those, as
        another section's defaults (e.g. score.alignment_tax.runs) say nothing about this profile's runs."""
        partial = bool((info.context or {}).get("stage_sections"))
        given = self.model_fields_set if partial else set(type(self).model_fields)

        def both(*sections: str) -> bool:
            return all(section in given for section in sections)

        if both("build_data", "judge") and self.build_data.rejected == "lowest" and self.judge.backend != "simulated":
            raise ValueError(
                f"build_data.rejected = 'lowest' needs judge.backend 'simulated' (the lowest-utility "
                f"candidate), got {self.judge.backend!r}; use rejected: random with an LLM judge"
            )
        if (
            both("generate_judge", "generators")
            and self.generate_judge.backend == "openai"
            and self.generators.systems.backend != "openai"
        ):
            raise ValueError(
                "generate_judge.backend = 'openai' samples the compared systems from generators.systems, which is "
                f"{self.generators.systems.backend!r}; set generators.systems to the OpenAI-compatible server "
                "(backend: openai, model: the base's name there, base_url)"
            )
        runs = self.train.runs
        for name, run in runs.items() if both("build_data", "train") else ():
            if (
                self.build_data.source == "builtin"
                and run.held_out_fold is not None
                and run.held_out_fold >= self.build_data.n_folds
            ):
                raise ValueError(
                    f"train.runs.{name}.held_out_fold = {run.held_out_fold} but build_data.n_folds = "
                    f"{self.build_data.n_folds} (folds 0..{self.build_data.n_folds - 1}): the run would "
                    "train on every user and have no unseen ones"
                )
        named = []
        if both("score", "train"):
            named += [(f"score.alignment_tax.runs[{i}]", r) for i, r in enumerate(self.score.alignment_tax.runs)]
        if both("generate_judge", "train"):
            named += [
                (f"generate_judge.whose_boat.runs.{d}.{k}", getattr(r, k))
                for d, r in self.generate_judge.whose_boat.runs.items()
                for k in ("dpo", "pt")
            ]
            if self.generate_judge.prefix_table.mt_run:
                named.append(("generate_judge.prefix_table.mt_run", self.generate_judge.prefix_table.mt_run))
        for key, name in named if runs else ():  # no runs at all: nothing is trained, scored or judged
            if name not in runs:
                raise ValueError(f"{key} = {name!r} is not in train.runs; defined runs: {', '.join(runs) or 'none'}")
        if both("analysis", "train") and runs and self.analysis.positive_control:
            control = self.analysis.positive_control
            if control not in runs or runs[control].kind not in POSITIVE_CONTROL_KINDS:
                trained = [n for n, r in runs.items() if r.kind in POSITIVE_CONTROL_KINDS]
                raise ValueError(
                    f"analysis.positive_control = {control!r} is not a DPO, MT or PT run of train.runs "
                    f"({', '.join(trained) or 'none'}); '' makes every such run a positive control"
                )
        if (
            both("analysis", "train")
            and self.analysis.demographics_system != "base"
            and self.analysis.demographics_system not in runs
        ):
            raise ValueError(
                f"analysis.demographics_system = {self.analysis.demographics_system!r} is neither 'base' "
                f"nor a run of train.runs ({', '.join(runs) or 'none'})"
            )
        if "build_data" in given and self.build_data.source == "builtin" and given & {"train", "analysis"}:
            world = load_world()
            users = [p.user_id for p in select_personas(world, self.build_data.axes, self.build_data.personas_per_axis)]
            for name, run in runs.items() if "train" in given else ():
                if run.kind == "pm" and run.user not in users:
                    raise ValueError(
                        f"train.runs.{name}.user = {run.user!r} is not a user of the built world "
                        f"(build_data.axes, personas_per_axis); its users: {', '.join(users)}"
                    )
            known = demographic_attributes(world)
            unknown = [a for a in self.analysis.demographic_attributes if a not in known] if "analysis" in given else []
            if unknown:
                raise ValueError(
                    f"analysis.demographic_attributes: unknown attribute {unknown[0]!r}; the built-in "
                    f"world's personas have: {', '.join(known)}"
                )
        return self


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation
    for name, field in Params.model_fields.items()  # type: ignore[misc]
}


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _section_at(path: list[str]) -> type[BaseModel]:
    """The model of the section at a key path; a mapping of sections (train.runs, build_data.datasets) is stepped
    through by its entry's key."""
    model: type[BaseModel] = Params
    parts = list(path)
    while parts and parts[0] in model.model_fields:
        annotation = model.model_fields[parts[0]].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model, parts = annotation, parts[1:]
        elif get_origin(annotation) is dict and issubclass(get_args(annotation)[1], BaseModel) and len(parts) > 1:
            model, parts = get_args(annotation)[1], parts[2:]
        else:
            break
    return model


def _describe(error: dict[str, Any], source: str) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc) if loc else "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _section_at(loc[:-1])
        where = f"section {'.'.join(loc[:-1])!r}" if len(loc) > 1 else "the top level"
        return f"{source}: unknown key {key!r}; allowed keys in {where}: {_allowed_keys(parent)}"
    ctx = error.get("ctx", {})
    got = error.get("input")
    if not loc and kind == "value_error":  # a check across sections names its keys itself
        return f"{source}: {error['msg'].removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"{source}: {key} = {got!r} is not allowed; allowed values: {ctx.get('expected')}"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        bound = next(iter(ctx.values()))
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        return f"{source}: {key} = {got!r} is out of range; must be {op} {bound}"
    if kind.endswith("_type") or kind in {"int_from_float", "bool_parsing", "int_parsing", "float_parsing"}:
        expected = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
        return f"{source}: {key} must be of type {expected} (got {type(got).__name__} {got!r})"
    if kind in {"too_short", "too_long"}:
        return f"{source}: {key}: {error['msg'].lower()}"
    return f"{source}: {key}: {error['msg'].removeprefix('Value error, ')}"


def parse_params(raw: Any, source: str = "params.yaml", stage_sections: bool = False) -> Params:
    """Validate a parsed params mapping; raise ParamsError naming every bad key. `stage_sections`: `raw` holds only
    the sections one stage reads, so sections it lacks are not checked against the others."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: the file must be a mapping of sections ({', '.join(SECTIONS)})")
    try:
        return Params.model_validate(raw, context={"stage_sections": stage_sections})
    except ValidationError as exc:
        lines = [_describe(e, source) for e in exc.errors()]
        raise ParamsError("\n".join(lines)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key used twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(f"key {key!r} is used twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (params.yaml or a profile)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if raw is None:  # nothing but comments and blank lines: DVC would refuse it too
        raise ParamsError(f"{path}: the file is empty; it needs at least one section ({', '.join(SECTIONS)})")
    return parse_params(raw, source=str(path))
