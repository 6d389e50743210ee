"""Personalized reward models on a synthetic population with a known rule: six users in two groups, each user
preferring the response with the larger dot product with a hidden direction; the minority group's directions point
the opposite way to the majority's, so a pooled model fails the minority."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.reward_models import (
    GPO,
    REWARD_MODELS,
    VPL,
    CausalLMJudge,
    ConditionalRM,
    EmbeddingContextJudge,
    IndividualRM,
    LoRARewardModel,
    PersonalizedRM,
    PreferenceData,
    RAGJudge,
    UnseenUserError,
    VanillaRM,
    evaluate,
    make_reward_model,
    preference_data,
)

DIM = 16
MAJORITY = ("u0", "u1", "u2", "u3")
MINORITY = ("u4", "u5")
LEARNED = {
    "vanilla": VanillaRM,
    "individual": IndividualRM,
    "conditional": ConditionalRM,
    "prm": PersonalizedRM,
    "vpl": VPL,
    "gpo": GPO,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small heads: threads only add overhead


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def synthetic(seed: int = 0, n_train: int = 200, n_test: int = 100, noise: float = 0.3):
    """(train, test) PreferenceData: random unit prompts and responses; user u prefers the response with the larger
    dot product with its direction (the shared axis, +1 for the majority and -1 for the minority, plus noise)."""
    rng = np.random.default_rng(seed)
    axis = _unit(rng.normal(size=DIM))
    directions = {
        u: _unit((1 if u in MAJORITY else -1) * axis + noise * _unit(rng.normal(size=DIM))) for u in MAJORITY + MINORITY
    }

    def make(split: str, n: int) -> PreferenceData:
        parts = []
        for user, d in directions.items():
            x, a, b = (_unit(rng.normal(size=(n, DIM))) for _ in range(3))
            first = (a @ d > b @ d)[:, None]
            parts.append(
                ([f"{split}-{user}-{i}" for i in range(n)], [user] * n, x, np.where(first, a, b), np.where(first, b, a))
            )
        return PreferenceData(*(np.concatenate([p[k] for p in parts]) for k in range(5)))

    return make("train", n_train), make("test", n_test)


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    models = {name: cls().fit(train, np.random.default_rng(0)) for name, cls in LEARNED.items()}
    models["rag"] = RAGJudge(EmbeddingContextJudge()).fit(train, np.random.default_rng(0))
    return models


@pytest.fixture(scope="module")
def results(fitted, data):
    return {name: evaluate(model, data[1]) for name, model in fitted.items()}


def group_accuracy(table: pd.DataFrame, users) -> float:
    return float(table[table.user_id.isin(users)].correct.mean())


# --- accuracy on the known rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["individual", "conditional", "prm", "vpl", "gpo"])
def test_personalized_models_learn_every_users_rule(results, name):
    table = results[name]
    assert table.correct.mean() > 0.7, name
    assert group_accuracy(table, MAJORITY) > 0.65 and group_accuracy(table, MINORITY) > 0.65, name


def test_vanilla_serves_the_majority_and_fails_the_minority(results):
    table = results["vanilla"]
    assert group_accuracy(table, MAJORITY) > 0.55
    assert group_accuracy(table, MINORITY) < 0.5


@pytest.mark.parametrize("name", ["individual", "conditional", "prm"])
def test_personalization_protects_the_minority(results, name):
    assert group_accuracy(results[name], MINORITY) > group_accuracy(results["vanilla"], MINORITY) + 0.25


def test_rag_with_embedding_judge_beats_chance(results):
    # three retrieved pairs of random 16-d responses carry a weak signal: about 0.6 expected, SE 0.02 on 600 pairs
    assert results["rag"].correct.mean() > 0.55


def test_evaluate_table(results, data):
    table = results["individual"]
    assert list(table.columns) == ["id", "user_id", "margin", "correct"]
    assert table.id.tolist() == list(data[1].ids) and table.correct.tolist() == (table.margin > 0).tolist()
    assert set(table.groupby("user_id").correct.mean().index) == set(MAJORITY + MINORITY)


# --- determinism --------------------------------------------------------------------------------------------------

FAST = {"vpl": {"steps": 40}, "gpo": {"steps": 40}}


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_same_seed_same_margins(data, name):
    train, test = data
    kwargs = FAST.get(name, {"epochs": 3})
    first = LEARNED[name](**kwargs).fit(train, np.random.default_rng(7)).margins(test)
    again = LEARNED[name](**kwargs).fit(train, np.random.default_rng(7)).margins(test)
    other = LEARNED[name](**kwargs).fit(train, np.random.default_rng(8)).margins(test)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_fit_leaves_the_global_torch_rng_alone(data):
    import torch

    state = torch.random.get_rng_state()
    VanillaRM(epochs=1).fit(data[0], np.random.default_rng(0))
    assert torch.equal(state, torch.random.get_rng_state())


# --- what the context models may read ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vpl", "gpo", "rag"])
def test_evaluated_labels_are_never_read(fitted, data, name):
    """Flipping every evaluated label (swapping chosen and rejected) only negates the margins, and a pair's margin
    does not depend on which other pairs are evaluated with it."""
    test = data[1]
    margins = fitted[name].margins(test)
    np.testing.assert_allclose(fitted[name].margins(test.swapped()), -margins, atol=1e-5)
    every_third = np.arange(0, len(test), 3)
    np.testing.assert_allclose(fitted[name].margins(test.subset(every_third)), margins[every_third], atol=1e-5)


@pytest.mark.parametrize("name", ["vpl", "gpo"])
def test_context_defaults_to_the_training_pairs(fitted, data, name):
    train, test = data
    model = fitted[name]
    np.testing.assert_array_equal(model.margins(test, context=train), model.margins(test))
    assert not np.allclose(model.margins(test, context=test), model.margins(test))  # the default is not the test set


def test_gpo_adapts_to_a_new_user_from_a_few_pairs(data):
    """A user absent at fit time is scored from the labelled pairs passed as context (the paper's new-user setting):
    the held-out minority user's own 30 pairs steer GPO the minority's way."""
    train, test = data
    model = GPO(steps=200).fit(train.subset(train.user_ids != "u5"), np.random.default_rng(0))
    few = train.subset(np.flatnonzero(train.user_ids == "u5")[:30])
    new = test.subset(test.user_ids == "u5")
    with pytest.raises(UnseenUserError, match="'u5'"):
        model.margins(new)
    assert (model.margins(new, context=few) > 0).mean() > 0.7


def test_vpl_latent_follows_the_context():
    """On sentence-embedding-sized inputs (384-d) VPL's prediction for a user follows the context it is given: the
    same pairs with their labels swapped as context flip most predicted preferences (with z only concatenated to the
    features, z cancelled out of the margin and not one prediction changed)."""
    rng = np.random.default_rng(0)
    dim, n = 384, 200
    shared, archetypes = _unit(rng.normal(size=dim)), _unit(rng.normal(size=(2, dim)))
    directions = {f"u{i}": _unit(shared + (1 if i < 2 else -1) * archetypes[i % 2]) for i in range(4)}

    def pairs(split: str, k: int) -> PreferenceData:
        x, a, b = (_unit(rng.normal(size=(k, dim))).astype(np.float32) for _ in range(3))
        parts = []
        for user, d in directions.items():
            first = (a @ d > b @ d)[:, None]
            parts.append(
                ([f"{split}-{i}-{user}" for i in range(k)], [user] * k, x, np.where(first, a, b), np.where(first, b, a))
            )
        return PreferenceData(*(np.concatenate([p[j] for p in parts]) for j in range(5)))

    train, test = pairs("train", n), pairs("test", 100)
    model = VPL(steps=200).fit(train, np.random.default_rng(0))
    mine, target = train.subset(train.user_ids == "u0"), test.subset(test.user_ids == "u0")
    own, swapped = model.margins(target, context=mine), model.margins(target, context=mine.swapped())
    assert np.linalg.norm(model.user_latent("u0", mine) - model.user_latent("u0", mine.swapped())) > 0.1
    assert ((own > 0) != (swapped > 0)).mean() > 0.4


# --- RAG retrieval ---------------------------------------------------------------------------------------------------


def test_rag_retrieves_by_prompt_only_and_within_the_user(fitted, data):
    train, test = data
    rag = fitted["rag"]
    retrieved = rag.retrieve(test.user_ids, test.prompt_emb)
    assert retrieved.shape == (len(test), 3) and (retrieved >= 0).all()
    assert (train.user_ids[retrieved] == test.user_ids[:, None]).all()
    # other responses, flipped labels: the same neighbours, in the same order, and they are what the judge gets
    rng = np.random.default_rng(1)
    scrambled = PreferenceData(
        test.ids,
        test.user_ids,
        test.prompt_emb,
        rng.normal(size=test.chosen_emb.shape),
        rng.normal(size=test.rejected_emb.shape),
    )
    for variant in (scrambled, test.swapped()):
        assert np.array_equal(rag.retrieve(variant.user_ids, variant.prompt_emb), retrieved)
        spy = RAGJudge(SpyJudge()).fit(train)
        spy.margins(variant)
        assert np.array_equal(spy.judge.neighbours, retrieved)
    # nearest = most similar prompt of the same user: a query repeating a training prompt finds that pair first,
    # while the same prompt asked by another user is never taken from this user's pairs
    row = int(np.flatnonzero(train.user_ids == "u4")[17])
    assert rag.retrieve(np.array(["u4"]), train.prompt_emb[[row]])[0, 0] == row
    assert row not in rag.retrieve(np.array(["u0"]), train.prompt_emb[[row]])[0]


class SpyJudge:
    def margins(self, data, examples, neighbours):
        self.neighbours = neighbours
        return np.zeros(len(data))


def test_rag_pads_short_histories_and_rejects_unknown_users():
    rng = np.random.default_rng(0)
    train = PreferenceData(["a", "b"], ["u", "u"], *(rng.normal(size=(2, 4)) for _ in range(3)))
    rag = RAGJudge(k=3).fit(train)
    got = rag.retrieve(np.array(["u"]), rng.normal(size=(1, 4)))
    assert sorted(got[0, :2]) == [0, 1] and got[0, 2] == -1
    with pytest.raises(UnseenUserError, match="'v'"):
        rag.retrieve(np.array(["v"]), rng.normal(size=(1, 4)))


def test_embedding_context_judge_prefers_what_the_examples_preferred():
    e = np.eye(4, dtype=np.float32)
    examples = PreferenceData(["t"], ["u"], e[[0]], e[[1]], e[[2]])
    query = PreferenceData(["q", "r"], ["u", "u"], e[[0, 0]], e[[1, 2]], e[[2, 1]])
    margins = EmbeddingContextJudge().margins(query, examples, np.array([[0], [0]]))
    np.testing.assert_allclose(margins, [2.0, -2.0])  # score(e1) = 1 - 0, score(e2) = 0 - 1


# --- unseen users -----------------------------------------------------------------------------------------------------


def test_unseen_users(fitted, data):
    test = data[1]
    stranger = PreferenceData(["s1"], ["stranger"], test.prompt_emb[:1], test.chosen_emb[:1], test.rejected_emb[:1])
    for name in ("individual", "conditional", "gpo", "rag"):
        with pytest.raises(UnseenUserError, match="'stranger'"):
            fitted[name].margins(stranger)
    prm = fitted["prm"]  # the generic "user 0" embedding
    assert np.isfinite(prm.margins(stranger)).all()
    vpl = fitted["vpl"]  # the prior mean z = 0
    np.testing.assert_array_equal(vpl.user_latent("stranger"), np.zeros(vpl.latent_dim))
    assert np.isfinite(vpl.margins(stranger)).all()


def test_prm_alpha_one_leaves_the_generic_embedding_untrained(data):
    train = data[0]
    model = PersonalizedRM(alpha=1.0, epochs=2).fit(train, np.random.default_rng(0))
    fresh = PersonalizedRM(alpha=1.0, epochs=0).fit(train, np.random.default_rng(0))
    assert np.array_equal(
        model.net_.embedding.weight[0].detach().numpy(), fresh.net_.embedding.weight[0].detach().numpy()
    )
    with pytest.raises(ValueError, match="alpha"):
        PersonalizedRM(alpha=1.5)


# --- data and registry ---------------------------------------------------------------------------------------------


class CountingEmbedder:
    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.stack([np.full(3, len(t), np.float32) for t in texts]) if texts else np.zeros((0, 3), np.float32)


def test_preference_data_embeds_each_distinct_text_once():
    records = pd.DataFrame(
        {
            "id": ["1", "2"],
            "user_id": ["a", "b"],
            "prompt": ["p", "p"],
            "chosen": ["yes", "no"],
            "rejected": ["no", "maybe"],
            "split": ["train", "train"],
        }
    )
    embedder = CountingEmbedder()
    got = preference_data(records, embedder)
    assert embedder.calls == [["maybe", "no", "p", "yes"]]
    assert got.prompt_emb.dtype == np.float32 and got.chosen_emb[:, 0].tolist() == [3, 2]
    assert got.rejected_emb[:, 0].tolist() == [2, 5] and list(got.prompts) == ["p", "p"]
    with pytest.raises(ValueError, match="prompt"):
        preference_data(records.drop(columns="prompt"), embedder)


def test_preference_data_checks_shapes():
    with pytest.raises(ValueError, match="chosen_emb"):
        PreferenceData(["a"], ["u"], np.zeros((1, 3)), np.zeros((2, 3)), np.zeros((1, 3)))


def test_registry():
    assert set(REWARD_MODELS) == {"vanilla", "individual", "conditional", "prm", "vpl", "gpo", "rag", "lora"}
    assert isinstance(make_reward_model("prm", alpha=0.3), PersonalizedRM)
    with pytest.raises(ValueError, match="known: vanilla"):
        make_reward_model("nope")
    with pytest.raises(RuntimeError, match="not fitted"):
        VanillaRM().margins(synthetic(n_train=1, n_test=1)[1])


# --- LLM-backed pieces on the tiny random model ----------------------------------------------------------------------


def text_pairs(n: int = 8) -> PreferenceData:
    rng = np.random.default_rng(0)
    return PreferenceData(
        [f"p{i}" for i in range(n)],
        ["a", "b"] * (n // 2),
        *(rng.normal(size=(n, 4)) for _ in range(3)),
        [f"Question {i} about gardening?" for i in range(n)],
        [f"A short, direct answer {i}." for i in range(n)],
        [f"A long and winding answer {i} that never gets to the point." for i in range(n)],
    )


def test_causal_lm_judge_reads_both_orders(tiny):
    model, tokenizer = tiny
    pairs = text_pairs()
    train, test = pairs.subset(np.arange(6)), pairs.subset([6, 7])
    judge = CausalLMJudge(model, tokenizer)
    seen = []
    original = judge.option_logprobs
    judge.option_logprobs = lambda text: seen.append(text) or original(text)
    rag = RAGJudge(judge).fit(train, np.random.default_rng(0))
    margins = rag.margins(test)
    assert margins.shape == (2,) and np.isfinite(margins).all()
    assert judge.order_margins_.shape == (2, 2) and np.isfinite(judge.order_margins_).all()
    np.testing.assert_allclose(margins, judge.order_margins_.mean(1))
    assert len(seen) == 4  # two orders per pair
    for i, (forward, backward) in enumerate(zip(seen[::2], seen[1::2])):
        chosen, rejected = test.chosen[i], test.rejected[i]
        assert forward.index(f"Response A:\n{chosen}") < forward.index(f"Response B:\n{rejected}")
        assert backward.index(f"Response A:\n{rejected}") < backward.index(f"Response B:\n{chosen}")
        user = test.user_ids[i]
        shown = {p for p in train.prompts if p in forward}
        assert len(shown) == 3 and all(train.user_ids[list(train.prompts).index(p)] == user for p in shown)


def test_lora_reward_model_trains_and_scores(tiny, tmp_path):
    from tiny_checkpoints import save_base

    model, tokenizer = tiny
    path = save_base(model, tokenizer, tmp_path / "base")
    pairs = text_pairs()
    rm = LoRARewardModel(path, max_steps=2, batch_size=2, lora_r=4, lora_alpha=8)
    rm.fit(pairs.subset(np.arange(6)), np.random.default_rng(0))
    assert len(rm.history_) == 2 and all(np.isfinite(rm.history_))
    table = evaluate(rm, pairs.subset([6, 7]))
    assert np.isfinite(table.margin).all()
    conditional = LoRARewardModel(path, mode="conditional")
    conditional.tokenizer_ = rm.tokenizer_
    assert tokenizer.decode(conditional.encode("b", "Hi?", "Hello.")).count("[User: b]") == 1
    assert "[User:" not in tokenizer.decode(rm.encode("b", "Hi?", "Hello."))
    with pytest.raises(ValueError, match="mode"):
        LoRARewardModel(path, mode="bogus")
