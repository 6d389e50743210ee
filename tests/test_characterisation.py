"""Dataset characterisation (paper section 4.2, Table 2) on tiny hand-computed record tables: divergence, high
divergence, MV-ACC with a tied majority, minority users, consistency with repeated labels, room for personalization,
the undefined cases with their reasons, response order within a pair, determinism, and a PersonalLLM load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign.core.records import RECORD_FIELDS
from personalign.data.loaders.personal_llm import load_personal_llm
from personalign.reward_models.characterisation import (
    TABLE2_COLUMNS,
    characterisation_json,
    characterise,
    characterise_sources,
    label_table,
    mv_acc_figure,
    per_user_table,
    table2,
)

PERSONAL_LLM = Path(__file__).parent / "fixtures" / "loaders" / "personal_llm" / "valid.jsonl"

# (user, prompt, chosen, rejected): pairs q1 {x, y}, q2 {m, n}, q3 {g, h}, q4 {c, d}, q5 {e, f}
HAND = [
    ("u1", "q1", "x", "y"),
    ("u1", "q1", "x", "y"),
    ("u1", "q1", "y", "x"),  # u1 repeats q1: x, x, y -> votes x
    ("u2", "q1", "x", "y"),
    ("u3", "q1", "y", "x"),  # q1: x 2 votes, y 1 -> majority x; 1/3 against
    ("u1", "q2", "m", "n"),
    ("u2", "q2", "m", "n"),
    ("u3", "q2", "n", "m"),  # q2: majority m; 1/3 against
    ("u2", "q3", "g", "h"),
    ("u2", "q3", "g", "h"),  # only u2 (twice): not overlapping; u2 is consistent
    ("u1", "q4", "c", "d"),
    ("u3", "q4", "d", "c"),  # two users, tied majority
    ("u1", "q5", "e", "f"),
    ("u2", "q5", "e", "f"),  # unanimous
]


def table(rows: list[tuple[str, str, str, str]], split: str = "train", source: str = "hand") -> pd.DataFrame:
    """Canonical records from (user, prompt, chosen, rejected) rows."""
    records = [
        {
            **dict.fromkeys(RECORD_FIELDS, ""),
            "id": f"{source}-{i:03d}",
            "source": source,
            "user_id": user,
            "axes": [],
            "question_type": "none",
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "split": split,
            "fold": 0,
        }
        for i, (user, prompt, chosen, rejected) in enumerate(rows)
    ]
    return pd.DataFrame(records, columns=list(RECORD_FIELDS))


def test_hand_computed_metrics():
    r = characterise(table(HAND), "hand")
    assert (r.n_samples, r.n_users, r.n_pairs, r.n_overlapping_pairs) == (14, 3, 5, 4)
    assert r.divergence_rate == pytest.approx(3 / 4)  # q1, q2, q4 divergent; q5 unanimous
    assert r.high_divergence_rate == pytest.approx(3 / 4)  # q1, q2 (1/3 >= 0.3), q4 (tie: 1/2)
    assert characterise(table(HAND), "hand", threshold=0.4).high_divergence_rate == pytest.approx(1 / 4)  # q4 only
    users = r.per_user.set_index("user_id")
    # u1: q1 x, x, y -> 1, 1, 0; q2 m -> 1; q4 tie -> 0.5; q5 e -> 1: 4.5 / 6
    # u2: q1 x, q2 m, q5 e -> 3 / 3 (q3 is not overlapping); u3: q1 y -> 0, q2 n -> 0, q4 tie -> 0.5: 0.5 / 3
    assert users.n_overlapping.to_dict() == {"u1": 6, "u2": 3, "u3": 3}
    assert users.mv_acc.to_dict() == pytest.approx({"u1": 0.75, "u2": 1.0, "u3": 1 / 6})
    assert users.minority.to_dict() == {"u1": False, "u2": False, "u3": True}
    assert (r.mv_acc_min, r.mv_acc_max, r.n_minority_users) == (pytest.approx(1 / 6), 1.0, 1)
    # repeats: u1 on q1 (x, x, y: 2 of 3 agree with u1's majority), u2 on q3 (g, g: 2 of 2)
    assert users.n_repeat_labels.to_dict() == {"u1": 3, "u2": 2, "u3": 0}
    assert users.consistency.to_dict() == pytest.approx({"u1": 2 / 3, "u2": 1.0, "u3": float("nan")}, nan_ok=True)
    assert r.consistency == pytest.approx(4 / 5) and r.mean_user_consistency == pytest.approx(5 / 6)
    assert r.n_repeat_labels == 5
    # room = mean user consistency (5/6) - mean MV-ACC ((0.75 + 1 + 1/6) / 3 = 23/36)
    assert r.room == pytest.approx(5 / 6 - 23 / 36) and not r.room_is_upper_bound
    assert r.reasons == {}


def test_tied_majority_with_two_users_scores_half():
    r = characterise(table([("a", "q", "x", "y"), ("b", "q", "y", "x")]), "tie")
    assert r.per_user.mv_acc.tolist() == [0.5, 0.5] and r.per_user.minority.tolist() == [False, False]
    assert (r.divergence_rate, r.high_divergence_rate, r.n_minority_users) == (1.0, 1.0, 0)


def test_a_user_tied_with_themselves_votes_half_and_is_not_unanimous():
    rows = [("a", "q", "x", "y"), ("a", "q", "y", "x"), ("b", "q", "x", "y")]
    r = characterise(table(rows), "self-tie")
    assert r.divergence_rate == 1.0  # a's split vote is no unanimity
    assert r.high_divergence_rate == 0.0  # votes x 1.5, y 0.5: 0.25 of the users against the majority x
    assert r.per_user.set_index("user_id").mv_acc.to_dict() == {"a": 0.5, "b": 1.0}
    assert r.consistency == 0.5


def test_response_order_within_a_pair_does_not_matter():
    as_ab = characterise(table([("a", "q", "x", "y"), ("b", "q", "x", "y"), ("c", "q", "y", "x")]), "t")
    as_ba = characterise(table([("a", "q", "x", "y"), ("b", "q", "x", "y"), ("c", "q", "y", "x")][::-1]), "t")
    assert as_ab.n_pairs == 1 and as_ab.n_overlapping_pairs == 1
    assert as_ab.to_dict() == as_ba.to_dict()
    labels = label_table(table([("a", "q", "y", "x"), ("b", "q", "x", "y")]))
    assert labels[["response_a", "response_b", "choice", "pair"]].values.tolist() == [
        ["x", "y", 1, 0],
        ["x", "y", 0, 0],
    ]


def test_same_prompt_other_responses_is_another_pair():
    r = characterise(table([("a", "q", "x", "y"), ("b", "q", "x", "z")]), "t")
    assert (r.n_pairs, r.n_overlapping_pairs) == (2, 0)


def test_no_overlap_is_undefined_not_zero():
    r = characterise(table([("a", "q1", "x", "y"), ("b", "q2", "x", "y")]), "apart")
    reason = "no pair is labelled by two users"
    assert (r.divergence_rate, r.high_divergence_rate, r.mv_acc_min, r.mv_acc_max, r.n_minority_users, r.room) == (
        None,
        None,
        None,
        None,
        None,
        None,
    )
    assert r.reasons == {
        "divergence_rate": reason,
        "high_divergence_rate": reason,
        "mv_acc": reason,
        "minority_users": reason,
        "room": reason,
        "consistency": "no user labelled the same pair twice",
    }
    assert r.per_user.n_overlapping.tolist() == [0, 0] and r.per_user.mv_acc.isna().all()
    cells, notes = table2([r])
    assert cells.loc["apart", "%Cont."] == "undefined" and cells.loc["apart", "Room"] == "undefined"
    assert cells.loc["apart", "#Samples"] == "2" and cells.loc["apart", "#Users"] == "2"
    assert notes == [
        f"apart: %Cont., %Highly Cont., MV-ACC Range, #Minority users, Room undefined: {reason}.",
        "apart: Consistency undefined: no user labelled the same pair twice.",
    ]


def test_a_single_user_is_undefined_but_consistency_can_be_measured():
    r = characterise(table([("a", "q", "x", "y"), ("a", "q", "x", "y"), ("a", "q2", "x", "y")]), "alone")
    assert r.divergence_rate is None and r.reasons["divergence_rate"] == "only one user"
    assert r.room is None and r.reasons["room"] == "only one user"
    assert r.consistency == 1.0 and "consistency" not in r.reasons


def test_no_repeats_gives_an_upper_bound_room():
    r = characterise(table([("a", "q", "x", "y"), ("b", "q", "y", "x"), ("c", "q", "x", "y")]), "once")
    assert r.consistency is None and r.reasons == {"consistency": "no user labelled the same pair twice"}
    assert r.room_is_upper_bound and r.room == pytest.approx(1 - (1 + 0 + 1) / 3)
    cells, notes = table2([r])
    assert cells.loc["once", "Room"] == "≤ 0.33" and cells.loc["once", "Consistency"] == "undefined"
    assert notes[-1] == "once: Room is an upper bound: consistency taken as 1 (no user labelled the same pair twice)."


def test_split_filter_and_empty_selection():
    records = pd.concat([table(HAND, "train"), table([("u1", "q9", "x", "y")], "test").assign(id="t")])
    assert characterise(records, "hand", splits=["train"]).to_dict() == characterise(table(HAND), "hand").to_dict()
    assert characterise(records, "hand", splits="test").n_samples == 1
    empty = characterise(records, "none", splits=["val"])
    assert (empty.n_samples, empty.n_users, empty.n_pairs) == (0, 0, 0)
    assert set(empty.reasons.values()) == {"no records"} and empty.room is None


def test_table2_layout_json_and_sources():
    records = pd.concat(
        [table(HAND, source="b-hand"), table([("a", "q", "x", "y"), ("b", "q", "y", "x")], source="a-tie")],
        ignore_index=True,
    )
    results = characterise_sources(records)
    assert [r.name for r in results] == ["a-tie", "b-hand"]
    cells, notes = table2(results)
    assert tuple(cells.columns) == TABLE2_COLUMNS and cells.index.name == "Dataset"
    assert cells.loc["b-hand"].tolist() == ["14", "3", "75.0%", "75.0%", "[0.17–1.00]", "0.80", "0.19", "1"]
    assert notes == [
        "a-tie: Consistency undefined: no user labelled the same pair twice.",
        "a-tie: Room is an upper bound: consistency taken as 1 (no user labelled the same pair twice).",
    ]
    out = characterisation_json(results)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["table2"]["b-hand"]["%Cont."] == "75.0%" and out["notes"] == notes
    u3 = out["datasets"]["b-hand"]["per_user"][2]
    assert u3 == {
        "user_id": "u3",
        "n_labels": 3,
        "n_overlapping": 3,
        "mv_acc": pytest.approx(1 / 6),
        "minority": True,
        "n_repeat_labels": 0,
        "consistency": None,
    }
    with pytest.raises(ValueError, match="unique"):
        table2([results[0], results[0]])


def test_deterministic_whatever_the_record_order():
    records = table(HAND)
    shuffled = records.sample(frac=1.0, random_state=3).reset_index(drop=True)
    first, second = (
        characterisation_json([characterise(records, "h")]),
        characterisation_json([characterise(shuffled, "h")]),
    )
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    pd.testing.assert_frame_equal(per_user_table(label_table(records)), per_user_table(label_table(shuffled)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="threshold"):
        characterise(table(HAND), "h", threshold=0.6)
    with pytest.raises(ValueError, match="hand-000.*same text"):
        characterise(table([("a", "q", "x", "x")]), "h")


def test_figure_marks_minority_users_and_undefined_datasets():
    import matplotlib.pyplot as plt

    apart = characterise(table([("a", "q1", "x", "y"), ("b", "q2", "x", "y")]), "apart")
    fig = mv_acc_figure([characterise(table(HAND), "hand"), apart])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["hand", "apart"]
    points = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert sorted(points["minority user (MV-ACC < 0.5)"][:, 1]) == pytest.approx([1 / 6])
    assert sorted(points["majority-aligned user"][:, 1]) == pytest.approx([0.75, 1.0])
    assert any(t.get_text() == "undefined" for t in ax.texts)
    plt.close(fig)


def test_personal_llm_users_share_pairs_so_divergence_is_defined():
    data = load_personal_llm(PERSONAL_LLM, 3, np.random.default_rng(5))
    r = characterise(data.records, "personal_llm")
    assert r.n_overlapping_pairs == 3 and r.divergence_rate is not None
    assert r.divergence_rate == pytest.approx(1 / 3)  # the goldfish pair splits the users; egg and sky are unanimous
    assert r.mv_acc_min is not None and r.room_is_upper_bound  # simulated users never label a pair twice
