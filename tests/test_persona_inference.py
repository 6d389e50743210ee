"""Whose Boat Finding 1 as stage 2 checks it: each inferred persona, contrasted with the other side's, against a
persona inferred for another pair (the control), paired per pair, with a verdict; the configured persona-inference
sets by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign.core.config import ParamsError, parse_params
from personalign.lm.judge import SimulatedJudge
from personalign.personas import pair_personas as pp
from personalign.stats.verdicts import verdict_table

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "persona_tailoring" / "inference-BeaverTails"
VEGAN, MEAT = "The user is a vegan who eats only plants.", "The user loves steak, bacon and other meat."
PLANT_DISH = "Cook a chickpea and spinach curry with coconut milk; it is entirely plant-based."
MEAT_DISH = "Grill a thick ribeye steak in butter and serve it with crispy bacon."


def food_pairs(users: int = 12) -> pd.DataFrame:
    """Two pairs per user: in the first y_w is the plant dish, in the second the meat dish; the personas were
    inferred correctly for both sides."""
    rows = []
    for u in range(users):
        for j, plant_wins in enumerate((True, False)):
            rows.append(
                {
                    "id": f"u{u}:{j}",
                    "user_id": f"u{u}",
                    "prompt": f"What should I cook on day {u}?",
                    "chosen": PLANT_DISH if plant_wins else MEAT_DISH,
                    "rejected": MEAT_DISH if plant_wins else PLANT_DISH,
                    "chosen_persona": VEGAN if plant_wins else MEAT,
                    "rejected_persona": MEAT if plant_wins else VEGAN,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def judge(embedder):
    return SimulatedJudge(embedder, noise=0.0, quality_weight=0.1, tie_margin=0.01, seed=0)


def test_each_pair_gets_another_pair_as_control_seeded():
    picks = pp.control_pairs(7, np.random.default_rng(3))
    assert not np.any(picks == np.arange(7)) and picks.min() >= 0 and picks.max() < 7
    assert list(picks) == list(pp.control_pairs(7, np.random.default_rng(3)))
    assert {tuple(pp.control_pairs(7, np.random.default_rng(s))) for s in range(5)} != {tuple(picks)}
    with pytest.raises(ValueError, match="at least two pairs, got 1"):
        pp.control_pairs(1, np.random.default_rng(0))


def test_the_check_pairs_each_persona_with_a_control_from_another_pair(judge):
    pairs = food_pairs()
    check = pp.inference_check(pairs, judge, np.random.default_rng(0))
    assert list(check.id) == sorted(pairs.id) and (check.control_id != check.id).all()
    assert check.chosen_own.all() and check.rejected_own.all()  # informative personas pick their own side
    # a control persona is right exactly when its pair's winner is the same dish as this pair's
    winner = dict(zip(pairs.id, pairs.chosen))
    same = [winner[i] == winner[c] for i, c in zip(check.id, check.control_id)]
    assert list(check.chosen_control) == same and list(check.rejected_control) == same
    again = pp.inference_check(pairs.sample(frac=1, random_state=1), judge, np.random.default_rng(0))
    pd.testing.assert_frame_equal(check, again)  # the pairs' order does not move the draw


def test_informative_personas_reproduce_finding_1_and_uninformative_ones_do_not(judge):
    pairs = food_pairs()
    generic = pairs.assign(chosen_persona="The user wants dinner.", rejected_persona="The user wants dinner.")
    checks = {
        name: pp.inference_check(p, judge, np.random.default_rng(0))
        for name, p in (("informative", pairs), ("generic", generic))
    }
    generic_check = checks["generic"]  # the same text on both sides: own and control always agree
    assert (generic_check.chosen_own == generic_check.chosen_control).all()
    claims = pp.inference_claims(checks, base_seed=1234)
    assert [(c.paper, c.family, c.direction) for c in claims] == [("Whose Boat", "Whose Boat Finding 1", 1)] * 4
    assert [c.comparison.split(":")[0] for c in claims] == ["informative", "informative", "generic", "generic"]
    assert all(c.result.resampled == "users" and c.result.clusters == 12 for c in claims)
    table = verdict_table(claims)
    assert list(table.verdict[:2]) == ["reproduced", "reproduced"]
    assert all(v.startswith("inconclusive") for v in table.verdict[2:])
    summary = pp.inference_summary(checks, table)
    first = summary[0]
    assert (first["dataset"], first["persona"], first["n"], first["users"]) == ("informative", "chosen", 24, 12)
    assert first["own_rate"] == 1.0 and first["own_ci_low"] < 1.0 == first["own_ci_high"]
    assert first["control_rate"] == round(checks["informative"].chosen_control.mean(), 4)
    assert first["difference"] == pytest.approx(1.0 - first["control_rate"], abs=1e-4)
    assert first["difference_ci_low"] > 0 and first["verdict"] == "reproduced"
    assert summary[2]["difference"] == 0.0 and summary[2]["verdict"].startswith("inconclusive")


def test_inference_sets_are_a_mapping_labelled_by_name():
    with pytest.raises(
        ParamsError,
        match=r"prefixes.inference_check_data: must be a mapping name -> path.*write e.g. "
        r"`inference_check_data: \{inference-BeaverTails: some/dir\}`",
    ):
        parse_params({"prefixes": {"inference_check_data": "some/dir"}})
    with pytest.raises(ParamsError, match="prefixes.inference_check_limit: must be 0 .* or at least 2"):
        parse_params({"prefixes": {"inference_check_limit": 1}})
    sets = {"hhh": "a", "shp": "b"}
    assert parse_params({"prefixes": {"inference_check_data": sets}}).prefixes.inference_check_data == sets
    if not REAL.is_dir():
        pytest.skip(f"{REAL.resolve()} is not on this machine")
    loaded, skipped = pp.inference_sets({"unseen-set": str(REAL), "gone": str(REAL.parent / "no-such-set")}, 3)
    assert list(loaded) == ["unseen-set"] and skipped == ["gone"]
    assert len(loaded["unseen-set"]) == 3 and set(loaded["unseen-set"].user_id) == {"unseen-set"}
    assert pp.inference_sets({"unseen-set": str(REAL)}, 0) == ({}, ["unseen-set"])
