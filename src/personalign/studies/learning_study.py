"""The learning study: how far preference tuning moves held-out accuracy away from the untrained base model on the
default world, as the levers vary (training pairs per user, epochs, β, learning rate, how y_l is drawn). Each arm
trains one system on divergent training questions and is scored on the divergent test pairs against the base model
under the same prompt: reference-free accuracy (WikiPersona Eq. 3) as a paired difference, implicit-reward accuracy
against chance. Run with `python -m personalign.studies.learning_study studies/learning.yaml`; arms already scored
are read back from the study's work folder, so an interrupted study resumes."""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.analysis.learning_report import conclusion, summarize
from personalign.analysis.training_figures import curves_figure
from personalign.core.config import JudgeParams, RunSpec
from personalign.core.figures import apply_style, save_figure
from personalign.core.hardware import PRECISIONS, fingerprint, resolve_precision
from personalign.core.records import read_jsonl, read_personas, read_records
from personalign.core.seeding import stable_seed
from personalign.core.tables import write_table
from personalign.core.world import load_world
from personalign.data.build_data import Question, label_pairs
from personalign.evaluation.accuracy import cell_soft_prefixes, implicit_margins
from personalign.evaluation.scoring import score_pairs
from personalign.lm.artifacts import merged_run
from personalign.lm.embeddings import Embedder
from personalign.lm.judge import make_judge
from personalign.lm.models import load_base, pick_device
from personalign.personas.conditioning import variant_prompts
from personalign.personas.prefixes import fixed_prefixes
from personalign.personas.soft_prefix import pair_pools
from personalign.tuning.training import has_soft_prefix, train_adapter, training_curve, training_pairs

SYSTEMS = {  # system -> (run kind, training prefix or PT persona source, test prompt variant)
    "dpo": ("dpo", "none", "none"),
    "mt_tag": ("mt", "tag", "tag"),
    "mt_gold": ("mt", "gold", "gold"),
    "mt_vpl": ("mt", "vpl", "vpl"),  # the soft prefix, read from the arm's own training pairs of each user
    "pm": ("pm", "none", "none"),
    "pt": ("pt", "pair", "pt_retr"),  # PT on pair personas, tested with P_retr (the honest cell)
    "pt_oracle": ("pt", "pair", "pt_pair"),  # ... tested with the test pair's own pair persona: sees the label
}
LEVERS = ("pairs_per_user", "epochs", "beta", "learning_rate", "rejected", "precision")


