"""Stage 5's head-to-head comparisons: evaluation prompts per user, the systems compared (a model — the base or a
trained run's adapter — and how its prompt is built), seeded generation of their responses, both-orders pairwise
judging of Personalization and Quality, and the W/T/L / win-rate / ΔPQ tables of the Whose Boat paper and
WikiPersona Table 3."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.core import persona_sources
from personalign.core.config import SOFT_PREFIX_TYPES, BaseParams, GeneratorParams, RunSpec
from personalign.core.seeding import stable_seed
from personalign.evaluation.accuracy import seen_users
from personalign.lm.artifacts import LoadedBase, adapter_fingerprint, sft_merged
from personalign.lm.generation import (
    ChatPrompt,
    GenerationCache,
    HFGenerator,
    OpenAIGenerator,
    VLLMGenerator,
    vllm_available,
    vllm_max_lora_rank,
)
from personalign.lm.judge import (
    OTHER_SIDE,
    Judge,
    JudgeContext,
    WorldPersonas,
    as_a_vs_b,
    combine_orders,
    judge_verdicts,
    pair_context,
    world_context,
)
from personalign.lm.models import sampling_precision
from personalign.personas import conditioning
from personalign.stats.win_rates import outcome_agreement


class ComparisonInputError(ValueError):
    """A comparison names a run, prefix or persona the earlier stages did not produce."""


@dataclass(frozen=True)
class System:
    """A model (`base` or a run name) and how it is prompted: `none`, a prefix type (`tag`, `gold`, ...), `pt` (the
    PT template with the row's persona) or `i_am` (the row's persona appended to the prompt as "I am ...")."""

    name: str
    model: str
    prompting: str


def evaluation_prompts(test: pd.DataFrame, per_type: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per user, `per_type` personal and `per_type` divergent test pairs (distinct questions), drawn with `rng`
    from the user's test pairs in id order; sorted by id."""
    picked = []
    for (_, _), rows in test.sort_values("id").groupby(["user_id", "question_type"], sort=True):
        rows = rows.drop_duplicates("prompt")
        picked.append(rows.iloc[np.sort(rng.permutation(len(rows))[:per_type])])
    return pd.concat(picked).sort_values("id", ignore_index=True)


def persona_texts(rows: pd.DataFrame, pair_personas: pd.DataFrame | None, side: str, source: str) -> list[str]:
    """The persona of each evaluation row from one side and source (personalign.core.persona_sources)."""
    try:
        return persona_sources.persona_texts(rows, pair_personas, side, source)
    except persona_sources.PersonaSourceError as exc:
        raise ComparisonInputError(str(exc)) from exc


def judge_contexts(
    rows: pd.DataFrame, pair_personas: pd.DataFrame | None, side: str, source: str, world: WorldPersonas
) -> list[JudgeContext]:
    """The judge's context for each evaluation row, with the rivals DESIGN.md gives its persona. Source `gold`:
    the user's world persona (`world_context`); a user without a gold text in the persona table has only the
    dataset's chosen persona, contrasted with its rejected one. Every other source: the persona inferred from one
    side of the pair, contrasted with the other side's persona of the same source (`pair_context`)."""
    if source == "gold":
        if side != "chosen":
            raise ComparisonInputError("persona source 'gold' has a chosen side only")
        contexts = []
        for row in rows.itertuples():
            if row.user_id in world:
                contexts.append(world_context(world, row.user_id, row.question_type, row.prompt))
            elif row.chosen_persona_gold.strip() and row.rejected_persona_gold.strip():
                contexts.append(
                    pair_context(f"{row.id}:chosen", row.chosen_persona_gold, row.rejected_persona_gold, row.prompt)
                )
            else:
                raise ComparisonInputError(
                    f"test pair {row.id!r}: user {row.user_id!r} has no gold persona in the "
                    "persona table and the pair no chosen and rejected dataset personas"
                )
        return contexts
    personas = persona_texts(rows, pair_personas, side, source)
    opposites = persona_texts(rows, pair_personas, OTHER_SIDE[side], source)
    return [
        pair_context(f"{row.id}:{side}:{source}", persona, opposite, row.prompt)
        for row, persona, opposite in zip(rows.itertuples(), personas, opposites)
    ]


