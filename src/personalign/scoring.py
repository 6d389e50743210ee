"""Reference-free preference accuracy (WikiPersona Eq. 3): a pair is correct when the model's mean token log-prob of
y_w exceeds that of y_l given the prompt (summed log-probs as an option, for safety-style sets). Batched, no
gradients, each batch padded to its longest sequence, each prompt encoded once per pair (`shared_prompt`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from personalign.prompts import chat
from personalign.shared_prompt import completion_logps


def encode_pairs(tokenizer, pairs: pd.DataFrame) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, chosen, rejected) token ids per pair: the prompt in the model's chat format, ending where the
    assistant's answer starts; each response as the model would continue it."""
    encoded = []
    for row in pairs.itertuples():
        prompt = tokenizer(chat(tokenizer, None, row.prompt), add_special_tokens=False)["input_ids"]
        chosen = tokenizer(row.chosen, add_special_tokens=False)["input_ids"]
        rejected = tokenizer(row.rejected, add_special_tokens=False)["input_ids"]
        if not chosen or not rejected:
            raise ValueError(f"pair {row.id!r}: an empty response cannot be scored")
        encoded.append((prompt, chosen, rejected))
    return encoded


def _collate(batch: list[tuple[list[int], list[int], list[int]]], pad_id: int):
    """trl's DPO layout: rows 0..B-1 prompt+chosen, B..2B-1 prompt+rejected, right-padded, with completion masks."""
    rows = [p + c for p, c, _ in batch] + [p + r for p, _, r in batch]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in batch] + [[0] * len(p) + [1] * len(r) for p, _, r in batch]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        completion[i, : len(mask)] = torch.tensor(mask)
    return ids, attention, completion


@torch.inference_mode()
def score_pairs(model, tokenizer, pairs: pd.DataFrame, batch_size: int = 16, summed: bool = False,
                autocast_bf16: bool = False) -> pd.DataFrame:
    """Per pair: summed log-probs and token counts of y_w and y_l, and whether the pair is scored correct (mean token
    log-prob by default, summed log-prob with `summed`). Pairs are batched in order of length (less padding) and
    returned in the input order. `model` may be a PeftModel with the adapter to score active."""
    encoded = encode_pairs(tokenizer, pairs)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = np.argsort([len(p) + max(len(c), len(r)) for p, c, r in encoded], kind="stable")
    chosen_sum, rejected_sum = np.zeros(len(pairs)), np.zeros(len(pairs))
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        index = order[start: start + batch_size]
        ids, attention, completion = (t.to(device) for t in _collate([encoded[i] for i in index], pad_id))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            chosen, rejected = completion_logps(model, ids, attention, completion)
        chosen_sum[index], rejected_sum[index] = chosen.double().cpu().numpy(), rejected.double().cpu().numpy()
    model.train(was_training)
    chosen_tokens = np.array([len(c) for _, c, _ in encoded])
    rejected_tokens = np.array([len(r) for _, _, r in encoded])
    if summed:
        correct = chosen_sum > rejected_sum
    else:
        correct = chosen_sum / chosen_tokens > rejected_sum / rejected_tokens
    return pd.DataFrame({"id": list(pairs.id), "chosen_logp": chosen_sum, "chosen_tokens": chosen_tokens,
                         "rejected_logp": rejected_sum, "rejected_tokens": rejected_tokens, "correct": correct})
