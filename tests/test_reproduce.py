"""`python -m bliss_utils reproduce`: the preflight names what is missing and where to put it, offline and fast."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bliss_utils.running import reproduce

ROOT = Path(__file__).resolve().parents[1]


def run_reproduce(*extra: str, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    """`python -m bliss_utils reproduce` in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "bliss_utils", "reproduce", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_preflight_reads_what_the_notebooks_need_and_downloads_only_when_asked(tmp_path, monkeypatch) -> None:
    import bliss_utils.datasets.images as datasets_module
    import bliss_utils.encoders as encoders_module

    calls = []
    monkeypatch.setattr(
        datasets_module,
        "load_dataset",
        lambda name, split, root=None, download=False: calls.append(("data", name, download)),
    )
    monkeypatch.setattr(
        encoders_module,
        "load_encoder",
        lambda name, **kw: calls.append(("weights", name, os.environ.get(reproduce.OFFLINE_VAR))),
    )
    from bliss_utils.encoders import anomalyclip_prompts

    monkeypatch.setattr(
        anomalyclip_prompts, "download_checkpoint", lambda dest=None: calls.append(("anomalyclip", dest, 1))
    )
    params = [reproduce.declared_parameters(p) for p in reproduce._selected(ROOT, None, "paper")]
    for download in (False, True):
        calls.clear()
        reproduce.preflight(params, tmp_path, download=download)
        assert {c[1] for c in calls if c[0] == "data"} == {"cifar10", "cifar100", "tinyimagenet"}
        assert {c[2] for c in calls if c[0] == "data"} == {download}
        assert {c[2] for c in calls if c[0] == "weights"} == ({None} if download else {"1"})  # offline while checking
        assert {c[1] for c in calls if c[0] == "weights"} == {"clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"}


def test_a_failed_download_is_one_clear_message(tmp_path, monkeypatch) -> None:
    import urllib.error

    import bliss_utils.datasets.images as datasets_module

    def offline(name, split, root=None, download=False):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets_module, "load_dataset", offline)
    with pytest.raises(reproduce.PreflightError) as err:
        reproduce.preflight([{"DATASETS": ["cifar10"]}], tmp_path, download=True)
    text = str(err.value)
    assert "cifar10" in text and "download failed" in text and "--smoke" in text and str(tmp_path) in text


@pytest.mark.slow
def test_reproduce_stops_at_once_without_data(tmp_path: Path) -> None:
    proc = run_reproduce("--data-root", str(tmp_path / "none"), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "missing datasets" in proc.stderr and "cifar10" in proc.stderr and "--smoke" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "results" / "executed").exists(), "no notebook may run when the preflight fails"


@pytest.mark.slow
def test_reproduce_names_missing_weights_without_downloading(tmp_path: Path) -> None:
    from bliss_utils.datasets import synthetic

    data = tmp_path / "data"
    synthetic.make_fake_cifar(data, "cifar10", 1, 1)
    synthetic.make_fake_cifar(data, "cifar100", 1, 1)
    synthetic.make_fake_tinyimagenet(data, 1, 1)
    env = {k: v for k, v in os.environ.items() if k not in ("BLISS_WEIGHTS_DIR", "BLISS_OFFLINE")}
    env.update(
        BLISS_WEIGHTS_DIR=str(tmp_path / "no-weights"), TORCH_HOME=str(tmp_path / "torch"), HF_HOME=str(tmp_path / "hf")
    )
    proc = run_reproduce("--data-root", str(data), "--output-dir", str(tmp_path / "o"), env=env)
    assert proc.returncode == 1
    for name in ("clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"):
        assert f"weights of {name}" in proc.stderr
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    assert not (tmp_path / "o" / "results" / "executed").exists()


