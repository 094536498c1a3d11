"""Tables and the generated results/REPORT.md: measured numbers (from grid DataFrames) beside the paper's reported ones.

Tables are written as CSV + Markdown (+ LaTeX for the paper's tables), atomically. Cells are "mean ± std" with the
population std over trials (as the paper's tables). Every measured summary a notebook wants compared with the paper is
recorded under ``results/measured/<name>.csv`` by :func:`record_measurements`; :func:`write_report` joins them all with
:func:`bliss_utils.reported.reported_results` and writes ``results/REPORT.md``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._io import atomic_write_text
from .config import results_dir

logger = logging.getLogger(__name__)

# display names, in the row order of the paper's Table 1
METHOD_LABELS = {
    "cac": "CAC", "csi": "CSI", "dn2": "DN2", "lunar": "LUNAR", "gmm": "GMM", "dino-ft": "DINO-FT", "zoc": "ZOC",
    "mcm": "MCM", "bce-cl": "BCE-CL", "raw-similarity": "w/o (5)", "biased-clip": "Biased-CLIP", "bliss": "BLISS",
}  # fmt: skip
SETTING_ORDER = ["cifar10-1", "cifar10-6", "cifar10-9", "cifar100-20", "tinyimagenet-20"]
MEASURED_COLUMNS = [
    "table", "dataset", "setting", "method", "encoder", "backbone", "lam", "k", "n_shots", "dictionary", "variant",
    "metric", "mean", "std", "n_trials", "weights", "data", "smoke",
]  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------- files
def _atomic_write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    if path.read_text(encoding="utf-8") != text:  # verify on read, as the team rules ask
        raise OSError(f"{path} does not hold what was written")
    return path


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"table name {name!r} must be a plain file stem (letters, digits, '_', '-', '.')")
    return name


def save_table(
    table: pd.DataFrame,
    name: str,
    out_dir: str | Path | None = None,
    latex: bool = False,
    index: bool = True,
    caption: str = "",
) -> dict[str, Path]:
    """Write ``table`` as ``<out_dir>/<name>.csv`` and ``.md`` (and ``.tex`` if ``latex``); default out_dir is results/."""
    _check_name(name)
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError(f"table {name!r} is empty: nothing to save")
    folder = Path(out_dir) if out_dir else results_dir()
    paths = {"csv": _atomic_write(folder / f"{name}.csv", table.to_csv(index=index))}
    # tabulate prints a MultiIndex as tuples: give each level its own column instead
    flat = table.reset_index() if index and isinstance(table.index, pd.MultiIndex) else table
    md = flat.to_markdown(index=index and flat is table, disable_numparse=True)
    paths["md"] = _atomic_write(folder / f"{name}.md", (f"{caption}\n\n" if caption else "") + md + "\n")
    if latex:
        tex = table.to_latex(index=index, caption=caption or None, label=f"tab:{name}", escape=True)
        tex = tex.replace("±", r"$\pm$")
        paths["tex"] = _atomic_write(folder / f"{name}.tex", tex)
    logger.info("saved table %s (%s)", folder / name, ", ".join(paths))
    return paths


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`save_table` (ValueError if missing or empty)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"table {path} does not exist: run the notebook that writes it first")
    df = pd.read_csv(path)
    if df.empty:
        raise ValueError(f"table {path} is empty")
    return df


# ---------------------------------------------------------------- summaries and cells
def summarise(results: pd.DataFrame, metric: str = "auroc", by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean and population std over trials (grid.summarize) per (dataset, encoder, setting, method, lam, k, n_shots)
    and per value of the extra columns ``by`` (e.g. a dictionary or template label added by an ablation)."""
    from .grid import summarize

    if results.empty:
        raise ValueError("results is empty: the grid produced no rows")
    missing = {metric, *by} - set(results.columns)
    if missing:
        raise ValueError(f"results have no column(s) {sorted(missing)}; columns: {list(results.columns)}")
    return summarize(results, metric=metric, by=by)


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


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    known = [v for v in order if v in set(values)]
    return known + sorted(v for v in set(values) if v not in set(order))


