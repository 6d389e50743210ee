"""Stage 4's cells: conditions per run kind, seen/unseen users, implicit-reward decisions, summaries, and scoring
several adapters on one base model (each equal to loading it alone; the cache serves a rerun)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_checkpoints import save_base, save_random_adapter

from personalign.analysis import score_tables
from personalign.core.config import BaseParams, RunSpec, ScoreParams
from personalign.evaluation import accuracy as acc
from personalign.lm.prompts import PT_TEMPLATE
from personalign.personas.conditioning import ConditioningError, variant_prompts

USERS = ["ann", "bob", "cy", "dee"]


def inputs(base_dir, tmp_path, runs, test, prefixes, score):
    """What implicit_precision_check and score_systems read, in the order stage 4's notebook passes it."""
    return (base_dir, tmp_path / "adapters", runs, test, prefixes, None, score, [0], tmp_path / "cache", BaseParams())


def make_test() -> pd.DataFrame:
    rows = []
    for k, user in enumerate(USERS):
        for j, qt in enumerate(["personal", "divergent", "personal"]):
            rows.append(
                {
                    "id": f"{user}:{j}",
                    "source": "builtin",
                    "user_id": user,
                    "fold": k % 2,
                    "question_type": qt,
                    "prompt": f"question {j} of {user}?",
                    "chosen": f"good answer {j}",
                    "rejected": f"bad answer {j} " * 2,
                    "chosen_persona_gold": f"{user} likes tea",
                }
            )
    return pd.DataFrame(rows)


def prefix_frame() -> pd.DataFrame:
    rows = [
        {"user_id": u, "prefix_type": t, "seed": s, "text": f"{t}-{s}-{u}"}
        for u in USERS
        for t in ("tag", "shuffled_tag", "few_shot", "shuffled_few_shot")
        for s in (0, 1)
    ]
    return pd.DataFrame(rows)


def test_conditions_per_run_kind():
    mt = RunSpec(name="mt_fs", kind="mt", prefix="few_shot", held_out_fold=0)
    names = [c.name for c in acc.run_conditions(mt, [0, 1], sensitivity=True)]
    assert names == ["seen_prefix", "new_prefix_seed_1", "shuffled_prefix", "no_prefix"]
    assert [c.variant for c in acc.run_conditions(mt, [0, 1], sensitivity=False)] == ["few_shot@0"]
    tag = acc.run_conditions(RunSpec(name="mt_tag", kind="mt", prefix="tag"), [0, 1], sensitivity=True)
    assert [c.variant for c in tag] == ["tag@0", "shuffled_tag@0", "none"]  # tags have no selection seed
    assert [c.variant for c in acc.run_conditions(RunSpec(name="pt", kind="pt", prefix="gold"), [0], True)] == [
        "pt_gold"
    ]
    assert [c.variant for c in acc.run_conditions(RunSpec(name="d", kind="dpo"), [0], True)] == ["none"]
    base = acc.base_conditions(
        ["none", "tag", "persona_strong", "few_shot"],
        {"tag", "few_shot"},
        [0, 1],
        {"pt_gold", "shuffled_tag@0", "tag@0"},
    )
    assert [c.variant for c in base] == ["none", "tag@0", "few_shot@0", "few_shot@1", "pt_gold", "shuffled_tag@0"]


def test_prompts_of_each_variant_and_clear_errors():
    test, prefixes = make_test(), prefix_frame()
    assert variant_prompts("none", test, prefixes, None) == list(test.prompt)
    assert variant_prompts("tag@1", test, prefixes, None)[0] == "tag-1-ann question 0 of ann?"
    assert variant_prompts("pt_gold", test, prefixes, None)[0] == PT_TEMPLATE.format(
        x="question 0 of ann?", persona="ann likes tea"
    )
    with pytest.raises(
        ConditioningError, match="'gold@0': stage 2 computed no 'gold' prefix \\(seed 0\\) for user 'ann'"
    ):
        variant_prompts("gold@0", test, prefixes, None)
    with pytest.raises(ConditioningError, match="'pt_retr': persona source 'retr' needs stage 2's pair personas"):
        variant_prompts("pt_retr", test, prefixes, None)


