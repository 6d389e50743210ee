"""Alignment tax (WikiPersona §4.3, Fig. 7): out-of-domain checks of an adapter, with and without its prefix, against
the base model. Reference-free accuracy on preference files in the RewardBench format (its safety subsets scored with
summed log-probs) and on the persona-tailoring BeaverTails test pairs; log-likelihood multiple-choice accuracy on ARC,
PIQA and TruthfulQA (mc1) files. Files are JSON lines, a JSON list or parquet; on malformed input the readers name the
file, the row (counted from 0 in stored order) and the field."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from personalign.core.config import BaseParams
from personalign.core.hardware import resolve_precision
from personalign.data.loaders import DatasetError
from personalign.data.loaders.common import read_table
from personalign.evaluation.scoring import completions_logps, prefix_batches, score_pairs
from personalign.lm.artifacts import LoadedBase, ScoreCache, adapter_fingerprint
from personalign.lm.prompts import chat
from personalign.stats.statistics import wilson_interval

SAFETY_SUBSETS = ("refusals-dangerous", "refusals-offensive")
MC_FORMATS = ("arc", "piqa", "truthfulqa_mc1")
PAIR_COLUMNS = ["id", "prompt", "chosen", "rejected"]
MC_COLUMNS = ["id", "question", "choices", "answer", "format"]


def _value(path: Path, i: int, row: dict, field: str, valid: Callable[[object], bool], expected: str):
    """Row `i`'s `field` (dotted for nested objects, e.g. `choices.text`), checked by `valid`."""
    value = row
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            raise DatasetError(f"{path}: row {i}: missing field {field!r}")
        value = value[key]
    if not valid(value):
        raise DatasetError(f"{path}: row {i}: field {field!r} must be {expected}, got {value!r:.80}")
    return value


def _is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_texts(value) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(map(_is_text, value))


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool) and str(value) != ""


def _text(path: Path, i: int, row: dict, field: str) -> str:
    return _value(path, i, row, field, _is_text, "non-empty text")


def _frame(path: Path, rows: list[tuple[int, dict]], columns: list[str]) -> pd.DataFrame:
    """(row number, record) pairs as a frame, ids checked to be unique."""
    seen = set()
    for i, record in rows:
        if record["id"] in seen:
            raise DatasetError(f"{path}: row {i}: field 'id' repeats {record['id']!r}")
        seen.add(record["id"])
    return pd.DataFrame([record for _, record in rows], columns=columns)


def read_rewardbench(path: str | Path, subsets: Iterable[str] = SAFETY_SUBSETS) -> pd.DataFrame:
    """RewardBench-format pairs (fields prompt, chosen, rejected, subset, id) of the given subsets, as columns id
    (text), prompt, chosen, rejected, subset; only the kept rows' pair fields are checked; every subset must have
    rows."""
    path, wanted = Path(path), list(subsets)
    kept = []
    for i, row in enumerate(read_table(path)):
        subset = _text(path, i, row, "subset")
        if subset in wanted:
            record = {"id": str(_value(path, i, row, "id", _is_id, "an integer or text id"))}
            record |= {field: _text(path, i, row, field) for field in ("prompt", "chosen", "rejected")}
            kept.append((i, record | {"subset": subset}))
    missing = sorted(set(wanted) - {record["subset"] for _, record in kept})
    if missing:
        raise DatasetError(f"{path}: no rows of subset(s) {', '.join(missing)}")
    return _frame(path, kept, PAIR_COLUMNS + ["subset"])


def _arc(path: Path, i: int, row: dict) -> dict:
    """allenai/ai2_arc: id, question, choices {text, label}, answerKey (labels A-E or 1-5)."""
    texts = _value(path, i, row, "choices.text", _is_texts, "a list of two or more non-empty texts")
    labels = _value(
        path,
        i,
        row,
        "choices.label",
        lambda v: (
            isinstance(v, list) and len(v) == len(texts) and len(set(map(str, v))) == len(v) and all(map(_is_text, v))
        ),
        f"a list of {len(texts)} distinct labels",
    )
    key = _value(path, i, row, "answerKey", lambda v: v in labels, f"one of the labels {labels}")
    return {
        "id": str(_value(path, i, row, "id", _is_id, "an integer or text id")),
        "question": _text(path, i, row, "question"),
        "choices": list(texts),
        "answer": labels.index(key),
    }


def _piqa(path: Path, i: int, row: dict) -> dict:
    """PIQA: goal, sol1, sol2, label (0 or 1); the row number is the id when there is none."""
    label = _value(path, i, row, "label", lambda v: type(v) is int and v in (0, 1), "0 or 1")
    item_id = _value(path, i, row, "id", _is_id, "an integer or text id") if "id" in row else i
    return {
        "id": str(item_id),
        "question": _text(path, i, row, "goal"),
        "choices": [_text(path, i, row, "sol1"), _text(path, i, row, "sol2")],
        "answer": label,
    }


