"""Generated datasets: a class's look is a fixed function of its name, shared by every dataset; seeds drive noise."""

from __future__ import annotations

import numpy as np
import pytest

from bliss_utils.datasets import load_dataset
from bliss_utils.synthetic import class_images, class_look, look_key, make_fake_cifar, make_fake_tinyimagenet


def test_look_is_a_function_of_the_cleaned_name():
    colour, angle, freq = class_look("aquarium_fish")
    same = class_look("  Aquarium   fish ")
    np.testing.assert_array_equal(colour, same[0])
    assert (angle, freq) == same[1:]
    assert look_key("Lawn_Mower") == "lawn mower"
    other = class_look("maple_tree")
    assert not np.allclose(colour, other[0])
    assert 40 <= colour.min() and colour.max() <= 215 and 0 <= angle <= np.pi and 1 <= freq <= 4


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
