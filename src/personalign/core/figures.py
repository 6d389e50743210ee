"""One figure style, and saving that gives byte-identical PNG and PDF files for identical inputs."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

import seaborn as sns  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "svg.hashsalt": "personalign",
    "pdf.compression": 6,
}


def apply_style() -> None:
    """The compendium's plotting style (seaborn whitegrid, colour-blind palette, fixed fonts)."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc=STYLE)


def legend(ax, **kwargs) -> None:
    """`ax.legend(**kwargs)` when the axes have labelled artists; an axes without any gets no (empty) legend."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def save_figure(fig, out_dir: str | Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf without timestamps or version stamps; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None}, bbox_inches="tight")
    fig.savefig(
        paths[1],
        metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
        bbox_inches="tight",
    )
    return paths


def users_column(ax, x: float, values, minority, styles: dict, size: float, labelled: set) -> None:
    """One column of per-user dots at `x`, spread over x ± 0.25: majority and minority users each in their own
    label, colour and marker (`styles`: minority flag -> (label, colour, marker)); a label enters the legend once
    (`labelled` keeps the flags already labelled)."""
    values, minority = np.asarray(values), np.asarray(minority)
    offsets = np.linspace(-0.25, 0.25, len(values)) if len(values) > 1 else np.zeros(len(values))
    for flag, (label, colour, marker) in styles.items():
        mine = minority == flag
        if mine.any():
            ax.scatter(
                x + offsets[mine],
                values[mine],
                color=colour,
                marker=marker,
                s=size,
                zorder=3,
                label=label if flag not in labelled else "_nolegend_",
            )
            labelled.add(flag)