def _truthfulqa_mc1(path: Path, i: int, row: dict) -> dict:
    """truthful_qa `multiple_choice`: question, mc1_targets {choices, labels} with exactly one label 1; the row number
    is the id when there is none."""
    texts = _value(path, i, row, "mc1_targets.choices", _is_texts, "a list of two or more non-empty texts")
    labels = _value(
        path,
        i,
        row,
        "mc1_targets.labels",
        lambda v: (
            isinstance(v, list)
            and len(v) == len(texts)
            and all(type(x) is int for x in v)
            and sorted(v) == [0] * (len(v) - 1) + [1]
        ),
        f"{len(texts)} labels, one 1 and the rest 0",
    )
    item_id = _value(path, i, row, "id", _is_id, "an integer or text id") if "id" in row else i
    return {
        "id": str(item_id),
        "question": _text(path, i, row, "question"),
        "choices": list(texts),
        "answer": labels.index(1),
    }


_MC_READERS = {"arc": _arc, "piqa": _piqa, "truthfulqa_mc1": _truthfulqa_mc1}


def read_multiple_choice(path: str | Path, fmt: str) -> pd.DataFrame:
    """An ARC, PIQA or TruthfulQA (mc1) file as columns id (text), question, choices (list of texts), answer (index of
    the correct choice), format."""
    if fmt not in _MC_READERS:
        raise ValueError(f"unknown multiple-choice format {fmt!r}: one of {', '.join(MC_FORMATS)}")
    path = Path(path)
    rows = [(i, _MC_READERS[fmt](path, i, row) | {"format": fmt}) for i, row in enumerate(read_table(path))]
    return _frame(path, rows, MC_COLUMNS)


def beavertails_pairs(path: str | Path, limit: int | None = None) -> pd.DataFrame:
    """The `test` split of the persona-tailoring BeaverTails set (an HF `save_to_disk` directory) as generic pairs
    without personas: ids `bt-0000`..., prompt, chosen, rejected; the first `limit` rows in stored order.
    FileNotFoundError when the directory is absent."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset directory")
    data = load_from_disk(str(path))
    if not hasattr(data, "keys") or "test" not in data:
        raise DatasetError(f"{path}: no 'test' split")
    split = data["test"]
    if limit is not None:
        split = split.select(range(min(limit, len(split))))
    rows = [
        (i, {"id": f"bt-{i:04d}"} | {field: _text(path / "test", i, row, field) for field in PAIR_COLUMNS[1:]})
        for i, row in enumerate(split.to_list())
    ]
    return _frame(path / "test", rows, PAIR_COLUMNS)


def multiple_choice_accuracy(
    model,
    tokenizer,
    items: pd.DataFrame,
    prefix_fn: Callable[[str], str] | None = None,
    batch_size: int = 16,
    autocast_bf16: bool = False,
) -> pd.DataFrame:
    """Log-likelihood multiple choice. Each choice is scored as the assistant's answer to the question, chat-formatted
    as `scoring.encode_pairs` does, the user message being `prefix_fn(question)` when given; the prediction is the
    choice with the highest mean token log-prob (normalised by token count, where lm-eval-harness' acc_norm normalises
    by bytes), the first one on ties. Items are batched as `scoring.prefix_batches` groups them, each question
    encoded once. One row per item: id, format, pred, answer, correct, and per choice its summed log-prob and token
    count (choice_logps, choice_tokens)."""
    users = items.question if prefix_fn is None else items.question.map(prefix_fn)
    prompts = [tokenizer(chat(tokenizer, None, user), add_special_tokens=False)["input_ids"] for user in users]
    choices = [[tokenizer(text, add_special_tokens=False)["input_ids"] for text in row] for row in items.choices]
    for item_id, group in zip(items.id, choices):
        if len(group) < 2 or not all(group):
            raise ValueError(f"item {item_id!r}: two or more choices are needed, none of them empty")
    device = next(model.parameters()).device
    logps: list[np.ndarray] = [np.empty(0)] * len(items)
    was_training = model.training
    model.eval()
    for index, shared in prefix_batches(prompts, batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            scored = completions_logps(model, [prompts[i] for i in index], [choices[i] for i in index], shared)
        for i, item_logps in zip(index, scored):
            logps[i] = item_logps
    model.train(was_training)
    tokens = [np.array([len(choice) for choice in group]) for group in choices]
    pred = np.array([int(np.argmax(logp / count)) for logp, count in zip(logps, tokens)], dtype=int)
    return pd.DataFrame(
        {
            "id": list(items.id),
            "format": list(items.format),
            "pred": pred,
            "answer": list(items.answer),
            "correct": pred == items.answer.to_numpy(),
            "choice_logps": [logp.tolist() for logp in logps],
            "choice_tokens": [count.tolist() for count in tokens],
        }
    )


def preference_accuracy(
    model,
    tokenizer,
    pairs: pd.DataFrame,
    summed: bool = True,
    prefix_fn: Callable[[str], str] | None = None,
    batch_size: int = 16,
    autocast_bf16: bool = False,
) -> pd.DataFrame:
    """`scoring.score_pairs` on a RewardBench or BeaverTails pair set (summed log-probs by default, as for the safety
    subsets), each prompt replaced by `prefix_fn(prompt)` when given; the pairs' `subset` is kept when they have one."""
    if prefix_fn is not None:
        pairs = pairs.assign(prompt=pairs.prompt.map(prefix_fn))
    scores = score_pairs(model, tokenizer, pairs, batch_size=batch_size, summed=summed, autocast_bf16=autocast_bf16)
    if "subset" in pairs.columns:
        scores.insert(1, "subset", list(pairs.subset))
    return scores


