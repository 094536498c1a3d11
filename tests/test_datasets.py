"""Datasets, prompts and synthetic data: real on-disk formats read through the real loaders."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from bliss_utils.datasets import images as datasets
from bliss_utils.datasets.images import DatasetNotFoundError, class_names, load_dataset
from bliss_utils.datasets.prompts import ENSEMBLE_TEMPLATES, PAPER_TEMPLATE, clean_label, make_prompts
from bliss_utils.datasets.synthetic import make_fake_cifar, make_fake_imagefolder, make_fake_tinyimagenet


def test_prompts_follow_the_spec():
    # labels go in exactly as given (the paper prompts with raw CIFAR-100 names and untrimmed dictionary entries)
    assert make_prompts(["aquarium_fish", " Tinca tinca"]) == [
        "This is a photo of a aquarium_fish",
        "This is a photo of a  Tinca tinca",
    ]
    assert clean_label("  great_white__shark ") == "great white shark"
    assert PAPER_TEMPLATE in ENSEMBLE_TEMPLATES and all(t.count("{}") == 1 for t in ENSEMBLE_TEMPLATES)
    with pytest.raises(ValueError, match="placeholder"):
        make_prompts(["cat"], "a photo")
    with pytest.raises(ValueError, match="empty"):
        clean_label(" _ ")


def test_class_names_without_data():
    c10, c100, tiny = class_names("cifar10"), class_names("cifar100"), class_names("tinyimagenet")
    assert c10[0] == "airplane" and c10[-1] == "truck" and len(c10) == 10
    assert len(c100) == 100 and len(set(c100)) == 100 and c100[1] == "aquarium_fish" and c100[-1] == "worm"
    assert len(tiny) == 200 and tiny[0] == "goldfish" and tiny[1] == "European fire salamander"
    wnids = [w for w, _ in datasets.tinyimagenet_classes()]
    assert wnids == sorted(wnids)  # ImageFolder order, which splits.json indexes
    with pytest.raises(ValueError, match="cifar10, cifar100, tinyimagenet"):
        class_names("imagenet-a")


def test_fake_cifar_is_read_by_torchvision_itself(fake_data):
    from torchvision.datasets import CIFAR10

    # the files are genuine CIFAR pickles: torchvision's reading code, with its md5 check off, parses them unchanged
    folder = fake_data / "cifar-10-batches-py"
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape[1] == 3072
    with pytest.raises(RuntimeError):  # the unmodified class insists on the real files' md5 sums
        CIFAR10(str(fake_data), train=True, download=False)
    train = load_dataset("cifar10", "train", root=fake_data)
    test = load_dataset("cifar10", "test", root=fake_data)
    assert (len(train), len(test)) == (60, 30)
    assert np.bincount(train.labels).tolist() == [6] * 10
    img, label = train[7]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and label == train.labels[7]
    # CIFAR's row layout (R plane, G plane, B plane) decodes back into the same pixels
    expected = batch["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(np.asarray(train[0][0]), expected)
    assert train.class_names == class_names("cifar10")
    assert train.identity != test.identity


def test_cifar_file_layout_is_torchvisions(fake_data):
    import subprocess
    import sys

    from torchvision.datasets import CIFAR10, CIFAR100

    for name, real in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        ours = datasets.CIFAR_FILES[name]
        assert ours.folder == real.base_folder and ours.meta == real.meta["filename"] and ours.url == real.url
        assert list(ours.train) == [f for f, _ in real.train_list] and list(ours.test) == [f for f, _ in real.test_list]
    # so fingerprinting a dataset on disk, as every cached load does, needs no torchvision (3 s to import)
    code = (
        "import sys; from bliss_utils.datasets import images; "
        f"images.dataset_identity('cifar10', 'test', {str(fake_data)!r}); "
        "assert 'torchvision' not in sys.modules, 'torchvision was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fake_cifar100_uses_fine_labels(fake_data):
    ds = load_dataset("cifar100", "test", root=fake_data)
    assert len(ds) == 100 and sorted(ds.labels.tolist()) == list(range(100))
    assert ds.class_names[1] == "aquarium_fish"  # the paper's raw name


def test_synthetic_images_are_deterministic_and_class_dependent(tmp_path):
    a = make_fake_cifar(tmp_path / "a", "cifar10", 4, 1, seed=3)
    b = make_fake_cifar(tmp_path / "b", "cifar10", 4, 1, seed=3)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in ("data_batch_1", "test_batch", "batches.meta"))
    ds = load_dataset("cifar10", "train", root=tmp_path / "a")
    pixels = np.stack([np.asarray(ds[i][0], dtype=float).mean(axis=(0, 1)) for i in range(len(ds))])
    # mean colour: images of one class are closer to each other than to other classes
    d = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)
    same = ds.labels[:, None] == ds.labels[None]
    assert d[same & ~np.eye(len(ds), dtype=bool)].mean() < 0.5 * d[~same].mean()


def test_tinyimagenet_layout_and_val_annotations(fake_data):
    train = load_dataset("tinyimagenet", "train", root=fake_data)
    test = load_dataset("tinyimagenet", "test", root=fake_data)
    assert (len(train), len(test)) == (30, 20)
    assert train.class_names == class_names("tinyimagenet")[:10]  # sorted wnids, though wnids.txt is shuffled
    folder = fake_data / "tiny-imagenet-200"
    annotations = [ln.split("\t") for ln in (folder / "val" / "val_annotations.txt").read_text().splitlines()]
    wnids = sorted(w for w in (folder / "wnids.txt").read_text().split())
    assert [wnids[y] for y in test.labels] == [a[1] for a in annotations]
    img, _ = test[0]
    assert img.size == (64, 64) and img.mode == "RGB"
    # root may also be the tiny-imagenet-200 folder itself
    assert load_dataset("tinyimagenet", "test", root=folder).identity == test.identity


def test_imagefolder(tmp_path):
    make_fake_imagefolder(tmp_path / "mine", ["red_car", "blue boat", "tree"], n_per_class=2)
    (tmp_path / "mine" / "test" / "anomaly_x").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "mine" / "test" / "anomaly_x" / "a.png")
    train = load_dataset(f"imagefolder:{tmp_path / 'mine'}", "train")
    test = load_dataset(f"imagefolder:{tmp_path / 'mine'}", "test")
    assert train.class_names == test.class_names == ["anomaly x", "blue boat", "red car", "tree"]
    assert sorted(set(train.labels.tolist())) == [1, 2, 3] and 0 in test.labels
    assert len(train) == 6 and len(test) == 7
    # the identity follows the files: a new image changes it
    Image.new("RGB", (10, 10)).save(tmp_path / "mine" / "train" / "tree" / "new.png")
    assert load_dataset(f"imagefolder:{tmp_path / 'mine'}", "train").identity != train.identity


def test_missing_data_says_what_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-python\.tar\.gz.*BLISS_DATA_DIR"):
        load_dataset("cifar10", "train", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"tiny-imagenet-200\.zip"):
        load_dataset("tinyimagenet", "test", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="train/ or test/"):
        (tmp_path / "empty").mkdir()
        load_dataset(f"imagefolder:{tmp_path / 'empty'}", "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("cifar10", "val", root=tmp_path)
    with pytest.raises(ValueError, match="valid names"):
        load_dataset("mnist", "train", root=tmp_path)


def test_default_root_is_the_data_dir(tmp_path, monkeypatch):
    make_fake_cifar(tmp_path, "cifar10", 1, 1)
    monkeypatch.setenv("BLISS_DATA_DIR", str(tmp_path))
    assert len(load_dataset("cifar10", "test")) == 10


def test_tampered_real_cifar_fails_the_md5_check(tmp_path):
    folder = make_fake_cifar(tmp_path, "cifar10", 1, 1)
    (folder / datasets.SYNTHETIC_MARKER).unlink()  # now it claims to be the real download, whose md5 it cannot match
    with pytest.raises(DatasetNotFoundError, match="integrity"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_fake_tinyimagenet_marker_and_counts(tmp_path):
    folder = make_fake_tinyimagenet(tmp_path, 1, 1, n_classes=3, seed=1)
    info = json.loads((folder / datasets.SYNTHETIC_MARKER).read_text())
    assert info["seed"] == 1
    assert len(list((folder / "val" / "images").glob("*.JPEG"))) == 3
    with pytest.raises(ValueError, match="n_classes"):
        make_fake_tinyimagenet(tmp_path, 1, 1, n_classes=201)
