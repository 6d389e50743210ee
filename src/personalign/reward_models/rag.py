"""Retrieval-augmented preference prediction (the paper's RAG baseline): for each evaluated pair, the k training
pairs of the same user whose PROMPTS are most similar (cosine of prompt embeddings; the evaluated pair's responses
and label are never read) are put in a judge's context, and the judge says which candidate the user prefers.
Two judges: EmbeddingContextJudge (deterministic, embeddings only) and CausalLMJudge (a local causal LM read
through the log-probabilities of its answer letter, both candidate orders averaged)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from personalign.lm.judge import single_token_ids
from personalign.lm.prompts import chat
from personalign.reward_models.core import check_fitted
from personalign.reward_models.data import PreferenceData, UnseenUserError


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.clip(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12, None)


class ContextJudge(Protocol):
    def margins(self, data: PreferenceData, examples: PreferenceData, neighbours: np.ndarray) -> np.ndarray:
        """Margin per pair of `data` (> 0: the chosen response is predicted preferred), given for each pair the rows
        of `examples` retrieved for it (neighbours[i], -1 = none)."""
        ...


class EmbeddingContextJudge:
    """Scores a candidate by its mean cosine to the retrieved chosen responses minus its mean cosine to the retrieved
    rejected responses; margin = score(chosen) - score(rejected) (0 when nothing was retrieved)."""

    def margins(self, data: PreferenceData, examples: PreferenceData, neighbours: np.ndarray) -> np.ndarray:
        valid = neighbours >= 0
        safe = np.where(valid, neighbours, 0)
        weight = valid / np.clip(valid.sum(1, keepdims=True), 1, None)  # (n, k) mean over retrieved pairs
        liked, disliked = _unit(examples.chosen_emb)[safe], _unit(examples.rejected_emb)[safe]  # (n, k, d)

        def score(candidates: np.ndarray) -> np.ndarray:
            c = _unit(candidates)[:, None, :]
            return (weight * ((liked * c).sum(-1) - (disliked * c).sum(-1))).sum(1)

        return score(data.chosen_emb) - score(data.rejected_emb)


RAG_SYSTEM = (
    "You predict which of two responses a particular person would prefer, going by the choices that person made before."
)
RAG_EXAMPLE = "Example {i}\nRequest: {prompt}\nResponse they preferred: {chosen}\nResponse they rejected: {rejected}"
RAG_QUERY = (
    "Earlier, this person compared responses to similar requests:\n\n{examples}\n\n"
    "Now the same person made this request:\n{prompt}\n\n"
    "Response A:\n{first}\n\nResponse B:\n{second}\n\n"
    "Going by their earlier choices, which response would this person prefer? Reply with the letter A or B only."
)
RAG_ANSWER_PREFIX = "Preferred response:"


class CausalLMJudge:
    """A local HF causal LM as the RAG judge: the prompt (RAG_SYSTEM / RAG_QUERY, chat-formatted when the tokenizer
    has a template) lists the retrieved examples and the two candidates and ends at RAG_ANSWER_PREFIX; the judge
    compares the next-token log-probabilities of "A" and "B" (each summed over the single tokens that spell it).
    Each pair is asked twice, chosen as A and chosen as B; margin = the mean of the two (chosen-minus-rejected)
    log-prob differences, which cancels a constant preference for one letter. Texts are clipped to `max_chars`."""

    def __init__(self, model, tokenizer, max_chars: int = 1500):

        self.model, self.tokenizer, self.max_chars = model, tokenizer, max_chars
        self.option_ids = {w: single_token_ids(tokenizer, w) for w in ("A", "B")}
        self.order_margins_: np.ndarray | None = None

    def _clip(self, text: str) -> str:
        return text if len(text) <= self.max_chars else text[: self.max_chars] + " ..."

    def prompt_text(self, prompt: str, examples: list[tuple[str, str, str]], first: str, second: str) -> str:
        """The exact text the model reads, ending where the answer letter goes."""

        shown = "\n\n".join(
            RAG_EXAMPLE.format(i=i, prompt=self._clip(p), chosen=self._clip(c), rejected=self._clip(r))
            for i, (p, c, r) in enumerate(examples, 1)
        )
        user = RAG_QUERY.format(
            examples=shown or "(none)", prompt=self._clip(prompt), first=self._clip(first), second=self._clip(second)
        )
        return chat(self.tokenizer, RAG_SYSTEM, user, RAG_ANSWER_PREFIX)

    def option_logprobs(self, text: str) -> tuple[float, float]:
        """Next-token log-probabilities of "A" and of "B" after `text`."""
        import torch

        ids = torch.tensor([self.tokenizer(text, add_special_tokens=False)["input_ids"]], device=self.model.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
        logprobs = logits.log_softmax(-1).cpu()
        return tuple(float(torch.logsumexp(logprobs[self.option_ids[w]], 0)) for w in ("A", "B"))

    def margins(self, data: PreferenceData, examples: PreferenceData, neighbours: np.ndarray) -> np.ndarray:
        orders = np.zeros((len(data), 2))
        for i in range(len(data)):
            shown = [(examples.prompts[j], examples.chosen[j], examples.rejected[j]) for j in neighbours[i] if j >= 0]
            lp_a, lp_b = self.option_logprobs(
                self.prompt_text(data.prompts[i], shown, data.chosen[i], data.rejected[i])
            )
            orders[i, 0] = lp_a - lp_b  # chosen shown as A
            lp_a, lp_b = self.option_logprobs(
                self.prompt_text(data.prompts[i], shown, data.rejected[i], data.chosen[i])
            )
            orders[i, 1] = lp_b - lp_a  # chosen shown as B
        self.order_margins_ = orders
        return orders.mean(1)


class RAGJudge:
    """Retrieval-augmented judge: fit stores the training pairs; each evaluated pair gets the `k` training pairs of
    its own user with the most similar prompt embeddings (ties broken by row order), read by `judge` (default
    EmbeddingContextJudge). A user without training pairs raises UnseenUserError."""

    name = "rag"

    def __init__(self, judge: ContextJudge | None = None, k: int = 3):
        self.judge = judge if judge is not None else EmbeddingContextJudge()
        self.k = k

    def fit(self, train: PreferenceData, rng: np.random.Generator | None = None) -> RAGJudge:
        """Nothing is learned (rng is unused): the training pairs become the retrieval pool."""
        self.train_ = train
        self.rows_ = train.user_index()
        self.prompts_ = _unit(train.prompt_emb)
        return self

    def retrieve(self, user_ids: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
        """(n, k) rows of the training data retrieved for each query (-1 where the user has fewer than k pairs):
        the same user's pairs ranked by cosine similarity of prompt embeddings. Only the user and the prompt of a
        query are read."""
        check_fitted(self, "train_")
        user_ids = np.asarray(user_ids, dtype=object)
        unknown = sorted(set(user_ids) - set(self.rows_))
        if unknown:
            raise UnseenUserError("RAGJudge", unknown)
        queries = _unit(prompt_emb)
        out = np.full((len(user_ids), self.k), -1, dtype=np.int64)
        for user in sorted(set(user_ids)):
            q = np.flatnonzero(user_ids == user)
            pool = self.rows_[user]
            sims = queries[q] @ self.prompts_[pool].T  # (queries, pool)
            top = np.argsort(-sims, axis=1, kind="stable")[:, : self.k]
            out[q, : top.shape[1]] = pool[top]
        return out

    def margins(self, data: PreferenceData) -> np.ndarray:
        neighbours = self.retrieve(data.user_ids, data.prompt_emb)
        return np.asarray(self.judge.margins(data, self.train_, neighbours), dtype=np.float64)
