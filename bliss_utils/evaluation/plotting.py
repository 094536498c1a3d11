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

from bliss_utils._io import atomic_path
from bliss_utils.config import figures_dir

logger = logging.getLogger(__name__)

# Colour-blind safe (Okabe-Ito); the paper plots normal/false-negative in blue and anomaly/false-positive in orange.
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999", "#882255"]

# Sized for a single column of a two-column paper at 100 % scale: fonts stay >= 8 pt once printed.
STYLE: dict[str, Any] = {"figure.figsize": (3.5, 2.6), "figure.dpi": 100, "savefig.dpi": 300, "savefig.bbox": "tight"}
STYLE |= {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8}
STYLE |= {"legend.fontsize": 7.5, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False}
STYLE |= {"axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.5}
STYLE |= {"pdf.fonttype": 42, "ps.fonttype": 42}  # embed TrueType so the PDF text stays editable/searchable

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

    return {**STYLE, "axes.prop_cycle": cycler(color=PALETTE)}


@contextmanager
def style() -> Iterator[None]:
    """Context manager applying the project's figure style (restores the previous rcParams on exit)."""
    with _pyplot().rc_context(_rc()):
        yield


def apply_style() -> None:
    """Apply the project's figure style globally (for notebooks)."""
    _pyplot().rcParams.update(_rc())


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


def _untitled_legend(ax: Any) -> None:
    if ax.get_legend() is not None:
        ax.get_legend().set_title(None)


def _metric_label(y: str) -> str:
    return y.upper() if y in ("auroc", "fpr95") else y


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
    cross = {"s": 45, "marker": "X", "edgecolors": "black", "linewidths": 0.6}  # a class text
    for i, c in enumerate(classes):
        colour = PALETTE[i % len(PALETTE)]
        img = (~is_text) & (labels == c)
        name = class_names[c] if len(classes) <= max_legend else None
        ax.scatter(coords[img, 0], coords[img, 1], s=4, color=colour, alpha=0.6, linewidths=0, label=name)
        txt = is_text & (labels == c)
        ax.scatter(coords[txt, 0], coords[txt, 1], color=colour, zorder=3, **cross)
    ax.scatter([], [], color="white", label="class text", **cross)
    ax.set(xticks=[], yticks=[])
    ax.grid(False)
    if title:
        ax.set_title(title)


def plot_distributions(
    ax: Any,
    samples: dict[str, np.ndarray],
    xlabel: str = "cosine similarity",
    colours: Sequence[str] = (BLUE, ORANGE, GREEN),
) -> None:
    """Fig. 2: one density line per named sample (seaborn's histogram density on shared bins, drawn as a line)."""
    import pandas as pd
    import seaborn as sns

    if not samples:
        raise ValueError("samples is empty: give at least one named array to plot")
    long = pd.concat([pd.DataFrame({"value": np.ravel(v), "sample": k}) for k, v in samples.items()], ignore_index=True)
    density = {"stat": "density", "common_norm": False, "element": "poly", "fill": False, "bins": 60}
    sns.histplot(long, x="value", hue="sample", **density, palette=list(colours[: len(samples)]), ax=ax)
    ax.set(xlabel=xlabel, ylabel="density")
    _untitled_legend(ax)


def plot_error_quantiles(ax: Any, table: Any, ylabel: bool = True, legend: bool = True) -> None:
    """Fig. 3: share of false negatives and false positives per quantile of mean dictionary similarity."""
    import seaborn as sns

    long = table.melt(id_vars="quantile", value_vars=["fn_share", "fp_share"], var_name="error", value_name="share")
    long["error"] = long["error"].map({"fn_share": "false negatives", "fp_share": "false positives"})
    sns.barplot(long, x="quantile", y="share", hue="error", palette=[BLUE, ORANGE], ax=ax, legend=legend)
    ax.set(xlabel="dictionary-similarity quantile (low to high)", ylabel="share of errors" if ylabel else "")
    if not long["share"].any():  # an empty panel would read as a drawing fault
        ax.text(0.5, 0.5, "no errors", transform=ax.transAxes, ha="center", va="center", color="grey")
    _untitled_legend(ax)


def plot_ic_et(
    ax: Any,
    ic: np.ndarray,
    et: np.ndarray,
    is_anomaly: np.ndarray,
    lam: float | None = None,
    scores: np.ndarray | None = None,
    max_points: int = 4000,
    seed: int = 0,
) -> None:
    """Fig. 4: internal class score (x) against external text score (y), normal in blue, anomalies in orange; with
    ``lam`` and the BLISS ``scores`` of the points, the line IC + lam * ET = their median."""
    ic = np.asarray(ic, float)
    et = np.asarray(et, float)
    is_anomaly = np.asarray(is_anomaly, bool)
    idx = np.arange(len(ic))
    if len(idx) > max_points:  # keep the PDF light; subsample uniformly
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    for points, colour, label in ((idx[~is_anomaly[idx]], BLUE, "normal"), (idx[is_anomaly[idx]], ORANGE, "anomaly")):
        ax.scatter(ic[points], et[points], s=3, color=colour, alpha=0.5, linewidths=0, label=label)
    if lam and scores is not None:
        # BLISS's decision boundaries are the lines IC + lam * ET = const
        x = np.linspace(np.nanpercentile(ic, 1), np.nanpercentile(ic, 99), 2)
        c = np.nanmedian(np.asarray(scores, float))
        ax.plot(x, (c - x) / lam, color="black", lw=0.8, ls="--", label=f"IC + {lam:g}·ET = const")
    ax.set(xlabel="internal class score (IC)", ylabel="external text score (ET)")
    ax.legend(markerscale=3)


def plot_metric_curve(
    ax: Any, trials: Any, x: str, y: str = "auroc", hue: str = "setting", xlog: bool = False, xlabel: str | None = None
) -> None:
    """Ablation curves from per-trial rows: mean of ``y`` against ``x`` per ``hue``, shaded ± std over trials."""
    import seaborn as sns

    palette = PALETTE[: trials[hue].nunique()]
    sns.lineplot(trials, x=x, y=y, hue=hue, errorbar="sd", marker="o", markersize=4, palette=palette, ax=ax)
    if xlog:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel or x, ylabel=_metric_label(y))
    _untitled_legend(ax)


