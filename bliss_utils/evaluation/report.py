"""Tables the notebooks write, their numbers beside the paper's, and ``results/REPORT.md`` assembled from them.

One reporting path: a notebook computes a table, shows it, and saves it with :func:`save_table`. Tables named
``paper_*`` hold measured numbers beside the paper's (made by :func:`beside_paper`); ``provenance_*`` say which
encoder, weights and data produced them. :func:`write_report` only concatenates those files into REPORT.md, with
``run_times.csv`` (each notebook's wall time and peak memory, written by ``reproduce``) and a banner for the run's mode.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bliss_utils._io import atomic_write_text
from bliss_utils.config import results_dir

logger = logging.getLogger(__name__)

# display names, in the row order of the paper's Table 1; † marks adaptations of related methods
METHOD_LABELS = {"cac": "CAC", "csi": "CSI", "dn2": "DN2", "lunar": "LUNAR", "gmm": "GMM", "dino-ft": "DINO-FT"}
METHOD_LABELS |= {"zoc": "ZOC", "ssd": "SSD†", "ssd-cmle": "SSD+CMLE†", "anomalyclip": "AnomalyCLIP†"}
METHOD_LABELS |= {"agnostic-pair": "Object-agnostic pair†", "agnostic-cpe": "Object-agnostic CPE†"}
METHOD_LABELS |= {"object-aware-cpe": "Object-aware CPE†", "mcm": "MCM", "bce-cl": "BCE-CL"}
METHOD_LABELS |= {"raw-similarity": "w/o (5)", "biased-clip": "Biased-CLIP", "bliss": "BLISS"}
SETTING_ORDER = ["cifar10-1", "cifar10-6", "cifar10-9", "cifar100-20", "tinyimagenet-20"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RUN_TIMES = "run_times.csv"  # notebook, seconds, peak_rss_gib, mode: one row per notebook, written by reproduce
MODES = ("paper", "smoke", "rehearsal")
# what REPORT.md says first when its numbers come from stand-ins
BANNERS = {
    "smoke": [
        "> **SMOKE RUN.** These numbers come from tiny stand-in encoders on small generated images. They test",
        "> that the pipeline runs end to end (BLISS must beat chance); they say nothing about the paper's claims.",
    ],
    "rehearsal": [
        "> **REHEARSAL RUN. These numbers mean nothing.** They come from random stand-in encoders at the real",
        "> backbones' output dimensions, on generated images in the real datasets' sizes and formats, with the",
        "> paper's settings otherwise. The point is each notebook's time and peak memory (the table below).",
    ],
}


def _write_verified(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    if path.read_text(encoding="utf-8") != text:
        raise OSError(f"{path} does not hold what was written")
    return path


def save_table(
    table: pd.DataFrame,
    name: str,
    out_dir: str | Path | None = None,
    latex: bool = False,
    index: bool = True,
    caption: str = "",
) -> dict[str, Path]:
    """Write ``table`` as ``<out_dir>/<name>.csv`` and ``.md`` (and ``.tex`` if ``latex``); default out_dir results/."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"table name {name!r} must be a plain file stem (letters, digits, '_', '-', '.')")
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError(f"table {name!r} is empty: nothing to save")
    folder = Path(out_dir) if out_dir else results_dir()
    paths = {"csv": _write_verified(folder / f"{name}.csv", table.to_csv(index=index))}
    flat = table.reset_index() if index and isinstance(table.index, pd.MultiIndex) else table
    md = flat.to_markdown(index=index and flat is table, disable_numparse=True)
    paths["md"] = _write_verified(folder / f"{name}.md", (f"{caption}\n\n" if caption else "") + md + "\n")
    if latex:
        tex = table.to_latex(index=index, caption=caption or None, label=f"tab:{name}", escape=True)
        paths["tex"] = _write_verified(folder / f"{name}.tex", tex.replace("±", r"$\pm$"))
    logger.info("saved table %s (%s)", folder / name, ", ".join(paths))
    return paths


