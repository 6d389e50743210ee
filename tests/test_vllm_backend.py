"""The vLLM backend: chosen only with vLLM and a GPU, the same sampling parameters as the hf backend, and (where vLLM
runs) seeded, cached generation from a real checkpoint."""

from __future__ import annotations

import pytest

from personalign.evaluation import comparisons as cmp
from personalign.lm import generation
from personalign.lm.artifacts import model_fingerprint
from personalign.lm.generation import (
    ChatPrompt,
    GenerationCache,
    Sampling,
    VLLMGenerator,
    chat,
    vllm_available,
    vllm_sampling_kwargs,
)


def test_sampling_maps_onto_vllm_parameters():
    kwargs = vllm_sampling_kwargs(Sampling(max_new_tokens=40, temperature=0.7, top_p=0.9, top_k=0), seed=123)
    assert kwargs == {"temperature": 0.7, "top_p": 0.9, "top_k": -1, "max_tokens": 40, "seed": 123}
    assert vllm_sampling_kwargs(Sampling(top_k=50), seed=1)["top_k"] == 50
    greedy = vllm_sampling_kwargs(Sampling(temperature=0.0), seed=7)
    assert greedy["temperature"] == 0.0 and greedy["seed"] == 7


def test_without_a_gpu_generation_goes_through_the_hf_backend(tiny, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only machine, with or without vLLM
    assert not vllm_available()
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")

    def refuse(*_, **__):
        raise AssertionError("the vllm backend was used without a GPU")

    monkeypatch.setattr(generation.VLLMGenerator, "__init__", refuse)
    requests = [(cmp.System("base", "base", "none"), "s", ["hello there", "tell me about tea"], [1, 2])]
    sampling = Sampling(max_new_tokens=4, temperature=1.0, top_p=1.0, top_k=0)
    cache = tmp_path / "gen.sqlite"
    out = cmp.generate_responses(str(tmp_path / "base"), str(tmp_path / "adapters"), requests, sampling, 2, str(cache))
    assert len(out[("base", "s")]) == 2
    request = chat(tokenizer, None, "hello there")
    key = GenerationCache.key("hf", model_fingerprint(tmp_path / "base"), request, sampling, 1)
    assert GenerationCache(cache).get_many([key]) == {key: out[("base", "s")][0]}


@pytest.mark.skipif(not vllm_available(), reason="needs vLLM and a CUDA GPU")
def test_vllm_generation_is_seeded_and_cached(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    ps = [ChatPrompt(f"Question {i}: name a colour.", "You are a helpful assistant.") for i in range(4)]
    sampling = Sampling(max_new_tokens=8, temperature=1.0, top_p=1.0, top_k=0)
    gen = VLLMGenerator(tmp_path / "model", tokenizer, "tiny", batch_size=4)
    try:
        first = gen.generate(ps, sampling, [1, 2, 3, 4])
        assert first == gen.generate(ps, sampling, [1, 2, 3, 4])
        gen.cache = GenerationCache(tmp_path / "gen.sqlite")
        assert gen.generate(ps, sampling, [1, 2, 3, 4]) == first

        def refuse(*_, **__):
            raise AssertionError("a cached generation was sampled again")

        monkeypatch.setattr(gen, "complete", refuse)
        assert gen.generate(ps, sampling, [1, 2, 3, 4]) == first
    finally:
        gen.close()
