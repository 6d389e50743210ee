"""Stage 3 core: training pairs per run kind (with the bad-input messages) and DPO LoRA training with resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from personalign.core.config import ParamsError, RunSpec
from personalign.personas.conditioning import ConditioningError
from personalign.tuning.training import TrainingDataError, check_lengths, train_adapter, training_pairs


@pytest.fixture()
def records():
    rows = []
    for u, fold in (("ana", 0), ("ben", 0), ("cy", 1)):
        for i in range(4):
            for split in ("train", "test"):
                rows.append(
                    {
                        "id": f"{u}:{split}{i}",
                        "user_id": u,
                        "split": split,
                        "fold": fold,
                        "prompt": f"{u} asks question {i}?",
                        "chosen": f"good answer {i}",
                        "rejected": f"bad {i}",
                        "chosen_persona_gold": f"{u} likes detail.",
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture()
def prefixes():
    return pd.DataFrame(
        [{"user_id": u, "prefix_type": "tag", "seed": 0, "text": f"<tag_{u}>"} for u in ("ana", "ben", "cy")]
    )


def test_dpo_uses_every_training_pair_without_persona(records):
    pairs = training_pairs(RunSpec(name="dpo", kind="dpo"), records)
    assert len(pairs) == 12 and set(pairs.prompt) == set(records[records.split == "train"].prompt)


def test_pt_puts_the_chosen_persona_in_the_pt_template(records):
    pairs = training_pairs(RunSpec(name="pt", kind="pt", prefix="gold"), records)
    assert pairs.prompt[0] == "Prompt: ana asks question 0?\nPersona: ana likes detail.\nResponse:"
    inferred = pd.DataFrame({"id": pairs.id, "chosen_persona": "The user is curious."})
    assert (
        "Persona: The user is curious."
        in training_pairs(RunSpec(name="pt2", kind="pt", prefix="pair"), records, None, inferred).prompt[0]
    )
    with pytest.raises(ConditioningError, match="run 'pt3': persona source 'pair' needs stage 2's pair personas"):
        training_pairs(RunSpec(name="pt3", kind="pt", prefix="pair"), records)


def test_pm_trains_on_one_user_and_fraction_subsamples_deterministically(records):
    pairs = training_pairs(RunSpec(name="pm", kind="pm", user="ben"), records)
    assert set(pairs.user_id) == {"ben"} and len(pairs) == 4
    half = training_pairs(RunSpec(name="pm_half", kind="pm", user="ben", fraction=0.5), records)
    assert len(half) == 2 and half.equals(
        training_pairs(RunSpec(name="pm_half", kind="pm", user="ben", fraction=0.5), records)
    )
    with pytest.raises(TrainingDataError, match="run 'pm_x': user 'zed' has no training pairs"):
        training_pairs(RunSpec(name="pm_x", kind="pm", user="zed"), records)


def test_data_fractions_of_one_seed_are_nested_across_runs():
    rows = [
        {
            "id": f"ann:train{i:02d}",
            "user_id": "ann",
            "split": "train",
            "fold": 0,
            "prompt": f"q{i}?",
            "chosen": "good",
            "rejected": "bad",
        }
        for i in range(40)
    ]
    records = pd.DataFrame(rows)
    subsets = {
        f: set(training_pairs(RunSpec(name=f"pm_ann_f{f}_s0", kind="pm", user="ann", fraction=f / 100), records).id)
        for f in (25, 50, 75)
    }
    assert [len(subsets[f]) for f in (25, 50, 75)] == [10, 20, 30]
    assert subsets[25] < subsets[50] < subsets[75]  # runs of different names, one seed: each inside the next
    other_seed = set(
        training_pairs(RunSpec(name="pm_ann_f50_s1", kind="pm", user="ann", fraction=0.5, seed=1), records).id
    )
    assert other_seed != subsets[50]


def test_mt_holds_out_a_fold_and_prefixes_each_users_prompts(records, prefixes):
    pairs = training_pairs(RunSpec(name="mt", kind="mt", prefix="tag", held_out_fold=1), records, prefixes)
    assert set(pairs.user_id) == {"ana", "ben"}
    assert pairs.prompt[0] == "<tag_ana> ana asks question 0?"
    with pytest.raises(ConditioningError, match="run 'mt_g': stage 2 computed no 'gold' prefix \\(seed 0\\)"):
        training_pairs(RunSpec(name="mt_g", kind="mt", prefix="gold"), records, prefixes)
    with pytest.raises(TrainingDataError, match="run 'mt_e': the training set is empty"):
        training_pairs(RunSpec(name="mt_e", kind="mt", held_out_fold=0), records[records.fold == 0], prefixes)


def test_a_prompt_longer_than_max_length_is_refused(records, tiny):
    pairs = training_pairs(RunSpec(name="dpo", kind="dpo"), records)
    with pytest.raises(TrainingDataError, match="run 'short': the prompt of pair 'ana:train0' has .* tokens"):
        check_lengths(RunSpec(name="short", kind="dpo", max_length=16), pairs, tiny[1])


@pytest.fixture()
def base_dir(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def killed_after_step(step: int, monkeypatch, train) -> None:
    """Run `train` with the Trainer interrupted (KeyboardInterrupt) once `step` steps are done, then restore it."""
    from transformers import Trainer

    real_step = Trainer.training_step

    def crash(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(Trainer, "training_step", real_step)


def adapter_state(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter" / "adapter_model.safetensors"))


def test_training_writes_a_peft_adapter_and_a_log(records, base_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = RunSpec(name="dpo", kind="dpo", epochs=2, batch_size=4, learning_rate=1e-3, max_length=64, save_steps=2)
    summary = train_adapter(run, training_pairs(run, records), base_dir, tmp_path / "dpo")
    assert summary["steps"] == 6 and summary["resumed_from"] is None
    log = [json.loads(line) for line in (tmp_path / "dpo" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "rewards/accuracies", "rewards/margins"} <= set(log[0])
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), tmp_path / "dpo" / "adapter")
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert json.loads((tmp_path / "dpo" / "run.json").read_text())["name"] == "dpo"


def test_an_interrupted_run_resumes_to_the_same_adapter(records, base_dir, tmp_path, monkeypatch):
    import torch

    run = RunSpec(name="dpo", kind="dpo", epochs=2, batch_size=4, learning_rate=1e-3, max_length=64, save_steps=2)
    pairs = training_pairs(run, records)
    train_adapter(run, pairs, base_dir, tmp_path / "straight")

    killed_after_step(3, monkeypatch, lambda: train_adapter(run, pairs, base_dir, tmp_path / "resumed"))
    summary = train_adapter(run, pairs, base_dir, tmp_path / "resumed")
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["steps"] == 6
    assert not (tmp_path / "resumed" / "work").exists()  # checkpoints are removed once the run is done
    straight, resumed = adapter_state(tmp_path / "straight"), adapter_state(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(straight[name], resumed[name], rtol=1e-4, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_runs_resolve_over_the_defaults_and_work_dirs_depend_on_spec_and_data(records):
    from personalign.core.config import TrainParams
    from personalign.tuning.runs import resolve_run
    from personalign.tuning.training import work_dir_for

    # the train section alone: a whole params file would also check `ana` against the built world
    train = TrainParams.model_validate(
        {
            "defaults": {"learning_rate": 1e-4, "epochs": 3},
            "runs": {"pm_ana": {"kind": "pm", "user": "ana", "epochs": 5}},
        }
    )
    run = resolve_run("pm_ana", train, base_seed=1)
    assert (run.name, run.kind, run.user, run.epochs, run.learning_rate) == ("pm_ana", "pm", "ana", 5, 1e-4)
    assert run.seed != resolve_run("pm_ana", train, base_seed=2).seed  # seeds derive from base.seed
    pairs = training_pairs(run, records)
    same = work_dir_for(run, pairs, "/w")
    assert same == work_dir_for(resolve_run("pm_ana", train, 1), pairs, "/w") and same.name.startswith("pm_ana-")
    assert work_dir_for(run, pairs.head(2), "/w") != same
    other = TrainParams.model_validate({"runs": {"pm_ana": {"kind": "pm", "user": "ana", "epochs": 6}}})
    assert work_dir_for(resolve_run("pm_ana", other, 1), pairs, "/w") != same
    with pytest.raises(ParamsError, match="run 'pm_bob' is not in train.runs; defined runs: pm_ana"):
        resolve_run("pm_bob", train, 1)


def test_bf16_autocast_with_precomputed_reference_trains(records, base_dir, tmp_path):
    import math

    run = RunSpec(
        name="fast",
        kind="dpo",
        epochs=1,
        batch_size=4,
        learning_rate=1e-3,
        max_length=64,
        precision="bf16",
        precompute_ref=True,
    )
    summary = train_adapter(run, training_pairs(run, records), base_dir, tmp_path / "fast")
    log = [json.loads(line) for line in (tmp_path / "fast" / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 3 and len(log) == 3
    assert all(math.isfinite(r["loss"]) for r in log)


def test_sft_trains_on_the_chosen_responses_with_the_persona(records, base_dir, tmp_path):
    run = RunSpec(name="sft", kind="sft", prefix="gold", epochs=1, batch_size=4, learning_rate=1e-3, max_length=64)
    pairs = training_pairs(run, records)
    assert pairs.prompt[0].startswith("Prompt: ana asks question 0?\nPersona: ana likes detail.")
    summary = train_adapter(run, pairs, base_dir, tmp_path / "sft")
    log = [json.loads(line) for line in (tmp_path / "sft" / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 3 and {r["phase"] for r in log} == {"sft"}
    assert all("mean_token_accuracy" in r for r in log)


def test_sft_then_dpo_merges_the_sft_adapter_and_resumes_without_redoing_it(records, base_dir, tmp_path, monkeypatch):
    from transformers import Trainer

    from personalign.lm.artifacts import load_trained

    run = RunSpec(
        name="boat",
        kind="pt",
        prefix="gold",
        epochs=1,
        batch_size=4,
        learning_rate=1e-3,
        max_length=64,
        sft_epochs=1,
        save_steps=1,
    )
    pairs = training_pairs(run, records)
    real_step = Trainer.training_step
    calls = []

    def crash_in_dpo(self, *args, **kwargs):
        calls.append(type(self).__name__)
        if type(self).__name__ != "SFTTrainer" and self.state.global_step == 1:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", crash_in_dpo)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(run, pairs, base_dir, tmp_path / "boat")
    assert calls.count("SFTTrainer") == 3
    monkeypatch.setattr(Trainer, "training_step", real_step)
    summary = train_adapter(run, pairs, base_dir, tmp_path / "boat")  # SFT is done: only DPO resumes
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["steps"] == 3
    log = [json.loads(line) for line in (tmp_path / "boat" / "log.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in log] == [
        ("sft", 1),
        ("sft", 2),
        ("sft", 3),
        ("dpo", 1),
        ("dpo", 2),
        ("dpo", 3),
    ]
    model = load_trained(base_dir, tmp_path / "boat")
    assert (tmp_path / "boat" / "sft_adapter" / "adapter_config.json").exists()
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_qlora_required_without_cuda_is_refused(records, base_dir, tmp_path):
    run = RunSpec(name="q", kind="dpo", qlora=True, max_length=64)
    with pytest.raises(TrainingDataError, match="run 'q': qlora true needs a CUDA device and the bitsandbytes package"):
        train_adapter(run, training_pairs(run, records), base_dir, tmp_path / "q")


def test_curve_and_metrics_come_from_the_log(tmp_path):
    from personalign.tuning.training import run_metrics, training_curve

    rows = [{"phase": "sft", "step": 1, "loss": 2.0, "learning_rate": 1e-3, "mean_token_accuracy": 0.1}]
    rows += [
        {
            "phase": "dpo",
            "step": s,
            "loss": 0.7 - 0.1 * s,
            "learning_rate": 1e-3,
            "rewards/accuracies": s / 4,
            "rewards/margins": 0.01 * s,
        }
        for s in range(1, 5)
    ]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = training_curve(tmp_path / "log.jsonl")
    assert list(curve.columns) == [
        "phase",
        "step",
        "loss",
        "learning_rate",
        "reward_accuracy",
        "reward_margin",
        "token_accuracy",
    ]
    pairs = pd.DataFrame({"user_id": ["a", "b", "a"]})
    metrics = run_metrics(RunSpec(name="r", kind="dpo"), pairs, curve)
    assert (metrics["steps"], metrics["pairs"], metrics["users"]) == (4, 3, 2)
    assert metrics["first_loss"] == 0.6 and metrics["final_loss"] == 0.3 and metrics["final_reward_accuracy"] == 1.0


def test_launcher_commands(tmp_path):
    from personalign.tuning.training import launcher_command

    assert launcher_command("dpo", 2) == [
        "torchrun",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "personalign",
        "train",
        "dpo",
        "--params",
        "params.yaml",
    ]
    config = tmp_path / "ddp.yaml"
    config.write_text("distributed_type: MULTI_GPU\n")
    assert launcher_command("dpo", 4, str(config))[:6] == [
        "accelerate",
        "launch",
        "--config_file",
        str(config),
        "--num_processes",
        "4",
    ]
    with pytest.raises(TrainingDataError, match="accelerate_config 'nope.yaml' is not a file"):
        launcher_command("dpo", 2, "nope.yaml")


def test_a_vpl_run_learns_a_soft_prefix_for_every_user_and_resumes_to_the_same_one(
    records, base_dir, embedder, tmp_path, monkeypatch
):
    import torch

    from personalign.personas.soft_prefix import PREFIXES_FILE, load_prefixes, pair_pools

    run = RunSpec(
        name="mt_vpl",
        kind="mt",
        prefix="vpl",
        held_out_fold=1,
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        max_length=64,
        save_steps=1,
        vpl_tokens=2,
        vpl_context=2,
        vpl_pool=3,
    )
    pairs = training_pairs(run, records)
    assert set(pairs.user_id) == {"ana", "ben"} and set(pairs.prompt) <= set(records.prompt)  # no text prefix
    pools = pair_pools(records, run.vpl_pool, run.seed, embedder.encode)
    assert pools.users == ["ana", "ben", "cy"] and pools.mask.sum(1).tolist() == [3, 3, 3]
    with pytest.raises(TrainingDataError, match="needs the users' pair pools"):
        train_adapter(run, pairs, base_dir, tmp_path / "no_pools")
    train_adapter(run, pairs, base_dir, tmp_path / "straight", pools=pools)
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert all(r["soft_prefix/kl"] >= 0 for r in log)
    straight = load_prefixes(tmp_path / "straight" / PREFIXES_FILE)
    assert sorted(straight) == ["ana", "ben", "cy"]  # cy's fold was held out: its prefix comes from its own pairs
    assert straight["cy"].shape == (2, 32) and not torch.allclose(straight["ana"], straight["cy"])

    killed_after_step(3, monkeypatch, lambda: train_adapter(run, pairs, base_dir, tmp_path / "resumed", pools=pools))
    summary = train_adapter(run, pairs, base_dir, tmp_path / "resumed", pools=pools)
    assert summary["resumed_from"].endswith("checkpoint-3")
    resumed = load_prefixes(tmp_path / "resumed" / PREFIXES_FILE)
    for user in straight:
        torch.testing.assert_close(straight[user], resumed[user], rtol=1e-4, atol=1e-6)
    for name, value in adapter_state(tmp_path / "straight").items():
        torch.testing.assert_close(value, adapter_state(tmp_path / "resumed")[name], rtol=1e-4, atol=1e-6)


def test_a_torn_checkpoint_is_skipped_and_the_one_before_it_resumed(tmp_path):
    from personalign.tuning.training import _last_checkpoint

    for step, files in (
        (2, ["trainer_state.json", "soft_prefix.pt"]),
        (4, ["trainer_state.json"]),
        (6, ["adapter_model.safetensors"]),
    ):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    assert _last_checkpoint(tmp_path).endswith("checkpoint-4")  # checkpoint-6 was killed before trainer_state.json
    assert _last_checkpoint(tmp_path, ("soft_prefix.pt",)).endswith("checkpoint-2")
    assert _last_checkpoint(tmp_path / "absent") is None


def test_a_run_trained_by_another_process_is_refused_naming_it(records, base_dir, tmp_path):
    import os

    from personalign.core.locks import LockedError, exclusive

    run = RunSpec(name="dpo", kind="dpo", epochs=1, batch_size=4, max_length=64)
    work = tmp_path / "work"
    with exclusive(work / ".lock", "run 'dpo'"):
        with pytest.raises(LockedError, match=f"run 'dpo' is in use by process {os.getpid()}"):
            train_adapter(run, training_pairs(run, records), base_dir, tmp_path / "dpo", work)
    assert not (tmp_path / "dpo").exists()  # nothing was trained or written
