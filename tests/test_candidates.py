"""Candidate processing: CoT parsing, artifact stripping, quality-range span, k-means diversity."""

from __future__ import annotations

import numpy as np
import pytest

from personalign.data.candidates import CotPlan, diverse_subset, parse_cot, quality_range_span, strip_artifacts

FALLBACK = CotPlan("general", ("a", "b"))


def test_parse_cot_reads_axis_and_categories():
    plan = parse_cot(" Diet\nCategories: Vegan, Keto and Paleo; Mediterranean\nChosen category: Vegan", FALLBACK)
    assert plan == CotPlan("Diet", ("Vegan", "Keto", "Paleo", "Mediterranean"))


@pytest.mark.parametrize(
    "text", ["", "just some rambling text", " Diet\nCategories: Vegan", "x" * 80 + "\nCategories: a, b"]
)
def test_parse_cot_falls_back_when_the_format_is_not_followed(text):
    assert parse_cot(text, FALLBACK) is FALLBACK


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("As a vegan, you will love this lentil stew.", "You will love this lentil stew."),
        (
            "Great question! Being a conservative, you may prefer lower taxes.",
            "Great question! You may prefer lower taxes.",
        ),
        ("Since you're a golfer, try early tee times.", "Try early tee times."),
        ("Chosen category: Keto\nResponse: Eat more avocado.", "Eat more avocado."),
        ("Cook the pasta for ten minutes.", "Cook the pasta for ten minutes."),
        ("For someone who loves spice, add chili.", "Add chili."),
        ("As a result, prices rose. As a rule, buy early.", "As a result, prices rose. As a rule, buy early."),
        ("For a quick dinner, try pasta.", "For a quick dinner, try pasta."),
    ],
)
def test_strip_artifacts_removes_giveaways(raw, expected):
    assert strip_artifacts(raw) == expected


def test_quality_span_is_the_tightest_contiguous_run():
    scores = np.array([0.10, 0.90, 0.50, 0.52, 0.51, 0.95, 0.30])
    assert list(quality_range_span(scores, 3)) == [2, 3, 4]
    assert list(quality_range_span(scores[:2], 3)) == [0, 1]


def test_diverse_subset_picks_one_per_cluster_deterministically():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    points = np.concatenate([c + rng.normal(0, 0.1, (5, 4)) for c in centres])
    picks = diverse_subset(points, 4, seed=1)
    assert len(picks) == 4 and len({int(p) // 5 for p in picks}) == 4
    assert list(picks) == list(diverse_subset(points, 4, seed=1))
    assert list(diverse_subset(points[:3], 4, seed=1)) == [0, 1, 2]