@dataclass(frozen=True)
class Arm:
    """One trained configuration: a system, the divergent training questions per axis each user gets pairs on
    (`pairs_per_user`; nested: a smaller set is the start of a larger one), and the training levers."""

    name: str
    system: str
    pairs_per_user: int
    epochs: int
    beta: float
    learning_rate: float
    rejected: str = "random"  # y_l: the records' seeded random non-winner | lowest: the lowest-utility candidate
    precision: str = "auto"  # training precision: auto (bf16 where native, as the pipeline) | bf16 | fp32

    def key(self) -> str:
        """A digest of the arm's settings (`precision` only when set: arms that leave it at auto keep their
        cached results from before it was a lever)."""
        fields = {k: v for k, v in asdict(self).items() if not (k == "precision" and v == "auto")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


class StudyError(ValueError):
    """A study file or its inputs are unusable; the message names the key or file."""


def read_study(path: str | Path) -> tuple[dict, list[Arm]]:
    """The study file: `settings` (seed, batch_size, n_resamples, data, base, out, work) and `arms`, each arm the
    `defaults` with its own keys over them. Unknown systems, levers or values stop here, naming the arm."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    settings, defaults = spec.get("settings", {}), spec.get("defaults", {})
    arms = []
    for name, own in (spec.get("arms") or {}).items():
        merged = defaults | (own or {})
        unknown = set(merged) - set(LEVERS) - {"system"}
        if unknown:
            raise StudyError(
                f"{path}: arm {name!r}: unknown key {sorted(unknown)[0]!r}; allowed: system, {', '.join(LEVERS)}"
            )
        if merged.get("system") not in SYSTEMS:
            raise StudyError(f"{path}: arm {name!r}: system {merged.get('system')!r}; allowed: {', '.join(SYSTEMS)}")
        if merged.get("rejected", "random") not in ("random", "lowest"):
            raise StudyError(f"{path}: arm {name!r}: rejected {merged['rejected']!r}; allowed: random, lowest")
        if merged.get("precision", "auto") not in PRECISIONS:
            raise StudyError(
                f"{path}: arm {name!r}: precision {merged['precision']!r}; allowed: {', '.join(PRECISIONS)}"
            )
        try:
            arms.append(Arm(name=name, **merged))
        except TypeError as exc:
            raise StudyError(f"{path}: arm {name!r}: {exc}") from exc
    if not arms:
        raise StudyError(f"{path}: no arms")
    return settings, arms


def divergent_subset(records: pd.DataFrame, pairs_per_user: int, seed: int) -> pd.DataFrame:
    """The divergent training pairs on the first `pairs_per_user` questions of each axis in a seeded order (the same
    order for every size, so the sets are nested); every persona of the axis has a pair on each question."""

    train = records[(records.split == "train") & (records.question_type == "divergent")]
    qid = train.id.str.split(":").str[1]
    keep = []
    for axis, questions in sorted(qid.groupby(train["axes"].str[0])):
        order = sorted(set(questions))
        order = [
            order[i] for i in np.random.default_rng(stable_seed(seed, "learning-study", axis)).permutation(len(order))
        ]
        if pairs_per_user > len(order):
            raise StudyError(
                f"pairs_per_user {pairs_per_user}: axis {axis!r} has {len(order)} divergent training questions"
            )
        keep += order[:pairs_per_user]
    return train[qid.isin(keep)].sort_values("id", ignore_index=True)


def relabel_lowest(
    records: pd.DataFrame, data_dir: Path, embedding_model: str, judge_params, seed: int
) -> pd.DataFrame:
    """The records with y_l replaced by the selected candidate of lowest utility for the pair's user (same judge,
    same candidates, same y_w)."""

    world = load_world()
    personas = [p for axis in world.values() for p in axis.personas if p.user_id in set(records.user_id)]
    folds = dict(zip(records.user_id, records.fold))
    questions = [
        Question(q["qid"], q["question_type"], q["prompt"], q["axis"], q["owner"], q["split"], selected=q["selected"])
        for q in read_jsonl(data_dir / "candidates.jsonl")
    ]
    judge = make_judge(judge_params, Embedder(embedding_model), seed)
    lowest = pd.DataFrame(label_pairs(questions, personas, judge, folds, seed, rejected="lowest"))
    relabelled = records.set_index("id")
    relabelled.loc[lowest.id, "rejected"] = lowest.set_index("id").rejected
    return relabelled.reset_index()


def arm_pairs(
    arm: Arm,
    records: pd.DataFrame,
    prefixes: pd.DataFrame,
    pair_personas: pd.DataFrame | None,
    seed: int,
    user: str = "",
) -> tuple:
    """(RunSpec, training pairs, test pairs with the arm's prompts) of one arm (`user`: the PM user)."""

    kind, prefix, variant = SYSTEMS[arm.system]
    run = RunSpec(
        name=f"{arm.name}{'-' + user if user else ''}",
        kind=kind,
        prefix=prefix,
        user=user,
        learning_rate=arm.learning_rate,
        epochs=arm.epochs,
        batch_size=4,
        beta=arm.beta,
        max_length=544,
        save_steps=10**6,
        precision=resolve_precision(arm.precision, pick_device("auto")),
        precompute_ref=True,
        seed=seed % 2**31,
    )
    train = divergent_subset(records, arm.pairs_per_user, seed)
    pairs = training_pairs(run, train.assign(split="train"), prefixes, pair_personas)
    test = records[(records.split == "test") & (records.question_type == "divergent")]
    if user:
        test = test[test.user_id == user]
    test = test.sort_values("id", ignore_index=True)
    return run, pairs, test.assign(prompt=variant_prompts(variant, test, prefixes, pair_personas))


def _training_key(arm: Arm) -> str:
    """Arms that train the same run (pt and pt_oracle differ only in their test prompt) share one adapter."""
    kind, prefix, _ = SYSTEMS[arm.system]
    return replace(arm, name="", system=f"{kind}:{prefix}").key()


def run_arm(
    arm: Arm,
    records: pd.DataFrame,
    prefixes: pd.DataFrame,
    pair_personas: pd.DataFrame | None,
    base_dir: Path,
    work: Path,
    seed: int,
    batch_size: int,
    embed=None,
) -> pd.DataFrame:
    """Train the arm (one adapter, or one per user for PM) and score its test pairs and the base's, both in fp32
    (implicit margins are small differences of large log-probs). Per-example rows, cached under `work`. A soft-prefix
    arm (mt_vpl) reads each user's pool from the arm's own training pairs, embedded with `embed`."""

    cached = work / "arms" / f"{arm.name}-{arm.key()}.csv"
    if cached.exists():
        return pd.read_csv(cached)
    users = sorted(records.user_id.unique()) if arm.system == "pm" else [""]
    base, tokenizer, _ = load_base(base_dir, "cpu", "float32")
    frames, variant = [], SYSTEMS[arm.system][2]
    for user in users:
        run, pairs, test = arm_pairs(arm, records, prefixes, pair_personas, seed, user)
        run_dir = work / "adapters" / _training_key(arm) / (user or "all")
        if not (run_dir / "adapter").is_dir():
            pools = None
            if has_soft_prefix(run):
                own = divergent_subset(records, arm.pairs_per_user, seed).assign(split="train")
                pools = pair_pools(own, run.vpl_pool, run.seed, embed)
            train_adapter(run, pairs, base_dir, run_dir, pools=pools)
        curve = training_curve(run_dir / "log.jsonl")
        tail = curve.tail(max(1, len(curve) // 4))
        policy, _ = merged_run(base, run_dir)
        trained = score_pairs(
            policy,
            tokenizer,
            test,
            batch_size,  # fp32, mean token log-prob decisions
            soft_prefixes=cell_soft_prefixes(run, run_dir, variant),
        )
        untrained = score_pairs(base, tokenizer, test, batch_size)
        frames.append(
            pd.DataFrame(
                {
                    "arm": arm.name,
                    "id": test.id,
                    "user_id": test.user_id,
                    "train_pairs": len(pairs),
                    "trained_correct": trained.correct.astype(int),
                    "base_correct": untrained.correct.astype(int),
                    "implicit_correct": (implicit_margins(trained, untrained) > 0).astype(int),
                    "final_train_loss": float(tail.loss.mean()),
                    "final_train_reward_accuracy": float(tail.reward_accuracy.mean()),
                }
            )
        )
        del policy
    examples = pd.concat(frames, ignore_index=True)
    cached.parent.mkdir(parents=True, exist_ok=True)
    examples.to_csv(cached, index=False)
    return examples


def main(argv: list[str] | None = None) -> None:
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(
        prog="python -m personalign.studies.learning_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("study", help="the study file, e.g. studies/learning.yaml")
    args = parser.parse_args(argv)
    settings, arms = read_study(args.study)
    seed = int(settings.get("seed", 1234))
    data_dir, base_dir = Path(settings.get("data", "data")), Path(settings.get("base", "models/base"))
    out, work = (
        Path(settings.get("out", "figures/studies/learning")),
        Path(settings.get("work", ".cache/learning_study")),
    )
    for needed in (data_dir / "records.jsonl", data_dir / "personas.jsonl", data_dir / "candidates.jsonl", base_dir):
        if not needed.exists():
            raise SystemExit(f"{args.study}: {needed} is missing; run `dvc repro build_data` first")
    records = read_records(data_dir / "records.jsonl")
    records = records[records.source == "builtin"]
    prefixes = pd.DataFrame(fixed_prefixes(read_personas(data_dir / "personas.jsonl"), [0]))
    pair_personas = None
    if any(SYSTEMS[a.system][0] == "pt" for a in arms):
        if not (data_dir / "pair_personas.jsonl").exists():
            raise SystemExit(
                f"{args.study}: PT arms need {data_dir / 'pair_personas.jsonl'}; run `dvc repro infer_personas` first"
            )
        pair_personas = pd.DataFrame(read_jsonl(data_dir / "pair_personas.jsonl"))
    tables = {"random": records}
    if any(a.rejected == "lowest" for a in arms):
        tables["lowest"] = relabel_lowest(
            records,
            data_dir,
            settings.get("embedding_model", "all-minilm-l6-v2"),
            JudgeParams(**settings.get("judge", {})),
            seed,
        )
    for arm in arms:  # every arm's data is assembled before any training: a bad size stops the study here
        divergent_subset(records, arm.pairs_per_user, seed)
    embedder = Embedder(settings.get("embedding_model", "all-minilm-l6-v2"))
    frames = [
        run_arm(
            arm,
            tables[arm.rejected],
            prefixes,
            pair_personas,
            base_dir,
            work,
            seed,
            int(settings.get("batch_size", 16)),
            embedder.encode,
        )
        for arm in tqdm(arms, desc="learning study", unit="arm")
    ]
    summary = summarize(arms, pd.concat(frames, ignore_index=True), seed, int(settings.get("n_resamples", 2000)))
    reference = {k: v for k, v in asdict(arms[0]).items() if k in LEVERS}
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(out / "learning_study_examples.csv", index=False)
    summary.to_csv(out / "learning_study.csv", index=False)
    shown = summary[
        [
            "name",
            "system",
            *LEVERS,
            "train_pairs",
            "test_pairs",
            "final_train_loss",
            "final_train_reward_accuracy",
            "base_accuracy",
            "trained_accuracy",
            "difference",
            "ci_low",
            "ci_high",
            "mdd",
            "p_holm",
            "implicit_accuracy",
            "implicit_ci_low",
            "implicit_ci_high",
            "implicit_p_holm",
        ]
    ].round(3)
    write_table(shown, out, "learning_study_table", "Learning study: held-out divergent test pairs per arm")
    (out / "conclusion.md").write_text(
        f"# Learning study: what the default world's systems learn\n\nReference arm `{arms[0].name}`: "
        + ", ".join(f"{k} {v}" for k, v in reference.items() if k != "pairs_per_user")
        + f". Study file `{args.study}`; hardware: {json.dumps(fingerprint())}.\n\n"
        + conclusion(summary, reference, LEVERS)
        + "\n"
    )
    apply_style()
    save_figure(curves_figure(summary, reference, LEVERS, SYSTEMS), out, "learning_curves")
    print((out / "conclusion.md").read_text())


if __name__ == "__main__":
    main()
