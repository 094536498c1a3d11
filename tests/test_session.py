"""open_session: the notebooks' shared parameters resolved once, with the errors a notebook author needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bliss_utils.running.session import open_session

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


def test_shared_parameters_resolve_once(tmp_path: Path) -> None:
    session = open_session({**NOTEBOOK, "OUTPUT_DIR": str(tmp_path)}, style=False)
    assert (session.figures, session.results) == (tmp_path / "figures", tmp_path / "results")
    assert session.where == {"root": None, "cache_dir": "/tmp/cache", "device": None}  # "": the default
    # the notebook's own text settings, DICTIONARY_SIZE 0 meaning the whole dictionary; NAMES was not declared
    assert session.text == {"dictionary": "imagenet", "dictionary_size": None, "template": "This is a photo of a {}"}
    assert session.backbone("tiny-clip") == "clip-vit-b16" and session.backbone("vit") == "vit"
    assert session.label("tiny-clip") == "clip-vit-b16 (stand-in: tiny-clip)" and session.label("vit") == "vit"


def test_a_missing_or_mistyped_shared_parameter_is_named() -> None:
    missing = {k: v for k, v in NOTEBOOK.items() if k != "DEVICE"}
    with pytest.raises(NameError, match="does not define DEVICE"):
        open_session(missing, style=False)
    with pytest.raises(TypeError, match="SMOKE must be a bool; got 'yes'"):
        open_session({**NOTEBOOK, "SMOKE": "yes"}, style=False)
    with pytest.raises(TypeError, match="DATA_ROOT must be a str"):
        open_session({**NOTEBOOK, "DATA_ROOT": None}, style=False)
