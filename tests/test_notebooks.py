"""The notebooks: each runs end to end in smoke mode through papermill and writes its figures and tables;
the notebooks in the repository carry no outputs and have one `parameters` cell; reproduce's preflight fails fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SMOKE_PARAMS = {"SMOKE": True, "DATA_ROOT": "", "OUTPUT_DIR": "", "SEED": 0, "MAX_TRIALS": 0, "DEVICE": "cpu"}
SETTINGS = ["cifar10-1", "cifar10-6", "cifar10-9", "cifar100-20", "tinyimagenet-20"]


def _figures(*stems: str) -> list[str]:
    return [f"{s}.{ext}" for s in stems for ext in ("pdf", "png")]


def _check_embeddings(res: Path) -> None:
    inv = pd.read_csv(res / "embeddings.csv")
    pairs = set(zip(inv["encoder"], inv["dataset"]))
    for d in ("cifar10", "cifar100", "tinyimagenet"):
        assert ("toy-clip", d) in pairs and ("tiny-vit", d) in pairs
    assert {("toy-blip", "cifar10"), ("toy-slip", "cifar10")} <= pairs
    assert (inv["n_train"] > 0).all() and (inv["n_test"] > 0).all()
    vlm = inv[inv["encoder"] != "tiny-vit"]
    assert (vlm["n_dictionary"] > 0).all() and (inv.loc[inv["encoder"] == "tiny-vit", "n_dictionary"] == 0).all()


def _check_cosines(res: Path) -> None:
    t = pd.read_csv(res / "fig1b_mean_cosine.csv", index_col=0)
    assert list(t.index) == ["toy-clip", "toy-blip", "toy-slip"]
    cols = ["text_text", "image_image", "image_own_text", "image_other_text", "text_dictionary"]
    assert set(cols) <= set(t.columns)
    assert t[cols].abs().le(1 + 1e-6).all().all()


def _check_distributions(res: Path) -> None:
    t = pd.read_csv(res / "fig2_distributions.csv")
    assert set(t["backbone"]) == {"toy-clip", "toy-blip", "toy-slip"}
    assert set(t["distribution"]) == {"class text vs dictionary", "image vs own class text"}


def _check_bias(res: Path) -> None:
    t = pd.read_csv(res / "fig3_errors_by_quantile.csv")
    assert set(t["score"]) == {"Biased-CLIP", "BLISS"}
    for _, part in t.groupby("score"):
        assert list(part["quantile"]) == list(range(1, len(part) + 1))
        for share, count in (("fn_share", "fn"), ("fp_share", "fp")):
            # the CSV rounds shares to 4 decimals (7 errors over 5 quantiles sum to 1.0001): compare with the counts
            total = part[count].sum()
            assert total == 0 or (part[share] - part[count] / total).abs().max() <= 5e-5


def _check_table1(res: Path) -> None:
    t = pd.read_csv(res / "table1.csv")
    assert list(t.columns[2:]) == SETTINGS
    labels = set(zip(t["group"], t["label"]))
    for m in ("DN2", "LUNAR", "GMM"):
        assert ("image-only", m) in labels and ("clip-based", m) in labels
    for m in ("MCM", "Biased-CLIP", "BLISS"):
        assert ("clip-based", m) in labels
    for m in ("CAC (reported)", "CSI (reported)", "DINO-FT (reported)", "ZOC (reported)", "BCE-CL (reported)"):
        assert any(lab == m for _, lab in labels)
    mcm = t[t["label"] == "MCM"].iloc[0]
    assert mcm["cifar10-1"] == "-"  # MCM needs two normal classes, as in the paper
    trials = pd.read_csv(res / "table1_trials.csv")
    assert trials["auroc"].between(0, 100).all()
    report = (res / "REPORT.md").read_text()
    assert "SMOKE RUN" in report and "Table 1" in report and "difference" in report
    assert (res / "table1.tex").is_file()


def _check_ablations(res: Path) -> None:
    t2 = pd.read_csv(res / "table2.csv", index_col=0)
    assert sorted(float(x) for x in t2.index) == [0.1, 0.5, 0.75, 2.0]
    assert list(t2.columns) == SETTINGS
    assert sorted(pd.read_csv(res / "ablation_k.csv", index_col=0).index) == [1, 5, 10]
    shots = pd.read_csv(res / "ablation_shots.csv")
    assert set(shots["shots"].astype(str)) == {"1", "5", "all"}
    dicts = pd.read_csv(res / "ablation_dictionary.csv", index_col=0)
    assert {"imagenet (64)", "imagenet-random-16 (16)", "cifar10-labels (10)"} <= set(dicts.index)
    assert sum(i.startswith("english") for i in dicts.index) == 2
    assert len(pd.read_csv(res / "ablation_templates.csv")) == 3 * 4
    tiny = pd.read_csv(res / "ablation_tinyimagenet_labels.csv", index_col=0)
    assert list(tiny.index) == ["imagenet", "imagenet-minus-tinyimagenet", "imagenet-minus-tinyimagenet-classes"]
    assert set(pd.read_csv(res / "ablation_fpr95.csv", index_col=0).index) == {
        "bliss",
        "biased-clip",
        "raw-similarity",
        "mcm",
    }
    pairs = pd.read_csv(res / "ablation_close_pairs.csv", index_col=0)
    assert "horse-vs-deer" in pairs.index and len(pairs) == 8


def _check_table3(res: Path) -> None:
    t = pd.read_csv(res / "table3.csv", index_col=0)
    assert list(t.index) == ["cifar10-1", "cifar10-6", "cifar10-9"]
    assert len(t.columns) == 9 and all("/" in c for c in t.columns)
    assert "Table 3" in (res / "REPORT.md").read_text()


EXPECTED = {
    "00_embeddings": ([], ["embeddings.csv", "embeddings.md"], _check_embeddings),
    "01_text_clustering": (
        _figures("fig1b_tsne", "fig1b_tsne_toy-clip", "fig1b_tsne_toy-blip", "fig1b_tsne_toy-slip"),
        ["fig1b_mean_cosine.csv", "fig1b_mean_cosine.md"],
        _check_cosines,
    ),
    "02_similarity_distributions": (
        _figures("fig2_similarity_distributions", "fig2_similarity_distributions_backbones"),
        ["fig2_distributions.csv"],
        _check_distributions,
    ),
    "03_similarity_bias": (
        _figures("fig3_similarity_bias"),
        ["fig3_errors_by_quantile.csv", "fig3_trend.csv"],
        _check_bias,
    ),
    "04_main_results": (
        _figures("fig4_ic_vs_et"),
        ["table1.csv", "table1.md", "table1.tex", "table1_ttest.csv", "REPORT.md", "measured/table1.csv"],
        _check_table1,
    ),
    "05_ablations": (
        _figures("ablation_lambda", "ablation_k"),
        ["table2.csv", "table2.tex", "measured/table2.csv"],
        _check_ablations,
    ),
    "06_backbones": ([], ["table3.csv", "table3.md", "table3.tex", "measured/table3.csv"], _check_table3),
}


@pytest.fixture(scope="session")
def smoke_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One output folder and one generated data folder shared by every notebook (later ones reuse the cache)."""
    base = tmp_path_factory.mktemp("notebooks")
    return {"OUTPUT_DIR": str(base / "out"), "DATA_ROOT": str(base / "data")}