def configured_sets(paths: dict[str, str], subsets: list[str], limit: int) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The out-of-domain sets whose paths are configured and present (first `limit` rows each), and one note per
    set left out and why. Keys of `paths`: beavertails, rewardbench and the multiple-choice formats."""
    sets, notes = {}, []
    for name, path in paths.items():
        if not path:
            notes.append(f"{name}: no path configured")
            continue
        if not Path(path).exists():
            notes.append(f"{name}: {path} does not exist on this machine")
            continue
        if name == "beavertails":
            sets[name] = beavertails_pairs(path, limit)
        elif name == "rewardbench":
            sets[name] = read_rewardbench(path, subsets).head(limit)
        else:
            sets[name] = read_multiple_choice(path, name).head(limit)
    return sets, notes


def tax_scores(
    base_dir: str | Path,
    adapters_dir: str | Path,
    systems: list[tuple[str, str, Callable | None]],
    sets: dict[str, pd.DataFrame],
    batch_size: int,
    precision: str,
    cache_root: str | Path,
    base: BaseParams,
) -> pd.DataFrame:
    """Per item of every set, for every (model, condition, prefix function) in `systems` — model "base" or a run
    name — whether the model gets it right: summed-log-prob preference accuracy on pair sets, mean-log-prob
    multiple-choice accuracy on the others. The base model is loaded once where `base` places it; a run is its
    adapter merged into a copy of it or switched on it (`artifacts.LoadedBase`)."""
    from tqdm.auto import tqdm

    models = LoadedBase.open(base_dir, base.device, base.dtype, base.adapters)
    precision = resolve_precision(precision, models.device)
    cache = ScoreCache(cache_root)
    frames, loaded = [], ("base", models.base())
    for name, condition, prefix_fn in tqdm(
        sorted(systems, key=lambda s: (s[0] != "base", s[0], s[1])), desc="alignment tax", unit="system"
    ):
        run_dir = Path(adapters_dir) / name
        adapter_id = "" if name == "base" else adapter_fingerprint(run_dir)
        for set_name, items in sets.items():
            is_pairs = "chosen" in items.columns
            shown = (
                items
                if prefix_fn is None
                else items.assign(
                    **{
                        "prompt" if is_pairs else "question": (items.prompt if is_pairs else items.question).map(
                            prefix_fn
                        )
                    }
                )
            )
            key_frame = (
                shown
                if is_pairs
                else shown.assign(prompt=shown.question, chosen=shown.choices.map(json.dumps), rejected="")
            )
            key = ScoreCache.key(models.identity, adapter_id, key_frame, {"set": set_name, "precision": precision})
            scores = cache.get(key)
            if scores is None:
                if loaded[0] != name:
                    loaded = (name, models.base() if name == "base" else models.run(run_dir, with_reference=False)[0])
                scores = _score_set(loaded[1], models.tokenizer, shown, is_pairs, batch_size, precision == "bf16")
                cache.put(key, scores)
            frames.append(scores.assign(dataset=set_name, system=name, condition=condition))
    return pd.concat(frames, ignore_index=True)[["dataset", "system", "condition", "id", "correct"]]


def _score_set(model, tokenizer, items: pd.DataFrame, is_pairs: bool, batch_size: int, bf16: bool) -> pd.DataFrame:
    if is_pairs:
        scores = score_pairs(model, tokenizer, items, batch_size, summed=True, autocast_bf16=bf16)
    else:
        scores = multiple_choice_accuracy(model, tokenizer, items, None, batch_size, bf16)
    return scores[["id", "correct"]].assign(id=lambda f: f.id.astype(str))


def tax_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per dataset × system × condition with n and the Wilson 95% interval."""

    rows = []
    for (dataset, system, condition), group in scores.groupby(["dataset", "system", "condition"], sort=True):
        hits, n = int(group.correct.sum()), len(group)
        low, high = wilson_interval(hits, n)
        rows.append(
            {
                "dataset": dataset,
                "system": system,
                "condition": condition,
                "n": n,
                "accuracy": hits / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)
