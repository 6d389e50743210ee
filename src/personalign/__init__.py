"""personalign: a reproducible research compendium for personalized preference tuning of language models."""

__version__ = "0.1.0"