def test_expected_outputs_cover_every_notebook() -> None:
    assert NOTEBOOKS, "no notebooks found"
    assert sorted(EXPECTED) == [p.stem for p in NOTEBOOKS]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path: Path, smoke_dirs: dict[str, str]) -> None:
    pm = pytest.importorskip("papermill")
    executed = Path(smoke_dirs["OUTPUT_DIR"]) / "executed" / path.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(path),
            str(executed),
            parameters={**SMOKE_PARAMS, **smoke_dirs},
            kernel_name="python3",
            cwd=str(ROOT),
            progress_bar=False,
            request_save_on_cell_execute=False,
        )
    except pm.PapermillExecutionError as err:
        pytest.fail(f"{path.name} raised {err.ename}: {err.evalue} (executed copy: {executed})")
    figures, tables, check = EXPECTED[path.stem]
    out = Path(smoke_dirs["OUTPUT_DIR"])
    for name in figures:
        f = out / "figures" / name
        assert f.is_file() and f.stat().st_size > 1000, f"{path.name} did not write figure {f}"
    for name in tables:
        f = out / "results" / name
        assert f.is_file() and f.stat().st_size > 0, f"{path.name} did not write table {f}"
    check(out / "results")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in code:
        assert cell.get("outputs") == [], f"{path.name}: a code cell carries outputs"
        assert cell.get("execution_count") is None, f"{path.name}: a code cell carries an execution count"
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: the first cell must say what it reproduces"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code", f"{path.name}: needs exactly one `parameters` cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_declares_smoke_params(path: Path) -> None:
    pm = pytest.importorskip("papermill")
    declared = pm.inspect_notebook(str(path))
    assert set(SMOKE_PARAMS) <= set(declared), f"{path.name} lacks parameters {set(SMOKE_PARAMS) - set(declared)}"
    assert declared["SMOKE"]["default"] == "False", f"{path.name}: the default must be the paper's run"
    for name, info in declared.items():
        assert info["inferred_type_name"] != "None", f"{path.name}: parameter {name} has no type annotation"
        assert info["help"], f"{path.name}: parameter {name} has no help comment"


