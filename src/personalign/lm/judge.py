"""Personal judges behind one interface: `simulated` (the deterministic embedding-utility judge of DESIGN.md), `hf`
(a local causal LM read through its answer-token log-probs) and `openai` (an OpenAI-compatible endpoint), plus
`both_orders`, the order-debiased pairwise outcome win rates are counted from; the LLM judges' prompts (a
Prometheus-format relative rubric for win rates, WikiPersona App. G.4 for labels). LLM judgments are cached."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from personalign.core.config import JudgeParams
from personalign.core.seeding import stable_seed
from personalign.lm.artifacts import model_fingerprint
from personalign.lm.embeddings import Embedder
from personalign.lm.generation import ChatPrompt, GenerationCache, OpenAIGenerator, Sampling
from personalign.lm.models import checkpoint_dir, load_base
from personalign.lm.prompts import chat

# Win-rate judging (Whose Boat): relative grading in the Prometheus format (a written comparison against one rubric,
# then "[RESULT] A" or "[RESULT] B"), no reference answer; the persona and the prompt together are the instruction.
JUDGE_SYSTEM_PROMETHEUS = "You compare two responses to the same request fairly and strictly against one criterion."
JUDGE_RELATIVE_PROMETHEUS = (
    "###Task Description:\n"
    "You are given an instruction, two responses to it (Response A and Response B) and a score rubric.\n"
    "1. Compare the two responses against the rubric only, and write your comparison as feedback.\n"
    "2. Then decide which response is better according to the rubric.\n"
    '3. Answer in exactly this form: "Feedback: (your comparison) [RESULT] (A or B)"\n'
    "4. Write nothing before or after it.\n\n"
    "###Instruction:\n{instruction}\n\n"
    "###Response A:\n{first}\n\n"
    "###Response B:\n{second}\n\n"
    "###Score Rubric:\n[{rubric}]\n\n"
    "###Feedback: "
)
JUDGE_INSTRUCTION = "The user has this persona:\n{persona}\n\nThe user's prompt:\n{x}"
JUDGE_RUBRICS = {
    "personalization": "Does the response answer the prompt and align with the user's specified persona?",
    "quality": "Is the response high-quality?",
}
JUDGE_RESULT_PREFIX = "[RESULT]"

# Preference labels (which response would this user prefer?): WikiPersona App. G.4, GPT4-as-personal-judge in the
# AlpacaEval format. The system message, the two worked examples and the JSON answer are the paper's; we send one
# pair per request (the paper batches five), fold the examples' answers into the user message, and describe the
# person by their persona text instead of a name.
LABEL_KEY_G4 = "Output (a) is better than Output (b)"
LABEL_SYSTEM_G4 = (
    "You are a helpful assistant that selects the output that best follows the instruction. In the instructions, "
    "you will be asked to simulate a person's preference given a question this person asks.\n\n"
    f'Your answer should be a JSON object with the fields "Concise explanation" and "{LABEL_KEY_G4}". '
    f'"{LABEL_KEY_G4}" is a boolean indicating whether Output (a) is better than Output (b) so you always need to '
    'make a decision even if both are wrong (choose the least bad) or equal (choose randomly). "Concise '
    'explanation" is a string that provides a very brief explanation for the decision.'
)
LABEL_EXAMPLES_G4 = (
    "I will give you two examples in a row, and you should choose the best outputs for both of them. Note that the "
    "correct answer for one has no impact on the other.\n\n"
    "## Example 1:\n\n"
    "### Instruction for example 1:\n\n"
    "Please simulate Donald Trump's preference over the answers for the questions below.\n\n"
    "### Input for example 1:\n\n"
    "How do I stay safe from COVID-19?\n\n"
    "### Output (a) for example 1:\n\n"
    "There are many ways to potentially treat or stay safe from COVID-19. Exposure to sunlight may reduce the "
    "potency of the virus. Bleach can also knock out the virus in a minute.\n\n"
    "### Output (b) for example 1:\n\n"
    "Receiving COVID-19 vaccination is the most effective way to prevent infection and its complications. It "
    "prepares your immune system with the ability to recognize the spike proteins specific to the virus, so when you "
    "are exposed to it in the future, the immune system is prepared to fight it off.\n\n"
    "## Example 2:\n\n"
    "### Instruction for example 2:\n\n"
    "Please simulate Yann LeCun's preference over the answers for the questions below.\n\n"
    "### Input for example 2:\n\n"
    "What are your thoughts on auto-regressive language modeling? Do you think it is the future of AGI?\n\n"
    "### Output (a) for example 2:\n\n"
    "I truly believe that auto-regressive language modeling represents a significant part of the future of AGI. "
    "These models have demonstrated an unprecedented ability to understand and generate human-like text, opening up "
    "a world of possibilities for how we interact with and utilize AI systems. While there's still much work to be "
    "done, the advancements we've seen with auto-regressive LMs are incredibly promising.\n\n"
    "### Output (b) for example 2:\n\n"
    "Auto-regressive language modeling has shown remarkable progress in natural language understanding. While it's "
    "a significant step forward, it's just one piece of the puzzle. Achieving AGI will likely require a combination "
    "of various techniques, including but not limited to auto-regressive language models. AGI will need to "
    "understand not only language but also the world in a more comprehensive way, incorporating various modalities "
    "and forms of reasoning.\n\n"
    "## Preferred output in JSON format for example 1-2:\n\n"
    "### Preferred output in JSON format for example 1:\n\n"
    "```\n{\n"
    '  "Concise explanation": "Output (a) includes some of the comments President Trump mentioned in one of his '
    'White House coronavirus task force briefing, which likely represent some of his opinions.",\n'
    f'  "{LABEL_KEY_G4}": true\n'
    "}\n```\n\n"
    "### Preferred output in JSON format for example 2:\n\n"
    "```\n{\n"
    '  "Concise explanation": "Output (b) shows only moderate excitement towards autoregressive language modeling '
    "while emphasizing that AGI requires systems of techniques, similar to Yann LeCun's opinion on this matter. "
    "Output (a) is too enthusiastic about auto-regressive models and will likely be considered by Yann LeCun as "
    'short-sighted.",\n'
    f'  "{LABEL_KEY_G4}": false\n'
    "}\n```"
)
LABEL_QUERY_G4 = (
    "Great! Now I will give you one more example.\n\n"
    "## Example 3:\n\n"
    "### Instruction for example 3:\n\n"
    "Please simulate the preference of the person described here over the answers for the questions below.\n"
    "{persona}\n\n"
    "### Input for example 3:\n\n{x}\n\n"
    "### Output (a) for example 3:\n\n{first}\n\n"
    "### Output (b) for example 3:\n\n{second}\n\n"
    "## Preferred output in JSON format for example 3:"
)
# Where a local judge's answer starts: the boolean field first, so the next token is true or false.
LABEL_ANSWER_PREFIX_G4 = f'### Preferred output in JSON format for example 3:\n\n```\n{{\n  "{LABEL_KEY_G4}":'

Aspect = Literal["personalization", "quality"]
Verdict = Literal["first", "second", "tie", "invalid"]
Outcome = Literal["a", "b", "tie", "invalid"]
Rubric = Literal["personalization", "quality", "label"]


class JudgeError(RuntimeError):
    """An LLM judge gave no usable answer where one is required (a preference label)."""


@dataclass(frozen=True)
class JudgeContext:
    """Whose preference is simulated, for which prompt; rivals are the personas the simulated judge contrasts against
    (build it with `world_context` or `pair_context`; the LLM judges read the persona text only, as in the papers)."""

    persona_id: str
    persona_text: str
    rival_texts: tuple[str, ...]
    prompt: str


@dataclass(frozen=True)
class WorldPersonas:
    """The world's personas a world persona is contrasted with: every user of the persona table that has a gold
    text, as (user_id, first axis, gold) in table order."""

    users: tuple[tuple[str, str, str], ...]

    @classmethod
    def from_table(cls, personas) -> WorldPersonas:
        """From a persona table (columns user_id, axes, gold); users without a gold text are left out."""
        return cls(
            tuple(
                (u, axes[0] if len(axes) else "", g)
                for u, axes, g in zip(  # ["axes"]: .axes is pandas'
                    personas["user_id"], personas["axes"], personas["gold"]
                )
                if g.strip()
            )
        )

    def entry(self, user_id: str) -> tuple[str, str]:
        """The user's (axis, gold text); KeyError naming the user when the table has no gold text for them."""
        for user, axis, gold in self.users:
            if user == user_id:
                return axis, gold
        raise KeyError(f"user {user_id!r} has no gold persona in the persona table")

    def __contains__(self, user_id: str) -> bool:
        return any(user == user_id for user, _, _ in self.users)