def plot_grouped_bars(
    ax: Any,
    trials: Any,
    x: str,
    hue: str,
    y: str = "auroc",
    order: Sequence[str] | None = None,
    hue_order: Sequence[str] | None = None,
    legend: bool = True,
) -> None:
    """Grouped bars of the mean of ``y`` over trials per ``x`` and ``hue``, with ± std error bars."""
    import seaborn as sns

    palette = PALETTE[: trials[hue].nunique()]
    bars = {"errorbar": "sd", "capsize": 0.1, "err_kws": {"linewidth": 0.8}, "palette": palette}
    sns.barplot(trials, x=x, y=y, hue=hue, order=order, hue_order=hue_order, **bars, ax=ax, legend=legend)
    ax.set(xlabel="", ylabel=_metric_label(y))
    ax.tick_params(axis="x", labelrotation=30)
    _untitled_legend(ax)


def plot_efficiency(axes: Sequence[Any], table: Any) -> None:
    """Two panels: scoring time and AUROC against dictionary size (columns entries, seconds, auroc)."""
    table = table.sort_values("entries", kind="stable")  # the line joins the points by size, not in table order
    for ax, y, label in zip(axes, ("seconds", "auroc"), ("fit + score time (s)", "AUROC")):
        ax.plot(table["entries"], table[y], marker="o", ms=3, color=BLUE)
        ax.set(xscale="log", xlabel="dictionary entries", ylabel=label)
