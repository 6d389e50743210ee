"""One figure style, and saving that gives byte-identical PNG and PDF files for identical inputs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

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
