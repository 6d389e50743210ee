"""Text generation behind one interface, with an on-disk cache keyed by (backend, model, prompt, sampling, seed)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol

import httpx
from tqdm import tqdm

from personalign.lm.artifacts import model_fingerprint
from personalign.lm.models import checkpoint_dir, load_base, sampling_precision
from personalign.lm.prompts import chat


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters (as transformers `generate`: top-k, then nucleus); temperature 0 is greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 50


@dataclass(frozen=True)
class ChatPrompt:
    """A request: the user message, an optional system message, and (hf only) the start of the assistant turn."""

    user: str
    system: str | None = None
    prefix: str = ""


class GenerationError(RuntimeError):
    """A backend failed for good; the message names the endpoint and the status, never the key."""


class PartialCompletion(Exception):
    """A batch in which some requests failed for good: `finished` (position in the batch -> text) is cached before
    `error` is raised."""

    def __init__(self, error: GenerationError, finished: dict[int, str]):
        super().__init__(str(error))
        self.error = error
        self.finished = finished


class Generator(Protocol):
    backend: str
    model_id: str

    def generate(
        self, prompts: list[ChatPrompt], sampling: Sampling, seeds: list[int], desc: str = ""
    ) -> list[str]: ...


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
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?)", items.items())
        except sqlite3.OperationalError as exc:  # disk full, read-only file system: the finished entries are kept
            raise GenerationError(
                f"cache {self.path}: {exc}; what was stored before this batch is kept (free space "
                "or make it writable, then rerun)"
            ) from None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


class CachedGenerator:
    """Shared by the backends: look every request up in the cache, complete the rest in batches, store each batch
    as soon as it is done (so a killed run loses at most one batch), and show a progress bar."""

    backend = "base"

    def __init__(self, model_id: str, cache: GenerationCache | None, batch_size: int):
        self.model_id = model_id
        self.cache = cache
        self.batch_size = batch_size
        self.cache_identity = model_id  # the model part of a cache key (an endpoint adds its URL)

    def request_text(self, prompt: ChatPrompt) -> str:
        """What the backend is sent for `prompt` (the cache key's prompt part)."""
        raise NotImplementedError

    def complete(self, requests: list[str], sampling: Sampling, seeds: list[int]) -> list[str]:
        """Completions for a batch of uncached requests."""
        raise NotImplementedError

    def generate(
        self, prompts: list[ChatPrompt], sampling: Sampling, seeds: list[int], desc: str = "generate"
    ) -> list[str]:
        """One completion per prompt, seeded per row, reusing cached ones."""
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt is required")
        requests = [self.request_text(p) for p in prompts]
        keys = [GenerationCache.key(self.backend, self.cache_identity, r, sampling, s) for r, s in zip(requests, seeds)]
        done = self.cache.get_many(keys) if self.cache is not None else {}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in done}.values(), key=lambda i: len(requests[i]))
        with tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit="gen") as bar:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                try:
                    texts = self.complete([requests[i] for i in batch], sampling, [seeds[i] for i in batch])
                except PartialCompletion as failure:  # keep what the batch finished before the error surfaces
                    if self.cache is not None:
                        self.cache.put_many({keys[batch[j]]: t for j, t in failure.finished.items()})
                    raise failure.error from None
                new = {keys[i]: t for i, t in zip(batch, texts)}
                if self.cache is not None:
                    self.cache.put_many(new)
                done.update(new)
                bar.update(len(batch))
        return [done[k] for k in keys]


