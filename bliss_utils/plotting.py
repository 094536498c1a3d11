"""Figures of the paper in one print-readable style; every function draws numbers computed elsewhere (analysis, grid).

``save_figure(fig, name)`` writes ``figures/<name>.pdf`` and ``figures/<name>.png`` atomically.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path
from .config import figures_dir

logger = logging.getLogger(__name__)

# Colour-blind safe (Okabe-Ito); the paper plots normal/false-negative in blue and anomaly/false-positive in orange.
BLUE = "#0072B2"
ORANGE = "#E69F00"
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999", "#882255"]

# Sized for a single column of a two-column paper at 100 % scale: fonts stay >= 8 pt once printed.
STYLE: dict[str, Any] = {
    "figure.figsize": (3.5, 2.6),
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.5,
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable/searchable
    "ps.fonttype": 42,
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _pyplot():
    import matplotlib

    if not os.environ.get("MPLBACKEND") and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _rc() -> dict[str, Any]:
    from cycler import cycler

    rc = dict(STYLE)
    rc["axes.prop_cycle"] = cycler(color=PALETTE)
    return rc


@contextmanager
def style() -> Iterator[None]:
    """Context manager applying the project's figure style (restores the previous rcParams on exit)."""
    plt = _pyplot()
    with plt.rc_context(_rc()):
        yield


def apply_style() -> None:
    """Apply the project's figure style globally (for notebooks)."""
    plt = _pyplot()
    plt.rcParams.update(_rc())


def new_figure(ncols: int = 1, nrows: int = 1, width: float | None = None, height: float | None = None, **kwargs: Any):
    """Create a styled figure and axes; default size is one paper column per panel."""
    plt = _pyplot()
    apply_style()
    w = width if width is not None else STYLE["figure.figsize"][0] * ncols
    h = height if height is not None else STYLE["figure.figsize"][1] * nrows
    kwargs.setdefault("layout", "constrained")  # keeps neighbouring panels' labels apart
    return plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False, **kwargs)


def save_figure(
    fig: Any, name: str, out_dir: str | Path | None = None, formats: Sequence[str] = ("pdf", "png")
) -> list[Path]:
    """Write ``fig`` as ``<out_dir>/<name>.pdf`` and ``.png`` (default ``figures/``), atomically; return the paths."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must be a plain file stem (letters, digits, '_', '-', '.')")
    folder = Path(out_dir) if out_dir else figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        target = folder / f"{name}.{fmt}"
        with atomic_path(target, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt)
            if tmp.stat().st_size == 0:
                raise OSError(f"matplotlib wrote an empty {fmt} file for figure {name!r}")
        paths.append(target)
    logger.info("saved figure %s (%s)", folder / name, ", ".join(formats))
    return paths


def plot_tsne(
    ax: Any,
    coords: np.ndarray,
    is_text: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    title: str = "",
    max_legend: int = 10,
) -> None:
    """Fig. 1b: image embeddings as dots coloured by class, class-text embeddings as black-edged crosses."""
    coords = np.asarray(coords)
    is_text = np.asarray(is_text, bool)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    for i, c in enumerate(classes):
        colour = PALETTE[i % len(PALETTE)]
        img = (~is_text) & (labels == c)
        name = class_names[c] if len(classes) <= max_legend else None
        ax.scatter(coords[img, 0], coords[img, 1], s=4, color=colour, alpha=0.6, linewidths=0, label=name)
        txt = is_text & (labels == c)
        ax.scatter(
            coords[txt, 0], coords[txt, 1], s=45, marker="X", color=colour, edgecolors="black", linewidths=0.6, zorder=3
        )
    ax.scatter([], [], s=45, marker="X", color="white", edgecolors="black", linewidths=0.6, label="class text")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


def plot_distributions(
    ax: Any,
    samples: dict[str, np.ndarray],
    xlabel: str = "cosine similarity",
    bins: int = 60,
    colours: Sequence[str] = (BLUE, ORANGE, "#009E73"),
) -> None:
    """Fig. 2: one density line per named sample (histogram density on shared bins)."""
    if not samples:
        raise ValueError("samples is empty: give at least one named array to plot")
    values = [np.asarray(v, float).ravel() for v in samples.values()]
    lo = min(v.min() for v in values)
    hi = max(v.max() for v in values)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    for (name, _), v, colour in zip(samples.items(), values, colours):
        density, _ = np.histogram(v, bins=edges, density=True)
        ax.plot(centres, density, color=colour, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()


def plot_error_quantiles(ax: Any, table: Any, ylabel: bool = True) -> None:
    """Fig. 3: share of false negatives and false positives per quantile of mean dictionary similarity."""
    q = np.asarray(table["quantile"])
    width = 0.4
    ax.bar(q - width / 2, table["fn_share"], width=width, color=BLUE, label="false negatives")
    ax.bar(q + width / 2, table["fp_share"], width=width, color=ORANGE, label="false positives")
    ax.set_xticks(q)
    ax.set_xlabel("dictionary-similarity quantile (low to high)")
    if ylabel:
        ax.set_ylabel("share of errors")
    ax.legend(loc="upper center")


def plot_ic_et(
    ax: Any,
    ic: np.ndarray,
    et: np.ndarray,
    is_anomaly: np.ndarray,
    lam: float | None = None,
    max_points: int = 4000,
    seed: int = 0,
) -> None:
    """Fig. 4: internal class score (x) against external text score (y), normal in blue, anomalies in orange."""
    ic = np.asarray(ic, float)
    et = np.asarray(et, float)
    is_anomaly = np.asarray(is_anomaly, bool)
    idx = np.arange(len(ic))
    if len(idx) > max_points:  # keep the PDF light; subsample uniformly
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    normal = idx[~is_anomaly[idx]]
    anomalous = idx[is_anomaly[idx]]
    ax.scatter(ic[normal], et[normal], s=3, color=BLUE, alpha=0.5, linewidths=0, label="normal")
    ax.scatter(ic[anomalous], et[anomalous], s=3, color=ORANGE, alpha=0.5, linewidths=0, label="anomaly")
    if lam:
        # BLISS's decision boundaries are the lines IC + lam * ET = const
        x = np.linspace(np.nanpercentile(ic, 1), np.nanpercentile(ic, 99), 2)
        c = np.nanmedian(ic + lam * et)
        ax.plot(x, (c - x) / lam, color="black", lw=0.8, ls="--", label=f"IC + {lam:g}·ET = const")
    ax.set_xlabel("internal class score (IC)")
    ax.set_ylabel("external text score (ET)")
    ax.legend(markerscale=3)


def plot_metric_curve(
    ax: Any, table: Any, x: str, y: str = "auroc", hue: str = "setting", yerr: str | None = None, xlog: bool = False
) -> None:
    """Ablation curves: ``y`` against ``x``, one line per value of ``hue`` (a tidy DataFrame of summaries)."""
    for i, (name, part) in enumerate(table.groupby(hue, sort=True)):
        part = part.sort_values(x)
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(part[x], part[y], marker="o", ms=3, color=colour, label=str(name))
        if yerr is not None and yerr in part:
            ax.fill_between(part[x], part[y] - part[yerr], part[y] + part[yerr], color=colour, alpha=0.15, lw=0)
    if xlog:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y.upper() if y in ("auroc", "fpr95") else y)
    ax.legend()