def format_cell(mean: float, std: float | None = None, star: bool = False, decimals: int = 1) -> str:
    """'97.3 ± 0.8*' ('-' when mean is NaN; no '± ...' when std is NaN or None)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.{decimals}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{decimals}f}"
    return text + ("*" if star else "")


def method_label(method: str) -> str:
    """Display name of a method key (e.g. 'biased-clip' -> 'Biased-CLIP')."""
    return METHOD_LABELS.get(method, method)


def ordered(values: Iterable[str], order: Sequence[str] = SETTING_ORDER) -> list[str]:
    """``values`` (deduplicated) with those in ``order`` first, in that order, the rest sorted."""
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def cell_table(
    summary: pd.DataFrame,
    index: str | Sequence[str] = "method",
    columns: str = "setting",
    decimals: int = 1,
    show_std: bool = True,
) -> pd.DataFrame:
    """Pivot a summary (``mean``, ``std`` columns, e.g. from grid.summarize) into a table of 'mean ± std' strings."""
    index = [index] if isinstance(index, str) else list(index)
    missing = {*index, columns, "mean", "std"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s) {sorted(missing)}")
    df = summary.copy()
    df["cell"] = [format_cell(m, s if show_std else None, decimals=decimals) for m, s in zip(df["mean"], df["std"])]
    for col in index:  # pivot drops NaN keys (e.g. the lam of a method without one): show them as blanks
        if df[col].dtype.kind == "f":
            df[col] = ["" if math.isnan(v) else f"{v:g}" for v in df[col]]
        else:
            df[col] = df[col].fillna("").astype(str)
    table = df.pivot_table(index=index, columns=columns, values="cell", aggfunc="first", sort=False)
    table = table.reindex(columns=ordered(table.columns)).fillna("-")
    table.columns.name = None
    return table


def beside_paper(
    measured: pd.DataFrame, reported: pd.DataFrame, on: Sequence[str] = ("setting", "method"), decimals: int = 2
) -> pd.DataFrame:
    """Measured mean ± std beside the paper's, with the difference (measured - reported), one row per reported cell.

    ``measured`` has the ``on`` columns plus ``mean``, ``std``, ``n_trials``; ``reported`` the ``on`` columns plus
    ``auroc_mean``, ``auroc_std`` and ``note`` (bliss_utils.evaluation.reported). Reported cells not measured are kept,
    blank.
    """
    on = list(on)
    for name, df, cols in (("measured", measured, ["mean", "std"]), ("reported", reported, ["auroc_mean"])):
        missing = {*on, *cols} - set(df.columns)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}")
    rep = reported[[*on, "auroc_mean", "auroc_std", *(["note"] if "note" in reported else [])]]
    merged = rep.merge(
        measured[[*on, "mean", "std", *(["n_trials"] if "n_trials" in measured else [])]], on=on, how="left"
    )
    out = merged[on].copy()
    if "method" in out:
        out["method"] = [method_label(m) for m in out["method"]]
    out["measured"] = [format_cell(m, s, decimals=decimals) for m, s in zip(merged["mean"], merged["std"])]
    out["paper"] = [format_cell(m, s, decimals=decimals) for m, s in zip(merged["auroc_mean"], merged["auroc_std"])]
    diff = merged["mean"] - merged["auroc_mean"]
    out["difference"] = ["" if math.isnan(d) else f"{d:+.{decimals}f}" for d in diff]
    if "n_trials" in merged:
        out["trials"] = [("" if math.isnan(n) else str(int(n))) for n in merged["n_trials"].astype(float)]
    if "note" in merged:
        out["note"] = merged["note"].fillna("")
    return out


def provenance(
    sets: Iterable[Any], paper_backbone: Mapping[str, str] | None = None, smoke: bool = False
) -> pd.DataFrame:
    """One row per EmbeddingSet: encoder, the paper backbone it stands for, weights and preprocessing, data, mode."""
    paper_backbone = dict(paper_backbone or {})
    rows = []
    for s in sets:
        enc = dict((getattr(s, "meta", {}) or {}).get("encoder") or {})
        ids = {"weights": enc.get("weights_id", ""), "preprocess": enc.get("preprocess_id", "")}
        data = {"dataset": s.dataset, "train": len(s.train), "test": len(s.test), "smoke": bool(smoke)}
        rows.append({"encoder": s.encoder, "paper_backbone": paper_backbone.get(s.encoder, s.encoder), **ids, **data})
    return pd.DataFrame(rows).drop_duplicates(ignore_index=True)


def write_report(out_dir: str | Path | None = None, mode: str | None = None) -> Path:
    """Assemble ``REPORT.md`` from the ``paper_*.md`` and ``provenance_*.csv`` tables the notebooks wrote.

    Tables are named ``paper_<NN>_<what>`` after the notebook that wrote them, so sorting by name keeps notebook order.
    ``mode`` (paper, smoke, rehearsal) is the run's; the modes ``run_times.csv`` records for earlier notebooks in the
    folder count too, so a report never shows stand-in numbers without its banner.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}; got {mode!r}")
    folder = Path(out_dir) if out_dir else results_dir()
    tables = sorted(folder.glob("paper_*.md"))
    prov_files = sorted(folder.glob("provenance_*.csv"))
    prov = pd.concat([pd.read_csv(f) for f in prov_files], ignore_index=True) if prov_files else pd.DataFrame()
    times = pd.read_csv(folder / RUN_TIMES) if (folder / RUN_TIMES).is_file() else pd.DataFrame(columns=["mode"])
    modes = {*([mode] if mode else []), *times["mode"].astype(str)}
    lines = [
        "# BLISS reproduction: measured beside reported",
        "",
        "Assembled by `bliss_utils.evaluation.report.write_report` from the tables the notebooks wrote "
        "(`results/paper_*.md`);",
        "do not edit by hand. AUROC in percent, mean ± population std over trials; difference = measured - paper.",
        "",
    ]
    for m in (m for m in BANNERS if m in modes):
        lines += [*BANNERS[m], ""]
    if not prov.empty:
        prov = prov.drop_duplicates(subset=["encoder", "weights", "preprocess", "dataset"])
        lines += ["## What produced these numbers", "", prov.to_markdown(index=False, disable_numparse=True), ""]
    if not times.empty:
        about = ["Wall time of each notebook (s) and the peak resident memory of its kernel (GiB), as measured"]
        lines += ["## Run time and peak memory", "", *about, "by `reproduce`.", "", times.to_markdown(index=False), ""]
    if not tables:
        lines += ["No table beside the paper yet: run the notebooks (`python -m bliss_utils reproduce`)."]
    for path in tables:
        lines += [f"## {path.stem.removeprefix('paper_')}", "", path.read_text(encoding="utf-8").strip(), ""]
    return _write_verified(folder / "REPORT.md", "\n".join(lines) + "\n")


def mean_abs_difference(table: pd.DataFrame, exclude_notes: Sequence[str] = ()) -> float:
    """Mean |difference| over the cells of a :func:`beside_paper` table that were measured, except flagged cells."""
    flagged = [any(flag in str(note) for flag in exclude_notes) for note in table.get("note", [""] * len(table))]
    diffs = [abs(float(d)) for d, skip in zip(table["difference"], flagged) if d and not skip]
    return float(np.mean(diffs)) if diffs else float("nan")
