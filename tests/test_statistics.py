"""The statistics module, pinned against scipy/statsmodels reference calls, textbook values and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.inter_rater import cohens_kappa

from personalign.stats.statistics import (
    bootstrap_ci,
    bootstrap_difference_ci,
    ci_half_width,
    cohen_kappa,
    krippendorff_alpha,
    minimum_detectable_difference,
    ols_band,
    one_way_anova,
    paired_permutation_test,
    pearson_with_ci,
    sign_test,
    wilson_interval,
    wilson_intervals_for_shares,
)

SCIPY_METHOD = {"percentile": "percentile", "bca": "BCa"}
SMALL_SAMPLE = [2.0, 4.0, 4.0, 5.0, 7.0, 9.0]


def skewed_sample(seed: int, size: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).exponential(scale=scale, size=size)


def difference_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


# bootstrap_ci


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_ci_agrees_with_scipy(method):
    # different random streams (seeds 1 and 2): with 20000 resamples the endpoints' Monte Carlo sd is < 0.008
    data = skewed_sample(0, 40)
    estimate, low, high = bootstrap_ci(data, rng=np.random.default_rng(1), n_resamples=20000, method=method)
    reference = scipy.stats.bootstrap(
        (data,), np.mean, method=SCIPY_METHOD[method], n_resamples=20000, rng=np.random.default_rng(2)
    ).confidence_interval
    assert estimate == pytest.approx(data.mean())
    assert low == pytest.approx(reference.low, abs=0.03)
    assert high == pytest.approx(reference.high, abs=0.03)


@pytest.mark.parametrize(
    ("method", "groups", "expected"),
    [
        ("percentile", None, (3.5, 7.0)),
        ("bca", None, (3.5514548931913024, 7.055909527069616)),
        ("bca", ["u1", "u1", "u2", "u3", "u3", "u4"], (3.167070599233854, 6.8)),
    ],
)
def test_bootstrap_ci_fixed_seed_output_is_pinned(method, groups, expected):
    # regression values computed once with this seed; they change only if the resampling or the interval changes
    estimate, low, high = bootstrap_ci(
        SMALL_SAMPLE, rng=np.random.default_rng(2024), n_resamples=200, method=method, groups=groups
    )
    assert estimate == pytest.approx(31 / 6)
    assert (low, high) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_ci_of_constant_sample_is_degenerate(method):
    assert bootstrap_ci([3.0] * 8, rng=np.random.default_rng(0), method=method) == (3.0, 3.0, 3.0)


def test_bootstrap_ci_same_seed_same_output_different_seed_different_draws():
    data = skewed_sample(0, 40)
    first = bootstrap_ci(data, rng=np.random.default_rng(7), method="bca", groups=np.arange(40) // 4)
    again = bootstrap_ci(data, rng=np.random.default_rng(7), method="bca", groups=np.arange(40) // 4)
    other = bootstrap_ci(data, rng=np.random.default_rng(8), method="bca", groups=np.arange(40) // 4)
    assert first == again
    assert first[0] == other[0] and first[1:] != other[1:]


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_cluster_bootstrap_with_one_row_per_group_is_the_row_bootstrap(method):
    data = skewed_sample(0, 25)
    rows = bootstrap_ci(data, rng=np.random.default_rng(3), method=method)
    # group labels sorted in row order, so unit i is row i and the same draws pick the same rows
    clusters = bootstrap_ci(data, rng=np.random.default_rng(3), method=method, groups=[f"u{i:02d}" for i in range(25)])
    assert clusters == rows


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_cluster_bootstrap_resamples_whole_groups(method):
    # each user contributes 3 copies of one value: resampling users is resampling the 20 distinct values (the mean
    # of equal-size groups is the mean of their values, and leaving out one user leaves out one value)
    per_user = skewed_sample(0, 20)
    rows = np.repeat(per_user, 3)
    users = np.repeat(np.arange(20), 3)
    clustered = bootstrap_ci(rows, rng=np.random.default_rng(4), method=method, groups=users)
    distinct = bootstrap_ci(per_user, rng=np.random.default_rng(4), method=method)
    naive = bootstrap_ci(rows, rng=np.random.default_rng(4), method=method)
    assert clustered == pytest.approx(distinct, rel=1e-12)
    assert naive[2] - naive[1] < 0.75 * (clustered[2] - clustered[1])  # ignoring clusters understates the spread


def test_bca_is_nan_when_the_estimate_lies_outside_the_bootstrap_distribution():
    # distinct values: a resample almost never holds all 6, so every draw lies below the estimate (bias z0 = inf)
    def distinct_count_plus_mean(sample):
        return np.unique(sample).size + 0.01 * sample.mean()

    estimate, low, high = bootstrap_ci(
        SMALL_SAMPLE[:1] + [3.0, 5.5, 6.0, 8.0, 10.0],
        distinct_count_plus_mean,
        rng=np.random.default_rng(0),
        n_resamples=100,
        method="bca",
    )
    assert estimate == pytest.approx(6 + 0.01 * 34.5 / 6)
    assert math.isnan(low) and math.isnan(high)


# bootstrap_difference_ci


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_paired_difference_resamples_prompt_indices(method):
    a, b = skewed_sample(0, 30), skewed_sample(1, 30)
    difference = bootstrap_difference_ci(a, b, np.random.default_rng(5), method=method)
    assert difference == bootstrap_ci(a - b, rng=np.random.default_rng(5), method=method)
    assert difference[0] == pytest.approx(a.mean() - b.mean())


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_unpaired_difference_agrees_with_scipy_two_sample_bootstrap(method):
    a, b = skewed_sample(0, 40), skewed_sample(5, 30, scale=1.3)
    difference, low, high = bootstrap_difference_ci(
        a, b, np.random.default_rng(1), paired=False, n_resamples=20000, method=method
    )
    reference = scipy.stats.bootstrap(
        (a, b), difference_of_means, method=SCIPY_METHOD[method], n_resamples=20000, rng=np.random.default_rng(2)
    ).confidence_interval
    assert difference == pytest.approx(a.mean() - b.mean())
    assert low == pytest.approx(reference.low, abs=0.03)
    assert high == pytest.approx(reference.high, abs=0.03)


def test_unpaired_difference_is_deterministic_per_seed():
    a, b = skewed_sample(0, 12), skewed_sample(1, 9)
    first = bootstrap_difference_ci(a, b, np.random.default_rng(9), paired=False, method="bca")
    assert first == bootstrap_difference_ci(a, b, np.random.default_rng(9), paired=False, method="bca")
    assert first[1:] != bootstrap_difference_ci(a, b, np.random.default_rng(10), paired=False, method="bca")[1:]


# paired_permutation_test and sign_test


@pytest.mark.parametrize("n", [10, 16])
def test_exact_permutation_test_equals_scipy_exact(n):
    # integer scores give many exact ties of |sum of differences|, which both must count as extreme
    scores = np.random.default_rng(n)
    a, b = scores.integers(0, 6, size=n).astype(float), scores.integers(1, 7, size=n).astype(float)
    reference = scipy.stats.permutation_test(
        (a, b), difference_of_means, permutation_type="samples", n_resamples=np.inf, vectorized=True
    ).pvalue
    assert paired_permutation_test(a, b, np.random.default_rng(0)) == pytest.approx(reference, rel=1e-12)


def test_random_permutation_test_agrees_with_scipy_and_is_deterministic():
    a, b = skewed_sample(0, 30), skewed_sample(1, 30, scale=1.4)
    p_value = paired_permutation_test(a, b, np.random.default_rng(1), n_resamples=20000)
    reference = scipy.stats.permutation_test(
        (a, b),
        difference_of_means,
        permutation_type="samples",
        n_resamples=20000,
        vectorized=True,
        rng=np.random.default_rng(2),
    ).pvalue
    assert p_value == pytest.approx(reference, abs=0.01)
    assert p_value == paired_permutation_test(a, b, np.random.default_rng(1), n_resamples=20000)
    assert p_value != paired_permutation_test(a, b, np.random.default_rng(3), n_resamples=20000)


def test_random_permutation_p_value_is_never_zero():
    a = np.arange(1.0, 41.0)
    assert paired_permutation_test(a, a - 5, np.random.default_rng(0), n_resamples=99) == pytest.approx(1 / 100)


def test_sign_test_drops_ties_and_equals_binomtest():
    a = [3, 5, 2, 4, 4, 6, 1, 5, 5, 7]
    b = [1, 5, 1, 2, 4, 3, 2, 3, 5, 2]  # 6 wins, 1 loss, 3 ties
    assert sign_test(a, b) == pytest.approx(scipy.stats.binomtest(6, 7, 0.5).pvalue)
    assert sign_test(a, b) == pytest.approx(16 / 128)  # 2 * P(X >= 6), X ~ Bin(7, 1/2) = 2 * 8 / 128
    assert math.isnan(sign_test([1, 2], [1, 2]))


# pearson_with_ci


def test_pearson_with_ci_equals_scipy():
    x = skewed_sample(0, 25)
    y = x + skewed_sample(1, 25)
    result = pearson_with_ci(x, y, confidence=0.9)
    reference = scipy.stats.pearsonr(x, y)
    interval = reference.confidence_interval(0.9)
    assert result["n"] == 25
    assert (result["r"], result["p"]) == pytest.approx((reference.statistic, reference.pvalue), rel=1e-12)
    assert (result["low"], result["high"]) == pytest.approx((interval.low, interval.high), rel=1e-12)


@pytest.mark.parametrize(("x", "y"), [([1, 2, 3], [2, 1, 3]), ([1, 2, 3, 4, 5], [2, 2, 2, 2, 2])])
def test_pearson_with_ci_is_nan_for_fewer_than_4_points_or_a_constant_variable(x, y):
    result = pearson_with_ci(x, y)
    assert result["n"] == len(x)
    assert all(math.isnan(result[key]) for key in ("r", "p", "low", "high"))


# ols_band


def test_ols_band_of_a_perfect_line_has_zero_width():
    x = np.arange(10.0)
    band = ols_band(x, 2.5 * x - 1.0, grid=[0.0, 1.0, 4.5, 20.0])
    assert list(band.columns) == ["x", "fit", "low", "high"]
    assert band["fit"].to_numpy() == pytest.approx([-1.0, 1.5, 10.25, 49.0])
    assert band["high"].to_numpy() - band["low"].to_numpy() == pytest.approx(np.zeros(4), abs=1e-9)


def test_ols_band_line_equals_polyfit_and_band_equals_textbook_formula():
    x = skewed_sample(0, 20) * 10
    y = 0.7 * x + 3 + np.random.default_rng(1).normal(size=20)
    grid = np.array([0.0, 1.0, 5.0, 30.0])
    band = ols_band(x, y, grid, confidence=0.9)
    slope, intercept = np.polyfit(x, y, 1)
    assert band["fit"][0] == pytest.approx(intercept, rel=1e-10)
    assert band["fit"][1] - band["fit"][0] == pytest.approx(slope, rel=1e-10)
    # mean-prediction band: fit ± t_{n-2} · s · sqrt(1/n + (x0 - mean x)² / Sxx)
    residual_sd = np.sqrt(np.sum((y - np.polyval([slope, intercept], x)) ** 2) / 18)
    half = (
        scipy.stats.t.ppf(0.95, 18)
        * residual_sd
        * np.sqrt(1 / 20 + (grid - x.mean()) ** 2 / np.sum((x - x.mean()) ** 2))
    )
    assert band["low"].to_numpy() == pytest.approx(band["fit"].to_numpy() - half, rel=1e-10)
    assert band["high"].to_numpy() == pytest.approx(band["fit"].to_numpy() + half, rel=1e-10)


# one_way_anova


def test_one_way_anova_hand_computed_and_scipy():
    # groups {1,2,3} and {4,5,6}: SSB = 2 · 3 · 1.5² = 13.5 on 1 df, SSW = 2 + 2 = 4 on 4 df, F = 13.5 / 1 = 13.5;
    # the singleton group "c" is dropped
    result = one_way_anova([1, 2, 3, 4, 5, 6, 100], ["a", "a", "a", "b", "b", "b", "c"])
    assert result["f"] == pytest.approx(13.5)
    assert result["p"] == pytest.approx(scipy.stats.f.sf(13.5, 1, 4))
    assert result["p"] == pytest.approx(scipy.stats.f_oneway([1, 2, 3], [4, 5, 6]).pvalue)
    assert (result["df_between"], result["df_within"], result["dropped_groups"]) == (1, 4, 1)


def test_one_way_anova_with_fewer_than_two_groups_left_is_nan():
    result = one_way_anova([1, 2, 3], ["a", "a", "b"])
    assert math.isnan(result["f"]) and math.isnan(result["p"])
    assert result["dropped_groups"] == 1


# cohen_kappa


def test_cohen_kappa_textbook_table():
    # Wikipedia's example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no; p_o = 0.7, p_e = 0.5, kappa = 0.4
    rater_a = ["yes"] * 25 + ["no"] * 25
    rater_b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(rater_a, rater_b) == pytest.approx(0.4)
    assert cohen_kappa(rater_a, rater_b) == pytest.approx(cohens_kappa(np.array([[20, 5], [10, 15]])).kappa)


def test_cohen_kappa_equals_statsmodels_on_three_categories():
    labels = np.random.default_rng(0)
    rater_a = labels.integers(0, 3, size=60)
    rater_b = np.where(labels.random(60) < 0.6, rater_a, labels.integers(0, 3, size=60))
    table = np.zeros((3, 3))
    np.add.at(table, (rater_a, rater_b), 1)
    assert cohen_kappa(rater_a, rater_b) == pytest.approx(cohens_kappa(table).kappa, rel=1e-12)
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))


# krippendorff_alpha


def test_krippendorff_alpha_published_examples():
    missing = np.nan
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers × 12 units, nominal, alpha = 0.743
    observers_by_units = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, missing, missing, missing],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, missing, 3],
        [missing, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, missing],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, missing],
    ]
    assert krippendorff_alpha(np.array(observers_by_units).T) == pytest.approx(0.743, abs=5e-4)
    # Wikipedia's computational example: 3 coders × 15 units, nominal, alpha = 0.691
    coders_by_units = [
        [missing] * 5 + [3, 4, 1, 2, 1, 1, 3, 3, missing, 3],
        [1, missing, 2, 1, 3, 3, 4, 3] + [missing] * 7,
        [missing, missing, 2, 1, 3, 4, 4, missing, 2, 1, 1, 3, 3, missing, 4],
    ]
    assert krippendorff_alpha(np.array(coders_by_units).T) == pytest.approx(0.691, abs=5e-4)


def test_krippendorff_alpha_hand_computed_and_edge_cases():
    # units (a, a), (a, b), (b, b): coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6;
    # alpha = 1 - (n - 1) · (o_ab + o_ba) / (n_a n_b + n_b n_a) = 1 - 5 · 2 / 18 = 4 / 9
    assert krippendorff_alpha([[0, 0], [0, 1], [1, 1]]) == pytest.approx(4 / 9)
    assert krippendorff_alpha([[0, 0, np.nan], [1, 1, 1], [2, np.nan, np.nan]]) == 1.0  # the lone rating is unpaired
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[0, 1]], level="interval")


# shares, half-widths, detectable differences


def test_wilson_intervals_for_shares():
    shares = wilson_intervals_for_shares({"win": 30, "tie": 10, "loss": 60})
    assert shares["win"] == (0.3, *wilson_interval(30, 100))
    assert shares["loss"][0] == 0.6 and shares["loss"][1] < 0.6 < shares["loss"][2]
    assert all(math.isnan(value) for value in wilson_intervals_for_shares({"win": 0, "loss": 0})["win"])


def test_half_width_and_minimum_detectable_difference_hand_computed():
    # 1.959964 · sqrt(0.25 / 100) = 0.0980; (1.959964 + 0.841621) · sqrt(2 · 0.25 / 100) = 0.1981
    assert ci_half_width(100) == pytest.approx(0.0980, abs=5e-5)
    assert minimum_detectable_difference(100) == pytest.approx(0.1981, abs=5e-5)
    assert minimum_detectable_difference(400) == pytest.approx(minimum_detectable_difference(100) / 2)


# input errors


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: bootstrap_ci([], rng=np.random.default_rng(0)), "values"),
        (lambda: bootstrap_ci([1.0, 2.0], rng=np.random.default_rng(0), groups=[1]), "groups"),
        (lambda: bootstrap_ci([1.0, 2.0], rng=np.random.default_rng(0), method="bootstrap-t"), "method"),
        (lambda: bootstrap_ci([1.0, 2.0], rng=np.random.default_rng(0), confidence=95), "confidence"),
        (lambda: bootstrap_ci([1.0], rng=np.random.default_rng(0), method="bca"), "values"),
        (lambda: bootstrap_difference_ci([1.0, 2.0], [1.0], np.random.default_rng(0)), "b"),
        (lambda: bootstrap_difference_ci([], [1.0], np.random.default_rng(0), paired=False), "a"),
        (lambda: paired_permutation_test([1.0, 2.0], [1.0], np.random.default_rng(0)), "b"),
        (lambda: paired_permutation_test([1.0], [1.0], np.random.default_rng(0), n_resamples=0), "n_resamples"),
        (lambda: sign_test([], []), "a"),
        (lambda: pearson_with_ci([1, 2, 3, 4], [1, 2, 3]), "y"),
        (lambda: ols_band([1, 2, 3], [1, 2], [0]), "y"),
        (lambda: ols_band([1, 2, 3], [1, 2, 3], []), "grid"),
        (lambda: one_way_anova([1, 2, 3], ["a", "b"]), "groups"),
        (lambda: cohen_kappa(["x"], ["x", "y"]), "b"),
        (lambda: krippendorff_alpha([1, 2, 3]), "ratings"),
        (lambda: wilson_intervals_for_shares({"win": -1}), "counts"),
        (lambda: ci_half_width(0), "n"),
        (lambda: minimum_detectable_difference(0), "n"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        call()


def test_rng_must_be_a_numpy_generator():
    with pytest.raises(TypeError, match="rng"):
        bootstrap_ci([1.0, 2.0], rng=0)
    with pytest.raises(TypeError, match="rng"):
        paired_permutation_test([1.0, 2.0], [2.0, 1.0], None)
