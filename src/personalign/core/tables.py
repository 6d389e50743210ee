"""Tables for figures/: one DataFrame written as CSV, Markdown and LaTeX (booktabs), numbers formatted once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_csv(table: pd.DataFrame, path: str | Path, float_digits: int | None = 6) -> Path:
    """`table` as a CSV file without its index, floats with `float_digits` decimals (None: as they are), LF line ends;
    the folder is made when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(
        path, index=False, float_format=None if float_digits is None else f"%.{float_digits}f", lineterminator="\n"
    )
    return path


def write_table(table: pd.DataFrame, out_dir: str | Path, stem: str, caption: str) -> list[Path]:
    """Write `stem`.csv, `stem`.md and `stem`.tex; cells should already be formatted strings."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    table.to_csv(paths[0], lineterminator="\n")
    paths[1].write_text(f"{caption}\n\n{table.to_markdown()}\n")
    latex = table.to_latex(escape=True, column_format="l" + "r" * len(table.columns))
    paths[2].write_text("\\begin{table}[t]\n\\centering\n" + latex + f"\\caption{{{caption}}}\n\\end{{table}}\n")
    return paths
