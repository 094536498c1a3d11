"""The embedding cache's public functions: image and text embeddings of an encoder, and whole embedding sets.

Embeddings are computed once, stored safely and verified on every read (:mod:`bliss_utils.cache`). Layout
(``cache_dir`` defaults to :func:`bliss_utils.config.embeddings_dir`)::

    <cache_dir>/<encoder>/<dataset>/<split>-<key>.npz   embeddings, labels and the metadata JSON, in one archive
    <cache_dir>/<encoder>/<dataset>/<split>-<key>.json  the same metadata, for people
    <cache_dir>/<encoder>/<dataset>/<split>-<key>.shards/<start>-<stop>.npz   finished shards of an unfinished run
    <cache_dir>/<encoder>/texts/<key>.npz (+ .json)     text embeddings

An encoder is a name (the model is built on a cache miss only; when its weights or the dataset files are absent a
cached file is found by its metadata, docs/data.md) or an encoder object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils.cache import identity as idn
from bliss_utils.cache import lookup
from bliss_utils.cache.compute import DEFAULT_SHARD_SIZE, Batching
from bliss_utils.cache.identity import FORMAT_VERSION, cache_root, encoder_identity
from bliss_utils.cache.request import EncoderRequest, NotCachedError
from bliss_utils.cache.store import CacheMismatchError
from bliss_utils.datasets.images import NAME_STYLES, SPLITS, ImageDataset
from bliss_utils.datasets.prompts import PAPER_TEMPLATE, as_templates, clean_label

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "FORMAT_VERSION",
    "CacheMismatchError",
    "NotCachedError",
    "cache_root",
    "encoder_identity",
    "image_cache_path",
    "image_embeddings",
    "load_embedding_set",
    "text_cache_path",
    "text_embeddings",
]

Preprocess = str | Mapping[str, str]  # one option for every encoder, or {encoder name: option}


def image_cache_path(encoder: Any, dataset: ImageDataset, cache_dir: str | Path | None = None) -> Path:
    """Where ``image_embeddings`` keeps the merged file for this encoder (object or spec) and dataset split."""
    return idn.image_path(encoder_identity(encoder), dataset.name, dataset.split, dataset.identity, cache_dir)


def text_cache_path(
    encoder: Any, texts: Sequence[str], template: str | Sequence[str] = PAPER_TEMPLATE, cache_dir: Any = None
) -> Path:
    """Where ``text_embeddings`` keeps these texts' embeddings for this encoder (object or spec) and template(s)."""
    return idn.text_path(idn.text_identity(encoder_identity(encoder)), texts, as_templates(template), cache_dir)


