"""Prefix types: deterministic few-shot selection, derangement controls, templates, the Table 2 layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.lm.prompts import PT_TEMPLATE, prefixed_prompt
from personalign.personas import prefixes as px


@pytest.fixture()
def personas(world):
    rows = [
        {"user_id": p.user_id, "name": p.name, "tag": p.tag, "gold": p.gold}
        for p in world["diet"].personas + world["politics"].personas[:2]
    ]
    return pd.DataFrame(rows)


@pytest.fixture()
def train(personas):
    rows = [
        {"id": f"{u}:q{i}", "user_id": u, "prompt": f"question {i} of {u}", "chosen": f"answer {i} for {u}"}
        for u in personas.user_id
        for i in range(5)
    ]
    return pd.DataFrame(rows)


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 7):
        perm = px.derangement(n, np.random.default_rng(n))
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    assert list(px.derangement(6, np.random.default_rng(1))) == list(px.derangement(6, np.random.default_rng(1)))
    with pytest.raises(ValueError):
        px.derangement(1, np.random.default_rng(0))


def test_few_shot_uses_the_users_own_train_pairs_deterministically(train, personas):
    users = sorted(personas.user_id)
    rows = px.few_shot_prefixes(train, users, [0, 1], k=2, base_seed=3)
    assert len(rows) == 2 * len(users)
    for row in rows:
        assert row["text"].count("## Prompt:") == 2 and row["user_id"] in row["text"]
        others = [u for u in users if u != row["user_id"]]
        assert not any(f"of {u}\n" in row["text"] for u in others)
    assert rows == px.few_shot_prefixes(train, users, [0, 1], k=2, base_seed=3)
    assert rows[0]["text"] != px.few_shot_prefixes(train, users, [0, 1], k=2, base_seed=4)[0]["text"]
    with pytest.raises(ValueError, match="fewer than the 9 asked for"):
        px.few_shot_prefixes(train, users, [0], k=9, base_seed=3)


def test_shuffled_controls_give_every_user_another_users_prefix(train, personas):
    users = sorted(personas.user_id)
    base = px.prefix_table(px.fixed_prefixes(personas, [0, 1]) + px.few_shot_prefixes(train, users, [0, 1], 2, 0))
    shuffled = pd.DataFrame(px.shuffled_prefixes(base, base_seed=0))
    assert set(shuffled.prefix_type) == {"shuffled_tag", "shuffled_name", "shuffled_gold", "shuffled_few_shot"}
    assert (shuffled.user_id != shuffled.source_user_id).all()
    for (kind, seed), group in shuffled.groupby(["prefix_type", "seed"]):
        assert sorted(group.source_user_id) == users  # a permutation: every prefix used once
        original = base[(base.prefix_type == kind.removeprefix("shuffled_")) & (base.seed == seed)]
        assert set(group.text) == set(original.text)
    table = px.prefix_table(list(base.to_dict(orient="records")) + shuffled.to_dict(orient="records"))
    assert not table.duplicated(["user_id", "prefix_type", "seed"]).any()


def test_templates_of_appendix_g():
    assert prefixed_prompt("none", "", "Hi?") == "Hi?"
    assert prefixed_prompt("tag", "<special_person_tag_7>", "Hi?") == "<special_person_tag_7> Hi?"
    assert prefixed_prompt("name", "Ana Lim", "Hi?").startswith("Respond to the following prompt from Ana Lim.")
    assert "Ana Lim's background" in prefixed_prompt("name", "Ana Lim", "Hi?")
    few = prefixed_prompt("few_shot", "## Prompt:\nq\n\n### Preferred Response:\na", "Hi?")
    assert few.endswith("## Prompt:\nHi?\n\n### Preferred Response:")
    persona = prefixed_prompt("shuffled_gold", "Ana is a chef.", "Hi?")
    assert persona.startswith("Ana is a chef.\n\nRespond to the following prompt from this person.")
    assert persona.endswith("\n\nHi?")
    assert PT_TEMPLATE.format(x="Hi?", persona="A chef.") == "Prompt: Hi?\nPersona: A chef.\nResponse:"
    with pytest.raises(ValueError):
        prefixed_prompt("vpl", "x", "Hi?")


def test_rouge_table_marks_a_missing_strong_persona_absent(personas):
    base = px.prefix_table(px.fixed_prefixes(personas, [0]))
    scores = px.rouge_scores(base, personas, base_seed=0)
    table = px.rouge_table(scores)
    assert list(table.columns) == list(px.ROUGE_TYPES)
    assert (table["persona_strong"] == "absent").all()
    assert table.loc["R1", "gold"] == "1.00 ± 0.00"
    assert float(table.loc["R1 (random)", "gold"].split(" ")[0]) < 1.0
