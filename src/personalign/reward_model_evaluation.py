"""Evaluating the personalized reward models the way "When Personalization Meets Reality" does (sections 4.3-5,
Figures 1-5): accuracy per method with user-level confidence intervals, per-user accuracy with minority users
marked, sample efficiency, adaptation to new users from 30/100/300 pairs, the personalization tax on RewardBench,
and the paper's headline findings as claims decided by paired tests on the same test pairs (personalign.verdicts).

Every function that draws takes a numpy Generator and derives one seed per model (or per table group) from it and
the model's name, so a model's numbers do not depend on which other models are evaluated alongside it; each claim
draws from its own figure_rng(base seed, family and comparison).

Result tables of scored pairs have columns model, id, user_id, margin, correct and scored: `correct` is a nullable
boolean (pd.NA where the model could not score the pair's user, UnseenUserError), so `correct.mean()` is the
accuracy over the scored pairs; `scored` says which pairs those are."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike

from personalign.figures import apply_style, legend
from personalign.reward_models import PreferenceData, UnseenUserError, make_reward_model
from personalign.reward_models.core import bt_loss, draw_seed, tensors
from personalign.seeding import figure_rng, stable_seed
from personalign.statistics import bootstrap_ci
from personalign.verdicts import Claim, clustering, paired_difference

# The registry's "rag" with its default EmbeddingContextJudge: retrieval as in the paper, but the preference is read
# from embedding similarities to the retrieved pairs, not asked of an LLM as in the paper's RAG.
RAG_LABEL = "In-context embedding judge (not the paper's LLM RAG)"
MODEL_LABELS = {
    "vanilla": "Vanilla RM",
    "individual": "Individual RM",
    "conditional": "Conditional RM",
    "prm": "Personalized RM",
    "vpl": "VPL",
    "gpo": "GPO",
    "rag": RAG_LABEL,
    "lora": "LoRA RM",
}
NEW_USER_METHODS = (
    "individual_full",
    "vanilla",
    "vanilla_finetuned",
    "similar_user",
    "individual",
    "prm",
    "prm_user",
    "vpl",
    "gpo",
)
NEW_USER_LABELS = {
    "individual_full": "Individual RM (all user data)",
    "vanilla": "Vanilla RM",
    "vanilla_finetuned": "Vanilla RM fine-tuned",
    "similar_user": "Similar-User RM",
    "individual": "Individual RM (n pairs)",
    "prm": "Personalized RM (generic user)",
    "prm_user": "Personalized RM (user embedding)",
    "vpl": "VPL",
    "gpo": "GPO",
}
UPPER_BOUND = "individual_full"
SCORED_COLUMNS = ["model", "id", "user_id", "margin", "correct", "scored"]

# RewardBench v1 (allenai/reward-bench, rewardbench/constants.py SUBSET_MAPPING and EXAMPLE_COUNTS, as of commit
# 6552e93, Sep 2024). A section's score is the mean of its subsets' accuracies weighted by these counts
# (rewardbench/utils.py calculate_scores_per_section), subsets without results left out of both sums. math-prm has
# 447 pairs but counts 984 = 6 x 164, as much as the six code subsets together, so with every subset present
# Reasoning = (acc(math-prm) + mean acc(hep-*)) / 2.
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "math-prm": 984,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}
SECTION_OF = {subset: section for section, subsets in REWARDBENCH_SECTIONS.items() for subset in subsets}


# --- scoring -------------------------------------------------------------------------------------------------------


def _child(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(stable_seed(seed, *parts))


def _score(model, data: PreferenceData, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(margins, scored) of `data`: the pairs of users the model cannot score (UnseenUserError) get NaN and
    scored False; the other pairs are scored as usual (every model scores a pair from its user alone)."""
    margins, scored = np.full(len(data), np.nan), np.ones(len(data), dtype=bool)
    remaining = np.arange(len(data))
    while len(remaining):
        try:
            margins[remaining] = model.margins(data.subset(remaining), **kwargs)
            break
        except UnseenUserError as error:
            drop = np.isin(data.user_ids[remaining], error.users)
            if not drop.any():
                raise
            scored[remaining[drop]] = False
            remaining = remaining[~drop]
    return margins, scored


def _frame(name: str, data: PreferenceData, margins: np.ndarray, scored: np.ndarray, **extra) -> pd.DataFrame:
    correct = pd.array(np.where(scored, margins > 0, False), dtype="boolean")
    correct[~scored] = pd.NA
    frame = pd.DataFrame(
        {
            "model": name,
            "id": data.ids.astype(str),
            "user_id": data.user_ids.astype(str),
            "margin": margins,
            "correct": correct,
            "scored": scored,
        }
    )
    for column, value in extra.items():
        frame[column] = value
    return frame


def _as_user(data: PreferenceData, user: str) -> PreferenceData:
    """The same pairs, every one attributed to `user` (to score them with that user's reward model)."""
    return PreferenceData(
        data.ids,
        np.full(len(data), user, dtype=object),
        data.prompt_emb,
        data.chosen_emb,
        data.rejected_emb,
        data.prompts,
        data.chosen,
        data.rejected,
    )


def fit_and_score(
    names: Sequence[str],
    train: PreferenceData,
    test: PreferenceData,
    rng: np.random.Generator,
    options: Mapping[str, Mapping] | None = None,
) -> pd.DataFrame:
    """Fit each registry model `names` (hyperparameters from options[name]) on `train` and score every `test` pair:
    columns model, id, user_id, margin, correct, scored (see the module docstring) and fit_seconds. A test user the
    model cannot score (UnseenUserError) is kept with scored False, not raised. Each model's fit is seeded from one
    draw of `rng` and the model's name."""
    options = options or {}
    base = draw_seed(rng)
    frames = []
    for name in names:
        model = make_reward_model(name, **dict(options.get(name, {})))
        start = time.perf_counter()
        model.fit(train, _child(base, "fit", name))
        seconds = time.perf_counter() - start
        frames.append(_frame(name, test, *_score(model, test), fit_seconds=seconds))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORED_COLUMNS + ["fit_seconds"])


