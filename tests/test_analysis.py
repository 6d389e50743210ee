"""Stage 6's figures from synthetic results files: the numbers behind each figure, determinism, the index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign import analysis as an

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
                rows.append({"system": system, "condition": condition, "variant": variant, "id": f"{user}:{j}",
                             "user_id": user, "question_type": "personal" if j % 2 else "divergent",
                             "seen": seen_of(u_index, user), "correct": bool(rng.random() < 0.4 + 0.05 * u_index)})

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
    table = an.cell_means(examples[examples.system == "base"], ["variant"], np.random.default_rng(0), 500)
    expected = examples[examples.system == "base"].groupby("variant").correct.mean()
    assert np.allclose(table.set_index("variant")["mean"], expected)
    assert (table.low <= table["mean"]).all() and (table["mean"] <= table.high).all()
    assert set(table.n_users) == {len(USERS)}
    again = an.cell_means(examples[examples.system == "base"], ["variant"], np.random.default_rng(0), 500)
    pd.testing.assert_frame_equal(table, again)


def test_each_figure_is_built_from_the_right_rows():
    examples, rng = synthetic_examples(), np.random.default_rng(1)
    table, _ = an.prompting_baseline(examples, rng, 200)
    assert set(table.prefix) == {"none", "tag", "gold"}  # shuffled prefixes are not a prompting condition
    table, _ = an.personal_models(examples, RUNS, rng, 200)
    assert set(table.system) == {"pm_u0"}  # the full-data, seed-0 personal model only
    own = examples[(examples.system == "pm_u0") & examples.seen].correct.mean()
    assert table.set_index("users").loc["trained user", "mean"] == pytest.approx(own)
    table, _ = an.data_efficiency(examples, RUNS, rng, 200)
    assert list(zip(table.fraction, table.seed)) == [(0.5, 1), (1.0, 0)]
    table, _ = an.multitask_models(examples, RUNS, rng, 200)
    unseen_tag = table[(table.prefix == "tag") & (table.users == "unseen users")]["n"].sum()
    assert unseen_tag == 2 * 8  # two held-out users, eight pairs each
    table, _ = an.sensitivity(examples, RUNS, rng, 200)
    assert {"own prefix, seen", "shuffled, unseen", "no prefix, seen"} <= set(table.cell)


def test_equity_correlates_unseen_users_with_the_base_model():
    examples = synthetic_examples()
    stats, _ = an.equity(by_user(examples), RUNS)
    tag = stats.set_index("prefix").loc["tag"]
    assert tag.n == 2  # only the held-out users are points
    assert np.isnan(tag.r)  # fewer than 4 points: no correlation is reported


def test_demographics_run_an_anova_per_attribute():
    examples = synthetic_examples()
    personas = pd.DataFrame({"user_id": USERS, "demographics": [
        {"gender": g, "age": a} for g, a in zip("ffmmff", (25, 35, 45, 55, 65, 75))]})
    table, _ = an.demographics(by_user(examples), personas, "base", "none", ["gender", "age"])
    gender = table[table.attribute == "gender"]
    assert set(gender.group) == {"f", "m"} and gender.users.sum() == len(USERS)
    assert set(table[table.attribute == "age"].group) == {"under 40", "40-59", "60 and over"}
    assert np.isfinite(gender.f.iloc[0])


def test_the_index_lists_existing_files_only(tmp_path):
    (tmp_path / "figures" / "analysis").mkdir(parents=True)
    (tmp_path / "figures" / "analysis" / "fig3_prompting.png").write_bytes(b"png")
    (tmp_path / "figures" / "table2_persona_rouge.md").write_text("t")
    text = an.write_index(an.INDEX, tmp_path).read_text()
    assert "[analysis/fig3_prompting.png](analysis/fig3_prompting.png)" in text and "WikiPersona Fig. 3" in text
    assert "[table2_persona_rouge.md](table2_persona_rouge.md)" in text
    assert "fig6_equity" not in text


def test_a_figure_whose_runs_are_absent_says_so():
    examples, rng = synthetic_examples(), np.random.default_rng(0)
    runs = {name: run for name, run in RUNS.items() if run["kind"] != "pm"}
    table, fig = an.personal_models(examples, runs, rng, 100)
    assert table.empty and "no full-data personal model" in fig.texts[0].get_text()
    assert "not in `train.runs`" in an.verdict_personal(table)


def test_paired_tests_compare_the_same_prompts():
    examples = synthetic_examples()
    table = an.paired_tests(examples, RUNS, np.random.default_rng(0), 500)
    assert list(table.comparison) == ["mt_tag_f0: own prefix vs base, no prefix", "mt_tag_f0: own vs shuffled prefix"]
    row = table.iloc[0]
    own = examples[(examples.system == "mt_tag_f0") & (examples.condition == "seen_prefix")].correct.mean()
    base = examples[(examples.system == "base") & (examples.condition == "none")].correct.mean()
    assert row.n == len(USERS) * 8 and row.difference == pytest.approx(own - base)
    assert row.ci_low <= row.difference <= row.ci_high and 0 < row.permutation_p <= 1 and 0 < row.sign_test_p <= 1


def test_win_rate_intervals_match_the_point_estimates():
    judgments = pd.DataFrame({"setting": "s", "test": "PT", "base": "DPO",
                              "personalization": ["a"] * 6 + ["b"] * 2 + ["tie"] * 2,
                              "quality": ["a"] * 4 + ["b"] * 4 + ["invalid"] * 2})
    row = an.win_rate_intervals(judgments, np.random.default_rng(0), 500).iloc[0]
    assert row.p_wr == pytest.approx(0.75) and row.q_wr == pytest.approx(0.5)
    assert row.delta_pq == pytest.approx(25.0)
    assert row.p_win == pytest.approx(0.6) and row.q_win == pytest.approx(0.5)  # invalid left out of the shares
    assert row.delta_pq_low <= row.delta_pq <= row.delta_pq_high
    shown = an.formatted_win_rates(pd.DataFrame([row]))
    assert shown.iloc[0]["ΔPQ"].startswith("+25.0 [")


def test_order_agreement_scores_a_position_biased_judge_low():
    consistent = pd.DataFrame({"personalization_ab": ["a", "b", "tie", "a"], "personalization_ba": ["a", "b", "tie", "a"],
                               "quality_ab": ["a", "a", "a", "invalid"], "quality_ba": ["b", "b", "b", "a"]})
    table = an.order_agreement(consistent).set_index("aspect")
    assert table.loc["personalization", "agreement"] == 1.0 and table.loc["personalization", "cohen_kappa"] == 1.0
    assert table.loc["personalization", "krippendorff_alpha"] == pytest.approx(1.0)
    assert table.loc["quality", "n"] == 3 and table.loc["quality", "invalid"] == 1
    assert table.loc["quality", "agreement"] == 0.0 and table.loc["quality", "krippendorff_alpha"] < 0


def test_a_single_users_cell_resamples_its_pairs_not_the_user():
    examples = synthetic_examples()
    own = examples[(examples.system == "pm_u0") & examples.seen]
    table = an.cell_means(own, ["system"], np.random.default_rng(0), 500)
    mean = own.correct.mean()
    assert table.n_users.iloc[0] == 1
    assert 0 < mean < 1
    assert table.low.iloc[0] < mean < table.high.iloc[0]  # a user-level bootstrap of one user would collapse