def test_a_persona_inferred_from_the_test_pair_is_a_labelled_oracle_never_a_headline_cell():
    """Issue 14.3: scoring a test pair under the persona inferred from that pair (y_w marked preferred) leaks the
    label; such cells are named as oracles and left out of the headline table."""
    conditions = acc.run_conditions(RunSpec(name="pt", kind="pt", prefix="pair"), [0], True)
    assert [(c.name, c.variant, c.sees_label) for c in conditions] == [
        ("pt_retr", "pt_retr", False),
        ("pt_pair_oracle_sees_label", "pt_pair", True),
    ]
    base = acc.base_conditions(["none"], set(), [0], {c.variant for c in conditions})
    assert [c.name for c in base] == ["none", "pt_pair_oracle_sees_label", "pt_retr"]
    test, prefixes = make_test(), prefix_frame()
    pair_personas = pd.DataFrame(
        {"id": test.id, "chosen_persona": "The user wants y_w.", "chosen_persona_retr": "The user likes tea."}
    )
    assert variant_prompts("pt_pair", test, prefixes, pair_personas)[0].endswith(
        "Persona: The user wants y_w.\nResponse:"
    )
    scores = pd.DataFrame(
        {
            "id": test.id,
            "chosen_logp": -1.0,
            "chosen_tokens": 2,
            "rejected_logp": -2.0,
            "rejected_tokens": 2,
            "correct": True,
        }
    )
    examples = pd.concat([acc.examples_frame(c, test, np.ones(len(test), bool), scores, None) for c in conditions])
    assert examples.groupby("condition").sees_label.first().to_dict() == {
        "pt_pair_oracle_sees_label": True,
        "pt_retr": False,
    }
    cells = score_tables.summarize(examples)
    assert list(score_tables.cells_table(cells).index) == ["pt / pt_retr"]
    assert list(score_tables.cells_table(cells, oracles=True).index) == ["pt / pt_pair_oracle_sees_label"]


def test_the_default_pt_run_trains_and_is_tested_on_the_same_kind_of_persona():
    """Issue 14.4: the default PT run trains on pair-inferred personas (the paper's P_gold of training pairs) and is
    judged with P_retr, the persona inferred for the nearest training prompt; "gold" is only the world's persona."""
    from pathlib import Path

    from personalign.core.config import load_params
    from personalign.tuning.runs import resolve_run

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    pt = [resolve_run(n, params.train, 0) for n, r in params.train.runs.items() if r.kind == "pt"]
    assert [(r.name, r.prefix) for r in pt] == [("pt_pair", "pair")]
    assert [c.name for c in acc.run_conditions(pt[0], [0], True)] == ["pt_retr", "pt_pair_oracle_sees_label"]
    assert params.generate_judge.whose_boat.runs["builtin"].pt == "pt_pair"
    assert params.generate_judge.whose_boat.persona_sources == ["pair", "retr"]


def test_seen_users():
    test = make_test()
    assert list(acc.seen_users(RunSpec(name="m", kind="mt", prefix="tag", held_out_fold=1), test)) == [
        f != 1 for f in test.fold
    ]
    pm = RunSpec(name="p", kind="pm", user="bob")
    assert list(acc.seen_users(pm, test)) == [u == "bob" for u in test.user_id]
    assert not acc.seen_users(None, test).any()


