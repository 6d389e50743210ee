"""The public-dataset loaders (WikiPersona, P-SOUPS, PersonalLLM DPO, TL;DR, PersonalLLM) on small invented fixtures:
exact records, counts that add up, canonical schema, one error naming file/row/field per malformed input, and
seeded determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign.core.records import PERSONA_FIELDS, RECORD_FIELDS, validate_rows
from personalign.data.loaders.common import DatasetError, LoadedDataset, read_splits, user_folds
from personalign.data.loaders.pairwise import load_personal_llm_dpo, load_psoups
from personalign.data.loaders.personal_llm import load_personal_llm
from personalign.data.loaders.registry import LOADERS
from personalign.data.loaders.tldr import load_tldr
from personalign.data.loaders.wikipersona import load_wikipersona

FIX = Path(__file__).parent / "fixtures" / "loaders"
WP_PERSONAS = FIX / "wikipersona" / "personas.jsonl"
ADA_GOLD = "Ada Quill is a chef who cooks only with plants."
BO_GOLD = "Bo Lindqvist-Ng is a marathon runner who avoids bread."
KEY = ["id", "user_id", "question_type", "prompt", "chosen", "rejected", "split"]


def check_canonical(data: LoadedDataset, source: str, n_folds: int = 5) -> None:
    """Schema-valid frames, unique ids of one source, folds in range and one per user, every user in the personas."""
    records, personas = data.records.to_dict("records"), data.personas.to_dict("records")
    validate_rows(records, RECORD_FIELDS, source)
    validate_rows(personas, PERSONA_FIELDS, source)
    assert data.records.id.is_unique and list(data.records.id) == sorted(data.records.id)
    assert set(data.records.source) == {source}
    assert data.records.fold.between(0, n_folds - 1).all()
    assert data.records.groupby("user_id").fold.nunique().eq(1).all()
    assert set(data.records.user_id) <= set(data.personas.user_id)
    assert (data.records.chosen != data.records.rejected).all()
    assert data.counts["records"] == len(data.records)
    assert all(isinstance(note, str) and note for note in data.notes)


def rows_of(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(r) for r in frame[columns].itertuples(index=False)]


def test_registry_names_every_loader():
    assert LOADERS == {
        "wikipersona": load_wikipersona,
        "psoups": load_psoups,
        "personal_llm_dpo": load_personal_llm_dpo,
        "tldr": load_tldr,
        "personal_llm": load_personal_llm,
    }


# ---------------------------------------------------------------- WikiPersona


def test_wikipersona_valid_records_and_personas():
    data = load_wikipersona(FIX / "wikipersona" / "valid.json", WP_PERSONAS)
    check_canonical(data, "wikipersona")
    diet = "Is a high-protein diet good for everyone?"
    plants = "Not necessarily; plant proteins can cover most needs."
    assert rows_of(data.records, KEY + ["fold", "user_name", "chosen_persona_gold"]) == [
        (
            "wikipersona-test-000001",
            "ada_quill",
            "divergent",
            diet,
            plants,
            "Yes, eat as much meat as you can.",
            "test",
            0,
            "Ada Quill",
            ADA_GOLD,
        ),
        (
            "wikipersona-test-000005",
            "bo_lindqvist_ng",
            "personal",
            "Which shoes suit a trail race?",
            "Shoes with deep lugs and a rock plate.",
            "Any light road shoe.",
            "test",
            2,
            "Bo Lindqvist-Ng",
            BO_GOLD,
        ),
        (
            "wikipersona-train-000000",
            "ada_quill",
            "personal",
            "What should I cook for a dinner party of six?",
            "A lentil and squash stew with herb flatbreads.",
            "A roast chicken with gravy.",
            "train",
            0,
            "Ada Quill",
            ADA_GOLD,
        ),
        (
            "wikipersona-val-000002",
            "bo_lindqvist_ng",
            "divergent",
            diet,
            "For endurance athletes, protein with few carbs can work well.",
            plants,
            "val",
            2,
            "Bo Lindqvist-Ng",
            BO_GOLD,
        ),
        (
            "wikipersona-val-000004",
            "celia_moreau",
            "personal",
            "How do I follow two sides of a debate fairly?",
            "Read one outlet from each side every morning.",
            "Pick the side you agree with.",
            "val",
            4,
            "Célia Moreau",
            "",
        ),
    ]
    assert list(data.records["axes"]) == [["diet"], ["diet", "sports"], ["diet"], ["diet", "sports"], ["politics"]]
    assert (data.records[["rejected_persona_gold", "chosen_persona_retr", "rejected_persona_retr"]] == "").all().all()
    assert data.counts == {"rows_read": 6, "records": 5, "identical_responses": 1, "personas": 4}
    assert rows_of(data.personas, ["user_id", "name", "tag", "category", "gold"]) == [
        ("ada_quill", "Ada Quill", "<person_0>", "vegan", ADA_GOLD),
        ("bo_lindqvist_ng", "Bo Lindqvist-Ng", "<person_1>", "keto", BO_GOLD),
        ("celia_moreau", "Célia Moreau", "<person_2>", "centrist", ""),
        ("dov_park", "Dov Park", "<person_3>", "chess", "Dov Park is a chess coach."),
    ]
    notes = " ".join(data.notes)
    assert "persona, persona_gpt4" in notes and "Dov Park" in notes and "identical_responses" in notes


# ---------------------------------------------------------------- P-SOUPS / PersonalLLM DPO


@pytest.mark.parametrize("loader, source", [(load_psoups, "psoups"), (load_personal_llm_dpo, "personal_llm_dpo")])
def test_pairwise_valid_directory(loader, source):
    data = loader(FIX / "pairwise" / "valid", np.random.default_rng(3))
    check_canonical(data, source)
    photo = "Plants turn light, water and CO2 into sugar."
    cloud = "A floating mass of water droplets."
    assert rows_of(data.records, KEY) == [
        (f"{source}-test-000000", "u2", "none", "Describe a cloud.", cloud, "White.", "test"),
        (f"{source}-test-000001", "alice", "none", "Describe a cloud.", "White.", cloud, "test"),
        (f"{source}-train-000000", "u1", "none", "Explain photosynthesis.", photo, "It is a process.", "train"),
        (f"{source}-train-000001", "u2", "none", "Explain photosynthesis.", "It is a process.", photo, "train"),
        (f"{source}-train-000003", "u3", "none", "Name a prime number.", "Two, the only even prime.", "Nine.", "train"),
    ]
    folds = user_folds(["u1", "u2", "u3", "alice"], 5, np.random.default_rng(3))
    assert dict(zip(data.records.user_id, data.records.fold)) == folds
    assert list(data.personas.user_id) == ["alice", "u1", "u2", "u3"]
    assert data.counts == {"rows_read": 6, "records": 5, "identical_responses": 1}


# ---------------------------------------------------------------- TL;DR


def test_tldr_keeps_top_workers_and_counts_the_rest():
    data = load_tldr(FIX / "tldr" / "valid.jsonl", rng=np.random.default_rng(0))
    check_canonical(data, "tldr")
    assert rows_of(data.records, KEY) == [
        (
            "tldr-test-000004",
            "wC",
            "none",
            "The city council voted to close the old bridge for repairs next month.",
            " Council closes old bridge next month for repairs.",
            " A bridge.",
            "test",
        ),
        (
            "tldr-train-000000",
            "wA",
            "none",
            "Roommate and dishes\n\nMy roommate never does the dishes and I am tired of it.",
            " Roommate skips dishes, I am annoyed.",
            " Dishes.",
            "train",
        ),
        (
            "tldr-train-000005",
            "wD",
            "none",
            "I got two job offers and cannot decide between them.",
            " Torn between two job offers.",
            " Two offers.",
            "train",
        ),
        (
            "tldr-train-000007",
            "wB",
            "none",
            "I keep forgetting to water my plants.",
            " I forget to water plants.",
            " Plants are dying.",
            "train",
        ),
        (
            "tldr-val-000001",
            "wB",
            "none",
            "I want to learn the guitar at forty but feel too old.",
            " Forty-year-old wants to start guitar, worries about age.",
            " Am I too old for guitar?",
            "val",
        ),
        (
            "tldr-val-000003",
            "wA",
            "none",
            "Should I tell my friend her band is not good?",
            " Friend has a band and I have opinions about it.",
            " Friend's band is bad; tell her?",
            "val",
        ),
    ]
    assert list(data.personas.user_id) == ["wA", "wB", "wC", "wD", "wE"]  # wF (1 row) loses the tie by id
    assert data.counts == {
        "rows_read": 8,
        "records": 6,
        "filtered_other_workers": 1,
        "identical_responses": 1,
        "workers": 6,
    }
    assert "wF" not in set(data.records.user_id)


def test_tldr_n_users_counts_every_row():
    data = load_tldr(FIX / "tldr" / "valid.jsonl", n_users=2, rng=np.random.default_rng(0))
    assert sorted(set(data.records.user_id)) == ["wA", "wB"]
    counts = data.counts
    assert counts["filtered_other_workers"] == 4 and counts["records"] == 4
    assert counts["rows_read"] == counts["records"] + counts["filtered_other_workers"] + counts["identical_responses"]


# ---------------------------------------------------------------- PersonalLLM (simulated users)


def reference_utilities(path: Path, weights: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """Independent reference: z per reward model over all entries, utility w . z; prompt -> user -> response text ->
    utility (a text repeated among the responses takes its first response's, the one the loader may draw)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    k = sum(c.startswith("response_") and c[9:].isdigit() for c in rows[0])
    rms = sorted(next(iter(weights.values())))
    s = np.array([[[row[f"{rm}_response_{j}"] for rm in rms] for j in range(1, k + 1)] for row in rows], float)
    z = (s - s.mean(axis=(0, 1))) / s.std(axis=(0, 1))
    return {
        row["prompt"]: {
            user: {row[f"response_{j}"]: float(z[i, j - 1] @ np.array([w[rm] for rm in rms])) for j in range(k, 0, -1)}
            for user, w in weights.items()
        }
        for i, row in enumerate(rows)
    }


def test_personal_llm_users_label_the_same_pair():
    path = FIX / "personal_llm" / "valid.jsonl"
    data = load_personal_llm(path, 3, np.random.default_rng(5))
    check_canonical(data, "personal_llm")
    weights = {p["user_id"]: p["demographics"]["weights"] for p in data.personas.to_dict("records")}
    assert list(weights) == ["u0", "u1", "u2"]
    for w in weights.values():
        assert list(w) == ["alpha", "beta", "gamma"] and sum(w.values()) == pytest.approx(1.0)
        assert all(v > 0 for v in w.values())
    utility = reference_utilities(path, weights)
    for r in data.records.itertuples():
        assert utility[r.prompt][r.user_id][r.chosen] > utility[r.prompt][r.user_id][r.rejected]
    pairs = data.records.groupby("prompt").apply(lambda g: {frozenset(p) for p in zip(g.chosen, g.rejected)})
    assert pairs.map(len).eq(1).all()  # one unordered pair per prompt, labelled by every user
    # "Say hello." scores every response alike: a tie for every user; the sky prompt's two distinct texts are its pair
    assert sorted(pairs.index) == ["How do I boil an egg?", "Suggest a name for a goldfish.", "What colour is the sky?"]
    assert pairs["What colour is the sky?"] == {frozenset({"Blue on a clear day.", "It depends."})}
    assert data.records.groupby("prompt").user_id.nunique().eq(3).all()
    assert set(data.records.split) == {"train", "test"}
    assert data.counts == {
        "rows_read": 4,
        "user_prompt_pairs": 12,
        "records": 9,
        "tied_utilities": 3,
        "identical_responses": 0,
    }
    after_weights = np.random.default_rng(5)
    after_weights.random((4, 3))  # the loader draws the pairs, then the weights, then deals the folds
    after_weights.dirichlet(np.ones(3), size=3)
    assert dict(zip(data.records.user_id, data.records.fold)) == user_folds(["u0", "u1", "u2"], 5, after_weights)


def test_personal_llm_by_hand_on_two_reward_models():
    """tiny.jsonl (the released column form response_<k>_<rm>, with text columns response_<k>_model that are not a
    reward model): a = [1, 3 | 1, 3] gives z = [-1, 1 | -1, 1]; b = [4, 0 | 0, 4] gives z = [1, -1 | -1, 1].
    Prompt 0: utility(Apple) = w_b - w_a, utility(Mango) = w_a - w_b; prompt 1: utility(Grey) = -1, utility(Teal) = 1
    for every user. Two responses per prompt: the drawn pair is both."""
    data = load_personal_llm(FIX / "personal_llm" / "tiny.jsonl", 2, np.random.default_rng(5))
    check_canonical(data, "personal_llm")
    mine = data.records.set_index("id")
    for user in ("u0", "u1"):
        w = data.personas.set_index("user_id").demographics[user]["weights"]
        assert sorted(w) == ["a", "b"] and w["a"] + w["b"] == pytest.approx(1.0)
        fruit = mine.loc[f"personal_llm-train-000000-{user}"]
        assert (fruit.chosen, fruit.rejected) == (("Mango.", "Apple.") if w["a"] > w["b"] else ("Apple.", "Mango."))
        colour = mine.loc[f"personal_llm-train-000001-{user}"]
        assert (colour.chosen, colour.rejected) == ("Teal.", "Grey.")
    assert "metadata, not reward models: model." in " ".join(data.notes)
    u0, u1 = (p["weights"] for p in data.personas.demographics)
    assert u0["b"] > u0["a"] and u1["a"] > u1["b"]  # seed 5: u0 leans to b, u1 to a; they disagree on the fruit
    assert u0["b"] - u0["a"] == pytest.approx(0.87, abs=0.01)  # u0: utility(Apple) = 0.87 > utility(Mango) = -0.87
    assert (mine.loc["personal_llm-train-000000-u0"].chosen, mine.loc["personal_llm-train-000000-u1"].chosen) == (
        "Apple.",
        "Mango.",
    )
    assert data.counts == {
        "rows_read": 2,
        "user_prompt_pairs": 4,
        "records": 4,
        "tied_utilities": 0,
        "identical_responses": 0,
    }


def test_personal_llm_pairs_are_drawn_before_the_users(tmp_path):
    """Every unordered pair of distinct texts gets drawn; the pairs do not depend on the number of users or alpha;
    a prompt whose responses are all one text is filtered for every user."""
    rows = [
        {
            "prompt": f"Question {i}?",
            **{f"response_{j}": f"Answer {j} to {i}." for j in range(1, 5)},
            **{f"s_response_{j}": float((i * j) % 7) for j in range(1, 5)},
            **{f"t_response_{j}": float((i + 3 * j) % 5) for j in range(1, 5)},
        }
        for i in range(120)
    ]
    rows.append(
        {
            "prompt": "Echo?",
            **{f"response_{j}": "Echo." for j in range(1, 5)},
            **{f"{rm}_response_{j}": 1.0 for rm in "st" for j in range(1, 5)},
        }
    )
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def drawn(n_users: int, alpha: float) -> tuple[dict[str, frozenset], dict[str, int]]:
        data = load_personal_llm(path, n_users, np.random.default_rng(3), alpha=alpha)
        by_prompt = data.records.groupby("prompt").apply(lambda g: {frozenset(p) for p in zip(g.chosen, g.rejected)})
        assert by_prompt.map(len).eq(1).all()
        return {prompt: next(iter(pair)) for prompt, pair in by_prompt.items()}, data.counts

    two, counts = drawn(2, 1.0)
    five, _ = drawn(5, 0.3)
    assert {p: two[p] for p in two.keys() & five.keys()} == {p: five[p] for p in two.keys() & five.keys()}
    assert "Echo?" not in two and counts["identical_responses"] == 2
    kinds = {tuple(sorted(int(text.split()[1]) for text in pair)) for pair in two.values()}
    assert kinds == {(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)}


# ---------------------------------------------------------------- determinism

LOADS = {
    "wikipersona": lambda seed: load_wikipersona(FIX / "wikipersona" / "valid.json", WP_PERSONAS),
    "psoups": lambda seed: load_psoups(FIX / "pairwise" / "valid", np.random.default_rng(seed)),
    "personal_llm_dpo": lambda seed: load_personal_llm_dpo(FIX / "pairwise" / "valid", np.random.default_rng(seed)),
    "tldr": lambda seed: load_tldr(FIX / "tldr" / "valid.jsonl", rng=np.random.default_rng(seed)),
    "personal_llm": lambda seed: load_personal_llm(
        FIX / "personal_llm" / "valid.jsonl", 4, np.random.default_rng(seed), alpha=0.5
    ),
}


@pytest.mark.parametrize("name", sorted(LOADS))
def test_same_input_and_seed_same_frames(name):
    first, second = LOADS[name](11), LOADS[name](11)
    pd.testing.assert_frame_equal(first.records, second.records)
    pd.testing.assert_frame_equal(first.personas, second.personas)
    assert (first.counts, first.notes) == (second.counts, second.notes)


def test_another_seed_draws_other_users():
    a, b = LOADS["personal_llm"](1), LOADS["personal_llm"](2)
    assert list(a.personas.demographics) != list(b.personas.demographics)


# ---------------------------------------------------------------- malformed inputs


def load(kind: str, *paths: str) -> LoadedDataset:
    rng = np.random.default_rng(0)
    files = [FIX / p for p in paths]
    if kind == "wikipersona":
        return load_wikipersona(files[0], files[1] if len(files) > 1 else WP_PERSONAS)
    if kind == "tldr":
        return load_tldr(files[0], rng=rng)
    if kind == "personal_llm":
        return load_personal_llm(files[0], 2, rng)
    return LOADERS[kind](files[0], rng)


MALFORMED = [
    ("wikipersona", ["wikipersona/unknown_person.json"], ["unknown_person.json", "row 1", "'name'", "Zed Unknown"]),
    ("wikipersona", ["wikipersona/no_assistant.json"], ["no_assistant.json", "row 0", "'chosen'", "assistant"]),
    ("wikipersona", ["wikipersona/bad_question_type.jsonl"], ["bad_question_type.jsonl", "line 2", "'question_type'"]),
    ("wikipersona", ["wikipersona/bad_json.jsonl"], ["bad_json.jsonl", "line 2", "not valid JSON"]),
    (
        "wikipersona",
        ["wikipersona/valid.json", "wikipersona/personas_bad_fold.jsonl"],
        ["personas_bad_fold.jsonl", "line 2", "'cv_fold'", "7"],
    ),
    (
        "wikipersona",
        ["wikipersona/valid.json", "wikipersona/personas_bad_axis.jsonl"],
        ["personas_bad_axis.jsonl", "line 1", "'axis'"],
    ),
    ("psoups", ["pairwise/missing_uid.jsonl"], ["missing_uid.jsonl", "line 2", "'uid'"]),
    ("psoups", ["pairwise/float_uid.json"], ["float_uid.json", "row 1", "'uid'", "1.5"]),
    ("psoups", ["pairwise/empty_chosen.jsonl"], ["empty_chosen.jsonl", "line 1", "'chosen'"]),
    ("personal_llm_dpo", ["pairwise/prompt_list.jsonl"], ["prompt_list.jsonl", "line 3", "'prompt'"]),
    ("personal_llm_dpo", ["pairwise/bad_json.jsonl"], ["bad_json.jsonl", "line 3", "not valid JSON"]),
    ("psoups", ["pairwise/split_mismatch"], ["test.jsonl", "line 1", "'split'"]),
    ("tldr", ["tldr/bad_choice.jsonl"], ["bad_choice.jsonl", "line 2", "field 'choice' must be 0 or 1, got 2"]),
    ("tldr", ["tldr/missing_worker.jsonl"], ["missing_worker.jsonl", "line 1", "'worker'"]),
    ("tldr", ["tldr/one_summary.jsonl"], ["one_summary.jsonl", "line 1", "'summaries'"]),
    ("tldr", ["tldr/summary_no_text.json"], ["summary_no_text.json", "row 0", "'summaries[1].text'"]),
    ("tldr", ["tldr/missing_post.jsonl"], ["missing_post.jsonl", "line 1", "'info.post'"]),
    ("tldr", ["tldr/bad_split.jsonl"], ["bad_split.jsonl", "line 3", "'split'", "dev"]),
    ("tldr", ["tldr/bad_json.jsonl"], ["bad_json.jsonl", "line 2", "not valid JSON"]),
    ("personal_llm", ["personal_llm/missing_score.jsonl"], ["missing_score.jsonl", "line 2", "'beta_response_2'"]),
    ("personal_llm", ["personal_llm/text_score.jsonl"], ["text_score.jsonl", "line 1", "'alpha_response_3'", "high"]),
    ("personal_llm", ["personal_llm/empty_response.jsonl"], ["empty_response.jsonl", "line 3", "'response_2'"]),
    ("personal_llm", ["personal_llm/no_prompt.json"], ["no_prompt.json", "row 0", "'prompt'"]),
    ("personal_llm", ["personal_llm/bad_json.jsonl"], ["bad_json.jsonl", "line 2", "not valid JSON"]),
    # a reward model lacking a response's score column in every row: a file-level error naming the model
    ("personal_llm", ["personal_llm/rm_missing_response.jsonl"], ["rm_missing_response.jsonl", "'gamma'", "[3]"]),
]


@pytest.mark.parametrize("kind, paths, expected", MALFORMED, ids=[f"{k}:{p[-1]}" for k, p, _ in MALFORMED])
def test_malformed_input_names_file_row_and_field(kind, paths, expected):
    with pytest.raises(DatasetError) as error:
        load(kind, *paths)
    for part in expected:
        assert part in str(error.value)


def test_parquet_copies_load_the_same(tmp_path):
    """Parquet gives list columns (chat messages, axes, summaries) as numpy arrays; the loaders read them alike."""
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    rows = json.loads((FIX / "wikipersona" / "valid.json").read_text())
    for row in rows:  # a parquet column is all lists or all text: plain responses become one-message chats
        for side in ("chosen", "rejected"):
            if isinstance(row[side], str):
                row[side] = [{"role": "assistant", "content": row[side]}]
    pd.DataFrame(rows).to_parquet(wiki / "records.parquet")
    pd.read_json(WP_PERSONAS, lines=True).to_parquet(wiki / "personas.parquet")
    from_json = load_wikipersona(FIX / "wikipersona" / "valid.json", WP_PERSONAS)
    from_parquet = load_wikipersona(wiki / "records.parquet", wiki / "personas.parquet")
    pd.testing.assert_frame_equal(from_json.records, from_parquet.records)
    pd.testing.assert_frame_equal(from_json.personas, from_parquet.personas)
    tldr = pd.read_json(FIX / "tldr" / "valid.jsonl", lines=True)
    tldr.to_parquet(tmp_path / "tldr.parquet")
    pd.testing.assert_frame_equal(
        load_tldr(FIX / "tldr" / "valid.jsonl", rng=np.random.default_rng(0)).records,
        load_tldr(tmp_path / "tldr.parquet", rng=np.random.default_rng(0)).records,
    )


def test_directory_convention(tmp_path):
    with pytest.raises(DatasetError, match="no train, val or test file"):
        read_splits(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "train.json").write_text('[{"a": 1}]')
    with pytest.raises(DatasetError, match="more than one train file"):
        read_splits(tmp_path)
    (tmp_path / "train.json").unlink()
    (tmp_path / "val.csv").write_text("a\n2\n")
    assert [(split, [row for _, row in rows]) for split, rows in read_splits(tmp_path)] == [
        ("train", [{"a": 1}]),
        ("val", [{"a": 2}]),
    ]
