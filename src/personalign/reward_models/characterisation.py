"""Dataset characterisation after "When Personalization Meets Reality" (section 4.2, Table 2), for any canonical
record table with several users: inter-personal disagreement, intra-personal consistency, minority users and the
room for personalization.

A labelled pair is (prompt, unordered {response a, response b}), a < b as text, so (a, b) and (b, a) are one pair;
each record is one user's label on one pair: the response they chose. From the labels:

- vote: per (user, pair), the response the user chose most often; a user whose own labels on the pair are tied votes
  half for each. One vote per distinct user and pair, whatever the number of their labels.
- overlapping pair: labelled by at least two distinct users. Every inter-user metric uses only these.
- divergence rate: the share of overlapping pairs whose votes are not unanimous (a half vote is not unanimous).
- high-divergence rate: the share of overlapping pairs where the votes against the majority make up at least
  `threshold` (default 0.3) of the pair's users: min(votes a, votes b) / users >= threshold (a tie counts 0.5).
- MV-ACC of a user: over each of the user's labels (records) on overlapping pairs, 1 if the label is the pair's
  majority vote (the user's own vote included), 0.5 if that majority is tied, 0 otherwise; the mean. A minority user
  has MV-ACC < 0.5.
- consistency: over the (user, pair) labelled at least twice, the share of those labels agreeing with the user's own
  majority on the pair (max(count a, count b) / labels, so a tie agrees half); per user, and pooled over users.
- room for personalization: mean per-user consistency (users with repeated labels) minus mean per-user MV-ACC (users
  with overlapping labels). Without repeated labels consistency is taken as 1 and the room flagged an upper bound.

A metric that cannot be computed (no records, one user, no overlapping pair, no repeated label) is None with a
human-readable reason, never 0. Every result depends only on the records, not on their order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from personalign.core.figures import apply_style, legend, users_column

HIGH_DIVERGENCE = 0.3
MINORITY_BELOW = 0.5
UNDEFINED = "undefined"
TABLE2_COLUMNS = (
    "#Samples",
    "#Users",
    "%Cont.",
    "%Highly Cont.",
    "MV-ACC Range",
    "Consistency",
    "Room",
    "#Minority users",
)
# metric -> the Table 2 column showing it
METRIC_COLUMNS = {
    "divergence_rate": "%Cont.",
    "high_divergence_rate": "%Highly Cont.",
    "mv_acc": "MV-ACC Range",
    "consistency": "Consistency",
    "room": "Room",
    "minority_users": "#Minority users",
}
PER_USER_COLUMNS = ("user_id", "n_labels", "n_overlapping", "mv_acc", "minority", "n_repeat_labels", "consistency")


@dataclass
class Characterisation:
    """One dataset's characterisation; a None metric has its reason in `reasons` (metric name -> reason)."""

    name: str
    n_samples: int
    n_users: int
    n_pairs: int
    n_overlapping_pairs: int
    high_divergence_threshold: float
    divergence_rate: float | None
    high_divergence_rate: float | None
    mv_acc_min: float | None
    mv_acc_max: float | None
    mv_acc_mean: float | None
    n_minority_users: int | None
    n_repeat_labels: int
    consistency: float | None
    mean_user_consistency: float | None
    room: float | None
    room_is_upper_bound: bool
    reasons: dict[str, str]
    per_user: pd.DataFrame = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready: every field, per-user rows as a list of dicts with NaN as None."""
        out = {k: v for k, v in self.__dict__.items() if k != "per_user"}
        out["per_user"] = [{k: _json_value(v) for k, v in row.items()} for row in self.per_user.to_dict("records")]
        return out


def _json_value(value: object) -> object:
    """numpy scalars as Python ones, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def label_table(records: pd.DataFrame, splits: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per record (of `splits` only, when given: one split name or several): id, user_id, prompt,
    response_a < response_b, choice (0: the user chose a, 1: b) and pair (an integer id, in (prompt, a, b) order);
    rows sorted by pair, user, id."""
    if splits is not None:
        records = records[records.split.isin([splits] if isinstance(splits, str) else list(splits))]
    chosen, rejected = records.chosen.to_numpy(dtype=object), records.rejected.to_numpy(dtype=object)
    same = chosen == rejected
    if same.any():
        raise ValueError(f"record {records.id.to_numpy()[same][0]!r}: chosen and rejected are the same text")
    chose_a = chosen < rejected
    labels = pd.DataFrame(
        {
            "id": records.id.to_numpy(dtype=object),
            "user_id": records.user_id.to_numpy(dtype=object),
            "prompt": records.prompt.to_numpy(dtype=object),
            "response_a": np.where(chose_a, chosen, rejected),
            "response_b": np.where(chose_a, rejected, chosen),
            "choice": (~chose_a).astype(int),
        }
    )
    labels["pair"] = labels.groupby(["prompt", "response_a", "response_b"], sort=True).ngroup().astype(int)
    return labels.sort_values(["pair", "user_id", "id"], ignore_index=True)


def _user_pair_counts(labels: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, user): n labels, n_b of them for b, the user's vote for b (1, 0, or 0.5 when tied) and agree =
    max(n_b, n - n_b), the labels agreeing with the user's own majority (a tie: half of them)."""
    per = labels.groupby(["pair", "user_id"], sort=True).choice.agg(n="size", n_b="sum").reset_index()
    per["vote_b"] = (np.sign(2 * per.n_b - per.n) + 1) / 2
    per["agree"] = np.maximum(per.n_b, per.n - per.n_b)
    return per


def _pair_votes(per: pd.DataFrame) -> pd.DataFrame:
    """Per pair: users, votes for b, unanimous, majority (+1: b, -1: a, 0: tied) and minority_share, the share of
    the users whose votes go against the majority (min(votes a, votes b) / users; 0.5 when tied)."""
    pairs = per.groupby("pair", sort=True).agg(
        users=("user_id", "size"), votes_b=("vote_b", "sum"), low=("vote_b", "min"), high=("vote_b", "max")
    )
    pairs["unanimous"] = (pairs.low == pairs.high) & (pairs.low != 0.5)
    pairs["majority"] = np.sign(2 * pairs.votes_b - pairs.users)
    pairs["minority_share"] = np.minimum(pairs.votes_b, pairs.users - pairs.votes_b) / pairs.users
    return pairs


def per_user_table(labels: pd.DataFrame) -> pd.DataFrame:
    """Per user (sorted by user_id): n_labels, n_overlapping (labels on pairs of at least two users), mv_acc (NaN
    without overlapping labels), minority (mv_acc < 0.5), n_repeat_labels (labels on pairs the user labelled at least
    twice) and consistency (NaN without repeats)."""
    per = _user_pair_counts(labels)
    return _per_user(labels, per, _pair_votes(per))


def _per_user(labels: pd.DataFrame, per: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """per_user_table from the labels and their per (pair, user) counts and pair votes."""
    overlap = labels.join(pairs[pairs.users >= 2].majority, on="pair", how="inner")
    overlap["score"] = np.where(overlap.majority == 0, 0.5, (2 * overlap.choice - 1 == overlap.majority).astype(float))
    mv = overlap.groupby("user_id").score.agg(n_overlapping="size", mv_acc="mean")
    repeats = per[per.n >= 2].groupby("user_id")[["n", "agree"]].sum()
    users = pd.DataFrame(index=pd.Index(sorted(labels.user_id.unique()), name="user_id", dtype=object))
    users["n_labels"] = labels.groupby("user_id").size()
    users = users.join(mv).join(repeats)
    users["n_overlapping"] = users.n_overlapping.fillna(0).astype(int)
    users["mv_acc"] = users.mv_acc.astype(float)
    users["minority"] = (users.mv_acc < MINORITY_BELOW).astype(bool)
    users["n_repeat_labels"] = users.n.fillna(0).astype(int)
    users["consistency"] = (users.agree / users.n).astype(float)
    return users.reset_index()[list(PER_USER_COLUMNS)]


def characterise(
    records: pd.DataFrame, name: str, splits: Iterable[str] | None = None, threshold: float = HIGH_DIVERGENCE
) -> Characterisation:
    """Characterise one dataset's records (of `splits` only, when given); `threshold` is the share of a pair's users
    against the majority that makes it highly divergent (0 < threshold <= 0.5)."""
    if not 0 < threshold <= 0.5:
        raise ValueError(f"threshold must be in (0, 0.5], got {threshold}")
    labels = label_table(records, splits)
    per = _user_pair_counts(labels)
    pairs = _pair_votes(per)
    overlapping = pairs[pairs.users >= 2]
    users = _per_user(labels, per, pairs)
    n_users = len(users)
    reasons: dict[str, str] = {}
    if labels.empty:
        overlap_reason: str | None = "no records"
    elif n_users == 1:
        overlap_reason = "only one user"
    elif overlapping.empty:
        overlap_reason = "no pair is labelled by two users"
    else:
        overlap_reason = None
    if overlap_reason:
        reasons.update(
            dict.fromkeys(
                ("divergence_rate", "high_divergence_rate", "mv_acc", "minority_users", "room"), overlap_reason
            )
        )
    repeated = per[per.n >= 2]
    if repeated.empty:
        reasons["consistency"] = "no records" if labels.empty else "no user labelled the same pair twice"
    mv = users.mv_acc.dropna()
    mean_consistency = None if repeated.empty else float(users.consistency.dropna().mean())
    room = None if overlap_reason else (1.0 if mean_consistency is None else mean_consistency) - float(mv.mean())
    return Characterisation(
        name=name,
        n_samples=len(labels),
        n_users=n_users,
        n_pairs=len(pairs),
        n_overlapping_pairs=len(overlapping),
        high_divergence_threshold=threshold,
        divergence_rate=None if overlap_reason else float((~overlapping.unanimous).mean()),
        high_divergence_rate=None if overlap_reason else float((overlapping.minority_share >= threshold).mean()),
        mv_acc_min=None if overlap_reason else float(mv.min()),
        mv_acc_max=None if overlap_reason else float(mv.max()),
        mv_acc_mean=None if overlap_reason else float(mv.mean()),
        n_minority_users=None if overlap_reason else int(users.minority.sum()),
        n_repeat_labels=int(repeated.n.sum()),
        consistency=None if repeated.empty else float(repeated.agree.sum() / repeated.n.sum()),
        mean_user_consistency=mean_consistency,
        room=room,
        room_is_upper_bound=room is not None and mean_consistency is None,
        reasons=reasons,
        per_user=users,
    )


def characterise_sources(
    records: pd.DataFrame, splits: Iterable[str] | None = None, threshold: float = HIGH_DIVERGENCE
) -> list[Characterisation]:
    """One characterisation per dataset (`source`) of a merged record table, sorted by name."""
    return [
        characterise(group, str(source), splits, threshold) for source, group in records.groupby("source", sort=True)
    ]


def _percent(value: float | None) -> str:
    return UNDEFINED if value is None else f"{100 * value:.1f}%"


def table2(results: Sequence[Characterisation]) -> tuple[pd.DataFrame, list[str]]:
    """The paper's Table 2, one row per dataset (index "Dataset"), cells as text; an undefined cell reads
    "undefined", and the notes list says why (and when Room is only an upper bound, shown as "≤ x")."""
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"dataset names must be unique, got {names}")
    rows, notes = [], []
    for r in results:
        room = UNDEFINED if r.room is None else f"{'≤ ' if r.room_is_upper_bound else ''}{r.room:.2f}"
        rows.append(
            {
                "#Samples": str(r.n_samples),
                "#Users": str(r.n_users),
                "%Cont.": _percent(r.divergence_rate),
                "%Highly Cont.": _percent(r.high_divergence_rate),
                "MV-ACC Range": UNDEFINED if r.mv_acc_min is None else f"[{r.mv_acc_min:.2f}–{r.mv_acc_max:.2f}]",
                "Consistency": UNDEFINED if r.consistency is None else f"{r.consistency:.2f}",
                "Room": room,
                "#Minority users": UNDEFINED if r.n_minority_users is None else str(r.n_minority_users),
            }
        )
        by_reason: dict[str, list[str]] = {}
        for metric, reason in r.reasons.items():
            by_reason.setdefault(reason, []).append(METRIC_COLUMNS[metric])
        notes += [f"{r.name}: {', '.join(columns)} undefined: {reason}." for reason, columns in by_reason.items()]
        if r.room_is_upper_bound:
            notes.append(f"{r.name}: Room is an upper bound: consistency taken as 1 ({r.reasons['consistency']}).")
    table = pd.DataFrame(rows, index=pd.Index(names, name="Dataset"), columns=list(TABLE2_COLUMNS))
    return table, notes


def characterisation_json(results: Sequence[Characterisation]) -> dict:
    """JSON-ready results: every dataset's characterisation (by name), the Table 2 cells and its notes."""
    table, notes = table2(results)
    return {"datasets": {r.name: r.to_dict() for r in results}, "table2": table.to_dict("index"), "notes": notes}


def mv_acc_figure(results: Sequence[Characterisation]):
    """Per-user MV-ACC as dots, one column per dataset, the 0.5 line dashed and minority users (below it) marked;
    a dataset without a defined MV-ACC shows "undefined". Returns the matplotlib Figure (nothing is shown)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    apply_style()
    palette = sns.color_palette()
    fig, ax = plt.subplots(figsize=(max(5.2, 1.1 * len(results) + 3.4), 3.2))
    styles = {
        False: ("majority-aligned user", palette[0], "o"),
        True: ("minority user (MV-ACC < 0.5)", palette[3], "v"),
    }
    labelled: set[bool] = set()
    for x, r in enumerate(results):
        users = r.per_user.dropna(subset=["mv_acc"])
        if users.empty:
            ax.text(x, 0.52, UNDEFINED, ha="center", va="bottom", color="grey", fontsize=8)
            continue
        users_column(ax, x, users.mv_acc.to_numpy(), users.minority.to_numpy(), styles, 22, labelled)
    ax.axhline(MINORITY_BELOW, color="grey", lw=0.8, ls="--", label="0.5 (minority below)")
    ax.set_xticks(range(len(results)), [r.name for r in results])
    ax.set_xlim(-0.6, len(results) - 0.4)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("MV-ACC per user")
    ax.set_title("Agreement of each user with the majority vote")
    legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
