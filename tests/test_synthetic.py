"""Generated datasets: a class's look is a fixed function of its name, shared by every dataset; seeds drive noise."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bliss_utils.datasets.images import load_dataset
from bliss_utils.datasets.looks import class_images, class_look, look_key
from bliss_utils.datasets.synthetic import GENERATOR_VERSION, make_fake_cifar, make_fake_tinyimagenet


def test_look_is_a_function_of_the_cleaned_name():
    colour, angle, freq = class_look("aquarium_fish")
    same = class_look("  Aquarium   fish ")
    np.testing.assert_array_equal(colour, same[0])
    assert (angle, freq) == same[1:]
    assert look_key("Lawn_Mower") == "lawn mower"
    other = class_look("maple_tree")
    assert not np.allclose(colour, other[0])
    assert colour.min() >= 40 and colour.max() <= 215 and 0 <= angle <= np.pi and 1 <= freq <= 4


def test_mean_colour_of_a_class_is_its_look():
    n = 400
    imgs = class_images(np.zeros(n, dtype=np.int64), ["goldfish"], 32, seed=0).astype(float)
    # stripes average out over images (random phase); per-image colour jitter has std 12, so the mean is within ~2
    np.testing.assert_allclose(imgs.mean(axis=(0, 1, 2)), class_look("goldfish")[0], atol=4.0)


def test_seed_changes_the_noise_not_the_look():
    y = np.repeat(np.arange(2), 300)
    a = class_images(y, ["cat", "dog"], 16, seed=0).astype(float)
    b = class_images(y, ["cat", "dog"], 16, seed=1).astype(float)
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a[:300].mean(axis=(0, 1, 2)), b[:300].mean(axis=(0, 1, 2)), atol=5.0)
    np.testing.assert_array_equal(a, class_images(y, ["cat", "dog"], 16, seed=0))


def test_datasets_draw_each_class_with_its_names_look(tmp_path):
    make_fake_cifar(tmp_path, "cifar100", n_train_per_class=12, n_test_per_class=0)
    make_fake_tinyimagenet(tmp_path, n_train_per_class=12, n_val_per_class=1, n_classes=4)
    for ds in (load_dataset("cifar100", "train", root=tmp_path), load_dataset("tinyimagenet", "train", root=tmp_path)):
        for label in (0, 3):
            rows = np.flatnonzero(ds.labels == label)
            mean = np.mean([np.asarray(ds.image(i), dtype=float).mean(axis=(0, 1)) for i in rows], axis=0)
            # 12 images: colour jitter (std 12) and the stripes' mean leave the class mean within ~15 of its look
            np.testing.assert_allclose(mean, class_look(ds.class_names[label])[0], atol=16.0)


def test_bad_counts_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="n_train_per_class"):
        make_fake_cifar(tmp_path, "cifar10", n_train_per_class=-1)
    with pytest.raises(ValueError, match="n_classes"):
        make_fake_tinyimagenet(tmp_path, n_classes=0)


def _digest(folder) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_smoke_sized_data_is_one_chunk_the_images_made_before_chunking(tmp_path):
    make_fake_cifar(tmp_path, "cifar10", 20, 10)  # the smoke run's CIFAR-10
    h = hashlib.sha256()
    train, test = (load_dataset("cifar10", s, root=tmp_path) for s in ("train", "test"))
    for ds in (train, test):
        h.update(ds.arrays.tobytes())
        h.update(ds.labels.tobytes())
    # pinned: drawing in chunks must not change the data the smoke run and the tests were built on
    assert (GENERATOR_VERSION, h.hexdigest()[:16]) == (2, "12d4d1b8536c127e")
    whole = class_images(np.concatenate([train.labels, test.labels]), train.class_names, 32, seed=0)
    np.testing.assert_array_equal(np.concatenate([train.arrays, test.arrays]), whole)


def test_chunked_generation_is_deterministic_and_each_chunk_draws_fresh_noise(tmp_path):
    for run in ("a", "b"):
        make_fake_cifar(tmp_path / run, "cifar10", 3, 2, chunk=10)  # 50 images, 5 chunks of one image per class
        make_fake_tinyimagenet(tmp_path / run, 3, 2, n_classes=4, chunk=7)  # 20 images over 3 chunks
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    train = load_dataset("cifar10", "train", root=tmp_path / "a")
    np.testing.assert_array_equal(train.arrays[:10], class_images(np.arange(10), train.class_names, 32, seed=0))
    assert not np.array_equal(train.arrays[:10], train.arrays[10:20]), "every chunk must draw its own noise"
    tiny = load_dataset("tinyimagenet", "train", root=tmp_path / "a")
    val = load_dataset("tinyimagenet", "test", root=tmp_path / "a")
    assert (len(tiny), len(val)) == (12, 8) and np.bincount(tiny.labels).tolist() == [3] * 4
    assert np.bincount(val.labels).tolist() == [2] * 4
    # each file holds the image drawn for it: train images in label order, then val, chunk i with stream i
    y = np.tile(np.arange(4), 5)
    drawn = np.concatenate(
        [class_images(part, val.class_names, 64, 0, stream=i) for i, part in enumerate(np.array_split(y, [7, 14]))]
    ).astype(float)
    index = {p.name: i for i, p in enumerate(tiny.paths)}
    wnid = {c: p.parent.parent.name for c, p in zip(tiny.labels, tiny.paths)}
    read = [tiny.image(index[f"{wnid[c]}_{i // 4}.JPEG"]) for i, c in enumerate(y[:12])]
    read = np.stack([np.asarray(im, dtype=float) for im in [*read, *(val.image(i) for i in range(8))]])
    error = np.abs(read - drawn).mean(axis=(1, 2, 3))
    assert error.max() < 20 < np.abs(read - drawn[::-1]).mean()  # JPEG's loss, far below another image's distance


def test_generating_again_replaces_the_old_data_and_never_touches_real_data(tmp_path):
    make_fake_tinyimagenet(tmp_path, 3, 2, n_classes=2)
    make_fake_tinyimagenet(tmp_path, 1, 1, n_classes=2)  # smaller: none of the first run's images may linger
    assert len(load_dataset("tinyimagenet", "train", root=tmp_path)) == 2
    assert len(list((tmp_path / "tiny-imagenet-200").rglob("*.JPEG"))) == 4
    real = tmp_path / "real" / "cifar-10-batches-py"
    real.mkdir(parents=True)
    (real / "data_batch_1").write_bytes(b"the real thing")
    with pytest.raises(FileExistsError, match="not generated here"):
        make_fake_cifar(tmp_path / "real", "cifar10", 1, 1)
    assert (real / "data_batch_1").read_bytes() == b"the real thing"
