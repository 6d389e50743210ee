"""PersonalLLM (Zollo et al.) onto the canonical records, with users simulated as reward-model mixtures.

Input rows: prompt, response_1 .. response_K (K >= 2) and one score per reward model and response in flat columns
`<rm>_response_<k>` (the released dataset's `response_<k>_<rm>` is read the same); the reward models are the names
found in the columns, each needing all K scores (a group of text columns, like the released `response_<k>_model`, is
metadata). Each reward model's scores are z-normalised over every (prompt, response) entry read (population standard
deviation; a constant model scores 0). A simulated user u has weights w_u ~ Dirichlet(alpha * ones(n_rms)) and
utility w_u . z for each response.

Every user labels the same pairs, so that users can disagree (as in the paper's Personal-LLM, 87% contentious): per
prompt ONE pair of responses with distinct texts is drawn uniformly with the seeded generator (among the first
response of each distinct text), before the users' weights, so a seed gives the same pairs whatever the number of
users or alpha; every user labels that pair by utility (chosen = the higher-utility response), one record per
(prompt, user). A user for whom the pair's two utilities are exactly equal is filtered (tied_utilities), and a prompt
whose responses all have the same text is filtered for every user (identical_responses)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from personalign.data.loaders.common import (
    DatasetError,
    LoadedDataset,
    loaded_dataset,
    persona,
    read_splits,
    record,
    row_split,
    text_field,
    user_folds,
)

SOURCE = "personal_llm"
RESPONSE = re.compile(r"response_(\d+)")
SCORE_FORMS = (re.compile(r"(?P<rm>.+)_response_(?P<k>\d+)"), re.compile(r"response_(?P<k>\d+)_(?P<rm>.+)"))


def score_columns(rows: list[dict], where: str) -> tuple[int, dict[str, list[str]], list[str]]:
    """From the columns of all rows read (`where` names the input): the number of responses K, per reward model
    (sorted by name) its K score columns in response order, and the names of text column groups. A group whose values
    in the first row are all text (the released `response_<k>_model`, the LLM that wrote each response) is not a
    reward model."""
    columns = {c for row in rows for c in row}
    ks = sorted(int(m.group(1)) for c in columns if (m := RESPONSE.fullmatch(c)))
    if len(ks) < 2 or ks != list(range(1, len(ks) + 1)):
        raise DatasetError(f"{where}: fields 'response_1' .. 'response_K' (K >= 2) expected, got {ks or 'none'}")
    found: dict[str, dict[int, str]] = {}
    for column in sorted(columns):
        for form in SCORE_FORMS:
            if m := form.fullmatch(column):
                found.setdefault(m.group("rm"), {})[int(m.group("k"))] = column
                break
    text_groups = sorted(g for g, by_k in found.items() if all(isinstance(rows[0].get(c), str) for c in by_k.values()))
    rms = {rm: by_k for rm, by_k in found.items() if rm not in text_groups}
    if not rms:
        raise DatasetError(f"{where}: no reward-model score fields ('<rm>_response_<k>' or 'response_<k>_<rm>')")
    for rm, by_k in rms.items():
        missing = [k for k in range(1, len(ks) + 1) if k not in by_k]
        extra = sorted(set(by_k) - set(range(1, len(ks) + 1)))
        if missing or extra:
            raise DatasetError(
                f"{where}: reward model {rm!r} needs a score field for each of responses 1..{len(ks)}; "
                f"missing {missing}, beyond K {extra}"
            )
    return len(ks), {rm: [rms[rm][k] for k in range(1, len(ks) + 1)] for rm in sorted(rms)}, text_groups


def score(row: dict, name: str, where: str) -> float:
    """`row[name]` as a finite number."""
    if name not in row:
        raise DatasetError(f"{where}: missing field {name!r}")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{where}: field {name!r} must be a finite number, got {value!r:.60}")
    return float(value)


def load_personal_llm(
    path: str | Path, n_users: int, rng: np.random.Generator, alpha: float = 1.0, n_folds: int = 5
) -> LoadedDataset:
    """PersonalLLM rows at `path` (a table file, or a directory of train/val/test files) as pairs of `n_users`
    simulated users (ids u0, u1, ...); `rng` draws each prompt's pair, then the users' weights, then deals the CV
    folds. Every user labels the same pair of a prompt (see the module docstring). alpha = 1 draws weights
    uniformly over the simplex; a smaller alpha puts each user nearer one reward model. Ids are
    `personal_llm-<split>-<row:06d>-<user>`."""
    if n_users < 1 or n_folds < 1 or not alpha > 0:
        raise ValueError(f"n_users, n_folds must be at least 1 and alpha positive; got {n_users}, {n_folds}, {alpha}")
    files = read_splits(path)
    k, rm_columns, text_groups = score_columns([row for _, rows in files for _, row in rows], str(path))
    entries = []
    for file_split, rows in files:
        for i, (where, row) in enumerate(rows):
            entries.append(
                {
                    "i": i,
                    "split": row_split(row, where, file_split),
                    "prompt": text_field(row, "prompt", where),
                    "responses": [text_field(row, f"response_{j}", where) for j in range(1, k + 1)],
                    "scores": [[score(row, c, where) for c in rm_columns[rm]] for rm in rm_columns],
                }
            )
    scores = np.array([e["scores"] for e in entries]).transpose(0, 2, 1)  # (prompt, response, reward model)
    mean, std = scores.mean(axis=(0, 1)), scores.std(axis=(0, 1))
    z = np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1.0), 0.0)
    n_prompts = len(entries)
    # the pairs first (before the weights): random keys on each distinct text's first response, the two smallest
    first_of_text = np.array([[e["responses"].index(e["responses"][j]) == j for j in range(k)] for e in entries])
    keys = np.where(first_of_text, rng.random((n_prompts, k)), np.inf)
    pairs = keys.argsort(axis=1, kind="stable")[:, :2]  # (prompt, 2): a uniform pair among the distinct texts
    distinct = first_of_text.sum(axis=1) >= 2
    rms = list(rm_columns)
    weights = rng.dirichlet(alpha * np.ones(len(rms)), size=n_users)
    users = [f"u{u}" for u in range(n_users)]
    folds = user_folds(users, n_folds, rng)
    utility = z @ weights.T  # (prompt, response, user)
    counts = {
        "rows_read": n_prompts,
        "user_prompt_pairs": n_prompts * n_users,
        "records": 0,
        "tied_utilities": 0,
        "identical_responses": 0,
    }
    records = []
    for p, e in enumerate(entries):
        if not distinct[p]:
            counts["identical_responses"] += n_users
            continue
        a, b = pairs[p]
        for u, user in enumerate(users):
            if utility[p, a, u] == utility[p, b, u]:
                counts["tied_utilities"] += 1
                continue
            best, worst = (a, b) if utility[p, a, u] > utility[p, b, u] else (b, a)
            records.append(
                record(
                    id=f"{SOURCE}-{e['split']}-{e['i']:06d}-{user}",
                    source=SOURCE,
                    user_id=user,
                    prompt=e["prompt"],
                    chosen=e["responses"][best],
                    rejected=e["responses"][worst],
                    split=e["split"],
                    fold=folds[user],
                )
            )
    counts["records"] = len(records)
    personas = [
        persona(user_id=user, demographics={"weights": dict(zip(rms, map(float, weights[u])))})
        for u, user in enumerate(users)
    ]
    notes = [
        f"{n_users} simulated users over {len(rms)} reward models ({', '.join(rms)}), weights ~ Dirichlet({alpha:g} "
        f"* ones) in each persona's demographics['weights']; utility = weights . z-normalised scores.",
        f"One pair of distinct responses per prompt (of {k}) drawn with the seeded generator before the weights; "
        f"every user labels that same pair: chosen = the response of higher utility.",
        "PersonalLLM users are simulated: no persona descriptions or axes.",
        f"CV folds ({n_folds}) dealt over the simulated users with the seeded generator, after the weights.",
    ]
    if text_groups:
        notes.append(f"Text columns per response read as metadata, not reward models: {', '.join(text_groups)}.")
    constant = [rm for rm, s in zip(rms, std) if s == 0]
    if constant:
        notes.append(f"Reward models with one score for every response (z = 0): {', '.join(constant)}.")
    if counts["tied_utilities"]:
        notes.append(
            f"{counts['tied_utilities']} (prompt, user) pairs whose drawn responses have the same utility "
            f"for the user were filtered (tied_utilities)."
        )
    identical = "(prompt, user) pairs of prompts whose responses are all the same text"
    return loaded_dataset(records, personas, counts, notes, identical)
