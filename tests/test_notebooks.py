"""The notebooks: clean and parametrised in the repository; in smoke mode each runs end to end through
`reproduce --smoke`, writes its figures and tables, and BLISS beats chance; then notebooks 01-06 run again from a
copied embedding cache with no dataset on disk and no model allowed to load."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pandas as pd
import pytest

from bliss_utils.running import reproduce
from bliss_utils.running.session import SHARED
from bliss_utils.scores import methods

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# the stand-in modes' injected settings (smoke.json, rehearsal.json)
STAND_INS = {mode: reproduce.mode_settings(mode, ROOT) for mode in reproduce.MODE_FILES}
# every notebook declares these (where things are, and the smoke labels): what open_session resolves
COMMON = set(SHARED)


def _figures(*stems: str) -> list[str]:
    return [f"figures/{s}.{ext}" for s in stems for ext in ("pdf", "png")]


EXPECTED = {
    "00_embeddings": ["results/embeddings.csv", "results/provenance_00.csv"],
    "01_text_clustering": [*_figures("fig1b_tsne"), "results/fig1b_mean_cosine.csv"],
    "02_similarity_distributions": [*_figures("fig2_similarity_distributions"), "results/paper_02_fig2_peaks.csv"],
    "03_similarity_bias": [
        *_figures("fig3_similarity_bias"),
        "results/fig3_errors_by_quantile.csv",
        "results/paper_03_fig3_trend.csv",
    ],
    "04_main_results": [
        *_figures("fig4_ic_vs_et"),
        "results/table1.csv",
        "results/table1.tex",
        "results/paper_04_table1.csv",
        "results/table1_fpr95.csv",
        "results/paper_04_fig4_claims.csv",
    ],
    "05_ablations": [
        *_figures("ablation_lambda", "ablation_k", "ablation_efficiency"),
        "results/paper_05_table2.csv",
        "results/ablation_shots.csv",
        "results/paper_05_shots_best.csv",
        "results/ablation_dictionary.csv",
        "results/ablation_efficiency.csv",
        "results/ablation_templates.csv",
        "results/paper_05_tinyimagenet_labels.csv",
        "results/ablation_close_pairs.csv",
        "results/ablation_gmm.csv",
        "results/ablation_object_aware_prompts.csv",
        "results/ablation_trials.csv",
    ],
    "06_backbones": [*_figures("table3_backbones"), "results/table3.csv", "results/paper_06_table3.csv"],
    "07_your_data": [
        *_figures("your_data_fig2_similarities", "your_data_fig3_similarity_bias", "your_data_gallery_bliss"),
        "results/your_data_scores.csv",
        "results/your_data_metrics.csv",
    ],
}
# Imported by the notebook kernels of the copied-cache run (PYTHONPATH): any attempt to build a model fails loudly.
NO_MODELS = """
import bliss_utils.encoders as _e, bliss_utils.encoders.registry as _r
def _refuse(*a, **k):
    raise RuntimeError("a model was loaded although every embedding is cached")
_e.load_encoder = _r.load_encoder = _refuse
"""


def test_expected_outputs_cover_every_notebook() -> None:
    assert sorted(EXPECTED) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} carries outputs"
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: the first cell must say what it reproduces"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code", f"{path.name}: needs exactly one `parameters` cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_holds_every_knob_typed_and_explained(path: Path) -> None:
    declared = reproduce.declared_parameters(path)
    import papermill as pm

    info = pm.inspect_notebook(str(path))
    assert set(declared) >= COMMON, f"{path.name} lacks {COMMON - set(declared)}"
    assert declared["SMOKE"] is False and declared["PAPER_BACKBONE"] == {}, "the defaults must be the paper's run"
    for name, meta in info.items():
        assert meta["inferred_type_name"] != "None", f"{path.name}: {name} has no type annotation"
        assert meta["help"], f"{path.name}: {name} has no help comment"
    # every smoke or rehearsal value is one the notebook declares: nothing is injected silently
    for mode, settings in STAND_INS.items():
        unknown = set(settings.get(path.stem, {})) - set(declared)
        assert not unknown, f"{reproduce.MODE_FILES[mode]} sets {unknown} that {path.name} does not declare"


@pytest.mark.parametrize("mode", sorted(STAND_INS))
def test_stand_in_settings_name_declared_parameters_only_with_their_types(mode: str) -> None:
    declared = set().union(*(reproduce.declared_parameters(p) for p in NOTEBOOKS))
    assert set(STAND_INS[mode]["all"]) <= declared
    assert set(STAND_INS[mode]) - {"_about", "data", "all"} <= {p.stem for p in NOTEBOOKS}
    for path in NOTEBOOKS:  # open_session refuses a value of another type, so a bad one would stop the run
        params = reproduce.declared_parameters(path)
        for name, value in reproduce.stand_in_values(STAND_INS[mode], path.stem, params, "/data").items():
            assert reproduce.parameter_fits(value, params[name]), f"{mode}: {path.stem}'s {name} = {value!r}"


def _run(out: Path, data: Path, only: list[str] | None = None, **extra: str) -> None:
    args = argparse.Namespace(
        smoke=True,
        rehearsal=False,
        data_root=str(data),
        output_dir=str(out),
        device="cpu",
        max_trials=0,
        set=[f"{k}={json.dumps(v)}" for k, v in extra.items()],
        only=only,
        kernel="python3",
        download=False,
        skip_preflight=True,
    )
    assert reproduce.run(args) == 0, f"reproduce --smoke failed; executed notebooks in {out / 'results' / 'executed'}"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `reproduce --smoke` of every notebook (later notebooks reuse the cache the first one fills)."""
    base = tmp_path_factory.mktemp("smoke")
    _run(base / "out", base / "data")
    return base


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_smoke_run_writes_every_output(smoke_run: Path, stem: str) -> None:
    for name in EXPECTED[stem]:
        f = smoke_run / "out" / name
        assert f.is_file() and f.stat().st_size > 0, f"{stem} did not write {name}"
    assert (smoke_run / "out" / "results" / "executed" / f"{stem}.ipynb").is_file()


