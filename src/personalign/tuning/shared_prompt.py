"""DPO with the prompt encoded once per pair: chosen and rejected share their prompt, so its keys and values are
computed once (with gradients) and both completions attend to them, instead of running prompt + completion twice.
On persona- and prefix-heavy prompts (hundreds of tokens before a short response) this nearly halves the work."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def completion_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    soft: torch.Tensor | None = None,
):
    """Summed completion log-probs of trl's collated DPO batch (rows 0..B-1 chosen, B..2B-1 rejected, each row the
    right-padded prompt + completion), with each prompt run through `model` once. `soft` (B, n, hidden): n input
    embeddings placed before pair i's prompt (a soft prefix, e.g. `vpl`), with gradients. Returns (chosen, rejected)."""
    pairs = input_ids.shape[0] // 2
    device = input_ids.device
    lead = 0 if soft is None else soft.shape[1]
    prompt_len = completion_mask.int().argmax(dim=1)[:pairs] + lead
    completion_len = completion_mask.sum(dim=1)
    width = int(prompt_len.max())
    span = int(completion_len.max())

    # Prompts (after their soft prefix), left-padded so that every row's last prompt token sits in the last column.
    columns = torch.arange(width, device=device)
    start = (width - prompt_len).unsqueeze(1)
    prompt_mask = columns >= start
    prompt_pos = (columns - start).clamp(min=0)
    source = (prompt_pos - lead).clamp(min=0)
    prompt_ids = torch.where(prompt_mask, input_ids[:pairs].gather(1, source), 0)
    if soft is None:
        inputs = {"input_ids": prompt_ids}
    else:
        embeds = model.get_input_embeddings()(prompt_ids)
        slot = (prompt_pos < lead) & prompt_mask
        index = prompt_pos.clamp(max=lead - 1).unsqueeze(2).expand(-1, -1, embeds.shape[2])
        placed = soft.to(device=embeds.device, dtype=embeds.dtype).gather(1, index)
        inputs = {"inputs_embeds": torch.where(slot.unsqueeze(2), placed, embeds)}
    out = model(**inputs, attention_mask=prompt_mask.long(), position_ids=prompt_pos, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(2)  # row order: chosen 0, rejected 0, chosen 1, rejected 1, ...

    # Completions, right-padded, interleaved to match the cache, positions continuing after each prompt.
    order = torch.stack([torch.arange(pairs, device=device), torch.arange(pairs, device=device) + pairs], 1).flatten()
    offsets = prompt_len.repeat_interleave(2)
    steps = torch.arange(span, device=device)
    completion_ids = input_ids[order].gather(1, (offsets.unsqueeze(1) - lead + steps).clamp(max=input_ids.shape[1] - 1))
    valid = steps < completion_len[order].unsqueeze(1)
    completion_ids = torch.where(valid, completion_ids, 0)
    mask = torch.cat([prompt_mask.long().repeat_interleave(2, dim=0), valid.long()], dim=1)
    positions = offsets.unsqueeze(1) + steps
    logits = model(
        input_ids=completion_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
    ).logits

    # Token j of a completion is predicted by the last prompt position (j = 0) or by completion token j - 1.
    predictors = torch.cat([out.logits[:, -1:].repeat_interleave(2, dim=0), logits[:, :-1]], dim=1)
    token_logps = torch.gather(F.log_softmax(predictors.float(), dim=-1), 2, completion_ids.unsqueeze(2)).squeeze(2)
    summed = (token_logps * valid).sum(dim=1)
    return summed[0::2], summed[1::2]


def shared_prompt_trainer_class():
    """trl's DPOTrainer with the sigmoid loss computed from `completion_logps`. trl's own concatenated forward is used
    under a distributed launcher (DDP allows one forward per backward), with gradient checkpointing (which turns the
    KV cache off) and for other loss types. A trainer given a `soft_prefix` module (personas.soft_prefix) places
    each pair's user's soft prefix before the policy's prompt and adds `kl_weight` times its KL term to the loss; the
    batches carry each pair's `user_index` for it."""
    from trl import DPOTrainer
    from trl.trainer.utils import use_adapter

    class SharedPromptDPOTrainer(DPOTrainer):
        soft_prefix = None
        kl_weight = 0.0

        def _shared(self) -> bool:
            return (
                self.accelerator.num_processes == 1
                and not self.args.gradient_checkpointing
                and list(self.loss_types) == ["sigmoid"]
                and self.ld_alpha is None
            )

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "user_index" not in self._signature_columns:
                self._signature_columns.append("user_index")

        def get_train_dataloader(self):
            collate = self.data_collator
            if self.soft_prefix is not None and not isinstance(collate, _WithUserIndex):
                self.data_collator = _WithUserIndex(collate)
            return super().get_train_dataloader()

        def _reference_logps(self, inputs):
            unwrapped = self.accelerator.unwrap_model(self.model)
            with (
                torch.no_grad(),
                use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None),
            ):
                return completion_logps(
                    self.model, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
                )

        def compute_ref_log_probs(self, model, inputs):
            if not self._shared() or self.ref_model is not None:
                return super().compute_ref_log_probs(model, inputs)
            with self.accelerator.autocast():
                return self._reference_logps(inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            if not self._shared() or self.ref_model is not None or return_outputs:
                if self.soft_prefix is not None:
                    raise ValueError(
                        "a soft prefix trains only in one process without gradient checkpointing, "
                        "with the sigmoid DPO loss"
                    )
                return super()._compute_loss(model, inputs, return_outputs)
            mode = "train" if self.model.training else "eval"
            soft, kl = (None, None) if self.soft_prefix is None else self.soft_prefix(inputs["user_index"])
            chosen, rejected = completion_logps(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"], soft
            )
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self._reference_logps(inputs)
            chosen_rewards = self.beta * (chosen - ref_chosen)
            rejected_rewards = self.beta * (rejected - ref_rejected)
            loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
            chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
            metrics = {
                "rewards/chosen": chosen_rewards,
                "rewards/rejected": rejected_rewards,
                "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
                "rewards/margins": chosen_rewards - rejected_rewards,
                "logps/chosen": chosen.detach(),
                "logps/rejected": rejected.detach(),
            }
            if kl is not None:
                loss = loss + self.kl_weight * kl
                metrics["soft_prefix/kl"] = kl.detach()
            for name, value in metrics.items():
                self._metrics[mode][name].append(self.accelerator.gather(value).mean().item())
            return loss

    return SharedPromptDPOTrainer


class _WithUserIndex:
    """A collator that also passes each example's `user_index` (the row of its user in the soft prefix's pools)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, examples):
        batch = self.collate(examples)
        batch["user_index"] = torch.tensor([example["user_index"] for example in examples])
        return batch
