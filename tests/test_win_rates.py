"""Win/tie/loss tallies, win rates and ΔPQ: invalid outcomes reported but not counted, the paper's numbers."""

from __future__ import annotations

import math

import pytest

from personalign.analysis.published import WHOSE_BOAT_TABLE
from personalign.stats.win_rates import delta_pq, outcome_agreement, summary_row, win_rate, win_tie_loss


def test_win_tie_loss_counts_and_leaves_invalid_out_of_the_percentages():
    tally = win_tie_loss(["a", "a", "b", "tie", "invalid", "a", "invalid"])
    assert (tally["wins"], tally["ties"], tally["losses"], tally["invalid"], tally["n_valid"]) == (3, 1, 1, 2, 5)
    assert (tally["win_pct"], tally["tie_pct"], tally["loss_pct"]) == pytest.approx((60.0, 20.0, 20.0))


def test_win_tie_loss_of_nothing_valid_is_nan():
    tally = win_tie_loss(["invalid"])
    assert tally["invalid"] == 1 and tally["n_valid"] == 0 and math.isnan(tally["win_pct"])


def test_unknown_outcomes_are_refused():
    with pytest.raises(ValueError, match="unknown outcome 'first'"):
        win_tie_loss(["a", "first"])


def test_win_rate_ignores_ties():
    assert win_rate(3, 1) == 0.75
    assert math.isnan(win_rate(0, 0))


CELLS = WHOSE_BOAT_TABLE[WHOSE_BOAT_TABLE.paper_dataset != "average"]


def _wtl(text: str) -> list[float]:
    return [float(part) for part in text.split("/")]


@pytest.mark.parametrize(
    "row", list(CELLS.itertuples(index=False)), ids=lambda r: f"{r.paper_dataset}-{r.side}-{r.persona}"
)
def test_delta_pq_reproduces_every_cell_of_the_papers_table(row):
    # Whose Boat, PT + P vs DPO + P: e.g. BT Chosen P_retr, 46.7/70.7 + 38.5/69.6 - 1 = 0.2137, i.e. 21.37 against the
    # published +21.3; the paper computed ΔPQ from unrounded counts, so agreement within 0.1 is what the published
    # precision allows.
    (p_win, _, p_loss), (q_win, _, q_loss) = _wtl(row.p_wtl), _wtl(row.q_wtl)
    assert delta_pq(win_rate(p_win, p_loss), win_rate(q_win, q_loss)) == pytest.approx(row.delta_pq, abs=0.1)


def test_the_papers_average_row_is_the_mean_of_its_ten_cells():
    average = WHOSE_BOAT_TABLE[WHOSE_BOAT_TABLE.paper_dataset == "average"].iloc[0]
    assert len(CELLS) == 10
    assert CELLS.delta_pq.mean() == pytest.approx(average.delta_pq, abs=0.05)  # +18.4, not ΔPQ of the mean W/T/L
    for column in ("p_wtl", "q_wtl"):
        assert [sum(v) / len(CELLS) for v in zip(*map(_wtl, CELLS[column]))] == pytest.approx(
            _wtl(average[column]), abs=0.1
        )


def test_summary_row():
    p = ["a"] * 6 + ["tie"] * 2 + ["b"] * 2
    q = ["a"] * 3 + ["tie"] * 3 + ["b"] * 3 + ["invalid"]
    row = summary_row(p, q)
    assert (row["p_win"], row["p_tie"], row["p_loss"]) == pytest.approx((60.0, 20.0, 20.0))
    assert (row["q_win"], row["q_tie"], row["q_loss"]) == pytest.approx((100 / 3, 100 / 3, 100 / 3))
    assert row["p_wr"] == pytest.approx(0.75) and row["q_wr"] == pytest.approx(0.5)
    assert row["delta_pq"] == pytest.approx(25.0)
    assert (row["n"], row["p_invalid"], row["q_invalid"]) == (10, 0, 1)


def test_summary_row_needs_one_outcome_per_prompt_for_both_aspects():
    with pytest.raises(ValueError, match="2 personalization outcomes but 1 quality"):
        summary_row(["a", "b"], ["a"])


def test_outcome_agreement_of_two_labelers_by_hand():
    # valid pairs (a, a), (a, b), (b, b), (tie, tie): observed 3/4; chance (2·1 + 1·2 + 1·1) / 16 = 5/16, so
    # κ = (3/4 − 5/16) / (11/16) = 7/11. α: 8 pairable values (a 3, b 3, tie 2), 2 disagreeing coincidences,
    # Σ_{c≠k} n_c n_k = 64 − 22 = 42, so α = 1 − 7 · 2 / 42 = 2/3.
    stats = outcome_agreement(["a", "a", "b", "tie", "invalid"], ["a", "b", "b", "tie", "a"])
    assert (stats["n"], stats["invalid"]) == (4, 1)
    assert stats["agreement"] == pytest.approx(0.75)
    assert stats["cohen_kappa"] == pytest.approx(7 / 11)
    assert stats["krippendorff_alpha"] == pytest.approx(2 / 3)
    assert (stats["first_tie"], stats["second_tie"]) == (0.25, 0.25)


def test_outcome_agreement_of_nothing_valid_is_nan_and_bad_input_is_refused():
    stats = outcome_agreement(["invalid"], ["a"])
    assert stats["n"] == 0 and stats["invalid"] == 1 and math.isnan(stats["cohen_kappa"])
    with pytest.raises(ValueError, match="unknown outcome 'first'"):
        outcome_agreement(["a"], ["first"])
    with pytest.raises(ValueError, match="2 outcomes of the first labeler but 1"):
        outcome_agreement(["a", "b"], ["a"])
