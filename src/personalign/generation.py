"""Text generation behind one interface, with an on-disk cache keyed by (backend, model, prompt, sampling, seed)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from tqdm import tqdm


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters (as transformers `generate`: top-k, then nucleus); temperature 0 is greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 50


class Generator(Protocol):
    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int], desc: str = "") -> list[str]: ...


class GenerationCache:
    """A sqlite table of finished generations; each batch is committed, so a killed run keeps what it finished."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(backend: str, model: str, prompt: str, sampling: Sampling, seed: int) -> str:
        payload = json.dumps([backend, model, prompt, asdict(sampling), seed], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, text FROM generations WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(rows.fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?)", items.items())

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def model_fingerprint(model_dir: str | Path) -> str:
    """A short hash of a checkpoint's config and weights, so the cache never mixes two models' outputs."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*")):
        if path.suffix in {".json", ".safetensors", ".jinja"} and path.name != "personalign_base.json":
            digest.update(path.name.encode())
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


class HFGenerator:
    """Batched, left-padded, KV-cached sampling from a local causal LM; each row has its own seeded RNG,
    so a completion depends only on its (prompt, sampling, seed), not on which rows share its batch."""

    backend = "hf"

    def __init__(self, model, tokenizer, model_id: str, cache: GenerationCache | None = None, batch_size: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.cache = cache
        self.batch_size = batch_size

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int], desc: str = "generate") -> list[str]:
        """Completions for `prompts` (already chat-formatted), reusing cached ones."""
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt is required")
        keys = [GenerationCache.key(self.backend, self.model_id, p, sampling, s) for p, s in zip(prompts, seeds)]
        done = self.cache.get_many(keys) if self.cache is not None else {}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in done}.values(), key=lambda i: len(prompts[i]))
        with tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit="gen") as bar:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                texts = self._sample([prompts[i] for i in batch], sampling, [seeds[i] for i in batch])
                new = {keys[i]: t for i, t in zip(batch, texts)}
                if self.cache is not None:
                    self.cache.put_many(new)
                done.update(new)
                bar.update(len(batch))
        return [done[k] for k in keys]

    def _sample(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[str]:
        """Sample a batch; the token prefix all rows share (the system prompt) is encoded once."""
        import torch

        device = self.model.device
        rows = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        shared = _common_prefix_length(rows)
        past = None
        attention = torch.ones((len(rows), 0), dtype=torch.long, device=device)
        if shared:
            with torch.inference_mode():
                past = self.model(torch.tensor([rows[0][:shared]], device=device), use_cache=True).past_key_values
            past.batch_repeat_interleave(len(rows))
            attention = torch.ones((len(rows), shared), dtype=torch.long, device=device)
        longest = max(len(r) - shared for r in rows)
        step_ids = torch.tensor(
            [[self.tokenizer.pad_token_id] * (longest - len(r) + shared) + r[shared:] for r in rows], device=device
        )
        suffix_mask = torch.tensor([[0] * (longest - len(r) + shared) + [1] * (len(r) - shared) for r in rows])
        attention = torch.cat([attention, suffix_mask.to(device)], dim=1)
        rngs = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        eos = self.tokenizer.eos_token_id
        finished = torch.zeros(len(rows), dtype=torch.bool)
        out_tokens = []
        with torch.inference_mode():
            for _ in range(sampling.max_new_tokens):
                positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
                result = self.model(
                    input_ids=step_ids, attention_mask=attention, position_ids=positions,
                    past_key_values=past, use_cache=True, logits_to_keep=1,
                )
                past = result.past_key_values
                next_ids = _pick(result.logits[:, -1, :].float().cpu(), sampling, rngs)
                next_ids[finished] = eos
                out_tokens.append(next_ids)
                finished |= next_ids == eos
                if bool(finished.all()):
                    break
                step_ids = next_ids[:, None].to(device)
                attention = torch.cat([attention, torch.ones_like(step_ids)], dim=1)
        texts = []
        for row in torch.stack(out_tokens, dim=1).tolist():
            cut = row.index(eos) if eos in row else len(row)
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return texts


def _common_prefix_length(rows: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n if n >= 8 and len(rows) > 1 else 0


def _pick(logits, sampling: Sampling, rngs: list):
    """Next token per row: greedy, or temperature/top-k/nucleus sampling, each row drawn with its own RNG."""
    import torch

    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    k = min(sampling.top_k or logits.shape[-1], logits.shape[-1])
    top_logits, top_ids = logits.topk(k, dim=-1)
    probs = torch.softmax(top_logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= sampling.top_p, 0.0)
    picks = torch.stack([torch.multinomial(row, 1, generator=g)[0] for row, g in zip(probs, rngs)])
    return top_ids.gather(-1, picks[:, None])[:, 0]