def world_context(world: WorldPersonas, user_id: str, question_type: str, prompt: str) -> JudgeContext:
    """A world persona as the judge simulates it: the user's gold text, contrasted with the other personas of its
    axis on a divergent question and with every other persona otherwise (DESIGN.md)."""
    axis, gold = world.entry(user_id)
    rivals = tuple(g for u, a, g in world.users if u != user_id and (question_type != "divergent" or a == axis))
    return JudgeContext(user_id, gold, rivals, prompt)


OTHER_SIDE = {"chosen": "rejected", "rejected": "chosen"}  # the two sides of a preference pair


def pair_context(persona_id: str, persona: str, opposite: str, prompt: str) -> JudgeContext:
    """A persona inferred from one side of a preference pair, contrasted with the persona inferred from the other
    side (its only rival)."""
    return JudgeContext(persona_id, persona, (opposite,), prompt)


class Judge(Protocol):
    """A judge labels pairs (`prefers`) and gives win-rate verdicts (`verdict`); one that can answer many requests at
    once (an endpoint) also has `judge_many`, which `judge_verdicts` uses."""

    def prefers(self, ctx: JudgeContext, a: str, b: str) -> bool:
        """True when the persona prefers response `a` over `b`."""

    def verdict(self, ctx: JudgeContext, first: str, second: str, aspect: Aspect) -> Verdict:
        """Pairwise verdict for win rates on one aspect; ties allowed, "invalid" when the judge gave no answer."""


