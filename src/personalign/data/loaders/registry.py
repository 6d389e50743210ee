"""The public-dataset loaders by source name, for the stage that builds canonical records from a local copy of a
public dataset. Each entry maps a name to a function that reads local files and returns a `LoadedDataset` (canonical
records and personas, counts of rows read, kept and filtered, and notes); their signatures differ (WikiPersona also
takes its persona table, TL;DR and PersonalLLM a number of users, the loaders that deal CV folds over users a seeded
numpy Generator), so a caller passes each one the arguments its docstring names."""

from __future__ import annotations

from collections.abc import Callable

from personalign.data.loaders.common import LoadedDataset
from personalign.data.loaders.pairwise import load_personal_llm_dpo, load_psoups
from personalign.data.loaders.personal_llm import load_personal_llm
from personalign.data.loaders.tldr import load_tldr
from personalign.data.loaders.wikipersona import load_wikipersona

LOADERS: dict[str, Callable[..., LoadedDataset]] = {
    "wikipersona": load_wikipersona,
    "psoups": load_psoups,
    "personal_llm_dpo": load_personal_llm_dpo,
    "tldr": load_tldr,
    "personal_llm": load_personal_llm,
}