@dataclass(frozen=True)
class WhoseBoatCell:
    """One row of the Whose Boat table: PT + P vs DPO + P on one dataset's evaluation rows, with the personas of
    one side and source (`personas` empty and `missing` saying why when the data has none)."""

    dataset: str
    side: str
    source: str
    rows: pd.DataFrame
    personas: tuple[str, ...]
    dpo: System
    pt: System
    missing: str = ""

    @property
    def setting(self) -> str:
        return f"{self.dataset}/{self.side}/{self.source}"


def check_comparison_runs(settings, run_names: list[str], sources: set[str]) -> None:
    """Stop before compute when a configured comparison names a run that is not trained or a dataset without
    evaluation rows; the message names the key."""
    named = [
        (f"whose_boat.runs.{d}.{k}", getattr(r, k)) for d, r in settings.whose_boat.runs.items() for k in ("dpo", "pt")
    ]
    if settings.prefix_table.mt_run:
        named.append(("prefix_table.mt_run", settings.prefix_table.mt_run))
    for key, name in named:
        if name not in run_names:
            raise ComparisonInputError(
                f"generate_judge.{key} = {name!r} is not in train.runs; defined runs: {', '.join(run_names) or 'none'}"
            )
    for dataset in settings.whose_boat.runs:
        if dataset not in sources:
            raise ComparisonInputError(
                f"generate_judge.whose_boat.runs: dataset {dataset!r} has no test prompts; "
                f"the records' sources are {', '.join(sorted(sources))}"
            )


def check_agreement_judge(judge, agreement) -> None:
    """Stop before compute when the second judge of `generate_judge.agreement` is the configured judge itself (its
    agreement with itself would measure nothing)."""
    if agreement.sample and agreement.judge == judge:
        raise ComparisonInputError(
            "generate_judge.agreement.judge is the configured `judge` itself; name a second "
            "judge (e.g. backend hf on models/base) or set generate_judge.agreement.sample: 0"
        )


def whose_boat_cells(rows: pd.DataFrame, pair_personas: pd.DataFrame | None, whose_boat) -> list[WhoseBoatCell]:
    """Every (dataset, persona side, persona source) cell of the Whose Boat table; a cell whose personas the data
    lacks (e.g. the pair persona of a test split released without responses) is kept with `missing` set, never
    filled in."""
    cells = []
    for dataset, runs in whose_boat.runs.items():
        mine = rows[rows.source == dataset].reset_index(drop=True)
        dpo, pt = System("DPO + P", runs.dpo, "i_am"), System("PT + P", runs.pt, "pt")
        for side in whose_boat.persona_sides:
            for source in whose_boat.persona_sources:
                try:
                    texts, missing = tuple(persona_texts(mine, pair_personas, side, source)), ""
                except ComparisonInputError as exc:
                    texts, missing = (), str(exc)
                cells.append(WhoseBoatCell(dataset, side, source, mine, texts, dpo, pt, missing))
    return cells


def unseen_user_rows(rows: pd.DataFrame, run: RunSpec) -> pd.DataFrame:
    """The evaluation rows of the users `run` did not train on (an MT run: its held-out fold's users), as stage 4
    decides seen / unseen: WikiPersona Table 3 compares "MT (persona not trained)". ComparisonInputError when the
    run trained on every evaluation user or has a soft prefix (stage 5 samples from text prompts only)."""
    if run.prefix in SOFT_PREFIX_TYPES:
        raise ComparisonInputError(
            f"generate_judge.prefix_table.mt_run = {run.name!r} has the soft prefix "
            f"{run.prefix!r}; stage 5 samples from runs with a text prefix only"
        )
    unseen = rows[~seen_users(run, rows)].reset_index(drop=True)
    if unseen.empty:
        raise ComparisonInputError(
            f"generate_judge.prefix_table.mt_run = {run.name!r} (held_out_fold: {run.held_out_fold}) trained on every "
            "evaluation user; Table 3 needs an MT run with a held-out fold whose users have evaluation prompts"
        )
    return unseen