def cell_table(
    summary: pd.DataFrame,
    index: str | Sequence[str] = "method",
    columns: str = "setting",
    stars: Mapping[str, bool] | None = None,
    star_method: str = "bliss",
    decimals: int = 1,
    show_std: bool = True,
) -> pd.DataFrame:
    """Pivot a summary (mean, std columns) into a table of 'mean ± std' strings; ``stars`` maps setting -> bool."""
    index = [index] if isinstance(index, str) else list(index)
    missing = {*index, columns, "mean", "std"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s) {sorted(missing)}")
    df = summary.copy()
    df["cell"] = [
        format_cell(
            m,
            s if show_std else None,
            bool(stars and r.get("method") == star_method and stars.get(r[columns], False)),
            decimals,
        )
        for m, s, (_, r) in zip(df["mean"], df["std"], df.iterrows())
    ]
    for col in index:  # pivot drops NaN keys (e.g. lam of methods without one): show them as blanks
        if df[col].dtype.kind == "f":
            df[col] = [("" if math.isnan(v) else f"{v:g}") for v in df[col]]
        else:
            df[col] = df[col].fillna("")
    table = df.pivot_table(index=index, columns=columns, values="cell", aggfunc="first", sort=False)
    cols = _ordered(list(table.columns), SETTING_ORDER)
    table = table.reindex(columns=cols).fillna("-")
    table.columns.name = None
    return table


