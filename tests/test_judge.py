"""The simulated judge: deterministic, symmetric under swapped order, transitive without noise."""

from __future__ import annotations

import itertools

import pytest

from personalign.judge import JudgeContext, SimulatedJudge, repeated_trigram_share

RESPONSES = [
    "Try a chickpea and spinach curry with coconut milk; it is entirely plant-based and ready in twenty minutes.",
    "A grilled ribeye with butter and a side of bacon-wrapped asparagus makes a hearty low-carb dinner.",
    "Baked salmon with olive oil, lemon, tomatoes, olives and a glass of red wine is a classic choice.",
    "Order a pizza and relax; cooking on a weeknight is overrated.",
    "Make a big pot of lentil soup with carrots and cumin, and freeze half for later in the week.",
]


@pytest.fixture()
def ctx(world):
    diet = world["diet"].personas
    return JudgeContext(diet[0].user_id, diet[0].gold, tuple(p.gold for p in diet[1:]), "What should I cook tonight?")


def make(embedder, noise=0.0, seed=0):
    return SimulatedJudge(embedder, noise=noise, quality_weight=0.5, tie_margin=0.01, seed=seed)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_verdicts_are_deterministic(embedder, ctx, noise):
    a, b = make(embedder, noise, seed=3), make(embedder, noise, seed=3)
    assert list(a.utilities(ctx, RESPONSES)) == list(b.utilities(ctx, RESPONSES))
    assert [a.prefers(ctx, x, y) for x, y in itertools.permutations(RESPONSES, 2)] == [
        b.prefers(ctx, x, y) for x, y in itertools.permutations(RESPONSES, 2)
    ]


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_swapping_the_order_swaps_the_verdict(embedder, ctx, noise):
    judge = make(embedder, noise)
    for x, y in itertools.combinations(RESPONSES, 2):
        assert judge.prefers(ctx, x, y) != judge.prefers(ctx, y, x)
        for aspect in ("personalization", "quality"):
            v, w = judge.verdict(ctx, x, y, aspect), judge.verdict(ctx, y, x, aspect)
            assert {v, w} in ({"tie"}, {"first", "second"})


def test_noise_free_preferences_are_transitive(embedder, ctx):
    judge = make(embedder, 0.0)
    for x, y, z in itertools.permutations(RESPONSES, 3):
        if judge.prefers(ctx, x, y) and judge.prefers(ctx, y, z):
            assert judge.prefers(ctx, x, z)


def test_the_vegan_persona_prefers_the_plant_based_answer(embedder, world):
    vegan = world["diet"].personas[0]
    assert vegan.category == "vegan"
    ctx = JudgeContext(vegan.user_id, vegan.gold, tuple(p.gold for p in world["diet"].personas[1:]), "Dinner idea?")
    judge = make(embedder)
    assert judge.verdict(ctx, RESPONSES[0], RESPONSES[1], "personalization") == "first"


def test_noise_changes_some_preferences_and_depends_on_the_seed(embedder, ctx):
    clean = make(embedder, 0.0).utilities(ctx, RESPONSES)
    noisy = [make(embedder, 5.0, seed=s).utilities(ctx, RESPONSES) for s in (1, 2)]
    assert list(noisy[0].argsort()) != list(clean.argsort()) or list(noisy[1].argsort()) != list(clean.argsort())
    assert list(noisy[0]) != list(noisy[1])


def test_tie_margin_makes_equal_responses_tie(embedder, ctx):
    judge = make(embedder)
    assert judge.verdict(ctx, RESPONSES[0], RESPONSES[0], "personalization") == "tie"
    assert judge.verdict(ctx, RESPONSES[0], RESPONSES[0], "quality") == "tie"


def test_degeneration_penalty():
    assert repeated_trigram_share("a b") == 0.0
    assert repeated_trigram_share("one two three four") == 0.0
    assert repeated_trigram_share("la la la la la la") == pytest.approx(0.75)


def test_repetitive_answers_lose_quality(embedder):
    judge = make(embedder)
    good = "Roast vegetables with olive oil and herbs, then serve them over couscous."
    bad = "roast vegetables roast vegetables roast vegetables roast vegetables roast vegetables"
    q = judge.quality("How do I roast vegetables?", [good, bad])
    assert q[0] > q[1]
