"""The headline claims of WikiPersona and Whose Boat as paired tests on the same items (personalign.stats.verdicts),
each with a generator of its own, and the collection of every stage's verdicts into one table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from personalign.core.config import MT_PREFIX_TYPES, POSITIVE_CONTROL_KINDS, PREFIX_TYPES
from personalign.core.seeding import figure_rng
from personalign.stats.verdicts import COLUMNS, Claim, formatted_verdicts, paired_difference, verdict_table

WIKIPERSONA = "WikiPersona"


WHOSE_BOAT = "Whose Boat"


PIPELINE = "this pipeline"


def paired_claim(
    family: str,
    claim: str,
    comparison: str,
    direction: int,
    a: pd.DataFrame,
    b: pd.DataFrame,
    seed: int,
    n_resamples: int,
    on: tuple[str, ...] = ("id",),
    paper: str = WIKIPERSONA,
) -> Claim:
    """One claim tested on the items `a` and `b` share (rows matched on `on`; columns `score` and `user_id`):
    mean(a - b) by `verdicts.paired_difference`, clustered by user, with a generator of its own so that no other
    claim moves it."""
    keys = list(on)
    for side, frame in (("a", a), ("b", b)):
        duplicated = frame.duplicated(keys)
        if duplicated.any():
            raise ValueError(f"{comparison}: side {side} holds item {frame[duplicated][keys].iloc[0].tolist()} twice")
    pairs = a[keys + ["user_id", "score"]].merge(b[keys + ["score"]], on=keys, suffixes=("_a", "_b"))
    if pairs.empty:
        return Claim(paper, family, claim, comparison, direction, None, missing="no item was scored for both sides")
    result = paired_difference(
        pairs.score_a.to_numpy(float),
        pairs.score_b.to_numpy(float),
        rng=figure_rng(seed, f"{family}: {comparison}"),
        groups=pairs.user_id.to_numpy(),
        n_resamples=n_resamples,
    )
    return Claim(paper, family, claim, comparison, direction, result)


def _cell(examples: pd.DataFrame, mask) -> pd.DataFrame:
    """Rows of `examples` under `mask` with `correct` as the paired `score`."""
    return examples[mask].assign(score=lambda t: t.correct.astype(float))


def _base(examples: pd.DataFrame, variant: str) -> pd.DataFrame:
    return _cell(examples, (examples.system == "base") & (examples.variant == variant))


def _mt_prefixes(runs: dict[str, dict]) -> dict[str, str]:
    return {name: run.get("prefix", "none") for name, run in runs.items() if run["kind"] == "mt"}


def _absent(family: str, claim: str, why: str) -> list[Claim]:
    return [Claim(WIKIPERSONA, family, claim, "—", 1, None, missing=why)]


def prompting_claims(examples: pd.DataFrame, seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 3, on every test pair, base model only: the gold persona prefix beats every other prompt (+1), and each
    other prefix changes accuracy little against no prefix (0)."""
    family = "WikiPersona Fig. 3 (prompting)"
    variants = {p: ("none" if p == "none" else f"{p}@0") for p in PREFIX_TYPES}
    present = [p for p, v in variants.items() if (examples[examples.system == "base"].variant == v).any()]
    if "none" not in present:
        return _absent(family, "prompting changes accuracy minimally", "the base model was not scored without a prefix")
    claims = []
    if "gold" in present:
        claims += [
            paired_claim(
                family,
                "the gold persona is the best prompt",
                f"base + gold vs base + {p}",
                1,
                _base(examples, variants["gold"]),
                _base(examples, variants[p]),
                seed,
                n_resamples,
            )
            for p in present
            if p != "gold"
        ]
    claims += [
        paired_claim(
            family,
            "prompting changes accuracy minimally",
            f"base + {p} vs base, no prefix",
            0,
            _base(examples, variants[p]),
            _base(examples, "none"),
            seed,
            n_resamples,
        )
        for p in present
        if p not in ("none", "gold")
    ]
    return claims


def _full_data_pms(runs: dict[str, dict]) -> dict[str, str]:
    return {
        n: r["user"]
        for n, r in runs.items()
        if r["kind"] == "pm" and r.get("fraction", 1.0) == 1.0 and r.get("seed", 0) == 0
    }