# ---------------------------------------------------------------- significance
def significance(
    results: pd.DataFrame,
    method: str = "bliss",
    alpha: float = 0.05,
    reported: pd.DataFrame | None = None,
    metric: str = "auroc",
    key: str = "method",
) -> pd.DataFrame:
    """One-sided t-test of ``method`` against the next best competitor in every setting (the paper's Table 1 stars).

    Competitors are the other measured methods (per-trial Welch test, metrics.one_sided_ttest) and, if given,
    ``reported`` rows with columns setting/<key>/mean/std/n_trials (metrics.one_sided_ttest_from_stats).
    ``key`` names the column that tells rows apart (e.g. one that joins method and backbone).
    The next best is the competitor with the highest mean. Returns setting, competitor, source, means, p_value, star.
    """
    from .metrics import one_sided_ttest, one_sided_ttest_from_stats

    if method not in set(results[key]):
        raise ValueError(f"results hold no rows with {key} == {method!r}")
    rows = []
    for setting, part in results.groupby("setting", sort=False):
        ours = part.loc[part[key] == method, metric].to_numpy(float)
        if ours.size == 0:
            continue
        candidates = []
        for other, sub in part[part[key] != method].groupby(key):
            vals = sub[metric].to_numpy(float)
            candidates.append(
                {
                    "competitor": other,
                    "source": "measured",
                    "mean": vals.mean(),
                    "std": float(np.std(vals, ddof=0)),
                    "n": len(vals),
                    "values": vals,
                }
            )
        if reported is not None:
            for _, r in reported[(reported["setting"] == setting) & (reported[key] != method)].iterrows():
                candidates.append(
                    {
                        "competitor": r[key],
                        "source": "reported",
                        "mean": float(r["mean"]),
                        "std": float(r["std"]),
                        "n": int(r["n_trials"]),
                        "values": None,
                    }
                )
        if not candidates:
            continue
        best = max(candidates, key=lambda c: c["mean"])
        p = float("nan")
        try:
            if best["values"] is not None:
                p = one_sided_ttest(ours, best["values"])
            elif not math.isnan(best["std"]):
                p = one_sided_ttest_from_stats(
                    ours.mean(), float(np.std(ours, ddof=0)), len(ours), best["mean"], best["std"], best["n"]
                )
        except ValueError as err:  # e.g. a single trial: no variance to test with
            logger.info("no t-test for %s in %s: %s", method, setting, err)
        rows.append(
            {
                "setting": setting,
                "method": method,
                "mean": float(ours.mean()),
                "competitor": best["competitor"],
                "competitor_source": best["source"],
                "competitor_mean": best["mean"],
                "p_value": p,
                "star": bool(p < alpha) if not math.isnan(p) else False,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Table 1
REPORTED_ONLY = ("cac", "csi", "dino-ft", "zoc", "bce-cl")  # Table 1 rows the paper copies from other papers
TABLE1_ORDER = {
    "image-only": ["cac", "csi", "dn2", "lunar", "gmm", "dino-ft"],
    "clip-based": ["cac", "dn2", "lunar", "gmm", "zoc", "mcm", "bce-cl", "biased-clip", "bliss"],
}


def table1(
    results: pd.DataFrame,
    image_backbones: Sequence[str] = ("vit-b16-in21k",),
    backbone_of: Mapping[str, str] | None = None,
    reported: pd.DataFrame | None = None,
    lam: float = 0.5,
    k: int = 10,
    alpha: float = 0.05,
    decimals: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The paper's Table 1: measured rows (grid results) plus its reported-only rows, marked, and BLISS's t-test stars.

    Rows of encoders whose paper backbone is in ``image_backbones`` form the image-only group, the others the
    CLIP-based group. Stars: one-sided Welch test of BLISS (lam, k) against the next best row, measured or reported,
    at ``alpha``. Returns (display table, long numeric table, significance table).
    """
    if reported is None:
        from .reported import reported_results

        reported = reported_results()
    backbone_of = dict(backbone_of or {})
    keep = (results["method"] != "bliss") | (
        np.isclose(results["lam"].astype(float), lam) & np.isclose(results["k"].astype(float), k)
    )
    r = results[keep].copy()
    r["group"] = ["image-only" if backbone_of.get(e, e) in image_backbones else "clip-based" for e in r["encoder"]]
    r["row"] = r["group"] + ":" + r["method"]
    measured = (
        r.groupby(["group", "method", "setting"], sort=False)["auroc"]
        .agg(mean="mean", std=lambda v: float(np.std(v, ddof=0)), n_trials="count")
        .reset_index()
    )
    measured["source"] = "measured"
    rep = reported[(reported["table"] == "table1") & reported["method"].isin(REPORTED_ONLY)]
    rep = pd.DataFrame(
        {
            "group": rep["group"],
            "method": rep["method"],
            "setting": rep["setting"],
            "mean": rep["auroc_mean"],
            "std": rep["auroc_std"],
            "n_trials": rep["n_trials"],
            "source": "reported",
        }
    )
    long = pd.concat([measured, rep], ignore_index=True)
    long["row"] = long["group"] + ":" + long["method"]
    sig = significance(
        r,
        method="clip-based:bliss",
        alpha=alpha,
        key="row",
        reported=rep.assign(row=rep["group"] + ":" + rep["method"]),
    )
    stars = dict(zip(sig["setting"], sig["star"])) if not sig.empty else {}
    long["label"] = [
        method_label(m) + (" (reported)" if src == "reported" else "") for m, src in zip(long["method"], long["source"])
    ]
    long["cell"] = [
        format_cell(m, s, bool(row == "clip-based:bliss" and stars.get(st, False)), decimals)
        for m, s, row, st in zip(long["mean"], long["std"], long["row"], long["setting"])
    ]
    order = [(g, m) for g, ms in TABLE1_ORDER.items() for m in ms]
    long["order"] = [
        order.index((g, m)) if (g, m) in order else len(order) for g, m in zip(long["group"], long["method"])
    ]
    long = long.sort_values(["order", "source"]).drop(columns="order")
    display = long.pivot_table(index=["group", "label"], columns="setting", values="cell", aggfunc="first", sort=False)
    display = display.reindex(columns=_ordered(list(display.columns), SETTING_ORDER)).fillna("-")
    display.columns.name = None
    if not sig.empty:
        sig = sig.round({"mean": 2, "competitor_mean": 2, "p_value": 4})
    return display, long.reset_index(drop=True), sig


TABLE3_LABELS = {"raw-similarity": "w/o (5)", "biased-clip": "w (5)", "bliss": "BLISS"}


def table3(
    results: pd.DataFrame, backbones: Sequence[str], backbone_of: Mapping[str, str] | None = None, decimals: int = 2
) -> pd.DataFrame:
    """The paper's Table 3: mean AUROC per setting (rows) for each backbone x {w/o (5), w (5), BLISS} (columns)."""
    backbone_of = dict(backbone_of or {})
    summary = summarise(results[results["method"].isin(list(TABLE3_LABELS))])
    summary["column"] = [
        f"{backbone_of.get(e, e)} / {TABLE3_LABELS[m]}" for e, m in zip(summary["encoder"], summary["method"])
    ]
    table = cell_table(summary, index="setting", columns="column", show_std=False, decimals=decimals)
    wanted = [f"{backbone_of.get(b, b)} / {label}" for b in backbones for label in TABLE3_LABELS.values()]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"results lack Table 3 column(s) {missing}")
    table = table[wanted]
    return table.reindex(_ordered(list(table.index), SETTING_ORDER))


# ---------------------------------------------------------------- measured vs reported
def measured_dir(out_dir: str | Path | None = None) -> Path:
    """Folder of the measured summaries that REPORT.md is built from: ``results/measured``."""
    return (Path(out_dir) if out_dir else results_dir()) / "measured"


def record_measurements(
    name: str,
    results: pd.DataFrame,
    table: str,
    backbones: Mapping[str, str] | None = None,
    provenance: Mapping[str, Mapping[str, str]] | None = None,
    dictionary: str = "imagenet",
    variant: str = "",
    smoke: bool = False,
    out_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Summarise a grid DataFrame (AUROC and FPR95) and store it as ``results/measured/<name>.csv`` for REPORT.md.

    ``table`` names the paper's table it reproduces (table1, table2, table3, dictionary_ablation, or an ablation name
    the paper only describes); ``backbones`` maps an encoder name to the paper backbone it stands for (smoke mode:
    tiny-clip -> clip-vit-b16); ``provenance`` maps an encoder to {'weights': ..., 'data': ...}.
    """
    _check_name(name)
    backbones = dict(backbones or {})
    provenance = dict(provenance or {})
    parts = []
    for metric in ("auroc", "fpr95"):
        s = summarise(results, metric)
        s["metric"] = metric
        parts.append(s)
    df = pd.concat(parts, ignore_index=True)
    df["table"] = table
    df["backbone"] = [backbones.get(e, e) for e in df["encoder"]]
    df["dictionary"] = [dictionary if m == "bliss" else "" for m in df["method"]]
    df["variant"] = variant
    df["weights"] = [provenance.get(e, {}).get("weights", "") for e in df["encoder"]]
    df["data"] = [provenance.get(e, {}).get("data", "") for e in df["encoder"]]
    df["smoke"] = bool(smoke)
    df = df[MEASURED_COLUMNS]
    _atomic_write(measured_dir(out_dir) / f"{name}.csv", df.to_csv(index=False))
    return df


def load_measurements(out_dir: str | Path | None = None) -> pd.DataFrame:
    """Every recorded measurement (all ``results/measured/*.csv``) as one DataFrame (empty if none yet)."""
    folder = measured_dir(out_dir)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    frames = []
    for f in files:
        df = pd.read_csv(
            f, keep_default_na=True, dtype={"dictionary": str, "variant": str, "weights": str, "data": str}
        )
        missing = set(MEASURED_COLUMNS) - set(df.columns)
        if missing:
            raise ValueError(f"{f} lacks column(s) {sorted(missing)}: was it written by record_measurements?")
        df["source_file"] = f.name
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[*MEASURED_COLUMNS, "source_file"])
    out = pd.concat(frames, ignore_index=True)
    for col in ("dictionary", "variant", "weights", "data"):
        out[col] = out[col].fillna("")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(np.isclose(float(a), float(b)))
    except (TypeError, ValueError):
        return a == b


def compare_with_reported(measured: pd.DataFrame, reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """Join measured AUROC summaries (k=10, all shots) with the paper's cells: one row per reported cell measured."""
    if reported is None:
        from .reported import reported_results

        reported = reported_results()
    m = measured[(measured["metric"] == "auroc")]
    m = m[(m["k"].isna() | np.isclose(m["k"].astype(float), 10)) & m["n_shots"].isna() & (m["variant"] == "")]
    rows = []
    for _, r in reported.iterrows():
        lam_wanted = r["lam"] if r["method"] == "bliss" else float("nan")
        dictionary = r["dictionary"] if r["method"] == "bliss" else ""
        hit = m[
            (m["table"] == r["table"])
            & (m["setting"] == r["setting"])
            & (m["method"] == r["method"])
            & (m["backbone"] == r["backbone"])
            & (m["dictionary"] == dictionary)
        ]
        hit = hit[[_same(float(x), float(lam_wanted)) for x in hit["lam"]]]
        if hit.empty:
            continue
        h = hit.iloc[0]
        rows.append(
            {
                "table": r["table"],
                "setting": r["setting"],
                "method": r["method"],
                "label": r["label"],
                "backbone": r["backbone"],
                "encoder": h["encoder"],
                "lam": r["lam"],
                "dictionary": dictionary,
                "measured_mean": float(h["mean"]),
                "measured_std": float(h["std"]),
                "n_trials": int(h["n_trials"]),
                "reported_mean": float(r["auroc_mean"]),
                "reported_std": float(r["auroc_std"]),
                "difference": float(h["mean"]) - float(r["auroc_mean"]),
                "weights": h["weights"],
                "data": h["data"],
                "smoke": bool(h["smoke"]),
                "note": r["note"],
            }
        )
    return pd.DataFrame(rows)


def _provenance_lines(measured: pd.DataFrame) -> list[str]:
    lines = []
    for encoder, part in measured.groupby("encoder", sort=True):
        weights = sorted({w for w in part["weights"] if w})
        data = sorted({x for cell in part["data"] for x in str(cell).split("; ") if x})
        backbone = part["backbone"].iloc[0]
        stands = f" (standing in for {backbone})" if backbone != encoder else ""
        lines.append(
            f"- `{encoder}`{stands}: weights `{' | '.join(weights) or 'not recorded'}`; "
            f"data: {'; '.join(data) or 'not recorded'}"
        )
    return lines


def write_report(
    out_dir: str | Path | None = None,
    reported: pd.DataFrame | None = None,
    extra_sections: Mapping[str, str] | None = None,
) -> Path:
    """Generate ``results/REPORT.md``: every measured number the paper reports, beside it, with the difference."""
    folder = Path(out_dir) if out_dir else results_dir()
    measured = load_measurements(folder)
    lines = [
        "# BLISS reproduction: measured vs reported",
        "",
        "Generated by `bliss_utils.report.write_report` from `results/measured/*.csv`; do not edit by hand.",
        "AUROC in percent, mean ± population std over trials; difference = measured - reported.",
        "",
    ]
    if measured.empty:
        lines += ["No measurements recorded yet: run the notebooks (`python -m bliss_utils reproduce`)."]
        return _atomic_write(folder / "REPORT.md", "\n".join(lines) + "\n")
    if measured["smoke"].astype(bool).any():
        lines += [
            "> **SMOKE RUN.** These numbers come from tiny randomly initialised encoders on generated images.",
            "> They test that the pipeline runs end to end; they say nothing about the paper's claims.",
            "",
        ]
    lines += ["## What produced these numbers", "", *_provenance_lines(measured), ""]
    comparison = compare_with_reported(measured, reported)
    titles = {
        "table1": "Table 1 (AUROC vs baselines)",
        "table2": "Table 2 (lambda)",
        "table3": "Table 3 (backbones)",
        "dictionary_ablation": "TinyImageNet labels in the dictionary (section 5.1)",
    }
    for table, title in titles.items():
        part = comparison[comparison["table"] == table] if not comparison.empty else comparison
        lines += [f"## {title}", ""]
        if part.empty:
            lines += ["Not measured in this run.", ""]
            continue
        show = pd.DataFrame(
            {
                "setting": part["setting"],
                "method": part["label"],
                "measured by": part["encoder"],
                "lam": [("" if math.isnan(x) else f"{x:g}") for x in part["lam"]],
                "measured": [
                    format_cell(m, s, decimals=2) for m, s in zip(part["measured_mean"], part["measured_std"])
                ],
                "reported": [
                    format_cell(m, s, decimals=2) for m, s in zip(part["reported_mean"], part["reported_std"])
                ],
                "difference": [f"{d:+.2f}" for d in part["difference"]],
                "trials": part["n_trials"],
            }
        )
        lines += [show.to_markdown(index=False, disable_numparse=True), ""]
        lines += [
            f"Mean absolute difference over these {len(part)} cells: {part['difference'].abs().mean():.2f} AUROC points.",
            "",
        ]
    others = measured[~measured["table"].isin(list(titles))]
    if not others.empty:
        lines += [
            "## Ablations the paper describes without numbers (measured only)",
            "",
            "See the CSV/Markdown tables under `results/` for each; listed here: "
            + ", ".join(f"`{t}`" for t in sorted(set(others["table"])))
            + ".",
            "",
        ]
    for heading, body in (extra_sections or {}).items():
        lines += [f"## {heading}", "", body.strip(), ""]
    if not comparison.empty:
        _atomic_write(folder / "report_comparison.csv", comparison.to_csv(index=False))
    return _atomic_write(folder / "REPORT.md", "\n".join(lines) + "\n")


def write_json(obj: Any, name: str, out_dir: str | Path | None = None) -> Path:
    """Write key numbers of a notebook as ``results/<name>.json`` (atomic; tests read them back)."""
    _check_name(name)
    folder = Path(out_dir) if out_dir else results_dir()
    return _atomic_write(folder / f"{name}.json", json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")
