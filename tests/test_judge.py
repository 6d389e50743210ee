"""The judges: the simulated one (deterministic, symmetric under swapped order, transitive without noise), both-orders
outcomes, the hf judge on the tiny random model and the openai judge against a real HTTP stub; caching and keys."""

from __future__ import annotations

import itertools

import pytest
from openai_stub import StubServer

from personalign.core.config import JudgeParams
from personalign.lm.generation import GenerationCache
from personalign.lm.judge import (
    JUDGE_RESULT_PREFIX,
    JUDGE_SYSTEM_PROMETHEUS,
    LABEL_ANSWER_PREFIX_G4,
    LABEL_KEY_G4,
    HFJudge,
    JudgeContext,
    JudgeError,
    OpenAIJudge,
    SimulatedJudge,
    both_orders,
    make_judge,
    parse_label_g4,
    parse_prometheus,
    repeated_trigram_share,
    single_token_ids,
)
from personalign.stats.win_rates import win_tie_loss

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


# --- both orders -------------------------------------------------------------------------------------------------


class ScriptedJudge:
    """Pure-logic stand-in: the verdict for (first, second) is looked up, so both_orders is tested in isolation."""

    def __init__(self, forward: str, backward: str):
        self.verdicts = {("x", "y"): forward, ("y", "x"): backward}

    def verdict(self, ctx, first, second, aspect):
        return self.verdicts[(first, second)]


@pytest.mark.parametrize(
    "forward, backward, outcome",
    [
        ("first", "second", "a"),
        ("second", "first", "b"),
        ("first", "first", "tie"),  # each order prefers the response shown first: position bias, not a preference
        ("second", "second", "tie"),
        ("tie", "second", "tie"),
        ("first", "tie", "tie"),
        ("tie", "tie", "tie"),
        ("invalid", "second", "invalid"),
        ("first", "invalid", "invalid"),
        ("invalid", "tie", "invalid"),
    ],
)
def test_both_orders(forward, backward, outcome):
    assert both_orders(ScriptedJudge(forward, backward), None, "x", "y", "quality") == outcome


def test_both_orders_of_the_simulated_judge_mirror_when_the_pair_is_swapped(embedder, ctx):
    judge = make(embedder)
    mirror = {"a": "b", "b": "a", "tie": "tie"}
    for x, y in itertools.combinations(RESPONSES, 2):
        for aspect in ("personalization", "quality"):
            assert both_orders(judge, ctx, y, x, aspect) == mirror[both_orders(judge, ctx, x, y, aspect)]


# --- the hf judge ----------------------------------------------------------------------------------------------

SIMPLE = JudgeContext("vegan-1", "A vegan home cook who avoids all animal products.", (), "What should I cook tonight?")


def count_forwards(model) -> tuple[list[int], object]:
    calls: list[int] = []
    return calls, model.register_forward_hook(lambda *_: calls.append(1))


def reference_logprobs(model, tokenizer, text: str, options: tuple[str, str]) -> tuple[float, float]:
    """The answer log-probs computed directly from the model, independently of HFJudge's caching and batching."""
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logprobs = model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    return tuple(float(torch.logsumexp(logprobs[single_token_ids(tokenizer, w)], 0)) for w in options)


def test_answer_tokens_are_single_tokens_spelling_the_answer(tiny):
    _, tokenizer = tiny
    for word in ("A", "B", "true", "false"):
        ids = single_token_ids(tokenizer, word)
        assert ids and all(tokenizer.decode([i]).strip() == word for i in ids)
    with pytest.raises(ValueError, match="no single token"):
        single_token_ids(tokenizer, "Response A is clearly better")


