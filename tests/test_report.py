"""Tables beside the paper and REPORT.md (evaluation.report): hand-computed differences, one reporting path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bliss_utils.evaluation import report


def test_save_table_writes_csv_markdown_latex(tmp_path: Path) -> None:
    t = pd.DataFrame({"cifar10-1": ["99.1 ± 0.4"]}, index=["bliss"])
    paths = report.save_table(t, "t", tmp_path, latex=True, caption="cap")
    assert pd.read_csv(paths["csv"], index_col=0).iloc[0, 0] == "99.1 ± 0.4"
    assert paths["md"].read_text().startswith("cap\n") and r"$\pm$" in paths["tex"].read_text()
    with pytest.raises(ValueError, match="plain file stem"):
        report.save_table(t, "../escape", tmp_path)
    with pytest.raises(ValueError, match="empty"):
        report.save_table(pd.DataFrame(), "e", tmp_path)


def test_beside_paper_differences_by_hand() -> None:
    measured = pd.DataFrame(
        {
            "setting": ["a", "b"],
            "method": ["bliss", "bliss"],
            "mean": [98.0, 90.0],
            "std": [0.5, 1.0],
            "n_trials": [5, 5],
        }
    )
    reported = pd.DataFrame(
        {
            "setting": ["a", "b", "c"],
            "method": ["bliss"] * 3,
            "auroc_mean": [97.3, 91.0, 80.0],
            "auroc_std": [0.2, float("nan"), 1.0],
            "note": ["", "flag", ""],
        }
    )
    t = report.beside_paper(measured, reported)
    assert t["difference"].tolist() == ["+0.70", "-1.00", ""]  # the unmeasured cell stays blank
    assert t["method"].tolist() == ["BLISS"] * 3 and t["measured"][0] == "98.00 ± 0.50" and t["paper"][1] == "91.00"
    assert report.mean_abs_difference(t) == pytest.approx(0.85)
    assert report.mean_abs_difference(t, exclude_notes=["flag"]) == pytest.approx(0.70)
    with pytest.raises(ValueError, match="lacks"):
        report.beside_paper(measured.drop(columns="std"), reported)


def test_cell_table_pivots_mean_and_std() -> None:
    s = pd.DataFrame(
        {
            "method": ["bliss", "bliss", "dn2"],
            "setting": ["cifar10-6", "cifar10-1", "cifar10-1"],
            "mean": [97.25, 99.1, 96.0],
            "std": [0.5, float("nan"), 1.0],
        }
    )
    t = report.cell_table(s)
    assert list(t.columns) == ["cifar10-1", "cifar10-6"]  # the paper's column order
    assert t.loc["bliss", "cifar10-6"] == "97.2 ± 0.5" and t.loc["bliss", "cifar10-1"] == "99.1"
    assert t.loc["dn2", "cifar10-6"] == "-"


def test_report_is_assembled_from_the_tables_the_notebooks_wrote(tmp_path: Path) -> None:
    report.save_table(pd.DataFrame({"x": ["1"]}), "paper_06_table3", tmp_path, index=False, caption="Table 3 here")
    report.save_table(pd.DataFrame({"x": ["2"]}), "paper_04_table1", tmp_path, index=False, caption="Table 1 here")
    report.save_table(pd.DataFrame({"x": ["3"]}), "other", tmp_path, index=False, caption="not for the report")
    prov = pd.DataFrame(
        [
            {
                "encoder": "toy-clip",
                "paper_backbone": "clip-vit-b16",
                "weights": "w",
                "preprocess": "p",
                "dataset": "cifar10",
                "train": 1,
                "test": 1,
                "smoke": True,
            }
        ]
    )
    report.save_table(prov, "provenance_04", tmp_path, index=False)
    text = report.write_report(tmp_path, mode="smoke").read_text()
    assert text.index("Table 1 here") < text.index("Table 3 here")  # notebook order
    assert "not for the report" not in text and "SMOKE RUN" in text and "toy-clip" in text


def test_the_banner_follows_the_runs_mode_and_the_run_record_keeps_it(tmp_path: Path) -> None:
    report.save_table(pd.DataFrame({"x": ["2"]}), "paper_04_table1", tmp_path, index=False)
    banners = {m: report.write_report(tmp_path, mode=m).read_text().split("## ")[0] for m in report.MODES}
    assert "SMOKE RUN" in banners["smoke"] and "REHEARSAL" not in banners["smoke"]
    assert "REHEARSAL RUN" in banners["rehearsal"] and "mean nothing" in banners["rehearsal"]
    assert "SMOKE" not in banners["rehearsal"] and "RUN." not in banners["paper"]
    # a paper-mode --only run into a folder that holds rehearsal notebooks' tables still warns
    pd.DataFrame([{"notebook": "00_embeddings", "seconds": 12.5, "peak_rss_gib": 3.25, "mode": "rehearsal"}]).to_csv(
        tmp_path / report.RUN_TIMES, index=False
    )
    text = report.write_report(tmp_path, mode="paper").read_text()
    assert "REHEARSAL RUN" in text and "| 00_embeddings |" in text and "3.25" in text
    with pytest.raises(ValueError, match="mode"):
        report.write_report(tmp_path, mode="fast")
