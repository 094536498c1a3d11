"""The embedding cache: image and text embeddings computed once, stored safely, verified on every read.

Layout (``cache_dir`` defaults to :func:`bliss_utils.config.embeddings_dir`)::

    <cache_dir>/<encoder>/<dataset>/<split>-<key>.npz   embeddings, labels and the metadata JSON, in one archive
    <cache_dir>/<encoder>/<dataset>/<split>-<key>.json  the same metadata, for people
    <cache_dir>/<encoder>/<dataset>/<split>-<key>.shards/<start>-<stop>.npz   finished shards of an unfinished run
    <cache_dir>/<encoder>/texts/<key>.npz (+ .json)     text embeddings

``key`` hashes everything the numbers depend on: encoder name, weights identity and preprocessing, the dataset's
identity fingerprint (name, split, count, labels, content) and the format version (plus the templates and texts for
text files).
Files are written atomically (tmp + ``os.replace``) as ``.npz`` and read with ``allow_pickle=False``. A file that fails
verification (unreadable, wrong shape or count, checksum mismatch) is recomputed with a warning; a file whose metadata
names another encoder, preprocessing or dataset raises :class:`CacheMismatchError` and is never mixed in.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, config
from ._io import atomic_path, atomic_write_text
from .datasets import ImageDataset, dataset_dirname, load_dataset, safe_name
from .prompts import PAPER_TEMPLATE, as_templates, make_prompts

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 5000
_VERSIONED = ("numpy", "torch", "torchvision", "open_clip_torch", "transformers", "timm", "pillow")


class CacheMismatchError(ValueError):
    """A cache file belongs to another encoder, preprocessing or dataset than the one asked for."""


# --------------------------------------------------------------------------------------------------------- identity


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """What an encoder's image embeddings depend on: name, weights, preprocessing and dimension."""
    missing = [a for a in ("name", "dim", "weights_id", "preprocess_id") if not hasattr(encoder, a)]
    if missing:
        raise ValueError(f"{type(encoder).__name__} is not an encoder: it lacks {', '.join(missing)}")
    ident = {
        "name": str(encoder.name),
        "weights_id": str(encoder.weights_id),
        "preprocess_id": str(encoder.preprocess_id),
        "dim": int(encoder.dim),
    }
    if getattr(encoder, "precision", None) is not None:  # fp16 on a GPU gives (slightly) different numbers than fp32
        ident["precision"] = str(encoder.precision)
    return ident


def _text_identity(encoder: Any) -> dict[str, Any]:
    # text embeddings do not depend on the image preprocessing
    ident = encoder_identity(encoder)
    return {k: v for k, v in ident.items() if k != "preprocess_id"}


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:20]


def _versions() -> dict[str, str]:
    out = {"bliss_utils": __version__}
    for pkg in _VERSIONED:
        try:
            out[pkg] = _metadata.version(pkg)
        except _metadata.PackageNotFoundError:
            pass
    return out


def _checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``<data>/embeddings``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else config.embeddings_dir()


# ------------------------------------------------------------------------------------------------- safe file i/o


def _write_npz(path: Path, meta: dict[str, Any], **arrays: np.ndarray) -> None:
    """Write arrays + metadata atomically (tmp + os.replace) and the JSON sidecar next to it."""
    meta_json = json.dumps(meta, indent=1, sort_keys=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(meta_json), **arrays)
        f.flush()
        os.fsync(f.fileno())
    atomic_write_text(path.with_suffix(".json"), meta_json)


