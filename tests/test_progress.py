"""Progress bars: one helper honouring tqdm's own settings; bars never change a result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bliss_utils import _progress
from bliss_utils.evaluation.grid import EmbeddingSet, evaluate_grid

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json
from bliss_utils._progress import progress
bar = progress(range(3), desc="probe")
print(json.dumps({"items": list(bar), "disable": bar.disable, "mininterval": getattr(bar, "mininterval", None)}))
"""


def probe(**env: str) -> dict:
    """The bar a fresh process makes (tqdm reads its TQDM_* variables when it is imported)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TQDM_", _progress.MODE_VAR))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def test_tqdm_environment_variables_win_over_the_helper_defaults() -> None:
    assert probe(TQDM_DISABLE="1") == {"items": [0, 1, 2], "disable": True, "mininterval": None}
    assert probe(BLISS_PROGRESS="text", TQDM_MININTERVAL="2")["mininterval"] == 2.0
    assert probe(BLISS_PROGRESS="text")["mininterval"] == _progress.TEXT_MININTERVAL


def test_text_mode_is_a_plain_bar_and_inner_bars_share_its_line(monkeypatch, capsys) -> None:
    from tqdm.std import tqdm

    if os.environ.get("TQDM_DISABLE"):  # tqdm read it when imported: no bar in this process (probe() covers it)
        pytest.skip("TQDM_DISABLE is set: tqdm draws no bar in this process")
    monkeypatch.setenv(_progress.MODE_VAR, "text")
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    with _progress.progress(range(2), desc="outer") as outer:
        assert type(outer) is tqdm and outer.mininterval == _progress.TEXT_MININTERVAL
        for leave in outer:
            assert list(_progress.progress(range(3), desc="inner", leave=bool(leave))) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "outer: 100%" in err and "inner: 100%" in err
    assert "\x1b[" not in err  # no cursor moves, which an executed notebook would keep as text


def test_disable_and_bad_mode(monkeypatch) -> None:
    monkeypatch.delenv(_progress.MODE_VAR, raising=False)
    bar = _progress.progress(range(4), disable=True)
    assert bar.disable and list(bar) == [0, 1, 2, 3]
    monkeypatch.setenv(_progress.MODE_VAR, "widgets")
    with pytest.raises(ValueError, match="BLISS_PROGRESS"):
        _progress.progress(range(1))


def test_evaluate_grid_is_the_same_with_and_without_bars(monkeypatch) -> None:
    monkeypatch.setenv(_progress.MODE_VAR, "text")
    rng = np.random.default_rng(1)
    d, labels = 8, np.repeat(np.arange(3), 20)
    centres = rng.normal(size=(3, d))

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    data = EmbeddingSet(
        train=unit(centres[labels] + rng.normal(size=(60, d))),
        train_labels=labels,
        test=unit(centres[labels] + rng.normal(size=(60, d))),
        test_labels=labels,
        class_texts=unit(centres),
        dictionary=unit(rng.normal(size=(20, d))),
        dataset="toy",
    )
    splits = {"toy": [[0], [1, 2]]}  # two trials: a bar shows
    params = {"lunar": {"n_epochs": 5, "n_neighbours": 3}, "gmm": {"max_iter": 3}}
    kwargs = {"methods": ("bliss", "gmm", "lunar", "ssd"), "ks": (3,), "baseline_params": params}
    with_bars = evaluate_grid(data, splits, **kwargs)
    without = evaluate_grid(data, splits, progress=False, **kwargs)
    assert len(with_bars) == 2 * 4
    assert with_bars.drop(columns="seconds").equals(without.drop(columns="seconds"))  # wall times differ


def test_text_embeddings_in_batches_equal_one_call(fake_encoder, tmp_path, monkeypatch) -> None:
    from bliss_utils.datasets.prompts import make_prompts
    from bliss_utils.embeddings import text_embeddings

    monkeypatch.setenv(_progress.MODE_VAR, "text")
    texts, templates = [f"thing {i}" for i in range(7)], ["a photo of a {}.", "a drawing of a {}."]
    got = text_embeddings(fake_encoder, texts, templates, cache_dir=tmp_path, batch_size=3)
    assert fake_encoder.text_calls == 2 * 3  # one call per batch, so the bar moves
    whole = sum(fake_encoder.encode_texts(make_prompts(texts, t)).astype(np.float64) for t in templates)
    np.testing.assert_allclose(got, whole / np.linalg.norm(whole, axis=1, keepdims=True), rtol=0, atol=1e-6)