class HFGenerator(CachedGenerator):
    """Batched, left-padded, KV-cached sampling from a local causal LM; each row has its own seeded RNG,
    so a completion depends only on its (prompt, sampling, seed), not on which rows share its batch."""

    backend = "hf"

    def __init__(
        self,
        model,
        tokenizer,
        model_id: str,
        cache: GenerationCache | None = None,
        batch_size: int = 32,
        precision: str = "fp32",
    ):
        """`precision` "bf16" samples an fp32 model under bf16 autocast (`models.sampling_precision`); it is part of
        the cache key, so a cache never serves one precision's samples to the other."""
        import torch

        self.autocast_bf16 = precision == "bf16" and next(model.parameters()).dtype == torch.float32
        super().__init__(model_id + ("|bf16-autocast" if self.autocast_bf16 else ""), cache, batch_size)
        self.model = model
        self.tokenizer = tokenizer

    def request_text(self, prompt: ChatPrompt) -> str:
        return chat(self.tokenizer, prompt.system, prompt.user, prompt.prefix)

    def complete(self, requests: list[str], sampling: Sampling, seeds: list[int]) -> list[str]:
        """Sample a batch; the token prefix all rows share (the system prompt) is encoded once."""
        import torch

        device = self.model.device
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            out_tokens = self._sample(requests, sampling, seeds, device)
        eos = self.tokenizer.eos_token_id
        texts = []
        for row in torch.stack(out_tokens, dim=1).tolist():
            cut = row.index(eos) if eos in row else len(row)
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return texts

    def _sample(self, requests: list[str], sampling: Sampling, seeds: list[int], device) -> list:
        """The new tokens of each row, one tensor per step (the caller holds inference mode and autocast)."""
        import torch

        rows = [self.tokenizer(r, add_special_tokens=False)["input_ids"] for r in requests]
        shared = _common_prefix_length(rows)
        past = None
        attention = torch.ones((len(rows), 0), dtype=torch.long, device=device)
        if shared:
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
        for _ in range(sampling.max_new_tokens):
            positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
            result = self.model(
                input_ids=step_ids,
                attention_mask=attention,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
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
        return out_tokens


class OpenAIGenerator(CachedGenerator):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, a vLLM or llama.cpp server), `concurrency` requests
    in flight at once (httpx, one connection pool). The key is read from the environment variable `api_key_env` at
    request time and is never part of a cache key, log or message; the cache key holds the endpoint's URL, so two
    servers with the same model name never share outputs. Timeouts, connection errors, malformed JSON and HTTP
    429/5xx are retried up to `max_retries` times, after the server's Retry-After when it sends one (capped at
    `max_wait_s`), else after an exponential backoff; then, or at once on any other HTTP error, GenerationError
    names the endpoint and status, and every request of the batch that did finish is cached first. `api_key_env` ""
    is an endpoint without a key; a named variable that is not set stops here, before any request. Redirects are
    never followed, so the key is only ever sent to `base_url`'s host."""

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str,
        cache: GenerationCache | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        concurrency: int = 1,
        max_wait_s: float = 60.0,
    ):
        if api_key_env and not os.environ.get(api_key_env):
            raise GenerationError(
                f"openai backend ({base_url}): the environment variable {api_key_env} holding the "
                'API key is not set; export it, or set api_key_env: "" for an endpoint '
                "without a key"
            )
        # a few batches' worth of requests between cache commits: a kill loses at most one batch
        super().__init__(model, cache, batch_size=4 * concurrency)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.cache_identity = f"{model} at {base_url.rstrip('/')}"
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.concurrency = concurrency
        self.client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def request_text(self, prompt: ChatPrompt) -> str:
        if prompt.prefix:
            raise ValueError("the openai backend cannot continue a partial assistant turn (ChatPrompt.prefix)")
        messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
            {"role": "user", "content": prompt.user}
        ]
        return json.dumps(messages, ensure_ascii=False)

    def complete(self, requests: list[str], sampling: Sampling, seeds: list[int]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._post, json.loads(r), sampling, seed) for r, seed in zip(requests, seeds)]
        finished, errors = {}, []
        for i, future in enumerate(futures):
            try:
                finished[i] = future.result()
            except GenerationError as error:
                errors.append(error)
        if errors:
            raise PartialCompletion(errors[0], finished)
        return [finished[i] for i in range(len(requests))]

    def _wait_s(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before retry `attempt`: the server's Retry-After (seconds or an HTTP date), else backoff."""
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                wait = float(retry_after)
            except ValueError:
                try:
                    wait = (parsedate_to_datetime(retry_after) - datetime.now(timezone.utc)).total_seconds()
                except (TypeError, ValueError):
                    wait = self.backoff_s * 2 ** (attempt - 1)
            return min(max(wait, 0.0), self.max_wait_s)
        return min(self.backoff_s * 2 ** (attempt - 1), 30.0)

    def _post(self, messages: list[dict], sampling: Sampling, seed: int) -> str:
        payload = {
            "model": self.model_id,
            "messages": messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": seed,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.api_key_env, '')}"
        last, response = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._wait_s(attempt, response))
            response = None
            try:
                response = self.client.post(self.url, content=json.dumps(payload).encode(), headers=headers)
            except httpx.TimeoutException:
                last = "timeout"
                continue
            except httpx.TransportError as exc:
                last = f"connection error ({type(exc).__name__})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 300:
                moved = " (a redirect: not followed, so the key never leaves this host)" if response.is_redirect else ""
                raise GenerationError(
                    f"openai backend: {self.url} answered HTTP {response.status_code}{moved}; not retried"
                )
            try:
                text = response.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                last = "malformed JSON response"
                continue
            if isinstance(text, str):
                return text.strip()
            last = "malformed JSON response"
        raise GenerationError(
            f"openai backend: {self.url} failed after {self.max_retries + 1} tries (last: {last}); "
            "everything generated so far is cached"
        )


def vllm_available() -> bool:
    """vLLM is installed and a CUDA GPU is visible (what `generate_judge.backend: vllm` needs)."""
    import importlib.util

    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the LoRA ranks a vLLM engine can be sized for


def vllm_max_lora_rank(adapters: list[Path]) -> int:
    """The smallest rank a vLLM engine accepts that serves every adapter (each adapter_config.json's `r`)."""
    needed = max((json.loads((a / "adapter_config.json").read_text())["r"] for a in adapters), default=8)
    fitting = [rank for rank in VLLM_LORA_RANKS if rank >= needed]
    if not fitting:
        raise GenerationError(
            f"vllm backend: LoRA rank {needed} is above the largest vLLM serves ({VLLM_LORA_RANKS[-1]})"
        )
    return fitting[0]


def vllm_sampling_kwargs(sampling: Sampling, seed: int) -> dict:
    """vLLM `SamplingParams` arguments for one seeded request with the hf backend's sampling parameters. vLLM
    filters top-k before nucleus as transformers does and treats temperature 0 as greedy; "no top-k" is -1, the
    value every vLLM version accepts (newer ones also take 0, older ones reject it)."""
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k or -1,
        "max_tokens": sampling.max_new_tokens,
        "seed": int(seed),
    }


