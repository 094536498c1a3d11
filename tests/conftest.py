"""Shared fixtures: a small deterministic encoder following the encoder contract, and generated datasets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the notebook tests first: under xdist's per-file scheduling the longest file then overlaps every other."""
    items.sort(key=lambda item: item.get_closest_marker("notebooks") is None)


class FakeEncoder:
    """Contract-following encoder: 8x8 colour thumbnails times a seeded projection; texts hash to fixed vectors.

    Counts the images it encodes; ``fail_after`` raises after that many images (a simulated interruption).
    """

    def __init__(self, name="fake", dim=16, seed=0, has_text=True, preprocess_id="fake-8x8", fail_after=None):
        self.name, self.dim, self.seed, self.has_text = name, dim, seed, has_text
        self.preprocess_id, self.weights_id, self.device = preprocess_id, f"fake-seed{seed}", "cpu"
        self.projection = np.random.default_rng(seed).normal(size=(8 * 8 * 3, dim))
        self.images_encoded = 0
        self.text_calls = 0
        self.fail_after = fail_after

    def preprocess(self, image):
        return np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32).ravel() / 255.0

    def encode_images(self, images, batch_size=64):
        pixels = np.stack([im if isinstance(im, np.ndarray) else self.preprocess(im) for im in images])
        if self.fail_after is not None and self.images_encoded + len(pixels) > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.images_encoded += len(pixels)
        z = (pixels - 0.5) @ self.projection
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)

    def encode_texts(self, texts, batch_size=256):
        if not self.has_text:
            raise AssertionError("an image-only encoder was asked for text")
        self.text_calls += 1
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.seed}|{t}".encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).normal(size=self.dim))
        z = np.array(rows)
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def fake_encoder():
    return FakeEncoder()


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory):
    """A data folder with a small fake CIFAR-10, CIFAR-100 (1 image a class) and 10-class TinyImageNet."""
    from bliss_utils.datasets.synthetic import make_fake_cifar, make_fake_tinyimagenet

    root = tmp_path_factory.mktemp("data")
    make_fake_cifar(root, "cifar10", n_train_per_class=6, n_test_per_class=3)
    make_fake_cifar(root, "cifar100", n_train_per_class=1, n_test_per_class=1)
    make_fake_tinyimagenet(root, n_train_per_class=3, n_val_per_class=2, n_classes=10)
    return root


@pytest.fixture
def plugin_file(tmp_path):
    """docs/extending.md's worked example (a method defined outside the package), saved as a user would save it."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    path = tmp_path / "my_methods.py"
    path.write_text(re.search(r"```python\n(.*?)```", text, re.S).group(1))
    return path
