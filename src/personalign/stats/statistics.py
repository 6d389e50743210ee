"""Statistics shared by the stages (all randomness from explicit numpy Generators)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import binomtest, f_oneway, norm, pearsonr
from statsmodels.regression.linear_model import OLS
from statsmodels.tools import add_constant

EXACT_PERMUTATION_MAX_N = 16  # paired_permutation_test enumerates all 2**n sign flips up to this many pairs
_PERMUTATION_BATCH_ELEMENTS = 1_000_000  # sign flips drawn per batch (rows × pairs) to bound memory


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _as_1d(name: str, values: ArrayLike, dtype: type | None = float) -> np.ndarray:
    """`values` as a non-empty 1-D array; ValueError naming the argument otherwise."""
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    return array


def _check_same_length(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.size != b.size:
        raise ValueError(f"{name_b} must have the same length as {name_a} ({b.size} != {a.size})")


def _check_resampling(rng: np.random.Generator, n_resamples: int) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")


def _check_interval(confidence: float, method: str) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")


@dataclass(frozen=True)
class _Units:
    """The resampling units of a sample: each row, or each group of rows (rows sorted by unit in `order`)."""

    order: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, n_rows: int, groups: ArrayLike | None) -> _Units:
        if groups is None:
            return cls(np.arange(n_rows), np.arange(n_rows), np.ones(n_rows, dtype=int))
        labels = np.asarray(groups)
        if labels.ndim != 1 or labels.size != n_rows:
            raise ValueError(f"groups must be a 1-D array with the same length as values ({labels.size} != {n_rows})")
        codes = np.unique(labels, return_inverse=True)[1]
        sizes = np.bincount(codes)
        return cls(np.argsort(codes, kind="stable"), np.cumsum(sizes) - sizes, sizes)

    @property
    def count(self) -> int:
        return self.sizes.size

    def rows(self, chosen: np.ndarray) -> np.ndarray:
        """Row indices of the chosen units (with repeats), concatenated in the order chosen."""
        sizes = self.sizes[chosen]
        shift = np.repeat(self.starts[chosen] - (np.cumsum(sizes) - sizes), sizes)
        return self.order[shift + np.arange(sizes.sum())]

    def rows_without(self, unit: int) -> np.ndarray:
        """Row indices of every unit but one (a jackknife sample)."""
        return np.delete(self.order, slice(self.starts[unit], self.starts[unit] + self.sizes[unit]))


def _acceleration(jackknife_estimates: list[np.ndarray]) -> float:
    """BCa acceleration from leave-one-unit-out estimates, one array per independent sample (Efron & Tibshirani
    eq. 14.15, summed over samples as in scipy.stats.bootstrap); 0 when the jackknife estimates do not vary."""
    skew_sum = spread_sum = 0.0
    for estimates in jackknife_estimates:
        n = estimates.size
        influence = (n - 1) * (estimates.mean() - estimates)
        skew_sum += float(np.sum(influence**3)) / n**3
        spread_sum += float(np.sum(influence**2)) / n**2
    return 0.0 if spread_sum == 0 else skew_sum / (6 * spread_sum**1.5)


def _interval(
    draws: np.ndarray, estimate: float, confidence: float, jackknife_estimates: list[np.ndarray] | None
) -> tuple[float, float]:
    """Percentile interval of the bootstrap draws, or BCa when jackknife estimates are given; BCa is (nan, nan)
    when the estimate lies outside the bootstrap distribution and the acceleration is non-zero."""
    alpha = (1 - confidence) / 2
    levels = np.array([alpha, 1 - alpha])
    if jackknife_estimates is not None:
        acceleration = _acceleration(jackknife_estimates)
        bias = norm.ppf((np.count_nonzero(draws < estimate) + np.count_nonzero(draws <= estimate)) / (2 * draws.size))
        z = norm.ppf(levels)
        with np.errstate(invalid="ignore"):
            levels = norm.cdf(bias + (bias + z) / (1 - acceleration * (bias + z)))
        if np.isnan(levels).any():
            return (math.nan, math.nan)
    low, high = np.quantile(draws, levels)
    return (float(low), float(high))


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    rng: np.random.Generator,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
    groups: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """Bootstrap confidence interval of `statistic(values)`: (estimate on all values, low, high).

    Resamples rows with replacement, or with `groups` (a label per row, e.g. user ids) whole groups with replacement,
    recomputing the statistic on the concatenated rows of the drawn groups. `method` is "percentile" or "bca"
    (bias-corrected and accelerated; the acceleration's jackknife leaves out one row, or one group, at a time; low and
    high are nan when the estimate lies outside the bootstrap distribution). `rng` is keyword-only."""
    values = _as_1d("values", values)
    _check_resampling(rng, n_resamples)
    _check_interval(confidence, method)
    units = _Units.of(values.size, groups)
    if method == "bca" and units.count < 2:
        raise ValueError("values must hold at least 2 rows (or groups) for method='bca'")
    estimate = float(statistic(values))
    chosen = rng.integers(0, units.count, size=(n_resamples, units.count))
    draws = np.array([statistic(values[units.rows(row)]) for row in chosen], dtype=float)
    jackknife = None
    if method == "bca":
        leave_one_out = [statistic(values[units.rows_without(unit)]) for unit in range(units.count)]
        jackknife = [np.array(leave_one_out, dtype=float)]
    return (estimate, *_interval(draws, estimate, confidence, jackknife))


def bootstrap_difference_ci(
    a: ArrayLike,
    b: ArrayLike,
    rng: np.random.Generator,
    paired: bool = True,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
    groups: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """Bootstrap interval of mean(a) - mean(b): (difference, low, high).

    Paired (two systems scored on the same prompts): resamples prompt indices, i.e. bootstrap_ci of a - b, with
    `groups` resampling whole groups of prompts (e.g. users). Unpaired: resamples a and b independently."""
    a, b = _as_1d("a", a), _as_1d("b", b)
    if paired:
        _check_same_length("a", a, "b", b)
        return bootstrap_ci(
            a - b, np.mean, rng=rng, n_resamples=n_resamples, confidence=confidence, method=method, groups=groups
        )
    if groups is not None:
        raise ValueError("groups needs paired=True")
    _check_resampling(rng, n_resamples)
    _check_interval(confidence, method)
    if method == "bca" and min(a.size, b.size) < 2:
        raise ValueError("a and b must each hold at least 2 values for method='bca'")
    difference = float(a.mean() - b.mean())
    draws = a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1) - b[
        rng.integers(0, b.size, size=(n_resamples, b.size))
    ].mean(axis=1)
    jackknife = None
    if method == "bca":
        jackknife = [(a.sum() - a) / (a.size - 1) - b.mean(), a.mean() - (b.sum() - b) / (b.size - 1)]
    return (difference, *_interval(draws, difference, confidence, jackknife))


def paired_permutation_test(
    a: ArrayLike, b: ArrayLike, rng: np.random.Generator, n_resamples: int = 10000, groups: ArrayLike | None = None
) -> float:
    """Two-sided p-value that paired scores a and b share a distribution, flipping the signs of the differences a - b.

    With `groups` (a label per pair, e.g. user ids) the signs flip per group: the units are the groups' summed
    differences, so the test respects the same clustering as a group bootstrap. Exact (all 2**n sign flips, rng
    unused) when n units <= EXACT_PERMUTATION_MAX_N; otherwise `n_resamples` random flips and
    p = (extreme + 1) / (n_resamples + 1). Extreme means |sum of flipped differences| >= |sum of differences|."""
    a, b = _as_1d("a", a), _as_1d("b", b)
    _check_same_length("a", a, "b", b)
    _check_resampling(rng, n_resamples)
    differences = a - b
    if groups is not None:
        labels = np.asarray(groups)
        if labels.ndim != 1 or labels.size != differences.size:
            raise ValueError(
                f"groups must be a 1-D array with the same length as a ({labels.size} != {differences.size})"
            )
        differences = np.bincount(np.unique(labels, return_inverse=True)[1], weights=differences)
    n = differences.size
    threshold = abs(differences.sum()) - 1e-12 * np.abs(differences).sum()  # ties up to rounding count as extreme
    if n <= EXACT_PERMUTATION_MAX_N:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ differences) >= threshold))
    rows_per_batch = max(1, _PERMUTATION_BATCH_ELEMENTS // n)
    extreme = 0
    for start in range(0, n_resamples, rows_per_batch):
        signs = 1 - 2 * rng.integers(0, 2, size=(min(rows_per_batch, n_resamples - start), n))
        extreme += int(np.count_nonzero(np.abs(signs @ differences) >= threshold))
    return (extreme + 1) / (n_resamples + 1)


def sign_test(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided sign test of paired scores: binomial test of wins (a > b) against losses (a < b), ties dropped;
    nan when every pair is tied."""
    a, b = _as_1d("a", a), _as_1d("b", b)
    _check_same_length("a", a, "b", b)
    wins, losses = int(np.count_nonzero(a > b)), int(np.count_nonzero(a < b))
    if wins + losses == 0:
        return math.nan
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def pearson_with_ci(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> dict:
    """Pearson r with scipy's p-value and a Fisher-z confidence interval: dict(r, p, low, high, n).

    r, p, low and high are nan (no exception) when n < 4 or x or y is constant."""
    x, y = _as_1d("x", x), _as_1d("y", y)
    _check_same_length("x", x, "y", y)
    n = x.size
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": math.nan, "p": math.nan, "low": math.nan, "high": math.nan, "n": n}
    r, p = pearsonr(x, y)
    half_width = norm.ppf(0.5 + confidence / 2) / math.sqrt(n - 3)
    with np.errstate(divide="ignore"):
        z = np.arctanh(r)
    return {
        "r": float(r),
        "p": float(p),
        "low": float(np.tanh(z - half_width)),
        "high": float(np.tanh(z + half_width)),
        "n": n,
    }


def ols_band(x: ArrayLike, y: ArrayLike, grid: ArrayLike, confidence: float = 0.95) -> pd.DataFrame:
    """OLS line y ~ 1 + x evaluated on `grid`, with the confidence band of the mean prediction:
    DataFrame(x, fit, low, high)."""
    x, y, grid = _as_1d("x", x), _as_1d("y", y), _as_1d("grid", grid)
    _check_same_length("x", x, "y", y)
    if x.size < 3 or np.ptp(x) == 0:
        raise ValueError("x must hold at least 3 values, not all equal")
    model = OLS(y, add_constant(x)).fit()
    band = model.get_prediction(add_constant(grid, has_constant="add")).summary_frame(alpha=1 - confidence)
    return pd.DataFrame(
        {
            "x": grid,
            "fit": band["mean"].to_numpy(),
            "low": band["mean_ci_lower"].to_numpy(),
            "high": band["mean_ci_upper"].to_numpy(),
        }
    )


def one_way_anova(values: ArrayLike, groups: ArrayLike) -> dict:
    """One-way ANOVA of values by group label (scipy.stats.f_oneway): dict(f, p, df_between, df_within,
    dropped_groups). Groups with fewer than 2 members are dropped and counted; f and p are nan with < 2 groups left."""
    values, labels = _as_1d("values", values), _as_1d("groups", groups, dtype=None)
    _check_same_length("values", values, "groups", labels)
    names, codes = np.unique(labels, return_inverse=True)
    samples = [values[codes == code] for code in range(names.size)]
    kept = [sample for sample in samples if sample.size >= 2]
    n_kept = sum(sample.size for sample in kept)
    result = {
        "df_between": max(len(kept) - 1, 0),
        "df_within": n_kept - len(kept),
        "dropped_groups": len(samples) - len(kept),
    }
    if len(kept) < 2:
        return {"f": math.nan, "p": math.nan, **result}
    f, p = f_oneway(*kept)
    return {"f": float(f), "p": float(p), **result}


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's kappa of two raters' nominal labels for the same items; nan when chance agreement is 1."""
    a, b = _as_1d("a", a, dtype=None), _as_1d("b", b, dtype=None)
    _check_same_length("a", a, "b", b)
    categories, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    table = np.zeros((categories.size, categories.size))
    np.add.at(table, (codes[: a.size], codes[a.size :]), 1)
    table /= a.size
    observed = np.trace(table)
    chance = float(table.sum(axis=1) @ table.sum(axis=0))
    return math.nan if chance == 1 else float((observed - chance) / (1 - chance))


def krippendorff_alpha(ratings: ArrayLike, level: str = "nominal") -> float:
    """Krippendorff's alpha of a units × raters matrix (NaN = missing rating), from the coincidence matrix:
    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k. Only level="nominal"; units with fewer than 2
    ratings are not pairable and ignored; nan when fewer than 2 distinct values are pairable."""
    if level != "nominal":
        raise ValueError(f"level must be 'nominal', got {level!r}")
    matrix = np.asarray(ratings, dtype=float)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"ratings must be a non-empty units × raters matrix, got shape {matrix.shape}")
    rated = ~np.isnan(matrix)
    categories = np.unique(matrix[rated])
    counts = np.zeros((matrix.shape[0], categories.size))  # counts[u, c]: raters giving unit u value c
    np.add.at(counts, (np.nonzero(rated)[0], np.searchsorted(categories, matrix[rated])), 1)
    counts = counts[counts.sum(axis=1) >= 2]
    weighted = counts / (counts.sum(axis=1, keepdims=True) - 1)
    coincidences = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    value_totals = coincidences.sum(axis=1)
    n = value_totals.sum()
    expected = n * n - float(value_totals @ value_totals)  # sum_{c != k} n_c n_k
    if expected == 0:
        return math.nan
    disagreement = coincidences.sum() - np.trace(coincidences)
    return float(1 - (n - 1) * disagreement / expected)


def rater_agreement(a: ArrayLike, b: ArrayLike) -> dict:
    """Two raters' nominal labels of the same items: n, raw agreement (share of identical labels), Cohen's κ and
    Krippendorff's α; nan statistics when there are no items."""
    if len(a) == len(b) == 0:
        return {"n": 0, "agreement": math.nan, "cohen_kappa": math.nan, "krippendorff_alpha": math.nan}
    a, b = _as_1d("a", a, dtype=None), _as_1d("b", b, dtype=None)
    _check_same_length("a", a, "b", b)
    _, codes = np.unique(np.concatenate([a, b]).astype(str), return_inverse=True)
    return {
        "n": int(a.size),
        "agreement": float((a == b).mean()),
        "cohen_kappa": cohen_kappa(a, b),
        "krippendorff_alpha": krippendorff_alpha(codes.reshape(2, -1).T.astype(float)),
    }


def wilson_intervals_for_shares(
    counts: dict[str, int], confidence: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """Share of each outcome (e.g. win/tie/loss) among all counts with its Wilson interval: {name: (share, low, high)};
    nan shares when all counts are 0."""
    if any(count < 0 for count in counts.values()):
        raise ValueError(f"counts must be non-negative, got {counts}")
    total = sum(counts.values())
    return {
        name: (count / total if total else math.nan, *wilson_interval(count, total, confidence))
        for name, count in counts.items()
    }


def ci_half_width(n: int, p: float = 0.5, confidence: float = 0.95) -> float:
    """Half-width of the normal-approximation confidence interval of a proportion p estimated from n trials."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return float(norm.ppf(0.5 + confidence / 2)) * math.sqrt(p * (1 - p) / n)


def minimum_detectable_difference(n: int, p: float = 0.5, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest difference between two independent proportions (n trials each, both near p) that a two-sided test at
    level alpha detects with the given power (normal approximation)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power)) * math.sqrt(2 * p * (1 - p) / n)