def test_hf_verdicts_are_deterministic_and_follow_the_answer_logits_in_each_order(tiny):
    model, tokenizer = tiny
    one, two = HFJudge(model, tokenizer, "tiny", tie_margin=0.0), HFJudge(model, tokenizer, "tiny", tie_margin=0.0)
    x, y = RESPONSES[0], RESPONSES[1]
    for aspect in ("personalization", "quality"):
        assert one.option_logprobs(SIMPLE, x, y, aspect) == two.option_logprobs(SIMPLE, x, y, aspect)
        verdicts = {}
        for first, second in ((x, y), (y, x)):
            text = one.prompt_text(SIMPLE, first, second, aspect)
            assert text.endswith(JUDGE_RESULT_PREFIX) and f"Response A:\n{first}\n" in text
            lp_a, lp_b = reference_logprobs(model, tokenizer, text, ("A", "B"))
            assert one.option_logprobs(SIMPLE, first, second, aspect) == pytest.approx((lp_a, lp_b), abs=1e-5)
            verdicts[first] = one.verdict(SIMPLE, first, second, aspect)
            assert verdicts[first] == ("first" if lp_a > lp_b else "second")
        expected = {("first", "second"): "a", ("second", "first"): "b"}.get((verdicts[x], verdicts[y]), "tie")
        assert both_orders(one, SIMPLE, x, y, aspect) == expected
        assert both_orders(one, SIMPLE, y, x, aspect) == {"a": "b", "b": "a", "tie": "tie"}[expected]


def test_hf_tie_margin(tiny):
    model, tokenizer = tiny
    judge = HFJudge(model, tokenizer, "tiny", tie_margin=1.0)
    lp_a, lp_b = judge.option_logprobs(SIMPLE, RESPONSES[0], RESPONSES[1], "quality")
    assert abs(lp_a - lp_b) < 1.0  # a random model barely separates the letters
    assert judge.verdict(SIMPLE, RESPONSES[0], RESPONSES[1], "quality") == "tie"


def test_hf_labels_use_the_g4_prompt_and_compare_true_with_false(tiny):
    model, tokenizer = tiny
    judge = HFJudge(model, tokenizer, "tiny")
    text = judge.prompt_text(SIMPLE, RESPONSES[0], RESPONSES[1], "label")
    assert text.endswith(LABEL_ANSWER_PREFIX_G4) and SIMPLE.persona_text in text
    assert f"### Output (a) for example 3:\n\n{RESPONSES[0]}" in text
    lp_true, lp_false = reference_logprobs(model, tokenizer, text, ("true", "false"))
    assert judge.prefers(SIMPLE, RESPONSES[0], RESPONSES[1]) is (lp_true > lp_false)


def test_hf_judgments_are_cached_across_reopening(tiny, tmp_path):
    model, tokenizer = tiny
    path = tmp_path / "judgments.sqlite"
    calls, hook = count_forwards(model)
    try:
        judge = HFJudge(model, tokenizer, "tiny", GenerationCache(path), tie_margin=0.0)
        first = judge.verdict(SIMPLE, RESPONSES[0], RESPONSES[1], "personalization")
        label = judge.prefers(SIMPLE, RESPONSES[0], RESPONSES[1])
        assert len(calls) == 2 and len(judge.cache) == 2
        assert judge.verdict(SIMPLE, RESPONSES[0], RESPONSES[1], "personalization") == first
        del judge
        again = HFJudge(model, tokenizer, "tiny", GenerationCache(path), tie_margin=0.0)
        assert again.verdict(SIMPLE, RESPONSES[0], RESPONSES[1], "personalization") == first
        assert again.prefers(SIMPLE, RESPONSES[0], RESPONSES[1]) == label
        assert len(calls) == 2
        again.verdict(SIMPLE, RESPONSES[1], RESPONSES[0], "personalization")  # the other order is its own judgment
        assert len(calls) == 3
    finally:
        hook.remove()


def test_make_judge_loads_an_hf_checkpoint(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "judge")
    tokenizer.save_pretrained(tmp_path / "judge")
    params = JudgeParams(backend="hf", model=str(tmp_path / "judge"), tie_margin=0.0)
    judge = make_judge(params, None, 0, GenerationCache(tmp_path / "j.sqlite"), device="cpu")
    assert isinstance(judge, HFJudge) and judge.model_id.startswith(f"{tmp_path / 'judge'}@")
    reference = HFJudge(model, tokenizer, "tiny", tie_margin=0.0)
    assert judge.option_logprobs(SIMPLE, RESPONSES[0], RESPONSES[1], "quality") == pytest.approx(
        reference.option_logprobs(SIMPLE, RESPONSES[0], RESPONSES[1], "quality"), abs=1e-5
    )


