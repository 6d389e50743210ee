"""Win/tie/loss tallies, win rates and ΔPQ (Whose Boat) from both-orders outcomes ("a" = the test system wins), and
the agreement of two labelers of the same outcomes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from personalign.stats.statistics import rater_agreement

OUTCOMES = ("a", "b", "tie", "invalid")


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else float("nan")


def win_tie_loss(outcomes: Iterable[str]) -> dict:
    """Counts and percentages of wins ("a"), ties and losses ("b"); invalid outcomes are counted but left out of
    the denominator `n_valid`."""
    counts = Counter(outcomes)
    unknown = sorted(set(counts) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcome {unknown[0]!r}; allowed: {', '.join(OUTCOMES)}")
    wins, ties, losses = counts["a"], counts["tie"], counts["b"]
    valid = wins + ties + losses
    return {
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "invalid": counts["invalid"],
        "n_valid": valid,
        "win_pct": _percent(wins, valid),
        "tie_pct": _percent(ties, valid),
        "loss_pct": _percent(losses, valid),
    }


def win_rate(wins: float, losses: float) -> float:
    """wins / (wins + losses), ties ignored; nan when both are 0. Counts or percentages alike."""
    return wins / (wins + losses) if wins + losses else float("nan")


def delta_pq(p_wr: float, q_wr: float) -> float:
    """ΔPQ = (p_wr + q_wr − 1) × 100: positive when the test system gains more Personalization than it loses
    Quality (or gains both)."""
    return (p_wr + q_wr - 1.0) * 100.0


def summary_row(personalization_outcomes: Iterable[str], quality_outcomes: Iterable[str]) -> dict:
    """One table row: Personalization and Quality W/T/L %, their win rates, ΔPQ, the number of judged prompts and
    the invalid counts. Both lists hold one outcome per test prompt."""
    p_outcomes, q_outcomes = list(personalization_outcomes), list(quality_outcomes)
    if len(p_outcomes) != len(q_outcomes):
        raise ValueError(f"{len(p_outcomes)} personalization outcomes but {len(q_outcomes)} quality outcomes")
    p, q = win_tie_loss(p_outcomes), win_tie_loss(q_outcomes)
    p_wr, q_wr = win_rate(p["wins"], p["losses"]), win_rate(q["wins"], q["losses"])
    return {
        "p_win": p["win_pct"],
        "p_tie": p["tie_pct"],
        "p_loss": p["loss_pct"],
        "q_win": q["win_pct"],
        "q_tie": q["tie_pct"],
        "q_loss": q["loss_pct"],
        "p_wr": p_wr,
        "q_wr": q_wr,
        "delta_pq": delta_pq(p_wr, q_wr),
        "n": len(p_outcomes),
        "p_invalid": p["invalid"],
        "q_invalid": q["invalid"],
    }


def outcome_agreement(first: Iterable[str], second: Iterable[str]) -> dict:
    """Agreement of two labelers ("a" / "tie" / "b") of the same comparisons (two judges, or one judge's two
    orders): n (both valid), invalid (either not), raw agreement, Cohen's κ and Krippendorff's α (nominal), and each
    labeler's tie share among the n."""
    first, second = list(first), list(second)
    if len(first) != len(second):
        raise ValueError(f"{len(first)} outcomes of the first labeler but {len(second)} of the second")
    unknown = sorted({*first, *second} - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcome {unknown[0]!r}; allowed: {', '.join(OUTCOMES)}")
    pairs = [(x, y) for x, y in zip(first, second) if "invalid" not in (x, y)]
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    return {
        **rater_agreement(x, y),
        "invalid": len(first) - len(pairs),
        "first_tie": x.count("tie") / len(x) if x else float("nan"),
        "second_tie": y.count("tie") / len(y) if y else float("nan"),
    }
