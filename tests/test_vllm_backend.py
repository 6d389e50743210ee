"""The vLLM backend: chosen only with vLLM and a GPU, the same sampling parameters as the hf backend, and (where vLLM
runs) seeded, cached generation from a real checkpoint."""

from __future__ import annotations

import pytest

from personalign.core.config import BaseParams
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
    out = cmp.generate_responses(
        str(tmp_path / "base"), str(tmp_path / "adapters"), requests, sampling, 2, str(cache), BaseParams()
    )
    assert len(out[("base", "s")]) == 2
    request = chat(tokenizer, None, "hello there")
    identity = f"{model_fingerprint(tmp_path / 'base')}@cpu/float32/merged"  # artifacts.LoadedBase.identity
    key = GenerationCache.key("hf", identity, request, sampling, 1)
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


def test_vllm_is_asked_for_and_refused_by_name_without_a_gpu(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    requests = [(cmp.System("base", "base", "none"), "s", ["hello"], [1])]
    with pytest.raises(cmp.ComparisonInputError, match="generate_judge.backend = 'vllm' needs the vllm package and"):
        cmp.generate_responses(
            "nowhere", str(tmp_path), requests, Sampling(), 2, str(tmp_path / "g.sqlite"), BaseParams(), "vllm"
        )


class RecordingEngine(VLLMGenerator):
    """Stands in for vLLM: records which engine (checkpoint, LoRA rank) and which LoRA request served each call."""

    calls: list = []

    def complete(self, requests, sampling, seeds):
        adapter = None if self.adapter is None else (self.adapter[0], self.adapter[1].parent.name)
        engine_of = "base" if "personalign-vllm-" not in self.model_dir else "sft-merged"
        RecordingEngine.calls.append((engine_of, self.max_lora_rank, adapter, len(requests)))
        return [f"{engine_of} {adapter} {seed}" for seed in seeds]

    def close(self):
        RecordingEngine.calls.append(("closed", self.model_dir == self.model_dir))


def test_vllm_serves_plain_runs_as_lora_requests_on_one_base_engine(tiny, tmp_path, monkeypatch):
    from tiny_checkpoints import save_base, save_random_adapter

    model, tokenizer = tiny
    save_base(model, tokenizer, tmp_path / "base")
    for seed, (run, adapter) in enumerate(
        [("dpo", "adapter"), ("pt", "adapter"), ("boat", "sft_adapter"), ("boat", "adapter")]
    ):
        save_random_adapter(model, tmp_path / "adapters" / run / adapter, seed=seed)
    monkeypatch.setattr(cmp, "vllm_available", lambda: True)
    monkeypatch.setattr(cmp, "VLLMGenerator", RecordingEngine)
    RecordingEngine.calls = []
    requests = [
        (cmp.System(name, run, "none"), "s", ["hi", "tea?"], [1, 2])
        for name, run in [("Boat", "boat"), ("base", "base"), ("PT", "pt"), ("DPO", "dpo")]
    ]
    out = cmp.generate_responses(
        str(tmp_path / "base"),
        str(tmp_path / "adapters"),
        requests,
        Sampling(),
        4,
        str(tmp_path / "g.sqlite"),
        BaseParams(),
        "vllm",
    )
    served = [c for c in RecordingEngine.calls if c[0] != "closed"]
    assert served == [
        ("base", 8, None, 2),  # the base itself
        ("base", 8, (1, "dpo"), 2),  # plain runs: LoRA requests on the base engine, one id each
        ("base", 8, (2, "pt"), 2),
        ("sft-merged", 8, (1, "boat"), 2),  # SFT-then-DPO: its own engine on the SFT-merged model, last
    ]
    assert out[("DPO", "s")] == ["base (1, 'dpo') 1", "base (1, 'dpo') 2"]
    assert out[("Boat", "s")][0].startswith("sft-merged")


def test_an_openai_server_samples_the_base_and_each_run_by_name(tiny, tmp_path, monkeypatch):
    """generate_judge.backend openai: the base under generators.systems.model, each run under its own name (as
    `vllm serve --lora-modules` serves adapters); an SFT-then-DPO run, two adapters, is refused by name."""
    from openai_stub import StubServer
    from tiny_checkpoints import save_random_adapter

    from personalign.core.config import GeneratorParams

    model, _ = tiny
    save_random_adapter(model, tmp_path / "adapters" / "dpo" / "adapter", seed=0)
    requests = [
        (cmp.System("base", "base", "none"), "s", ["hi", "tea?"], [1, 2]),
        (cmp.System("DPO", "dpo", "none"), "s", ["hi", "tea?"], [1, 2]),
    ]
    with StubServer() as stub:
        server = GeneratorParams(backend="openai", model="base-7b", base_url=stub.base_url, api_key_env="")
        args = ("unused", str(tmp_path / "adapters"), requests, Sampling(), 4, str(tmp_path / "g.sqlite"))
        out = cmp.generate_responses(*args, BaseParams(), "openai", server)
        assert sorted({r["model"] for r in stub.requests}) == ["base-7b", "dpo"] and len(stub.requests) == 4
        assert out[("base", "s")] != out[("DPO", "s")] and all(len(v) == 2 for v in out.values())
        assert cmp.generate_responses(*args, BaseParams(), "openai", server) == out and len(stub.requests) == 4
    save_random_adapter(model, tmp_path / "adapters" / "dpo" / "sft_adapter", seed=1)
    with pytest.raises(cmp.ComparisonInputError, match="run 'dpo' has an SFT and a DPO adapter"):
        cmp.generate_responses(*args, BaseParams(), "openai", server)
