"""What personalign.tuning.shared_prompt takes from trl's internals (not its public API), checked against the
installed trl so that an upgrade that moves them fails here, by name, before any training run."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

OVERRIDDEN = {  # DPOTrainer methods SharedPromptDPOTrainer overrides, with the parameters it calls them with
    "_set_signature_columns_if_needed": ["self"],
    "get_train_dataloader": ["self"],
    "compute_ref_log_probs": ["self", "model", "inputs"],
    "_compute_loss": ["self", "model", "inputs", "return_outputs"],
}
ATTRIBUTES = ["self.loss_types", "self.ld_alpha", "self.precompute_ref_logps", "self._metrics", "self.beta"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
BATCH_KEYS = ['"input_ids"', '"attention_mask"', '"completion_mask"', '"ref_chosen_logps"', '"ref_rejected_logps"']


@pytest.mark.parametrize("method, parameters", sorted(OVERRIDDEN.items()))
def test_the_overridden_dpo_trainer_methods_keep_their_signatures(method, parameters):
    from trl import DPOTrainer

    assert hasattr(DPOTrainer, method), f"trl's DPOTrainer no longer has {method}: update tuning/shared_prompt.py"
    assert list(inspect.signature(getattr(DPOTrainer, method)).parameters) == parameters, method


def test_the_trainer_attributes_and_batch_keys_shared_prompt_reads_still_exist():
    from trl import DPOTrainer

    source = inspect.getsource(inspect.getmodule(DPOTrainer))
    missing = [name for name in ATTRIBUTES + BATCH_KEYS if name not in source]
    assert not missing, f"trl's DPO trainer no longer defines {missing}: update tuning/shared_prompt.py"


def test_use_adapter_switches_by_name():
    from trl.trainer.utils import use_adapter

    assert list(inspect.signature(use_adapter).parameters) == ["model", "adapter_name"]


@pytest.mark.parametrize("name", ["single_gpu", "ddp", "zero2", "fsdp"])
def test_each_accelerate_config_loads_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = CONFIGS / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == yaml.safe_load(path.read_text())["distributed_type"]
    if name == "fsdp":  # LoRA: frozen and trainable parameters in one wrapped module need the original parameters
        assert config.fsdp_config["fsdp_use_orig_params"] is True
