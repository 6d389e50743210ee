"""The paper's own reward-model set-up (App. A.1), for a GPU: a causal LM turned into a sequence classifier with one
output (AutoModelForSequenceClassification, num_labels=1), a LoRA adapter (r=16, alpha=32, lr 3e-4 by default)
trained with trl's RewardTrainer (Bradley-Terry loss) on the pairs' texts. Three ways of using users:
`vanilla` (one adapter on all pairs), `conditional` (one adapter; the user id is prepended to every prompt) and
`individual` (one adapter per user, each from the same base)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from personalign.core.seeding import stable_seed
from personalign.lm.models import pick_device
from personalign.lm.prompts import chat
from personalign.reward_models.core import check_fitted, draw_seed
from personalign.reward_models.data import PreferenceData, UnseenUserError

MODES = ("vanilla", "conditional", "individual")
USER_PREFIX = "[User: {user}]\n"


class LoRARewardModel:
    """LoRA reward model on a local checkpoint `model_path` (a causal LM directory, e.g. stage 0's base). Texts are
    formatted as a one-turn chat (the project's `prompts.chat`), the response appended, then EOS; sequences longer
    than `max_length` tokens keep their last `max_length` tokens (so the scored end of the response survives). Set
    `max_steps` to cut training short (tests). Needs PreferenceData built with texts (`preference_data`).
    Mode `individual` keeps one trained model per user in memory: fine for small bases, heavy for 7B ones."""

    name = "lora"

    def __init__(
        self,
        model_path: str | Path,
        mode: str = "vanilla",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        learning_rate: float = 3e-4,
        epochs: float = 1.0,
        batch_size: int = 8,
        max_length: int = 1024,
        max_steps: int = -1,
        device: str = "auto",
        activation_checkpointing: bool = False,
        eval_batch_size: int = 16,
        output_dir: str | Path | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"LoRARewardModel: mode {mode!r} not in {MODES}")
        self.model_path, self.mode = str(model_path), mode
        self.lora_r, self.lora_alpha, self.lora_dropout = lora_r, lora_alpha, lora_dropout
        self.learning_rate, self.epochs, self.batch_size = learning_rate, epochs, batch_size
        self.max_length, self.max_steps, self.device = max_length, max_steps, device
        self.activation_checkpointing = activation_checkpointing
        self.eval_batch_size, self.output_dir = eval_batch_size, output_dir

    # --- text -> token ids, the same at training and at scoring ---------------------------------------------------
    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def encode(self, user: str, prompt: str, response: str) -> list[int]:
        """Token ids the reward model reads for `response` to `prompt` from `user`."""

        if self.mode == "conditional":
            prompt = USER_PREFIX.format(user=user) + prompt
        text = chat(self.tokenizer_, None, prompt) + response
        ids = self.tokenizer_(text, add_special_tokens=False)["input_ids"] + [self.tokenizer_.eos_token_id]
        return ids[-self.max_length :]

    def _dataset(self, data: PreferenceData):
        from datasets import Dataset

        return Dataset.from_dict(
            {
                "chosen_ids": [self.encode(u, p, c) for u, p, c in zip(data.user_ids, data.prompts, data.chosen)],
                "rejected_ids": [self.encode(u, p, r) for u, p, r in zip(data.user_ids, data.prompts, data.rejected)],
            }
        )

    # --- training ------------------------------------------------------------------------------------------------
    def _train_one(self, data: PreferenceData, seed: int, out: Path):
        import torch
        from peft import LoraConfig
        from transformers import AutoModelForSequenceClassification, set_seed
        from trl import RewardConfig, RewardTrainer

        device = pick_device(self.device)
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        set_seed(seed)  # the score head and the LoRA matrices are drawn here
        model = AutoModelForSequenceClassification.from_pretrained(
            self.model_path, num_labels=1, dtype=torch.bfloat16 if bf16 else torch.float32
        )
        model.config.pad_token_id = self.tokenizer_.pad_token_id
        args = RewardConfig(
            output_dir=str(out),
            per_device_train_batch_size=self.batch_size,
            num_train_epochs=self.epochs,
            max_steps=self.max_steps,
            learning_rate=self.learning_rate,
            max_length=None,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=seed,
            data_seed=seed,
            use_cpu=device == "cpu",
            bf16=bf16,
            activation_checkpointing=self.activation_checkpointing,
            disable_tqdm=True,
        )
        peft_config = LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules="all-linear",
            task_type="SEQ_CLS",
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=self._dataset(data),
            processing_class=self.tokenizer_,
            peft_config=peft_config,
        )
        trainer.train()
        self.history_.extend(h["loss"] for h in trainer.state.log_history if "loss" in h)
        return trainer.model.eval()

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> LoRARewardModel:

        seed = draw_seed(rng)
        self.tokenizer_ = self._load_tokenizer()
        self.history_: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(self.output_dir) if self.output_dir is not None else Path(tmp)
            if self.mode == "individual":
                self.models_ = {
                    u: self._train_one(train.subset(rows), stable_seed(seed, "lora", u) % 2**31, root / f"user-{i}")
                    for i, (u, rows) in enumerate(train.user_index().items())
                }
            else:
                self.models_ = {None: self._train_one(train, seed, root / "all")}
        return self

    # --- scoring -------------------------------------------------------------------------------------------------
    def rewards(self, model, sequences: list[list[int]]) -> np.ndarray:
        """The scalar reward of each token sequence (right-padded batches)."""
        import torch

        out = []
        pad_id = self.tokenizer_.pad_token_id
        for start in range(0, len(sequences), self.eval_batch_size):
            batch = sequences[start : start + self.eval_batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, seq in enumerate(batch):
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
            with torch.inference_mode():
                logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            out.append(logits[:, 0].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def margins(self, data: PreferenceData) -> np.ndarray:
        check_fitted(self, "models_")
        if self.mode == "individual":
            unknown = sorted(set(data.user_ids) - set(self.models_))
            if unknown:
                raise UnseenUserError("LoRARewardModel(individual)", unknown)
            groups = data.user_index().items()
        else:
            groups = [(None, np.arange(len(data)))]
        out = np.zeros(len(data))
        for user, rows in groups:
            part = data.subset(rows)
            chosen = [self.encode(u, p, c) for u, p, c in zip(part.user_ids, part.prompts, part.chosen)]
            rejected = [self.encode(u, p, r) for u, p, r in zip(part.user_ids, part.prompts, part.rejected)]
            model = self.models_[user]
            out[rows] = self.rewards(model, chosen) - self.rewards(model, rejected)
        return out
