"""A user's own encoder: declared identities build nothing on a cache hit, and $BLISS_PLUGINS reaches the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bliss_utils import plugins
from bliss_utils.cache import request
from bliss_utils.datasets.synthetic import make_fake_imagefolder
from bliss_utils.embeddings import image_embeddings, load_embedding_set
from bliss_utils.encoders import describe_encoder, list_encoders, load_encoder, register_encoder, registry

# a module outside the package, as a user would write it: a deterministic projection of 8x8 thumbnails
PLUGIN = """
import hashlib

import numpy as np
import torch

from bliss_utils.encoders import Encoder, register_encoder

DIM, SIDE = 16, 8
PROJECTION = torch.from_numpy(np.random.default_rng(0).normal(size=(3 * SIDE * SIDE, DIM)).astype(np.float32))
BUILDS = []  # one entry per builder call, so a test can count them


def thumbnail(image):
    pixels = np.asarray(image.convert("RGB").resize((SIDE, SIDE)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)


class Projection(Encoder):
    def _image_features(self, pixels):
        return (pixels.flatten(1) - 0.5) @ PROJECTION

    def _text_features(self, texts):
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return torch.tensor(np.stack([np.random.default_rng(s).normal(size=DIM) for s in seeds]), dtype=torch.float32)


def build(name, device=None, weights=None, preprocess="default"):
    BUILDS.append(name)
    ids = {"preprocess_id": f"thumb{SIDE}", "weights_id": "projection-seed0"}
    return Projection(name=name, dim=DIM, device="cpu", preprocess=thumbnail, precision="fp32", **ids)


register_encoder("my-projection", build, dim=DIM, preprocess_id=f"thumb{SIDE}", weights_id="projection-seed0",
                 precision="fp32")
"""
NAME, DIM, MODULE = "my-projection", 16, "bliss_plugin_my_encoders"  # the module name $BLISS_PLUGINS gives the file


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin saved as a file, named in $BLISS_PLUGINS, with this process's registry and plugin memory restored."""
    path = tmp_path / "my_encoders.py"
    path.write_text(PLUGIN)
    monkeypatch.setattr(registry, "_CUSTOM", dict(registry._CUSTOM))
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.setattr(request, "_MODELS", {})
    monkeypatch.setenv(plugins.PLUGINS_VAR, str(path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)  # and dropped again after the test
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_fake_imagefolder(tmp_path / "images", ["red_car", "blue boat"], n_per_class=3)


def test_a_declared_encoder_is_described_and_served_from_the_cache_without_building(plugin, folder, tmp_path):
    assert NAME in list_encoders()  # the registry read $BLISS_PLUGINS: nothing was imported by hand
    builds = sys.modules[MODULE].BUILDS
    spec = describe_encoder(NAME, device="cpu")
    assert (spec.dim, spec.weights_id, spec.preprocess_id, spec.precision) == (
        DIM,
        "projection-seed0",
        "thumb8",
        "fp32",
    )
    assert builds == []
    kwargs = {"cache_dir": tmp_path / "cache", "device": "cpu", "progress": False}
    dataset = f"imagefolder:{folder}"
    first, _ = image_embeddings(NAME, dataset, "train", **kwargs)
    assert builds == [NAME] and first.shape == (6, DIM)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    full = load_embedding_set(NAME, dataset, dictionary=["tree", "house"], **kwargs)  # fills test and texts
    assert len(builds) == 1  # the test split and the texts were misses, served by the model built once
    request._MODELS.clear()  # a new process's memory: only the cache may serve now
    again, _ = image_embeddings(NAME, dataset, "train", **kwargs)
    hit = load_embedding_set(NAME, dataset, dictionary=["tree", "house"], **kwargs)
    assert len(builds) == 1
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(hit.dictionary, full.dictionary)
    assert hit.class_texts.shape == (2, DIM)


def test_an_undeclared_encoder_is_built_to_learn_its_identity(plugin):
    list_encoders()
    module = sys.modules[MODULE]
    register_encoder("undeclared", module.build)
    assert describe_encoder("undeclared", device="cpu").weights_id == "projection-seed0"
    assert module.BUILDS == ["undeclared"]


def test_declarations_are_checked(plugin):
    list_encoders()
    module = sys.modules[MODULE]
    with pytest.raises(ValueError, match=r"declare \['weights_id'\] as well"):
        register_encoder("half", module.build, dim=16, preprocess_id="thumb8")
    with pytest.raises(ValueError, match="dim must be a positive int"):
        register_encoder("bad", module.build, dim=0, preprocess_id="thumb8", weights_id="w")
    with pytest.raises(ValueError, match=r"preprocess_id must map every option of \['default', 'cifar'\]"):
        register_encoder("bad", module.build, dim=16, preprocess_id={"default": "thumb8"}, weights_id="w")
    register_encoder("liar", module.build, dim=32, preprocess_id="thumb8", weights_id="projection-seed0")
    assert describe_encoder("liar", device="cpu").dim == 32  # declared: believed without building
    with pytest.raises(ValueError, match=r"'liar' differs from its register_encoder declaration.*'dim': \(32, 16\)"):
        load_encoder("liar", device="cpu")
    # a callable weights_id receives the weights argument, so weights= is described without building too
    register_encoder("per-file", module.build, dim=16, preprocess_id="thumb8", weights_id=lambda w: f"file={w}")
    assert describe_encoder("per-file", weights="x.bin", device="cpu").weights_id == "file=x.bin"
    assert module.BUILDS == ["liar"]  # built once, by load_encoder, and refused


def _embed(folder: Path, cache: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = ["embed", "--encoder", NAME, "--dataset", f"imagefolder:{folder}", "--split", "train"]
    argv += ["--cache-dir", str(cache), "--device", "cpu", "--no-progress"]
    return subprocess.run([sys.executable, "-m", "bliss_utils", *argv], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_a_plugin_encoder_reaches_the_embed_cli(tmp_path: Path, folder: Path) -> None:
    (tmp_path / "my_encoders.py").write_text(PLUGIN)
    env = {**os.environ, "BLISS_DATA_DIR": str(tmp_path / "data")}
    env.pop(plugins.PLUGINS_VAR, None)
    done = _embed(folder, tmp_path / "cache", {**env, plugins.PLUGINS_VAR: str(tmp_path / "my_encoders.py")})
    assert done.returncode == 0, done.stderr
    assert f"{NAME} imagefolder" in done.stdout and f"6 images x {DIM} dims" in done.stdout
    [written] = (tmp_path / "cache").rglob("train-*.npz")
    with np.load(written, allow_pickle=False) as f:
        emb = f["embeddings"]
    assert emb.shape == (6, DIM)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    refused = _embed(folder, tmp_path / "cache-2", env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"error: unknown encoder {NAME!r}") and len(refused.stderr.splitlines()) == 1
    assert not (tmp_path / "cache-2").exists()


def _documented_example() -> str:
    """docs/extending.md's "Your own backbone" module, as a user would save it."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    return re.search(r"## Your own backbone\n.*?```python\n(.*?)```", text, re.S).group(1)


@pytest.mark.slow
def test_the_documented_backbones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: Path) -> None:
    import torch
    import torchvision
    from PIL import Image

    from bliss_utils.encoders import WeightsNotFoundError

    (tmp_path / "doc").mkdir()
    (tmp_path / "doc" / "my_encoders.py").write_text(_documented_example())
    monkeypatch.setenv(plugins.PLUGINS_VAR, str(tmp_path / "doc" / "my_encoders.py"))
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    monkeypatch.setenv("MY_RESNET_WEIGHTS", str(tmp_path / "resnet18.pth"))
    monkeypatch.setenv("MY_CLIP_WEIGHTS", str(tmp_path / "absent.pt"))
    spec, enc = describe_encoder("my-resnet18", device="cpu"), load_encoder("my-resnet18", device="cpu")
    assert (spec.dim, spec.has_text, spec.weights_id) == (512, False, enc.weights_id) and "sha256=" in spec.weights_id
    assert "0.4913" in describe_encoder("my-resnet18", preprocess="cifar", device="cpu").preprocess_id
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)) for _ in range(3)]
    emb = enc.encode_images(images)
    resnet.fc = torch.nn.Identity()
    with torch.inference_mode():
        ref = resnet.eval()(torch.stack([enc.preprocess(im) for im in images])).numpy()
    np.testing.assert_allclose(emb, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    # the image+text model is described from its declarations: the file is fingerprinted, never loaded
    with pytest.raises(WeightsNotFoundError, match="absent.pt"):
        describe_encoder("my-clip", device="cpu")
    (tmp_path / "absent.pt").write_bytes(b"not a checkpoint: building would fail")
    clip = describe_encoder("my-clip", device="cpu")
    assert (clip.dim, clip.has_text) == (512, True) and "sha256=" in clip.weights_id
