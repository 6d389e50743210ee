"""How scores decide a preference pair: the model prefers y_w when its log-prob of y_w is higher, per token (mean,
WikiPersona Eq. 3) or summed. numpy only, so reporting code can decide pairs without torch."""

from __future__ import annotations

import numpy as np

LOG_PROB_REDUCTIONS = ("mean", "sum")  # how a response's token log-probs are reduced before y_w and y_l are compared


def prefers_chosen(chosen_logp, chosen_tokens, rejected_logp, rejected_tokens, reduction) -> np.ndarray:
    """Per pair: does the model prefer y_w — mean token log-prob (WikiPersona Eq. 3) or summed log-prob (the papers'
    choice for safety sets), `reduction` one value or one per pair."""
    chosen_logp, rejected_logp = np.asarray(chosen_logp, float), np.asarray(rejected_logp, float)
    reduction = np.broadcast_to(np.asarray(reduction), chosen_logp.shape)
    unknown = set(np.unique(reduction)) - set(LOG_PROB_REDUCTIONS)
    if unknown:
        raise ValueError(f"log-prob reduction {sorted(unknown)[0]!r}; allowed: {', '.join(LOG_PROB_REDUCTIONS)}")
    mean = chosen_logp / np.asarray(chosen_tokens) > rejected_logp / np.asarray(rejected_tokens)
    return np.where(reduction == "sum", chosen_logp > rejected_logp, mean)
