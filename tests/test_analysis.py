"""Stage 6's figures from synthetic results files: the numbers behind each figure, determinism, the index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.analysis import index, judgment_tables, paper_claims, wikipersona_figures
from personalign.analysis.published import WHOSE_BOAT_TABLE
from personalign.stats.verdicts import COLUMNS, verdict_table

USERS = [f"u{i}" for i in range(6)]
RUNS = {
    "mt_tag_f0": {"kind": "mt", "prefix": "tag", "held_out_fold": 0},
    "mt_none_f0": {"kind": "mt", "prefix": "none", "held_out_fold": 0},
    "pm_u0": {"kind": "pm", "user": "u0"},
    "pm_u0_f50_s1": {"kind": "pm", "user": "u0", "fraction": 0.5, "seed": 1},
}


def synthetic_examples(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []

    def add(system, condition, variant, seen_of):
        for u_index, user in enumerate(USERS):
            for j in range(8):
                rows.append(
                    {
                        "system": system,
                        "condition": condition,
                        "variant": variant,
                        "sees_label": False,
                        "id": f"{user}:{j}",
                        "user_id": user,
                        "question_type": "personal" if j % 2 else "divergent",
                        "seen": seen_of(u_index, user),
                        "correct": bool(rng.random() < 0.4 + 0.05 * u_index),
                    }
                )

    for variant in ("none", "tag@0", "gold@0", "shuffled_tag@0"):
        add("base", variant.split("@")[0], variant, lambda i, u: False)
    for condition, variant in (("seen_prefix", "tag@0"), ("shuffled_prefix", "shuffled_tag@0"), ("no_prefix", "none")):
        add("mt_tag_f0", condition, variant, lambda i, u: i >= 2)
    add("mt_none_f0", "no_prefix", "none", lambda i, u: i >= 2)
    add("pm_u0", "no_prefix", "none", lambda i, u: u == "u0")
    add("pm_u0_f50_s1", "no_prefix", "none", lambda i, u: u == "u0")
    return pd.DataFrame(rows)


def by_user(examples: pd.DataFrame) -> pd.DataFrame:
    grouped = examples.groupby(["system", "condition", "variant", "user_id", "seen"], sort=True)
    return grouped.agg(n=("correct", "size"), accuracy=("correct", "mean")).reset_index()


def test_cell_means_are_the_plain_means_with_user_bootstrap_intervals():
    examples = synthetic_examples()
    table = wikipersona_figures.cell_means(
        examples[examples.system == "base"], ["variant"], np.random.default_rng(0), 500
    )
    expected = examples[examples.system == "base"].groupby("variant").correct.mean()
    assert np.allclose(table.set_index("variant")["mean"], expected)
    assert (table.low <= table["mean"]).all() and (table["mean"] <= table.high).all()
    assert set(table.n_users) == {len(USERS)}
    again = wikipersona_figures.cell_means(
        examples[examples.system == "base"], ["variant"], np.random.default_rng(0), 500
    )
    pd.testing.assert_frame_equal(table, again)


def test_each_figure_is_built_from_the_right_rows():
    examples, seed = synthetic_examples(), 1
    table, _ = wikipersona_figures.prompting_baseline(examples, seed, 200)
    assert set(table.prefix) == {"none", "tag", "gold"}  # shuffled prefixes are not a prompting condition
    table, _ = wikipersona_figures.personal_models(examples, RUNS, seed, 200)
    assert set(table.system) == {"pm_u0"}  # the full-data, seed-0 personal model only
    own = examples[(examples.system == "pm_u0") & examples.seen].correct.mean()
    assert table.set_index("users").loc["trained user", "mean"] == pytest.approx(own)
    table, _ = wikipersona_figures.data_efficiency(examples, RUNS, seed, 200)
    assert list(zip(table.fraction, table.seed)) == [(0.5, 1), (1.0, 0)]
    table, _ = wikipersona_figures.multitask_models(examples, RUNS, seed, 200)
    unseen_tag = table[(table.prefix == "tag") & (table.users == "unseen users")]["n"].sum()
    assert unseen_tag == 2 * 8  # two held-out users, eight pairs each
    table, _ = wikipersona_figures.sensitivity(examples, RUNS, seed, 200)
    assert {"own prefix, seen", "shuffled, unseen", "no prefix, seen"} <= set(table.cell)


def test_equity_correlates_unseen_users_with_the_base_model():
    examples = synthetic_examples()
    stats, _ = wikipersona_figures.equity(by_user(examples), RUNS)
    tag = stats.set_index("prefix").loc["tag"]
    assert tag.n == 2  # only the held-out users are points
    assert np.isnan(tag.r)  # fewer than 4 points: no correlation is reported


def test_demographics_run_an_anova_per_attribute():
    examples = synthetic_examples()
    personas = pd.DataFrame(
        {
            "user_id": USERS,
            "demographics": [{"gender": g, "age": a} for g, a in zip("ffmmff", (25, 35, 45, 55, 65, 75))],
        }
    )
    table, _ = wikipersona_figures.demographics(by_user(examples), personas, "base", "none", ["gender", "age"])
    gender = table[table.attribute == "gender"]
    assert set(gender.group) == {"f", "m"} and gender.users.sum() == len(USERS)
    assert set(table[table.attribute == "age"].group) == {"under 40", "40-59", "60 and over"}
    assert np.isfinite(gender.f.iloc[0])


def test_the_index_lists_existing_files_only(tmp_path):
    (tmp_path / "figures" / "analysis").mkdir(parents=True)
    (tmp_path / "figures" / "analysis" / "fig3_prompting.png").write_bytes(b"png")
    (tmp_path / "figures" / "table2_persona_rouge.md").write_text("t")
    text = index.write_index(index.INDEX, tmp_path).read_text()
    assert "[analysis/fig3_prompting.png](analysis/fig3_prompting.png)" in text and "WikiPersona Fig. 3" in text
    assert "[table2_persona_rouge.md](table2_persona_rouge.md)" in text
    assert "fig6_equity" not in text


def test_a_figure_whose_runs_are_absent_says_so():
    examples = synthetic_examples()
    runs = {name: run for name, run in RUNS.items() if run["kind"] != "pm"}
    table, fig = wikipersona_figures.personal_models(examples, runs, 0, 100)
    assert table.empty and "no full-data personal model" in fig.texts[0].get_text()
    verdicts = verdict_table(paper_claims.personal_claims(examples, runs, 0, 100))
    assert list(verdicts.verdict) == ["not tested (no full-data personal model in train.runs)"]


def test_win_rate_intervals_match_the_point_estimates():
    judgments = pd.DataFrame(
        {
            "setting": "s",
            "test": "PT",
            "base": "DPO",
            "personalization": ["a"] * 6 + ["b"] * 2 + ["tie"] * 2,
            "quality": ["a"] * 4 + ["b"] * 4 + ["invalid"] * 2,
        }
    )
    row = judgment_tables.win_rate_intervals(judgments, 0, 500).iloc[0]
    assert row.p_wr == pytest.approx(0.75) and row.q_wr == pytest.approx(0.5)
    assert row.delta_pq == pytest.approx(25.0)
    assert row.p_win == pytest.approx(0.6) and row.q_win == pytest.approx(0.5)  # invalid left out of the shares
    assert row.delta_pq_low <= row.delta_pq <= row.delta_pq_high
    shown = judgment_tables.formatted_win_rates(pd.DataFrame([row]))
    assert shown.iloc[0]["ΔPQ"].startswith("+25.0 [")


def test_order_agreement_scores_a_position_biased_judge_low():
    consistent = pd.DataFrame(
        {
            "personalization_ab": ["a", "b", "tie", "a"],
            "personalization_ba": ["a", "b", "tie", "a"],
            "quality_ab": ["a", "a", "a", "invalid"],
            "quality_ba": ["b", "b", "b", "a"],
        }
    )
    table = judgment_tables.order_agreement(consistent).set_index("aspect")
    assert table.loc["personalization", "agreement"] == 1.0 and table.loc["personalization", "cohen_kappa"] == 1.0
    assert table.loc["personalization", "krippendorff_alpha"] == pytest.approx(1.0)
    assert table.loc["quality", "n"] == 3 and table.loc["quality", "invalid"] == 1
    assert table.loc["quality", "agreement"] == 0.0 and table.loc["quality", "krippendorff_alpha"] < 0


def test_a_single_users_cell_resamples_its_pairs_not_the_user():
    examples = synthetic_examples()
    own = examples[(examples.system == "pm_u0") & examples.seen]
    table = wikipersona_figures.cell_means(own, ["system"], np.random.default_rng(0), 500)
    mean = own.correct.mean()
    assert table.n_users.iloc[0] == 1
    assert 0 < mean < 1
    assert table.low.iloc[0] < mean < table.high.iloc[0]  # a user-level bootstrap of one user would collapse


def test_a_claim_is_decided_by_a_paired_test_where_the_unpaired_intervals_overlap():
    rng = np.random.default_rng(3)
    rows = []
    for u_index, user in enumerate(USERS):
        for j in range(16):
            none = bool(rng.random() < 0.2 + 0.12 * u_index)  # users differ a lot: wide unpaired intervals
            for variant, correct in (("none", none), ("gold@0", none or j % 4 == 0)):  # gold fixes a quarter
                rows.append(
                    {
                        "system": "base",
                        "condition": variant.split("@")[0],
                        "variant": variant,
                        "id": f"{user}:{j}",
                        "user_id": user,
                        "question_type": "personal",
                        "seen": False,
                        "correct": correct,
                    }
                )
    examples = pd.DataFrame(rows)
    cells = wikipersona_figures.cell_means(examples, ["variant"], np.random.default_rng(0), 1000).set_index("variant")
    assert cells.loc["none", "high"] > cells.loc["gold@0", "low"]  # the old overlap rule: "not separated"
    claims = paper_claims.prompting_claims(examples, 0, 1000)
    row = verdict_table(claims).iloc[0]
    assert row.comparison == "base + gold vs base + none" and row.resampled == "users" and row.clusters == 6
    assert row.estimate == pytest.approx(
        examples[examples.variant == "gold@0"].correct.mean() - examples[examples.variant == "none"].correct.mean()
    )
    assert row.verdict == "reproduced" and row.ci_low > 0
    own_functions = [
        n for n in dir(paper_claims) if getattr(getattr(paper_claims, n), "__module__", "") == paper_claims.__name__
    ]
    assert not [n for n in own_functions if n.startswith("verdict_") or n == "_overlap"]  # no rule but the tests


def test_every_figure_states_its_claims_with_paired_tests():
    examples = synthetic_examples()
    personas = pd.DataFrame({"user_id": USERS, "demographics": [{"gender": g} for g in "ffmmff"]})
    demographics, _ = wikipersona_figures.demographics(by_user(examples), personas, "base", "none", ["gender"])
    claims = (
        paper_claims.prompting_claims(examples, 0, 200)
        + paper_claims.personal_claims(examples, RUNS, 0, 200)
        + paper_claims.data_efficiency_claims(examples, RUNS, 0, 200)
        + paper_claims.multitask_claims(examples, RUNS, 0, 200)
        + paper_claims.equity_claims(examples, RUNS, 0, 200)
        + paper_claims.sensitivity_claims(examples, RUNS, 0, 200)
        + paper_claims.demographic_claims(demographics)
        + paper_claims.positive_control_claims(examples, RUNS, 0, 200)
    )
    table = verdict_table(claims)
    assert {f.split(" (")[0] for f in table.family} == {
        "WikiPersona Fig. 3",
        "WikiPersona Fig. 4",
        "WikiPersona Fig. 13",
        "WikiPersona Fig. 5",
        "WikiPersona Fig. 6",
        "WikiPersona Fig. 15",
        "WikiPersona Fig. 16",
        "positive control",
    }
    tested = table[table.n > 0]
    assert (tested.ci_low <= tested.estimate).all() and (tested.estimate <= tested.ci_high).all()
    assert tested.mdd.notna().all() and tested.half_width.notna().all()
    by = table.set_index("comparison")
    assert by.loc["base + tag vs base, no prefix", "direction"] == 0  # "prompting changes little"
    assert by.loc["MT + tag (unseen users) vs base, no prefix", "n"] == 2 * 8  # the held-out fold only
    control = by.loc["mt_none_f0 vs base, both no prefix, on its users' test pairs"]
    assert control.paper == "this pipeline" and control.n == 4 * 8  # seen users' held-out test pairs
    tagged = by.loc["mt_tag_f0 vs base, both + tag, on its users' test pairs"]
    assert tagged.claim.startswith("positive control") and tagged.n == 4 * 8
    assert table[table.family.str.contains("Fig. 16")].verdict.iloc[0].startswith("not tested (groups of different")
    shown = paper_claims.claims_markdown(claims[:2])
    assert "± half-width" in shown and "MDD" in shown and "WikiPersona Fig. 3" in shown


def test_the_run_named_as_positive_control_is_a_family_of_its_own():
    """analysis.positive_control: the named run's row alone is Holm-adjusted as "positive control"; the other runs'
    rows form their own family; the summary names the rows whose interval is above 0."""
    examples = synthetic_examples()
    claims = paper_claims.positive_control_claims(examples, RUNS, 0, 500, control="mt_tag_f0")
    families = {c.comparison: c.family for c in claims}
    assert families["mt_tag_f0 vs base, both + tag, on its users' test pairs"] == "positive control"
    assert families["mt_none_f0 vs base, both no prefix, on its users' test pairs"] == "training vs base (other runs)"
    assert list(families.values()).count("positive control") == 1
    table = verdict_table(claims).set_index("comparison")
    alone = table.loc["mt_tag_f0 vs base, both + tag, on its users' test pairs"]
    assert alone.p_holm == pytest.approx(alone.p)  # a family of one: no adjustment
    summary = paper_claims.positive_control_summary(claims)
    above = alone.ci_low > 0
    assert summary.startswith(f"Positive control: {int(above)} of 1 rows have a 95% interval above 0")
    assert ("mt_tag_f0 vs base" in summary) == above
    everyone = paper_claims.positive_control_claims(examples, RUNS, 0, 500)
    assert {c.family for c in everyone} == {"positive control"}


def test_a_wrong_prefix_is_tested_on_divergent_questions_where_the_paper_makes_the_claim():
    examples = synthetic_examples()
    table = verdict_table(paper_claims.sensitivity_claims(examples, RUNS, 0, 200)).set_index("comparison")
    divergent = table.loc["MT + tag: own vs shuffled prefix, divergent"]
    assert divergent.direction == 1 and table.loc["MT + tag: own vs shuffled prefix, personal", "direction"] == 0
    mt = examples[(examples.system == "mt_tag_f0") & (examples.question_type == "divergent")]
    own, wrong = (mt[mt.condition == c].correct.mean() for c in ("seen_prefix", "shuffled_prefix"))
    assert divergent.n == len(USERS) * 4 and divergent.estimate == pytest.approx(own - wrong)


def test_one_users_comparison_resamples_pairs_so_its_interval_has_width():
    examples = synthetic_examples()
    runs = RUNS | {"pm_u1": {"kind": "pm", "user": "u1"}}
    examples = pd.concat(
        [
            examples,
            examples[examples.system == "pm_u0"].assign(
                system="pm_u1", seen=lambda t: t.user_id == "u1", correct=lambda t: ~t.correct
            ),
        ],
        ignore_index=True,
    )
    table = verdict_table(paper_claims.personal_claims(examples, runs, 0, 500)).set_index("comparison")
    versus_base = table.loc["pm_u0 vs base, no prefix, on u0's test pairs"]
    assert versus_base.n == 8 and versus_base.resampled == "pairs" and versus_base.clusters == 8
    versus_other = table.loc["pm_u0 vs pm_u1 on u0's test pairs"]  # two models on the same (u0's) pairs
    assert versus_other.n == 8 and versus_other.ci_low < versus_other.estimate < versus_other.ci_high


def test_data_efficiency_compares_the_largest_and_smallest_fraction_on_the_same_pairs():
    examples = synthetic_examples()
    row = verdict_table(paper_claims.data_efficiency_claims(examples, RUNS, 0, 200)).iloc[0]
    own = examples[examples.user_id == "u0"]
    assert row.comparison == "u0: PM on 100% vs 50% of the user's pairs (mean of 1 vs 1 seeds)" and row.n == 8
    assert row.estimate == pytest.approx(
        own[own.system == "pm_u0"].correct.mean() - own[own.system == "pm_u0_f50_s1"].correct.mean()
    )


def test_whose_boat_claims_pair_pt_and_dpo_over_each_cells_prompts():
    users = [f"u{i}" for i in range(10)]
    judgments = pd.DataFrame(
        {
            "setting": "w/chosen/gold",
            "test": "PT + P",
            "base": "DPO + P",
            "id": users,
            "user_id": users,
            "personalization": ["a"] * 6 + ["b"] * 4,
            "quality": ["a"] * 5 + ["b"] * 5,
        }
    )
    boat = pd.DataFrame(
        {
            "setting": ["w/chosen/gold", "w/chosen/retr", "average"],
            "test": "pt",
            "base": "dpo",
            "missing": ["", "no retrieved personas", ""],
        }
    )
    table = verdict_table(paper_claims.whose_boat_claims(judgments, boat, 0, 500))
    assert list(table.family) == ["Whose Boat (PT vs DPO)"] * 2
    judged = table.iloc[0]
    assert judged.n == 10 and judged.resampled == "users"
    assert judged.estimate == pytest.approx(0.6 + 0.5 - 1)  # ΔPQ / 100: no ties
    assert table.iloc[1].verdict == "not tested (no retrieved personas)"


def test_figures_and_claims_draw_their_own_generators():
    examples = synthetic_examples()
    more = RUNS | {"mt_gold_f0": {"kind": "mt", "prefix": "gold", "held_out_fold": 0}}
    extra = pd.concat(
        [examples, examples[examples.system == "mt_tag_f0"].assign(system="mt_gold_f0")], ignore_index=True
    )
    before, _ = wikipersona_figures.multitask_models(examples, RUNS, 7, 300)
    wikipersona_figures.personal_models(examples, RUNS, 7, 300)  # another figure drawn first moves nothing
    after, _ = wikipersona_figures.multitask_models(examples, RUNS, 7, 300)
    pd.testing.assert_frame_equal(before, after)
    fig3, _ = wikipersona_figures.prompting_baseline(examples, 7, 300)
    pd.testing.assert_frame_equal(fig3, wikipersona_figures.prompting_baseline(extra, 7, 300)[0])
    tag = verdict_table(paper_claims.multitask_claims(examples, RUNS, 7, 300)).iloc[0]
    with_gold = verdict_table(paper_claims.multitask_claims(extra, more, 7, 300)).set_index("comparison")
    assert len(with_gold) == 2  # a new run adds its own claim and leaves the others' resampling where it was
    assert with_gold.loc[tag.comparison, ["ci_low", "ci_high", "p"]].tolist() == [tag.ci_low, tag.ci_high, tag.p]


def test_mt_prefix_claims_pair_each_fold_with_its_own_no_prefix_run():
    """Issue 15: MT + quality prefix vs MT without prefix on divergent questions, seen and unseen users, each prefix
    run paired with the no-prefix run of its fold; tag is not a quality prefix; folds pool."""
    examples = synthetic_examples()
    assert (
        verdict_table(paper_claims.multitask_prefix_claims(examples, RUNS, 0, 200))
        .verdict.iloc[0]
        .startswith("not tested")
    )
    gold = examples[examples.system == "mt_tag_f0"].assign(system="mt_gold_f0", correct=True)
    runs = RUNS | {"mt_gold_f0": {"kind": "mt", "prefix": "gold", "held_out_fold": 0}}
    table = verdict_table(paper_claims.multitask_prefix_claims(pd.concat([examples, gold]), runs, 0, 200))
    assert list(table.comparison) == [
        "MT + gold vs MT, no prefix: divergent, seen users",
        "MT + gold vs MT, no prefix: divergent, unseen users",
    ]
    none = examples[(examples.system == "mt_none_f0") & (examples.question_type == "divergent")]
    assert table.n.tolist() == [int(none.seen.sum()), int((~none.seen).sum())]
    assert table.estimate.tolist() == pytest.approx(
        [1 - none[none.seen].correct.mean(), 1 - none[~none.seen].correct.mean()]
    )
    folds = pd.concat(
        [
            examples,
            gold,
            gold.assign(system="mt_gold_f1", seen=~gold.seen),
            examples[examples.system == "mt_none_f0"].assign(system="mt_none_f1", seen=lambda t: ~t.seen),
        ]
    )
    runs |= {
        "mt_gold_f1": {"kind": "mt", "prefix": "gold", "held_out_fold": 1},
        "mt_none_f1": {"kind": "mt", "prefix": "none", "held_out_fold": 1},
    }
    pooled = verdict_table(paper_claims.multitask_prefix_claims(folds, runs, 0, 200))
    assert pooled.n.tolist() == [len(none), len(none)]  # every divergent pair once seen, once unseen


def test_the_verdict_table_collects_every_stages_claims(tmp_path):
    examples = synthetic_examples()
    own = verdict_table(paper_claims.prompting_claims(examples, 0, 200))
    stage7 = verdict_table(paper_claims.positive_control_claims(examples, RUNS, 0, 200)).assign(
        paper="Personalization Meets Reality"
    )
    (tmp_path / "claims").mkdir()
    stage7.to_csv(tmp_path / "claims" / "reward_models.csv", index=False)
    collected = paper_claims.collected_verdicts(own, tmp_path / "claims")
    assert list(collected.columns) == COLUMNS and len(collected) == len(stage7) + len(own)
    assert list(collected.paper) == list(stage7.paper) + list(own.paper)
    stage7.drop(columns="mdd").to_csv(tmp_path / "claims" / "infer_personas.csv", index=False)
    with pytest.raises(ValueError, match="infer_personas.csv: no column 'mdd'"):
        paper_claims.collected_verdicts(own, tmp_path / "claims")


def test_the_paper_comparison_averages_only_the_cells_both_have():
    cells = [
        ("w/chosen/gold", "w", "chosen", "gold", 30.0),
        ("bt/chosen/dataset_retr", "bt", "chosen", "dataset_retr", 10.0),
        ("bt/rejected/dataset_pair", "bt", "rejected", "dataset_pair", 20.0),
    ]
    boat = pd.DataFrame(
        [
            {
                "setting": s,
                "dataset": d,
                "side": side,
                "source": src,
                "delta_pq": v,
                "p_win": 50.0,
                "p_tie": 20.0,
                "p_loss": 30.0,
                "n": 10,
                "missing": "",
            }
            for s, d, side, src, v in cells
        ]
    )
    boat = pd.concat(
        [
            boat,
            pd.DataFrame(
                [
                    {
                        "setting": "average",
                        "dataset": "average",
                        "side": "",
                        "source": "",
                        "delta_pq": 20.0,
                        "p_win": 50.0,
                        "p_tie": 20.0,
                        "p_loss": 30.0,
                        "n": 30,
                        "missing": "",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    names = {"bt": "bt", "average": "average"}
    assert judgment_tables.whose_boat_vs_paper(boat[boat.dataset.isin(["w", "average"])], WHOSE_BOAT_TABLE, names).empty
    versus = judgment_tables.whose_boat_vs_paper(boat, WHOSE_BOAT_TABLE, names).set_index("cell")
    average = versus.loc["average of these 2 cells"]
    assert average["paper ΔPQ"] == pytest.approx((21.3 + 21.3) / 2) and average["ours ΔPQ"] == 15.0
    assert average["paper Person. W/T/L"] == "48.9/27.6/23.5" and average.n == 20


def test_soft_prefix_claims_compare_mt_vpl_with_mt_without_a_prefix_per_question_type():
    """WikiPersona §4.1: vpl helps on personal questions (+1), not on divergent ones (0), against the no-prefix MT
    run of the same fold on the same test pairs."""
    examples = synthetic_examples()
    absent = verdict_table(paper_claims.soft_prefix_claims(examples, RUNS, 0, 200))
    assert len(absent) == 1 and absent.verdict.iloc[0].startswith("not tested")
    vpl = examples[examples.system == "mt_tag_f0"].assign(system="mt_vpl_f0", correct=True)
    runs = RUNS | {"mt_vpl_f0": {"kind": "mt", "prefix": "vpl", "held_out_fold": 0}}
    table = verdict_table(paper_claims.soft_prefix_claims(pd.concat([examples, vpl]), runs, 0, 200))
    assert list(table.comparison) == ["MT + vpl vs MT, no prefix: personal", "MT + vpl vs MT, no prefix: divergent"]
    none = examples[examples.system == "mt_none_f0"]
    for row, question_type in zip(table.itertuples(), ("personal", "divergent")):
        part = none[none.question_type == question_type]
        assert row.n == len(part) and row.estimate == pytest.approx(1 - part.correct.mean())


def test_the_analysis_package_never_imports_torch():
    """Reporting reads results files: every module of personalign.analysis imports without torch."""
    import pkgutil
    import subprocess
    import sys

    import personalign.analysis

    modules = [m.name for m in pkgutil.iter_modules(personalign.analysis.__path__, "personalign.analysis.")]
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    assert len(modules) >= 8
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
