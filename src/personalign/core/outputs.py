"""A stage's figure or table, written where dvc.yaml expects it and shown in the executed notebook (the rendered
record): one call per output instead of a save-then-display pair in every notebook."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from personalign.core.figures import save_figure
from personalign.core.tables import write_table


def show_figure(fig, folder: str | Path, stem: str) -> None:
    """Save `fig` as folder/stem.{png,pdf} and show the PNG."""
    save_figure(fig, folder, stem)
    display(Image(filename=str(Path(folder) / f"{stem}.png")))


def show_table(table: pd.DataFrame, folder: str | Path, stem: str, caption: str) -> None:
    """Write `table` as folder/stem.{csv,md,tex} with its caption and show it."""
    write_table(table, folder, stem, caption)
    display(table)
