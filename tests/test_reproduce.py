"""`python -m bliss_utils reproduce`: the preflight names what is missing and where to put it, offline and fast."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bliss_utils.running import preflight, reproduce

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


REAL_NETWORK_REACHABLE = preflight.network_reachable


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> None:
    """A test says whether the machine is online (monkeypatching network_reachable); none may look for real."""

    def refuse(urls, timeout=preflight.NETWORK_TIMEOUT_S):
        raise AssertionError(f"a test tried the network ({urls}): monkeypatch preflight.network_reachable")

    monkeypatch.setattr(preflight, "network_reachable", refuse)


def fake_disk(monkeypatch, calls: list) -> None:
    """load_dataset and load_encoder that find nothing until asked to download it (recording each call)."""
    import bliss_utils.datasets.images as datasets_module
    import bliss_utils.encoders as encoders_module
    from bliss_utils.datasets.images import DatasetNotFoundError
    from bliss_utils.encoders import WeightsNotFoundError

    present = set()

    def load_dataset(name, split, root=None, download=False):
        calls.append(("data", name, download))
        present.update({name} if download else ())
        if name not in present:
            raise DatasetNotFoundError(f"{name} not found: extract it into {root}")

    def load_encoder(name, **kw):
        offline = os.environ.get(preflight.OFFLINE_VAR)
        calls.append(("weights", name, offline))
        present.update({name} if not offline else ())
        if name not in present:
            raise WeightsNotFoundError(f"weights for {name} not found.\nFetch: https://huggingface.co/x/{name}\nput it")

    monkeypatch.setattr(datasets_module, "load_dataset", load_dataset)
    for checks_or_fetches in ("describe_encoder", "load_encoder"):  # offline it checks, online it fetches
        monkeypatch.setattr(encoders_module, checks_or_fetches, load_encoder)


def test_preflight_reads_what_the_notebooks_need_and_downloads_only_when_asked(tmp_path, monkeypatch) -> None:
    from bliss_utils.encoders import anomalyclip_prompts

    calls = []
    fake_disk(monkeypatch, calls)
    monkeypatch.setattr(anomalyclip_prompts, "checkpoint_or_none", lambda weights=None: None)
    monkeypatch.setattr(
        anomalyclip_prompts, "download_checkpoint", lambda dest=None: calls.append(("anomalyclip", dest, 1))
    )
    monkeypatch.setattr(preflight, "network_reachable", lambda urls, timeout=3.0: True)
    paths = reproduce._selected(ROOT, None, "paper")
    params = [reproduce.declared_parameters(p) for p in paths]
    datasets, weights = (
        {"cifar10", "cifar100", "tinyimagenet"},
        {"clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"},
    )
    with pytest.raises(preflight.PreflightError) as err:  # nothing there: one round names all of it
        preflight.preflight(params, tmp_path, download=False, notebooks=[p.name for p in paths])
    assert all(f"dataset {d}:" in str(err.value) for d in datasets) and "missing datasets and weights" in str(err.value)
    assert all(f"weights of {w}:" in str(err.value) for w in weights)
    assert {c[1] for c in calls if c[0] == "data"} == datasets and {c[2] for c in calls if c[0] == "data"} == {False}
    assert {c[1] for c in calls if c[0] == "weights"} == weights
    assert {c[2] for c in calls if c[0] == "weights"} == {"1"}  # offline while checking: nothing downloads
    assert not any(c[0] == "anomalyclip" for c in calls)  # optional: only --download fetches it
    calls.clear()
    preflight.preflight(params, tmp_path, download=True)  # fetches what is missing, then all is there
    assert {c[1] for c in calls if c[0] == "data" and c[2]} == datasets
    assert {c[1] for c in calls if c[0] == "weights" and c[2] is None} == weights  # online only to download
    assert [c for c in calls if c[0] == "anomalyclip"] == [("anomalyclip", None, 1)]
    assert os.environ.get(preflight.OFFLINE_VAR) is None  # the offline switch is put back
    calls.clear()
    preflight.preflight(params, tmp_path, download=True)  # all there now: nothing more to download
    assert {c[2] for c in calls if c[0] == "data"} == {False} and {c[2] for c in calls if c[0] == "weights"} == {"1"}


def test_the_settings_a_notebook_names_bring_their_datasets(tmp_path, monkeypatch) -> None:
    params = [
        {
            "SETTINGS": ["cifar10-6", "mine-2"],
            "CUSTOM_SETTINGS": {"mine-2": {"dataset": "imagefolder:/x", "trials": [["a", "b"]]}},
        },
        {"FIG4_SETTING": "cifar100-20", "DATASETS": []},
        {"EFFICIENCY_SETTING": "tinyimagenet-20", "OBJECT_AWARE_DATASETS": ["cifar10"], "BACKBONE_DATASETS": []},
    ]
    needs = preflight._needs(params, ["03.ipynb", "04.ipynb", "05.ipynb"])
    assert needs.datasets == {
        "cifar10": "SETTINGS of 03.ipynb",
        "imagefolder:/x": "SETTINGS of 03.ipynb",
        "cifar100": "FIG4_SETTING of 04.ipynb",
        "tinyimagenet": "EFFICIENCY_SETTING of 05.ipynb",
    }
    assert needs.problems == [] and needs.encoders == []
    import bliss_utils.datasets.images as datasets_module

    loaded = []
    monkeypatch.setattr(datasets_module, "load_dataset", lambda name, split, **kw: loaded.append(name))
    preflight.preflight(params, tmp_path)
    assert set(loaded) == {"cifar10", "imagefolder:/x", "cifar100", "tinyimagenet"}


def test_a_setting_of_no_known_dataset_is_a_preflight_problem_naming_the_parameter(tmp_path, monkeypatch) -> None:
    import bliss_utils.datasets.images as datasets_module

    real = datasets_module.load_dataset  # refuses an unknown name before reading anything
    monkeypatch.setattr(
        datasets_module, "load_dataset", lambda name, split, **kw: real(name, split) if "11" in name else 0
    )
    params = [
        {"SETTINGS": ["cifar10-6", "mine-3"]},
        {"FIG4_SETTING": "mine-2", "CUSTOM_SETTINGS": {"mine-2": {"dataset": "imagefolder:/x"}}},  # no trials
        {"DATASETS": ["cifar11"]},
    ]
    with pytest.raises(preflight.PreflightError) as err:
        preflight.preflight(
            params, tmp_path, notebooks=["03_similarity_bias.ipynb", "04_main_results.ipynb", "05.ipynb"]
        )
    text = str(err.value)
    assert "SETTINGS of 03_similarity_bias.ipynb names setting 'mine-3': unknown setting 'mine-3'" in text
    assert "FIG4_SETTING of 04_main_results.ipynb names setting 'mine-2': CUSTOM_SETTINGS['mine-2'] must be" in text
    assert "DATASETS of 05.ipynb names dataset 'cifar11': unknown dataset 'cifar11'" in text
    assert "no known dataset or setting" in text and "missing" not in text.splitlines()[0]


def test_a_failed_download_says_what_the_plain_preflight_says_and_the_url(tmp_path, monkeypatch) -> None:
    import urllib.error

    import bliss_utils.datasets.images as datasets_module
    import bliss_utils.encoders as encoders_module
    from bliss_utils.encoders import WeightsNotFoundError

    real_load_dataset = datasets_module.load_dataset

    def offline(name, split, root=None, download=False):
        if download:  # the plain check runs first, without download
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return real_load_dataset(name, split, root=root)

    def no_weights(name, **kw):
        if not os.environ.get(preflight.OFFLINE_VAR):
            raise WeightsNotFoundError(f"weights for {name} not found: download failed (no network).\nFetch: ...")
        raise WeightsNotFoundError(f"weights for {name} not found.\nFetch: https://dl.example.org/{name}.pt\nput it")

    monkeypatch.setattr(datasets_module, "load_dataset", offline)
    monkeypatch.setattr(encoders_module, "load_encoder", no_weights)
    monkeypatch.setattr(encoders_module, "describe_encoder", no_weights)
    params = [{"DATASETS": ["cifar10"], "ENCODER": "slip-vit-b16"}]
    with pytest.raises(preflight.PreflightError) as plain:
        preflight.preflight(params, tmp_path, download=False)
    monkeypatch.setattr(preflight, "network_reachable", lambda urls, timeout=3.0: True)  # online, yet it fails
    with pytest.raises(preflight.PreflightError) as err:
        preflight.preflight(params, tmp_path, download=True)
    text, url = str(err.value), datasets_module.CIFAR_FILES["cifar10"].url
    plain_lines = [line for line in str(plain.value).splitlines() if line.startswith("- ")]
    assert len(plain_lines) == 2 and all(line in text.splitlines() for line in plain_lines)
    assert f"the download of {url} failed: <urlopen error [Errno -3] Temporary failure" in text
    assert (
        "the download of https://dl.example.org/slip-vit-b16.pt failed: weights for slip-vit-b16 not found: download "
        "failed (no network)." in text
    )
    assert str(tmp_path) in text and "--smoke" in text and "offline" not in text


def test_download_without_network_says_offline_and_tries_nothing(tmp_path, monkeypatch) -> None:
    from bliss_utils.encoders import anomalyclip_prompts

    calls, asked = [], []
    fake_disk(monkeypatch, calls)
    monkeypatch.setattr(anomalyclip_prompts, "checkpoint_or_none", lambda weights=None: None)
    monkeypatch.setattr(anomalyclip_prompts, "download_checkpoint", lambda dest=None: calls.append(("anomalyclip",)))
    monkeypatch.setattr(preflight, "network_reachable", lambda urls, timeout=3.0: asked.append(urls) or False)
    params = [{"DATASETS": ["cifar10", "imagefolder:/nowhere"], "ENCODER": "blip", "RELATED": ["anomalyclip"]}]
    with pytest.raises(preflight.PreflightError) as err:
        preflight.preflight(params, tmp_path, download=True)
    text = str(err.value)
    assert not [
        c for c in calls if c[0] == "anomalyclip" or (c[0] == "data" and c[2]) or (c[0] == "weights" and not c[2])
    ]
    assert len(asked) == 1 and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in asked[0]
    for url in asked[0]:
        assert f"download: {url} (not tried: offline)" in text
    assert "- dataset cifar10: cifar10 not found" in text and "- dataset imagefolder:/nowhere:" in text
    assert "- weights of blip: weights for blip not found." in text and "AnomalyCLIP's prompt checkpoint" in text
    assert text.count("appears to be offline") == 1 and "www.cs.toronto.edu, huggingface.co, github.com" in text


def test_network_reachable_is_quick_and_true_when_any_host_answers(monkeypatch) -> None:
    import socket
    import time

    class Connection:
        def close(self) -> None:
            pass

    def connect(endpoint, timeout=None):
        if endpoint[0] == "hangs.example":
            time.sleep(5)  # a DNS lookup that never comes back
        if endpoint[0] != "up.example":
            raise OSError("no route")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert REAL_NETWORK_REACHABLE(["https://up.example/x", "https://hangs.example/y"], timeout=2.0)
    started = time.monotonic()
    assert not REAL_NETWORK_REACHABLE(["https://down.example/x", "https://hangs.example/y"], timeout=0.3)
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    assert not REAL_NETWORK_REACHABLE(["http://down.example/x"])  # refused at once: no waiting out the timeout
    assert time.monotonic() - started < 1.0
    assert preflight._endpoint("http://cs231n.stanford.edu/t.zip") == ("cs231n.stanford.edu", 80)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert preflight._endpoint("https://huggingface.co/x") == ("proxy.example", 3128)  # downloads go through it


@pytest.mark.slow
def test_reproduce_stops_at_once_without_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BLISS_WEIGHTS_DIR", "BLISS_OFFLINE")}
    env.update(
        BLISS_WEIGHTS_DIR=str(tmp_path / "no-weights"), TORCH_HOME=str(tmp_path / "torch"), HF_HOME=str(tmp_path / "hf")
    )
    proc = run_reproduce("--data-root", str(tmp_path / "none"), "--output-dir", str(tmp_path / "o"), env=env)
    assert proc.returncode == 1
    assert "missing datasets and weights" in proc.stderr and "--smoke" in proc.stderr  # one round names both
    assert all(f"dataset {d}:" in proc.stderr for d in ("cifar10", "cifar100", "tinyimagenet"))
    assert "weights of clip-vit-b16" in proc.stderr and "Retrying" not in proc.stderr
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
    monkeypatch.setattr(encoders_module, "describe_encoder", lambda name, **kw: None)
    monkeypatch.setattr(anomalyclip_prompts, "checkpoint_or_none", lambda weights=None: None)
    monkeypatch.setattr(anomalyclip_prompts, "download_checkpoint", lambda dest=None: fetched.append(dest))
    monkeypatch.setattr(preflight, "network_reachable", lambda urls, timeout=3.0: True)
    preflight.preflight([{"RELATED": ["ssd"]}], tmp_path, download=True)
    assert fetched == []
    preflight.preflight([{"RELATED": ["anomalyclip"]}], tmp_path, download=False)
    assert fetched == []  # offline: the notebook reports the row as not run instead
    preflight.preflight([{"RELATED": ["anomalyclip"]}], tmp_path, download=True)
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
    from bliss_utils.encoders import toy
    from bliss_utils.encoders.registry import backbone

    settings = reproduce.mode_settings("rehearsal", ROOT)
    stand_ins = settings["all"]["PAPER_BACKBONE"]
    named = {settings["all"]["ENCODER"], settings["all"]["IMAGE_ENCODER"], *settings["all"]["BACKBONES"]}
    assert named == set(stand_ins)
    assert set(stand_ins.values()) == {"clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k"}
    for stand_in, real in stand_ins.items():
        ours, theirs = backbone(stand_in), backbone(real)
        assert (ours.dim, ours.has_text) == (theirs.dim, theirs.has_text), f"{stand_in} does not match {real}"
        assert ours.builder is toy.load_toy, f"{stand_in} must be a cheap toy stand-in"
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


def test_the_weights_check_builds_no_model(tmp_path, monkeypatch) -> None:
    import bliss_utils.encoders as encoders_module

    monkeypatch.setattr(encoders_module, "load_encoder", lambda *a, **k: pytest.fail("the preflight built a model"))
    preflight.preflight([{"ENCODER": "tiny-clip", "BACKBONES": ["tiny-slip", "toy-blip"]}], tmp_path)  # all there