def system_prompts(
    system: System, rows: pd.DataFrame, personas: list[str], prefixes: pd.DataFrame, prefix_seed: int = 0
) -> list[str]:
    """The user message `system` is given for each evaluation row (personalign.personas.conditioning.system_prompts)."""
    return conditioning.system_prompts(
        system.prompting, rows, personas, prefixes, prefix_seed, f"system {system.name!r}"
    )


def generation_seeds(base_seed: int, system: System, rows: pd.DataFrame, setting: str) -> list[int]:
    """One sampling seed per (system, setting, evaluation row), independent of every other row."""
    return [stable_seed(base_seed, "generate_judge", system.name, setting, i) for i in rows.id]


Request = tuple[System, str, list[str], list[int]]  # system, setting, user messages, sampling seeds


def system_requests(
    systems: list[System],
    setting: str,
    rows: pd.DataFrame,
    personas: list[str],
    prefixes: pd.DataFrame,
    base_seed: int,
    prefix_seed: int = 0,
) -> list[Request]:
    """What each system is asked to generate for a setting's rows: its prompts and one seed per row."""
    return [
        (
            system,
            setting,
            system_prompts(system, rows, personas, prefixes, prefix_seed),
            generation_seeds(base_seed, system, rows, setting),
        )
        for system in systems
    ]


def whose_boat_requests(cells: list[WhoseBoatCell], prefixes: pd.DataFrame, base_seed: int) -> list[Request]:
    """The DPO + P and PT + P requests of every Whose Boat cell the data has personas for."""
    return [
        request
        for cell in cells
        if not cell.missing
        for request in system_requests(
            [cell.dpo, cell.pt], cell.setting, cell.rows, list(cell.personas), prefixes, base_seed
        )
    ]


def table3_systems(mt: RunSpec, prefix: str) -> list[System]:
    """WikiPersona Table 3's four systems: the base and the MT run, each without and with `prefix`."""
    return [
        System("base", "base", "none"),
        System(f"base + {prefix}", "base", prefix),
        System("MT", mt.name, "none"),
        System(f"MT + {prefix}", mt.name, prefix),
    ]


def stage_comparisons(
    cells: list[WhoseBoatCell],
    table3: list[System],
    table3_rows: pd.DataFrame,
    responses: dict[tuple[str, str], list[str]],
    pair_personas: pd.DataFrame,
    world_personas,
) -> list[Comparison]:
    """Every comparison stage 5 judges: PT + P against DPO + P in each Whose Boat cell, and every pair of Table 3's
    systems (the later one is the test system), each judged in its rows' contexts."""

    def comparison(setting, test, base, rows, contexts):
        return Comparison(
            setting,
            test,
            base,
            rows,
            tuple(contexts),
            tuple(responses[(test.name, setting)]),
            tuple(responses[(base.name, setting)]),
        )

    found = [
        comparison(
            c.setting, c.pt, c.dpo, c.rows, judge_contexts(c.rows, pair_personas, c.side, c.source, world_personas)
        )
        for c in cells
        if not c.missing
    ]
    contexts = judge_contexts(table3_rows, pair_personas, "chosen", "gold", world_personas) if len(table3_rows) else []
    return found + [
        comparison("table3", test, base, table3_rows, contexts) for base, test in itertools.combinations(table3, 2)
    ]


JUDGED_ROWS_PER_BATCH = 32  # rows whose four verdicts go to the judge together (an endpoint answers concurrently)


