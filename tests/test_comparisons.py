"""Stage 5's comparisons: evaluation prompts, how each system is prompted, seeded and cached generation with
adapters on one base, both-orders judging and the W/T/L tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign import comparisons as cmp
from personalign.config import JudgeParams, parse_params
from personalign.generation import Sampling
from personalign.judge import Verdict
from personalign.prompts import PT_TEMPLATE
from personalign.training import RunSpec
from tiny_checkpoints import save_base, save_random_adapter


def make_test() -> pd.DataFrame:
    rows = []
    for user in ("ann", "bob", "cy"):
        for j in range(6):
            qt = "personal" if j % 2 else "divergent"
            rows.append({"id": f"{user}:{j}", "user_id": user, "question_type": qt, "prompt": f"q{j // 2} {qt}?",
                         "chosen_persona_gold": f"{user} is a tea lover", "source": "builtin",
                         "fold": {"ann": 0, "bob": 1, "cy": 0}[user]})
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
        ("ann", "divergent"), ("ann", "personal"), ("bob", "divergent"), ("bob", "personal"), ("cy", "divergent"),
        ("cy", "personal")]
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
        x=rows.prompt.iloc[0], persona=personas[0])
    assert cmp.system_prompts(cmp.System("d", "dpo", "i_am"), rows, personas, prefixes)[1].endswith("I like maps.")
    assert cmp.system_prompts(cmp.System("t", "base", "tag"), rows, personas, prefixes)[0].startswith("<ann> ")
    with pytest.raises(cmp.ComparisonInputError, match="system 'g': no 'gold' prefix for user 'ann'"):
        cmp.system_prompts(cmp.System("g", "base", "gold"), rows, personas, prefixes)
    with pytest.raises(cmp.ComparisonInputError, match="no chosen persona \\(retr\\) for test pair 'ann:0'"):
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


def test_table3_is_judged_on_the_users_the_mt_run_did_not_train_on():
    # WikiPersona Table 3 compares "MT (persona not trained)": only the held-out fold's users (ann and cy, fold 0)
    rows = cmp.evaluation_prompts(make_test(), 1, np.random.default_rng(0))
    mt = RunSpec("mt_persona_f0", "mt", prefix="persona", held_out_fold=0)
    unseen = cmp.unseen_user_rows(rows, mt)
    assert sorted(unseen.user_id.unique()) == ["ann", "cy"] and len(unseen) == 4
    assert set(unseen.id) == set(rows[rows.fold == 0].id)
    with pytest.raises(cmp.ComparisonInputError, match="'mt_all' \\(held_out_fold: None\\) trained on every"):
        cmp.unseen_user_rows(rows, RunSpec("mt_all", "mt", prefix="persona"))


class ShorterIsBetter:
    """A second scripted judge: the shorter response wins both aspects (ties on equal length)."""

    def verdict(self, ctx, first: str, second: str, aspect: str) -> Verdict:
        return "tie" if len(first) == len(second) else ("first" if len(first) < len(second) else "second")


def scripted_comparisons() -> list[cmp.Comparison]:
    rows = make_test()
    test_responses = tuple("x" * (1 + i % 3) for i in range(len(rows)))
    base_responses = tuple("y" * 2 for _ in range(len(rows)))
    return [cmp.Comparison(setting, cmp.System("PT", "pt", "pt"), cmp.System("DPO", "dpo", "i_am"), rows,
                           ("p",) * len(rows), test_responses, base_responses) for setting in ("s1", "s2")]


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
    secondary = cmp.judge_comparisons(ShorterIsBetter(), cmp.agreement_sample(comparisons, 12, np.random.default_rng(0)))
    table = cmp.judge_agreement(primary, secondary).set_index("aspect")
    assert (table.n == 12).all() and (table.invalid == 0).all()
    # Personalization: the two judges are opposites, so they agree only on ties (equal lengths)
    picked = secondary.merge(primary, on=cmp.COMPARISON_KEY, suffixes=("_2", "_1"))
    assert table.loc["personalization", "agreement"] == pytest.approx(
        (picked.personalization_1 == "tie").mean())
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
    from personalign.judge import HFJudge, SimulatedJudge

    model, tokenizer = tiny
    rows = make_test().head(4)
    comparison = cmp.Comparison("s", cmp.System("PT", "pt", "pt"), cmp.System("DPO", "dpo", "i_am"), rows,
                                ("The user is a vegan home cook.",) * 4,
                                ("A lentil curry.", "Tofu stir fry with rice.", "Steak.", "Grilled fish tacos."),
                                ("A burger.", "Roast chicken.", "Chickpea salad with lemon.", "Pasta."))
    primary = cmp.judge_comparisons(SimulatedJudge(embedder, 0.0, 0.1, 0.01, 0), [comparison])
    second = HFJudge(model, tokenizer, "tiny", tie_margin=0.0)
    sampled = cmp.agreement_sample([comparison], 3, np.random.default_rng(0))
    secondary = cmp.judge_comparisons(second, sampled)
    for row in secondary.itertuples():  # the hf judge judged exactly the sampled comparisons, in both orders
        i = list(rows.id).index(row.id)
        ctx_args = (comparison.test_responses[i], comparison.base_responses[i], "quality")
        forward = {"first": "a", "second": "b", "tie": "tie"}[second.verdict(
            cmp.JudgeContext(f"{row.id}:{cmp.stable_seed(comparison.personas[i])}", comparison.personas[i], (),
                             rows.prompt.iloc[i]), *ctx_args)]
        assert row.quality_ab == forward
    table = cmp.judge_agreement(primary, secondary)
    assert list(table.n) == [3, 3]
    assert table.agreement.between(0, 1).all()