def _read_npz(path: Path, expected: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Return (metadata, arrays) of a verified cache file, None if absent or damaged; raise if it is someone else's."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("cache file %s is unreadable (%s): recomputing it", path, err)
        return None
    wrong = [
        f"{field}={meta.get(field)!r} (expected {want!r})"
        for field, want in expected.items()
        if meta.get(field) != want
    ]
    if wrong:
        raise CacheMismatchError(
            f"cache file {path} was written for {'; '.join(wrong)}: it is not mixed in. "
            f"Delete it (it is in the wrong place) or point cache_dir elsewhere."
        )
    emb = arrays.get("embeddings")
    problem = None
    if emb is None or emb.dtype != np.float32 or emb.ndim != 2:
        problem = "no float32 (n, dim) embeddings"
    elif emb.shape != (meta.get("count"), meta.get("dim")):
        problem = f"shape {emb.shape} but metadata says ({meta.get('count')}, {meta.get('dim')})"
    elif _checksum(*(arrays[k] for k in sorted(arrays))) != meta.get("sha256"):
        problem = "checksum mismatch"
    if problem:
        log.warning("cache file %s is damaged (%s): recomputing it", path, problem)
        return None
    return meta, arrays


def _meta(kind: str, key: str, identity: dict[str, Any], arrays: dict[str, np.ndarray], **extra: Any) -> dict[str, Any]:
    emb = arrays["embeddings"]
    return {
        "format": FORMAT_VERSION,
        "kind": kind,
        "key": key,
        "encoder": identity,
        **extra,
        "count": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "dtype": "float32",
        "sha256": _checksum(*(arrays[k] for k in sorted(arrays))),
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------------------ computing


def _normalised(x: Any, n: int, dim: int, what: str) -> np.ndarray:
    from ._checks import l2_normalize, to_numpy

    arr = np.asarray(to_numpy(x), dtype=np.float32)
    if arr.shape != (n, dim):
        raise ValueError(f"encoder returned {what} of shape {arr.shape}, expected ({n}, {dim})")
    if not np.isfinite(arr).all():
        raise ValueError(f"encoder returned non-finite {what}")
    return l2_normalize(arr, what).astype(np.float32)


class _Preprocessed:
    """A view of ``dataset`` rows ``indices`` that applies ``preprocess`` (for DataLoader workers)."""

    def __init__(self, dataset: ImageDataset, indices: range, preprocess: Any) -> None:
        self.dataset, self.indices, self.preprocess = dataset, indices, preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.preprocess(self.dataset.image(self.indices[i]))


def _batches(dataset: ImageDataset, rows: range, batch_size: int, encoder: Any, num_workers: int) -> Iterator[Any]:
    """Yield batches of ``rows``: lists of PIL images, or preprocessed tensors when ``num_workers`` > 0."""
    if num_workers > 0:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _Preprocessed(dataset, rows, encoder.preprocess), batch_size=batch_size, num_workers=num_workers
        )
        yield from loader
        return
    for start in range(rows.start, rows.stop, batch_size):
        yield [dataset.image(i) for i in range(start, min(start + batch_size, rows.stop))]


def _resolve(dataset: str | ImageDataset, split: str | None, root: Any, download: bool) -> ImageDataset:
    if isinstance(dataset, ImageDataset):
        if split is not None and split != dataset.split:
            raise ValueError(f"split={split!r} disagrees with the dataset object's split {dataset.split!r}")
        return dataset
    if split is None:
        raise ValueError("give split='train' or 'test' with a dataset name")
    return load_dataset(dataset, split, root=root, download=download)


def image_cache_path(encoder: Any, dataset: ImageDataset, cache_dir: str | Path | None = None) -> Path:
    """Where ``image_embeddings`` keeps the merged file for this encoder and dataset split."""
    key = _hash(
        {"kind": "images", "format": FORMAT_VERSION, "encoder": encoder_identity(encoder), "dataset": dataset.identity}
    )
    folder = cache_root(cache_dir) / safe_name(encoder.name) / dataset_dirname(dataset.name)
    return folder / f"{dataset.split}-{key}.npz"


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
) -> tuple[np.ndarray, np.ndarray]:
    """Image embeddings (n, dim) float32 L2-normalised and labels (n,) int64 of a dataset split, cached.

    ``dataset`` is a name (with ``split``) or an :class:`ImageDataset`. Work is done and saved in shards of
    ``shard_size`` images, so an interrupted run resumes where it stopped; ``num_workers`` > 0 preprocesses in
    DataLoader workers.
    """
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    ds = _resolve(dataset, split, root, download)
    if len(ds) == 0:
        raise ValueError(f"{ds.name}/{ds.split} has no images")
    ident = encoder_identity(encoder)
    path = image_cache_path(encoder, ds, cache_dir)
    key = path.stem.split("-", 1)[1]
    expected = {
        "format": FORMAT_VERSION,
        "kind": "images",
        "key": key,
        "encoder": ident,
        "dataset": ds.name,
        "dataset_identity": ds.identity,
        "split": ds.split,
    }
    cached = _read_npz(path, expected)
    if cached is not None:
        log.info("read %d cached image embeddings from %s", len(ds), path)
        return _checked_labels(cached[1], ds, path)

    shard_dir = path.with_suffix(".shards")
    ranges = [range(s, min(s + shard_size, len(ds))) for s in range(0, len(ds), shard_size)]
    parts: dict[int, np.ndarray] = {}
    for r in ranges:
        shard = _read_npz(shard_dir / f"{r.start:09d}-{r.stop:09d}.npz", {**expected, "start": r.start, "stop": r.stop})
        if shard is not None:
            parts[r.start] = shard[1]["embeddings"]
    done = sum(len(r) for r in ranges if r.start in parts)
    if done:
        log.info("%s: resuming, %d of %d images already embedded", path.name, done, len(ds))
    from tqdm.auto import tqdm

    started = time.perf_counter()
    with tqdm(
        total=len(ds), initial=done, unit="img", desc=f"{ident['name']} {ds.name}/{ds.split}", disable=not progress
    ) as bar:
        for r in ranges:
            if r.start in parts:
                continue
            chunks = []
            for batch in _batches(ds, r, batch_size, encoder, num_workers):
                chunks.append(
                    _normalised(
                        encoder.encode_images(batch, batch_size=batch_size),
                        len(batch),
                        ident["dim"],
                        "image embeddings",
                    )
                )
                bar.update(len(batch))
            emb = np.concatenate(chunks)
            arrays = {"embeddings": emb, "labels": ds.labels[r.start : r.stop]}
            _write_npz(
                shard_dir / f"{r.start:09d}-{r.stop:09d}.npz",
                _meta(
                    "images",
                    key,
                    ident,
                    arrays,
                    dataset=ds.name,
                    dataset_identity=ds.identity,
                    split=ds.split,
                    start=r.start,
                    stop=r.stop,
                ),
                **arrays,
            )
            parts[r.start] = emb
    computed = len(ds) - done
    if computed:
        rate = computed / max(time.perf_counter() - started, 1e-9)
        log.info(
            "embedded %d images of %s/%s with %s at %.1f images/s", computed, ds.name, ds.split, ident["name"], rate
        )
    arrays = {"embeddings": np.concatenate([parts[r.start] for r in ranges]), "labels": ds.labels}
    _write_npz(
        path,
        _meta("images", key, ident, arrays, dataset=ds.name, dataset_identity=ds.identity, split=ds.split),
        **arrays,
    )
    shutil.rmtree(shard_dir, ignore_errors=True)
    return arrays["embeddings"], arrays["labels"].astype(np.int64)