def run_reproduce(data_root: Path, output_dir: Path, timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m bliss_utils reproduce` in a subprocess, as a user would run it."""
    command = [sys.executable, "-m", "bliss_utils", "reproduce", "--data-root", str(data_root), "--output-dir", str(output_dir)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_reproduce_stops_at_once_without_data(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = run_reproduce(empty, tmp_path / "o", timeout=120)
    assert proc.returncode == 1
    assert "missing datasets" in proc.stderr and "cifar10" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "results" / "executed").exists(), "no notebook may run when the preflight fails"


# ------------------------------------------------------------------ the library pieces behind the notebooks (fast)
def test_errors_by_quantile_counts_by_hand() -> None:
    import numpy as np

    from bliss_utils.analysis import errors_by_quantile

    sim = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    anomaly = np.array([False, True, False, True, False, True])
    flagged = np.array([True, False, False, False, True, True])  # FP at 0.1 and 0.5; FN at 0.2 and 0.4
    t = errors_by_quantile(sim, flagged, anomaly, n_quantiles=3)
    assert t["fn"].tolist() == [1, 1, 0] and t["fp"].tolist() == [1, 0, 1]
    assert t["fn_share"].tolist() == [0.5, 0.5, 0.0] and t["fp_rate"].tolist() == [0.5, 0.0, 0.5]
    with pytest.raises(ValueError):
        errors_by_quantile(sim, flagged.astype(int), anomaly)


def test_components_at_min_follow_the_class_bliss_uses() -> None:
    import numpy as np

    from bliss_utils.analysis import components_at_min

    ic = np.array([[1.0, 5.0, 0.0], [4.0, 0.0, 9.0]])
    et = np.array([[1.0, -6.0, 0.0], [0.0, 2.0, -9.0]])
    got_ic, got_et = components_at_min(ic, et, normal_classes=[0, 1], lam=1.0)
    assert got_ic.tolist() == [5.0, 0.0] and got_et.tolist() == [-6.0, 2.0]  # class 2 is not normal: ignored


def test_mean_cosines_on_orthogonal_vectors() -> None:
    import numpy as np

    from bliss_utils.analysis import mean_cosine_similarities

    texts = np.eye(4)[:2]  # two class texts, orthogonal
    images = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], float)
    out = mean_cosine_similarities(images, np.array([0, 0, 1]), texts, dictionary=np.eye(4))
    assert out["text_text"] == pytest.approx(0.0)
    assert out["image_image"] == pytest.approx(1 / 3)  # one identical pair out of three
    assert out["image_own_text"] == pytest.approx(2 / 3)
    assert out["text_dictionary"] == pytest.approx(0.25)


def test_significance_stars_only_a_clear_win() -> None:
    from bliss_utils.report import significance

    rows = [
        {"setting": "s", "method": m, "trial": t, "auroc": v}
        for m, vals in (("bliss", [95, 96, 97, 96]), ("dn2", [80, 81, 79, 80]), ("gmm", [60, 61, 59, 60]))
        for t, v in enumerate(vals)
    ]
    sig = significance(pd.DataFrame(rows))
    assert sig.loc[0, "competitor"] == "dn2" and bool(sig.loc[0, "star"])
    close = pd.DataFrame([{**r, "auroc": r["auroc"] - 15 if r["method"] == "bliss" else r["auroc"]} for r in rows])
    assert not bool(significance(close).loc[0, "star"])


def test_table1_marks_reported_rows_and_report_shows_differences(tmp_path: Path) -> None:
    from bliss_utils import report

    rows = [
        {
            "dataset": "cifar10",
            "encoder": enc,
            "setting": "cifar10-6",
            "trial": t,
            "method": m,
            "lam": 0.5 if m == "bliss" else float("nan"),
            "k": 10.0 if m == "bliss" else float("nan"),
            "n_shots": None,
            "auroc": v + t,
            "fpr95": 10.0,
        }
        for enc, m, v in (
            ("clip-vit-b16", "bliss", 97.0),
            ("clip-vit-b16", "biased-clip", 90.0),
            ("vit-b16-in21k", "dn2", 88.0),
        )
        for t in range(3)
    ]
    results = pd.DataFrame(rows)
    display, _, _ = report.table1(results)
    assert ("clip-based", "BCE-CL (reported)") in display.index and ("image-only", "DN2") in display.index
    assert display.loc[("clip-based", "BLISS"), "cifar10-6"].startswith("98.0 ± 0.8")
    report.record_measurements("table1", results, "table1", out_dir=tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert "| cifar10-6 | BLISS" in text and "+0.70" in text  # 98.0 measured vs 97.3 reported
    assert "SMOKE RUN" not in text


def test_save_table_writes_csv_markdown_latex(tmp_path: Path) -> None:
    from bliss_utils.report import read_table, save_table

    t = pd.DataFrame({"cifar10-1": ["99.1 ± 0.4"]}, index=["bliss"])
    paths = save_table(t, "t", tmp_path, latex=True)
    assert read_table(paths["csv"]).iloc[0, 1] == "99.1 ± 0.4"
    assert "99.1 ± 0.4" in paths["md"].read_text() and r"$\pm$" in paths["tex"].read_text()
    with pytest.raises(ValueError):
        save_table(t, "../escape", tmp_path)


def test_smoke_experiment_is_small_and_paper_experiment_is_the_protocol(tmp_path: Path) -> None:
    from bliss_utils.experiment import make_experiment

    paper = make_experiment(data_root=str(tmp_path / "none"), output_dir=str(tmp_path / "o"))
    assert paper.encoder == "clip-vit-b16" and paper.backbones == ("clip-vit-b16", "blip", "slip-vit-b16")
    assert paper.image_encoder == "vit-b16-in21k" and paper.dictionary_size is None
    assert [len(v) for v in paper.settings().values()] == [10, 5, 10, 5, 5]
    assert paper.figures_dir == (tmp_path / "o" / "figures").resolve()
    with pytest.raises(ValueError):
        make_experiment(preprocess="imagenet")


def test_reproduce_names_missing_weights_without_downloading(tmp_path: Path) -> None:
    from bliss_utils import synthetic

    data = tmp_path / "data"
    synthetic.make_fake_cifar(data, "cifar10", 1, 1)
    synthetic.make_fake_cifar(data, "cifar100", 1, 1)
    synthetic.make_fake_tinyimagenet(data, 1, 1)
    env = {k: v for k, v in os.environ.items() if k not in ("BLISS_WEIGHTS_DIR", "BLISS_OFFLINE")}
    env.update(
        BLISS_WEIGHTS_DIR=str(tmp_path / "no-weights"), TORCH_HOME=str(tmp_path / "torch"), HF_HOME=str(tmp_path / "hf")
    )
    proc = run_reproduce(data, tmp_path / "o", timeout=180, env=env)
    assert proc.returncode == 1
    for name in ("clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"):
        assert f"weights of {name}" in proc.stderr
    assert "Fetch:" in proc.stderr and "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    assert not (tmp_path / "o" / "results" / "executed").exists()


@pytest.mark.notebooks
def test_reproduce_reports_a_failing_notebook_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import argparse

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from bliss_utils import reproduce

    nb = new_notebook(cells=[new_code_cell("SMOKE: bool = False  # mode", metadata={"tags": ["parameters"]}),
                             new_code_cell("raise RuntimeError('boom in cell two')")])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "00_fails.ipynb")
    monkeypatch.setattr(reproduce, "notebook_paths", lambda: [tmp_path / "notebooks" / "00_fails.ipynb"])
    args = argparse.Namespace(smoke=True, data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "o"), device="cpu",
                              max_trials=0, preprocess="default", only=None, kernel="python3", skip_preflight=True)  # fmt: skip
    assert reproduce.run(args) == 1
    err = capsys.readouterr().err
    assert "00_fails.ipynb failed in cell" in err and "RuntimeError: boom in cell two" in err
    assert "Traceback" not in err and (tmp_path / "o" / "results" / "executed" / "00_fails.ipynb").is_file()


def test_preflight_downloads_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    import bliss_utils.datasets as datasets_module
    import bliss_utils.encoders as encoders_module
    from bliss_utils import experiment, reproduce

    calls = []
    monkeypatch.setattr(datasets_module, "load_dataset",
                        lambda name, split, root=None, download=False: calls.append(("data", name, download)))
    monkeypatch.setattr(encoders_module, "load_encoder",
                        lambda name, **kw: calls.append(("weights", name, os.environ.get(reproduce.OFFLINE_VAR))))
    exp = experiment.make_experiment(smoke=False, data_root=str(tmp_path), output_dir=str(tmp_path / "o"))
    for download in (False, True):
        calls.clear()
        reproduce.preflight(exp, download=download)
        assert {c[2] for c in calls if c[0] == "data"} == {download}
        # offline while checking, unless asked to download
        assert {c[2] for c in calls if c[0] == "weights"} == ({None} if download else {"1"})
        assert {c[1] for c in calls if c[0] == "weights"} == {"clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"}
