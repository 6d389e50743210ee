"""The power analysis that sizes a study profile from a finished run's verdict table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from personalign.stats import power
from personalign.stats.verdicts import minimum_detectable, standard_error


def test_items_for_target_inverts_the_mdd_of_a_simulated_design():
    """The projection from a small run matches the MDD measured on a 4x larger one (same items per user)."""
    rng = np.random.default_rng(0)

    def mdd(users):
        groups = np.repeat(np.arange(users), 10)
        effects = rng.normal(0, 0.1, users)[groups]
        differences = np.clip(np.round(effects + rng.normal(0, 0.35, groups.size)), -1, 1)
        return 100 * minimum_detectable(standard_error(differences, groups))

    small = np.mean([mdd(20) for _ in range(200)])
    large = np.mean([mdd(80) for _ in range(200)])
    assert power.items_for_target(small, 200, large) == pytest.approx(800, rel=0.08)
    assert power.items_for_target(10, 100, 5) == 400
    assert power.items_for_target(10, 100, 5, family_size=3) > 400  # Holm's first step tests at alpha / 3
    with pytest.raises(ValueError, match="need mdd, n, target > 0"):
        power.items_for_target(0, 100, 5)


def test_power_table_reads_a_verdict_table(tmp_path):
    verdicts = pd.DataFrame(
        {
            "claim": ["c1", "c2", "c3"],
            "comparison": ["MT + persona vs MT, no prefix: divergent, seen users", "pm_a vs pm_b", "other"],
            "n": ["80 (10 users)", "13 (13 pairs)", "—"],
            "MDD": [10.0, 30.0, math.nan],
        }
    )
    table = power.power_table(verdicts, {"MT \\+ persona": 1, "pm_a": 2}, 5.0)
    assert table.items_needed.tolist() == [320, power.items_for_target(30.0, 13, 5.0, 2)]
    assert table.users_needed.tolist()[0] == 40 and table.items_per_user.tolist() == [8.0, 1.0]
    with pytest.raises(ValueError, match="matches no comparison"):
        power.power_table(verdicts, {"absent": 1}, 5.0)
    with pytest.raises(ValueError, match="n cell '—'"):
        power.power_table(verdicts, {"other": 1}, 5.0)
    path = tmp_path / "v.csv"
    verdicts.iloc[:1].to_csv(path, index=False)
    power.main([str(path), "--claim", "MT \\+ persona=1", "--out", str(tmp_path / "out" / "power.md")])
    assert pd.read_csv(tmp_path / "out" / "power.csv").items_needed.tolist() == [320]
