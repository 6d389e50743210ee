"""PersonalLLM-style simulated users over archetypes: z-normalised scores, Dirichlet mixtures, shared pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.core.records import RECORD_FIELDS, validate_rows
from personalign.reward_models.characterisation import characterise
from personalign.reward_models.simulated_users import archetype_scores, simulated_users


def scores() -> pd.DataFrame:
    """Two questions, three candidates each; archetype `up` likes later candidates, `down` earlier ones."""
    rows = []
    for q, split in (("q1", "train"), ("q2", "test")):
        for k in range(3):
            rows.append(
                {
                    "qid": q,
                    "prompt": f"{q}?",
                    "split": split,
                    "question_type": "personal",
                    "candidate": k,
                    "text": f"{q} answer {k}",
                    "up": float(k),
                    "down": float(-k) + 0.1 * (q == "q2"),
                }
            )
    return pd.DataFrame(rows)


def test_every_user_labels_every_pair_by_its_mixture():
    data = simulated_users(scores(), ["up", "down"], 4, 0.2, np.random.default_rng(3))
    validate_rows(data.records.to_dict("records"), RECORD_FIELDS, "simulated")
    assert len(data.records) == 2 * 3 * 4 and data.counts["tied_utilities"] == 0  # 3 pairs per question, 4 users
    for user in data.personas.itertuples():
        weights = user.demographics["weights"]
        assert abs(sum(weights.values()) - 1) < 1e-5
        mine = data.records[data.records.user_id == user.user_id]
        later_wins = (mine.chosen.str[-1] > mine.rejected.str[-1]).all()
        assert later_wins == (weights["up"] > weights["down"])  # z(up) = -z(down): the larger weight decides
    assert set(data.records[data.records.prompt == "q2?"].split) == {"test"}
    result = characterise(data.records, "sim")
    users_up = sum(p.demographics["weights"]["up"] > 0.5 for p in data.personas.itertuples())
    assert (result.divergence_rate == 1.0) == (0 < users_up < 4)


def test_the_same_seed_gives_the_same_users_and_archetype_scores_use_the_judge():
    a = simulated_users(scores(), ["up", "down"], 3, 1.0, np.random.default_rng(0))
    b = simulated_users(scores(), ["up", "down"], 3, 1.0, np.random.default_rng(0))
    pd.testing.assert_frame_equal(a.records, b.records)

    class LengthJudge:  # utility = length of the text for one persona, minus it for the other
        class embedder:
            @staticmethod
            def encode(texts):
                return np.zeros((len(texts), 2))

        def utilities(self, ctx, texts):
            sign = 1 if ctx.persona_id == "long" else -1
            return np.array([sign * len(t) for t in texts], dtype=float)

    candidates = [
        {
            "qid": "q",
            "prompt": "p",
            "split": "train",
            "question_type": "divergent",
            "candidates": [{"text": "a"}, {"text": "bbb"}, {"text": "a"}, {"text": " "}],
        }
    ]
    personas = pd.DataFrame(
        {"user_id": ["long", "short"], "axes": [["length"], ["length"]], "gold": ["likes long", "likes short"]}
    )
    table = archetype_scores(candidates, personas, LengthJudge())
    assert list(table.text) == ["a", "bbb"] and list(table.long) == [1.0, 3.0] and list(table.short) == [-1.0, -3.0]
