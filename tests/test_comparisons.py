"""Stage 5's comparisons: evaluation prompts, how each system is prompted, seeded and cached generation with
adapters on one base, both-orders judging and the W/T/L tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign import comparisons as cmp
from personalign.generation import Sampling
from personalign.judge import Verdict
from personalign.prompts import PT_TEMPLATE
from tiny_checkpoints import save_base, save_random_adapter


def make_test() -> pd.DataFrame:
    rows = []
    for user in ("ann", "bob"):
        for j in range(6):
            qt = "personal" if j % 2 else "divergent"
            rows.append({"id": f"{user}:{j}", "user_id": user, "question_type": qt, "prompt": f"q{j // 2} {qt}?",
                         "chosen_persona_gold": f"{user} is a tea lover"})
    return pd.DataFrame(rows)


def test_first_person_rewrites_inferred_personas():
    assert cmp.first_person("The user is a vegan runner.") == "I am a vegan runner."
    assert cmp.first_person("The user values honesty and plain answers") == "I value honesty and plain answers"
    assert cmp.first_person("The user has two kids") == "I have two kids"
    assert cmp.first_person("Ann Smith is a chef.") == "About me: Ann Smith is a chef."


def test_evaluation_prompts_are_per_user_and_type_and_seeded():
    test = make_test()
    rows = cmp.evaluation_prompts(test, 1, np.random.default_rng(0))
    assert sorted(zip(rows.user_id, rows.question_type)) == [
        ("ann", "divergent"), ("ann", "personal"), ("bob", "divergent"), ("bob", "personal")]
    again = cmp.evaluation_prompts(test, 1, np.random.default_rng(0))
    pd.testing.assert_frame_equal(rows, again)
    two = cmp.evaluation_prompts(test, 2, np.random.default_rng(0))
    assert len(two) == 8 and two.groupby(["user_id", "question_type"]).prompt.nunique().eq(2).all()


def test_each_system_gets_its_prompt():
    rows = make_test().head(2)
    prefixes = pd.DataFrame({"user_id": ["ann"], "prefix_type": ["tag"], "seed": [0], "text": ["<ann>"]})
    personas = ["The user is a vegan.", "The user likes maps."]
    assert cmp.system_prompts(cmp.System("b", "base", "none"), rows, personas, prefixes) == list(rows.prompt)
    assert cmp.system_prompts(cmp.System("pt", "pt", "pt"), rows, personas, prefixes)[0] == PT_TEMPLATE.format(
        x=rows.prompt.iloc[0], persona=personas[0])
    assert cmp.system_prompts(cmp.System("d", "dpo", "i_am"), rows, personas, prefixes)[1].endswith("I like maps.")
    assert cmp.system_prompts(cmp.System("t", "base", "tag"), rows, personas, prefixes)[0].startswith("<ann> ")
    with pytest.raises(cmp.ComparisonInputError, match="system 'g': no 'gold' prefix for user 'ann'"):
        cmp.system_prompts(cmp.System("g", "base", "gold"), rows, personas, prefixes)
    with pytest.raises(cmp.ComparisonInputError, match="no chosen persona \\(retr\\) for pair 'ann:0'"):
        cmp.persona_texts(rows, pd.DataFrame({"id": ["ann:0"], "chosen_persona_retr": [""]}), "chosen", "retr")


class LongerIsBetter:
    """A scripted judge: the longer response wins Personalization, the first shown wins Quality (position bias)."""

    def verdict(self, ctx, first: str, second: str, aspect: str) -> Verdict:
        if aspect == "quality":
            return "first"
        if first == "???" or second == "???":
            return "invalid"
        return "tie" if len(first) == len(second) else ("first" if len(first) > len(second) else "second")


def test_judging_in_both_orders_and_the_table():
    rows = make_test().head(4)
    test_responses = ["long answer here", "same", "x", "???"]
    base_responses = ["short", "same", "longer one", "ok"]
    judged = cmp.judge_comparison(LongerIsBetter(), rows, ["p"] * 4, test_responses, base_responses)
    assert list(judged.personalization) == ["a", "tie", "b", "invalid"]
    assert list(judged.quality) == ["tie"] * 4  # a position-biased judge only ever yields ties
    assert list(judged.quality_ab) == ["a"] * 4 and list(judged.quality_ba) == ["b"] * 4
    assert list(judged.personalization_ab) == ["a", "tie", "b", "invalid"]
    table = cmp.win_rate_table(judged.assign(test="PT", base="DPO"), ["test", "base"])
    row = table.iloc[0]
    assert (row.p_win, row.p_tie, row.p_loss) == pytest.approx((100 / 3, 100 / 3, 100 / 3))
    assert row.p_invalid == 1 and row.n == 4
    shown = cmp.formatted(table, ["test", "base"])
    assert shown.iloc[0]["Person. W/T/L"] == "33.3/33.3/33.3"
    assert shown.iloc[0]["invalid (P/Q)"] == "1/0"
    assert list(shown.index) == ["PT / DPO"] and shown.index.name == "test / base"


def test_generation_is_seeded_cached_and_uses_the_adapter(tiny, tmp_path, monkeypatch):
    from personalign import generation

    model, tokenizer = tiny
    save_base(model, tokenizer, tmp_path / "base")
    # a strong adapter, so its samples visibly differ from the base model's
    save_random_adapter(model, tmp_path / "adapters" / "dpo" / "adapter", seed=0, scale=50.0)
    prompts = ["hello there", "tell me about tea"]
    requests = [(cmp.System("base", "base", "none"), "s", prompts, [1, 2]),
                (cmp.System("DPO", "dpo", "none"), "s", prompts, [1, 2])]
    sampling = Sampling(max_new_tokens=6, temperature=1.0, top_p=1.0, top_k=0)
    args = (str(tmp_path / "base"), str(tmp_path / "adapters"), requests, sampling, 4, str(tmp_path / "gen.sqlite"))
    first = cmp.generate_responses(*args)
    assert first[("base", "s")] != first[("DPO", "s")]

    def refuse(*_, **__):
        raise AssertionError("a cached generation was sampled again")

    monkeypatch.setattr(generation.HFGenerator, "complete", refuse)
    assert cmp.generate_responses(*args) == first