def personal_claims(examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 4. The paper's own-user vs other-users contrast sets different test pairs side by side, so it is not a
    paired comparison; what is paired is two systems on the same pairs, the user's own test pairs: the personal
    model vs the base model without a prefix, and vs every other user's personal model."""
    family = "WikiPersona Fig. 4 (personal models)"
    pms = _full_data_pms(runs)
    if not pms:
        return _absent(family, "a personal model fits its own user", "no full-data personal model in train.runs")
    claims = []
    for name, user in pms.items():
        own = examples.user_id == user
        mine = _cell(examples, own & (examples.system == name))
        claims.append(
            paired_claim(
                family,
                "a personal model beats prompting on its own user",
                f"{name} vs base, no prefix, on {user}'s test pairs",
                1,
                mine,
                _base(examples[own], "none"),
                seed,
                n_resamples,
            )
        )
        claims += [
            paired_claim(
                family,
                "a personal model fits its own user better than another user's model",
                f"{name} vs {other} on {user}'s test pairs",
                1,
                mine,
                _cell(examples, own & (examples.system == other)),
                seed,
                n_resamples,
            )
            for other in pms
            if other != name
        ]
    return claims


def data_efficiency_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """Fig. 13: per user, the personal models at the largest vs the smallest fraction of the user's training pairs
    (per test pair, the mean correctness over seeds) on the user's own test pairs."""
    family = "WikiPersona Fig. 13 (data efficiency)"
    pms = pd.DataFrame(
        [
            {"run": n, "user": r["user"], "fraction": float(r.get("fraction", 1.0))}
            for n, r in runs.items()
            if r["kind"] == "pm"
        ],
        columns=["run", "user", "fraction"],
    )
    curves = pms.groupby("user").filter(lambda part: part.fraction.nunique() > 1)
    if curves.empty:
        return _absent(family, "more training data, higher accuracy", "no user has personal models at two fractions")
    claims = []
    for user, part in curves.groupby("user", sort=True):
        ends = []
        for fraction in (part.fraction.max(), part.fraction.min()):
            names = list(part[part.fraction == fraction].run)
            own = _cell(examples, examples.system.isin(names) & (examples.user_id == user))
            ends.append((fraction, len(names), own.groupby(["id", "user_id"], as_index=False).score.mean()))
        (high, n_high, a), (low, n_low, b) = ends
        claims.append(
            paired_claim(
                family,
                "more training data, higher accuracy",
                f"{user}: PM on {high:.0%} vs {low:.0%} of the user's pairs (mean of {n_high} vs {n_low} seeds)",
                1,
                a,
                b,
                seed,
                n_resamples,
            )
        )
    return claims


def multitask_claims(examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 5: per prefix type, MT with its trained prefix on the users its fold held out vs the base model without a
    prefix, on the same test pairs."""
    family = "WikiPersona Fig. 5 (multitask, unseen users)"
    prefix_of = {n: p for n, p in _mt_prefixes(runs).items() if p != "none"}
    if not prefix_of:
        return _absent(family, "MT with a prefix generalises to unseen users", "no multitask run with a prefix")
    base = _base(examples, "none")
    return [
        paired_claim(
            family,
            "MT with a prefix beats the base model on unseen users",
            f"MT + {prefix} (unseen users) vs base, no prefix",
            1,
            _cell(
                examples,
                examples.system.isin([n for n, p in prefix_of.items() if p == prefix])
                & (examples.condition == "seen_prefix")
                & ~examples.seen,
            ),
            base,
            seed,
            n_resamples,
        )
        for prefix in [p for p in MT_PREFIX_TYPES if p in set(prefix_of.values())]
    ]


QUALITY_PREFIXES = ("few_shot", "persona", "persona_strong", "gold")  # the paper's "quality inferred preference"


def _mt_with_vs_without(
    examples: pd.DataFrame, runs: dict[str, dict], prefix: str, rows: pd.Series, seen: bool | None
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The scores of every MT run with `prefix` (its own prefix) and of the no-prefix MT run of the same fold on the
    same test pairs (`rows`; seen or unseen users, None: both), the folds pooled and keyed by (id, fold); None when
    no `prefix` run has a no-prefix run of its fold."""
    prefix_of = _mt_prefixes(runs)
    none_of_fold = {runs[n].get("held_out_fold"): n for n, p in prefix_of.items() if p == "none"}
    paired = [n for n, p in prefix_of.items() if p == prefix and runs[n].get("held_out_fold") in none_of_fold]
    if not paired:
        return None
    users = rows if seen is None else rows & (examples.seen == seen)
    sides = {"a": [], "b": []}
    for name in paired:
        fold = runs[name].get("held_out_fold")
        for side, system, condition in (("a", name, "seen_prefix"), ("b", none_of_fold[fold], "no_prefix")):
            sides[side].append(
                _cell(examples, (examples.system == system) & (examples.condition == condition) & users).assign(
                    fold=str(fold)
                )
            )
    return pd.concat(sides["a"]), pd.concat(sides["b"])


def multitask_prefix_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """Fig. 5's headline: on divergent questions, MT with a quality prefix (QUALITY_PREFIXES) beats MT without a
    prefix, for seen users and for unseen users. Each MT + prefix run is paired with the no-prefix MT run of its fold
    on the same test pairs; the folds' pairs are pooled (with k folds every user is unseen by one fold's runs and
    seen by the others')."""
    family = "WikiPersona Fig. 5 (MT + prefix vs MT, divergent)"
    claim = "MT with a quality prefix beats MT without one on divergent questions"
    divergent = examples.question_type == "divergent"
    claims = []
    for prefix in [p for p in QUALITY_PREFIXES if p in set(_mt_prefixes(runs).values())]:
        for seen, users in ((True, "seen users"), (False, "unseen users")):
            sides = _mt_with_vs_without(examples, runs, prefix, divergent, seen)
            if sides is not None:
                claims.append(
                    paired_claim(
                        family,
                        claim,
                        f"MT + {prefix} vs MT, no prefix: divergent, {users}",
                        1,
                        *sides,
                        seed,
                        n_resamples,
                        on=("id", "fold"),
                    )
                )
    return claims or _absent(family, claim, "no MT run with a quality prefix has a no-prefix MT run of the same fold")


def soft_prefix_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """§4.1 "soft embedding fails to capture contrast": MT with the vpl prefix beats MT without a prefix on personal
    questions (+1) but not on divergent ones (0), each run against the no-prefix MT run of its fold, seen and unseen
    users pooled."""
    family = "WikiPersona §4.1 (vpl soft prefix vs MT)"
    claims = []
    for question_type, direction in (("personal", 1), ("divergent", 0)):
        sides = _mt_with_vs_without(examples, runs, "vpl", examples.question_type == question_type, None)
        if sides is None:
            return _absent(
                family,
                "a soft prefix helps on personal questions, not on divergent ones",
                "no vpl MT run has a no-prefix MT run of the same fold",
            )
        claims.append(
            paired_claim(
                family,
                "a soft prefix helps on personal questions, not on divergent ones",
                f"MT + vpl vs MT, no prefix: {question_type}",
                direction,
                *sides,
                seed,
                n_resamples,
                on=("id", "fold"),
            )
        )
    return claims


def equity_claims(examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Fig. 6 ("better prefixes give more equitable improvements", i.e. not only users the base model already serves
    well gain): per MT prefix type, MT on the unseen users whose base accuracy without a prefix is at or below the
    median of the unseen users vs the base model on the same pairs."""
    family = "WikiPersona Fig. 6 (equity)"
    prefix_of = _mt_prefixes(runs)
    if not prefix_of:
        return _absent(family, "the users the base model serves worst gain too", "no multitask run")
    base = _base(examples, "none")
    per_user = base.groupby("user_id").score.mean()
    claims = []
    for prefix in [p for p in MT_PREFIX_TYPES if p in set(prefix_of.values())]:
        condition = "no_prefix" if prefix == "none" else "seen_prefix"
        mt = _cell(
            examples,
            examples.system.isin([n for n, p in prefix_of.items() if p == prefix])
            & (examples.condition == condition)
            & ~examples.seen,
        )
        unseen = per_user[per_user.index.isin(set(mt.user_id))]
        worst = set(unseen[unseen <= unseen.median()].index)
        claims.append(
            paired_claim(
                family,
                "the users the base model serves worst gain too",
                f"MT + {prefix} vs base, no prefix, on the {len(worst)} unseen users at or below "
                "the median base accuracy",
                1,
                mt[mt.user_id.isin(worst)],
                base,
                seed,
                n_resamples,
            )
        )
    return claims


def sensitivity_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000
) -> list[Claim]:
    """Fig. 15, where the paper makes each claim: on divergent questions a wrong (shuffled, another user's) prefix
    hurts (+1: own minus shuffled); on personal questions it changes little (0). Each MT run's own vs shuffled prefix
    on the same test pairs, seen and unseen users together."""
    family = "WikiPersona Fig. 15 (prefix sensitivity)"
    prefix_of = {n: p for n, p in _mt_prefixes(runs).items() if p != "none"}
    if not prefix_of:
        return _absent(family, "a wrong prefix hurts on divergent questions", "no multitask run with a prefix")
    claims = []
    for question_type, direction, claim in (
        ("divergent", 1, "a wrong prefix hurts on divergent questions"),
        ("personal", 0, "a wrong prefix changes little on personal questions"),
    ):
        for prefix in [p for p in MT_PREFIX_TYPES if p in set(prefix_of.values())]:
            mine = examples.system.isin([n for n, p in prefix_of.items() if p == prefix]) & (
                examples.question_type == question_type
            )
            claims.append(
                paired_claim(
                    family,
                    claim,
                    f"MT + {prefix}: own vs shuffled prefix, {question_type}",
                    direction,
                    _cell(examples, mine & (examples.condition == "seen_prefix")),
                    _cell(examples, mine & (examples.condition == "shuffled_prefix")),
                    seed,
                    n_resamples,
                    on=("system", "id"),
                )
            )
    return claims


def demographic_claims(table: pd.DataFrame) -> list[Claim]:
    """Fig. 16 ("no visible demographic bias", direction 0). Groups of a demographic attribute hold different users
    and so different test pairs: no paired comparison exists, and each attribute's row says so with its ANOVA."""
    family = "WikiPersona Fig. 16 (demographics)"
    if table.empty:
        return _absent(family, "no demographic bias", "the personas have none of analysis.demographic_attributes")
    return [
        Claim(
            WIKIPERSONA,
            family,
            "no demographic bias",
            f"{r.attribute} groups",
            0,
            None,
            missing=f"groups of different users are not paired; one-way ANOVA F = {r.f:.2f}, p = {r.p:.2f}",
        )
        for r in table.drop_duplicates("attribute").itertuples()
    ]


def positive_control_claims(
    examples: pd.DataFrame, runs: dict[str, dict], seed: int, n_resamples: int = 2000, control: str = ""
) -> list[Claim]:
    """The pipeline's positive control: a DPO, MT or PT run under the prompt it is scored with (no prefix, its own
    MT prefix, its PT persona cells, the label-seeing oracle among them, named as such) vs the untrained base model
    under the same prompt, on the held-out test pairs of the users it trained on. `control` names the run chosen in
    advance (analysis.positive_control): its rows form the "positive control" family and every other run's rows a
    family of their own, each Holm-adjusted apart; "": every run is in the positive control family."""
    claims_by_family = {
        "positive control": "positive control: training beats the untrained base on held-out pairs",
        "training vs base (other runs)": "training beats the untrained base on held-out pairs",
    }
    names = [n for n, r in runs.items() if r["kind"] in POSITIVE_CONTROL_KINDS]
    if not names:
        claim = claims_by_family["positive control"]
        return [Claim(PIPELINE, "positive control", claim, "—", 1, None, missing="no DPO, MT or PT run in train.runs")]
    claims = []
    for name in names:
        family = "positive control" if control in ("", name) else "training vs base (other runs)"
        run = examples[(examples.system == name) & examples.seen]
        if runs[name]["kind"] == "pt":
            conditions = list(dict.fromkeys(run.condition))
        else:
            conditions = ["no_prefix" if runs[name].get("prefix", "none") == "none" else "seen_prefix"]
        for condition in conditions:
            own = _cell(run, run.condition == condition)
            variant = own.variant.iloc[0] if len(own) else "none"
            label = "no prefix" if variant == "none" else f"+ {variant.split('@')[0]}"
            oracle = (
                " (oracle: the persona was inferred from the test pair knowing y_w)"
                if len(own) and own.sees_label.iloc[0]
                else ""
            )
            claims.append(
                paired_claim(
                    family,
                    claims_by_family[family],
                    f"{name} vs base, both {label}, on its users' test pairs{oracle}",
                    1,
                    own,
                    _base(examples, variant),
                    seed,
                    n_resamples,
                    paper=PIPELINE,
                )
            )
    return claims


def positive_control_summary(claims: list[Claim]) -> str:
    """One sentence on the positive-control family: how many of its rows have a 95% interval above 0, and how many
    are reproduced (interval above 0 and Holm-adjusted p < 0.05)."""
    table = verdict_table([c for c in claims if c.family == "positive control"])
    tested = table[table.n > 0]
    above = tested[tested.ci_low > 0]
    shown = "; ".join(
        f"{r.comparison}: {r.estimate * 100:+.1f} [{r.ci_low * 100:+.1f}, {r.ci_high * 100:+.1f}] points, "
        f"Holm p {r.p_holm:.3f}"
        for r in above.itertuples()
    )
    reproduced = int((tested.verdict == "reproduced").sum())
    return (
        f"Positive control: {len(above)} of {len(tested)} rows have a 95% interval above 0"
        + (f" ({shown})" if shown else "")
        + f"; {reproduced} reproduced (interval above 0 and Holm p < 0.05)."
    )


def whose_boat_claims(judgments: pd.DataFrame, boat: pd.DataFrame, seed: int, n_resamples: int = 2000) -> list[Claim]:
    """Whose Boat (PT + P beats DPO + P, ΔPQ > 0) per judged cell of stage 5, paired over its evaluation prompts:
    per prompt, PT's wins and DPO's wins over the two aspects (Personalization and Quality, ties 0), so the mean
    difference is ΔPQ / 100 when there are no ties. Prompts with an invalid verdict are left out."""
    family = "Whose Boat (PT vs DPO)"
    claims = []
    for cell in boat[boat.setting != "average"].fillna({"missing": ""}).itertuples():
        claim = "PT + P beats DPO + P (ΔPQ > 0)"
        if cell.missing:
            claims.append(Claim(WHOSE_BOAT, family, claim, cell.setting, 1, None, missing=cell.missing))
            continue
        judged = judgments[
            (judgments.setting == cell.setting)
            & (judgments.personalization != "invalid")
            & (judgments.quality != "invalid")
        ]
        wins = {
            side: ((judged.personalization == side).astype(float) + (judged.quality == side)) / 2 for side in ("a", "b")
        }
        claims.append(
            paired_claim(
                family,
                claim,
                f"{cell.setting}: {cell.test} vs {cell.base}, wins per prompt",
                1,
                judged.assign(score=wins["a"]),
                judged.assign(score=wins["b"]),
                seed,
                n_resamples,
                paper=WHOSE_BOAT,
            )
        )
    return claims


def claims_markdown(claims: list[Claim]) -> str:
    """A figure's claims as a Markdown table under its family's name: comparison, n, estimate, 95% CI, half-width,
    MDD, Holm-adjusted p (within the family) and verdict."""
    table = verdict_table(claims)
    families = ", ".join(dict.fromkeys(table.family))
    return f"**{families}** — paired tests on the same items:\n\n" + formatted_verdicts(table).drop(
        columns=["paper"]
    ).to_markdown(index=False)


def collected_verdicts(own: pd.DataFrame, claims_dir: str | Path) -> pd.DataFrame:
    """Every stage's verdict table: each `claims_dir/*.csv` (written by the stages that decide claims, in
    verdict_table's columns) in name order, then `own`."""
    tables = []
    for path in sorted(Path(claims_dir).glob("*.csv")):
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; a claims file has verdict_table's columns")
        tables.append(table[COLUMNS].assign(resampled=lambda t: t.resampled.fillna("")))
    return pd.concat(tables + [own[COLUMNS]], ignore_index=True)
