"""Single-elimination tournament labels: y_w is the winner, y_l a seeded random non-winner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TournamentResult:
    winner: int
    loser: int
    comparisons: int


def single_elimination(n: int, prefers: Callable[[int, int], bool], rng: np.random.Generator) -> TournamentResult:
    """Run a seeded bracket over candidates 0..n-1; `prefers(a, b)` says whether a beats b.
    Odd rounds give the last entrant a bye. y_l is drawn uniformly from the non-winners."""
    if n < 2:
        raise ValueError("a tournament needs at least two candidates")
    entrants = [int(i) for i in rng.permutation(n)]
    comparisons = 0
    while len(entrants) > 1:
        survivors = []
        for i in range(0, len(entrants) - 1, 2):
            a, b = entrants[i], entrants[i + 1]
            survivors.append(a if prefers(a, b) else b)
            comparisons += 1
        if len(entrants) % 2:
            survivors.append(entrants[-1])
        entrants = survivors
    winner = entrants[0]
    loser = int(rng.choice([i for i in range(n) if i != winner]))
    return TournamentResult(winner, loser, comparisons)