@pytest.mark.notebooks
@pytest.mark.slow
def test_smoke_run_bliss_beats_chance_and_baselines_their_floors(smoke_run: Path) -> None:
    trials = pd.read_csv(smoke_run / "out" / "results" / "table1_trials.csv")
    mean = trials.groupby(["group", "method"])["auroc"].mean()
    # the stand-in's text and image towers agree, so a BLISS wired backwards would land well below 50
    assert mean["clip-based", "bliss"] > 75 and mean["clip-based", "biased-clip"] > 65
    for method in ("dn2", "gmm", "lunar"):
        assert mean["image-only", method] > 70, f"{method} fell to {mean['image-only', method]:.1f}"
    report = (smoke_run / "out" / "results" / "REPORT.md").read_text()
    assert "SMOKE RUN" in report and "table1" in report and "difference" in report
    table1 = pd.read_csv(smoke_run / "out" / "results" / "table1.csv")
    assert any("(reported)" in label for label in table1["label"]), "the copied rows must be marked"
    # AnomalyCLIP is zero-shot: its costly encoder embeds the test images only, never the training set
    zero_shot = smoke_run / "data" / "embeddings" / "tiny-anomalyclip"
    assert list(zero_shot.rglob("test-*.npz")) and not list(zero_shot.rglob("train-*.npz"))


@pytest.mark.notebooks
@pytest.mark.slow
def test_notebooks_run_from_a_copied_cache_without_models_or_data(
    smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_file: Path
) -> None:
    cache = tmp_path / "copied-embeddings"
    shutil.copytree(smoke_run / "data" / "embeddings", cache)
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(NO_MODELS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "hooks"))
    empty = tmp_path / "no-data"
    monkeypatch.setattr(reproduce, "make_generated_data", lambda root, sizes: root)  # nor may data be generated
    # what is under test is reading embeddings; the slow baseline fits are left to the first run. Without CIFAR-10
    # in DATASETS, 04's Fig. 4 and 05's timing and object-aware sections still load their CIFAR-10 sets
    # and a method defined outside the package reaches the kernels through $BLISS_PLUGINS (docs/extending.md)
    monkeypatch.setenv(methods.PLUGINS_VAR, str(plugin_file))
    light = {
        "IMAGE_BASELINES": ["dn2", "centroid"],
        "RELATED": ["agnostic-pair", "anomalyclip"],
        "SHOT_METHODS": ["bliss", "dn2"],
        "GMM_VARIANTS": {"one per class": {}},
        "DATASETS": ["cifar100", "tinyimagenet"],
    }
    _run(tmp_path / "out", empty, only=["01", "02", "03", "04", "05", "06"], CACHE_DIR=str(cache), **light)
    assert not empty.exists()
    ours = pd.read_csv(tmp_path / "out" / "results" / "table1_trials.csv")
    first = pd.read_csv(smoke_run / "out" / "results" / "table1_trials.csv")
    first = first[first["method"].isin(ours["method"]) & first["dataset"].isin(ours["dataset"])]
    assert set(ours["method"]) >= {"bliss", "biased-clip", "mcm", "dn2", "centroid", "agnostic-pair", "anomalyclip"}
    assert set(ours["dataset"]) == {"cifar100", "tinyimagenet"}
    ours = ours[ours["method"].isin(first["method"])]  # the plugin's rows are new
    key = ["group", "dataset", "setting", "trial", "method"]
    ours, first = (f.drop(columns="seconds").sort_values(key, ignore_index=True) for f in (ours, first))  # wall times
    pd.testing.assert_frame_equal(ours, first)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_notebook_names_itself_to_open_session(path: Path) -> None:
    # SMOKE = True on its own reads this notebook file's declared defaults: a copied cell naming another would lie
    assert f'open_session(globals(), \\"{path.stem}\\"' in path.read_text(encoding="utf-8")


