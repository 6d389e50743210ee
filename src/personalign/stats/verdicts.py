"""Headline claims decided by paired tests: one row per claim with n, estimate, 95% CI, MDD, Holm-adjusted p and a
three-valued verdict (reproduced / contradicted / inconclusive). Stage 6 and stage 7 both build their rows here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import norm

from personalign.stats.statistics import bootstrap_difference_ci, paired_permutation_test

MIN_CLUSTERS = 5  # below this many users a cluster bootstrap collapses; resample pairs instead
ALPHA = 0.05
POWER = 0.8
COLUMNS = [
    "paper",
    "family",
    "claim",
    "comparison",
    "direction",
    "n",
    "clusters",
    "resampled",
    "estimate",
    "ci_low",
    "ci_high",
    "half_width",
    "mdd",
    "p",
    "p_holm",
    "verdict",
]


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over the same items with its 95% interval, the unit resampled, a permutation p and the MDD."""

    n: int
    clusters: int
    resampled: str
    estimate: float
    ci_low: float
    ci_high: float
    p: float
    mdd: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def clustering(groups: ArrayLike | None) -> np.ndarray | None:
    """The groups to resample: the given labels when they hold at least MIN_CLUSTERS distinct values, else None
    (pair-level resampling)."""
    if groups is None:
        return None
    labels = np.asarray(groups)
    return labels if np.unique(labels).size >= MIN_CLUSTERS else None


def standard_error(differences: np.ndarray, groups: np.ndarray | None) -> float:
    """Standard error of the mean difference: per pair, or cluster-robust (CR1) over the groups."""
    n = differences.size
    if n < 2:
        return math.nan
    if groups is None:
        return float(differences.std(ddof=1) / math.sqrt(n))
    codes = np.unique(groups, return_inverse=True)[1]
    sums = np.bincount(codes, weights=differences - differences.mean())
    g = sums.size
    return float(math.sqrt(g / (g - 1) * np.sum(sums**2)) / n)


def minimum_detectable(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true difference a two-sided test at level alpha detects with the given power, at this standard
    error (normal approximation); nan when the standard error is undefined or 0 (no variation to judge by)."""
    if not se > 0:
        return math.nan
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def paired_difference(
    a: ArrayLike, b: ArrayLike, *, rng: np.random.Generator, groups: ArrayLike | None = None, n_resamples: int = 2000
) -> PairedDifference:
    """Paired comparison of two systems' scores on the same items: bootstrap CI of mean(a - b) and a sign-flip
    permutation p, both clustered by `groups` when there are at least MIN_CLUSTERS groups, per pair otherwise."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"a and b must be non-empty 1-D arrays of the same length, got {a.shape} and {b.shape}")
    clusters = clustering(groups)
    estimate, low, high = bootstrap_difference_ci(a, b, rng, n_resamples=n_resamples, groups=clusters)
    p = paired_permutation_test(a, b, rng, n_resamples=n_resamples, groups=clusters)
    n_clusters = int(np.unique(clusters).size) if clusters is not None else a.size
    return PairedDifference(
        n=int(a.size),
        clusters=n_clusters,
        resampled="users" if clusters is not None else "pairs",
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        p=float(p),
        mdd=minimum_detectable(standard_error(a - b, clusters)),
    )


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); nan stays nan and is not counted."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = order.size, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def decide(
    ci_low: float, ci_high: float, p_holm: float, direction: int, mdd: float, scale: float = 100.0, unit: str = "points"
) -> str:
    """Three-valued verdict. direction +1 / -1: the paper's sign of the difference; 0: the paper finds none.
    A difference counts when its interval excludes 0 and its Holm-adjusted p < ALPHA; for direction 0 that
    contradicts the paper, and it is never "reproduced" (absence of evidence is not evidence of absence)."""
    if direction not in (-1, 0, 1):
        raise ValueError(f"direction must be -1, 0 or +1, got {direction}")
    detail = (
        f"smallest detectable difference {mdd * scale:.1f} {unit}"
        if not math.isnan(mdd)
        else "no variation between the paired scores, so no detectable difference can be stated"
    )
    if any(math.isnan(v) for v in (ci_low, ci_high, p_holm)):
        return f"inconclusive ({detail})"
    sign = 1 if ci_low > 0 else -1 if ci_high < 0 else 0
    if sign == 0:
        return f"inconclusive ({detail})"
    if p_holm >= ALPHA:  # the interval is not adjusted for the family's other claims; the p-value is
        return (
            f"inconclusive (interval excludes 0, but Holm-adjusted p {p_holm:.3f} ≥ {ALPHA} within the figure; "
            f"{detail})"
        )
    if direction == 0:
        return "contradicted"
    return "reproduced" if sign == direction else "contradicted"