@pytest.mark.slow
def test_a_failing_notebook_is_reported_in_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    bar = "from bliss_utils._progress import progress\nlist(progress(range(3), desc='a bar in the terminal'))"
    nb = new_notebook(
        cells=[
            new_code_cell("SMOKE: bool = False  # mode", metadata={"tags": ["parameters"]}),
            new_code_cell(bar),
            new_code_cell("raise RuntimeError('boom in cell three')"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "00_fails.ipynb")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the kernel's bar is part of what is checked
    monkeypatch.setattr(reproduce, "notebook_paths", lambda root=None: [tmp_path / "notebooks" / "00_fails.ipynb"])
    args = argparse.Namespace(
        smoke=False,
        rehearsal=False,
        data_root="",
        output_dir=str(tmp_path / "o"),
        device="",
        max_trials=0,
        set=[],
        only=None,
        kernel="python3",
        download=False,
        skip_preflight=True,
    )
    monkeypatch.setenv("BLISS_PROGRESS", "text")  # what run() sets for its kernels; monkeypatch unsets it afterwards
    assert reproduce.run(args) == 1
    err = capfd.readouterr().err
    assert "[1/1] 00_fails.ipynb ..." in err and "a bar in the terminal: 100%" in err  # the kernel's text bar, live
    assert "00_fails.ipynb failed in cell" in err and "RuntimeError: boom in cell three" in err
    assert "Traceback" not in err and (tmp_path / "o" / "results" / "executed" / "00_fails.ipynb").is_file()
    assert (
        not (tmp_path / "o" / "results" / "run_times.csv").is_file()
        or "00_fails" not in (tmp_path / "o" / "results" / "run_times.csv").read_text()
    )


def test_set_overrides_are_json_and_refuse_bad_syntax(tmp_path) -> None:
    args = argparse.Namespace(
        smoke=False,
        data_root="",
        output_dir="",
        device="",
        max_trials=3,
        set=["LAM=0.75", 'DATASETS=["cifar10"]', "ENCODER=blip"],
    )
    out = reproduce._overrides(args)
    assert out == {"LAM": 0.75, "DATASETS": ["cifar10"], "ENCODER": "blip", "MAX_TRIALS": 3}
    args.set = ["LAM"]
    with pytest.raises(ValueError, match="NAME=VALUE"):
        reproduce._overrides(args)


def test_download_fetches_the_anomalyclip_checkpoint_only_when_its_row_is_asked_for(tmp_path, monkeypatch) -> None:
    import bliss_utils.encoders as encoders_module
    from bliss_utils.encoders import anomalyclip_prompts

    fetched = []
    monkeypatch.setattr(encoders_module, "load_encoder", lambda name, **kw: None)
    monkeypatch.setattr(anomalyclip_prompts, "checkpoint_or_none", lambda weights=None: None)
    monkeypatch.setattr(anomalyclip_prompts, "download_checkpoint", lambda dest=None: fetched.append(dest))
    reproduce.preflight([{"RELATED": ["ssd"]}], tmp_path, download=True)
    assert fetched == []
    reproduce.preflight([{"RELATED": ["anomalyclip"]}], tmp_path, download=False)
    assert fetched == []  # offline: the notebook reports the row as not run instead
    reproduce.preflight([{"RELATED": ["anomalyclip"]}], tmp_path, download=True)
    assert fetched == [None]


def test_smoke_and_rehearsal_exclude_each_other_on_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    reproduce.register(parser.add_subparsers())
    assert parser.parse_args(["reproduce", "--rehearsal"]).rehearsal
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "--smoke", "--rehearsal"])


def test_rehearsal_generates_the_real_datasets_sizes() -> None:
    from bliss_utils.datasets.images import PER_CLASS, class_names

    data = reproduce.mode_settings("rehearsal", ROOT)["data"]
    assert {name: tuple(data[name]) for name in PER_CLASS} == PER_CLASS
    totals = {name: [n * len(class_names(name)) for n in PER_CLASS[name]] for name in PER_CLASS}
    assert totals == {"cifar10": [50000, 10000], "cifar100": [50000, 10000], "tinyimagenet": [100000, 10000]}
    assert set(data) - {"seed"} == set(PER_CLASS)


def test_rehearsal_stand_ins_have_the_real_backbones_dimensions_and_nothing_is_shrunk() -> None:
    from bliss_utils.encoders.registry import backbone

    settings = reproduce.mode_settings("rehearsal", ROOT)
    stand_ins = settings["all"]["PAPER_BACKBONE"]
    named = {settings["all"]["ENCODER"], settings["all"]["IMAGE_ENCODER"], *settings["all"]["BACKBONES"]}
    assert named == set(stand_ins)
    assert set(stand_ins.values()) == {"clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"}
    for stand_in, real in stand_ins.items():
        ours, theirs = backbone(stand_in), backbone(real)
        assert (ours.dim, ours.has_text) == (theirs.dim, theirs.has_text), f"{stand_in} does not match {real}"
        assert ours.builder == "toy:load_toy", f"{stand_in} must be a cheap toy stand-in"
    # the paper's settings: nothing that cuts trials, the dictionary or a grid is injected
    injected = set().union(*(v for k, v in settings.items() if k not in ("_about", "data")))
    assert injected <= {
        "SMOKE",
        "ENCODER",
        "BACKBONES",
        "IMAGE_ENCODER",
        "PAPER_BACKBONE",
        "PREPROCESS",
        "ANOMALYCLIP_ENCODER",
    }