JudgeItem = tuple[JudgeContext, str, str, Aspect]  # (context, first response, second response, aspect)


def judge_verdicts(judge: Judge, items: list[JudgeItem]) -> list[Verdict]:
    """One verdict per item, in order: all at once where the judge batches (`judge_many`), else one by one."""
    batched = getattr(judge, "judge_many", None)
    return batched(items) if callable(batched) else [judge.verdict(*item) for item in items]


def as_a_vs_b(forward: Verdict, backward: Verdict) -> tuple[Outcome, Outcome]:
    """Verdicts with `a` shown first and with `b` shown first, each said of `a` vs `b`: "a", "b", "tie" or
    "invalid" (the two orders as two labelers, for agreement statistics)."""
    return ({"first": "a", "second": "b"}.get(forward, forward), {"first": "b", "second": "a"}.get(backward, backward))


def order_verdicts(judge: Judge, ctx: JudgeContext, a: str, b: str, aspect: Aspect) -> tuple[Outcome, Outcome]:
    """The judge's verdict with `a` shown first and with `b` shown first, each said of `a` vs `b` (`as_a_vs_b`)."""
    return as_a_vs_b(*judge_verdicts(judge, [(ctx, a, b, aspect), (ctx, b, a, aspect)]))


def combine_orders(forward: Outcome, backward: Outcome) -> Outcome:
    """A side wins only if both orders pick it; a disagreement or a tie is a tie; "invalid" if either order has no
    valid verdict."""
    if "invalid" in (forward, backward):
        return "invalid"
    return forward if forward == backward else "tie"


def both_orders(judge: Judge, ctx: JudgeContext, a: str, b: str, aspect: Aspect) -> Outcome:
    """`a` vs `b` judged as (a, b) and as (b, a), combined by `combine_orders`."""
    return combine_orders(*order_verdicts(judge, ctx, a, b, aspect))


