"""Reference-free preference accuracy (WikiPersona Eq. 3): a pair is correct when the model's mean token log-prob of
y_w exceeds that of y_l given the prompt (summed log-probs as an option, for safety-style sets). Batched, no
gradients, each batch padded to its longest sequence; each prompt is encoded once for both responses, and the tokens
a batch's prompts share at the start (one user's prefix) once for the whole batch. `completions_logps` does the same
for any number of completions per prompt (multiple-choice questions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from personalign.lm.prompts import chat
from personalign.stats.preferences import prefers_chosen


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


def prefix_batches(prompts: list[list[int]], batch_size: int) -> list[tuple[list[int], int]]:
    """Batches of prompt indices, each with the number of leading tokens all its prompts share (encoded once).
    Prompts are sorted by their tokens, so the prompts carrying one user's prefix sit together; a prompt joins the
    current batch when that costs fewer tokens than starting a new one (the shared part may shrink for everyone in
    it). Every prompt keeps at least one token of its own."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    batches: list[tuple[list[int], int]] = []
    members: list[int] = []
    shared = 0
    for i in order:
        own = len(prompts[i]) - 1
        if members:
            first, common = prompts[members[0]], 0
            while common < min(shared, own) and first[common] == prompts[i][common]:
                common += 1
            if len(members) < batch_size and (shared - common) * len(members) <= common:
                members.append(i)
                shared = common
                continue
            batches.append((members, shared if len(members) > 1 else 0))
        members, shared = [i], own
    if members:
        batches.append((members, shared if len(members) > 1 else 0))
    return batches


def _user_groups(pairs: pd.DataFrame, soft_prefixes: dict | None) -> list[tuple[str | None, np.ndarray]]:
    """Row groups that may share a batch: all rows, or with soft prefixes one group per user (its prefix)."""
    if soft_prefixes is None:
        return [(None, np.arange(len(pairs)))]
    users = pairs.user_id.to_numpy()
    missing = sorted(set(users) - set(soft_prefixes))
    if missing:
        raise ValueError(f"user {missing[0]!r} has no soft prefix")
    return [(user, np.flatnonzero(users == user)) for user in sorted(set(users))]


@torch.inference_mode()
def score_pairs(
    model,
    tokenizer,
    pairs: pd.DataFrame,
    batch_size: int = 16,
    summed: bool = False,
    autocast_bf16: bool = False,
    soft_prefixes: dict | None = None,
) -> pd.DataFrame:
    """Per pair: summed log-probs and token counts of y_w and y_l, and whether the pair is scored correct (mean token
    log-prob by default, summed log-prob with `summed`), in the input order. `model` may be a PeftModel with the
    adapter to score active. `soft_prefixes` (user id → (n, hidden) input embeddings, a vpl run's) go before each
    pair's prompt."""
    encoded = encode_pairs(tokenizer, pairs)
    device = next(model.parameters()).device
    chosen_sum, rejected_sum = np.zeros(len(pairs)), np.zeros(len(pairs))
    was_training = model.training
    model.eval()
    for user, rows in _user_groups(pairs, soft_prefixes):
        soft = None if user is None else soft_prefixes[user]
        for members, shared in prefix_batches([encoded[i][0] for i in rows], batch_size):
            index = rows[members]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
                sums = completions_logps(
                    model, [encoded[i][0] for i in index], [[encoded[i][1], encoded[i][2]] for i in index], shared, soft
                )
            chosen_sum[index], rejected_sum[index] = [s[0] for s in sums], [s[1] for s in sums]
    model.train(was_training)
    chosen_tokens = np.array([len(c) for _, c, _ in encoded])
    rejected_tokens = np.array([len(r) for _, _, r in encoded])
    correct = prefers_chosen(chosen_sum, chosen_tokens, rejected_sum, rejected_tokens, "sum" if summed else "mean")
    return pd.DataFrame(
        {
            "id": list(pairs.id),
            "chosen_logp": chosen_sum,
            "chosen_tokens": chosen_tokens,
            "rejected_logp": rejected_sum,
            "rejected_tokens": rejected_tokens,
            "correct": correct,
        }
    )


