"""How a persona or a prefix reaches a prompt, for training pairs, scored test pairs, generation and the
out-of-domain checks: the PT template with a persona (Persona Tailoring), a user's text prefix (WikiPersona
App. G.7-G.10), "I am ..." (Whose Boat's DPO + P). Imports config, prompts, persona_sources and seeding only."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import pandas as pd

from personalign.core.config import SOFT_PREFIX_TYPES, RunSpec
from personalign.core.persona_sources import PERSONA_SOURCES, PersonaSourceError, persona_texts
from personalign.core.seeding import stable_seed
from personalign.lm.prompts import PT_TEMPLATE, prefixed_prompt

PT_VARIANTS = {f"pt_{source}": source for source in PERSONA_SOURCES}  # the PT template with the chosen persona
_THIRD_PERSON = {"is": "am", "has": "have", "does": "do", "was": "was"}


class ConditioningError(ValueError):
    """A prompt cannot be conditioned as asked; the message names who asked (run, variant, system) and what is
    missing."""


def uses_persona_template(run: RunSpec) -> bool:
    """Whether the run reads the PT template with a persona (PT runs, and SFT runs given a persona source)."""
    return run.kind == "pt" or (run.kind == "sft" and run.prefix != "none")


def template_prompts(prompts: Iterable[str], personas: Iterable[str]) -> list[str]:
    """The PT template around each prompt with its persona."""
    return [PT_TEMPLATE.format(x=x, persona=p) for x, p in zip(prompts, personas)]


def persona_prompts(
    rows: pd.DataFrame, pair_personas: pd.DataFrame | None, source: str, where: str, side: str = "chosen"
) -> list[str]:
    """The PT template around each row's prompt with its `side` persona from `source` (core.persona_sources)."""
    try:
        personas = persona_texts(rows, pair_personas, side, source)
    except PersonaSourceError as exc:
        raise ConditioningError(f"{where}: {exc}") from exc
    return template_prompts(rows.prompt, personas)


def first_person(persona: str) -> str:
    """A persona sentence rewritten for the user to say ("The user is ..." -> "I am ..."); other texts are
    introduced as "About me: ..."."""
    match = re.match(r"^(?:The|This) (?:user|person) (\w+)\b(.*)$", persona.strip(), flags=re.S)
    if not match:
        return f"About me: {persona.strip()}"
    verb, rest = match.groups()
    verb = _THIRD_PERSON.get(verb, verb[:-1] if verb.endswith("s") and not verb.endswith("ss") else verb)
    return f"I {verb}{rest}"


def user_prefix_prompts(
    rows: pd.DataFrame, prefixes: pd.DataFrame | None, prefix_type: str, seed: int, where: str
) -> list[str]:
    """Each row's prompt behind its user's stage-2 prefix of `prefix_type` and selection `seed`."""
    table = (
        pd.DataFrame(columns=["user_id", "text"])
        if prefixes is None
        else prefixes[(prefixes.prefix_type == prefix_type) & (prefixes.seed == seed)]
    )
    lookup = dict(zip(table.user_id, table.text))
    missing = sorted(set(rows.user_id) - set(lookup))
    if missing:
        raise ConditioningError(
            f"{where}: stage 2 computed no {prefix_type!r} prefix (seed {seed}) for user {missing[0]!r}"
        )
    return [prefixed_prompt(prefix_type, lookup[u], x) for u, x in zip(rows.user_id, rows.prompt)]


def run_prompts(
    run: RunSpec, rows: pd.DataFrame, prefixes: pd.DataFrame | None, pair_personas: pd.DataFrame | None
) -> list[str]:
    """The user message of each training pair as the run trains on it: its persona source in the PT template, its
    MT prefix type, or the bare prompt (DPO, PM, MT without a prefix or with a soft prefix, which is no text)."""
    where = f"run {run.name!r}"
    if uses_persona_template(run):
        return persona_prompts(rows, pair_personas, run.prefix, where)
    if run.kind == "mt" and run.prefix not in ("none", *SOFT_PREFIX_TYPES):
        return user_prefix_prompts(rows, prefixes, run.prefix, run.prefix_seed, where)
    return list(rows.prompt)


def variant_prompts(
    variant: str, rows: pd.DataFrame, prefixes: pd.DataFrame | None, pair_personas: pd.DataFrame | None
) -> list[str]:
    """The user message of every scored pair under a prompt variant: "none", one of PT_VARIANTS, or
    "<prefix type>@<seed>" (a soft prefix type leaves the prompt bare: its prefix is the run's input embeddings)."""
    where = f"prompt variant {variant!r}"
    if variant == "none":
        return list(rows.prompt)
    if variant in PT_VARIANTS:
        return persona_prompts(rows, pair_personas, PT_VARIANTS[variant], where)
    prefix_type, _, seed = variant.partition("@")
    if prefix_type.removeprefix("shuffled_") in SOFT_PREFIX_TYPES:
        return list(rows.prompt)
    return user_prefix_prompts(rows, prefixes, prefix_type, int(seed or 0), where)


def system_prompts(
    prompting: str, rows: pd.DataFrame, personas: list[str], prefixes: pd.DataFrame, prefix_seed: int, where: str
) -> list[str]:
    """The user message a generating system is given for each row: `prompting` is none, pt (the PT template with
    the row's persona), i_am (the persona said by the user after the prompt) or a prefix type."""
    if prompting == "none":
        return list(rows.prompt)
    if prompting == "pt":
        return template_prompts(rows.prompt, personas)
    if prompting == "i_am":
        return [f"{x}\n\n{first_person(p)}" for x, p in zip(rows.prompt, personas)]
    return user_prefix_prompts(rows, prefixes, prompting, prefix_seed, where)


def out_of_domain_prefix(
    run: RunSpec, prefixes: pd.DataFrame, personas: pd.DataFrame
) -> tuple[str, Callable[[str], str]] | None:
    """How a run's conditioning is put on an out-of-domain prompt, named: an MT run's prefix type (a PT run: its
    template with a gold persona) of a user picked by hashing the prompt, so every prompt gets one user's text, the
    same in every run. None for runs trained without one."""
    if uses_persona_template(run):
        texts = list(personas.sort_values("user_id").gold)
        return "pt_persona", lambda x: PT_TEMPLATE.format(x=x, persona=texts[stable_seed(x) % len(texts)])
    if run.kind == "mt" and run.prefix != "none":
        table = prefixes[(prefixes.prefix_type == run.prefix) & (prefixes.seed == run.prefix_seed)]
        texts = list(table.sort_values("user_id").text)
        return f"{run.prefix}_prefix", lambda x: prefixed_prompt(run.prefix, texts[stable_seed(x) % len(texts)], x)
    return None
