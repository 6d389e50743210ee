"""Candidate responses: CoT header parsing, artifact stripping, quality-range filter, k-means diversity selection."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_AXIS_LINE = re.compile(r"^\s*axis\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_CATEGORIES_LINE = re.compile(r"^\s*categories\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_COT_LINE = re.compile(r"^\s*(axis|categories|chosen category|response)\s*:\s*", re.IGNORECASE | re.MULTILINE)
# "As a vegan, ...", "Being a conservative, ...", "Since you're a golfer, ...", "For someone like you, ..."; discourse
# phrases that only look alike ("As a result, ...", "For a quick dinner, ...") are left alone.
_GIVEAWAY = re.compile(
    r"(^|(?<=[.!?]\s))(?:"
    r"(?:as|being)\s+(?:a|an)\s+(?!(?:result|rule|matter|reminder|bonus|whole|side|general|first|final)\b)"
    r"|(?:since|because)\s+you(?:'re|\s+are)\s+(?:a|an)\s+"
    r"|for\s+(?:someone|people|a\s+person)\s+(?:like\s+you|who)\b"
    r")[^,.!?\n]{0,60},\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CotPlan:
    """An axis and its categories, from the ground truth (divergent) or the model's own CoT (personal)."""

    axis: str
    categories: tuple[str, ...]


def parse_cot(text: str, fallback: CotPlan, max_categories: int = 8) -> CotPlan:
    """Read 'Axis:' and 'Categories:' from a CoT completion (the text after the prompt's 'Axis:');
    fall back to `fallback` where the small model did not follow the format."""
    text = "Axis:" + text if not text.lstrip().lower().startswith("axis") else text
    axis_match = _AXIS_LINE.search(text)
    cats_match = _CATEGORIES_LINE.search(text)
    axis = axis_match.group(1).strip(" .*{}") if axis_match else ""
    categories: list[str] = []
    if cats_match:
        for raw in re.split(r",|;|/|\band\b", cats_match.group(1)):
            cat = raw.strip(" .*{}[]()\"'")
            if 0 < len(cat) <= 40 and cat.lower() not in {c.lower() for c in categories}:
                categories.append(cat)
    if not axis or len(axis) > 40 or len(categories) < 2:
        return fallback
    return CotPlan(axis, tuple(categories[:max_categories]))


def strip_artifacts(text: str) -> str:
    """Remove CoT scaffolding lines and clauses that give the category away ("As a vegan, ...")."""
    lines = [ln for ln in text.splitlines() if not re.match(r"^\s*(axis|categories|chosen category)\s*:", ln, re.I)]
    text = _COT_LINE.sub("", "\n".join(lines))
    text = _GIVEAWAY.sub("", text)
    text = re.sub(r"(^|(?<=[.!?]\s))([a-z])", lambda m: m.group(1) + m.group(2).upper(), text.strip())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def quality_range_span(scores: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the `keep` candidates whose scores form the tightest contiguous span in sorted order
    (WikiPersona App. B.2: responses a generic reward model rates about equally)."""
    if len(scores) <= keep:
        return np.arange(len(scores))
    order = np.argsort(scores, kind="stable")
    ranges = scores[order[keep - 1 :]] - scores[order[: len(scores) - keep + 1]]
    start = int(np.argmin(ranges))
    return np.sort(order[start : start + keep])


def diverse_subset(embeddings: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k indices chosen by k-means: per cluster, the member farthest from all other cluster centres
    (WikiPersona App. B.3)."""
    from sklearn.cluster import KMeans

    if len(embeddings) <= k:
        return np.arange(len(embeddings))
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(embeddings.astype(np.float64))
    centres = km.cluster_centers_
    chosen = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if len(members) == 0:
            continue
        others = np.delete(centres, c, axis=0)
        distance = np.linalg.norm(embeddings[members][:, None, :] - others[None, :, :], axis=-1).sum(axis=1)
        chosen.append(int(members[np.argmax(distance)]))
    return np.array(sorted(chosen))
