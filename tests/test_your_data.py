"""Your own data in the notebooks: 07_your_data on a user's folder with the user's own encoder (in a subprocess, as
papermill runs it), and 03-06 drawing their figures for an image folder with its settings in CUSTOM_SETTINGS. Apart
from test_notebooks.py so that the two files' notebook runs share the test processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_encoder_plugins import PLUGIN
from test_notebooks import EXPECTED, ROOT, _run

from bliss_utils.datasets.synthetic import make_fake_imagefolder
from bliss_utils.running import reproduce
from bliss_utils.scores import methods


def _your_folder(root: Path, labelled: bool) -> Path:
    """Three classes; tiger has no training images (the anomaly); unlabelled: test/ holds the images directly."""
    make_fake_imagefolder(root, ["apple", "rose", "tiger"], n_per_class=6)
    shutil.rmtree(root / "train" / "tiger")
    if not labelled:
        for p in sorted((root / "test").rglob("*.png")):
            p.rename(root / "test" / f"{p.parent.name}-{p.name}")
        for d in [d for d in (root / "test").iterdir() if d.is_dir()]:
            d.rmdir()
    return root


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "unlabelled"])
def test_your_data_runs_on_a_users_folder_with_the_users_own_encoder(tmp_path: Path, labelled: bool) -> None:
    folder, out = _your_folder(tmp_path / "photos", labelled), tmp_path / "out"
    (tmp_path / "my_encoders.py").write_text(PLUGIN)  # registered in the user's module, reached via $BLISS_PLUGINS
    env = {**os.environ, methods.PLUGINS_VAR: str(tmp_path / "my_encoders.py")}
    env.pop(reproduce.STAND_INS_VAR, None)
    given = {"DATASET": f"imagefolder:{folder}", "ENCODER": "my-projection", "CLASS_NAMES": {"apple": "green apple"}}
    given |= {"DICTIONARY_SIZE": 64, "METHODS": ["bliss", "dn2"], "N_QUANTILES": 3, "OUTPUT_DIR": str(out)}
    given |= {"CACHE_DIR": str(tmp_path / "cache")}
    yaml = [a for k, v in given.items() for a in ("-y", json.dumps({k: v}))]
    notebook, executed = ROOT / "notebooks" / "07_your_data.ipynb", str(tmp_path / "07.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(notebook), executed, *yaml], env=env, capture_output=True
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    rows = pd.read_csv(out / "results" / "your_data_scores.csv", keep_default_na=False)
    assert len(rows) == 18 and {"score_bliss", "score_dn2", "ic", "et", "nearest_entries"} <= set(rows.columns)
    assert set(rows["label"]) == ({"green apple", "rose", "tiger"} if labelled else {""})
    assert (out / "figures" / "your_data_gallery_bliss.png").is_file()
    assert (out / "results" / "your_data_metrics.csv").is_file() == labelled


@pytest.mark.notebooks
@pytest.mark.slow
def test_protocol_notebooks_draw_their_figures_for_your_image_folder(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    folder = f"imagefolder:{data / 'your_images'}"  # smoke mode generates 07's folder: apple, rose, wardrobe normal
    custom = {
        "your-1": {"dataset": folder, "trials": [["apple"], ["rose"]]},
        "your-2": {"dataset": folder, "trials": [["apple", "rose"], ["rose", "wardrobe"]]},
    }
    own = {"DATASETS": [folder], "DATASET": folder, "SETTINGS": list(custom), "CUSTOM_SETTINGS": custom}
    own |= {"FIG4_SETTING": "your-1", "EFFICIENCY_SETTING": "your-2", "OBJECT_AWARE_DATASETS": [folder]}
    # 6 training images a class: fewer neighbours for LUNAR, fewer caption clusters for SSD+CMLE
    own |= {"BASELINE_PARAMS": {"lunar": {"n_epochs": 5, "n_neighbours": 2}, "ssd-cmle": {"n_clusters": 2}}}
    _run(out, data, only=["03", "04", "05", "06"], **own)
    for stem in ("03_similarity_bias", "04_main_results", "05_ablations", "06_backbones"):
        for name in [n for n in EXPECTED[stem] if n.startswith("figures/")]:
            assert (out / name).is_file(), f"{stem} did not draw {name} for an image folder"
    results = out / "results"
    for table in ("fig3_errors_by_quantile", "table1_trials", "ablation_trials", "table3_trials"):
        frame = pd.read_csv(results / f"{table}.csv")
        assert set(frame["setting"]) == set(custom), table
    trials = pd.read_csv(results / "table1_trials.csv")
    bliss = trials[trials["method"] == "bliss"]
    assert len(bliss) == 4 and bliss["auroc"].mean() > 60  # the stand-in's towers agree: BLISS beats chance here too
