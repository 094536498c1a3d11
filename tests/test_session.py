"""open_session: the notebooks' shared parameters resolved once, with the errors a notebook author needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bliss_utils.running import reproduce
from bliss_utils.running.session import apply_smoke, open_session

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOK = {
    "DATA_ROOT": "",
    "CACHE_DIR": "/tmp/cache",
    "OUTPUT_DIR": "",
    "DEVICE": "",
    "SMOKE": True,
    "PAPER_BACKBONE": {"tiny-clip": "clip-vit-b16"},
    "DICTIONARY": "imagenet",
    "DICTIONARY_SIZE": 0,
    "TEMPLATE": "This is a photo of a {}",
}


@pytest.fixture
def injected(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a kernel `reproduce --smoke` started: the smoke values are already in the namespace."""
    monkeypatch.setenv(reproduce.STAND_INS_VAR, "smoke")


def test_shared_parameters_resolve_once(tmp_path: Path, injected: None) -> None:
    session = open_session({**NOTEBOOK, "OUTPUT_DIR": str(tmp_path)}, style=False)
    assert (session.figures, session.results) == (tmp_path / "figures", tmp_path / "results")
    assert session.where == {"root": None, "cache_dir": "/tmp/cache", "device": None}  # "": the default
    # the notebook's own text settings, DICTIONARY_SIZE 0 meaning the whole dictionary; NAMES was not declared
    assert session.text == {"dictionary": "imagenet", "dictionary_size": None, "template": "This is a photo of a {}"}
    assert session.backbone("tiny-clip") == "clip-vit-b16" and session.backbone("vit") == "vit"
    assert session.label("tiny-clip") == "clip-vit-b16 (stand-in: tiny-clip)" and session.label("vit") == "vit"


def test_a_missing_or_mistyped_shared_parameter_is_named(injected: None) -> None:
    missing = {k: v for k, v in NOTEBOOK.items() if k != "DEVICE"}
    with pytest.raises(NameError, match="does not define DEVICE"):
        open_session(missing, style=False)
    with pytest.raises(TypeError, match="SMOKE must be a bool; got 'yes'"):
        open_session({**NOTEBOOK, "SMOKE": "yes"}, style=False)
    with pytest.raises(TypeError, match="DATA_ROOT must be a str"):
        open_session({**NOTEBOOK, "DATA_ROOT": None}, style=False)


def _declared(stem: str) -> dict:
    return reproduce.declared_parameters(ROOT / "notebooks" / f"{stem}.ipynb")


def test_smoke_on_its_own_fills_the_declared_defaults_and_explicit_values_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(reproduce.STAND_INS_VAR, raising=False)
    stem, smoke = "05_ablations", reproduce.mode_settings("smoke", ROOT)
    namespace = {**_declared(stem), "SMOKE": True, "DATA_ROOT": str(tmp_path / "data"), "KS": [7]}  # KS: given
    session = open_session(namespace, stem, style=False)
    assert namespace["KS"] == [7] and namespace["LAMS"] == smoke[stem]["LAMS"]  # the notebook's own block
    assert namespace["ENCODER"] == smoke["all"]["ENCODER"] and session.backbone("toy-clip") == "clip-vit-b16"
    assert namespace["CACHE_DIR"] == str(tmp_path / "data" / "embeddings")
    marker = json.loads((tmp_path / "data" / reproduce.GENERATED_MARKER).read_text())
    assert marker["cifar10"] == smoke["data"]["cifar10"]  # generated on first use, with smoke.json's sizes
    assert apply_smoke({**_declared(stem), "SMOKE": True, "DATA_ROOT": str(tmp_path / "data")}, stem)  # reused


def test_smoke_leaves_the_namespace_alone_when_reproduce_injected_it(tmp_path: Path, injected: None) -> None:
    namespace = {**_declared("02_similarity_distributions"), "SMOKE": True, "OUTPUT_DIR": str(tmp_path)}
    before = dict(namespace)
    open_session(namespace, "02_similarity_distributions", style=False)
    assert namespace == before


def test_smoke_on_its_own_needs_the_notebook_name_and_refuses_a_folder_of_real_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(reproduce.STAND_INS_VAR, raising=False)
    with pytest.raises(ValueError, match="needs open_session"):
        open_session(dict(NOTEBOOK), style=False)
    with pytest.raises(FileNotFoundError, match="no notebook"):
        apply_smoke(dict(NOTEBOOK), "99_missing")
    (tmp_path / "cifar-10-batches-py").mkdir()  # someone's real CIFAR-10
    namespace = {**_declared("02_similarity_distributions"), "SMOKE": True, "DATA_ROOT": str(tmp_path)}
    with pytest.raises(FileExistsError, match="did not write"):
        open_session(namespace, "02_similarity_distributions", style=False)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-batches-py"]


def test_a_parameter_of_another_type_than_declared_is_refused_in_one_line(tmp_path: Path, injected: None) -> None:
    from bliss_utils.running.session import ParameterError

    stem = "04_main_results"
    for name, value in (("DATASETS", "cifar10"), ("LAM", "high"), ("MAX_TRIALS", 1.5), ("SMOKE", 1)):
        with pytest.raises(ParameterError, match=f"^{name} = {value!r} is a {type(value).__name__}, but {stem}"):
            open_session({**_declared(stem), name: value}, stem, style=False)
    err = pytest.raises(ParameterError, open_session, {**_declared(stem), "DATASETS": "cifar10"}, stem, style=False)
    assert '-y \'DATASETS: ["cifar10", "cifar100", "tinyimagenet"]\'' in str(err.value)
    assert err.value._render_traceback_() == [f"ParameterError: {err.value}"]  # IPython shows the message alone
    open_session({**_declared(stem), "LAM": 1, "OUTPUT_DIR": str(tmp_path)}, stem, style=False)  # int for float


def test_unreadable_images_stop_a_notebook_with_their_list_alone() -> None:
    from bliss_utils.datasets.files import BadImageError
    from bliss_utils.running.session import NotebookStop, _stop_if_missing

    def load():
        raise BadImageError("mine/train: 1 image files cannot be read; nothing was embedded:\n  /x/a.png: truncated")

    for smoke in (False, True):
        with pytest.raises(NotebookStop, match=r"^mine/train: 1 image files cannot be read.*\n  /x/a.png") as err:
            _stop_if_missing(load, smoke)
        assert err.value._render_traceback_() == [f"NotebookStop: {err.value}"]
