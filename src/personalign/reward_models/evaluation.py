"""Evaluating the personalized reward models the way "When Personalization Meets Reality" does (sections 4.3-5):
fitting and scoring each method, accuracy with user-level confidence intervals, per-user accuracy with minority
users marked, sample efficiency, and adaptation to new users from 30/100/300 pairs. Figures are in `report`,
the paper's findings as tested claims in `claims`.

Every function that draws takes a numpy Generator and derives one seed per model (or per table group) from it and
the model's name, so a model's numbers do not depend on which other models are evaluated alongside it.

Result tables of scored pairs have columns model, id, user_id, margin, correct and scored: `correct` is a nullable
boolean (pd.NA where the model could not score the pair's user, UnseenUserError), so `correct.mean()` is the
accuracy over the scored pairs; `scored` says which pairs those are."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from personalign.core.seeding import stable_seed
from personalign.reward_models import PreferenceData, UnseenUserError, make_reward_model
from personalign.reward_models.core import bt_loss, draw_seed, tensors
from personalign.stats.statistics import bootstrap_ci
from personalign.stats.verdicts import clustering

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


def _keys(frame: pd.DataFrame, *candidates: str) -> list[str]:
    return [c for c in candidates if c in frame.columns]


def minority_users_of(per_user: pd.DataFrame) -> set[str]:
    """The minority users (MV-ACC < 0.5) of a characterisation per-user table (reward_models.characterisation)."""
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


def new_users_by_fold(
    train: PreferenceData,
    test: PreferenceData,
    folds: list[list[str]],
    sizes: Sequence[int],
    rngs: Sequence[np.random.Generator],
) -> pd.DataFrame:
    """`new_user_adaptation` once per fold of new users (fitted on the other users' training pairs, adapted on the new
    users' own), the fold's number in column `fold`; fold i draws from rngs[i]."""
    parts = []
    for i, (new, rng) in enumerate(zip(folds, rngs)):
        is_new, is_new_test = np.isin(train.user_ids, new), np.isin(test.user_ids, new)
        parts.append(
            new_user_adaptation(
                train.subset(~is_new), train.subset(is_new), test.subset(is_new_test), sizes, rng
            ).assign(fold=i)
        )
    return pd.concat(parts, ignore_index=True)