def test_run_times_merge_by_notebook_and_drop_a_failed_ones_row(tmp_path: Path) -> None:
    import pandas as pd

    reproduce.record_run_time(tmp_path, "04_main_results", 812.04, 5.3, "rehearsal")
    reproduce.record_run_time(tmp_path, "00_embeddings", 20.0, 1.234, "rehearsal")
    reproduce.record_run_time(tmp_path, "04_main_results", 700.0, 5.0, "smoke")  # an --only run replaces its own row
    rows = pd.read_csv(tmp_path / "run_times.csv")
    assert rows.to_dict("records") == [
        {"notebook": "00_embeddings", "seconds": 20.0, "peak_rss_gib": 1.23, "mode": "rehearsal"},
        {"notebook": "04_main_results", "seconds": 700.0, "peak_rss_gib": 5.0, "mode": "smoke"},
    ]
    reproduce.record_run_time(tmp_path, "00_embeddings", None, float("nan"), "paper")
    assert pd.read_csv(tmp_path / "run_times.csv")["notebook"].tolist() == ["04_main_results"]


@pytest.mark.slow
def test_the_notebook_runner_measures_its_own_kernel(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    # the kernel holds ~300 MiB at its peak; the runner itself (papermill) stays well below that
    nb = new_notebook(
        cells=[
            new_code_cell("N: int = 1", metadata={"tags": ["parameters"]}),
            new_code_cell("import numpy as np\nx = np.ones(N * 2**25 * 9 // 8)\ndel x"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "big.ipynb")
    small = reproduce.run_notebook(tmp_path / "big.ipynb", tmp_path / "a.ipynb", {"N": 0}, "python3", ROOT)
    big = reproduce.run_notebook(tmp_path / "big.ipynb", tmp_path / "b.ipynb", {"N": 1}, "python3", ROOT)
    assert big["peak_rss_gib"] - small["peak_rss_gib"] > 0.25, (small, big)
    # a second small run is not lifted by the big one before it: each run is measured alone
    again = reproduce.run_notebook(tmp_path / "big.ipynb", tmp_path / "c.ipynb", {"N": 0}, "python3", ROOT)
    assert again["peak_rss_gib"] < big["peak_rss_gib"] - 0.25


def test_a_set_name_no_selected_notebook_declares_is_refused() -> None:
    paths = reproduce.notebook_paths(ROOT)
    declared = {p: reproduce.declared_parameters(p) for p in paths}
    with pytest.raises(ValueError, match=r"no selected notebook \(00_embeddings.ipynb.*\) declares LAMBDA; their para"):
        reproduce._injections(declared, {}, {"LAMBDA": 0.75}, ["LAMBDA"])
    given = {"LAM": 1, "NUM_WORKERS": 4}  # an int may stand for a float
    inject = reproduce._injections(declared, {}, given, list(given))
    assert {p.stem for p in paths if "NUM_WORKERS" in inject[p]} == {"00_embeddings"}  # only where declared
    assert all(inject[p].get("LAM") == 1 for p in paths if "LAM" in declared[p])


def test_a_set_value_of_the_wrong_type_is_refused() -> None:
    declared = {"04_main_results.ipynb": {"LAM": 0.5, "SMOKE": False, "DATASETS": ["cifar10"]}}
    for name, value, kind in (("LAM", "high", "str"), ("SMOKE", "True", "str"), ("DATASETS", "cifar10", "str")):
        with pytest.raises(ValueError, match=rf"{name}=.* is a {kind}, but 04_main_results.ipynb declares {name}"):
            reproduce.check_overrides(declared, {name: value})
    with pytest.raises(ValueError, match="declares LAM as a float"):
        reproduce.check_overrides(declared, {"LAM": True})  # a bool is not a number here
    reproduce.check_overrides(declared, {"LAM": 2, "SMOKE": True, "DATASETS": ["cifar100"]})
