"""Find or compute: a verified cached file by its exact key, else by a metadata search, else computed and stored."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils._checks import check_positive_int
from bliss_utils.cache import identity as idn
from bliss_utils.cache import store
from bliss_utils.cache.compute import Batching, compute_images, compute_texts
from bliss_utils.cache.request import EncoderRequest
from bliss_utils.datasets import images as dsi
from bliss_utils.datasets.images import ImageDataset
from bliss_utils.datasets.prompts import as_templates

log = logging.getLogger(__name__)

_IMAGE_FIELDS = ("format", "kind", "key", "encoder", "dataset", "dataset_identity", "split")
_TEXT_FIELDS = ("format", "kind", "key", "encoder", "templates")


def _resolve(dataset: str | ImageDataset, split: str | None) -> tuple[ImageDataset | None, str, str]:
    if isinstance(dataset, ImageDataset):
        if split is not None and split != dataset.split:
            raise ValueError(f"split={split!r} disagrees with the dataset object's split {dataset.split!r}")
        return dataset, dataset.name, dataset.split
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a name or an ImageDataset; got {type(dataset).__name__}")
    if split is None:
        raise ValueError("give split='train' or 'test' with a dataset name")
    if split not in dsi.SPLITS:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    return None, idn.dataset_key_name(dataset), split


def _searched(req: EncoderRequest, folder: Path, pattern: str, accept: Any, what: str, why: str) -> store.Found | None:
    """A cached file found by its metadata (``accept``), verified against that metadata; pins its identity."""
    if (chosen := store.search(folder, pattern, accept, f"{what} for {req.name!r}")) is None:
        return None
    path, meta = chosen
    fields = _TEXT_FIELDS if meta.get("kind") == "texts" else _IMAGE_FIELDS
    got = store.read(path, {k: meta.get(k) for k in fields})
    if got is not None:
        req.pin(meta["encoder"])
        weights_id = meta["encoder"].get("weights_id")
        log.info("using cached %s of %s with weights_id=%s (%s): %s", what, req.name, weights_id, why, path)
    return got


def cached_images(req: EncoderRequest, dataset: str, split: str, dataset_ident: str | None, cache_dir: Any) -> Any:
    """A verified cached image file for this request: by its exact key when all is known, else by a metadata search."""
    if req.identity is not None and dataset_ident is not None:
        path = idn.image_path(req.identity, dataset, split, dataset_ident, cache_dir)
        return store.read(path, idn.image_fields(req.identity, dataset, split, dataset_ident))

    def accept(meta: dict[str, Any]) -> bool:
        return (
            meta.get("kind") == "images"
            and meta.get("dataset") == dataset
            and meta.get("split") == split
            and (dataset_ident is None or meta.get("dataset_identity") == dataset_ident)
            and (req.identity is not None or meta.get("preprocess") in (None, req.preprocess))
            and req.accepts(meta.get("encoder") or {})
        )

    folder = idn.cache_root(cache_dir) / dsi.safe_name(req.name) / dsi.dataset_dirname(dataset)
    why = "weights not on this machine" if req.identity is None else "dataset files not on this machine"
    return _searched(req, folder, f"{split}-*.json", accept, f"{dataset}/{split} image embeddings", why)


def images(
    req: EncoderRequest,
    dataset: str | ImageDataset,
    split: str | None,
    root: Any,
    download: bool,
    cache_dir: Any,
    how: Batching,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(embeddings, labels, metadata) of a dataset split: cached, or computed (then cached) on a miss."""
    check_positive_int(how.batch_size, "batch_size")
    check_positive_int(how.shard_size, "shard_size")
    ds, name, split = _resolve(dataset, split)
    not_found = None
    try:
        dataset_ident = ds.identity if ds is not None else dsi.dataset_identity(name, split, root, download)
    except dsi.DatasetNotFoundError as err:  # a copied cache may still hold this split's embeddings
        dataset_ident, not_found = None, err
    found = cached_images(req, name, split, dataset_ident, cache_dir)
    if found is None and not_found is not None:
        raise not_found
    if found is None:
        req.refuse_miss(f"{name}/{split} image embeddings", cache_dir)
        ds = ds if ds is not None else dsi.load_dataset(name, split, root=root, download=download)
        found = _computed(req, ds, cache_dir, how)
    meta, arrays = found
    labels = arrays["labels"].astype(np.int64)
    if ds is not None and not np.array_equal(labels, ds.labels):
        raise store.CacheMismatchError(f"a cache file holds labels that differ from {ds.name}/{ds.split}'s: delete it")
    return arrays["embeddings"], labels, meta


def _computed(req: EncoderRequest, ds: ImageDataset, cache_dir: Any, how: Batching) -> store.Found:
    """Build the model and embed ``ds``, unless the built model's identity (unknown before) finds a cached file."""
    searched = req.identity is None
    encoder = req.model()
    path = idn.image_path(req.identity, ds.name, ds.split, ds.identity, cache_dir)
    found = store.read(path, idn.image_fields(req.identity, ds.name, ds.split, ds.identity)) if searched else None
    return found or compute_images(encoder, ds, path, req.preprocess, how)


def _cached_texts(req: EncoderRequest, texts: list[str], templates: list[str], cache_dir: Any) -> np.ndarray | None:
    if req.identity is not None:
        ident = idn.text_identity(req.identity)
        path = idn.text_path(ident, texts, templates, cache_dir)
        found = store.read(path, idn.text_fields(ident, path.stem, templates))
        return found[1]["embeddings"] if found is not None and found[0].get("count") == len(texts) else None
    sha = idn.texts_sha(texts)

    def accept(meta: dict[str, Any]) -> bool:
        return (
            meta.get("kind") == "texts"
            and meta.get("templates") == templates
            and meta.get("texts_sha256") == sha
            and req.accepts(meta.get("encoder") or {}, texts=True)
        )

    folder = idn.cache_root(cache_dir) / dsi.safe_name(req.name) / "texts"
    found = _searched(req, folder, "*.json", accept, "text embeddings", "weights not on this machine")
    return None if found is None else found[1]["embeddings"]


def texts(
    req: EncoderRequest, texts: Sequence[str], template: Any, cache_dir: Any, batch_size: int, progress: bool
) -> np.ndarray:
    """Unit text embeddings of ``texts`` in ``template`` (one, or several averaged): cached, or computed on a miss."""
    if not req.has_text:
        raise ValueError(
            f"encoder {req.name!r} is image-only (has_text=False): it has no text embeddings; "
            f"use a vision-language encoder (e.g. clip-vit-b16) for class texts and dictionaries"
        )
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty")
    templates = as_templates(template)
    if (found := _cached_texts(req, texts, templates, cache_dir)) is not None:
        return found
    req.refuse_miss(f"text embeddings of {len(texts)} texts", cache_dir)
    encoder = req.model()
    if not req.has_text:
        raise ValueError(f"encoder {req.name!r} is image-only (has_text=False): it has no text embeddings")
    path = idn.text_path(idn.text_identity(req.identity), texts, templates, cache_dir)
    return compute_texts(encoder, texts, templates, path, batch_size, progress)
