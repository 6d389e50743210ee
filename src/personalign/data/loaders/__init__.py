"""Loaders mapping public preference datasets, read from local copies, onto the canonical record table."""

from personalign.data.loaders.common import DatasetError, LoadedDataset
from personalign.data.loaders.persona_tailoring import load_persona_inference

__all__ = ["DatasetError", "LoadedDataset", "load_persona_inference"]
