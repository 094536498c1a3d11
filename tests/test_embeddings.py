"""The embedding cache: no recomputation, damage detected, resumable shards, never mixing encoders or datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEncoder

from bliss_utils.datasets.images import load_dataset
from bliss_utils.datasets.prompts import ENSEMBLE_TEMPLATES, make_prompts
from bliss_utils.embeddings import (
    CacheMismatchError,
    image_cache_path,
    image_embeddings,
    load_embedding_set,
    text_cache_path,
    text_embeddings,
)


@pytest.fixture
def cifar_train(fake_data):
    return load_dataset("cifar10", "train", root=fake_data)


def test_second_call_reads_the_cache(fake_data, tmp_path, fake_encoder):
    emb, labels = image_embeddings(fake_encoder, "cifar10", "train", root=fake_data, cache_dir=tmp_path, progress=False)
    assert emb.dtype == np.float32 and labels.dtype == np.int64 and emb.shape == (60, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    assert fake_encoder.images_encoded == 60
    again, labels2 = image_embeddings(
        fake_encoder, "cifar10", "train", root=fake_data, cache_dir=tmp_path, progress=False
    )
    assert fake_encoder.images_encoded == 60  # nothing recomputed
    np.testing.assert_array_equal(again, emb)
    np.testing.assert_array_equal(labels2, load_dataset("cifar10", "train", root=fake_data).labels)
    # the same numbers as encoding directly, whatever the batch size
    direct = FakeEncoder().encode_images([load_dataset("cifar10", "train", root=fake_data)[i][0] for i in range(60)])
    np.testing.assert_allclose(emb, direct, atol=1e-6)


def test_layout_and_metadata(cifar_train, tmp_path, fake_encoder):
    image_embeddings(fake_encoder, cifar_train, cache_dir=tmp_path, progress=False)
    path = image_cache_path(fake_encoder, cifar_train, tmp_path)
    assert path.parent == tmp_path / "fake" / "cifar10" and path.name.startswith("train-")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["encoder"] == {"name": "fake", "weights_id": "fake-seed0", "preprocess_id": "fake-8x8", "dim": 16}
    assert meta["dataset_identity"] == cifar_train.identity and meta["split"] == "train"
    assert meta["count"] == 60 and meta["dim"] == 16 and len(meta["sha256"]) == 64
    assert "numpy" in meta["versions"] and meta["created"]
    with np.load(path, allow_pickle=False) as f:  # no pickled objects inside
        assert set(f.files) == {"embeddings", "labels", "meta"}
    assert not list(tmp_path.rglob("*.shards"))  # shards merged and removed


def test_batch_size_and_shards_do_not_change_the_numbers(cifar_train, tmp_path):
    a, _ = image_embeddings(FakeEncoder(), cifar_train, cache_dir=tmp_path / "a", batch_size=64, progress=False)
    b, _ = image_embeddings(
        FakeEncoder(), cifar_train, cache_dir=tmp_path / "b", batch_size=7, shard_size=11, progress=False
    )
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_detected_and_recomputed(cifar_train, tmp_path, fake_encoder, damage, caplog):
    first, _ = image_embeddings(fake_encoder, cifar_train, cache_dir=tmp_path, progress=False)
    path = image_cache_path(fake_encoder, cifar_train, tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # same size, one embedding value changed: only the checksum can tell
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["embeddings"][3, 2] += 0.5
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    again, _ = image_embeddings(fake_encoder, cifar_train, cache_dir=tmp_path, progress=False)
    assert fake_encoder.images_encoded == 120  # recomputed once
    assert "recomputing" in caplog.text
    np.testing.assert_array_equal(again, first)
    image_embeddings(fake_encoder, cifar_train, cache_dir=tmp_path, progress=False)
    assert fake_encoder.images_encoded == 120  # and the rewritten file is good


def test_interrupted_run_resumes_from_finished_shards(cifar_train, tmp_path):
    crashing = FakeEncoder(fail_after=25)
    with pytest.raises(KeyboardInterrupt):
        image_embeddings(crashing, cifar_train, cache_dir=tmp_path, shard_size=20, batch_size=10, progress=False)
    assert crashing.images_encoded == 20  # one shard finished (and saved) before the interruption
    path = image_cache_path(crashing, cifar_train, tmp_path)
    assert not path.exists() and len(list(path.with_suffix(".shards").glob("*.npz"))) == 1
    resumed = FakeEncoder()
    emb, _ = image_embeddings(resumed, cifar_train, cache_dir=tmp_path, shard_size=20, batch_size=10, progress=False)
    assert resumed.images_encoded == 40  # only the two unfinished shards
    fresh, _ = image_embeddings(FakeEncoder(), cifar_train, cache_dir=tmp_path / "fresh", progress=False)
    np.testing.assert_allclose(emb, fresh, atol=1e-6)


def test_other_encoder_preprocessing_or_dataset_never_mixed_in(fake_data, cifar_train, tmp_path):
    a, _ = image_embeddings(FakeEncoder(), cifar_train, cache_dir=tmp_path, progress=False)
    other_weights = FakeEncoder(seed=1)
    b, _ = image_embeddings(other_weights, cifar_train, cache_dir=tmp_path, progress=False)
    assert other_weights.images_encoded == 60 and not np.allclose(a, b)
    other_prep = FakeEncoder(preprocess_id="fake-cifar-stats")
    image_embeddings(other_prep, cifar_train, cache_dir=tmp_path, progress=False)
    assert other_prep.images_encoded == 60
    # another copy of "cifar10" (other images, same name and size) gets its own file too
    make_fake = pytest.importorskip("bliss_utils.datasets.synthetic").make_fake_cifar
    make_fake(tmp_path / "other", "cifar10", 6, 3, seed=5)
    other_data = load_dataset("cifar10", "train", root=tmp_path / "other")
    enc = FakeEncoder()
    image_embeddings(enc, other_data, cache_dir=tmp_path, progress=False)
    assert enc.images_encoded == 60
    # a file moved under another encoder's key is refused, not served
    src = image_cache_path(FakeEncoder(seed=1), cifar_train, tmp_path)
    dst = image_cache_path(FakeEncoder(), cifar_train, tmp_path)
    dst.write_bytes(src.read_bytes())
    with pytest.raises(CacheMismatchError, match="weights_id|encoder"):
        image_embeddings(FakeEncoder(), cifar_train, cache_dir=tmp_path, progress=False)


def test_text_embeddings_cached_and_template_averaging(tmp_path, fake_encoder):
    labels = ["aquarium_fish", "cat", "pickup truck"]
    one = text_embeddings(fake_encoder, labels, cache_dir=tmp_path)
    np.testing.assert_allclose(one, fake_encoder.encode_texts(make_prompts(labels)), atol=1e-6)
    calls = fake_encoder.text_calls
    np.testing.assert_array_equal(text_embeddings(fake_encoder, labels, cache_dir=tmp_path), one)
    assert fake_encoder.text_calls == calls
    templates = ENSEMBLE_TEMPLATES[:3]
    avg = text_embeddings(fake_encoder, labels, template=templates, cache_dir=tmp_path)
    parts = [fake_encoder.encode_texts(make_prompts(labels, t)) for t in templates]
    expected = np.mean(parts, axis=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(avg, expected, atol=1e-6)
    assert not np.allclose(avg, one)
    # another encoder's texts are another cache entry
    assert not np.allclose(text_embeddings(FakeEncoder(seed=2), labels, cache_dir=tmp_path), one)


def test_image_only_encoder_has_no_text(tmp_path):
    with pytest.raises(ValueError, match="image-only"):
        text_embeddings(FakeEncoder(has_text=False), ["cat"], cache_dir=tmp_path)


def test_load_embedding_set(fake_data, tmp_path):
    enc = FakeEncoder()
    data = load_embedding_set(enc, "cifar10", root=fake_data, cache_dir=tmp_path, dictionary_size=50, progress=False)
    assert data.train.shape == (60, 16) and data.test.shape == (30, 16)
    assert data.class_texts.shape == (10, 16) and data.dictionary.shape == (50, 16)
    assert data.encoder == "fake" and data.dataset == "cifar10"
    assert data.meta["dictionary_entries"][:2] == ["tench", " Tinca tinca"]  # the authors' exact entries
    np.testing.assert_array_equal(data.class_texts, text_embeddings(enc, data.meta["class_names"], cache_dir=tmp_path))
    image_only = load_embedding_set(
        FakeEncoder(has_text=False), "cifar10", root=fake_data, cache_dir=tmp_path, progress=False
    )
    assert image_only.class_texts is None and image_only.dictionary is None


def test_embedding_set_refuses_texts_of_another_encoder(fake_data, tmp_path):
    names = load_dataset("cifar10", "train", root=fake_data).class_names
    text_embeddings(FakeEncoder(seed=1), names, cache_dir=tmp_path)
    # a file of encoder seed 1 sitting where encoder seed 0 keeps its class texts is refused, not mixed in
    src = text_cache_path(FakeEncoder(seed=1), names, cache_dir=tmp_path)
    dst = text_cache_path(FakeEncoder(), names, cache_dir=tmp_path)
    assert src != dst
    dst.write_bytes(src.read_bytes())
    with pytest.raises(CacheMismatchError, match="fake-seed1"):
        load_embedding_set(
            FakeEncoder(), "cifar10", root=fake_data, cache_dir=tmp_path, dictionary=None, progress=False
        )


def test_bad_arguments(cifar_train, tmp_path, fake_encoder):
    with pytest.raises(ValueError, match="split"):
        image_embeddings(fake_encoder, "cifar10", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="disagrees"):
        image_embeddings(fake_encoder, cifar_train, split="test", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="shard_size"):
        image_embeddings(fake_encoder, cifar_train, shard_size=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="single string"):
        text_embeddings(fake_encoder, "cat", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="not an encoder"):
        image_embeddings(object(), cifar_train, cache_dir=tmp_path)


def test_embedding_set_with_tiny_clip(fake_data, tmp_path):
    pytest.importorskip("open_clip")
    data = load_embedding_set(
        "tiny-clip", "cifar10", root=fake_data, cache_dir=tmp_path, dictionary_size=20, progress=False
    )
    assert data.encoder == "tiny-clip" and data.meta["encoder"]["name"] == "tiny-clip"
    dims = {a.shape[1] for a in (data.train, data.test, data.class_texts, data.dictionary)}
    assert len(dims) == 1  # image and text embeddings live in one space
    for a in (data.train, data.test, data.class_texts, data.dictionary):
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    # a second load is served entirely from the cache, bit for bit
    files = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.npz"))
    again = load_embedding_set(
        "tiny-clip", "cifar10", root=fake_data, cache_dir=tmp_path, dictionary_size=20, progress=False
    )
    np.testing.assert_array_equal(again.test, data.test)
    np.testing.assert_array_equal(again.dictionary, data.dictionary)
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.npz")) == files


# -- lookups without models or datasets ----------------------------------------------------------------------------
def test_copied_cache_needs_neither_model_nor_dataset(tmp_path, monkeypatch):
    import shutil

    from bliss_utils import encoders
    from bliss_utils.datasets.synthetic import make_fake_cifar

    monkeypatch.setenv("BLISS_DATA_DIR", str(tmp_path / "memo"))
    data = tmp_path / "data"
    make_fake_cifar(data, "cifar10", n_train_per_class=2, n_test_per_class=1)
    first = load_embedding_set(
        "tiny-clip",
        "cifar10",
        root=data,
        dictionary=["cat", "truck"],
        device="cpu",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    shutil.copytree(tmp_path / "cache", tmp_path / "copy")
    shutil.rmtree(data)

    def refuse(*args, **kwargs):
        raise AssertionError("load_encoder was called on a cache hit")

    monkeypatch.setattr(encoders, "load_encoder", refuse)
    again = load_embedding_set(
        "tiny-clip",
        "cifar10",
        root=data,
        dictionary=["cat", "truck"],
        device="cpu",
        cache_dir=tmp_path / "copy",
        progress=False,
    )
    for field in ("train", "train_labels", "test", "test_labels", "class_texts", "dictionary"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    assert again.meta["class_names"] == first.meta["class_names"] and again.meta["encoder"] == first.meta["encoder"]
    # with nothing cached for another dataset, the dataset's own clear error appears
    from bliss_utils.datasets.images import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="cifar100 not found"):
        load_embedding_set("tiny-clip", "cifar100", root=data, cache_dir=tmp_path / "copy", progress=False)


def test_cache_hit_never_builds_the_model(fake_data, tmp_path, monkeypatch):
    import dataclasses

    from bliss_utils.encoders import registry

    calls = []
    info = registry.backbone("tiny-clip")

    def spy(*args, **kwargs):
        calls.append(args)
        return info.builder(*args, **kwargs)

    monkeypatch.setitem(registry._BACKBONES, "tiny-clip", dataclasses.replace(info, builder=spy))
    monkeypatch.setattr("bliss_utils.cache.request._MODELS", {})
    kwargs = {"root": fake_data, "cache_dir": tmp_path, "progress": False, "device": "cpu"}
    a, _ = image_embeddings("tiny-clip", "cifar10", "test", **kwargs)
    t = text_embeddings("tiny-clip", ["cat"], device="cpu", cache_dir=tmp_path)
    assert len(calls) == 1  # built once on the misses, then reused
    monkeypatch.setattr("bliss_utils.cache.request._MODELS", {})
    b, _ = image_embeddings("tiny-clip", "cifar10", "test", **kwargs)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(t, text_embeddings("tiny-clip", ["cat"], device="cpu", cache_dir=tmp_path))
    assert len(calls) == 1


def _write_slip(path, seed):
    import torch

    from bliss_utils.encoders.slip import make_tiny_slip_checkpoint

    torch.save(make_tiny_slip_checkpoint(seed), path)


def test_weights_file_fingerprint_keys_the_cache_and_missing_weights_fall_back(fake_data, tmp_path, monkeypatch):
    from bliss_utils.encoders import WeightsNotFoundError, describe_encoder, registry, slip

    monkeypatch.setenv("BLISS_DATA_DIR", str(tmp_path / "memo"))
    # tiny-slip's code path with a checkpoint file: a named encoder whose weights come from a file
    info = registry.backbone("tiny-slip")
    monkeypatch.setitem(
        registry._BACKBONES,
        "file-slip",
        registry.Backbone(slip.load_slip_vit_b16, slip.slip_weights, info.dim, info.recipes),
    )
    monkeypatch.setattr("bliss_utils.encoders.slip.SLIP_TIMM_MODEL", "bliss_tiny_slip_vit")
    ckpt = tmp_path / "w" / "file-slip" / "slip_base_100ep.pt"
    ckpt.parent.mkdir(parents=True)
    _write_slip(ckpt, 0)
    monkeypatch.setenv("BLISS_WEIGHTS_DIR", str(tmp_path / "w"))
    kwargs = {"root": fake_data, "cache_dir": tmp_path / "cache", "progress": False, "device": "cpu"}
    first = describe_encoder("file-slip", device="cpu")
    a, _ = image_embeddings("file-slip", "cifar10", "test", **kwargs)
    _write_slip(ckpt, 1)  # same name, other bytes
    second = describe_encoder("file-slip", device="cpu")
    assert first.weights_id != second.weights_id and "sha256=" in second.weights_id
    b, _ = image_embeddings("file-slip", "cifar10", "test", **kwargs)
    assert not np.allclose(a, b)  # recomputed with the new weights, not served from the old file
    # without the weights, two cached identities: an error that lists them; weights=<part of one> picks it
    ckpt.unlink()
    with pytest.raises(WeightsNotFoundError):
        describe_encoder("file-slip", device="cpu")
    with pytest.raises(ValueError, match="(?s)several.*weights="):
        image_embeddings("file-slip", "cifar10", "test", **kwargs)
    sha = first.weights_id.split("sha256=")[1]
    picked, _ = image_embeddings("file-slip", "cifar10", "test", weights=sha[:12], **kwargs)
    np.testing.assert_array_equal(picked, a)


def test_preprocessing_enters_the_key_per_encoder(fake_data, tmp_path):
    from bliss_utils.datasets.images import load_dataset as load
    from bliss_utils.encoders import describe_encoder, preprocess_for

    ds = load("cifar10", "test", root=fake_data)
    mapping = {"tiny-clip": "cifar"}
    clip_c = describe_encoder("tiny-clip", preprocess=preprocess_for("tiny-clip", mapping), device="cpu")
    clip_d = describe_encoder("tiny-clip", device="cpu")
    blip = describe_encoder("tiny-blip", preprocess=preprocess_for("tiny-blip", mapping), device="cpu")
    assert image_cache_path(clip_c, ds, tmp_path) != image_cache_path(clip_d, ds, tmp_path)
    assert blip == describe_encoder("tiny-blip", device="cpu")  # not in the mapping: default
    assert "0.4913" in clip_c.preprocess_id and "0.4913" not in clip_d.preprocess_id


def test_a_preprocess_mapping_is_resolved_per_encoder(fake_data, tmp_path):
    from bliss_utils.encoders import load_encoder

    mapped = image_embeddings(
        "tiny-clip",
        "cifar10",
        "test",
        root=fake_data,
        cache_dir=tmp_path,
        progress=False,
        preprocess={"tiny-clip": "cifar", "tiny-blip": "default"},
        device="cpu",
    )[0]
    direct = image_embeddings(
        load_encoder("tiny-clip", device="cpu", preprocess="cifar"),
        "cifar10",
        "test",
        root=fake_data,
        cache_dir=tmp_path / "other",
        progress=False,
    )[0]
    plain = image_embeddings(
        "tiny-clip",
        "cifar10",
        "test",
        root=fake_data,
        cache_dir=tmp_path,
        progress=False,
        preprocess={"tiny-blip": "cifar"},
        device="cpu",
    )[0]
    np.testing.assert_array_equal(mapped, direct)
    assert not np.allclose(mapped, plain)  # tiny-clip is not in the second mapping: its own preprocessing
    with pytest.raises(ValueError, match="preprocess options"):
        image_embeddings(
            "tiny-clip", "cifar10", "test", root=fake_data, cache_dir=tmp_path, preprocess={"tiny-clip": "x"}
        )


def test_cached_only_reads_and_never_computes(fake_data, tmp_path, fake_encoder):
    from bliss_utils.embeddings import NotCachedError

    where = {"root": fake_data, "cache_dir": tmp_path, "progress": False}
    first, _ = image_embeddings(fake_encoder, "cifar10", "train", **where)
    again, _ = image_embeddings(fake_encoder, "cifar10", "train", cached_only=True, **where)
    np.testing.assert_array_equal(again, first)
    with pytest.raises(NotCachedError, match=r"cifar10/test image embeddings of 'fake' are not in the cache"):
        image_embeddings(fake_encoder, "cifar10", "test", cached_only=True, **where)
    with pytest.raises(NotCachedError, match="text embeddings of 2 texts"):
        text_embeddings(fake_encoder, ["cat", "dog"], cache_dir=tmp_path, cached_only=True)
    assert fake_encoder.images_encoded == 60 and fake_encoder.text_calls == 0  # only the first call computed
    with pytest.raises(TypeError, match="cached_only must be True or False"):
        image_embeddings(fake_encoder, "cifar10", "train", cached_only="yes", **where)
