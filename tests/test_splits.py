"""Question splits and persona CV folds: disjoint, deterministic, stratified by axis."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from personalign.core.config import BuildDataParams
from personalign.core.world import AXIS_IDS, all_personas, select_personas
from personalign.data.build_data import fold_assignment, plan_questions
from personalign.data.splits import split_questions, stratified_folds


def test_split_questions_is_disjoint_and_seeded():
    qs = [f"q{i}" for i in range(20)]
    train, test = split_questions(qs, 6, 9, np.random.default_rng(0))
    assert len(train) == 6 and len(test) == 9 and not set(train) & set(test)
    assert (train, test) == split_questions(qs, 6, 9, np.random.default_rng(0))
    with pytest.raises(ValueError):
        split_questions(qs, 15, 6, np.random.default_rng(0))


@pytest.mark.parametrize("n_folds", [2, 3, 5, 7])
def test_folds_are_stratified_by_axis_on_the_whole_world(world, n_folds):
    personas = all_personas(world)
    folds = fold_assignment(personas, n_folds, seed=5)
    assert set(folds) == {p.user_id for p in personas}  # every persona in exactly one fold
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    for axis in AXIS_IDS:
        per_fold = Counter(folds[p.user_id] for p in personas if p.axes[0] == axis)
        counts = [per_fold.get(f, 0) for f in range(n_folds)]
        assert max(counts) - min(counts) <= 1, axis
    assert folds == fold_assignment(personas, n_folds, seed=5)
    assert folds != fold_assignment(personas, n_folds, seed=6)


def test_a_user_in_two_axes_is_an_error():
    with pytest.raises(ValueError, match="more than one axis"):
        stratified_folds({"a": ["u1", "u2"], "b": ["u2"]}, 2, np.random.default_rng(0))


def test_divergent_questions_share_one_split_per_axis_and_personal_ones_are_per_persona(world):
    params = BuildDataParams(
        divergent_train_per_axis=4, divergent_test_per_axis=6, personal_train_per_persona=3, personal_test_per_persona=2
    )
    personas = select_personas(world, params.axes, params.personas_per_axis)
    questions = plan_questions(world, personas, params, seed=1)
    div = [q for q in questions if q.question_type == "divergent"]
    for axis in params.axes:
        split = Counter(q.split for q in div if q.axis == axis)
        assert split == {"train": 4, "test": 6}
    for p in personas:
        own = Counter(q.split for q in questions if q.owner == p.user_id)
        assert own == {"train": 3, "test": 2}
    assert len({q.qid for q in questions}) == len(questions)
    assert [q.qid for q in questions] == [q.qid for q in plan_questions(world, personas, params, seed=1)]
