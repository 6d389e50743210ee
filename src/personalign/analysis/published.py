"""Numbers the reproduced papers publish, kept only to be shown beside this pipeline's own results (never used as
a result). Each table names its source."""

from __future__ import annotations

import pandas as pd

# "Whose Boat Does it Float?" (../shared/papers/001_*.txt), Finding 2 table: PT + P vs DPO + P, LLM-judged
# Personalization and Quality W/T/L (%) and ΔPQ per dataset, persona side and persona source.
_WHOSE_BOAT = [
    ("bt", "chosen", "retr", "46.7/29.3/24.0", "38.5/30.5/31.1", 21.3),
    ("bt", "chosen", "gold", "42.3/29.3/28.5", "34.9/33.9/31.3", 12.5),
    ("bt", "rejected", "retr", "45.1/31.7/23.2", "35.1/32.5/32.5", 17.9),
    ("bt", "rejected", "gold", "51.1/25.9/23.0", "35.3/32.7/32.1", 21.3),
    ("hhh", "chosen", "retr", "40.8/25.4/33.8", "35.0/28.0/37.0", 3.3),
    ("hhh", "chosen", "gold", "42.0/27.4/30.6", "39.0/24.4/36.6", 9.4),
    ("hhh", "rejected", "retr", "56.2/21.0/22.8", "48.6/24.6/26.8", 35.6),
    ("hhh", "rejected", "gold", "54.1/20.6/25.3", "44.7/26.1/29.3", 28.6),
    ("mnemonic", "chosen", "retr", "42.6/31.2/26.2", "40.2/31.6/28.2", 20.7),
    ("mnemonic", "rejected", "retr", "37.4/32.6/30.0", "42.0/27.4/30.6", 13.3),
    ("average", "", "", "45.8/27.4/26.7", "39.3/29.1/31.5", 18.4),
]
WHOSE_BOAT_TABLE = pd.DataFrame(_WHOSE_BOAT, columns=["paper_dataset", "side", "persona", "p_wtl", "q_wtl", "delta_pq"])

# The dataset names of build_data.datasets that are the paper's datasets (Mnemonic's P_gold cells are "—" there).
PAPER_DATASET = {"beavertails": "bt", "bt": "bt", "hhh": "hhh", "mnemonic": "mnemonic", "average": "average"}