def test_make_judge_keeps_the_simulated_judge_by_default(embedder):
    judge = make_judge(JudgeParams(), embedder, 7)
    assert isinstance(judge, SimulatedJudge) and judge.seed == 7 and judge.tie_margin == 0.01


# --- the openai judge ------------------------------------------------------------------------------------------

KEY = "sk-judge-test-0123456789abcdef"


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("PERSONALIGN_JUDGE_KEY", KEY)
    with StubServer() as stub:
        yield stub


def openai_judge(server, cache=None, concurrency=1, max_retries=1, timeout_s=5.0) -> OpenAIJudge:
    params = JudgeParams(
        backend="openai",
        model="stub-judge",
        base_url=server.base_url,
        api_key_env="PERSONALIGN_JUDGE_KEY",
        timeout_s=timeout_s,
        max_retries=max_retries,
        max_new_tokens=64,
        concurrency=concurrency,
    )
    judge = make_judge(params, None, 0, cache)
    assert isinstance(judge, OpenAIJudge)
    return judge


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Feedback: Response A fits the persona. [RESULT] A", "A"),
        ("Feedback: B is more relevant.\n[RESULT] B\n", "B"),
        ("Feedback: ... [RESULT] (B)", "B"),
        ("[RESULT] A. ", "A"),
        ("Feedback: both are fine.", None),
        ("[RESULT] A\nActually, on reflection, B.", None),
        ("[RESULT] C", None),
        ("The answer is A", None),
        ("[RESULT] AB", None),
    ],
)
def test_prometheus_results_are_parsed_strictly(text, answer):
    assert parse_prometheus(text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        (f'```\n{{"Concise explanation": "vegan", "{LABEL_KEY_G4}": true}}\n```', "A"),
        (f'### Preferred output in JSON format for example 3:\n{{\n  "{LABEL_KEY_G4}": false\n}}', "B"),
        (f'{{"{LABEL_KEY_G4}": "true"}}', None),
        ('{"Concise explanation": "no decision"}', None),
        (f'"{LABEL_KEY_G4}": true', None),
        ("Output (a), clearly.", None),
    ],
)
def test_g4_labels_are_parsed_strictly(text, answer):
    assert parse_label_g4(text) == answer


def test_openai_verdicts_are_parsed_and_the_request_is_the_rubric(server):
    server.replies = ["Feedback: A is vegan. [RESULT] A", "Feedback: B is vegan. [RESULT] B"]
    judge = openai_judge(server)
    assert judge.verdict(SIMPLE, RESPONSES[0], RESPONSES[1], "personalization") == "first"
    assert judge.verdict(SIMPLE, RESPONSES[1], RESPONSES[0], "personalization") == "second"
    request = server.requests[0]
    assert request["model"] == "stub-judge" and request["temperature"] == 0.0 and request["seed"] == 0
    assert request["max_tokens"] == 64
    system, user = request["messages"]
    assert system["role"] == "system" and system["content"] == JUDGE_SYSTEM_PROMETHEUS
    assert SIMPLE.persona_text in user["content"] and SIMPLE.prompt in user["content"]
    assert "align with the user's specified persona" in user["content"]
    assert f"###Response A:\n{RESPONSES[0]}" in user["content"]


def test_openai_malformed_output_is_asked_again_with_another_seed(server):
    server.replies = ["I like both of them.", "Feedback: B is tastier. [RESULT] B"]
    assert openai_judge(server).verdict(SIMPLE, RESPONSES[0], RESPONSES[1], "quality") == "second"
    assert [r["seed"] for r in server.requests] == [0, 1]
    assert "high-quality" in server.requests[0]["messages"][1]["content"]


def test_openai_malformed_twice_is_invalid_and_counted(server):
    server.replies = ["no idea", "[RESULT] B", "[RESULT] maybe"]  # both orders are asked, then the malformed one again
    judge = openai_judge(server)
    outcome = both_orders(judge, SIMPLE, RESPONSES[0], RESPONSES[1], "quality")
    assert outcome == "invalid" and len(server.requests) == 3
    tally = win_tie_loss([outcome, "a", "tie"])
    assert tally["invalid"] == 1 and tally["n_valid"] == 2 and tally["win_pct"] == 50.0