def _edited(path: Path, **values: object) -> nbformat.NotebookNode:
    """``path`` with only its parameters cell edited, as a JupyterLab user would before Run All."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for name, value in values.items():
        line = next(s for s in cell.source.splitlines() if s.startswith(f"{name}:"))
        kind = line.split(":")[1].split("=")[0].strip()
        cell.source = cell.source.replace(line, f"{name}: {kind} = {value!r}  # edited")
    return nb


def _run_all(nb: nbformat.NotebookNode) -> None:
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()


@pytest.mark.notebooks
@pytest.mark.slow
def test_one_notebook_runs_in_smoke_mode_with_plain_papermill(smoke_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(ROOT / "notebooks" / "04_main_results.ipynb"),
        str(tmp_path / "04.ipynb"),
    ]
    given = ["-p", "SMOKE", "True", "-p", "DATA_ROOT", str(smoke_run / "data"), "-p", "OUTPUT_DIR", str(out)]
    subprocess.run([*command, *given, "--cwd", str(ROOT / "notebooks")], check=True, capture_output=True)
    # the same stand-ins, sizes and data as reproduce --smoke: the same numbers
    ours, first = (
        pd.read_csv(d / "results" / "table1_trials.csv").drop(columns="seconds") for d in (out, smoke_run / "out")
    )
    pd.testing.assert_frame_equal(ours, first)


@pytest.mark.notebooks
@pytest.mark.slow
def test_run_all_after_editing_only_the_parameters_cell(smoke_run: Path, tmp_path: Path) -> None:
    path = ROOT / "notebooks" / "02_similarity_distributions.ipynb"
    _run_all(_edited(path, SMOKE=True, DATA_ROOT=str(smoke_run / "data"), OUTPUT_DIR=str(tmp_path)))
    name = "results/paper_02_fig2_peaks.csv"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name), pd.read_csv(smoke_run / "out" / name))


@pytest.mark.notebooks
@pytest.mark.slow
def test_paper_mode_without_data_stops_with_a_short_message(tmp_path: Path) -> None:
    path = ROOT / "notebooks" / "02_similarity_distributions.ipynb"
    nb = _edited(path, DATA_ROOT=str(tmp_path / "no-data"), CACHE_DIR=str(tmp_path / "cache"))
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        _run_all(nb)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "NotebookStop"
    assert len(errors[0].traceback) == 1, "a library traceback instead of the message"
    assert str(tmp_path / "no-data") in errors[0].evalue and "SMOKE = True" in errors[0].evalue


def test_the_paper_run_leaves_out_the_your_data_notebooks_and_smoke_runs_them() -> None:
    stems = {mode: [p.stem for p in reproduce._selected(ROOT, None, mode)] for mode in ("paper", "rehearsal", "smoke")}
    assert stems["paper"] == stems["rehearsal"] == [p.stem for p in NOTEBOOKS if p.stem < "07"]
    assert stems["smoke"] == [p.stem for p in NOTEBOOKS]
    assert [p.stem for p in reproduce._selected(ROOT, ["07"], "paper")] == ["07_your_data"]


@pytest.mark.notebooks
@pytest.mark.slow
def test_your_data_scores_every_test_image_with_the_words_behind_it(smoke_run: Path) -> None:
    rows = pd.read_csv(smoke_run / "out" / "results" / "your_data_scores.csv")
    folder = smoke_run / "data" / "your_images"
    assert sorted(rows["path"]) == sorted(str(p) for p in (folder / "test").rglob("*.png"))
    normal = {d.name for d in (folder / "train").iterdir()}  # NORMAL_CLASSES empty: the classes with training images
    assert (rows["anomalous"] == ~rows["label"].isin(normal)).all() and rows["anomalous"].any()
    assert all(len(n.split("; ")) == 10 for n in rows["nearest_entries"])  # K = 10 entries each
    metrics = pd.read_csv(smoke_run / "out" / "results" / "your_data_metrics.csv").set_index("method")
    assert metrics.loc["bliss", "auroc"] > 75  # the stand-in's towers agree: BLISS must beat chance here too
