"""Stage 0's checkpoint: a hub or local model kept in its own dtype, a hub model pinned and its commit recorded."""

from __future__ import annotations

import copy
import json

import torch
import transformers

from personalign.lm.models import ModelSpec, resolve_model, write_base_checkpoint


def test_a_local_bf16_model_stays_bf16_and_a_hub_model_records_its_revision(tiny, tmp_path, monkeypatch):
    """Issue 18.2: stage 0 does not double a big checkpoint to float32, and pins what it read."""
    model, tokenizer = tiny
    source = tmp_path / "bf16"
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(source)  # the shared fixture stays float32
    tokenizer.save_pretrained(source)
    info = write_base_checkpoint(resolve_model(str(source)), tmp_path / "base", seed=0)
    saved = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype="auto")
    assert info["dtype"] == "bfloat16" and next(saved.parameters()).dtype == torch.bfloat16

    asked = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def from_hub(name, **kwargs):  # the hub, served from the local copy; records what was asked
        asked.append(kwargs)
        loaded = real(source, **{k: v for k, v in kwargs.items() if k != "revision"})
        loaded.config._commit_hash = "0123abcd"
        return loaded

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_hub)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda name, **kw: tokenizer)
    info = write_base_checkpoint(ModelSpec("hub", "org/model"), tmp_path / "hub", seed=0, revision="v1.0")
    assert asked == [{"dtype": "auto", "revision": "v1.0"}]
    assert info["revision"] == "0123abcd" and info["dtype"] == "bfloat16"
    assert json.loads((tmp_path / "hub" / "personalign_base.json").read_text())["revision"] == "0123abcd"
