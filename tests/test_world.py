"""The built-in world: 11 axes, >= 44 fictional personas, gold texts, unique questions, known axes."""

from __future__ import annotations

import copy
from importlib import resources

import pytest
import yaml

from personalign.core.world import (
    AXIS_IDS,
    DEMOGRAPHIC_KEYS,
    MIN_DIVERGENT_QUESTIONS,
    MIN_PERSONAL_QUESTIONS,
    CatalogueError,
    _parse_axis,
    all_personas,
)


def test_world_has_every_axis_of_table_7(world):
    assert tuple(world) == AXIS_IDS
    for axis in world.values():
        assert 4 <= len(axis.categories) <= 5
        assert len(axis.divergent_questions) >= MIN_DIVERGENT_QUESTIONS


def test_personas_are_complete(world):
    personas = all_personas(world)
    assert len(personas) >= 44
    for p in personas:
        assert p.axes and all(a in AXIS_IDS for a in p.axes)
        paragraphs = [s for s in p.gold.split("\n\n") if s.strip()]
        assert len(paragraphs) == 2, p.user_id
        assert all(len(s.split()) >= 60 for s in paragraphs), p.user_id
        assert set(p.demographics) == set(DEMOGRAPHIC_KEYS)
        assert isinstance(p.demographics["age"], int)
        assert len(p.personal_questions) >= MIN_PERSONAL_QUESTIONS
        assert p.tag.startswith("<special_person_tag_") and p.tag.endswith(">")


def test_identifiers_and_questions_are_unique(world):
    personas = all_personas(world)
    for attr in ("user_id", "name", "tag"):
        values = [getattr(p, attr) for p in personas]
        assert len(values) == len(set(values)), attr
    questions = [q.casefold() for a in world.values() for q in a.divergent_questions]
    questions += [q.casefold() for p in personas for q in p.personal_questions]
    assert len(questions) == len(set(questions))


def test_divergent_questions_do_not_reveal_a_category(world):
    for axis in world.values():
        labels = {c.label.casefold() for c in axis.categories if len(c.label) > 4}
        for q in axis.divergent_questions:
            assert not any(f"as a {label}" in q.casefold() for label in labels), q


def _raw(axis_id: str) -> dict:
    text = resources.files("personalign.core.world").joinpath(f"{axis_id}.yaml").read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["personas"][0].pop("gold"), "personas[0]: missing field 'gold'"),
        (lambda d: d["personas"][1].update(category="anarchist"), "personas[1]: category 'anarchist' not in"),
        (lambda d: d["personas"][0].update(gold="one paragraph only"), "gold must have 2 paragraphs, has 1"),
        (lambda d: d.update(divergent_questions=d["divergent_questions"][:3]), "needs >= 24 divergent_questions"),
        (lambda d: d["personas"][2]["demographics"].pop("age"), "demographics missing ['age']"),
        (lambda d: d.update(axis="diet"), "field 'axis' is 'diet', expected 'politics'"),
    ],
)
def test_broken_world_files_name_the_file_and_field(mutate, expected):
    raw = copy.deepcopy(_raw("politics"))
    mutate(raw)
    with pytest.raises(CatalogueError) as info:
        _parse_axis("politics", raw)
    assert "world/politics.yaml" in str(info.value)
    assert expected in str(info.value)
