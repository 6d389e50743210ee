"""A stage killed halfway resumes without regenerating what it had finished (backend calls counted)."""

from __future__ import annotations

import pandas as pd
import pytest

from personalign.generation import GenerationCache, HFGenerator, Sampling
from personalign.models import load_base, resolve_model, write_base_checkpoint
from personalign.pair_personas import infer_pair_personas


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    write_base_checkpoint(resolve_model("tiny-random-llama"), out, seed=0)
    model, tokenizer, _ = load_base(out, "cpu", "float32")
    return model, tokenizer


def test_killed_run_resumes_from_the_cache(tiny, tmp_path):
    pairs = pd.DataFrame(
        {"id": [f"p{i}" for i in range(6)], "prompt": [f"q{i}" for i in range(6)],
         "chosen": [f"good {i}" for i in range(6)], "rejected": [f"bad {i}" for i in range(6)]}
    )
    sampling = Sampling(max_new_tokens=5)
    path = tmp_path / "cache.sqlite"
    calls: list[int] = []

    def counting(generator, fail_after=None):
        real = generator.complete

        def complete(requests, sampling, seeds):
            if fail_after is not None and len(calls) >= fail_after:
                raise Killed
            calls.append(len(requests))
            return real(requests, sampling, seeds)

        generator.complete = complete
        return generator

    first = counting(HFGenerator(*tiny, "tiny", GenerationCache(path), batch_size=4), fail_after=2)
    with pytest.raises(Killed):
        infer_pair_personas(pairs, first, sampling, base_seed=0)
    assert calls == [4, 4] and len(GenerationCache(path)) == 8

    calls.clear()
    resumed = counting(HFGenerator(*tiny, "tiny", GenerationCache(path), batch_size=4))
    result = infer_pair_personas(pairs, resumed, sampling, base_seed=0)
    assert sum(calls) == 12 - 8  # only the 4 unfinished generations are computed

    calls.clear()
    fresh = counting(HFGenerator(*tiny, "tiny", None, batch_size=4))
    assert infer_pair_personas(pairs, fresh, sampling, base_seed=0).equals(result)
    assert sum(calls) == 12