def test_implicit_reward_decision_and_summaries():
    test = make_test().head(4)
    ids = list(test.id)
    policy = pd.DataFrame(
        {
            "id": ids,
            "chosen_logp": [-10.0, -10, -10, -10],
            "chosen_tokens": 5,
            "rejected_logp": [-12.0, -8, -9, -11],
            "rejected_tokens": 5,
            "correct": [True, False, False, True],
        }
    )
    reference = policy.assign(chosen_logp=[-11.0, -9, -10, -9], rejected_logp=[-12.0, -9, -9, -12])
    condition = acc.Condition("mt", "seen_prefix", "tag@0")
    frame = acc.examples_frame(
        condition, test, np.array([True, True, False, False]), policy, acc.implicit_margins(policy, reference)
    )
    # margins: (1 - 0), (-1 - 1), (0 - 0), (-1 - 1) -> only the first is positive
    assert list(frame.implicit_correct) == [True, False, False, False]
    cells = score_tables.summarize(frame)
    overall = cells[(cells.question_type == "overall") & (cells.users == "all")].iloc[0]
    assert (overall.n, overall.accuracy, overall.implicit_accuracy) == (4, 0.5, 0.25)
    seen = cells[(cells.question_type == "overall") & (cells.users == "seen")].iloc[0]
    assert (seen.n, seen.accuracy) == (2, 0.5)
    assert overall.ci_low < 0.5 < overall.ci_high
    tree = score_tables.metrics_tree(cells)
    assert tree["mt"]["seen_prefix"]["overall/all"] == 0.5
    assert tree["mt"]["seen_prefix"]["overall/all/implicit"] == 0.25
    table = score_tables.cells_table(cells)
    assert table.loc["mt / seen_prefix", "overall"].startswith("0.500 [")


def test_adapters_share_one_base_and_rescoring_is_served_from_the_cache(tiny, tmp_path, monkeypatch):
    from peft import PeftModel

    from personalign.evaluation import scoring
    from personalign.lm.models import load_base

    model, tokenizer = tiny
    base_dir = save_base(model, tokenizer, tmp_path / "base")
    runs = [RunSpec(name="dpo", kind="dpo"), RunSpec(name="mt_tag", kind="mt", prefix="tag", held_out_fold=0)]
    for k, run in enumerate(runs):
        save_random_adapter(model, tmp_path / "adapters" / run.name / "adapter", seed=k)
    test, prefixes = make_test(), prefix_frame()
    args = (
        *inputs(
            base_dir,
            tmp_path,
            runs,
            test,
            prefixes,
            ScoreParams(base_prefixes=["none", "tag"], sensitivity=True, batch_size=4),
        ),
        "fp32",
    )
    examples = acc.score_systems(*args)
    assert set(zip(examples.system, examples.condition)) == {
        ("base", "none"),
        ("base", "tag"),
        ("base", "shuffled_tag"),
        ("dpo", "no_prefix"),
        ("mt_tag", "seen_prefix"),
        ("mt_tag", "shuffled_prefix"),
        ("mt_tag", "no_prefix"),
    }
    alone = PeftModel.from_pretrained(
        load_base(base_dir, "cpu", "float32")[0], str(tmp_path / "adapters" / "mt_tag" / "adapter")
    )
    pairs = test.assign(prompt=variant_prompts("tag@0", test, prefixes, None))
    direct = scoring.score_pairs(alone, tokenizer, pairs, 4)
    scored = examples[(examples.system == "mt_tag") & (examples.condition == "seen_prefix")]
    assert np.allclose(scored.chosen_logp, direct.chosen_logp, atol=1e-4)
    base_none = examples[(examples.system == "base") & (examples.condition == "none")]
    assert np.allclose(base_none.chosen_logp, scoring.score_pairs(model, tokenizer, test, 4).chosen_logp, atol=1e-4)

    def refuse(*_, **__):
        raise AssertionError("a cached cell was scored again")

    monkeypatch.setattr(scoring, "score_pairs", refuse)
    again = acc.score_systems(*args)
    pd.testing.assert_frame_equal(again, examples)


def test_a_missing_adapter_is_named_before_scoring(tmp_path):
    with pytest.raises(acc.ScoringInputError, match="run 'dpo': no trained adapter"):
        acc.score_systems(
            *inputs(
                tmp_path,
                tmp_path,
                [RunSpec(name="dpo", kind="dpo")],
                make_test(),
                prefix_frame(),
                ScoreParams(base_prefixes=["none"], sensitivity=True, batch_size=4),
            ),
            "fp32",
        )


