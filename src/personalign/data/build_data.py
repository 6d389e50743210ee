"""Stage 1: the WikiPersona dataset procedure on the built-in world, at the scale params.yaml sets.

personas -> questions (split per persona / per axis) -> CoT-diverse candidates from the base model ->
artifact stripping -> quality-range filter -> k-means diversity selection -> judge tournament labels -> records."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from personalign.core.config import BuildDataParams
from personalign.core.seeding import stable_seed
from personalign.core.world import Axis, Persona
from personalign.data.candidates import CotPlan, diverse_subset, parse_cot, quality_range_span, strip_artifacts
from personalign.data.splits import split_questions, stratified_folds
from personalign.data.tournament import single_elimination
from personalign.lm.embeddings import Embedder
from personalign.lm.generation import ChatPrompt, Generator, Sampling
from personalign.lm.judge import Judge, SimulatedJudge, WorldPersonas, quality_utility, world_context
from personalign.lm.prompts import COT_SYSTEM, cot_header

GENERIC_PLAN = CotPlan("general", ("concise", "detailed", "practical", "enthusiastic", "cautious"))


@dataclass
class Question:
    """One prompt x with where it came from and which split it is in."""

    qid: str
    question_type: str  # personal | divergent
    prompt: str
    axis: str
    owner: str | None  # user_id for personal questions
    split: str
    plans: list[CotPlan] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    funnel: Counter = field(default_factory=Counter)


def plan_questions(
    world: dict[str, Axis], personas: list[Persona], params: BuildDataParams, seed: int
) -> list[Question]:
    """Divergent questions split per axis (shared by its personas), personal questions split per persona."""
    questions = []
    for axis_id in params.axes:
        axis = world[axis_id]
        rng = np.random.default_rng(stable_seed(seed, "divergent-split", axis_id))
        train, test = split_questions(
            axis.divergent_questions, params.divergent_train_per_axis, params.divergent_test_per_axis, rng
        )
        for split, chosen in (("train", train), ("test", test)):
            for q in chosen:
                qid = f"div-{axis_id}-{axis.divergent_questions.index(q):02d}"
                questions.append(Question(qid, "divergent", q, axis_id, None, split))
    for persona in personas:
        rng = np.random.default_rng(stable_seed(seed, "personal-split", persona.user_id))
        train, test = split_questions(
            persona.personal_questions, params.personal_train_per_persona, params.personal_test_per_persona, rng
        )
        for split, chosen in (("train", train), ("test", test)):
            for q in chosen:
                qid = f"per-{persona.user_id}-{persona.personal_questions.index(q):02d}"
                questions.append(Question(qid, "personal", q, persona.axes[0], persona.user_id, split))
    return sorted(questions, key=lambda q: q.qid)


def add_cot_plans(
    questions: list[Question], world: dict[str, Axis], generator: Generator, params: BuildDataParams, seed: int
) -> None:
    """Divergent questions get the ground-truth axis and categories; personal questions get
    `cot_per_question` CoT headers sampled from the model (G.3), parsed, with a generic fallback."""
    personal = [q for q in questions if q.question_type == "personal"]
    prompts = [ChatPrompt(q.prompt, COT_SYSTEM, "Axis:") for q in personal for _ in range(params.cot_per_question)]
    seeds = [stable_seed(seed, "cot", q.qid, j) for q in personal for j in range(params.cot_per_question)]
    sampling = Sampling(params.cot_max_new_tokens, params.temperature, params.top_p)
    texts = iter(generator.generate(prompts, sampling, seeds, desc="CoT headers"))
    for q in questions:
        if q.question_type == "divergent":
            axis = world[q.axis]
            q.plans = [CotPlan(axis.title, tuple(c.label for c in axis.categories))]
            continue
        for _ in range(params.cot_per_question):
            plan = parse_cot(next(texts), GENERIC_PLAN)
            q.funnel["cot_parsed" if plan is not GENERIC_PLAN else "cot_fallback"] += 1
            q.plans.append(plan)


def add_candidates(questions: list[Question], generator: Generator, params: BuildDataParams, seed: int) -> None:
    """Sample `candidates_per_question` responses per question, cycling through its CoT plans and drawing the
    assumed category uniformly (App. B), then strip giveaway artifacts."""
    prompts, seeds, owners = [], [], []
    for q in questions:
        for j in range(params.candidates_per_question):
            plan = q.plans[j % len(q.plans)]
            rng = np.random.default_rng(stable_seed(seed, "category", q.qid, j))
            category = plan.categories[int(rng.integers(len(plan.categories)))]
            prompts.append(ChatPrompt(q.prompt, COT_SYSTEM, cot_header(plan.axis, list(plan.categories), category)))
            seeds.append(stable_seed(seed, "candidate", q.qid, j))
            owners.append((q, category))
    sampling = Sampling(params.max_new_tokens, params.temperature, params.top_p)
    for (q, category), raw in zip(owners, generator.generate(prompts, sampling, seeds, desc="candidates")):
        q.candidates.append({"category": category, "raw": raw, "text": strip_artifacts(raw)})
        q.funnel["generated"] += 1


def filter_candidates(questions: list[Question], embedder: Embedder, params: BuildDataParams, seed: int) -> None:
    """Drop too-short and duplicate candidates, keep the tightest span of quality (`judge.quality_utility`), then
    pick diverse ones (k-means on the embeddings)."""
    for q in tqdm(questions, desc="filter", unit="question", mininterval=2):
        seen: set[str] = set()
        pool = []
        for c in q.candidates:
            if len(c["text"].split()) < params.min_response_words:
                q.funnel["dropped_short"] += 1
            elif c["text"] in seen:
                q.funnel["dropped_duplicate"] += 1
            else:
                seen.add(c["text"])
                pool.append(c["text"])
        scores = quality_utility(embedder, q.prompt, pool) if pool else np.zeros(0)
        by_text = dict(zip(pool, scores))
        for c in q.candidates:
            c["quality"] = round(float(by_text[c["text"]]), 6) if c["text"] in by_text else None
        if len(pool) < 2:
            q.funnel["question_dropped"] += 1
            continue
        span = quality_range_span(scores, params.quality_keep)
        kept = [pool[i] for i in span]
        q.funnel["after_quality"] += len(kept)
        picks = diverse_subset(embedder.encode(kept), params.diversity_k, stable_seed(seed, "kmeans", q.qid))
        q.selected = [kept[i] for i in picks]
        q.funnel["selected"] += len(q.selected)


def label_pairs(
    questions: list[Question],
    personas: list[Persona],
    judge: Judge,
    folds: dict[str, int],
    seed: int,
    rejected: str = "random",
) -> list[dict]:
    """Tournament labels per (persona, question): y_w = winner; y_l = a seeded random non-winner (`rejected`
    "random", WikiPersona) or the candidate of lowest utility for the persona ("lowest": the strongest contrast,
    simulated judge only). The simulated judge's matches compare utilities; an LLM judge (hf, openai) is asked
    each match (`Judge.prefers`, WikiPersona's tournament)."""
    if rejected not in ("random", "lowest"):
        raise ValueError(f"build_data.rejected: {rejected!r}; allowed: random, lowest")
    scored = isinstance(judge, SimulatedJudge)
    if rejected == "lowest" and not scored:
        raise ValueError("build_data.rejected: lowest needs the simulated judge's utilities")
    by_axis: dict[str, list[Persona]] = {}
    for p in personas:
        by_axis.setdefault(p.axes[0], []).append(p)
    by_id = {p.user_id: p for p in personas}
    world = WorldPersonas(tuple((p.user_id, p.axes[0], p.gold) for p in personas))
    records = []
    for q in tqdm(questions, desc="tournaments", unit="question", mininterval=2):
        if len(q.selected) < 2:
            continue
        judged = by_axis[q.axis] if q.question_type == "divergent" else [by_id[q.owner]]
        for persona in judged:
            ctx = world_context(world, persona.user_id, q.question_type, q.prompt)
            if scored:
                utility = judge.utilities(ctx, q.selected)
                match = lambda a, b, u=utility: bool(u[a] > u[b])  # noqa: E731
            else:
                match = lambda a, b, c=ctx, s=q.selected: judge.prefers(c, s[a], s[b])  # noqa: E731
            result = single_elimination(
                len(q.selected),
                match,
                np.random.default_rng(stable_seed(seed, "tournament", persona.user_id, q.qid)),
            )
            loser = (
                result.loser
                if rejected == "random"
                else min((i for i in range(len(q.selected)) if i != result.winner), key=lambda i: utility[i])
            )
            records.append(
                {
                    "id": f"{persona.user_id}:{q.qid}",
                    "source": "builtin",
                    "user_id": persona.user_id,
                    "user_name": persona.name,
                    "axes": list(persona.axes),
                    "question_type": q.question_type,
                    "prompt": q.prompt,
                    "chosen": q.selected[result.winner],
                    "rejected": q.selected[loser],
                    "split": q.split,
                    "fold": folds[persona.user_id],
                    "chosen_persona_gold": persona.gold,
                    "rejected_persona_gold": "",
                    "chosen_persona_retr": "",
                    "rejected_persona_retr": "",
                }
            )
    return records


def persona_rows(personas: list[Persona]) -> list[dict]:
    """The persona table: user_id, name, tag, axes, category, gold, demographics."""
    return [
        {
            "user_id": p.user_id,
            "name": p.name,
            "tag": p.tag,
            "axes": list(p.axes),
            "category": p.category,
            "gold": p.gold,
            "demographics": dict(p.demographics),
        }
        for p in personas
    ]


def fold_assignment(personas: list[Persona], n_folds: int, seed: int) -> dict[str, int]:
    """CV folds over the dataset's personas, stratified by axis."""
    users_by_axis: dict[str, list[str]] = {}
    for p in personas:
        users_by_axis.setdefault(p.axes[0], []).append(p.user_id)
    return stratified_folds(users_by_axis, n_folds, np.random.default_rng(stable_seed(seed, "folds")))


def candidate_rows(questions: list[Question]) -> list[dict]:
    """Per question: its plans, every candidate (raw and stripped), the selected set and the filter funnel."""
    return [
        {
            "qid": q.qid,
            "question_type": q.question_type,
            "axis": q.axis,
            "owner": q.owner,
            "split": q.split,
            "prompt": q.prompt,
            "plans": [{"axis": p.axis, "categories": list(p.categories)} for p in q.plans],
            "candidates": q.candidates,
            "selected": q.selected,
            "funnel": dict(sorted(q.funnel.items())),
        }
        for q in questions
    ]
