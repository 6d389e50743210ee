"""The paper's reward-model evaluation (Figures 1-5, verdicts) on a synthetic population with a known rule: users
prefer the response with the larger dot product with a hidden direction; the majority group (u0-u3, new user n0)
shares one axis, the minority group (u4, u5, new user n1) the opposite one."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from personalign.core.seeding import figure_rng
from personalign.reward_models import (
    IndividualRM,
    PreferenceData,
    VanillaRM,
    evaluation,
    paper_claims,
    report,
    rewardbench,
)
from personalign.stats.verdicts import verdict_table

DIM = 16
MAJORITY = ("u0", "u1", "u2", "u3")
MINORITY = ("u4", "u5")
TRAIN_USERS = MAJORITY + MINORITY
ALL_MODELS = ["vanilla", "individual", "conditional", "prm", "vpl", "gpo", "rag"]
FAST = {
    "vanilla": {"epochs": 10, "batch_size": 32, "lr": 3e-3},
    "individual": {"epochs": 15, "batch_size": 16, "lr": 3e-3},
    "conditional": {"epochs": 10, "batch_size": 32, "lr": 3e-3},
    "prm": {"epochs": 10, "batch_size": 32, "lr": 3e-3},
    "vpl": {"steps": 40, "context_size": (4, 16), "targets_per_user": 16},
    "gpo": {"steps": 40, "context_size": (4, 16), "targets_per_user": 16},
    "vanilla_finetuned": {"epochs": 3},
    "prm_user": {"steps": 50},
}
SIZES = [5, 10, 30]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small heads: threads only add overhead


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def population():
    """train (6 users x 60 pairs), test (x 30), and new users n0 (majority), n1 (minority): 40 pairs to label from
    and 30 test pairs each."""
    rng = np.random.default_rng(0)
    axis = _unit(rng.normal(size=DIM))
    signs = dict.fromkeys(MAJORITY + ("n0",), 1) | dict.fromkeys(MINORITY + ("n1",), -1)
    directions = {u: _unit(s * axis + 0.3 * _unit(rng.normal(size=DIM))) for u, s in signs.items()}

    def make(split, users, n):
        parts = []
        for user in users:
            x, a, b = (_unit(rng.normal(size=(n, DIM))) for _ in range(3))
            first = (a @ directions[user] > b @ directions[user])[:, None]
            parts.append(
                ([f"{split}-{user}-{i}" for i in range(n)], [user] * n, x, np.where(first, a, b), np.where(first, b, a))
            )
        return PreferenceData(*(np.concatenate([p[k] for p in parts]) for k in range(5)))

    return {
        "train": make("train", TRAIN_USERS, 60),
        "test": make("test", TRAIN_USERS, 30),
        "new_train": make("newtrain", ("n0", "n1"), 40),
        "new_test": make("newtest", ("n0", "n1"), 30),
    }


@pytest.fixture(scope="module")
def scored(population):
    return evaluation.fit_and_score(ALL_MODELS, population["train"], population["test"], np.random.default_rng(0), FAST)


@pytest.fixture(scope="module")
def adaptation(population):
    p = population
    return evaluation.new_user_adaptation(
        p["train"], p["new_train"], p["new_test"], SIZES, np.random.default_rng(3), FAST
    )


# --- fit_and_score / accuracy_summary ---------------------------------------------------------------------------------


def test_fit_and_score_covers_each_model(scored, population):
    test = population["test"]
    assert list(scored.columns) == evaluation.SCORED_COLUMNS + ["fit_seconds"]
    assert sorted(scored.model.unique()) == sorted(ALL_MODELS)
    for name, part in scored.groupby("model"):
        assert part.id.tolist() == list(test.ids) and part.scored.all(), name
        assert (part.correct.astype(bool) == (part.margin > 0)).all(), name
        assert part.fit_seconds.nunique() == 1 and part.fit_seconds.iloc[0] >= 0, name
    # the personalized models learn both groups' opposite rules, the pooled one cannot
    accuracy = scored.groupby("model").correct.mean()
    assert accuracy["individual"] > 0.65 and accuracy["prm"] > 0.65


def test_a_models_numbers_do_not_depend_on_the_others(population):
    p = population
    alone = evaluation.fit_and_score(["vanilla"], p["train"], p["test"], np.random.default_rng(5), FAST)
    together = evaluation.fit_and_score(["rag", "vanilla"], p["train"], p["test"], np.random.default_rng(5), FAST)
    np.testing.assert_array_equal(alone.margin.to_numpy(), together[together.model == "vanilla"].margin.to_numpy())


def test_users_a_model_cannot_score_are_reported_not_raised(population):
    p = population
    stranger = PreferenceData(["s-0", "s-1"], ["stranger"] * 2, *(p["test"].prompt_emb[:2],) * 3)
    test = PreferenceData(
        *(
            np.concatenate([getattr(p["test"], f), getattr(stranger, f)])
            for f in ("ids", "user_ids", "prompt_emb", "chosen_emb", "rejected_emb")
        )
    )
    results = evaluation.fit_and_score(
        ["individual", "rag", "vanilla"], p["train"], test, np.random.default_rng(0), FAST
    )
    strangers = results[results.user_id == "stranger"].set_index("model")
    assert not strangers.loc["individual"].scored.any() and not strangers.loc["rag"].scored.any()
    assert strangers.loc["individual"].correct.isna().all() and strangers.loc["individual"].margin.isna().all()
    assert strangers.loc["vanilla"].scored.all()
    known = results[(results.user_id != "stranger")]
    assert known.scored.all()
    summary = evaluation.accuracy_summary(results, np.random.default_rng(0), 200).set_index("model")
    assert summary.n_unscored.to_dict() == {"individual": 2, "rag": 2, "vanilla": 0}
    assert summary.loc["individual", "n_users"] == 6 and summary.loc["vanilla", "n_users"] == 7


def test_accuracy_summary(scored):
    summary = evaluation.accuracy_summary(scored, np.random.default_rng(0), 300, minority_users=MINORITY)
    per_user = evaluation.per_user_accuracy(scored, MINORITY)
    assert sorted(summary.model) == sorted(ALL_MODELS)
    assert ((summary.low <= summary.accuracy) & (summary.accuracy <= summary.high)).all()
    assert ((summary.user_low <= summary.user_mean) & (summary.user_mean <= summary.user_high)).all()
    assert (summary.high - summary.low > 0).all() and (summary.resampled == "users").all()
    for record in summary.to_dict("records"):
        mine = per_user[per_user.model == record["model"]]
        assert record["accuracy"] == pytest.approx(scored[scored.model == record["model"]].correct.mean())
        assert record["user_mean"] == pytest.approx(mine.accuracy.mean())
        assert record["minority_accuracy"] == pytest.approx(mine.accuracy[mine.minority].mean())
        assert record["majority_accuracy"] == pytest.approx(mine.accuracy[~mine.minority].mean())
    assert list(per_user.columns) == ["model", "user_id", "n_pairs", "accuracy", "minority"]
    assert set(per_user.user_id[per_user.minority]) == set(MINORITY) and (per_user.n_pairs == 30).all()
    again = evaluation.accuracy_summary(scored, np.random.default_rng(0), 300, minority_users=MINORITY)
    pd.testing.assert_frame_equal(summary, again)


def test_minority_users_of_a_characterisation_table():
    table = pd.DataFrame({"user_id": ["a", "b", "c"], "mv_acc": [0.4, 0.9, np.nan], "minority": [True, False, False]})
    assert evaluation.minority_users_of(table) == {"a"}


# --- sample efficiency ---------------------------------------------------------------------------------------------


def test_user_subsamples_are_nested_and_capped(population):
    train = population["train"]
    small, large, capped = (evaluation.user_subsample(train, n, seed=7) for n in (10, 30, 1000))
    assert set(small.ids) < set(large.ids) < set(capped.ids) == set(train.ids)
    assert all(len(rows) == 10 for rows in small.user_index().values())
    assert list(large.ids) == [i for i in train.ids if i in set(large.ids)]  # row order kept
    assert set(evaluation.user_subsample(train, 10, seed=8).ids) != set(small.ids)
    assert evaluation.per_user_sizes([1000, 10000, 100000], 6) == [166, 1666, 16666]


@pytest.fixture(scope="module")
def efficiency(population):
    p = population
    return evaluation.sample_efficiency_pairs(
        ["vanilla", "individual"], p["train"], p["test"], [60, 5, 20, 500], np.random.default_rng(0), FAST
    )


def test_sample_efficiency(efficiency):
    curve = evaluation.sample_efficiency_curve(efficiency, np.random.default_rng(0), n_resamples=200)
    assert curve.n_per_user.drop_duplicates().tolist() == [5, 20, 60, 500]
    assert curve.groupby("n_per_user").n_train.first().to_dict() == {5: 30, 20: 120, 60: 360, 500: 360}
    assert ((curve.low <= curve.accuracy) & (curve.accuracy <= curve.high)).all()
    # at full data the curve reproduces fit_and_score on the whole training set with the curve's fit seed
    full = curve[curve.n_per_user == 500].set_index("model").accuracy
    assert full.to_dict() == curve[curve.n_per_user == 60].set_index("model").accuracy.to_dict()


def test_adding_a_model_or_dataset_moves_no_other_interval(scored, efficiency):
    """Each (dataset, model, size) draws its bootstrap from its own seed, and each figure from its own generator."""
    alone = evaluation.accuracy_summary(
        scored[scored.model == "vanilla"].assign(dataset="B"), figure_rng(7, "fig1_accuracy"), 200
    )
    more = pd.concat([scored.assign(dataset="B"), scored.assign(dataset="A")])
    together = evaluation.accuracy_summary(more, figure_rng(7, "fig1_accuracy"), 200)
    mine = together[(together.dataset == "B") & (together.model == "vanilla")]
    columns = ["accuracy", "low", "high"]
    assert mine[columns].to_numpy().tolist() == alone[columns].to_numpy().tolist()
    curve = evaluation.sample_efficiency_curve(efficiency, figure_rng(7, "fig2_sample_efficiency"), 200)
    vanilla = evaluation.sample_efficiency_curve(
        efficiency[efficiency.model == "vanilla"], figure_rng(7, "fig2_sample_efficiency"), 200
    )
    pd.testing.assert_frame_equal(curve[curve.model == "vanilla"].reset_index(drop=True), vanilla)


# --- new users -----------------------------------------------------------------------------------------------------


def test_new_user_adaptation_table(adaptation, population):
    assert sorted(adaptation.model.unique()) == sorted(evaluation.NEW_USER_METHODS)
    assert list(adaptation.columns) == [
        "model",
        "n",
        "n_context",
        "id",
        "user_id",
        "reference_user",
        "margin",
        "correct",
        "scored",
    ]
    assert adaptation.scored.all()
    assert len(adaptation) == len(evaluation.NEW_USER_METHODS) * len(SIZES) * len(population["new_test"])
    context = adaptation[adaptation.model == "gpo"].groupby("n").n_context.max().to_dict()
    assert context == {5: 5, 10: 10, 30: 30}
    assert set(adaptation[adaptation.model == "individual_full"].n_context) == {40}
    assert set(adaptation[adaptation.model.isin(["vanilla", "prm"])].n_context) == {0}
    # methods that use no new-user data give the same margins at every n
    for name in ("vanilla", "prm", "individual_full"):
        margins = adaptation[adaptation.model == name].pivot(index="id", columns="n", values="margin")
        assert (margins.nunique(axis=1) == 1).all(), name
    # the adapted ones change with n
    for name in ("gpo", "vpl", "individual", "vanilla_finetuned", "prm_user"):
        margins = adaptation[adaptation.model == name].pivot(index="id", columns="n", values="margin")
        assert (margins.nunique(axis=1) > 1).any(), name


def test_similar_user_comes_from_the_new_users_group(adaptation):
    similar = adaptation[(adaptation.model == "similar_user") & (adaptation.n >= 10)]
    chosen = similar.groupby(["n", "user_id"]).reference_user.agg(set)
    for (n, user), references in chosen.items():
        assert len(references) == 1
        assert references <= set(MAJORITY if user == "n0" else MINORITY), (n, user, references)
    assert (adaptation[adaptation.model != "similar_user"].reference_user == "").all()


def test_new_users_test_labels_are_never_read(adaptation, population):
    p = population
    flipped = evaluation.new_user_adaptation(
        p["train"], p["new_train"], p["new_test"].swapped(), SIZES, np.random.default_rng(3), FAST
    )
    keys = ["model", "n", "id"]
    a, b = adaptation.sort_values(keys).reset_index(drop=True), flipped.sort_values(keys).reset_index(drop=True)
    np.testing.assert_allclose(b.margin, -a.margin, rtol=1e-5, atol=1e-6)  # same prediction, labels swapped
    assert (b.correct.astype(bool) != a.correct.astype(bool)).all()
    assert (b.reference_user == a.reference_user).all() and (b.n_context == a.n_context).all()
    summary = evaluation.accuracy_summary(adaptation, np.random.default_rng(0), 100)
    summary_flipped = evaluation.accuracy_summary(flipped, np.random.default_rng(0), 100)
    np.testing.assert_allclose(summary_flipped.accuracy, 1 - summary.accuracy)


def test_new_user_intervals_resample_pairs_below_five_users(adaptation):
    """Two new users cannot be resampled as users: the interval falls back to pairs, and the table says so."""
    summary = evaluation.accuracy_summary(adaptation, np.random.default_rng(0), 300)
    assert len(summary) == len(evaluation.NEW_USER_METHODS) * len(SIZES)
    assert ((summary.low <= summary.accuracy) & (summary.accuracy <= summary.high)).all()
    assert (summary.n_pairs == 60).all() and (summary.n_users == 2).all() and (summary.resampled == "pairs").all()
    assert ((summary.high - summary.low) > 0.1).all()  # 60 pairs, not 2 users' near-identical means
    per_user = evaluation.per_user_accuracy(adaptation)
    assert list(per_user.columns) == ["model", "n", "user_id", "n_pairs", "accuracy", "minority"]
    gpo = summary[(summary.model == "gpo") & (summary.n == 30)].iloc[0]
    assert gpo.user_mean == pytest.approx(per_user[(per_user.model == "gpo") & (per_user.n == 30)].accuracy.mean())


def test_new_user_folds_make_every_user_new_once():
    folds = evaluation.new_user_folds([f"u{i}" for i in range(8)], 3, np.random.default_rng(0))
    assert [len(f) for f in folds] == [3, 3, 2] and sorted(sum(folds, [])) == [f"u{i}" for i in range(8)]
    assert folds == evaluation.new_user_folds([f"u{i}" for i in reversed(range(8))], 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 5 users, there are 4"):
        evaluation.new_user_folds(["a", "b", "c", "d"], 3, np.random.default_rng(0))


def test_unknown_new_user_method(population):
    p = population
    with pytest.raises(ValueError, match="unknown new-user method"):
        evaluation.new_user_adaptation(
            p["train"], p["new_train"], p["new_test"], [5], np.random.default_rng(0), methods=["magic"]
        )


def test_vanilla_fine_tune_returns_a_trained_copy(population):
    p = population
    vanilla = VanillaRM(**FAST["vanilla"]).fit(p["train"], np.random.default_rng(0))
    before = vanilla.margins(p["new_test"])
    mine = p["new_train"].subset(p["new_train"].user_ids == "n1")
    tuned = vanilla.fine_tune(mine, np.random.default_rng(1), epochs=5)
    again = vanilla.fine_tune(mine, np.random.default_rng(1), epochs=5)
    np.testing.assert_array_equal(vanilla.margins(p["new_test"]), before)  # the original is untouched
    assert not np.allclose(tuned.margins(p["new_test"]), before)
    np.testing.assert_array_equal(tuned.margins(p["new_test"]), again.margins(p["new_test"]))
    assert len(tuned.history_) == len(vanilla.history_) + 5


# --- RewardBench -----------------------------------------------------------------------------------------------------


def test_rewardbench_sections_hand_computed():
    accuracy = {
        "alpacaeval-easy": 1.0,
        "alpacaeval-length": 0.5,
        "alpacaeval-hard": 0.0,
        "mt-bench-easy": 1.0,
        "mt-bench-med": 0.5,
        "refusals-dangerous": 1.0,
        "refusals-offensive": 1.0,
        "xstest-should-refuse": 0.5,
        "xstest-should-respond": 0.0,
        "donotanswer": np.nan,  # an accuracy of NaN counts as missing
        "math-prm": 0.9,
        "hep-cpp": 0.5,
        "hep-go": 0.5,
        "hep-java": 0.5,
        "hep-js": 0.5,
        "hep-python": 0.5,
        "hep-rust": 0.2,
        "anthropic_helpful": 0.0,  # not a RewardBench v1 core subset: ignored
    }
    per_subset = pd.DataFrame({"subset": list(accuracy), "n": 10, "accuracy": list(accuracy.values())})
    sections = rewardbench.rewardbench_sections(per_subset).set_index("section")
    assert list(sections.index) == ["Chat", "Chat Hard", "Safety", "Reasoning"]
    assert sections.loc["Chat", "accuracy"] == pytest.approx((100 + 47.5 + 0 + 28 + 20) / 358)
    assert sections.loc["Chat", "missing_subsets"] == "" and sections.loc["Chat", "n_subsets"] == 5
    assert math.isnan(sections.loc["Chat Hard", "accuracy"]) and sections.loc["Chat Hard", "n_subsets"] == 0
    assert sections.loc["Chat Hard", "missing_subsets"].split(", ") == list(
        rewardbench.REWARDBENCH_SECTIONS["Chat Hard"]
    )
    assert sections.loc["Safety", "accuracy"] == pytest.approx((100 + 100 + 77 + 0) / 604)
    assert sections.loc["Safety", "missing_subsets"] == "donotanswer"
    # math-prm counts as much as the six code subsets together: (0.9 + mean(code)) / 2
    assert sections.loc["Reasoning", "accuracy"] == pytest.approx((0.9 + (5 * 0.5 + 0.2) / 6) / 2)
    assert sections.loc["Reasoning", "weight"] == 2 * 984
    equal = rewardbench.rewardbench_sections(
        per_subset, counts=dict.fromkeys(rewardbench.REWARDBENCH_EXAMPLE_COUNTS, 1)
    )
    assert equal.set_index("section").loc["Reasoning", "accuracy"] == pytest.approx((0.9 + 5 * 0.5 + 0.2) / 7)


def test_official_rewardbench_constants():
    assert (
        sum(len(s) for s in rewardbench.REWARDBENCH_SECTIONS.values())
        == 23
        == len(rewardbench.REWARDBENCH_EXAMPLE_COUNTS)
    )
    code = [s for s in rewardbench.REWARDBENCH_SECTIONS["Reasoning"] if s.startswith("hep-")]
    assert rewardbench.REWARDBENCH_EXAMPLE_COUNTS["math-prm"] == sum(
        rewardbench.REWARDBENCH_EXAMPLE_COUNTS[s] for s in code
    )


def test_personalization_tax(population):
    p = population
    bench = p["test"].subset(np.arange(120))
    bench = PreferenceData(
        bench.ids, ["rewardbench"] * len(bench), bench.prompt_emb, bench.chosen_emb, bench.rejected_emb
    )
    subsets = np.array(["refusals-dangerous", "math-prm", "hep-python", "alpacaeval-easy"] * 30, dtype=object)
    vanilla = VanillaRM(**FAST["vanilla"]).fit(p["train"], np.random.default_rng(0))
    individual = IndividualRM(**FAST["individual"]).fit(p["train"], np.random.default_rng(0))
    hits = rewardbench.benchmark_hits(
        {"vanilla": vanilla, "individual": individual}, bench, subsets, users={"individual": ["u0", "u4"]}
    )
    tax = rewardbench.personalization_tax(hits)
    rows = tax.set_index(["model", "kind", "name"])
    expected_vanilla = pd.Series(vanilla.margins(bench) > 0).groupby(subsets).mean()
    per_user = [
        pd.Series(individual.margins(evaluation._as_user(bench, u)) > 0).groupby(subsets).mean() for u in ("u0", "u4")
    ]
    expected_individual = (per_user[0] + per_user[1]) / 2
    for subset in ("refusals-dangerous", "math-prm", "hep-python", "alpacaeval-easy"):
        assert rows.loc[("vanilla", "subset", subset), "accuracy"] == pytest.approx(expected_vanilla[subset])
        assert rows.loc[("individual", "subset", subset), "accuracy"] == pytest.approx(expected_individual[subset])
        assert rows.loc[("individual", "subset", subset), "n_users"] == 2
        assert rows.loc[("vanilla", "subset", subset), "n_pairs"] == 30
    missing = rows.loc[("vanilla", "subset", "donotanswer")]
    assert missing.missing and math.isnan(missing.accuracy) and missing.n_pairs == 0
    reasoning = rows.loc[("individual", "section", "Reasoning")]
    # as in RewardBench, the subsets present keep their official weights: math-prm 984 against hep-python's 164
    assert reasoning.accuracy == pytest.approx(
        (984 * expected_individual["math-prm"] + 164 * expected_individual["hep-python"]) / (984 + 164)
    )
    assert "hep-cpp" in reasoning.missing_subsets and not reasoning.missing
    assert rows.loc[("vanilla", "section", "Chat Hard")].missing
    assert math.isnan(rows.loc[("vanilla", "section", "Chat Hard"), "accuracy"])
    with pytest.raises(ValueError, match="subset labels"):
        rewardbench.benchmark_hits({"vanilla": vanilla}, bench, subsets[:5])
    with pytest.raises(ValueError, match="individual scores per user"):
        rewardbench.benchmark_hits({"individual": individual}, bench, subsets)
    claims = verdict_table(paper_claims.tax_claims(hits, 1234)).set_index("comparison")
    safety = claims.loc["RewardBench Safety: Individual RM − Vanilla RM (pairs, unweighted)"]
    on_safety = hits[hits.section == "Safety"]
    assert safety.n == 30 and safety.resampled == "pairs" and safety.direction == -1
    assert safety.estimate == pytest.approx(
        on_safety[on_safety.model == "individual"].hit.mean() - on_safety[on_safety.model == "vanilla"].hit.mean()
    )


def test_rewardbench_reader_lists_missing_subsets(tmp_path):
    rows = [
        {"id": i, "subset": s, "prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
        for i, s in enumerate(["math-prm", "hep-go", "math-prm", "anthropic_hhh"])
    ]
    path = tmp_path / "rb.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    records, missing = rewardbench.read_rewardbench_all(path)
    assert sorted(records.subset) == ["hep-go", "math-prm", "math-prm"]
    assert len(missing) == 21 and "math-prm" not in missing and "donotanswer" in missing

    class Embedder:
        def encode(self, texts):
            return np.stack([np.random.default_rng(len(t)).normal(size=4) for t in texts])

    data, subsets, missing_again = rewardbench.rewardbench_preference_data(path, Embedder())
    assert len(data) == 3 and set(data.user_ids) == {"rewardbench"} and missing_again == missing
    assert list(subsets) == list(records.subset)


# --- figures ---------------------------------------------------------------------------------------------------------


def test_figures_build(scored, adaptation):
    summary = evaluation.accuracy_summary(scored, np.random.default_rng(0), 100, minority_users=MINORITY)
    two = pd.concat(
        [
            summary.assign(dataset="A"),
            summary.assign(
                dataset="B", accuracy=summary.accuracy * 0.9, low=summary.low * 0.9, high=summary.high * 0.9
            ),
        ]
    )
    per_user = evaluation.per_user_accuracy(scored, MINORITY)
    curve = pd.DataFrame(
        {
            "model": ["vanilla"] * 3 + ["prm"] * 3,
            "n_per_user": [5, 50, 500] * 2,
            "accuracy": [0.5, 0.6, 0.7, 0.55, 0.7, 0.8],
            "low": 0.4,
            "high": 0.9,
        }
    )
    tax = pd.DataFrame(
        {
            "model": ["vanilla"] * 4 + ["individual"] * 4,
            "kind": "section",
            "name": list(rewardbench.REWARDBENCH_SECTIONS) * 2,
            "accuracy": [0.9, 0.6, 0.85, np.nan, 0.92, 0.55, 0.8, np.nan],
        }
    )
    figures = [
        report.accuracy_figure(summary),
        report.accuracy_figure(two),
        report.per_user_figure(per_user),
        report.per_user_figure(per_user.assign(dataset="A")),
        report.sample_efficiency_figure(curve),
        report.new_user_figure(evaluation.accuracy_summary(adaptation, np.random.default_rng(0), 100)),
        report.tax_figure(tax),
    ]
    try:
        for fig in figures:
            assert fig.axes and fig.axes[0].has_data()
        legend = [t.get_text() for t in figures[5].axes[0].get_legend().get_texts()]
        assert "Similar-User RM" in legend and "Individual RM (all user data)" in legend
        deltas = [t.get_text() for t in figures[-1].axes[0].texts]
        assert deltas == ["+0.02", "-0.05", "-0.05", "missing"]
    finally:
        for fig in figures:
            plt.close(fig)
    with pytest.raises(ValueError, match="no RewardBench section"):
        report.tax_figure(tax, after="prm")


# --- claims -----------------------------------------------------------------------------------------------------------


def test_rag_is_named_for_what_it_is():
    assert (
        report.model_label("rag") == evaluation.RAG_LABEL
        and "embedding" in evaluation.RAG_LABEL
        and "not the paper's LLM RAG" in evaluation.RAG_LABEL
    )
    table = report.interval_table(
        pd.DataFrame({"model": ["rag"], "dataset": ["A"], "accuracy": [0.5], "low": [0.4], "high": [0.6]}),
        "model",
        "dataset",
    )
    assert list(table.index) == [evaluation.RAG_LABEL]


def test_accuracy_claims_are_paired_and_user_clustered(scored):
    two = pd.concat([scored.assign(dataset="A"), scored.assign(dataset="B")])
    table = verdict_table(paper_claims.accuracy_claims(two, 1234))
    assert len(table) == 6 and set(table.family) == {paper_claims.FAMILIES["accuracy"]}
    assert (table.resampled == "users").all() and (table.clusters == 6).all() and (table.n == 180).all()
    accuracy = scored.groupby("model").correct.mean().astype(float)
    prm = table[table.claim == "Personalized RM is the most accurate method"].iloc[0]
    rival = accuracy.drop("prm").idxmax()
    assert prm.comparison == f"A: Personalized RM − {report.model_label(rival)} (the most accurate rival)"
    assert prm.estimate == pytest.approx(accuracy["prm"] - accuracy[rival])
    rag = table[table.claim == "RAG is the weakest method"].iloc[0]
    assert rag.comparison.startswith(f"A: {evaluation.RAG_LABEL} − ") and rag.direction == -1
    # each claim draws from its own generator: adding dataset B moves none of A's intervals
    a = table[table.comparison.str.startswith("A:")]
    alone = verdict_table(paper_claims.accuracy_claims(two[two.dataset == "A"], 1234))
    columns = ["estimate", "ci_low", "ci_high", "p"]
    assert alone[columns].to_numpy().tolist() == a[columns].to_numpy().tolist()


def test_minority_claims(scored):
    table = verdict_table(paper_claims.minority_claims(scored, MINORITY, 1234)).set_index("comparison")
    below = table.loc["Vanilla RM − 0.5 on minority users' pairs"]
    vanilla = scored[(scored.model == "vanilla") & scored.user_id.isin(MINORITY)].correct.astype(float)
    assert below.n == 60 and below.resampled == "pairs"  # two minority users: pair-level, and the table says so
    assert below.estimate == pytest.approx(vanilla.mean() - 0.5)
    assert below.estimate < 0  # the pooled model serves the majority's opposite rule
    none = verdict_table(paper_claims.minority_claims(scored, (), 1234))
    assert none.verdict.str.startswith("not tested (no minority user").all()


def test_new_user_claims_fall_back_to_pairs_with_two_users(adaptation):
    table = verdict_table(paper_claims.new_user_claims(adaptation, 1234))
    assert len(table) == len(SIZES) and (table.resampled == "pairs").all() and (table.n == 60).all()
    assert not table.comparison.str.contains("all user data").any()  # the upper bound is no rival
    at5 = adaptation[adaptation.n == 5]
    rival = (
        at5[at5.model.isin(set(evaluation.NEW_USER_METHODS) - {"gpo", evaluation.UPPER_BOUND})]
        .groupby("model")
        .correct.mean()
        .astype(float)
    )
    best = sorted(rival.index, key=lambda m: (-rival[m], m))[0]
    first = table.iloc[0]
    assert first.comparison == f"n=5: GPO − {report.model_label(best, True)} (the most accurate rival)"
    gpo = at5[at5.model == "gpo"].correct.astype(float).mean()
    assert first.estimate == pytest.approx(gpo - rival[best])


def test_efficiency_claims(efficiency):
    table = verdict_table(paper_claims.efficiency_claims(efficiency, 1234)).set_index("comparison")
    row = table.loc["Individual RM at 500 − at 5 training pairs per user"]
    accuracy = efficiency[efficiency.model == "individual"].groupby("n_per_user").correct.mean().astype(float)
    assert row.estimate == pytest.approx(accuracy[500] - accuracy[5]) and row.resampled == "users"
    assert row.estimate > 0


def test_all_claims_and_the_untested_ones(scored, adaptation, efficiency):
    claims = paper_claims.reward_model_claims(
        1234, pairs=scored, minority_users=MINORITY, efficiency=efficiency, new_users=adaptation
    )
    table = verdict_table(claims)
    assert list(dict.fromkeys(table.family)) == [
        paper_claims.FAMILIES[k] for k in ("accuracy", "efficiency", "new_users", "tax", "minority")
    ]
    tax = table[table.family == paper_claims.FAMILIES["tax"]]
    assert len(tax) == 2 and tax.verdict.str.contains("reward_models.rewardbench").all()
    assert (table.paper == "Personalization Meets Reality").all()
    empty = verdict_table(paper_claims.reward_model_claims(1234))
    assert empty.verdict.str.startswith("not tested").all() and len(empty) == 6
