"""ROUGE-1 and ROUGE-L F1 (Lin, 2004) on lower-cased alphanumeric tokens, no stemming."""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _f1(overlap: int, n_candidate: int, n_reference: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_candidate, overlap / n_reference
    return 2 * precision * recall / (precision + recall)


def rouge1(candidate: str, reference: str) -> float:
    """Unigram-overlap F1."""
    c, r = tokens(candidate), tokens(reference)
    return _f1(sum((Counter(c) & Counter(r)).values()), len(c), len(r))


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """Longest-common-subsequence F1."""
    c, r = tokens(candidate), tokens(reference)
    return _f1(_lcs_length(c, r), len(c), len(r))