def test_openai_labels_follow_g4_and_refuse_to_guess(server):
    server.replies = [f'{{"Concise explanation": "plant-based", "{LABEL_KEY_G4}": true}}', "no JSON", "still none"]
    judge = openai_judge(server)
    assert judge.prefers(SIMPLE, RESPONSES[0], RESPONSES[1]) is True
    user = server.requests[0]["messages"][1]["content"]
    assert "simulate Donald Trump's preference" in user and SIMPLE.persona_text in user
    assert f"### Output (b) for example 3:\n\n{RESPONSES[1]}" in user
    with pytest.raises(JudgeError, match="persona 'vegan-1' on prompt 'What should I cook tonight") as info:
        judge.prefers(SIMPLE, RESPONSES[2], RESPONSES[3])
    assert KEY not in str(info.value)


def test_concurrent_judging_through_bursts_makes_every_judgment_once(monkeypatch):
    """Issue 18.4: 4 requests in flight, a burst of 429s (with Retry-After), 5xx, a timeout and a malformed answer;
    every distinct judgment is answered once, none is lost, none guessed (the verdicts equal a clean serial run's)."""
    monkeypatch.setenv("PERSONALIGN_JUDGE_KEY", KEY)
    items = [
        (SIMPLE, RESPONSES[i % 4], RESPONSES[(i + 1 + i // 4) % 4], aspect)
        for i in range(12)
        for aspect in ("personalization", "quality")
        if RESPONSES[i % 4] != RESPONSES[(i + 1 + i // 4) % 4]
    ]
    items += items[:5]  # judgments asked twice are sent once
    with StubServer(timeout_sleep=1.0, delay=0.05) as stub:
        stub.judge_verdicts = True
        stub.script = ["429-retry-after"] * 5 + ["500", "timeout", "malformed"]
        concurrent = openai_judge(stub, concurrency=4, max_retries=8, timeout_s=0.5).judge_many(items)
        assert stub.max_in_flight >= 2
        assert len(stub.answered) == len(set(map(str, items))) and set(stub.answered.values()) == {1}
    with StubServer() as stub:
        stub.judge_verdicts = True
        assert openai_judge(stub).judge_many(items) == concurrent
    assert "invalid" not in concurrent


KILLED_JUDGE = """
import json, sys
from personalign.core.config import JudgeParams
from personalign.lm.generation import GenerationCache
from personalign.lm.judge import JudgeContext, make_judge
params = JudgeParams(backend="openai", model="stub-judge", base_url=sys.argv[1], api_key_env="PERSONALIGN_JUDGE_KEY",
                     timeout_s=5.0, max_retries=1, max_new_tokens=64)
judge = make_judge(params, None, 0, GenerationCache(sys.argv[2]))
ctx = JudgeContext(*json.loads(sys.argv[3]))
for first, second in json.loads(sys.argv[4]):
    print(judge.verdict(ctx, first, second, "personalization"), flush=True)
"""


def test_openai_judgments_survive_a_kill_and_the_key_stays_out_of_the_cache(server, tmp_path):
    import json
    import signal
    import subprocess
    import sys

    server.judge_verdicts = True
    path = tmp_path / "judgments.sqlite"
    pairs = [(RESPONSES[i], RESPONSES[j]) for i in range(5) for j in range(5) if i != j][:8]
    expected = [openai_judge(server).verdict(SIMPLE, x, y, "personalization") for x, y in pairs]
    assert set(expected) == {"first", "second"}
    server.requests.clear()
    ctx = [SIMPLE.persona_id, SIMPLE.persona_text, [], SIMPLE.prompt]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_JUDGE, server.base_url, str(path), json.dumps(ctx), json.dumps(pairs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    printed = [child.stdout.readline().strip() for _ in range(2)]
    child.send_signal(signal.SIGKILL)  # a real kill, mid-run
    child.wait()
    assert printed == expected[:2]
    asked_before = len(server.requests)
    resumed = openai_judge(server, GenerationCache(path))
    assert [resumed.verdict(SIMPLE, x, y, "personalization") for x, y in pairs] == expected
    assert len(server.requests) - asked_before <= len(pairs) - 2  # what the killed run judged is not asked again
    rerun = openai_judge(server, GenerationCache(path))
    asked = len(server.requests)
    assert [rerun.verdict(SIMPLE, x, y, "personalization") for x, y in pairs] == expected
    assert len(server.requests) == asked
    assert set(server.auth_headers) == {f"Bearer {KEY}"}
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert stored and KEY.encode() not in stored


# --- stage 1 with an LLM judge (issue 16.2) -----------------------------------------------------------------------

DISHES = [
    "Lentil soup with cumin and lemon.",
    "A ribeye steak with butter.",
    "Grilled salmon with rice.",
    "Chickpea curry with spinach.",
]


def _tournament_inputs(world):
    from personalign.data.build_data import Question

    personas = list(world["diet"].personas[:2])
    question = Question("diet:d0", "divergent", "What should I cook tonight?", "diet", None, "train", selected=DISHES)
    return [question], personas, {p.user_id: 0 for p in personas}


def test_stage_1_tournaments_ask_an_openai_judge_each_match(server, world):
    from personalign.data.build_data import label_pairs

    questions, personas, folds = _tournament_inputs(world)
    server.replies = [f'{{"{LABEL_KEY_G4}": {"true" if i % 3 else "false"}}}' for i in range(6)]
    records = label_pairs(questions, personas, openai_judge(server), folds, seed=0)
    assert [r["user_id"] for r in records] == [p.user_id for p in personas]
    assert all(r["chosen"] in DISHES and r["rejected"] in DISHES and r["chosen"] != r["rejected"] for r in records)
    assert len(server.requests) == 2 * (len(DISHES) - 1)  # a single-elimination tournament per persona
    with pytest.raises(ValueError, match="rejected: lowest needs the simulated judge"):
        label_pairs(questions, personas, openai_judge(server), folds, seed=0, rejected="lowest")


def test_stage_1_tournaments_run_with_the_hf_judge(tiny, tmp_path, world):
    from tiny_checkpoints import save_base

    from personalign.data.build_data import label_pairs

    questions, personas, folds = _tournament_inputs(world)
    base_dir = save_base(*tiny, tmp_path / "judge")
    judge = make_judge(JudgeParams(backend="hf", model=str(base_dir)), None, 0, device="cpu")
    records = label_pairs(questions, personas, judge, folds, seed=0)
    assert len(records) == 2 and all(r["chosen"] != r["rejected"] for r in records)
    assert records == label_pairs(questions, personas, judge, folds, seed=0)  # deterministic


def test_the_quality_filter_needs_no_judge(embedder):
    from personalign.core.config import BuildDataParams
    from personalign.data.build_data import Question, filter_candidates

    texts = [
        "Lentil soup with cumin and lemon, simmered slowly.",
        "A ribeye steak with butter and thyme tonight.",
        "Grilled salmon with rice and a green salad.",
        "Chickpea curry with spinach and warm naan bread.",
        "Soup soup soup soup soup soup soup.",
        "ok",
    ]
    question = Question(
        "diet:d0",
        "divergent",
        "What should I cook tonight?",
        "diet",
        None,
        "train",
        candidates=[{"text": t} for t in texts],
    )
    filter_candidates([question], embedder, BuildDataParams(quality_keep=4, diversity_k=3), seed=0)
    assert len(question.selected) == 3 and set(question.selected) <= set(texts[:5])
    assert question.funnel["dropped_short"] == 1


def test_a_built_in_model_name_serves_as_an_hf_judge(tmp_path, monkeypatch):
    """`judge.model: tiny-random-llama` (a name validate accepts) is written once as a checkpoint and loaded."""
    from personalign.lm.models import checkpoint_dir

    monkeypatch.chdir(tmp_path)
    judge = make_judge(JudgeParams(backend="hf", model="tiny-random-llama"), None, 0, device="cpu")
    assert isinstance(judge, HFJudge) and (tmp_path / checkpoint_dir("tiny-random-llama")).is_dir()
    ctx = JudgeContext("u", "likes tea", (), "What to drink?")
    assert judge.prefers(ctx, "Tea.", "Coffee.") in (True, False)