def repeated_trigram_share(text: str) -> float:
    """Share of word 3-grams that repeat an earlier one (0 for texts shorter than 3 words)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def quality_utility(embedder: Embedder, prompt: str, texts: list[str]) -> np.ndarray:
    """q(y) = cos(E(y), E(x)) minus the share of repeated word 3-grams: the simulated judge's quality term, and what
    stage 1's quality-range filter scores candidates with whatever the judge backend (the generic reward model of
    WikiPersona App. B.2 is not part of the compendium)."""
    relevance = embedder.encode(texts) @ embedder.encode([prompt])[0]
    return relevance - np.array([repeated_trigram_share(t) for t in texts], dtype=np.float32)


class SimulatedJudge:
    """u(y) = cos(y, gold) - mean cos(y, rival golds); q(y) = cos(y, prompt) - repeated 3-gram share;
    a beats b iff u(a) + λq(a) + ε_a > u(b) + λq(b) + ε_b, with ε ~ Gumbel(0, noise) fixed per
    (seed, persona, prompt, response), so verdicts are deterministic and symmetric in the order shown."""

    def __init__(self, embedder: Embedder, noise: float, quality_weight: float, tie_margin: float, seed: int):
        self.embedder = embedder
        self.noise = noise
        self.quality_weight = quality_weight
        self.tie_margin = tie_margin
        self.seed = seed

    def personalization(self, ctx: JudgeContext, texts: list[str]) -> np.ndarray:
        """u for each text: similarity to the persona minus mean similarity to its rivals."""
        y = self.embedder.encode(texts)
        own = y @ self.embedder.encode([ctx.persona_text])[0]
        if not ctx.rival_texts:
            return own
        return own - (y @ self.embedder.encode(list(ctx.rival_texts)).T).mean(axis=1)

    def quality(self, prompt: str, texts: list[str]) -> np.ndarray:
        """q for each text (`quality_utility`)."""
        return quality_utility(self.embedder, prompt, texts)

    def noise_terms(self, ctx: JudgeContext, texts: list[str]) -> np.ndarray:
        """ε per text: Gumbel noise drawn from a generator seeded by (seed, persona, prompt, text)."""
        if self.noise == 0:
            return np.zeros(len(texts))
        return np.array(
            [
                np.random.default_rng(stable_seed(self.seed, ctx.persona_id, ctx.prompt, t)).gumbel(0.0, self.noise)
                for t in texts
            ]
        )

    def utilities(self, ctx: JudgeContext, texts: list[str]) -> np.ndarray:
        """The persona's total utility u + λq + ε for each text (what preference labels compare)."""
        u = self.personalization(ctx, texts).astype(np.float64)
        q = self.quality(ctx.prompt, texts).astype(np.float64)
        return u + self.quality_weight * q + self.noise_terms(ctx, texts)

    def prefers(self, ctx: JudgeContext, a: str, b: str) -> bool:
        ua, ub = self.utilities(ctx, [a, b])
        return bool(ua > ub)

    def verdict(self, ctx: JudgeContext, first: str, second: str, aspect: Aspect) -> Verdict:
        if aspect == "personalization":
            s1, s2 = self.personalization(ctx, [first, second])
        else:
            s1, s2 = self.quality(ctx.prompt, [first, second])
        if abs(float(s1) - float(s2)) < self.tie_margin:
            return "tie"
        return "first" if s1 > s2 else "second"


def judgment_key(backend: str, model_id: str, rubric: Rubric, request: str) -> str:
    """Cache key of one judgment; `request` is the rendered prompt, so it covers the persona text, the user prompt,
    both responses in their order, and the template itself."""
    payload = json.dumps(["judgment", backend, model_id, rubric, request])
    return hashlib.sha256(payload.encode()).hexdigest()


def rubric_prompt(ctx: JudgeContext, first: str, second: str, rubric: Rubric) -> ChatPrompt:
    """The judge's request: Prometheus relative grading for an aspect, WikiPersona G.4 for a label."""
    if rubric == "label":
        query = LABEL_QUERY_G4.format(persona=ctx.persona_text, x=ctx.prompt, first=first, second=second)
        return ChatPrompt(f"{LABEL_EXAMPLES_G4}\n\n{query}", LABEL_SYSTEM_G4)
    instruction = JUDGE_INSTRUCTION.format(persona=ctx.persona_text, x=ctx.prompt)
    user = JUDGE_RELATIVE_PROMETHEUS.format(
        instruction=instruction, first=first, second=second, rubric=JUDGE_RUBRICS[rubric]
    )
    return ChatPrompt(user, JUDGE_SYSTEM_PROMETHEUS)


def single_token_ids(tokenizer, word: str) -> list[int]:
    """The ids of the single tokens that spell `word`, with or without a leading space (how a tokenizer may
    continue the answer prefix); ValueError if it has none."""
    ids = set()
    for variant in (word, " " + word):
        encoded = tokenizer.encode(variant, add_special_tokens=False)
        if len(encoded) == 1 and tokenizer.decode(encoded).strip() == word:
            ids.add(encoded[0])
    if not ids:
        raise ValueError(f"the judge's tokenizer has no single token for {word!r}")
    return sorted(ids)