def judge_comparison(
    judge: Judge,
    rows: pd.DataFrame,
    contexts: list[JudgeContext],
    test_responses: list[str],
    base_responses: list[str],
    progress=None,
) -> pd.DataFrame:
    """Both-orders outcomes ("a": the test system wins) for Personalization (judged in the row's context, built by
    `judge_contexts`) and Quality, one row per evaluation prompt, with each order's own verdict (`<aspect>_ab`: test
    system shown first, `<aspect>_ba`: base system shown first)."""
    aspects = ("personalization", "quality")
    out = []
    for start in range(0, len(rows), JUDGED_ROWS_PER_BATCH):
        chunk = slice(start, start + JUDGED_ROWS_PER_BATCH)
        triples = list(zip(contexts[chunk], test_responses[chunk], base_responses[chunk]))
        items = [
            item for ctx, a, b in triples for aspect in aspects for item in ((ctx, a, b, aspect), (ctx, b, a, aspect))
        ]
        verdicts = iter(judge_verdicts(judge, items))
        for row in rows.iloc[chunk].itertuples():
            record = {"id": row.id, "user_id": row.user_id, "question_type": row.question_type}
            for aspect in aspects:
                forward, backward = as_a_vs_b(next(verdicts), next(verdicts))
                record.update(
                    {aspect: combine_orders(forward, backward), f"{aspect}_ab": forward, f"{aspect}_ba": backward}
                )
            out.append(record)
        if progress is not None:
            progress.update(len(triples))
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Comparison:
    """One judged comparison: the `test` system's responses against the `base` system's on a setting's evaluation
    rows, Personalization judged in `contexts` (one per row, from `judge_contexts`); the responses are aligned with the
    rows."""

    setting: str
    test: System
    base: System
    rows: pd.DataFrame
    contexts: tuple[JudgeContext, ...]
    test_responses: tuple[str, ...]
    base_responses: tuple[str, ...]

    def restricted(self, ids: set[str]) -> Comparison:
        """The same comparison on the rows whose id is in `ids` only."""
        keep = self.rows.id.isin(ids).to_numpy()

        def pick(values: tuple) -> tuple:
            return tuple(v for v, k in zip(values, keep) if k)

        return Comparison(
            self.setting,
            self.test,
            self.base,
            self.rows[keep].reset_index(drop=True),
            pick(self.contexts),
            pick(self.test_responses),
            pick(self.base_responses),
        )


def judge_comparisons(judge: Judge, comparisons: list[Comparison], progress=None) -> pd.DataFrame:
    """`judge_comparison` over every comparison, each row tagged with its setting and its test and base systems."""
    frames = [
        judge_comparison(
            judge, c.rows, list(c.contexts), list(c.test_responses), list(c.base_responses), progress
        ).assign(setting=c.setting, test=c.test.name, base=c.base.name)
        for c in comparisons
        if len(c.rows)
    ]
    return pd.concat(frames, ignore_index=True)


COMPARISON_KEY = ["setting", "test", "base", "id"]


def agreement_sample(comparisons: list[Comparison], size: int, rng: np.random.Generator) -> list[Comparison]:
    """`size` of the judged (comparison, evaluation row) items drawn without replacement with `rng` (all of them
    when there are fewer), as the comparisons restricted to the drawn rows."""
    items = [(i, row_id) for i, c in enumerate(comparisons) for row_id in c.rows.id]
    drawn = [items[k] for k in np.sort(rng.permutation(len(items))[:size])]
    return [c.restricted({row_id for j, row_id in drawn if j == i}) for i, c in enumerate(comparisons)]


