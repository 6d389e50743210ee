"""The shared verdict mechanism: paired, clustered, Holm-adjusted, three-valued."""

import math

import numpy as np
import pandas as pd
import pytest

from personalign.core.seeding import figure_rng
from personalign.stats.statistics import paired_permutation_test
from personalign.stats.verdicts import (
    Claim,
    decide,
    headline_metrics,
    holm,
    paired_difference,
    verdict_counts,
    verdict_table,
)


def test_one_user_comparison_resamples_pairs_and_has_a_nonzero_interval():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200).astype(float)
    b = rng.integers(0, 2, 200).astype(float)
    result = paired_difference(a, b, rng=np.random.default_rng(1), groups=np.zeros(200))
    assert result.resampled == "pairs" and result.clusters == 200
    assert result.ci_high - result.ci_low > 0.05


def test_five_users_resample_users():
    rng = np.random.default_rng(0)
    a, b = rng.random(100), rng.random(100)
    result = paired_difference(a, b, rng=rng, groups=np.repeat(np.arange(5), 20))
    assert result.resampled == "users" and result.clusters == 5


def test_clustered_permutation_flips_whole_users():
    # every pair of a user moves together: 3 users, so at most 2**3 distinct sign patterns -> p >= 2/8
    a = np.array([1.0] * 30)
    b = np.zeros(30)
    users = np.repeat([0, 1, 2], 10)
    assert paired_permutation_test(a, b, np.random.default_rng(0), groups=users) == pytest.approx(2 / 8)
    assert paired_permutation_test(a, b, np.random.default_rng(0)) < 0.001


def test_holm_matches_hand_computation():
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


@pytest.mark.parametrize(
    "low, high, p, direction, verdict",
    [
        (0.02, 0.10, 0.01, 1, "reproduced"),
        (-0.10, -0.02, 0.01, 1, "contradicted"),
        (-0.10, -0.02, 0.01, -1, "reproduced"),
        (0.02, 0.10, 0.20, 1, "inconclusive"),  # interval excludes 0 but the Holm-adjusted p does not
        (-0.02, 0.10, 0.01, 1, "inconclusive"),
        (0.02, 0.10, 0.01, 0, "contradicted"),
        (-0.02, 0.02, 0.9, 0, "inconclusive"),
    ],
)
def test_decide_is_three_valued(low, high, p, direction, verdict):
    assert decide(low, high, p, direction, mdd=0.05).startswith(verdict)


def test_inconclusive_states_the_smallest_detectable_difference():
    assert decide(-0.01, 0.03, 0.4, 1, mdd=0.071) == "inconclusive (smallest detectable difference 7.1 points)"


def test_verdict_table_adjusts_within_a_family_only():
    rng = np.random.default_rng(0)
    a = rng.random(300) + 0.2
    b = rng.random(300)
    strong = paired_difference(a, b, rng=rng)
    claims = [
        Claim("P", "fig A", "a beats b", "a vs b", 1, strong),
        Claim("P", "fig A", "a beats b again", "a vs b", 1, strong),
        Claim("P", "fig B", "alone", "a vs b", 1, strong),
        Claim("P", "fig B", "missing", "x vs y", 1, None, missing="run x not trained"),
    ]
    table = verdict_table(claims)
    assert table.loc[0, "p_holm"] == pytest.approx(min(1, 2 * strong.p))
    assert table.loc[2, "p_holm"] == pytest.approx(strong.p)
    assert list(table.verdict[:3]) == ["reproduced"] * 3
    assert table.loc[3, "verdict"] == "not tested (run x not trained)"


def test_figure_generators_are_independent_of_each_other():
    assert figure_rng(7, "fig3").random() == figure_rng(7, "fig3").random()
    assert figure_rng(7, "fig3").random() != figure_rng(7, "fig4").random()


def test_an_interval_excluding_zero_demoted_by_holm_says_so():
    verdict = decide(0.02, 0.10, 0.12, 1, mdd=0.05)
    assert verdict.startswith("inconclusive (interval excludes 0, but Holm-adjusted p 0.120")
    assert verdict.endswith("smallest detectable difference 5.0 points)")


def test_headline_metrics_count_verdicts_and_give_the_single_control_row_in_points():
    table = pd.DataFrame(
        {
            "family": ["positive control", "training vs base (other runs)", "Fig. 5", "Fig. 5"],
            "estimate": [0.052, 0.01, -0.04, float("nan")],
            "ci_low": [0.011, -0.02, -0.07, float("nan")],
            "ci_high": [0.093, 0.04, -0.01, float("nan")],
            "mdd": [0.058, 0.04, 0.03, float("nan")],
            "verdict": [
                "reproduced",
                "inconclusive (smallest detectable difference 4.0 points)",
                "contradicted",
                "not tested (no MT run)",
            ],
        }
    )
    assert verdict_counts(table).to_dict() == {"reproduced": 1, "contradicted": 1, "inconclusive": 1, "not tested": 1}
    assert headline_metrics(table) == {
        "verdicts": {"reproduced": 1, "contradicted": 1, "inconclusive": 1, "not_tested": 1},
        "positive_control": {"rows": 1, "reproduced": 1, "estimate": 5.2, "ci_low": 1.1, "ci_high": 9.3, "mdd": 5.8},
    }
    both = table.assign(family=["positive control"] * 2 + ["Fig. 5"] * 2)
    assert headline_metrics(both)["positive_control"] == {"rows": 2, "reproduced": 1}  # no single row to show
