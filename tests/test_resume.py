"""A stage killed halfway resumes without regenerating what it had finished (backend calls counted)."""

from __future__ import annotations

import pandas as pd
import pytest

from personalign.lm.generation import GenerationCache, HFGenerator, Sampling
from personalign.personas.pair_personas import infer_pair_personas


class Killed(Exception):
    pass


def test_killed_run_resumes_from_the_cache(tiny, tmp_path):
    pairs = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(6)],
            "prompt": [f"q{i}" for i in range(6)],
            "chosen": [f"good {i}" for i in range(6)],
            "rejected": [f"bad {i}" for i in range(6)],
        }
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


WORKER = """
import sys, time
import pandas as pd
from personalign.lm.generation import GenerationCache, HFGenerator, Sampling
from personalign.lm.models import load_base
from personalign.personas.pair_personas import infer_pair_personas

model, tokenizer, _ = load_base(sys.argv[1], "cpu", "float32")
generator = HFGenerator(model, tokenizer, "tiny", GenerationCache(sys.argv[2]), batch_size=2)
real = generator.complete
def slow(requests, sampling, seeds):
    time.sleep(0.3)  # leave the parent time to kill us between (and during) batches
    return real(requests, sampling, seeds)
generator.complete = slow
n = 20
pairs = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "prompt": [f"q{i}" for i in range(n)],
                      "chosen": [f"good {i}" for i in range(n)], "rejected": [f"bad {i}" for i in range(n)]})
infer_pair_personas(pairs, generator, Sampling(max_new_tokens=4), base_seed=0)
"""


def test_sigkill_mid_run_leaves_a_sound_cache_that_the_rerun_completes(tiny, tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    model, tokenizer = tiny
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    path = tmp_path / "cache.sqlite"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(model_dir), str(path)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and len(GenerationCache(path)) >= 6:
            break
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finished = len(GenerationCache(path))
    assert 6 <= finished < 40

    calls: list[int] = []
    generator = HFGenerator(model, tokenizer, "tiny", GenerationCache(path), batch_size=2)
    real = generator.complete
    generator.complete = lambda r, s, seeds: calls.append(len(r)) or real(r, s, seeds)
    n = 20
    pairs = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "prompt": [f"q{i}" for i in range(n)],
            "chosen": [f"good {i}" for i in range(n)],
            "rejected": [f"bad {i}" for i in range(n)],
        }
    )
    infer_pair_personas(pairs, generator, Sampling(max_new_tokens=4), base_seed=0)
    assert sum(calls) == 40 - finished
    assert len(GenerationCache(path)) == 40