def judge_agreement(primary: pd.DataFrame, secondary: pd.DataFrame) -> pd.DataFrame:
    """Per aspect, how far two judges agree on the both-orders outcomes ("a" / "tie" / "b") of the same comparisons
    (`secondary`'s, looked up in `primary` by setting, systems and row id): n, invalid, raw agreement, Cohen's κ,
    Krippendorff's α and each judge's tie share."""
    merged = secondary.merge(
        primary,
        on=COMPARISON_KEY,
        how="left",
        suffixes=("_secondary", "_primary"),
        validate="one_to_one",
        indicator=True,
    )
    unmatched = merged[merged._merge != "both"]
    if len(unmatched):
        raise ComparisonInputError(
            f"comparison {unmatched.iloc[0][COMPARISON_KEY].to_dict()} was judged by the second judge only"
        )
    rows = []
    for aspect in ("personalization", "quality"):
        stats = outcome_agreement(merged[f"{aspect}_primary"], merged[f"{aspect}_secondary"])
        rows.append(
            {
                "aspect": aspect,
                "n": stats["n"],
                "invalid": stats["invalid"],
                "agreement": stats["agreement"],
                "cohen_kappa": stats["cohen_kappa"],
                "krippendorff_alpha": stats["krippendorff_alpha"],
                "primary_tie": stats["first_tie"],
                "secondary_tie": stats["second_tie"],
            }
        )
    return pd.DataFrame(rows)


def generate_responses(
    base_dir: str,
    adapters_dir: str,
    requests: list[tuple[System, str, list[str], list[int]]],
    sampling,
    batch_size: int,
    cache_path: str,
    base: BaseParams,
    backend: str = "hf",
    server: GeneratorParams | None = None,
) -> dict[tuple[str, str], list[str]]:
    """Responses for each request (system, setting, user messages, seeds), keyed by (system name, setting).
    Generations are cached like every other generation, keyed by the base model and the adapter's files.
    `backend` hf: the base model is loaded once where `base` places it, each run's adapter merged into a copy of it
    (an unmerged LoRA slows every decoding step down several times on a CPU) or switched on it (`base.adapters`),
    an SFT-then-DPO run's SFT adapter first; sampled in `models.sampling_precision`. `backend` vllm (a CUDA GPU and
    the vllm package): one engine on the base serves the base and every run's adapter as LoRA requests; an
    SFT-then-DPO run gets an engine of its own on its SFT-merged model (vLLM cannot stack two adapters), with its DPO
    adapter as the LoRA request; the same sampling parameters and seeds. `backend` openai: `server` (an
    OpenAI-compatible endpoint) samples the base under its `model` and each run under the run's name; it cannot
    stack an SFT-then-DPO run's two adapters, so such a run is refused by name."""
    if backend == "vllm" and not vllm_available():
        raise ComparisonInputError(
            "generate_judge.backend = 'vllm' needs the vllm package and a CUDA GPU, and this machine lacks one; "
            "set generate_judge.backend: hf"
        )
    for system, _, _, _ in requests:
        if system.model != "base" and not (Path(adapters_dir) / system.model / "adapter").is_dir():
            raise ComparisonInputError(f"system {system.name!r}: no trained adapter in {adapters_dir}/{system.model}")
        if backend == "openai" and (Path(adapters_dir) / system.model / "sft_adapter").is_dir():
            raise ComparisonInputError(
                f"system {system.name!r}: run {system.model!r} has an SFT and a DPO adapter, which a server cannot "
                "stack as one LoRA; use generate_judge.backend hf or vllm"
            )
    if backend == "openai":
        if server is None or server.backend != "openai":
            raise ComparisonInputError("generate_judge.backend = 'openai' needs generators.systems: an openai server")
        return _served_responses(requests, sampling, cache_path, server)
    cache = GenerationCache(cache_path)
    if backend == "vllm":  # the engines hold the GPU; the in-process copy only merges SFT adapters, on the CPU
        loaded = LoadedBase.open(base_dir, "cpu", base.dtype, "merged")
    else:
        loaded = LoadedBase.open(base_dir, base.device, base.dtype, base.adapters)
    tokenizer, base_id = loaded.tokenizer, loaded.identity
    precision = sampling_precision(base.dtype, loaded.device)
    models = sorted({s.model for s, _, _, _ in requests}, key=lambda m: (m != "base", m))
    run_dirs = {m: Path(adapters_dir) / m for m in models if m != "base"}
    on_base = [m for m in run_dirs if not (run_dirs[m] / "sft_adapter").is_dir()]  # LoRA requests on the base engine
    engine = None
    if backend == "vllm":
        rank = vllm_max_lora_rank([run_dirs[m] / "adapter" for m in on_base]) if on_base else 0
        engine = VLLMGenerator(base_dir, tokenizer, base_id, cache, batch_size, rank)
        models.sort(key=lambda m: m not in on_base + ["base"])  # SFT-then-DPO runs, each on its own engine, last
    out: dict[tuple[str, str], list[str]] = {}
    try:
        for model_name in models:
            model_id = base_id if model_name == "base" else f"{base_id}+{adapter_fingerprint(run_dirs[model_name])}"
            mine = [r for r in requests if r[0].model == model_name]  # one call: batches span this model's systems
            prompts = [ChatPrompt(p) for _, _, ps, _ in mine for p in ps]
            seeds = [seed for _, _, _, ss in mine for seed in ss]
            if engine is None:
                model = loaded.base() if model_name == "base" else loaded.run(run_dirs[model_name], False)[0]
                generator = HFGenerator(model, tokenizer, model_id, cache, batch_size, precision)
                texts = generator.generate(prompts, sampling, seeds, desc=model_name)
            elif model_name == "base":
                texts = engine.generate(prompts, sampling, seeds, desc=model_name)
            elif model_name in on_base:
                lora_id = on_base.index(model_name) + 1
                texts = engine.for_adapter(run_dirs[model_name] / "adapter", lora_id, model_id).generate(
                    prompts, sampling, seeds, desc=model_name
                )
            else:
                engine.close()
                sft_engine = _sft_engine(loaded.base(), tokenizer, run_dirs[model_name], model_id, cache, batch_size)
                with sft_engine as generator:
                    texts = generator.generate(prompts, sampling, seeds, desc=model_name)
            for system, setting, ps, _ in mine:
                out[(system.name, setting)], texts = texts[: len(ps)], texts[len(ps) :]
    finally:
        if engine is not None:
            engine.close()
    return out


