"""The method table: a user's method, defined outside the package, runs through evaluate_grid in another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bliss_utils import plugins
from bliss_utils.scores import methods

# run in a fresh interpreter: the plugin reaches it through $BLISS_PLUGINS only
CHILD = """
import json, sys
import numpy as np
from bliss_utils import evaluate_grid, method_names
from bliss_utils.evaluation.grid import EmbeddingSet
from bliss_utils.evaluation.metrics import auroc

rng = np.random.default_rng(0)
centres = rng.normal(size=(4, 8))
train_labels, test_labels = np.repeat(np.arange(4), 20), np.repeat(np.arange(4), 10)
data = EmbeddingSet(train=centres[train_labels] + rng.normal(size=(80, 8)), train_labels=train_labels,
                    test=centres[test_labels] + rng.normal(size=(40, 8)), test_labels=test_labels,
                    class_texts=centres, dictionary=rng.normal(size=(12, 8)))
splits = {"toy-2": [[0, 1], [2, 3]]}
frame = evaluate_grid(data, splits, methods=["bliss", "centroid"], ks=[3], progress=False)
# the same score written out here: 1 - max cosine to the normal classes' mean (unit) training image
unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
expected = []
for normal in splits["toy-2"]:
    cents = np.stack([unit(data.train)[train_labels == c].mean(axis=0) for c in normal])
    scores = 1 - (unit(data.test) @ cents.T).max(axis=1)
    expected.append(100 * auroc(scores, ~np.isin(test_labels, normal)))
rows = frame[frame["method"] == "centroid"]
print(json.dumps({"names": method_names(), "image_only": method_names(inputs=("images",)),
                  "methods": frame["method"].tolist(), "auroc": rows["auroc"].tolist(), "expected": expected}))
"""


@pytest.mark.slow
def test_a_plugin_module_reaches_evaluate_grid_in_another_process(tmp_path: Path, plugin_file: Path) -> None:
    env = {**os.environ, methods.PLUGINS_VAR: str(plugin_file)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["names"][-1] == "centroid" and "centroid" in out["image_only"]
    assert out["methods"] == ["bliss", "centroid", "bliss", "centroid"]  # trial by trial, in the order asked
    np.testing.assert_allclose(out["auroc"], out["expected"], rtol=0, atol=1e-9)
    assert min(out["auroc"]) > 60  # well-separated clusters: the method works, the comparison is not vacuous


def test_a_missing_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.setenv(methods.PLUGINS_VAR, str(tmp_path / "nowhere.py"))
    with pytest.raises(FileNotFoundError, match=r"BLISS_PLUGINS names .*nowhere\.py"):
        methods.method_names()


def test_registering_checks_names_and_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(methods, "_TABLE", dict(methods._TABLE))
    with pytest.raises(ValueError, match="already registered"):
        methods.register_method("bliss", lambda: None)
    methods.register_method("not-a-scorer", lambda: object())
    with pytest.raises(TypeError, match="not-a-scorer"):
        methods.make_method("not-a-scorer")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        methods.make_method("nope")


def test_every_builtin_method_declares_known_inputs() -> None:
    for name in methods.method_names():
        factory = methods.method_class(name)
        assert set(factory.inputs) <= set(methods.INPUTS), name
