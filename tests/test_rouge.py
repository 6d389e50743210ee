"""ROUGE-1 and ROUGE-L on hand-checked cases."""

from __future__ import annotations

import pytest

from personalign.personas.rouge import rouge1, rouge_l


def test_identical_and_disjoint_texts():
    assert rouge1("The cat sat.", "the CAT sat") == 1.0
    assert rouge_l("The cat sat.", "the CAT sat") == 1.0
    assert rouge1("alpha beta", "gamma delta") == 0.0
    assert rouge_l("", "gamma delta") == 0.0


def test_hand_computed_values():
    # candidate 4 tokens, reference 5; unigram overlap 3 -> P 3/4, R 3/5, F 2/3
    assert rouge1("the cat was found", "the cat sat on found") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    # LCS("police killed the gunman", "the gunman police killed") = 2 -> P = R = 1/2
    assert rouge_l("police killed the gunman", "the gunman police killed") == pytest.approx(0.5)
    assert rouge1("police killed the gunman", "the gunman police killed") == 1.0
