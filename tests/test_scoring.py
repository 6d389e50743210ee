"""Reference-free accuracy: the batched shared-prompt scorer against a slow per-response reference."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from personalign.evaluation.scoring import prefix_batches, score_pairs
from personalign.lm.prompts import chat

WORDS = "the a user likes short long answers with detail plain kind of food politics diet running tea maps".split()


def random_pairs(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi))))

    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "prompt": [text(2, 30) for _ in range(n)],
            "chosen": [text(1, 25) for _ in range(n)],
            "rejected": [text(1, 25) for _ in range(n)],
        }
    )


def reference_mean_logp(model, tokenizer, prompt: str, response: str) -> tuple[float, int]:
    """One full forward over prompt + response; the response tokens' summed log-prob and count."""
    head = tokenizer(chat(tokenizer, None, prompt), add_special_tokens=False)["input_ids"]
    tail = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logps = F.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    targets = ids[0, 1:]
    picked = logps[torch.arange(len(targets)), targets][len(head) - 1 :]
    return float(picked.sum()), len(tail)


def test_the_scorer_matches_the_slow_reference(tiny):
    model, tokenizer = tiny
    pairs = random_pairs(23, seed=3)
    scores = score_pairs(model, tokenizer, pairs, batch_size=5)
    assert list(scores.id) == list(pairs.id)
    for row, pair in zip(scores.itertuples(), pairs.itertuples()):
        chosen, n_chosen = reference_mean_logp(model, tokenizer, pair.prompt, pair.chosen)
        rejected, n_rejected = reference_mean_logp(model, tokenizer, pair.prompt, pair.rejected)
        assert (row.chosen_tokens, row.rejected_tokens) == (n_chosen, n_rejected)
        assert row.chosen_logp / n_chosen == pytest.approx(chosen / n_chosen, abs=1e-5)
        assert row.rejected_logp / n_rejected == pytest.approx(rejected / n_rejected, abs=1e-5)
        assert row.correct == (chosen / n_chosen > rejected / n_rejected)
    summed = score_pairs(model, tokenizer, pairs, batch_size=64, summed=True)
    assert np.allclose(summed.chosen_logp, scores.chosen_logp, atol=1e-4)
    assert (summed.correct == (summed.chosen_logp > summed.rejected_logp)).all()


def test_adapters_are_scored_on_one_base_and_disabling_gives_the_base(tiny):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]  # get_peft_model freezes the model it wraps
    pairs = random_pairs(6, seed=4)
    base = score_pairs(model, tokenizer, pairs)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    tuned = score_pairs(peft, tokenizer, pairs)
    with peft.disable_adapter():
        disabled = score_pairs(peft, tokenizer, pairs)
    assert not np.allclose(tuned.chosen_logp, base.chosen_logp)
    assert np.allclose(disabled.chosen_logp, base.chosen_logp, atol=1e-5)


def test_an_empty_response_is_refused(tiny):
    pairs = random_pairs(2, seed=5).assign(rejected=["ok", ""])
    with pytest.raises(ValueError, match="pair 'p1': an empty response cannot be scored"):
        score_pairs(*tiny, pairs)


def test_prefix_batches_cover_every_prompt_once_and_share_only_common_tokens():
    rng = np.random.default_rng(0)
    heads = [list(rng.integers(5, 50, size=int(n))) for n in (40, 3, 25)]
    prompts = [heads[i % 3] + list(rng.integers(5, 50, size=int(rng.integers(1, 9)))) for i in range(40)]
    batches = prefix_batches(prompts, batch_size=6)
    assert sorted(i for index, _ in batches for i in index) == list(range(40))
    for index, shared in batches:
        assert len(index) <= 6
        assert all(prompts[i][:shared] == prompts[index[0]][:shared] and len(prompts[i]) > shared for i in index)
    assert max(shared for _, shared in batches) >= 40  # the long head is encoded once per batch


def test_pairs_sharing_a_user_prefix_match_the_slow_reference(tiny):
    model, tokenizer = tiny
    pairs = random_pairs(14, seed=6)
    persona = {0: "A long persona text about a user who likes tea and maps " * 4, 1: "Short persona, plain answers."}
    pairs = pairs.assign(prompt=[f"{persona[i % 2]}\n\n{x}" for i, x in enumerate(pairs.prompt)])
    scores = score_pairs(model, tokenizer, pairs, batch_size=4)
    for row, pair in zip(scores.itertuples(), pairs.itertuples()):
        chosen, n_chosen = reference_mean_logp(model, tokenizer, pair.prompt, pair.chosen)
        rejected, n_rejected = reference_mean_logp(model, tokenizer, pair.prompt, pair.rejected)
        assert row.chosen_logp / n_chosen == pytest.approx(chosen / n_chosen, abs=1e-5)
        assert row.rejected_logp / n_rejected == pytest.approx(rejected / n_rejected, abs=1e-5)


def reference_soft_logp(model, tokenizer, soft, prompt: str, response: str) -> float:
    """One full forward over soft prefix + prompt + response; the response tokens' summed log-prob."""
    head = tokenizer(chat(tokenizer, None, prompt), add_special_tokens=False)["input_ids"]
    tail = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        embeds = torch.cat([soft.unsqueeze(0), model.get_input_embeddings()(ids)], dim=1)
        logps = F.log_softmax(model(inputs_embeds=embeds).logits[0, :-1].double(), dim=-1)
    lead = soft.shape[0]
    rows = torch.arange(lead + len(head) - 1, lead + len(head) + len(tail) - 1)
    return float(logps[rows, torch.tensor(tail)].sum())


def test_soft_prefixes_per_user_match_the_slow_reference(tiny):
    model, tokenizer = tiny
    pairs = random_pairs(12, seed=8).assign(user_id=[f"u{i % 3}" for i in range(12)])
    hidden = model.get_input_embeddings().weight.shape[1]
    gen = torch.Generator().manual_seed(1)
    soft = {f"u{i}": torch.randn(2, hidden, generator=gen) * 0.1 for i in range(3)}
    scores = score_pairs(model, tokenizer, pairs, batch_size=3, soft_prefixes=soft)
    assert list(scores.id) == list(pairs.id)
    for row, pair in zip(scores.itertuples(), pairs.itertuples()):
        assert row.chosen_logp == pytest.approx(
            reference_soft_logp(model, tokenizer, soft[pair.user_id], pair.prompt, pair.chosen), abs=1e-4
        )
        assert row.rejected_logp == pytest.approx(
            reference_soft_logp(model, tokenizer, soft[pair.user_id], pair.prompt, pair.rejected), abs=1e-4
        )
    plain = score_pairs(model, tokenizer, pairs, batch_size=3)
    assert not np.allclose(plain.chosen_logp, scores.chosen_logp)
    with pytest.raises(ValueError, match="user 'u2' has no soft prefix"):
        score_pairs(model, tokenizer, pairs, batch_size=3, soft_prefixes={k: soft[k] for k in ("u0", "u1")})