def test_each_dataset_scores_with_its_own_log_prob_reduction():
    """Issue 14.12: summed log-probs (the papers' choice for safety sets) per dataset, from score.log_prob_reduction."""
    from personalign.core.config import ParamsError, parse_params

    test = make_test().head(2).assign(source=["safety", "builtin"])
    # y_w: 2 tokens, -3 in all (mean -1.5); y_l: 6 tokens, -6 in all (mean -1): mean prefers y_l, sum prefers y_w
    scores = pd.DataFrame(
        {
            "id": test.id,
            "chosen_logp": -3.0,
            "chosen_tokens": 2,
            "rejected_logp": -6.0,
            "rejected_tokens": 6,
            "correct": False,
        }
    )
    setting = parse_params({"score": {"log_prob_reduction": {"default": "mean", "safety": "sum"}}}).score
    reductions = acc.row_reductions(test, setting.log_prob_reduction, {"safety", "builtin"})
    frame = acc.examples_frame(acc.Condition("base", "none", "none"), test, np.zeros(2, bool), scores, None, reductions)
    assert list(frame.reduction) == ["sum", "mean"] and list(frame.correct) == [True, False]
    with pytest.raises(acc.ScoringInputError, match="score.log_prob_reduction.mnemonic: no dataset of that name"):
        acc.row_reductions(test, {"default": "mean", "mnemonic": "sum"}, {"safety", "builtin"})
    with pytest.raises(ParamsError, match="score.log_prob_reduction: needs a `default` entry"):
        parse_params({"score": {"log_prob_reduction": {"safety": "sum"}}})
    with pytest.raises(ParamsError, match="score.log_prob_reduction.default = 'max' is not allowed"):
        parse_params({"score": {"log_prob_reduction": {"default": "max"}}})


def test_the_length_diagnostic_splits_accuracy_by_which_response_is_longer():
    """Issue 14.12: accuracy vs the token difference y_w − y_l, under mean and summed log-probs, in words."""
    rows = []
    for i in range(40):
        longer = i < 30  # y_w longer in 30 pairs: summed log-probs prefer y_l there; mean prefers y_w where shorter
        rows.append(
            {
                "system": "base",
                "variant": "none",
                "source": "bt",
                "chosen_tokens": 20 if longer else 5,
                "rejected_tokens": 5 if longer else 20,
                "chosen_logp": -40.0 if longer else -4.0,
                "rejected_logp": -8.0 if longer else -60.0,
            }
        )
    diagnostic = score_tables.length_diagnostic(pd.DataFrame(rows))
    table = diagnostic.set_index("pairs")
    assert list(table.index) == ["all", "y_w longer", "y_w shorter"] and table.loc["y_w longer", "share"] == 0.75
    assert (table.loc["all", "accuracy_mean"], table.loc["all", "accuracy_sum"]) == (0.25, 0.25)
    assert (table.loc["y_w longer", "accuracy_sum"], table.loc["y_w shorter", "accuracy_sum"]) == (0.0, 1.0)
    text = score_tables.length_sentences(diagnostic)
    assert "y_w has more tokens than y_l in 75% of pairs (mean difference +7.5 tokens)" in text
    assert "below chance where y_w is longer and above it where y_w is shorter: the length difference" in text
    few = score_tables.length_sentences(
        score_tables.length_diagnostic(pd.DataFrame(rows[:31]))
    )  # one pair with y_w shorter
    assert "the 1 pairs where it is shorter are too few to tell" in few


