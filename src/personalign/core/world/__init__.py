"""The built-in persona world: 11 axes of WikiPersona's Table 7, fictional personas, divergent and personal
questions."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import yaml

AXIS_IDS: tuple[str, ...] = (
    "politics",
    "diet",
    "sports",
    "religion",
    "age",
    "profession",
    "geographical_location",
    "gender",
    "education_level",
    "ai_professors",
    "family_marriage_status",
)

DEMOGRAPHIC_KEYS: tuple[str, ...] = (
    "age",
    "gender",
    "race_ethnicity",
    "birth_country",
    "current_country",
    "current_region",
    "education_level",
    "economic_status",
    "religion",
    "family_marriage_status",
    "sexual_orientation",
    "profession",
)

MIN_DIVERGENT_QUESTIONS = 24
MIN_PERSONAL_QUESTIONS = 20


class CatalogueError(ValueError):
    """The world files break a rule; the message names the file and the field."""


@dataclass(frozen=True)
class Category:
    id: str
    label: str


@dataclass(frozen=True)
class Persona:
    """One fictional persona: the persona table row plus its personal questions."""

    user_id: str
    name: str
    tag: str
    axes: tuple[str, ...]
    category: str
    gold: str
    demographics: dict = field(hash=False)
    personal_questions: tuple[str, ...] = field(hash=False)


@dataclass(frozen=True)
class Axis:
    """An axis of disagreement with its categories, shared divergent questions and personas."""

    id: str
    title: str
    description: str
    categories: tuple[Category, ...]
    divergent_questions: tuple[str, ...]
    personas: tuple[Persona, ...]

    def category_label(self, category_id: str) -> str:
        return next(c.label for c in self.categories if c.id == category_id)


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise CatalogueError(f"{where}: {message}")


def _parse_axis(axis_id: str, raw: dict) -> Axis:
    where = f"world/{axis_id}.yaml"
    for key in ("axis", "title", "description", "categories", "divergent_questions", "personas"):
        _require(key in raw, where, f"missing field {key!r}")
    _require(raw["axis"] == axis_id, where, f"field 'axis' is {raw['axis']!r}, expected {axis_id!r}")
    categories = tuple(Category(c["id"], c["label"]) for c in raw["categories"])
    _require(4 <= len(categories) <= 5, where, f"needs 4-5 categories, has {len(categories)}")
    category_ids = {c.id for c in categories}
    divergent = tuple(str(q).strip() for q in raw["divergent_questions"])
    _require(
        len(divergent) >= MIN_DIVERGENT_QUESTIONS,
        where,
        f"needs >= {MIN_DIVERGENT_QUESTIONS} divergent_questions, has {len(divergent)}",
    )
    personas = []
    for i, p in enumerate(raw["personas"]):
        pwhere = f"{where}: personas[{i}]"
        for key in ("user_id", "name", "tag", "category", "gold", "demographics", "personal_questions"):
            _require(key in p and p[key] not in (None, ""), pwhere, f"missing field {key!r}")
        _require(p["category"] in category_ids, pwhere, f"category {p['category']!r} not in {sorted(category_ids)}")
        paragraphs = [s for s in str(p["gold"]).split("\n\n") if s.strip()]
        _require(len(paragraphs) == 2, pwhere, f"gold must have 2 paragraphs, has {len(paragraphs)}")
        missing = [k for k in DEMOGRAPHIC_KEYS if k not in p["demographics"]]
        _require(not missing, pwhere, f"demographics missing {missing}")
        questions = tuple(str(q).strip() for q in p["personal_questions"])
        _require(
            len(questions) >= MIN_PERSONAL_QUESTIONS,
            pwhere,
            f"needs >= {MIN_PERSONAL_QUESTIONS} personal_questions, has {len(questions)}",
        )
        personas.append(
            Persona(
                user_id=p["user_id"],
                name=p["name"],
                tag=p["tag"],
                axes=(axis_id,),
                category=p["category"],
                gold=str(p["gold"]).strip(),
                demographics={k: p["demographics"][k] for k in DEMOGRAPHIC_KEYS},
                personal_questions=questions,
            )
        )
    _require(
        [p.category for p in personas] == [c.id for c in categories],
        where,
        "personas must be one per category, in category order",
    )
    return Axis(axis_id, raw["title"], raw["description"], categories, divergent, tuple(personas))


@functools.cache
def load_world() -> dict[str, Axis]:
    """Load and validate every axis file shipped with the package, in AXIS_IDS order."""
    world = {}
    for axis_id in AXIS_IDS:
        text = resources.files(__package__).joinpath(f"{axis_id}.yaml").read_text(encoding="utf-8")
        world[axis_id] = _parse_axis(axis_id, yaml.safe_load(text))
    _check_unique(world)
    return world


def _check_unique(world: dict[str, Axis]) -> None:
    seen: dict[str, str] = {}
    for kind, values in (
        ("user_id", [(p.user_id, a.id) for a in world.values() for p in a.personas]),
        ("tag", [(p.tag, a.id) for a in world.values() for p in a.personas]),
        ("name", [(p.name, a.id) for a in world.values() for p in a.personas]),
        (
            "question",
            [(q, a.id) for a in world.values() for q in a.divergent_questions]
            + [(q, p.user_id) for a in world.values() for p in a.personas for q in p.personal_questions],
        ),
    ):
        seen.clear()
        for value, owner in values:
            key = value.casefold()
            _require(key not in seen, f"world ({owner})", f"duplicate {kind} {value!r} (also in {seen.get(key)})")
            seen[key] = owner


def all_personas(world: dict[str, Axis]) -> list[Persona]:
    """Every persona of the world, in axis then category order."""
    return [p for axis in world.values() for p in axis.personas]


def select_personas(world: dict[str, Axis], axes: list[str], personas_per_axis: int) -> list[Persona]:
    """The personas a built dataset has: the first `personas_per_axis` (category order) of each of `axes`."""
    return [p for axis in axes for p in world[axis].personas[:personas_per_axis]]


def demographic_attributes(world: dict[str, Axis]) -> tuple[str, ...]:
    """The demographic attributes the world's personas carry (sorted), e.g. for `analysis.demographic_attributes`."""
    return tuple(sorted({k for p in all_personas(world) for k in p.demographics}))