def _served_responses(requests, sampling, cache_path: str, server: GeneratorParams) -> dict[tuple[str, str], list[str]]:
    """Every request sampled from the OpenAI-compatible `server`: the base under `server.model`, a run under its
    name; the cache key holds the server's URL and the name."""
    cache, out = GenerationCache(cache_path), {}
    for model_name in sorted({s.model for s, _, _, _ in requests}, key=lambda m: (m != "base", m)):
        mine = [r for r in requests if r[0].model == model_name]
        generator = OpenAIGenerator(
            server.model if model_name == "base" else model_name,
            server.base_url,
            server.api_key_env,
            cache,
            server.timeout_s,
            server.max_retries,
            concurrency=server.concurrency,
        )
        texts = generator.generate(
            [ChatPrompt(p) for _, _, ps, _ in mine for p in ps],
            sampling,
            [s for *_, ss in mine for s in ss],
            model_name,
        )
        for system, setting, ps, _ in mine:
            out[(system.name, setting)], texts = texts[: len(ps)], texts[len(ps) :]
    return out


@contextlib.contextmanager
def _sft_engine(base, tokenizer, run_dir: Path, model_id: str, cache, batch_size: int):
    """A vLLM engine of the run's own: its SFT-merged model written to a temporary checkpoint, its DPO adapter as the
    LoRA request; closed on leaving."""
    with tempfile.TemporaryDirectory(prefix="personalign-vllm-") as tmp:
        sft_merged(base, run_dir).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        engine = VLLMGenerator(tmp, tokenizer, model_id, cache, batch_size, vllm_max_lora_rank([run_dir / "adapter"]))
        try:
            yield engine.for_adapter(run_dir / "adapter", 1, model_id)
        finally:
            engine.close()