def test_implicit_decisions_near_the_reference_are_measured_and_made_in_fp32(tiny, tmp_path):
    """Issue 14.13: with policy ≈ reference, bf16 autocast flips implicit-reward decisions; stage 4 measures the
    share on a trained run and, above 1%, scores every cell in fp32 (issue 15: one precision for both decisions,
    no cell scored twice); where score.precision resolves to fp32 nothing is checked."""
    from personalign.evaluation import scoring

    model, tokenizer = tiny
    base_dir = save_base(model, tokenizer, tmp_path / "base")
    policy = save_random_adapter(model, tmp_path / "adapters" / "dpo" / "adapter", seed=0, scale=0.001)
    runs, test, prefixes = [RunSpec(name="dpo", kind="dpo")], make_test(), prefix_frame()
    check = acc.implicit_precision_check(
        *inputs(base_dir, tmp_path, runs, test, prefixes, ScoreParams(batch_size=4, precision="bf16"))
    )
    assert check["run"] == "dpo" and check["n"] == len(test) and check["differing"] > 0
    assert check["share"] > acc.IMPLICIT_FLIP_LIMIT and check["precision"] == "fp32"
    examples = acc.score_systems(
        *inputs(
            base_dir,
            tmp_path,
            runs,
            test,
            prefixes,
            ScoreParams(base_prefixes=["none"], sensitivity=True, batch_size=4),
        ),
        check["precision"],
    )
    dpo = examples[examples.system == "dpo"].reset_index(drop=True)
    policy_fp32 = scoring.score_pairs(policy.merge_and_unload(), tokenizer, test, 4)
    base_fp32 = scoring.score_pairs(model, tokenizer, test, 4)
    fp32 = acc.implicit_margins(policy_fp32, base_fp32)
    assert list(dpo.implicit_correct) == list(fp32 > 0) and set(dpo.implicit_precision) == {"fp32"}
    assert np.allclose(dpo.chosen_logp, policy_fp32.chosen_logp)  # reference-free decisions: the same fp32 scores
    base = examples[examples.system == "base"].reset_index(drop=True)
    assert np.allclose(base.chosen_logp, base_fp32.chosen_logp)
    skipped = acc.implicit_precision_check(
        *inputs(base_dir, tmp_path, runs, test, prefixes, ScoreParams(batch_size=4, precision="fp32"))
    )
    assert (
        skipped["run"] == ""
        and skipped["precision"] == "fp32"
        and "no bf16" in score_tables.implicit_precision_sentence(skipped)
    )


def test_a_vpl_run_is_scored_with_each_users_soft_prefix_against_the_base_without_one(tiny, tmp_path):
    import torch

    from personalign.evaluation import scoring
    from personalign.personas.soft_prefix import PREFIXES_FILE, save_prefixes

    model, tokenizer = tiny
    base_dir = save_base(model, tokenizer, tmp_path / "base")
    run = RunSpec(name="mt_vpl", kind="mt", prefix="vpl", held_out_fold=0)
    policy = save_random_adapter(model, tmp_path / "adapters" / run.name / "adapter", seed=3)
    hidden = model.get_input_embeddings().weight.shape[1]
    soft = torch.randn(len(USERS), 1, hidden, generator=torch.Generator().manual_seed(2)) * 0.1
    save_prefixes(tmp_path / "adapters" / run.name / PREFIXES_FILE, USERS, soft)
    assert [c.variant for c in acc.run_conditions(run, [0], True)] == ["vpl@0", "shuffled_vpl@0", "none"]
    assert variant_prompts("vpl@0", make_test(), prefix_frame(), None) == list(make_test().prompt)
    test = make_test()
    examples = acc.score_systems(
        *inputs(
            base_dir,
            tmp_path,
            [run],
            test,
            prefix_frame(),
            ScoreParams(base_prefixes=["none"], sensitivity=True, batch_size=4),
        ),
        "fp32",
    )
    assert set(zip(examples.system, examples.condition)) == {
        ("base", "none"),
        ("mt_vpl", "seen_prefix"),
        ("mt_vpl", "shuffled_prefix"),
        ("mt_vpl", "no_prefix"),
    }
    merged = policy.merge_and_unload()
    own = scoring.score_pairs(merged, tokenizer, test, 4, soft_prefixes=dict(zip(USERS, soft)))
    bare = scoring.score_pairs(merged, tokenizer, test, 4)
    cells = {
        c: examples[(examples.system == "mt_vpl") & (examples.condition == c)].reset_index(drop=True)
        for c in ("seen_prefix", "shuffled_prefix", "no_prefix")
    }
    assert np.allclose(cells["seen_prefix"].chosen_logp, own.chosen_logp, atol=1e-4)
    assert np.allclose(cells["no_prefix"].chosen_logp, bare.chosen_logp, atol=1e-4)
    assert not np.allclose(cells["shuffled_prefix"].chosen_logp, own.chosen_logp, atol=1e-4)
    reference = scoring.score_pairs(model, tokenizer, test, 4)  # the base on the prompt alone
    margins = acc.implicit_margins(own, reference)
    assert list(cells["seen_prefix"].implicit_correct) == list(margins > 0)


