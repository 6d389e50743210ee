"""The hf generator on a real (tiny, randomly initialised) Llama: seeded rows, batching, and the crash-safe cache."""

from __future__ import annotations

import pytest

from personalign.lm.generation import ChatPrompt, GenerationCache, HFGenerator, Sampling, _common_prefix_length
from personalign.lm.prompts import chat


def prompts(tokenizer, n):
    return [ChatPrompt(f"Question {i}: name a colour.", "You are a helpful assistant.") for i in range(n)]


def test_same_seed_same_text_and_seeds_matter(tiny):
    model, tokenizer = tiny
    gen = HFGenerator(model, tokenizer, "tiny", batch_size=4)
    ps = prompts(tokenizer, 4)
    sampling = Sampling(max_new_tokens=10, temperature=1.0, top_p=1.0, top_k=0)
    first = gen.generate(ps, sampling, [1, 2, 3, 4])
    assert first == gen.generate(ps, sampling, [1, 2, 3, 4])
    assert first != gen.generate(ps, sampling, [5, 6, 7, 8])


def test_greedy_rows_do_not_depend_on_batch_mates(tiny):
    model, tokenizer = tiny
    ps = prompts(tokenizer, 5)
    sampling = Sampling(max_new_tokens=8, temperature=0.0)
    batched = HFGenerator(model, tokenizer, "tiny", batch_size=5).generate(ps, sampling, [0] * 5)
    single = [HFGenerator(model, tokenizer, "tiny", batch_size=1).generate([p], sampling, [0])[0] for p in ps]
    assert batched == single


def test_cache_serves_repeats_and_survives_reopening(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    path = tmp_path / "cache.sqlite"
    ps = prompts(tokenizer, 3)
    sampling = Sampling(max_new_tokens=6)
    first = HFGenerator(model, tokenizer, "tiny", GenerationCache(path), batch_size=2).generate(ps, sampling, [1, 2, 3])
    reopened = HFGenerator(model, tokenizer, "tiny", GenerationCache(path), batch_size=2)
    monkeypatch.setattr(reopened, "complete", lambda *a, **k: pytest.fail("cached prompts were generated again"))
    assert reopened.generate(ps, sampling, [1, 2, 3]) == first
    assert len(GenerationCache(path)) == 3


def test_cache_keys_separate_models_sampling_and_seeds():
    s = Sampling()
    keys = {
        GenerationCache.key("hf", "m", "p", s, 1),
        GenerationCache.key("hf", "m2", "p", s, 1),
        GenerationCache.key("hf", "m", "p", Sampling(temperature=0.5), 1),
        GenerationCache.key("hf", "m", "p", s, 2),
        GenerationCache.key("openai", "m", "p", s, 1),
    }
    assert len(keys) == 5


def test_common_prefix_leaves_each_row_a_token():
    assert _common_prefix_length([list(range(20)), list(range(20))]) == 19
    assert _common_prefix_length([list(range(20)), list(range(5)) + [99] * 15]) == 0
    assert _common_prefix_length([list(range(20))]) == 0


def test_base_models_without_a_chat_template_get_a_plain_dialogue_with_bos(tiny):
    import copy

    tokenizer = copy.deepcopy(tiny[1])
    tokenizer.chat_template = None
    prompt = chat(tokenizer, "Be brief.", "Hi?", "Axis:")
    assert prompt == f"{tokenizer.bos_token or ''}Be brief.\n\nUser: Hi?\nAssistant: Axis:"


def test_bf16_sampling_is_its_own_cache_entry_and_follows_the_machine(tiny, tmp_path, monkeypatch):
    """Issue 15: with base.dtype auto, a CPU with native bf16 samples under bf16 autocast (~1.5x faster); the
    precision is part of the cache key, so fp32 samples are never served to a bf16 run or back."""
    from personalign.core import hardware
    from personalign.lm.models import sampling_precision

    model, tokenizer = tiny
    path = tmp_path / "cache.sqlite"
    ps, sampling = prompts(tokenizer, 3), Sampling(max_new_tokens=6, temperature=0.0)
    fp32 = HFGenerator(model, tokenizer, "tiny", GenerationCache(path), batch_size=3)
    bf16 = HFGenerator(model, tokenizer, "tiny", GenerationCache(path), batch_size=3, precision="bf16")
    assert (fp32.autocast_bf16, bf16.autocast_bf16) == (False, True) and fp32.model_id != bf16.model_id
    fp32.generate(ps, sampling, [0, 0, 0])
    bf16.generate(ps, sampling, [0, 0, 0])
    assert len(GenerationCache(path)) == 6
    monkeypatch.setattr(hardware, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": {"avx512_bf16"})
    assert sampling_precision("auto", "cpu") == "bf16"
    assert sampling_precision("float32", "cpu") == sampling_precision("auto", "cuda") == "fp32"
    monkeypatch.setattr(hardware, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": {"avx2"})
    assert sampling_precision("auto", "cpu") == "fp32"
