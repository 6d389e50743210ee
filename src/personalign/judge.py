"""Personal judges behind one interface; `simulated` is the deterministic embedding-utility judge of DESIGN.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from personalign.config import JudgeParams
from personalign.embeddings import Embedder
from personalign.seeding import stable_seed

Aspect = Literal["personalization", "quality"]
Verdict = Literal["first", "second", "tie"]


@dataclass(frozen=True)
class JudgeContext:
    """Whose preference is simulated, for which prompt; rivals are the personas the judge contrasts against."""

    persona_id: str
    persona_text: str
    rival_texts: tuple[str, ...]
    prompt: str


class Judge(Protocol):
    def prefers(self, ctx: JudgeContext, a: str, b: str) -> bool:
        """True when the persona prefers response `a` over `b`."""

    def verdict(self, ctx: JudgeContext, first: str, second: str, aspect: Aspect) -> Verdict:
        """Pairwise verdict for win rates on one aspect; ties allowed."""


def repeated_trigram_share(text: str) -> float:
    """Share of word 3-grams that repeat an earlier one (0 for texts shorter than 3 words)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


class SimulatedJudge:
    """u(y) = cos(y, gold) - mean cos(y, rival golds); q(y) = cos(y, prompt) - repeated 3-gram share;
    a beats b iff u(a) + λq(a) + ε_a > u(b) + λq(b) + ε_b, with ε ~ Gumbel(0, noise) fixed per
    (seed, persona, prompt, response), so verdicts are deterministic and symmetric in the order shown."""

    def __init__(self, embedder: Embedder, noise: float, quality_weight: float, tie_margin: float, seed: int):
        self.embedder = embedder
        self.noise = noise
        self.quality_weight = quality_weight
        self.tie_margin = tie_margin
        self.seed = seed

    def personalization(self, ctx: JudgeContext, texts: list[str]) -> np.ndarray:
        """u for each text: similarity to the persona minus mean similarity to its rivals."""
        y = self.embedder.encode(texts)
        own = y @ self.embedder.encode([ctx.persona_text])[0]
        if not ctx.rival_texts:
            return own
        return own - (y @ self.embedder.encode(list(ctx.rival_texts)).T).mean(axis=1)

    def quality(self, prompt: str, texts: list[str]) -> np.ndarray:
        """q for each text: relevance to the prompt minus the degeneration penalty."""
        relevance = self.embedder.encode(texts) @ self.embedder.encode([prompt])[0]
        return relevance - np.array([repeated_trigram_share(t) for t in texts], dtype=np.float32)

    def noise_terms(self, ctx: JudgeContext, texts: list[str]) -> np.ndarray:
        """ε per text: Gumbel noise drawn from a generator seeded by (seed, persona, prompt, text)."""
        if self.noise == 0:
            return np.zeros(len(texts))
        return np.array(
            [
                np.random.default_rng(stable_seed(self.seed, ctx.persona_id, ctx.prompt, t)).gumbel(0.0, self.noise)
                for t in texts
            ]
        )

    def utilities(self, ctx: JudgeContext, texts: list[str]) -> np.ndarray:
        """The persona's total utility u + λq + ε for each text (what preference labels compare)."""
        u = self.personalization(ctx, texts).astype(np.float64)
        q = self.quality(ctx.prompt, texts).astype(np.float64)
        return u + self.quality_weight * q + self.noise_terms(ctx, texts)

    def prefers(self, ctx: JudgeContext, a: str, b: str) -> bool:
        ua, ub = self.utilities(ctx, [a, b])
        return bool(ua > ub)

    def verdict(self, ctx: JudgeContext, first: str, second: str, aspect: Aspect) -> Verdict:
        if aspect == "personalization":
            s1, s2 = self.personalization(ctx, [first, second])
        else:
            s1, s2 = self.quality(ctx.prompt, [first, second])
        if abs(float(s1) - float(s2)) < self.tie_margin:
            return "tie"
        return "first" if s1 > s2 else "second"


def make_judge(params: JudgeParams, embedder: Embedder, seed: int) -> SimulatedJudge:
    """The judge that `judge.backend` names."""
    if params.backend == "simulated":
        return SimulatedJudge(embedder, params.noise, params.quality_weight, params.tie_margin, seed)
    raise ValueError(f"judge.backend = {params.backend!r} is not available")
