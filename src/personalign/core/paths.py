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


def dvc_queue_workspace(cwd: Path | None = None) -> Path | None:
    """The workspace a queued or `--temp` experiment was started from, when this process runs in DVC's temporary
    copy of it (`<workspace>/.dvc/tmp/exps/<tmp>/`); None in the workspace itself."""
    parts = (cwd or Path.cwd()).resolve().parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return None


def external(path: str | Path) -> Path:
    """A params path to an input outside the pipeline (a dataset, a benchmark file), as written; in DVC's temporary
    copy for a queued experiment, which holds only the repository, a relative path that is not there is read from the
    workspace the experiment was queued from, so a queued run sees the inputs a workspace run sees."""
    path = Path(path)
    workspace = dvc_queue_workspace()
    if path.is_absolute() or path.exists() or workspace is None:
        return path
    return workspace / path


# Content-keyed caches (generations, judgments, scores) are shared with the workspace by queued experiments, so no
# experiment computes twice what another has; per-copy state (stage locks, training checkpoints, written base
# checkpoints) stays in the copy.
CACHE = (dvc_queue_workspace() or Path(".")) / ".cache/personalign"
GENERATIONS = CACHE / "generations.sqlite"
RESPONSES = CACHE / "responses.sqlite"
JUDGMENTS = CACHE / "judgments.sqlite"
SCORE_CACHE = CACHE / "scores"
LOCAL_CACHE = Path(".cache/personalign")
TRAIN_CACHE = LOCAL_CACHE / "train"
LOCKS = LOCAL_CACHE / "locks"
MODEL_CACHE = LOCAL_CACHE / "models"
