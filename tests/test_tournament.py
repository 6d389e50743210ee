"""Single-elimination labels: the best candidate wins under a consistent judge; y_l is a non-winner."""

from __future__ import annotations

import numpy as np
import pytest

from personalign.data.tournament import single_elimination


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_best_candidate_wins_a_total_order(n):
    strength = np.random.default_rng(n).permutation(n)
    for seed in range(20):
        result = single_elimination(n, lambda a, b: strength[a] > strength[b], np.random.default_rng(seed))
        assert result.winner == int(np.argmax(strength))
        assert result.loser != result.winner and 0 <= result.loser < n
        assert result.comparisons == n - 1


def test_same_seed_same_bracket_and_loser():
    prefers = lambda a, b: (a * 7 + b * 3) % 5 > 2  # noqa: E731  (an intransitive judge)
    runs = [single_elimination(6, prefers, np.random.default_rng(11)) for _ in range(3)]
    assert len(set(runs)) == 1


def test_loser_is_drawn_from_all_non_winners():
    losers = {single_elimination(4, lambda a, b: a < b, np.random.default_rng(s)).loser for s in range(60)}
    assert losers == {1, 2, 3}


def test_needs_two_candidates():
    with pytest.raises(ValueError):
        single_elimination(1, lambda a, b: True, np.random.default_rng(0))