def _checked_labels(arrays: dict[str, np.ndarray], ds: ImageDataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    labels = arrays["labels"].astype(np.int64)
    if not np.array_equal(labels, ds.labels):
        raise CacheMismatchError(f"cache file {path} holds labels that differ from {ds.name}/{ds.split}'s: delete it")
    return arrays["embeddings"], labels


def text_cache_path(
    encoder: Any,
    texts: Sequence[str],
    template: str | Sequence[str] = PAPER_TEMPLATE,
    cache_dir: str | Path | None = None,
) -> Path:
    """Where ``text_embeddings`` keeps these texts' embeddings for this encoder and template(s)."""
    payload = {
        "kind": "texts",
        "format": FORMAT_VERSION,
        "encoder": _text_identity(encoder),
        "templates": as_templates(template),
        "texts": list(texts),
    }
    return cache_root(cache_dir) / safe_name(encoder.name) / "texts" / f"{_hash(payload)}.npz"


def text_embeddings(
    encoder: Any,
    texts: Sequence[str],
    template: str | Sequence[str] = PAPER_TEMPLATE,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Text embeddings (m, dim) float32 L2-normalised of ``template`` filled with each (cleaned) text, cached.

    With a list of templates each text's template embeddings are normalised, averaged and renormalised.
    """
    if not getattr(encoder, "has_text", False):
        raise ValueError(
            f"encoder {getattr(encoder, 'name', encoder)!r} is image-only (has_text=False): it has no text embeddings; "
            f"use a vision-language encoder (e.g. clip-vit-b16) for class texts and dictionaries"
        )
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty")
    templates = as_templates(template)
    ident = _text_identity(encoder)
    path = text_cache_path(encoder, texts, templates, cache_dir)
    key = path.stem
    expected = {"format": FORMAT_VERSION, "kind": "texts", "key": key, "encoder": ident, "templates": templates}
    cached = _read_npz(path, expected)
    if cached is not None and cached[0].get("count") == len(texts):
        return cached[1]["embeddings"]
    total = np.zeros((len(texts), ident["dim"]), dtype=np.float64)
    for t in templates:
        prompts = make_prompts(texts, t)
        total += _normalised(
            encoder.encode_texts(prompts, batch_size=batch_size), len(texts), ident["dim"], "text embeddings"
        )
    emb = _normalised(total, len(texts), ident["dim"], "averaged text embeddings")
    arrays = {"embeddings": emb}
    _write_npz(path, _meta("texts", key, ident, arrays, templates=templates, first_texts=texts[:5]), **arrays)
    return emb


def load_embedding_set(
    encoder: Any,
    dataset: str,
    dictionary: str | Sequence[str] | None = "imagenet",
    template: str | Sequence[str] = PAPER_TEMPLATE,
    root: str | Path | None = None,
    dictionary_size: int | None = None,
    dictionary_exclude: Sequence[str] = (),
    download: bool = False,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    num_workers: int = 0,
) -> Any:
    """Train and test image embeddings, class-text and dictionary embeddings of one encoder as a ``grid.EmbeddingSet``.

    ``encoder`` is an encoder object or a name for :func:`bliss_utils.encoders.load_encoder`; ``dictionary`` a name for
    :func:`bliss_utils.dictionaries.load_dictionary`, a list of entries, or None. Image-only encoders give no texts.
    """
    from .dictionaries import load_dictionary
    from .grid import EmbeddingSet

    if isinstance(encoder, str):
        from .encoders import load_encoder

        encoder = load_encoder(encoder)
    common = {
        "cache_dir": cache_dir,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "progress": progress,
        "num_workers": num_workers,
    }
    train_ds = load_dataset(dataset, "train", root=root, download=download)
    test_ds = load_dataset(dataset, "test", root=root, download=download)
    if train_ds.class_names != test_ds.class_names:
        raise ValueError(f"{dataset}: train and test splits list different classes")
    train, train_labels = image_embeddings(encoder, train_ds, **common)
    test, test_labels = image_embeddings(encoder, test_ds, **common)
    class_texts = dictionary_emb = None
    entries: list[str] | None = None
    if getattr(encoder, "has_text", False):
        class_texts = text_embeddings(encoder, train_ds.class_names, template, cache_dir=cache_dir)
        if dictionary is not None:
            if isinstance(dictionary, str):
                entries = load_dictionary(dictionary, size=dictionary_size, exclude=dictionary_exclude)
            else:
                entries = list(dictionary)
            dictionary_emb = text_embeddings(encoder, entries, template, cache_dir=cache_dir)
    meta = {
        "encoder": encoder_identity(encoder),
        "train_identity": train_ds.identity,
        "test_identity": test_ds.identity,
        "class_names": train_ds.class_names,
        "templates": as_templates(template),
        "dictionary": dictionary if isinstance(dictionary, str) or dictionary is None else "custom",
        "dictionary_entries": entries,
    }
    return EmbeddingSet(
        train=train,
        train_labels=train_labels,
        test=test,
        test_labels=test_labels,
        class_texts=class_texts,
        dictionary=dictionary_emb,
        encoder=encoder.name,
        dataset=train_ds.name,
        meta=meta,
    )
