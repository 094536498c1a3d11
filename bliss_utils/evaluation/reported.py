"""The paper's reported numbers (bliss_utils/data/reported.json) as one tidy DataFrame, for side-by-side comparison."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from bliss_utils.config import PACKAGE_DATA
from bliss_utils.datasets.splits import class_splits

REPORTED_FILE = PACKAGE_DATA / "reported.json"

COLUMNS = ["table", "dataset", "setting", "method", "backbone", "lam", "auroc_mean", "auroc_std", "note", "label"]
COLUMNS += ["group", "dictionary", "n_trials", "starred", "source"]

_NAN = float("nan")


@lru_cache(maxsize=1)
def load_reported() -> dict[str, Any]:
    """The raw content of reported.json (checked for its four sections)."""
    data = json.loads(REPORTED_FILE.read_text(encoding="utf-8"))
    missing = {"table1", "table2", "table3", "dictionary_ablation"} - set(data)
    if missing:
        raise ValueError(f"{REPORTED_FILE} is missing section(s) {sorted(missing)}")
    return data


def _row(setting: str, method: str, backbone: str, mean: float, std: float | None = None, **extra: Any) -> dict:
    """One cell of a table (its table and source are added by ``_rows``)."""
    dataset, _, n_normal = setting.rpartition("-")  # e.g. cifar10-6: 6 normal classes of CIFAR-10
    lam = extra.pop("lam", None)
    row = {"dataset": dataset, "setting": setting, "method": method, "backbone": backbone}
    row |= {"lam": _NAN if lam is None else float(lam), "auroc_mean": float(mean)}
    row |= {"auroc_std": _NAN if std is None else float(std), "note": extra.pop("note", "")}
    row |= {"label": extra.pop("label", ""), "group": extra.pop("group", "")}
    # only BLISS uses a dictionary; the paper's default is ImageNet-1k class names
    row["dictionary"] = extra.pop("dictionary", "imagenet" if method == "bliss" else "")
    # computed from the splits, so the t-test uses the same trial counts as the paper's protocol
    row["n_trials"] = len(class_splits(dataset, int(n_normal)))
    return row | {"starred": bool(extra.pop("starred", False))}


def _table1_rows(t: dict) -> Iterator[dict]:
    for r in t["rows"]:
        starred = r.get("starred", [False] * len(t["settings"]))
        notes = r.get("cell_notes", {})
        for setting, cell, star in zip(t["settings"], r["auroc"], starred, strict=True):
            if cell is None:
                continue  # '-' in the paper: no number reported
            about = {"note": notes.get(setting, ""), "label": r["label"], "group": r["group"], "starred": star}
            yield _row(setting, r["method"], r["backbone"], *cell, lam=r.get("lam"), **about)


def _table2_rows(t: dict) -> Iterator[dict]:
    for r in t["rows"]:
        for setting, mean in zip(t["settings"], r["auroc_mean"], strict=True):
            yield _row(setting, t["method"], t["backbone"], mean, lam=r["lam"], label=f"lambda={r['lam']}")


def _table3_rows(t: dict) -> Iterator[dict]:
    notes = {(n["setting"], n["method"], n["backbone"]): n["note"] for n in t.get("cell_notes", [])}
    for setting, means in zip(t["settings"], t["auroc_mean"], strict=True):
        for col, mean in zip(t["columns"], means, strict=True):
            about = {"note": notes.get((setting, col["method"], col["backbone"]), ""), "label": col["label"]}
            yield _row(setting, col["method"], col["backbone"], mean, lam=col.get("lam"), **about)


def _dictionary_rows(t: dict) -> Iterator[dict]:
    for r in t["rows"]:
        about = {"dictionary": r["dictionary"], "note": r["note"], "label": r["dictionary"]}
        yield _row(t["setting"], t["method"], t["backbone"], r["auroc_mean"], lam=t["lam"], **about)


def _rows() -> list[dict]:
    data = load_reported()
    tables = {"table1": _table1_rows, "table2": _table2_rows, "table3": _table3_rows}
    tables["dictionary_ablation"] = _dictionary_rows
    return [
        {"table": key, **row, "source": data[key]["source"]}
        for key, rows_of in tables.items()
        for row in rows_of(data[key])
    ]


def reported_results() -> Any:
    """Tidy pandas DataFrame of every AUROC the paper reports (one row per table cell; AUROC in percent)."""
    import pandas as pd

    df = pd.DataFrame(_rows(), columns=COLUMNS)
    if df.empty or df["auroc_mean"].isna().any() or not df["auroc_mean"].between(0, 100).all():
        raise ValueError(f"{REPORTED_FILE} holds an AUROC outside [0, 100] or no rows at all")
    return df


def reported_cell(
    table: str, setting: str, method: str, backbone: str = "clip-vit-b16", **where: Any
) -> tuple[float, float]:
    """(auroc_mean, auroc_std) of one reported cell; ValueError when it is absent or ambiguous."""
    df = reported_results()
    mask = df["table"] == table
    for col, value in {"setting": setting, "method": method, "backbone": backbone, **where}.items():
        mask &= df[col].isna() if isinstance(value, float) and math.isnan(value) else df[col] == value
    hit = df[mask]
    if len(hit) != 1:
        raise ValueError(
            f"{len(hit)} reported rows match table={table!r}, setting={setting!r}, method={method!r}, "
            f"backbone={backbone!r}, {where}"
        )
    return float(hit["auroc_mean"].iloc[0]), float(hit["auroc_std"].iloc[0])
