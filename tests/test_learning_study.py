"""The learning study's assembly and reporting: study files, nested training subsets, summaries and sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.analysis import learning_report
from personalign.studies import learning_study as ls


def study_file(tmp_path, arms: str) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(
        "settings: {seed: 3}\ndefaults: {pairs_per_user: 4, epochs: 1, beta: 0.1, learning_rate: 0.001}\n"
        f"arms:\n{arms}"
    )
    return str(path)


def test_arms_are_the_defaults_with_their_own_keys_over_them(tmp_path):
    settings, arms = ls.read_study(study_file(tmp_path, "  a: {system: mt_tag}\n  b: {system: dpo, epochs: 3}\n"))
    assert settings == {"seed": 3}
    assert [(a.name, a.system, a.epochs, a.pairs_per_user) for a in arms] == [("a", "mt_tag", 1, 4), ("b", "dpo", 3, 4)]
    assert arms[0].key() != arms[1].key()


@pytest.mark.parametrize(
    "arm, message",
    [
        ("  a: {system: mt_name}\n", "arm 'a': system 'mt_name'"),
        ("  a: {system: dpo, lr: 0.1}\n", "arm 'a': unknown key 'lr'"),
        ("  a: {system: dpo, rejected: worst}\n", "arm 'a': rejected 'worst'"),
        ("  a: {system: dpo, precision: fp16}\n", "arm 'a': precision 'fp16'"),
    ],
)
def test_a_bad_arm_is_named_before_any_training(tmp_path, arm, message):
    with pytest.raises(ls.StudyError, match=message):
        ls.read_study(study_file(tmp_path, arm))


def records(questions_per_axis: int = 6) -> pd.DataFrame:
    rows = []
    for axis, users in (("politics", ["p1", "p2"]), ("diet", ["d1", "d2"])):
        for q in range(questions_per_axis):
            for user in users:
                rows.append(
                    {
                        "id": f"{user}:div-{axis}-{q:02d}",
                        "user_id": user,
                        "axes": [axis],
                        "split": "train",
                        "question_type": "divergent",
                        "prompt": f"{axis} {q}",
                        "chosen": "w",
                        "rejected": "l",
                    }
                )
        rows.append(
            {
                "id": f"{users[0]}:div-{axis}-99",
                "user_id": users[0],
                "axes": [axis],
                "split": "test",
                "question_type": "divergent",
                "prompt": "t",
                "chosen": "w",
                "rejected": "l",
            }
        )
    return pd.DataFrame(rows)


def test_smaller_training_sets_are_nested_in_larger_ones_and_every_user_gets_each_question():
    small, large = ls.divergent_subset(records(), 2, 7), ls.divergent_subset(records(), 4, 7)
    assert set(small.id) < set(large.id)
    assert small.groupby("user_id").size().tolist() == [2, 2, 2, 2]
    assert (small.split == "train").all()
    with pytest.raises(ls.StudyError, match="pairs_per_user 7: axis 'diet' has 6"):
        ls.divergent_subset(records(), 7, 7)


def examples(arm: str, trained: float, rng: np.random.Generator, n_users: int = 12, per_user: int = 20) -> pd.DataFrame:
    users = np.repeat([f"u{i}" for i in range(n_users)], per_user)
    base = rng.random(users.size) < 0.5
    return pd.DataFrame(
        {
            "arm": arm,
            "id": range(users.size),
            "user_id": users,
            "train_pairs": 40,
            "trained_correct": np.where(rng.random(users.size) < trained, 1, base.astype(int)),
            "base_correct": base.astype(int),
            "implicit_correct": (rng.random(users.size) < 0.5).astype(int),
            "final_train_loss": 0.6,
            "final_train_reward_accuracy": 0.7,
        }
    )


def test_the_summary_is_a_paired_difference_and_the_conclusion_names_where_it_becomes_detectable():
    rng = np.random.default_rng(0)
    arms = [
        ls.Arm("mt_8", "mt_tag", 8, 3, 0.1, 5e-4),
        ls.Arm("mt_2", "mt_tag", 2, 3, 0.1, 5e-4),
        ls.Arm("mt_8_b", "mt_tag", 8, 3, 0.01, 5e-4),
    ]
    data = pd.concat([examples("mt_8", 0.9, rng), examples("mt_2", 0.0, rng), examples("mt_8_b", 0.0, rng)])
    summary = learning_report.summarize(arms, data, seed=1, n_resamples=500)
    first = summary.set_index("name").loc["mt_8"]
    ex = data[data.arm == "mt_8"]
    assert first.difference == pytest.approx(ex.trained_correct.mean() - ex.base_correct.mean())
    assert first.ci_low > 0 and first.detectable
    assert (
        summary.set_index("name").loc["mt_2", "difference"] == 0
        and not summary.set_index("name").loc["mt_2", "detectable"]
    )
    text = learning_report.conclusion(
        summary,
        {
            "pairs_per_user": 8,
            "epochs": 3,
            "beta": 0.1,
            "learning_rate": 5e-4,
            "rejected": "random",
            "precision": "auto",
        },
        ls.LEVERS,
    )
    assert "`mt_tag`, reference-free accuracy (paired vs the base): detectable from 8 divergent pairs per user" in text
    assert "`mt_8_b` (mt_tag, 8 pairs per user; beta 0.01 (reference 0.1))" in text