class VLLMGenerator(CachedGenerator):
    """Batched sampling with vLLM from a plain HF checkpoint directory, each request seeded on its own, optionally
    through a LoRA adapter sent as a LoRA request (`adapter`: its directory; the engine is started with LoRA support
    up to `max_lora_rank`). Prompts are the hf backend's chat strings, tokenized as it tokenizes them (the string
    already holds the BOS token). The engine starts at the first uncached batch and is shared by `for_adapter`
    copies, so one engine serves the base and every adapter on it; `close` frees its GPU memory. vLLM does not
    promise batch-invariant numerics by default (see its reproducibility notes), so the cache is what makes a rerun
    identical."""

    backend = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer,
        model_id: str,
        cache: GenerationCache | None = None,
        batch_size: int = 32,
        max_lora_rank: int = 0,
    ):
        super().__init__(model_id, cache, batch_size)
        self.model_dir = str(model_dir)
        self.tokenizer = tokenizer
        self.max_lora_rank = max_lora_rank  # 0: an engine without LoRA support
        self.engine: dict = {}  # "llm": the running engine, shared with for_adapter copies
        self.adapter: tuple[int, Path] | None = None

    def for_adapter(self, adapter_dir: Path, lora_id: int, model_id: str) -> VLLMGenerator:
        """The same engine sampling through the LoRA adapter in `adapter_dir` (`lora_id`: its number in the engine)."""
        if not self.max_lora_rank:
            raise GenerationError("vllm backend: this engine was started without LoRA support")
        copy = type(self)(self.model_dir, self.tokenizer, model_id, self.cache, self.batch_size, self.max_lora_rank)
        copy.engine, copy.adapter = self.engine, (lora_id, Path(adapter_dir))
        return copy

    def request_text(self, prompt: ChatPrompt) -> str:
        return chat(self.tokenizer, prompt.system, prompt.user, prompt.prefix)

    def complete(self, requests: list[str], sampling: Sampling, seeds: list[int]) -> list[str]:
        from vllm import LLM, SamplingParams

        if "llm" not in self.engine:
            lora = {"enable_lora": True, "max_lora_rank": self.max_lora_rank} if self.max_lora_rank else {}
            self.engine["llm"] = LLM(model=self.model_dir, dtype="auto", **lora)
        prompts = [{"prompt_token_ids": self.tokenizer(r, add_special_tokens=False)["input_ids"]} for r in requests]
        params = [SamplingParams(**vllm_sampling_kwargs(sampling, s)) for s in seeds]
        lora_request = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora_id, adapter_dir = self.adapter
            lora_request = LoRARequest(adapter_dir.parent.name, lora_id, str(adapter_dir))
        outputs = self.engine["llm"].generate(prompts, params, lora_request=lora_request, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def close(self) -> None:
        """Shut the engine down and hand its GPU memory back, so the next engine fits."""
        if "llm" not in self.engine:
            return
        import gc

        import torch
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.engine.clear()
        cleanup_dist_env_and_memory()
        gc.collect()
        torch.cuda.empty_cache()


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


def open_generator(
    spec, cache: GenerationCache | None, device: str = "auto", dtype: str = "auto"
) -> CachedGenerator | None:
    """The generator a `generators.<name>` params section describes; None for backend `none`."""
    if spec.backend == "none":
        return None
    if spec.backend == "openai":
        return OpenAIGenerator(
            spec.model,
            spec.base_url,
            spec.api_key_env,
            cache,
            spec.timeout_s,
            spec.max_retries,
            concurrency=spec.concurrency,
        )

    path = checkpoint_dir(spec.model)
    model, tokenizer, dev = load_base(path, device, dtype)
    return HFGenerator(
        model,
        tokenizer,
        f"{spec.model}@{model_fingerprint(path)}",
        cache,
        spec.batch_size,
        sampling_precision(dtype, dev),
    )