@dataclass(frozen=True)
class Claim:
    """One headline claim of a paper tested on one comparison (a - b on the same items)."""

    paper: str
    family: str
    claim: str
    comparison: str
    direction: int
    result: PairedDifference | None
    missing: str = ""  # why the comparison could not be made (then result is None)


def verdict_table(claims: list[Claim]) -> pd.DataFrame:
    """One row per claim: Holm adjustment within each family, then the verdict."""
    rows = []
    for claim in claims:
        row = {
            "paper": claim.paper,
            "family": claim.family,
            "claim": claim.claim,
            "comparison": claim.comparison,
            "direction": claim.direction,
        }
        if claim.result is None:
            row.update(
                {
                    "n": 0,
                    "clusters": 0,
                    "resampled": "",
                    "estimate": math.nan,
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "half_width": math.nan,
                    "mdd": math.nan,
                    "p": math.nan,
                }
            )
        else:
            row.update(asdict(claim.result), half_width=claim.result.half_width)
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_holm", "verdict")])
    table["p_holm"] = math.nan
    for _, index in table.groupby("family", sort=False).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p"].to_numpy(float))
    table["verdict"] = [
        f"not tested ({claim.missing})"
        if claim.result is None
        else decide(r.ci_low, r.ci_high, r.p_holm, r.direction, r.mdd)
        for claim, r in zip(claims, table.itertuples())
    ]
    return table[COLUMNS]


def formatted_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict table for reading: differences, intervals, their half-widths and the MDD in points (×100),
    p-values to three decimals."""

    def points(value: float) -> str:
        return "—" if math.isnan(value) else f"{value * 100:+.1f}"

    out = pd.DataFrame(
        {
            "paper": table.paper,
            "claim": table.claim,
            "comparison": table.comparison,
            "n": [f"{r.n} ({r.clusters} {r.resampled})" if r.n else "—" for r in table.itertuples()],
            "estimate": table.estimate.map(points),
            "95% CI": [
                ("—" if math.isnan(r.ci_low) else f"[{r.ci_low * 100:+.1f}, {r.ci_high * 100:+.1f}]")
                for r in table.itertuples()
            ],
            "± half-width": table.half_width.map(lambda v: "—" if math.isnan(v) else f"{v * 100:.1f}"),
            "MDD": table.mdd.map(lambda v: "—" if math.isnan(v) else f"{v * 100:.1f}"),
            "p (Holm)": table.p_holm.map(lambda v: "—" if math.isnan(v) else f"{v:.3f}"),
            "verdict": table.verdict,
        }
    )
    return out


VERDICT_WORDS = ("reproduced", "contradicted", "inconclusive", "not tested")


def verdict_counts(table: pd.DataFrame) -> pd.Series:
    """How many rows of a verdict table end in each verdict (reproduced, contradicted, inconclusive, not tested)."""
    words = table.verdict.map(lambda v: next(w for w in VERDICT_WORDS if v.startswith(w)))
    return words.value_counts().reindex(list(VERDICT_WORDS), fill_value=0).rename("claims")


def headline_metrics(table: pd.DataFrame, control_family: str = "positive control") -> dict:
    """The few numbers `dvc metrics show` prints: the verdict counts over every claim, and the positive-control rows
    (how many, how many reproduced; with a single row its estimate, interval and MDD in points)."""
    control = table[table.family == control_family]
    headline = {"verdicts": {w.replace(" ", "_"): int(n) for w, n in verdict_counts(table).items()}}
    headline["positive_control"] = {
        "rows": len(control),
        "reproduced": int(control.verdict.str.startswith("reproduced").sum()),
    }
    if len(control) == 1 and not math.isnan(control.estimate.iloc[0]):
        row = control.iloc[0]
        headline["positive_control"] |= {
            k: round(float(row[k]) * 100, 2) for k in ("estimate", "ci_low", "ci_high", "mdd")
        }
    return headline