def test_switched_adapters_score_as_the_merged_runs_do(tiny, tmp_path):
    """Issue 18.1: every run switched on one loaded base (an SFT-then-DPO run: both its adapters on at once, its
    SFT adapter alone as the reference) scores as the runs merged into copies do, within 1e-4."""
    model, tokenizer = tiny
    base_dir = save_base(model, tokenizer, tmp_path / "base")
    runs = [RunSpec(name="dpo", kind="dpo"), RunSpec(name="boat", kind="dpo", sft_epochs=1)]
    save_random_adapter(model, tmp_path / "adapters" / "dpo" / "adapter", seed=0, scale=5.0)
    save_random_adapter(model, tmp_path / "adapters" / "boat" / "sft_adapter", seed=1, scale=5.0)
    save_random_adapter(model, tmp_path / "adapters" / "boat" / "adapter", seed=2, scale=5.0)
    test, prefixes = make_test(), prefix_frame()
    score = ScoreParams(base_prefixes=["none"], batch_size=4)
    scored = {}
    for adapters in ("merged", "switched"):
        args = list(inputs(base_dir, tmp_path, runs, test, prefixes, score))
        args[-1] = BaseParams(adapters=adapters)
        scored[adapters] = acc.score_systems(*args, "fp32")
    merged, switched = scored["merged"], scored["switched"]
    assert list(zip(merged.system, merged.condition)) == list(zip(switched.system, switched.condition))
    for column in ("chosen_logp", "rejected_logp"):
        assert np.allclose(merged[column], switched[column], atol=1e-4), column
    assert merged.implicit_correct.equals(switched.implicit_correct) and merged.implicit_correct.notna().any()
    assert (merged.system == "boat").any() and not np.allclose(
        merged[merged.system == "boat"].chosen_logp, merged[merged.system == "base"].chosen_logp, atol=1e-2
    )  # the adapters move the scores, so the equality above is not the base's


def test_the_base_is_placed_by_device_and_dtype_and_caches_keep_placements_apart(tiny, tmp_path):
    import torch

    from personalign.lm.artifacts import LoadedBase

    model, tokenizer = tiny
    base_dir = save_base(model, tokenizer, tmp_path / "base")
    loaded = LoadedBase.open(base_dir, "cpu", "bfloat16", "switched")
    assert next(loaded.base().parameters()).dtype == torch.bfloat16 and loaded.device == "cpu"
    assert loaded.identity.endswith("@cpu/bfloat16/switched")
    assert LoadedBase.open(base_dir, "cpu", "float32").identity.endswith("@cpu/float32/merged")
    runs, test, prefixes = [], make_test(), prefix_frame()
    score = ScoreParams(base_prefixes=["none"], batch_size=4)
    fp32 = acc.score_systems(*inputs(base_dir, tmp_path, runs, test, prefixes, score), "fp32")
    args = list(inputs(base_dir, tmp_path, runs, test, prefixes, score))
    args[-1] = BaseParams(dtype="bfloat16")
    bf16 = acc.score_systems(*args, "fp32")  # not served from the float32 cells' cache
    assert not np.array_equal(fp32.chosen_logp.to_numpy(), bf16.chosen_logp.to_numpy())
    assert np.allclose(fp32.chosen_logp, bf16.chosen_logp, rtol=0.05)
