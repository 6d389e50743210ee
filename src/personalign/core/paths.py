"""Where the pipeline's shared files live, relative to the repository root: the data tables of stages 1-2, the base
model and the adapters, the per-stage results and figures folders, and the caches. dvc.yaml declares the same paths
as deps and outs (a test holds them equal); a file only one notebook writes is named in that notebook."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RECORDS = DATA / "records.jsonl"
PERSONAS = DATA / "personas.jsonl"
CANDIDATES = DATA / "candidates.jsonl"
PREFIXES = DATA / "prefixes.jsonl"
PAIR_PERSONAS = DATA / "pair_personas.jsonl"
DATASET_CARD = DATA / "dataset_card.md"

BASE_MODEL = Path("models/base")
ADAPTERS = Path("models/adapters")

RESULTS = Path("results")
CLAIMS = RESULTS / "claims"
FIGURES = Path("figures")

CACHE = Path(".cache/personalign")
SCORE_CACHE = CACHE / "scores"
TRAIN_CACHE = CACHE / "train"
LOCKS = CACHE / "locks"
MODEL_CACHE = CACHE / "models"
