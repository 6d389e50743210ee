"""Power analysis for a study profile: from the minimum detectable differences (MDD) a finished run measured for its
claims (stage 6's `figures/analysis/verdicts.csv`), how many test items — and users, at the same items per user — a
claim needs for its MDD to reach a target. The MDD is (z_{1-α/2} + z_power) × SE with the cluster-robust SE of the
paired difference (`verdicts.minimum_detectable`); at a fixed number of items per user the design effect stays, so
the SE falls as 1/√n. Holm's first step tests a family of k claims at α/k: the projection uses that level, so a
difference of the target size survives the adjustment with the stated power.

Run: python -m personalign.stats.power figures/analysis/verdicts.csv --target 5 --claim "PATTERN=FAMILY_SIZE" ...
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pandas as pd
from scipy.stats import norm

from personalign.stats.verdicts import ALPHA, POWER

_N = re.compile(r"^(\d+) \((\d+) (users|pairs)\)$")


def z_sum(alpha: float, power: float = POWER) -> float:
    """z_{1-α/2} + z_power: the MDD in standard errors for a two-sided test at level alpha."""
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def items_for_target(
    mdd: float, n: int, target: float, family_size: int = 1, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Items a claim needs for an MDD of `target` at level alpha / family_size, given the MDD `mdd` it had at level
    alpha on `n` items (same units as `target`)."""
    if not (mdd > 0 and n > 0 and target > 0 and family_size >= 1):
        raise ValueError(f"need mdd, n, target > 0 and family_size >= 1; got {mdd}, {n}, {target}, {family_size}")
    scale = mdd / target * z_sum(alpha / family_size, power) / z_sum(alpha, power)
    return math.ceil(n * scale**2)


def parse_n(text: str) -> tuple[int, int]:
    """(items, clusters) from a verdict table's n cell, "130 (10 users)" or "100 (100 pairs)"."""
    match = _N.match(str(text).strip())
    if match is None:
        raise ValueError(f"n cell {text!r}: expected 'N (K users)' or 'N (N pairs)'")
    return int(match.group(1)), int(match.group(2))


def power_table(
    verdicts: pd.DataFrame, claims: dict[str, int], target: float, alpha: float = ALPHA, power: float = POWER
) -> pd.DataFrame:
    """One row per verdict row whose comparison matches a pattern of `claims` (pattern -> the size of the Holm
    family it will be tested in): measured n, users and MDD, and the items and users that reach `target`."""
    rows = []
    for pattern, family_size in claims.items():
        matched = verdicts[verdicts.comparison.str.contains(pattern, regex=True)]
        if matched.empty:
            raise ValueError(f"claim pattern {pattern!r} matches no comparison of the verdict table")
        for row in matched.itertuples():
            n, clusters = parse_n(row.n)
            mdd = float(row.MDD)
            needed = items_for_target(mdd, n, target, family_size, alpha, power) if mdd > 0 else math.nan
            rows.append(
                {
                    "claim": row.claim,
                    "comparison": row.comparison,
                    "n": n,
                    "users": clusters,
                    "items_per_user": round(n / clusters, 1),
                    "mdd": mdd,
                    "holm_family": family_size,
                    "target": target,
                    "items_needed": needed,
                    "users_needed": math.ceil(needed / (n / clusters)) if mdd > 0 else math.nan,
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m personalign.stats.power", description=__doc__.split("\n\n")[0])
    parser.add_argument("verdicts", type=Path, help="a stage-6 verdict table (figures/analysis/verdicts.csv)")
    parser.add_argument("--target", type=float, default=5.0, help="target MDD in points (default 5)")
    parser.add_argument(
        "--claim",
        action="append",
        required=True,
        metavar="PATTERN=FAMILY_SIZE",
        help="a regular expression over the comparison column and its Holm family's size",
    )
    parser.add_argument("--out", type=Path, help="write the table here as .csv and .md")
    args = parser.parse_args(argv)
    claims = {}
    for item in args.claim:
        pattern, _, size = item.rpartition("=")
        if not pattern or not size.isdigit():
            parser.error(f"--claim {item!r}: expected PATTERN=FAMILY_SIZE, e.g. 'MT \\+ persona vs MT=2'")
        claims[pattern] = int(size)
    table = power_table(pd.read_csv(args.verdicts), claims, args.target)
    print(table.to_markdown(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out.with_suffix(".csv"), index=False, lineterminator="\n")
        args.out.with_suffix(".md").write_text(table.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