@torch.inference_mode()
def completions_logps(
    model,
    prompts: list[list[int]],
    completions: list[list[list[int]]],
    shared: int = 0,
    soft: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """Summed log-probs of any number of completions per prompt (token ids), as one batch. `soft` (n, hidden): input
    embeddings before every prompt (a soft prefix). The soft prefix and the first `shared` tokens, the same in every
    prompt, run through `model` once; the rest of each prompt once, left-padded after them; each completion attends
    to its prompt's KV cache, right-padded, positions continuing after it. Returns one array per prompt, in the order
    of its completions."""
    device = next(model.parameters()).device
    if any(len(p) <= shared for p in prompts) or any(not c for group in completions for c in group):
        raise ValueError("an empty prompt or completion cannot be scored")
    past = None
    lead = shared if soft is None else shared + soft.shape[0]  # positions in the once-run part
    if soft is not None:
        embeds = model.get_input_embeddings()(torch.tensor([prompts[0][:shared]], dtype=torch.long, device=device))
        embeds = torch.cat([soft.to(device=device, dtype=embeds.dtype).unsqueeze(0), embeds], dim=1)
        past = model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1).past_key_values
        past.batch_repeat_interleave(len(prompts))
    elif shared:
        past = model(
            input_ids=torch.tensor([prompts[0][:shared]], device=device), use_cache=True, logits_to_keep=1
        ).past_key_values
        past.batch_repeat_interleave(len(prompts))
    rests = [p[shared:] for p in prompts]
    width = max(map(len, rests))
    rest_ids = torch.zeros((len(rests), width), dtype=torch.long)
    prompt_mask = torch.ones((len(rests), lead + width), dtype=torch.long)
    rest_pos = torch.zeros((len(rests), width), dtype=torch.long)
    for i, rest in enumerate(rests):
        rest_ids[i, width - len(rest) :] = torch.tensor(rest)
        prompt_mask[i, lead : lead + width - len(rest)] = 0
        rest_pos[i, width - len(rest) :] = torch.arange(lead, lead + len(rest))
    prompt_mask = prompt_mask.to(device)
    out = model(
        input_ids=rest_ids.to(device),
        attention_mask=prompt_mask,
        position_ids=rest_pos.to(device),
        past_key_values=past,
        use_cache=True,
        logits_to_keep=1,
    )
    owner = torch.tensor([i for i, group in enumerate(completions) for _ in group], device=device)
    cache = out.past_key_values
    cache.reorder_cache(owner)  # one cache row per completion, its prompt's

    rows = [c for group in completions for c in group]
    span = max(map(len, rows))
    completion_ids = torch.zeros((len(rows), span), dtype=torch.long)
    valid = torch.zeros((len(rows), span), dtype=torch.bool)
    for i, row in enumerate(rows):
        completion_ids[i, : len(row)] = torch.tensor(row)
        valid[i, : len(row)] = True
    completion_ids, valid = completion_ids.to(device), valid.to(device)
    prompt_len = torch.tensor(list(map(len, prompts)), device=device) + (lead - shared)
    positions = prompt_len[owner].unsqueeze(1) + torch.arange(span, device=device)
    mask = torch.cat([prompt_mask[owner], valid.long()], dim=1)
    logits = model(
        input_ids=completion_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
    ).logits

    # Token j of a completion is predicted by the last prompt position (j = 0) or by completion token j - 1.
    predictors = torch.cat([out.logits[owner][:, -1:], logits[:, :-1]], dim=1).float()
    picked = torch.gather(predictors, 2, completion_ids.unsqueeze(2)).squeeze(2)
    token_logps = picked - torch.logsumexp(predictors, dim=-1)
    summed = (token_logps * valid).sum(dim=1).double().cpu().numpy()
    return np.split(summed, np.cumsum([len(group) for group in completions])[:-1])
