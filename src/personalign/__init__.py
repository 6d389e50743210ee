"""personalign: a reproducible research compendium for personalized preference tuning of language models.

Subpackages, each importing only those above it in its own docstring's list: core (params, stage table, seeds, formats),
stats (tests, intervals, verdicts), lm (models, prompts, artifacts), data (stage 1), personas (stage 2, conditioning),
tuning (stage 3), evaluation (stages 4-5), analysis and reward_models (stages 6-7), studies, pipeline (the CLI)."""

__version__ = "0.1.0"
