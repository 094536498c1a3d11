"""Image folders as users have them: every PIL mode read as RGB the documented way, unreadable files found and named
before any embedding, finished shards kept, and the bad files skipped and listed on request; a flat test folder is
unlabelled; class names can be given."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import FakeEncoder
from PIL import Image

from bliss_utils.datasets.files import BadImageError, to_rgb
from bliss_utils.datasets.images import UNLABELLED, load_dataset
from bliss_utils.datasets.synthetic import make_fake_imagefolder
from bliss_utils.embeddings import image_cache_path, image_embeddings, load_embedding_set, renamed, text_embeddings


def test_every_mode_becomes_rgb_as_pil_converts_it_with_16_bit_scaled() -> None:
    rgba = Image.new("RGBA", (2, 2), (200, 10, 20, 0))  # fully transparent: the stored colour shows (no compositing)
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [200, 10, 20]
    for img in (
        Image.new("CMYK", (2, 2), (0, 255, 255, 0)),
        Image.new("LA", (2, 2), (90, 7)),
        Image.new("1", (2, 2), 1),
    ):
        np.testing.assert_array_equal(np.asarray(to_rgb(img)), np.asarray(img.convert("RGB")))
    palette = Image.new("P", (2, 2), 3)
    palette.putpalette([0, 0, 0] * 3 + [10, 20, 30])
    assert np.asarray(to_rgb(palette))[1, 1].tolist() == [10, 20, 30]
    wide = Image.fromarray(np.array([[0, 257], [32896, 65535]], dtype=np.uint16))
    assert wide.mode == "I;16" and np.asarray(to_rgb(wide))[..., 1].tolist() == [[0, 1], [128, 255]]  # PIL clips


@pytest.fixture
def folder(tmp_path):
    make_fake_imagefolder(tmp_path / "mine", ["cat", "dog"], n_per_class=6)
    return tmp_path / "mine"


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_an_unreadable_file_is_named_before_anything_is_embedded_and_finished_shards_stay(folder, tmp_path) -> None:
    train = load_dataset(f"imagefolder:{folder}", "train")
    first = FakeEncoder(fail_after=5)
    with pytest.raises(KeyboardInterrupt):  # an earlier run left one finished shard
        image_embeddings(first, train, cache_dir=tmp_path / "c", shard_size=4, batch_size=4, progress=False)
    shards = image_cache_path(first, train, tmp_path / "c").with_suffix(".shards")
    assert len(list(shards.glob("*.npz"))) == 1
    bad = train.paths[-1]
    _truncate(bad)
    (bad.parent / "notes.txt").write_text("not an image")
    encoder = FakeEncoder()
    train = load_dataset(f"imagefolder:{folder}", "train")
    with pytest.raises(BadImageError, match=rf"1 image files cannot be read; nothing was embedded:\n  {bad}"):
        image_embeddings(encoder, train, cache_dir=tmp_path / "c", shard_size=4, batch_size=4, progress=False)
    assert encoder.images_encoded == 0 and len(list(shards.glob("*.npz"))) == 1
    assert not image_cache_path(encoder, train, tmp_path / "c").exists()


def test_bad_images_are_skipped_and_listed_on_request_and_other_files_counted(folder, tmp_path, caplog) -> None:
    bad = sorted((folder / "train" / "dog").iterdir())[0]
    _truncate(bad)
    (folder / "train" / "cat" / "labels.csv").write_text("x")
    (folder / "train" / "stray.png").write_bytes((folder / "test" / "cat").iterdir().__next__().read_bytes())
    with caplog.at_level(logging.WARNING):
        full = load_dataset(f"imagefolder:{folder}", "train")
        kept = load_dataset(f"imagefolder:{folder}", "train", skip_bad_images=True)
    assert "skipped 1 files that are not images (1 .csv)" in caplog.text
    assert "skipped 1 images outside the class folders (e.g. stray.png)" in caplog.text
    assert f"skipping 1 unreadable images:\n  {bad}" in caplog.text
    assert len(kept) == len(full) - 1 and bad not in kept.paths and kept.identity != full.identity
    assert kept.labels.tolist() == [full.labels[i] for i, p in enumerate(full.paths) if p != bad]
    emb, labels = image_embeddings(FakeEncoder(), kept, cache_dir=tmp_path / "c", progress=False)
    assert emb.shape[0] == len(kept) and labels.tolist() == kept.labels.tolist()
    with pytest.raises(BadImageError, match=str(bad)):  # read one by one, it still names the file
        full.image(full.paths.index(bad))
    name, fake = f"imagefolder:{folder}", FakeEncoder()
    with pytest.raises(BadImageError, match="SKIP_BAD_IMAGES = True in 07_your_data"):  # the notebooks' way too
        load_embedding_set(fake, name, dictionary=["a"], cache_dir=tmp_path / "s")
    data = load_embedding_set(fake, name, dictionary=["a"], cache_dir=tmp_path / "s", skip_bad_images=True)
    assert data.train.shape[0] == len(kept) and data.train_labels.tolist() == kept.labels.tolist()
    np.testing.assert_array_equal(data.train, emb)  # the rows of load_dataset(..., skip_bad_images=True).paths


def test_a_flat_test_folder_is_unlabelled_and_class_names_can_be_given(folder, tmp_path) -> None:
    for p in sorted((folder / "test").rglob("*.png")):
        p.rename(folder / "test" / f"{p.parent.name}-{p.name}")  # no class folders left: unlabelled images
    for d in (folder / "test").iterdir():
        if d.is_dir():
            d.rmdir()
    test = load_dataset(f"imagefolder:{folder}", "test")
    assert not test.labelled and set(test.labels.tolist()) == {UNLABELLED} and len(test) == 12
    assert test.class_names == ["cat", "dog"] and load_dataset(f"imagefolder:{folder}", "train").labelled
    words = {"cat": "tabby cat"}
    data = load_embedding_set(
        FakeEncoder(), f"imagefolder:{folder}", dictionary=["a", "b"], names=words, cache_dir=tmp_path
    )
    assert data.meta["class_names"] == ["tabby cat", "dog"] and (data.test_labels == UNLABELLED).all()
    expected = text_embeddings(FakeEncoder(), ["tabby cat", "dog"], cache_dir=tmp_path / "t")
    np.testing.assert_allclose(data.class_texts, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"class names \['horse'\] are not classes of"):
        renamed(["cat", "dog"], {"horse": "a horse"})
    assert renamed(["T-shirt top", "bag"], {"T-shirt_top": "shirt"}) == ["shirt", "bag"]  # by its folder name


def test_class_folders_in_any_script_match_the_names_you_type(tmp_path) -> None:
    import unicodedata

    from bliss_utils.datasets import splits

    decomposed = unicodedata.normalize("NFD", "café")  # as macOS names a folder
    make_fake_imagefolder(tmp_path / "f", ["кошка", "猫", decomposed], n_per_class=2)
    name = f"imagefolder:{tmp_path / 'f'}"
    train = load_dataset(name, "train")
    assert train.class_names == ["café", "кошка", "猫"] and train.class_names[0] != decomposed  # composed (NFC)
    data = load_embedding_set(
        FakeEncoder(), name, dictionary=["a"], names={"café": "coffee", "猫": "cat"}, cache_dir=tmp_path
    )
    assert data.meta["class_names"] == ["coffee", "кошка", "cat"]
    custom = {"mine-2": {"dataset": name, "trials": [[decomposed, "猫"], ["кошка", "café"]]}}
    assert splits.setting_trials("mine-2", 0, custom) == [[0, 2], [0, 1]]
