"""Preference tuning (stage 3): a run's resolved spec and DPO, PT and SFT-then-DPO LoRA training. Imports core, lm and
personas."""