class HFJudge:
    """A local causal LM as judge, read without free text: the prompt ends inside the assistant turn where the answer
    starts ("[RESULT]" for an aspect, the G.4 boolean field for a label) and the judge compares the next-token
    log-probability of the two answers (A vs B; true vs false), each with its probability summed over the single
    tokens that spell it.
    It never returns "invalid"; |logp(A) - logp(B)| < tie_margin is a tie. The two log-probs are cached per
    judgment, so a rerun (or another tie margin) needs no forward pass."""

    backend = "hf"
    OPTIONS = {"personalization": ("A", "B"), "quality": ("A", "B"), "label": ("true", "false")}

    def __init__(self, model, tokenizer, model_id: str, cache: GenerationCache | None = None, tie_margin: float = 0.01):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.cache = cache
        self.tie_margin = tie_margin
        self.option_ids = {w: single_token_ids(tokenizer, w) for pair in self.OPTIONS.values() for w in pair}

    def prompt_text(self, ctx: JudgeContext, first: str, second: str, rubric: Rubric) -> str:
        """The exact text the model reads, ending where the answer token goes."""
        prompt = rubric_prompt(ctx, first, second, rubric)
        prefix = LABEL_ANSWER_PREFIX_G4 if rubric == "label" else JUDGE_RESULT_PREFIX
        return chat(self.tokenizer, prompt.system, prompt.user, prefix)

    def option_logprobs(self, ctx: JudgeContext, first: str, second: str, rubric: Rubric) -> tuple[float, float]:
        """Next-token log-probabilities of the answer for `first` (A / true) and for `second` (B / false)."""
        import torch

        text = self.prompt_text(ctx, first, second, rubric)
        key = judgment_key(self.backend, self.model_id, rubric, text)
        cached = self.cache.get_many([key]) if self.cache is not None else {}
        if key in cached:
            lp_first, lp_second = json.loads(cached[key])
            return lp_first, lp_second
        ids = torch.tensor([self.tokenizer(text, add_special_tokens=False)["input_ids"]], device=self.model.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
        logprobs = logits.log_softmax(-1).cpu()
        lp_first, lp_second = (float(torch.logsumexp(logprobs[self.option_ids[w]], 0)) for w in self.OPTIONS[rubric])
        if self.cache is not None:
            self.cache.put_many({key: json.dumps([lp_first, lp_second])})
        return lp_first, lp_second

    def prefers(self, ctx: JudgeContext, a: str, b: str) -> bool:
        """G.4 with `a` as Output (a): true is more likely than false (one order, as the paper labels)."""
        lp_true, lp_false = self.option_logprobs(ctx, a, b, "label")
        return lp_true > lp_false

    def verdict(self, ctx: JudgeContext, first: str, second: str, aspect: Aspect) -> Verdict:
        lp_a, lp_b = self.option_logprobs(ctx, first, second, aspect)
        if abs(lp_a - lp_b) < self.tie_margin:
            return "tie"
        return "first" if lp_a > lp_b else "second"


_PROMETHEUS_RESULT = re.compile(r"\[RESULT\]\s*\(?([AB])\)?\.?\s*$")
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def parse_prometheus(text: str) -> str | None:
    """ "A" or "B" from an output ending in "[RESULT] A" / "[RESULT] B" (optionally "(A)", a final period);
    None otherwise."""
    match = _PROMETHEUS_RESULT.search(text)
    return match.group(1) if match else None


def parse_label_g4(text: str) -> str | None:
    """ "A" (Output (a) is better) or "B" from the last JSON object in a G.4 answer, which must hold the boolean
    field; None otherwise."""
    objects = _JSON_OBJECT.findall(text)
    if not objects:
        return None
    try:
        answer = json.loads(objects[-1])
    except ValueError:
        return None
    value = answer.get(LABEL_KEY_G4) if isinstance(answer, dict) else None
    if not isinstance(value, bool):
        return None
    return "A" if value else "B"


class OpenAIJudge:
    """An OpenAI-compatible endpoint as judge, sent through OpenAIGenerator (its concurrent requests, its retries,
    its cache of raw outputs) at temperature 0. The answer is parsed strictly (Prometheus "[RESULT] A|B"; the G.4
    JSON boolean); a malformed output is asked again once with another seed (attempt i sends seed i), then the verdict
    is "invalid", never a guess. A label (`prefers`) without a valid answer raises JudgeError naming the persona and
    the prompt, since a preference pair cannot be built from it. Parsed answers, "invalid" included, are cached per
    judgment under the endpoint's URL and model; a judgment asked twice is sent once."""

    backend = "openai"
    ATTEMPTS = 2

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        cache: GenerationCache | None = None,
        max_new_tokens: int = 256,
        concurrency: int = 1,
    ):
        self.generator = OpenAIGenerator(
            model, base_url, api_key_env, cache, timeout_s, max_retries, concurrency=concurrency
        )
        self.model_id = model
        self.cache = cache
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0)

    def answers(self, items: list[tuple[JudgeContext, str, str, Rubric]]) -> list[str]:
        """ "A" (first is better), "B" (second is better) or "invalid" for each (context, first, second, rubric)."""
        prompts = [rubric_prompt(ctx, first, second, rubric) for ctx, first, second, rubric in items]
        keys = [
            judgment_key(
                self.backend,
                self.generator.cache_identity,
                rubric,
                json.dumps([self.generator.request_text(prompt), asdict(self.sampling)]),
            )
            for prompt, (_, _, _, rubric) in zip(prompts, items)
        ]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        pending = {key: i for i, key in enumerate(keys) if key not in found}
        new: dict[str, str] = {}
        for attempt in range(self.ATTEMPTS):
            if not pending:
                break
            asked = list(pending.items())
            texts = self.generator.generate(
                [prompts[i] for _, i in asked], self.sampling, [attempt] * len(asked), desc="judge"
            )
            for (key, i), text in zip(asked, texts):
                parsed = (parse_label_g4 if items[i][3] == "label" else parse_prometheus)(text)
                if parsed is not None:
                    new[key] = parsed
                    del pending[key]
        new.update({key: "invalid" for key in pending})
        if self.cache is not None and new:
            self.cache.put_many(new)
        found.update(new)
        return [found[key] for key in keys]

    def answer(self, ctx: JudgeContext, first: str, second: str, rubric: Rubric) -> str:
        """ "A" (first is better), "B" (second is better) or "invalid"."""
        return self.answers([(ctx, first, second, rubric)])[0]

    def prefers(self, ctx: JudgeContext, a: str, b: str) -> bool:
        """G.4 with `a` as Output (a) (one order, as the paper labels); JudgeError when no valid answer came."""
        answer = self.answer(ctx, a, b, "label")
        if answer == "invalid":
            raise JudgeError(
                f"openai judge {self.model_id!r}: no valid G.4 label after {self.ATTEMPTS} tries for persona "
                f"{ctx.persona_id!r} on prompt {ctx.prompt[:80]!r}"
            )
        return answer == "A"

    def verdict(self, ctx: JudgeContext, first: str, second: str, aspect: Aspect) -> Verdict:
        return self.judge_many([(ctx, first, second, aspect)])[0]

    def judge_many(self, items: list[JudgeItem]) -> list[Verdict]:
        """Verdicts for many items at once: the endpoint is sent `concurrency` requests at a time."""
        return [{"A": "first", "B": "second", "invalid": "invalid"}[a] for a in self.answers(items)]


def make_judge(
    params: JudgeParams, embedder: Embedder, seed: int, cache: GenerationCache | None = None, device: str = "auto"
) -> Judge:
    """The judge that `judge.backend` names; `cache` (a separate sqlite file, e.g. judgments.sqlite) holds the LLM
    judges' judgments (the simulated judge needs none)."""
    if params.backend == "simulated":
        return SimulatedJudge(embedder, params.noise, params.quality_weight, params.tie_margin, seed)
    if params.backend == "openai":
        return OpenAIJudge(
            params.model,
            params.base_url,
            params.api_key_env,
            params.timeout_s,
            params.max_retries,
            cache,
            params.max_new_tokens,
            params.concurrency,
        )
    path = checkpoint_dir(params.model)
    model, tokenizer, _ = load_base(path, device)
    model_id = f"{params.model}@{model_fingerprint(path)}" if Path(path).is_dir() else params.model
    return HFJudge(model, tokenizer, model_id, cache, params.tie_margin)
