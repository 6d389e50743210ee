"""The shared-prompt DPO forward gives the same completion log-probs as running prompt + completion per row."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from personalign.tuning.shared_prompt import completion_logps


def _batch(prompts, chosen, rejected):
    rows = [p + c for p, c in zip(prompts, chosen)] + [p + r for p, r in zip(prompts, rejected)]
    masks = [[0] * len(p) + [1] * len(c) for p, c in zip(prompts, chosen)]
    masks += [[0] * len(p) + [1] * len(r) for p, r in zip(prompts, rejected)]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return ids, attention, completion


def _reference(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    logps = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    return logps[torch.arange(len(targets)), targets][len(prompt) - 1 :].sum()


def test_shared_prompt_logps_match_the_concatenated_forward(tiny):
    model = tiny[0].eval()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
    chosen = [[20, 21, 22], [23, 24, 25, 26, 27], [28]]
    rejected = [[30], [31, 32], [33, 34, 35, 36, 37, 38]]
    with torch.no_grad():
        got_chosen, got_rejected = completion_logps(model, *_batch(prompts, chosen, rejected))
        want_chosen = torch.stack([_reference(model, p, c) for p, c in zip(prompts, chosen)])
        want_rejected = torch.stack([_reference(model, p, r) for p, r in zip(prompts, rejected)])
    torch.testing.assert_close(got_chosen, want_chosen, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_rejected, want_rejected, rtol=1e-4, atol=1e-4)


def test_gradients_flow_through_the_shared_prompt(tiny):
    model = tiny[0].train()
    model.zero_grad()
    chosen, rejected = completion_logps(model, *_batch([[5, 6, 7]], [[8, 9]], [[10]]))
    (chosen - rejected).sum().backward()
    embedding_grad = model.get_input_embeddings().weight.grad
    assert embedding_grad[[5, 6, 7]].abs().sum() > 0  # prompt tokens get gradient through the cached keys/values
    model.zero_grad()


def _soft_reference(model, soft, prompt, completion):
    """Log-prob of `completion` after input embeddings `soft` and `prompt`, in one plain forward."""
    ids = torch.tensor([prompt + completion])
    embeds = torch.cat([soft.unsqueeze(0), model.get_input_embeddings()(ids)], dim=1)
    logps = F.log_softmax(model(inputs_embeds=embeds).logits[0, :-1].float(), dim=-1)
    lead = soft.shape[0]
    targets = ids[0, len(prompt) :]
    rows = torch.arange(lead + len(prompt) - 1, lead + len(prompt) + len(completion) - 1)
    return logps[rows, targets].sum()


def test_soft_prefix_logps_match_a_plain_forward_after_the_embeddings(tiny):
    model = tiny[0].eval()
    hidden = model.get_input_embeddings().weight.shape[1]
    soft = torch.randn(3, 2, hidden, generator=torch.Generator().manual_seed(0)) * 0.1
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
    chosen = [[20, 21, 22], [23, 24, 25, 26, 27], [28]]
    rejected = [[30], [31, 32], [33, 34, 35, 36, 37, 38]]
    with torch.no_grad():
        got_chosen, got_rejected = completion_logps(model, *_batch(prompts, chosen, rejected), soft)
        want_chosen = torch.stack([_soft_reference(model, s, p, c) for s, p, c in zip(soft, prompts, chosen)])
        want_rejected = torch.stack([_soft_reference(model, s, p, r) for s, p, r in zip(soft, prompts, rejected)])
        plain, _ = completion_logps(model, *_batch(prompts, chosen, rejected))
    torch.testing.assert_close(got_chosen, want_chosen, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_rejected, want_rejected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got_chosen, plain)  # the prefix reaches the completions


def test_gradients_reach_the_soft_prefix(tiny):
    model = tiny[0].train()
    hidden = model.get_input_embeddings().weight.shape[1]
    soft = torch.zeros(1, 1, hidden, requires_grad=True)
    chosen, rejected = completion_logps(model, *_batch([[5, 6, 7]], [[8, 9]], [[10]]), soft)
    (chosen - rejected).sum().backward()
    assert soft.grad.abs().sum() > 0
    model.zero_grad()
