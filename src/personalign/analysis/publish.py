"""One result of a reporting notebook, kept and shown: its figure (PNG and PDF), its table (CSV) and the claims tested
on it, displayed in the notebook and returned for the verdict table."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from personalign.analysis.paper_claims import claims_markdown
from personalign.core import paths
from personalign.core.outputs import show_figure
from personalign.core.tables import write_csv
from personalign.stats.verdicts import Claim


def publish(
    table: pd.DataFrame,
    fig,
    stem: str,
    claims: Iterable[Claim] = (),
    figures_dir: Path = paths.FIGURES / "analysis",
    results_dir: Path = paths.RESULTS / "analysis",
) -> list[Claim]:
    """Save `fig` as figures_dir/stem.{png,pdf} and `table` as results_dir/stem.csv, show both the figure and the
    claims, and return the claims."""
    show_figure(fig, figures_dir, stem)
    write_csv(table, results_dir / f"{stem}.csv")
    claims = list(claims)
    if claims:
        display(Markdown(claims_markdown(claims)))
    return claims