# --- accuracy tables -------------------------------------------------------------------------------------------------


def _keys(frame: pd.DataFrame, *candidates: str) -> list[str]:
    return [c for c in candidates if c in frame.columns]


def minority_users_of(per_user: pd.DataFrame) -> set[str]:
    """The minority users (MV-ACC < 0.5) of a characterisation per-user table (personalign.characterisation)."""
    return set(per_user.user_id[per_user.minority.astype(bool)].astype(str))


def per_user_accuracy(results: pd.DataFrame, minority_users: Collection[str] = ()) -> pd.DataFrame:
    """Accuracy per user of each model (and dataset, n and n_per_user, where those columns exist) over the scored
    pairs: columns [dataset,] model, [n,] [n_per_user,] user_id, n_pairs, accuracy, minority (user in
    `minority_users`)."""
    keys = _keys(results, "dataset", "model", "n", "n_per_user") + ["user_id"]
    scored = results[results.scored.astype(bool)]
    table = (
        scored.assign(hit=scored.correct.astype(float))
        .groupby(keys, sort=True)
        .hit.agg(n_pairs="size", accuracy="mean")
        .reset_index()
    )
    table["minority"] = table.user_id.isin(set(map(str, minority_users)))
    return table


def accuracy_summary(
    results: pd.DataFrame,
    rng: np.random.Generator,
    n_resamples: int = 2000,
    minority_users: Collection[str] = (),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per model (and dataset, n and n_per_user, where those columns exist): n_pairs, n_users, n_unscored (pairs of
    users it could not score), accuracy over the scored pairs with a bootstrap interval (low, high) that resamples
    whole users, or pairs below verdicts.MIN_CLUSTERS users (column resampled says which), user_mean (mean of per-user
    accuracies) with its bootstrap interval over users (user_low, user_high), and the mean per-user accuracy of the
    minority and of the other users (NaN without such users)."""
    keys = _keys(results, "dataset", "model", "n", "n_per_user")
    per_user = dict(iter(per_user_accuracy(results, minority_users).groupby(keys, sort=True)))
    none = pd.DataFrame({"accuracy": pd.Series(dtype=float), "minority": pd.Series(dtype=bool)})
    base = draw_seed(rng)
    rows = []
    for key, group in results.groupby(keys, sort=True):
        scored = group[group.scored.astype(bool)]
        users = per_user.get(key, none)
        row = dict(zip(keys, key)) | {
            "n_pairs": len(scored),
            "n_users": scored.user_id.nunique(),
            "n_unscored": int((~group.scored.astype(bool)).sum()),
        }
        if len(scored):
            hits, groups = scored.correct.astype(float).to_numpy(), clustering(scored.user_id.to_numpy())
            acc, low, high = bootstrap_ci(
                hits, rng=_child(base, *key, "pairs"), n_resamples=n_resamples, confidence=confidence, groups=groups
            )
            row["resampled"] = "pairs" if groups is None else "users"
            mean, user_low, user_high = bootstrap_ci(
                users.accuracy.to_numpy(),
                rng=_child(base, *key, "users"),
                n_resamples=n_resamples,
                confidence=confidence,
            )
        else:
            acc = low = high = mean = user_low = user_high = math.nan
            row["resampled"] = ""
        row |= {
            "accuracy": acc,
            "low": low,
            "high": high,
            "user_mean": mean,
            "user_low": user_low,
            "user_high": user_high,
            "minority_accuracy": users.accuracy[users.minority].mean(),
            "majority_accuracy": users.accuracy[~users.minority].mean(),
        }
        rows.append(row)
    return pd.DataFrame(rows)


# --- sample efficiency (Figure 2) -----------------------------------------------------------------------------------


def per_user_sizes(totals: Sequence[int], n_users: int) -> list[int]:
    """Training pairs per user for total budgets (the paper's 1,000 / 10,000 / 100,000 pairs) spread over
    `n_users` users: total // n_users, at least 1."""
    return [max(1, int(total) // max(1, n_users)) for total in totals]


def user_subsample(data: PreferenceData, n: int, seed: int) -> PreferenceData:
    """Each user's first min(n, their pairs) pairs in an order drawn from (seed, user), kept in row order. For one
    seed a smaller n gives a subset of a larger n's pairs (nested samples)."""
    keep = []
    for user, rows in data.user_index().items():
        keep.append(_child(seed, "subsample", user).permutation(rows)[:n])
    return data.subset(np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64))


def sample_efficiency_pairs(
    names: Sequence[str],
    train: PreferenceData,
    test: PreferenceData,
    sizes: Sequence[int],
    rng: np.random.Generator,
    options: Mapping[str, Mapping] | None = None,
) -> pd.DataFrame:
    """Each model fitted on nested per-user subsamples of `train` (`sizes`: pairs per user, capped at what each user
    has; `user_subsample`, one order for every size) and seeded the same at every size, scoring every `test` pair:
    fit_and_score's columns plus n_per_user and n_train (pairs actually used)."""
    base = draw_seed(rng)
    frames = []
    for size in sorted(set(int(s) for s in sizes)):
        sub = user_subsample(train, size, stable_seed(base, "subsample"))
        frames.append(
            fit_and_score(names, sub, test, _child(base, "fit"), options).assign(n_per_user=size, n_train=len(sub))
        )
    return pd.concat(frames, ignore_index=True)


def sample_efficiency_curve(pairs: pd.DataFrame, rng: np.random.Generator, n_resamples: int = 1000) -> pd.DataFrame:
    """Figure 2's table from sample_efficiency_pairs: per model (and dataset, where that column exists) and
    n_per_user, n_train, n_users, n_pairs, n_unscored, accuracy, low, high, resampled (accuracy_summary), user_mean
    and fit_seconds."""
    summary = accuracy_summary(pairs, rng, n_resamples)
    keys = _keys(pairs, "dataset", "model", "n_per_user")
    extra = pairs.groupby(keys, sort=True).agg(n_train=("n_train", "first"), fit_seconds=("fit_seconds", "first"))
    columns = keys + [
        "n_train",
        "n_users",
        "n_pairs",
        "n_unscored",
        "accuracy",
        "low",
        "high",
        "resampled",
        "user_mean",
        "fit_seconds",
    ]
    return summary.merge(extra.reset_index(), on=keys)[columns]


# --- new users (Figure 3) -------------------------------------------------------------------------------------------


def _prm_user_vector(model, data: PreferenceData, steps: int, lr: float) -> torch.Tensor | None:
    """A user vector for a fitted PersonalizedRM learned on `data` alone (full-batch Adam, from the generic user's
    embedding; the rest of the model frozen); None when the model has no learned embeddings (user_dim 0)."""
    net = model.net_
    if net.embedding is None:
        return None
    vector = net.embedding.weight[0].detach().clone().unsqueeze(0).requires_grad_(True)
    x, yw, yl = tensors(data)
    opt = torch.optim.Adam([vector], lr=lr)
    for _ in range(steps):
        loss = bt_loss(net.head.margin(x, yw, yl, vector))
        (grad,) = torch.autograd.grad(loss, vector)  # the shared head's parameters get no gradient
        opt.zero_grad()
        vector.grad = grad
        opt.step()
    return vector.detach()


def _head_margins(model, data: PreferenceData, vector: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.net_.head.margin(*tensors(data), vector).numpy().astype(np.float64)


def _most_similar_user(individual, context: PreferenceData) -> tuple[str, float]:
    """The training user whose Individual RM agrees most often with the labelled `context` pairs (ties: the
    smallest user id), and that agreement."""
    best, best_agreement = "", -1.0
    for user in sorted(individual.heads_):
        agreement = float((individual.margins(_as_user(context, user)) > 0).mean())
        if agreement > best_agreement:
            best, best_agreement = user, agreement
    return best, best_agreement


def new_user_adaptation(
    train_users: PreferenceData,
    new_users_train: PreferenceData,
    new_users_test: PreferenceData,
    sizes: Sequence[int],
    rng: np.random.Generator,
    options: Mapping[str, Mapping] | None = None,
    methods: Sequence[str] = NEW_USER_METHODS,
) -> pd.DataFrame:
    """Cold start (the paper's Figure 3): models fitted on `train_users` only; each new user labels its first n
    pairs (a per-user order drawn from `rng`, nested across `sizes`, capped at what it has) of `new_users_train`,
    and every method scores the user's `new_users_test` pairs, whose labels are never read:

    - gpo, vpl: the n pairs as context, no refit; prm: the generic user (no data; the same at every n);
      prm_user: a user embedding fitted on the n pairs with the rest frozen (options["prm_user"]: steps, lr;
      the generic user when the PRM has no learned embeddings);
    - individual: an Individual RM on the n pairs only; similar_user: the training user's Individual RM that
      agrees most with the n pairs (ties: smallest id; column reference_user);
    - vanilla: the Vanilla RM as fitted; vanilla_finetuned: a copy trained further on the n pairs
      (options["vanilla_finetuned"]["epochs"], default 1 as in the paper);
    - individual_full: the upper bound, an Individual RM on all of the user's training pairs.

    Registry models take options[name]. Columns: model, n, n_context (the user's pairs the method used), id, user_id,
    reference_user, margin, correct, scored."""
    options = options or {}
    unknown = sorted(set(methods) - set(NEW_USER_METHODS))
    if unknown:
        raise ValueError(f"unknown new-user method(s) {unknown}; known: {', '.join(NEW_USER_METHODS)}")
    base = draw_seed(rng)
    fitted: dict[tuple[str, str], object] = {}

    def trained(name: str, data: PreferenceData = train_users, tag: str = "train"):
        if (name, tag) not in fitted:
            model = make_reward_model(name, **dict(options.get(name, {})))
            fitted[name, tag] = model.fit(data, _child(base, "fit", name))
        return fitted[name, tag]

    test, by_user = new_users_test, new_users_test.user_index()
    epochs = int(dict(options.get("vanilla_finetuned", {})).get("epochs", 1))
    embedding = {"steps": 100, "lr": 0.01} | dict(options.get("prm_user", {}))

    def per_user(score) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        """margins and scored of the test pairs from score(user's context pairs, user's test pairs) -> (margins,
        reference user or ""); users without context pairs are left unscored when score returns None."""
        margins, scored, reference = np.full(len(test), np.nan), np.zeros(len(test), dtype=bool), {}
        for user, rows in by_user.items():
            out = score(context.subset(context.user_ids == user), test.subset(rows))
            if out is not None:
                margins[rows], reference[user] = out
                scored[rows] = True
        return margins, scored, reference

    def similar_user(mine: PreferenceData, target: PreferenceData):
        if not len(mine):
            return None
        individual = trained("individual")
        user, _ = _most_similar_user(individual, mine)
        return individual.margins(_as_user(target, user)), user

    def vanilla_finetuned(mine: PreferenceData, target: PreferenceData):
        vanilla = trained("vanilla")
        if not len(mine):
            return vanilla.margins(target), ""
        return vanilla.fine_tune(mine, _child(base, "finetune", target.user_ids[0], n), epochs).margins(target), ""

    def prm_user(mine: PreferenceData, target: PreferenceData):
        prm = trained("prm")
        vector = _prm_user_vector(prm, mine, int(embedding["steps"]), float(embedding["lr"])) if len(mine) else None
        return (prm.margins(target) if vector is None else _head_margins(prm, target, vector)), ""

    frames = []
    full_counts = {u: int((new_users_train.user_ids == u).sum()) for u in by_user}
    for n in sorted(set(int(s) for s in sizes)):
        context = user_subsample(new_users_train, n, stable_seed(base, "order"))
        counts = {u: int((context.user_ids == u).sum()) for u in by_user}
        for name in methods:
            reference: dict[str, str] = {}
            used = counts
            if name == UPPER_BOUND:
                margins, scored = _score(trained("individual", new_users_train, "new users, all pairs"), test)
                used = full_counts
            elif name in ("vanilla", "prm"):
                margins, scored = _score(trained(name), test)
                used = dict.fromkeys(by_user, 0)
            elif name in ("gpo", "vpl"):
                margins, scored = _score(trained(name), test, context=context)
            elif name == "individual":
                margins, scored = _score(trained("individual", context, f"new users, {n} pairs"), test)
            else:
                score = {"similar_user": similar_user, "vanilla_finetuned": vanilla_finetuned, "prm_user": prm_user}
                margins, scored, reference = per_user(score[name])
            frame = _frame(name, test, margins, scored)
            frame.insert(1, "n", n)
            frame.insert(2, "n_context", frame.user_id.map(used).fillna(0).astype(int))
            frame.insert(5, "reference_user", frame.user_id.map(reference).fillna(""))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def new_user_folds(users: Collection[str], per_fold: int, rng: np.random.Generator) -> list[list[str]]:
    """The users in an order drawn from `rng`, cut into folds of `per_fold` (the last may be smaller): each user is
    new once, and each fold leaves at least two users to fit on. ValueError when that is impossible."""
    users = sorted(set(map(str, users)))
    if per_fold < 1 or len(users) < per_fold + 2:
        raise ValueError(f"new users: {per_fold} per fold needs at least {per_fold + 2} users, there are {len(users)}")
    order = [str(u) for u in rng.permutation(users)]
    return [sorted(order[i : i + per_fold]) for i in range(0, len(order), per_fold)]


# --- RewardBench personalization tax (Figure 4) ---------------------------------------------------------------------


def rewardbench_sections(per_subset: pd.DataFrame, counts: Mapping[str, int] | None = None) -> pd.DataFrame:
    """RewardBench section scores from per-subset accuracies (columns subset, accuracy; n is not used): each
    section's accuracy is the mean of its subsets' accuracies weighted by `counts` (default the official
    REWARDBENCH_EXAMPLE_COUNTS, where math-prm weighs as much as all code subsets together). Subsets without an
    accuracy are left out and listed in missing_subsets, never filled; a section without any is NaN. Columns
    section, accuracy, weight (total count of the subsets used), n_subsets, missing_subsets."""
    counts = REWARDBENCH_EXAMPLE_COUNTS if counts is None else counts
    known = per_subset.dropna(subset=["accuracy"]).drop_duplicates("subset").set_index("subset").accuracy
    rows = []
    for section, subsets in REWARDBENCH_SECTIONS.items():
        present = [s for s in subsets if s in known.index]
        weight = float(sum(counts[s] for s in present))
        accuracy = sum(float(known[s]) * counts[s] for s in present) / weight if weight else math.nan
        rows.append(
            {
                "section": section,
                "accuracy": accuracy,
                "weight": weight,
                "n_subsets": len(present),
                "missing_subsets": ", ".join(s for s in subsets if s not in known.index),
            }
        )
    return pd.DataFrame(rows)


def read_rewardbench_all(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The RewardBench-format pairs of every official subset present in a local file (alignment_tax.read_rewardbench
    reads and checks them; columns id, prompt, chosen, rejected, subset) and the official subsets absent from it."""
    from personalign.alignment_tax import _records, read_rewardbench

    present = {row.get("subset") for row in _records(Path(path))}
    wanted = [s for s in SECTION_OF if s in present]
    missing = [s for s in SECTION_OF if s not in present]
    records = (
        read_rewardbench(path, wanted)
        if wanted
        else pd.DataFrame(columns=["id", "prompt", "chosen", "rejected", "subset"])
    )
    return records, missing


def rewardbench_preference_data(
    path: str | Path, embedder, user_id: str = "rewardbench"
) -> tuple[PreferenceData, np.ndarray, list[str]]:
    """(pairs, subset of each pair, missing official subsets) of a local RewardBench file, embedded with `embedder`
    (personalign.reward_models.preference_data); every pair is attributed to `user_id`."""
    from personalign.reward_models import preference_data

    records, missing = read_rewardbench_all(path)
    data = preference_data(records.assign(user_id=user_id), embedder)
    return data, records.subset.to_numpy(dtype=object), missing


def benchmark_hits(
    models: Mapping[str, object],
    bench: PreferenceData,
    subsets: ArrayLike,
    users: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Whether each fitted model ranks each benchmark pair right (`subsets`: the subset of each pair). A model named
    in `users` is scored once per listed user id (the pairs attributed to that user, i.e. that user's reward model)
    and its hit is the share of those copies that rank the pair right; the others are scored once on `bench` as
    given. Columns model, row (the pair's index in `bench`), subset, section ("" outside RewardBench v1), n_users,
    hit."""
    subsets = np.asarray(subsets, dtype=object)
    if subsets.shape != (len(bench),):
        raise ValueError(f"benchmark_hits: {len(subsets)} subset labels for {len(bench)} pairs")
    users = users or {}
    frames = []
    for name, model in models.items():
        copies = list(users.get(name) or [None])
        hits = np.zeros(len(bench))
        for user in copies:
            try:
                margins = np.asarray(model.margins(bench if user is None else _as_user(bench, user)), np.float64)
            except UnseenUserError as error:
                raise ValueError(
                    f"benchmark_hits: {name} scores per user; name the user ids to score the "
                    f"benchmark as in users[{name!r}] ({error})"
                ) from error
            hits += margins > 0
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "row": np.arange(len(bench)),
                    "subset": subsets,
                    "section": [SECTION_OF.get(s, "") for s in subsets],
                    "n_users": len(copies),
                    "hit": hits / len(copies),
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "row", "subset", "section", "n_users", "hit"])
    )


def personalization_tax(hits: pd.DataFrame, counts: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Each model's accuracy on the benchmark (benchmark_hits) per subset and per RewardBench section. Columns model,
    kind ("subset" or "section"), name, section, n_pairs, n_users, accuracy, missing (official subset absent /
    section without any subset) and missing_subsets (section rows)."""
    present = sorted(
        set(hits.subset), key=lambda s: (list(SECTION_OF).index(s) if s in SECTION_OF else len(SECTION_OF), s)
    )
    rows = []
    for name, mine in hits.groupby("model", sort=False):
        accuracy, sizes = mine.groupby("subset").hit.mean(), mine.subset.value_counts()
        n_users = int(mine.n_users.iloc[0])
        for subset in present:
            rows.append(
                {
                    "model": name,
                    "kind": "subset",
                    "name": subset,
                    "section": SECTION_OF.get(subset, ""),
                    "n_pairs": int(sizes[subset]),
                    "n_users": n_users,
                    "accuracy": float(accuracy[subset]),
                    "missing": False,
                    "missing_subsets": "",
                }
            )
        for subset in (s for s in SECTION_OF if s not in sizes.index):
            rows.append(
                {
                    "model": name,
                    "kind": "subset",
                    "name": subset,
                    "section": SECTION_OF[subset],
                    "n_pairs": 0,
                    "n_users": n_users,
                    "accuracy": math.nan,
                    "missing": True,
                    "missing_subsets": "",
                }
            )
        sections = rewardbench_sections(
            pd.DataFrame({"subset": accuracy.index, "accuracy": accuracy.to_numpy()}), counts
        )
        for record in sections.to_dict("records"):
            rows.append(
                {
                    "model": name,
                    "kind": "section",
                    "name": record["section"],
                    "section": record["section"],
                    "n_pairs": int(sum(sizes.get(s, 0) for s in REWARDBENCH_SECTIONS[record["section"]])),
                    "n_users": n_users,
                    "accuracy": record["accuracy"],
                    "missing": record["n_subsets"] == 0,
                    "missing_subsets": record["missing_subsets"],
                }
            )
    return pd.DataFrame(rows)


# --- figures --------------------------------------------------------------------------------------------------------


def _label(name: str, new_users: bool = False) -> str:
    """The display name of a model (of a new-user method with `new_users`)."""
    first, second = (NEW_USER_LABELS, MODEL_LABELS) if new_users else (MODEL_LABELS, NEW_USER_LABELS)
    return first.get(name, second.get(name, name))


def _order(names, new_users: bool = False) -> list[str]:
    """Models in the paper's order (new-user methods in NEW_USER_METHODS order with `new_users`)."""
    rank: dict[str, int] = {}
    for i, n in enumerate(
        (list(NEW_USER_METHODS) + list(MODEL_LABELS)) if new_users else (list(MODEL_LABELS) + list(NEW_USER_METHODS))
    ):
        rank.setdefault(n, i)
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def interval_table(frame: pd.DataFrame, rows: str, columns: str, new_users: bool = False) -> pd.DataFrame:
    """The appendix-table layout of an accuracy frame (accuracy, low, high): one row per `rows` value (models shown
    by name), one column per `columns` value, cells "0.812 [0.801, 0.827]"."""
    cells = frame.assign(
        cell=[f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(frame.accuracy, frame.low, frame.high)]
    )
    table = cells.pivot(index=rows, columns=columns, values="cell")
    if rows == "model":
        table = table.loc[_order(table.index, new_users)]
        table.index = [_label(n, new_users) for n in table.index]
    table.index.name, table.columns.name = rows, None
    return table.fillna("—")


def _yerr(frame: pd.DataFrame) -> np.ndarray:
    return np.vstack([frame.accuracy - frame.low, frame.high - frame.accuracy]).clip(min=0)


def accuracy_figure(summary: pd.DataFrame):
    """Figure 1: accuracy per model (bars, one colour per dataset when a dataset column exists) with the
    user-level 95% intervals; the 0.5 chance line dashed. Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    models = _order(summary.model)
    datasets = sorted(summary.dataset.unique()) if "dataset" in summary.columns else [None]
    width = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(models) * max(1, len(datasets) / 2) + 2), 3.2))
    for j, dataset in enumerate(datasets):
        part = summary if dataset is None else summary[summary.dataset == dataset]
        part = part.set_index("model").reindex([m for m in models if m in set(part.model)]).reset_index()
        x = np.array([models.index(m) for m in part.model]) + (j - (len(datasets) - 1) / 2) * width
        ax.bar(
            x,
            part.accuracy,
            width * 0.95,
            yerr=_yerr(part),
            capsize=2,
            color=f"C{j}",
            label=dataset if dataset is not None else "_nolegend_",
        )
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(models)), [_label(m) for m in models], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI, users resampled)")
    ax.set_title("Reward-model accuracy per method")
    if datasets != [None]:
        legend(ax, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def per_user_figure(per_user: pd.DataFrame):
    """Figure 5: each user's accuracy per model (one panel per dataset when that column exists), minority users as
    red triangles, the others as dots; the 0.5 line dashed. Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    datasets = sorted(per_user.dataset.unique()) if "dataset" in per_user.columns else [None]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.8 * len(datasets) + 1.2, 3.2), squeeze=False)
    labelled: set[bool] = set()
    for ax, dataset in zip(axes[0], datasets):
        part = per_user if dataset is None else per_user[per_user.dataset == dataset]
        models = _order(part.model)
        for i, model in enumerate(models):
            mine = part[part.model == model].sort_values("user_id")
            offsets = np.linspace(-0.25, 0.25, len(mine)) if len(mine) > 1 else np.zeros(len(mine))
            for minority, colour, marker, label in ((False, "C0", "o", "user"), (True, "C3", "v", "minority user")):
                rows = (mine.minority == minority).to_numpy()
                if rows.any():
                    ax.scatter(
                        i + offsets[rows],
                        mine.accuracy.to_numpy()[rows],
                        color=colour,
                        marker=marker,
                        s=20,
                        zorder=3,
                        label=label if minority not in labelled else "_nolegend_",
                    )
                    labelled.add(minority)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(models)), [_label(m) for m in models], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy per user")
        ax.set_title("Per-user accuracy" + (f": {dataset}" if dataset is not None else ""))
    legend(axes[0][-1], frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def sample_efficiency_figure(curve: pd.DataFrame):
    """Figure 2: test accuracy against training pairs per user (log axis), one line per model with its 95% band
    (one panel per dataset when that column exists). Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    datasets = sorted(curve.dataset.unique()) if "dataset" in curve.columns else [None]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets) + 1.6, 3.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = curve if dataset is None else curve[curve.dataset == dataset]
        for i, model in enumerate(_order(part.model)):
            line = part[part.model == model].sort_values("n_per_user")
            ax.plot(line.n_per_user, line.accuracy, marker="o", ms=3, color=f"C{i}", label=_label(model))
            ax.fill_between(line.n_per_user, line.low, line.high, color=f"C{i}", alpha=0.15, lw=0)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if part.n_per_user.nunique() > 1:
            ax.set_xscale("log")
        ax.set_xlabel("training pairs per user")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.set_title("Sample efficiency" + (f": {dataset}" if dataset is not None else ""))
    legend(axes[0][-1], frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def new_user_figure(summary: pd.DataFrame):
    """Figure 3: new users' accuracy against their labelled pairs n (accuracy_summary of new_user_adaptation's
    rows), one line per method with 95% error bars; the upper bound (Individual RM on all of the user's data)
    dashed. Returns the Figure."""
    import matplotlib.pyplot as plt

    apply_style()
    fig, ax = plt.subplots(figsize=(5.8, 3.2))
    sizes = sorted(summary.n.unique())
    for i, model in enumerate(_order(summary.model, new_users=True)):
        line = summary[summary.model == model].sort_values("n")
        style = {"ls": "--", "color": "black"} if model == UPPER_BOUND else {"color": f"C{i}", "marker": "o", "ms": 3}
        ax.errorbar(line.n, line.accuracy, yerr=_yerr(line), capsize=2, label=_label(model, True), **style)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    if len(sizes) > 1:
        ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labelled pairs of the new user (n)")
    ax.set_ylabel("accuracy on the new users")
    ax.set_ylim(0, 1)
    ax.set_title("Adaptation to new users")
    legend(ax, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def tax_figure(tax: pd.DataFrame, before: str = "vanilla", after: str = "individual"):
    """Figure 4: RewardBench section accuracy before (`before`, default the Vanilla RM) and after personalization
    (`after`, default the Individual RM, averaged over users), the change written above each pair. Returns the
    Figure; ValueError when either model has no section rows."""
    import matplotlib.pyplot as plt

    sections = tax[tax.kind == "section"]
    parts = {
        m: sections[sections.model == m].set_index("name").reindex(list(REWARDBENCH_SECTIONS)).accuracy
        for m in (before, after)
    }
    for m, values in parts.items():
        if values.isna().all():
            raise ValueError(f"tax_figure: no RewardBench section accuracy for model {m!r}")
    apply_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    x = np.arange(len(REWARDBENCH_SECTIONS))
    ax.bar(x - 0.2, parts[before], 0.4, color="C7", label=f"before: {_label(before)}")
    ax.bar(x + 0.2, parts[after], 0.4, color="C0", label=f"after: {_label(after)}")
    for i, (a, b) in enumerate(zip(parts[before], parts[after])):
        if not (math.isnan(a) or math.isnan(b)):
            ax.text(
                i,
                max(a, b) + 0.02,
                f"{b - a:+.2f}",
                ha="center",
                va="bottom",
                fontsize=8,
                color="C3" if b < a else "C2",
            )
        elif math.isnan(a) and math.isnan(b):
            ax.text(i, 0.02, "missing", ha="center", va="bottom", fontsize=8, color="grey")
    ax.set_xticks(x, list(REWARDBENCH_SECTIONS))
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("RewardBench accuracy")
    ax.set_title("Personalization tax")
    legend(ax, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# --- claims: the paper's headline findings as paired tests (personalign.verdicts) ------------------------------------

PAPER = "Personalization Meets Reality"
FAMILIES = {
    "accuracy": "Personalization Meets Reality, Fig. 1 (accuracy)",
    "efficiency": "Personalization Meets Reality, Fig. 2 (sample efficiency)",
    "new_users": "Personalization Meets Reality, Fig. 3 (new users)",
    "tax": "Personalization Meets Reality, Fig. 4 (personalization tax)",
    "minority": "Personalization Meets Reality, Fig. 5 (minority users)",
}


def _claim(
    base_seed: int,
    family: str,
    claim: str,
    comparison: str,
    direction: int,
    a: pd.Series | None,
    b: pd.Series | float | None,
    missing: str = "",
) -> Claim:
    """One claim on the scores `a` and `b` (hits indexed by (id, user_id); `b` may be a constant such as chance),
    compared on the pairs both scored and resampled by user; its generator is its own (figure_rng of the family
    and the comparison), so adding a model, dataset or claim moves no other interval."""
    if a is not None and b is not None and not missing:
        if not isinstance(b, pd.Series):
            b = pd.Series(float(b), index=a.index)
        both = a.index.intersection(b.index).sort_values()
        if len(both):
            result = paired_difference(
                a.loc[both].to_numpy(float),
                b.loc[both].to_numpy(float),
                rng=figure_rng(base_seed, f"{family} | {comparison}"),
                groups=both.get_level_values("user_id").to_numpy(),
            )
            return Claim(PAPER, family, claim, comparison, direction, result)
        missing = "no test pair scored by both"
    return Claim(PAPER, family, claim, comparison, direction, None, missing or "not evaluated here")


def _hits(results: pd.DataFrame, model: str, **where) -> pd.Series | None:
    """1.0 / 0.0 per scored test pair of `model` (where column == value for each keyword), indexed by (id, user_id);
    None when the model has no such pairs."""
    keep = (results.model == model) & results.scored.astype(bool)
    for column, value in where.items():
        keep &= results[column] == value
    part = results[keep]
    if part.empty:
        return None
    return pd.Series(
        part.correct.astype(float).to_numpy(),
        index=pd.MultiIndex.from_arrays([part.id.astype(str), part.user_id.astype(str)], names=["id", "user_id"]),
    )


def _ranked(results: pd.DataFrame, exclude: Collection[str]) -> list[str]:
    """The models of `results` other than `exclude`, most accurate first (ties by name)."""
    accuracy = results[results.scored.astype(bool)].groupby("model").correct.mean().astype(float).dropna()
    accuracy = accuracy.drop([m for m in exclude if m in accuracy.index])
    return sorted(accuracy.index, key=lambda m: (-accuracy[m], m))


def _datasets(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "dataset" not in results.columns:
        return [("", results)]
    return [(str(d), part) for d, part in results.groupby("dataset", sort=True)]


def _prefix(dataset: str) -> str:
    return f"{dataset}: " if dataset else ""


def accuracy_claims(pairs: pd.DataFrame, base_seed: int) -> list[Claim]:
    """Fig. 1, per dataset (fit_and_score's scored pairs): Personalized RM beats every other method, Individual RM
    every method but the Personalized RM, and RAG is the weakest. Each is tested against the strongest (weakest
    for RAG) rival on these pairs, the hardest comparison for the claim."""
    family, claims = FAMILIES["accuracy"], []
    for dataset, part in _datasets(pairs):
        tests = (
            ("prm", ("prm",), "Personalized RM is the most accurate method", +1, 0),
            (
                "individual",
                ("prm", "individual"),
                "Individual RM is a strong baseline, second only to the Personalized RM",
                +1,
                0,
            ),
            ("rag", ("rag",), "RAG is the weakest method", -1, -1),
        )
        for model, exclude, claim, direction, pick in tests:
            rivals = _ranked(part, exclude)
            if _hits(part, model) is None or not rivals:
                claims.append(
                    _claim(
                        base_seed,
                        family,
                        claim,
                        f"{_prefix(dataset)}{_label(model)}",
                        direction,
                        None,
                        None,
                        f"{_label(model)} or its rivals not evaluated",
                    )
                )
                continue
            rival = rivals[pick]
            which = "least" if pick else "most"
            comparison = f"{_prefix(dataset)}{_label(model)} − {_label(rival)} (the {which} accurate rival)"
            claims.append(
                _claim(base_seed, family, claim, comparison, direction, _hits(part, model), _hits(part, rival))
            )
    return claims


def minority_claims(pairs: pd.DataFrame, minority_users: Collection[str], base_seed: int) -> list[Claim]:
    """Fig. 5, per dataset, on the minority users' test pairs: the Vanilla RM is below chance on them, and the
    Individual RM serves them better."""
    family, claims, minority = FAMILIES["minority"], [], set(map(str, minority_users))
    for dataset, part in _datasets(pairs):
        mine = part[part.user_id.astype(str).isin(minority)]
        missing = "" if len(mine) else "no minority user (majority-vote accuracy < 0.5) in the test pairs"
        claims.append(
            _claim(
                base_seed,
                family,
                "Vanilla RM fails minority users (below chance on them)",
                f"{_prefix(dataset)}Vanilla RM − 0.5 on minority users' pairs",
                -1,
                _hits(mine, "vanilla"),
                0.5,
                missing,
            )
        )
        claims.append(
            _claim(
                base_seed,
                family,
                "Individual RM preserves minority users' preferences",
                f"{_prefix(dataset)}Individual RM − Vanilla RM on minority users' pairs",
                +1,
                _hits(mine, "individual"),
                _hits(mine, "vanilla"),
                missing,
            )
        )
    return claims


def efficiency_claims(
    pairs: pd.DataFrame, base_seed: int, models: Sequence[str] = ("individual", "prm")
) -> list[Claim]:
    """Fig. 2 (sample_efficiency_pairs): more training pairs per user raise the accuracy of the methods that learn
    personalized RMs (the paper exempts those that do not, e.g. Conditional RM and GPO on P-SOUPS; default: the
    Individual and Personalized RM), tested as the largest size against the smallest on the same test pairs. Few
    claims per family on purpose: with 8 users a clustered sign-flip p is at least 2/256, so Holm over 7 could
    never decide."""
    family, claims = FAMILIES["efficiency"], []
    for dataset, part in _datasets(pairs):
        small, large = int(part.n_per_user.min()), int(part.n_per_user.max())
        for model in models:
            comparison = f"{_prefix(dataset)}{_label(model)} at {large} − at {small} training pairs per user"
            claims.append(
                _claim(
                    base_seed,
                    family,
                    "More training pairs per user improve accuracy",
                    comparison,
                    +1,
                    _hits(part, model, n_per_user=large),
                    _hits(part, model, n_per_user=small),
                    "" if large > small else "one training size only",
                )
            )
    return claims


def new_user_claims(rows: pd.DataFrame, base_seed: int) -> list[Claim]:
    """Fig. 3, per n (new_user_adaptation's rows): GPO beats every other new-user method (the upper bound, an
    Individual RM on all of the user's data, excluded), tested against the strongest of them at that n."""
    family, claims = FAMILIES["new_users"], []
    for dataset, part in _datasets(rows):
        for n, at_n in part.groupby("n", sort=True):
            rivals = _ranked(at_n, ("gpo", UPPER_BOUND))
            gpo = _hits(at_n, "gpo")
            if gpo is None or not rivals:
                claims.append(
                    _claim(
                        base_seed,
                        family,
                        "GPO adapts best to new users",
                        f"{_prefix(dataset)}n={n}: GPO",
                        +1,
                        None,
                        None,
                        "GPO or its rivals not evaluated",
                    )
                )
                continue
            comparison = f"{_prefix(dataset)}n={n}: GPO − {_label(rivals[0], True)} (the most accurate rival)"
            claims.append(
                _claim(base_seed, family, "GPO adapts best to new users", comparison, +1, gpo, _hits(at_n, rivals[0]))
            )
    return claims


def tax_claims(hits: pd.DataFrame, base_seed: int, before: str = "vanilla", after: str = "individual") -> list[Claim]:
    """Fig. 4 (benchmark_hits): personalization (`after`) costs RewardBench Safety and Reasoning against `before`,
    paired on the section's pairs (unweighted: each pair counts once, unlike the section score)."""
    claims = []
    for section in ("Safety", "Reasoning"):
        mine = hits[hits.section == section]
        scores = {}
        for model in (before, after):
            rows = mine[mine.model == model]
            scores[model] = (
                pd.Series(
                    rows.hit.to_numpy(float),
                    index=pd.MultiIndex.from_arrays(
                        [rows.row.astype(str), np.full(len(rows), "rewardbench")], names=["id", "user_id"]
                    ),
                )
                if len(rows)
                else None
            )
        comparison = f"RewardBench {section}: {_label(after)} − {_label(before)} (pairs, unweighted)"
        claims.append(
            _claim(
                base_seed,
                FAMILIES["tax"],
                f"Personalization costs {section.lower()}",
                comparison,
                -1,
                scores[after],
                scores[before],
                "" if len(mine) else f"no {section} subset in the RewardBench file",
            )
        )
    return claims


def reward_model_claims(
    base_seed: int,
    pairs: pd.DataFrame | None = None,
    minority_users: Collection[str] = (),
    efficiency: pd.DataFrame | None = None,
    new_users: pd.DataFrame | None = None,
    bench: pd.DataFrame | None = None,
) -> list[Claim]:
    """Every headline claim of the paper this stage tests, in the paper's figure order; a claim whose table is
    absent is listed as not tested, with the reason."""

    def absent(key: str, claim: str, why: str, direction: int) -> list[Claim]:
        return [Claim(PAPER, FAMILIES[key], claim, "—", direction, None, why)]

    no_models = "no reward models were fitted"
    claims = (
        accuracy_claims(pairs, base_seed)
        if pairs is not None
        else (absent("accuracy", "Personalized RM is the most accurate method", no_models, +1))
    )
    claims += (
        efficiency_claims(efficiency, base_seed)
        if efficiency is not None
        else (absent("efficiency", "More training pairs per user improve accuracy", no_models, +1))
    )
    claims += (
        new_user_claims(new_users, base_seed)
        if new_users is not None
        else (
            absent(
                "new_users",
                "GPO adapts best to new users",
                "no new-user adaptation (reward_models.new_users is 0 or too few users)",
                +1,
            )
        )
    )
    claims += (
        tax_claims(bench, base_seed)
        if bench is not None
        else [
            c
            for section in ("safety", "reasoning")
            for c in absent(
                "tax", f"Personalization costs {section}", "no RewardBench-format file (reward_models.rewardbench)", -1
            )
        ]
    )
    claims += (
        minority_claims(pairs, minority_users, base_seed)
        if pairs is not None
        else (absent("minority", "Vanilla RM fails minority users (below chance on them)", no_models, -1))
    )
    return claims