def image_embeddings(
    encoder: Any,
    dataset: str | ImageDataset,
    split: str | None = None,
    root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    download: bool = False,
    num_workers: int = 0,
    *,
    weights: str | Path | None = None,
    preprocess: Preprocess = "default",
    device: Any = None,
    cached_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Image embeddings (n, dim) float32 L2-normalised and labels (n,) int64 of a dataset split, cached.

    ``encoder``, ``weights``, ``preprocess``, ``device`` as for ``load_encoder`` (``preprocess`` may also map encoder
    names to options); ``dataset`` is a name (with ``split``) or an :class:`ImageDataset`. Work is saved every
    ``shard_size`` images, so an interrupted run resumes; ``num_workers`` > 0 preprocesses in DataLoader workers.
    ``cached_only=True`` reads the cache and never computes: a miss is a :class:`NotCachedError`.
    """
    req = EncoderRequest(encoder, weights, preprocess, device, cached_only)
    how = Batching(batch_size, shard_size, num_workers, progress)
    return lookup.images(req, dataset, split, root, download, cache_dir, how)[:2]


def text_embeddings(
    encoder: Any,
    texts: Sequence[str],
    template: str | Sequence[str] = PAPER_TEMPLATE,
    *,
    weights: str | Path | None = None,
    preprocess: Preprocess = "default",
    device: Any = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
    cached_only: bool = False,
) -> np.ndarray:
    """Text embeddings (m, dim) float32 L2-normalised of ``template`` filled with each (cleaned) text, cached.

    With a list of templates each text's template embeddings are normalised, averaged and renormalised. ``progress``
    shows a bar when the texts take more than one batch. ``cached_only=True``: a miss is a :class:`NotCachedError`.
    """
    req = EncoderRequest(encoder, weights, preprocess, device, cached_only)
    return lookup.texts(req, texts, template, cache_dir, batch_size, progress)


def _dictionary_entries(dictionary: Any, size: int | None, exclude: Sequence[str]) -> list[str] | None:
    from bliss_utils.datasets.dictionaries import load_dictionary

    if dictionary is None:
        return None
    return load_dictionary(dictionary, size=size, exclude=exclude) if isinstance(dictionary, str) else list(dictionary)


def _class_names(dataset: str, train_meta: dict, test_meta: dict, names: str | Mapping[str, str]) -> list[str]:
    """The class names both splits' files record, in the prompts' style ``names`` (or renamed by a mapping)."""
    if (class_names := train_meta.get("class_names")) != test_meta.get("class_names"):
        raise ValueError(f"{dataset}: train and test splits list different classes")
    if isinstance(names, Mapping):
        return renamed(class_names, names, dataset)
    return [clean_label(n) for n in class_names] if names == "clean" else class_names


def renamed(class_names: Sequence[str], words: Mapping[str, str], dataset: str = "the dataset") -> list[str]:
    """``class_names`` with each one ``words`` maps (by the name or by the folder name it was cleaned from)
    replaced by its words; a key that names no class is an error."""
    by_clean = {clean_label(k): v for k, v in words.items()}
    if unknown := sorted(k for k in words if k not in class_names and clean_label(k) not in class_names):
        raise ValueError(f"class names {unknown} are not classes of {dataset}; its classes: {list(class_names)}")
    if bad := [v for v in words.values() if not isinstance(v, str) or not v.strip()]:
        raise ValueError(f"the words for a class must be a non-empty string; got {bad[0]!r}")
    return [words.get(n, by_clean.get(n, n)) for n in class_names]


def load_embedding_set(
    encoder: Any,
    dataset: str,
    *,
    weights: str | Path | None = None,
    preprocess: Preprocess = "default",
    device: Any = None,
    dictionary: str | Sequence[str] | None = "imagenet",
    dictionary_size: int | None = None,
    dictionary_exclude: Sequence[str] = (),
    template: str | Sequence[str] = PAPER_TEMPLATE,
    names: str | Mapping[str, str] = "paper",
    root: str | Path | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    num_workers: int = 0,
    progress: bool = True,
    cached_only: bool = False,
    skip_bad_images: bool = False,
) -> Any:
    """Train and test image embeddings, class-text and dictionary embeddings of one encoder as a ``grid.EmbeddingSet``.

    ``dictionary`` is a name for :func:`bliss_utils.datasets.dictionaries.load_dictionary`, a list of entries, or
    None; ``names`` the style of the class names in the prompts (``"paper"``: as the authors wrote them, e.g.
    CIFAR-100's ``aquarium_fish``; ``"clean"``: underscores as spaces) or a mapping {class or folder name: the words
    its prompt uses}, other classes keeping their names. Image-only encoders give no texts.
    ``cached_only=True`` reads the cache and never builds a model: a miss is a :class:`NotCachedError`.
    ``skip_bad_images=True`` leaves out the image files that cannot be read (each split decoded in full first).
    """
    from bliss_utils.datasets.images import load_dataset
    from bliss_utils.evaluation.grid import EmbeddingSet

    if not isinstance(names, Mapping) and names not in NAME_STYLES:
        raise ValueError(f"names must be one of {list(NAME_STYLES)} or a mapping of class name -> words; got {names!r}")
    req = EncoderRequest(encoder, weights, preprocess, device, cached_only)
    how = Batching(batch_size, shard_size, num_workers, progress)
    got = {}
    for split in SPLITS:  # a dataset object is read as it is: with skip_bad_images, without the bad files
        source = load_dataset(dataset, split, root, download, skip_bad_images=True) if skip_bad_images else dataset
        got[split] = lookup.images(req, source, split, root, download, cache_dir, how)
    (train, train_labels, train_meta), (test, test_labels, test_meta) = got["train"], got["test"]
    class_names = _class_names(dataset, train_meta, test_meta, names)
    entries = _dictionary_entries(dictionary, dictionary_size, dictionary_exclude) if req.has_text else None
    class_texts = lookup.texts(req, class_names, template, cache_dir, 256, progress) if req.has_text else None
    words = None if entries is None else lookup.texts(req, entries, template, cache_dir, 256, progress)
    meta = {"encoder": train_meta["encoder"], "train_identity": train_meta["dataset_identity"]}
    meta.update(test_identity=test_meta["dataset_identity"], class_names=class_names, templates=as_templates(template))
    meta["dictionary"] = dictionary if isinstance(dictionary, str) or dictionary is None else "custom"
    meta["dictionary_entries"] = entries
    sets = (train, train_labels, test, test_labels, class_texts, words)
    return EmbeddingSet(*sets, encoder=req.name, dataset=train_meta["dataset"], meta=meta)
