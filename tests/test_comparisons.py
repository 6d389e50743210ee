"""Stage 5's comparisons: evaluation prompts, how each system is prompted, seeded and cached generation with
adapters on one base, both-orders judging against each persona's rivals and the W/T/L tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_checkpoints import save_base, save_random_adapter

from personalign.analysis import judgment_tables
from personalign.core.config import BaseParams, JudgeParams, RunSpec, parse_params
from personalign.evaluation import comparisons as cmp
from personalign.lm.generation import Sampling
from personalign.lm.judge import JudgeContext, SimulatedJudge, Verdict, WorldPersonas, pair_context
from personalign.lm.prompts import PT_TEMPLATE
from personalign.personas.conditioning import ConditioningError, first_person


def make_test() -> pd.DataFrame:
    rows = []
    for user in ("ann", "bob", "cy"):
        for j in range(6):
            qt = "personal" if j % 2 else "divergent"
            rows.append(
                {
                    "id": f"{user}:{j}",
                    "user_id": user,
                    "question_type": qt,
                    "prompt": f"q{j // 2} {qt}?",
                    "chosen_persona_gold": f"{user} is a tea lover",
                    "source": "builtin",
                    "fold": {"ann": 0, "bob": 1, "cy": 0}[user],
                }
            )
    return pd.DataFrame(rows)


def test_first_person_rewrites_inferred_personas():
    assert first_person("The user is a vegan runner.") == "I am a vegan runner."
    assert first_person("The user values honesty and plain answers") == "I value honesty and plain answers"
    assert first_person("The user has two kids") == "I have two kids"
    assert first_person("Ann Smith is a chef.") == "About me: Ann Smith is a chef."


def test_evaluation_prompts_are_per_user_and_type_and_seeded():
    test = make_test()
    rows = cmp.evaluation_prompts(test, 1, np.random.default_rng(0))
    assert sorted(zip(rows.user_id, rows.question_type)) == [
        ("ann", "divergent"),
        ("ann", "personal"),
        ("bob", "divergent"),
        ("bob", "personal"),
        ("cy", "divergent"),
        ("cy", "personal"),
    ]
    again = cmp.evaluation_prompts(test, 1, np.random.default_rng(0))
    pd.testing.assert_frame_equal(rows, again)
    two = cmp.evaluation_prompts(test, 2, np.random.default_rng(0))
    assert len(two) == 12 and two.groupby(["user_id", "question_type"]).prompt.nunique().eq(2).all()


def test_each_system_gets_its_prompt():
    rows = make_test().head(2)
    prefixes = pd.DataFrame({"user_id": ["ann"], "prefix_type": ["tag"], "seed": [0], "text": ["<ann>"]})
    personas = ["The user is a vegan.", "The user likes maps."]
    assert cmp.system_prompts(cmp.System("b", "base", "none"), rows, personas, prefixes) == list(rows.prompt)
    assert cmp.system_prompts(cmp.System("pt", "pt", "pt"), rows, personas, prefixes)[0] == PT_TEMPLATE.format(
        x=rows.prompt.iloc[0], persona=personas[0]
    )
    assert cmp.system_prompts(cmp.System("d", "dpo", "i_am"), rows, personas, prefixes)[1].endswith("I like maps.")
    assert cmp.system_prompts(cmp.System("t", "base", "tag"), rows, personas, prefixes)[0].startswith("<ann> ")
    with pytest.raises(
        ConditioningError, match="system 'g': stage 2 computed no 'gold' prefix \\(seed 0\\) for user 'ann'"
    ):
        cmp.system_prompts(cmp.System("g", "base", "gold"), rows, personas, prefixes)
    with pytest.raises(cmp.ComparisonInputError, match="no chosen persona \\(retr\\) for pair 'ann:0'"):
        cmp.persona_texts(rows, pd.DataFrame({"id": ["ann:0"], "chosen_persona_retr": [""]}), "chosen", "retr")


def world_of(world_axes) -> WorldPersonas:
    return WorldPersonas(tuple((p.user_id, p.axes[0], p.gold) for axis in world_axes for p in axis.personas))


# A response that echoes what every food persona has in common, and one only the coeliac baker would want.
GENERIC = "Here is an idea for a person who loves food and cooking and thinks carefully about their diet and health."
SPECIFIC = "Try a gluten-free apple tart with an almond flour crust; keep it away from wheat flour."
PAIR_GENERIC = "Here is a healthy food idea for a user who cares about healthy food."
PAIR_SPECIFIC = "Try a tofu and vegetable stir-fry with no animal products."


def baking_rows(persona) -> pd.DataFrame:
    """One divergent and one personal evaluation row of a world user."""
    return pd.DataFrame(
        {
            "id": ["b:0", "b:1"],
            "user_id": [persona.user_id] * 2,
            "question_type": ["divergent", "personal"],
            "prompt": ["What should I bake this weekend?"] * 2,
            "chosen_persona_gold": [persona.gold] * 2,
            "rejected_persona_gold": ["", ""],
        }
    )


def test_world_personas_are_contrasted_with_their_rivals(world):
    personas = world_of(world.values())
    brigid = next(p for p in world["diet"].personas if p.user_id == "brigid_halloran")
    diet = {p.gold for p in world["diet"].personas} - {brigid.gold}
    rows = baking_rows(brigid)
    divergent, personal = cmp.judge_contexts(rows, None, "chosen", "gold", personas)
    assert divergent.persona_text == brigid.gold and set(divergent.rival_texts) == diet
    assert len(personal.rival_texts) == len(personas.users) - 1 and brigid.gold not in personal.rival_texts


def test_rivals_turn_a_persona_echo_into_a_loss(world, embedder):
    """Judged as the persona alone, generic persona-sounding text wins; against the persona's rivals (same axis on a
    divergent question, everyone else on a personal one, the other side for a pair persona) the specific one does."""
    judge = SimulatedJudge(embedder, noise=0.0, quality_weight=0.1, tie_margin=0.01, seed=0)
    personas = world_of(world.values())
    brigid = next(p for p in world["diet"].personas if p.user_id == "brigid_halloran")
    rows = baking_rows(brigid)
    alone = [JudgeContext(brigid.user_id, brigid.gold, (), x) for x in rows.prompt]
    judged = cmp.judge_comparison(judge, rows, alone, [SPECIFIC] * 2, [GENERIC] * 2)
    assert list(judged.personalization) == ["b", "b"]
    contexts = cmp.judge_contexts(rows, None, "chosen", "gold", personas)
    judged = cmp.judge_comparison(judge, rows, contexts, [SPECIFIC] * 2, [GENERIC] * 2)
    assert list(judged.personalization) == ["a", "a"]

    pair = pd.DataFrame(
        {"id": ["p:0"], "user_id": ["u"], "question_type": ["none"], "prompt": ["What should I cook tonight?"]}
    )
    pair_personas = pd.DataFrame(
        {
            "id": ["p:0"],
            "chosen_persona": ["The user is a vegan who cares about healthy food."],
            "rejected_persona": ["The user is a meat lover who cares about healthy food."],
        }
    )
    alone = [JudgeContext("p:0", pair_personas.chosen_persona[0], (), pair.prompt[0])]
    assert cmp.judge_comparison(judge, pair, alone, [PAIR_SPECIFIC], [PAIR_GENERIC]).personalization[0] == "b"
    contexts = cmp.judge_contexts(pair, pair_personas, "chosen", "pair", personas)
    assert contexts[0].rival_texts == (pair_personas.rejected_persona[0],)
    assert cmp.judge_comparison(judge, pair, contexts, [PAIR_SPECIFIC], [PAIR_GENERIC]).personalization[0] == "a"


def test_pair_personas_are_contrasted_with_the_other_side_of_the_same_source():
    rows = pd.DataFrame(
        {
            "id": ["bt:0"],
            "user_id": ["bt"],
            "question_type": ["none"],
            "prompt": ["q?"],
            "chosen_persona_gold": ["likes detail"],
            "rejected_persona_gold": ["dislikes detail"],
            "chosen_persona_retr": ["likes retrieved"],
            "rejected_persona_retr": ["dislikes retrieved"],
        }
    )
    nobody = WorldPersonas(())
    (retr,) = cmp.judge_contexts(rows, None, "rejected", "dataset_retr", nobody)
    assert (retr.persona_text, retr.rival_texts) == ("dislikes retrieved", ("likes retrieved",))
    (table3,) = cmp.judge_contexts(rows, None, "chosen", "gold", nobody)  # a user without a world persona
    assert (table3.persona_text, table3.rival_texts) == ("likes detail", ("dislikes detail",))
    with pytest.raises(cmp.ComparisonInputError, match="user 'bt' has no gold persona in the persona table"):
        cmp.judge_contexts(rows.assign(rejected_persona_gold=""), None, "chosen", "gold", nobody)


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
    contexts = [pair_context(f"{i}:chosen", "p", "q", x) for i, x in zip(rows.id, rows.prompt)]
    judged = cmp.judge_comparison(LongerIsBetter(), rows, contexts, test_responses, base_responses)
    assert list(judged.personalization) == ["a", "tie", "b", "invalid"]
    assert list(judged.quality) == ["tie"] * 4  # a position-biased judge only ever yields ties
    assert list(judged.quality_ab) == ["a"] * 4 and list(judged.quality_ba) == ["b"] * 4
    assert list(judged.personalization_ab) == ["a", "tie", "b", "invalid"]
    table = judgment_tables.win_rate_table(judged.assign(test="PT", base="DPO"), ["test", "base"])
    row = table.iloc[0]
    assert (row.p_win, row.p_tie, row.p_loss) == pytest.approx((100 / 3, 100 / 3, 100 / 3))
    assert row.p_invalid == 1 and row.n == 4
    shown = judgment_tables.formatted(table, ["test", "base"])
    assert shown.iloc[0]["Person. W/T/L"] == "33.3/33.3/33.3"
    assert shown.iloc[0]["invalid (P/Q)"] == "1/0"
    assert list(shown.index) == ["PT / DPO"] and shown.index.name == "test / base"


def test_generation_is_seeded_cached_and_uses_the_adapter(tiny, tmp_path, monkeypatch):
    from personalign.lm import generation

    model, tokenizer = tiny
    save_base(model, tokenizer, tmp_path / "base")
    # a strong adapter, so its samples visibly differ from the base model's
    save_random_adapter(model, tmp_path / "adapters" / "dpo" / "adapter", seed=0, scale=50.0)
    prompts = ["hello there", "tell me about tea"]
    requests = [
        (cmp.System("base", "base", "none"), "s", prompts, [1, 2]),
        (cmp.System("DPO", "dpo", "none"), "s", prompts, [1, 2]),
    ]
    sampling = Sampling(max_new_tokens=6, temperature=1.0, top_p=1.0, top_k=0)
    args = (
        str(tmp_path / "base"),
        str(tmp_path / "adapters"),
        requests,
        sampling,
        4,
        str(tmp_path / "gen.sqlite"),
        BaseParams(),
    )
    first = cmp.generate_responses(*args)
    assert first[("base", "s")] != first[("DPO", "s")]

    def refuse(*_, **__):
        raise AssertionError("a cached generation was sampled again")

    monkeypatch.setattr(generation.HFGenerator, "complete", refuse)
    assert cmp.generate_responses(*args) == first


def test_table3_is_judged_on_the_users_the_mt_run_did_not_train_on():
    # WikiPersona Table 3 compares "MT (persona not trained)": only the held-out fold's users (ann and cy, fold 0)
    rows = cmp.evaluation_prompts(make_test(), 1, np.random.default_rng(0))
    mt = RunSpec(name="mt_persona_f0", kind="mt", prefix="persona", held_out_fold=0)
    unseen = cmp.unseen_user_rows(rows, mt)
    assert sorted(unseen.user_id.unique()) == ["ann", "cy"] and len(unseen) == 4
    assert set(unseen.id) == set(rows[rows.fold == 0].id)
    with pytest.raises(cmp.ComparisonInputError, match="'mt_all' \\(held_out_fold: None\\) trained on every"):
        cmp.unseen_user_rows(rows, RunSpec(name="mt_all", kind="mt", prefix="persona"))
    with pytest.raises(cmp.ComparisonInputError, match="'mt_vpl_f0' has the soft prefix 'vpl'; stage 5 samples"):
        cmp.unseen_user_rows(rows, RunSpec(name="mt_vpl_f0", kind="mt", prefix="vpl", held_out_fold=0))


class ShorterIsBetter:
    """A second scripted judge: the shorter response wins both aspects (ties on equal length)."""

    def verdict(self, ctx, first: str, second: str, aspect: str) -> Verdict:
        return "tie" if len(first) == len(second) else ("first" if len(first) < len(second) else "second")


def scripted_comparisons() -> list[cmp.Comparison]:
    rows = make_test()
    test_responses = tuple("x" * (1 + i % 3) for i in range(len(rows)))
    base_responses = tuple("y" * 2 for _ in range(len(rows)))
    contexts = tuple(cmp.JudgeContext(f"{i}", "p", (), prompt) for i, prompt in zip(rows.id, rows.prompt))
    return [
        cmp.Comparison(
            setting,
            cmp.System("PT", "pt", "pt"),
            cmp.System("DPO", "dpo", "i_am"),
            rows,
            contexts,
            test_responses,
            base_responses,
        )
        for setting in ("s1", "s2")
    ]


def test_agreement_sample_is_seeded_and_restricts_each_comparison_to_its_drawn_rows():
    comparisons = scripted_comparisons()
    sample = cmp.agreement_sample(comparisons, 10, np.random.default_rng(3))
    again = cmp.agreement_sample(comparisons, 10, np.random.default_rng(3))
    assert sum(len(c.rows) for c in sample) == 10
    assert [list(c.rows.id) for c in sample] == [list(c.rows.id) for c in again]
    for whole, part in zip(comparisons, sample):
        position = {i: k for k, i in enumerate(whole.rows.id)}
        assert list(part.test_responses) == [whole.test_responses[position[i]] for i in part.rows.id]
        assert list(part.base_responses) == [whole.base_responses[position[i]] for i in part.rows.id]
    assert sum(len(c.rows) for c in cmp.agreement_sample(comparisons, 1000, np.random.default_rng(3))) == 36


def test_two_judges_agreement_is_measured_on_the_same_comparisons():
    comparisons = scripted_comparisons()
    primary = cmp.judge_comparisons(LongerIsBetter(), comparisons)
    secondary = cmp.judge_comparisons(
        ShorterIsBetter(), cmp.agreement_sample(comparisons, 12, np.random.default_rng(0))
    )
    table = cmp.judge_agreement(primary, secondary).set_index("aspect")
    assert (table.n == 12).all() and (table.invalid == 0).all()
    # Personalization: the two judges are opposites, so they agree only on ties (equal lengths)
    picked = secondary.merge(primary, on=cmp.COMPARISON_KEY, suffixes=("_2", "_1"))
    assert table.loc["personalization", "agreement"] == pytest.approx((picked.personalization_1 == "tie").mean())
    assert table.loc["personalization", "agreement"] < 1 and table.loc["personalization", "cohen_kappa"] < 0
    assert table.loc["quality", "primary_tie"] == 1.0  # the position-biased judge only ever ties
    nothing = cmp.judge_agreement(primary, secondary.iloc[:0])  # generate_judge.agreement.sample: 0
    assert list(nothing.n) == [0, 0] and nothing.cohen_kappa.isna().all()
    with pytest.raises(cmp.ComparisonInputError, match="judged by the second judge only"):
        cmp.judge_agreement(primary[primary.setting == "s1"], secondary)


def test_the_second_judge_must_differ_from_the_configured_one():
    settings = parse_params({}).generate_judge
    assert settings.agreement.judge == JudgeParams(backend="hf", model="models/base")
    cmp.check_agreement_judge(JudgeParams(), settings.agreement)
    same = parse_params({"generate_judge": {"agreement": {"judge": {"backend": "simulated"}}}}).generate_judge
    with pytest.raises(cmp.ComparisonInputError, match="generate_judge.agreement.judge is the configured"):
        cmp.check_agreement_judge(JudgeParams(), same.agreement)
    off = parse_params({"generate_judge": {"agreement": {"sample": 0, "judge": {"backend": "simulated"}}}})
    cmp.check_agreement_judge(JudgeParams(), off.generate_judge.agreement)


def test_the_simulated_judge_is_measured_against_an_hf_judge(tiny, embedder):
    from personalign.lm.judge import HFJudge, SimulatedJudge

    model, tokenizer = tiny
    rows = make_test().head(4)
    persona = "The user is a vegan home cook."
    contexts = tuple(
        cmp.JudgeContext(f"{i}", persona, ("The user loves barbecue.",), prompt)
        for i, prompt in zip(rows.id, rows.prompt)
    )
    comparison = cmp.Comparison(
        "s",
        cmp.System("PT", "pt", "pt"),
        cmp.System("DPO", "dpo", "i_am"),
        rows,
        contexts,
        ("A lentil curry.", "Tofu stir fry with rice.", "Steak.", "Grilled fish tacos."),
        ("A burger.", "Roast chicken.", "Chickpea salad with lemon.", "Pasta."),
    )
    primary = cmp.judge_comparisons(SimulatedJudge(embedder, 0.0, 0.1, 0.01, 0), [comparison])
    second = HFJudge(model, tokenizer, "tiny", tie_margin=0.0)
    sampled = cmp.agreement_sample([comparison], 3, np.random.default_rng(0))
    secondary = cmp.judge_comparisons(second, sampled)
    for row in secondary.itertuples():  # the hf judge judged exactly the sampled comparisons, in both orders
        i = list(rows.id).index(row.id)
        ctx_args = (comparison.test_responses[i], comparison.base_responses[i], "quality")
        forward = {"first": "a", "second": "b", "tie": "tie"}[second.verdict(comparison.contexts[i], *ctx_args)]
        assert row.quality_ab == forward
    table = cmp.judge_agreement(primary, secondary)
    assert list(table.n) == [3, 3]
    assert table.agreement.between(0, 1).all()


def test_world_personas_read_from_the_persona_table_keep_every_user_and_axis(world, tmp_path):
    """Stage 5 and stage 7 build the world from data/personas.jsonl (a DataFrame, whose `.axes` is pandas' own)."""
    from personalign.core.records import read_personas, write_personas
    from personalign.data.build_data import persona_rows

    personas = [p for axis in world.values() for p in axis.personas]
    write_personas(persona_rows(personas), tmp_path / "personas.jsonl")
    table = WorldPersonas.from_table(read_personas(tmp_path / "personas.jsonl"))
    assert sorted(table.users) == sorted((p.user_id, p.axes[0], p.gold) for p in personas)
