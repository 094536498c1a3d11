"""The embedding cache: image and text embeddings computed once, stored safely, verified on every read.

Layout (``cache_dir`` defaults to :func:`bliss_utils.config.embeddings_dir`)::

    <cache_dir>/<encoder>/<dataset>/<split>-<key>.npz   embeddings, labels and the metadata JSON, in one archive
    <cache_dir>/<encoder>/<dataset>/<split>-<key>.json  the same metadata, for people
    <cache_dir>/<encoder>/<dataset>/<split>-<key>.shards/<start>-<stop>.npz   finished shards of an unfinished run
    <cache_dir>/<encoder>/texts/<key>.npz (+ .json)     text embeddings

``key`` hashes everything the numbers depend on: encoder name, weights identity (size and sha256 of the file loaded),
preprocessing, dimension and precision, the dataset's identity (file checksums or file list, labels) and the format
version (plus the templates and texts for text files). A lookup needs only these descriptions, not the model nor the
decoded dataset: the model is built on a miss only. When the weights or the dataset files are absent, the file is
found by searching the metadata of the cache (see docs/data.md).
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
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils import __version__, _progress, config
from bliss_utils._checks import check_positive_int, to_numpy
from bliss_utils._io import atomic_path, atomic_write_text
from bliss_utils.datasets.images import (
    SPLITS,
    DatasetNotFoundError,
    ImageDataset,
    dataset_dirname,
    dataset_identity,
    load_dataset,
    safe_name,
)
from bliss_utils.datasets.prompts import PAPER_TEMPLATE, as_templates, make_prompts

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: identities fingerprint the weights file and the dataset files; lookups without models
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
    from bliss_utils._checks import l2_normalize, to_numpy

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


# ------------------------------------------------------------------------------------------- which encoder, lazily


class _Handle:
    """An encoder request: its identity (as far as known without the model) and the model, loaded only when needed."""

    def __init__(self, encoder: Any, weights: Any = None, preprocess: Any = "default", device: Any = None) -> None:
        from bliss_utils.encoders import preprocess_for

        self.loaded: Any = None
        # one option for all encoders, or {encoder name: option} as the notebooks' PREPROCESS parameter holds it
        preprocess = preprocess_for(str(getattr(encoder, "name", encoder)), preprocess)
        self.preprocess, self.device, self.weights = preprocess, device, weights
        self.hint: str | None = None  # a weights id (or part of one) to pick among cached identities
        # with no device asked for, a cached file made at another precision (e.g. fp16 on a GPU) may serve
        self.strict_precision = device is not None or not isinstance(encoder, str)
        if not isinstance(encoder, str):
            encoder_identity(encoder)  # raises a clear ValueError for a non-encoder
            self.name, self.spec, self.exact, self.loaded = str(encoder.name), encoder, True, encoder
            self.has_text = bool(getattr(encoder, "has_text", False))
            return
        from bliss_utils import encoders

        self.name = encoder
        try:
            self.spec = encoders.describe_encoder(encoder, weights=weights, preprocess=preprocess, device=device)
            self.exact = True
        except encoders.WeightsNotFoundError:
            # not on this machine: a copied cache may still hold this encoder's embeddings
            info = encoders.registry.backbone(encoder)
            self.spec, self.exact = info, False
            if weights is not None:
                self.hint = str(weights)
        self.has_text = bool(getattr(self.spec, "has_text", True))

    def wanted(self) -> dict[str, Any]:
        """Encoder metadata fields a cached file must carry (what is known of the identity)."""
        if self.exact:
            return encoder_identity(self.spec)
        want: dict[str, Any] = {"name": self.name}
        if self.spec is not None:  # a named backbone: preprocessing and dimension are declared
            want["preprocess_id"] = self.spec.recipes[self.preprocess].id
            want["dim"] = self.spec.dim
        if self.device is not None:
            from bliss_utils.encoders.registry import precision_for

            want["precision"] = precision_for(self.device, self.spec)
        return want

    def matches(self, recorded: dict[str, Any], texts: bool = False) -> bool:
        """Whether a cached file's encoder identity fits this request (precision is free when no device was asked)."""
        want = self.wanted()
        if not self.strict_precision:
            want.pop("precision", None)
        if texts:
            want.pop("preprocess_id", None)
        if any(recorded.get(k) != v for k, v in want.items()):
            return False
        return self.hint is None or self.hint in str(recorded.get("weights_id", ""))

    def pin(self, recorded: dict[str, Any]) -> None:
        """Use a cached identity from now on (train, test and texts then come from the same weights)."""
        if not self.exact:
            self.hint = str(recorded["weights_id"])

    def model(self) -> Any:
        """The encoder, loaded once per process per (name, weights, preprocess, device) and weights file version."""
        if self.loaded is None:
            from bliss_utils import encoders

            # the described weights id is in the key: a replaced weights file must not be served by the old model
            version = self.spec.weights_id if self.exact else ""
            key = (self.name, str(self.weights), self.preprocess, str(self.device), version)
            if key not in _MODELS:
                _MODELS[key] = encoders.load_encoder(
                    self.name, device=self.device, weights=self.weights, preprocess=self.preprocess
                )
            self.loaded = _MODELS[key]
            if self.exact and encoder_identity(self.loaded) != encoder_identity(self.spec):
                raise RuntimeError(
                    f"{self.name}: the loaded encoder's identity {encoder_identity(self.loaded)} differs from the "
                    f"described one {encoder_identity(self.spec)}"
                )
            self.spec, self.exact = self.loaded, True
        return self.loaded


_MODELS: dict[tuple[str, ...], Any] = {}


def _candidates(folder: Path, pattern: str, accept: Any) -> list[tuple[Path, dict[str, Any]]]:
    """(npz path, metadata) of the finished cache files in ``folder`` whose JSON sidecar ``accept`` approves."""
    out = []
    for side in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("format") == FORMAT_VERSION and accept(meta):
            out.append((side.with_suffix(".npz"), meta))
    return out


def _pick(found: list[tuple[Path, dict[str, Any]]], what: str, handle: _Handle) -> tuple[Path, dict[str, Any]] | None:
    """The one cached file among ``found`` (None if none); several distinct identities: a ValueError listing them."""
    if not found:
        return None
    ids = {json.dumps([m["encoder"], m.get("dataset_identity")], sort_keys=True) for _, m in found}
    if len(ids) > 1:
        listing = "\n".join(
            f"  - weights_id={m['encoder'].get('weights_id')!r} precision={m['encoder'].get('precision')!r}"
            f" preprocess_id={m['encoder'].get('preprocess_id')!r} dataset_identity={m.get('dataset_identity')!r}"
            f" ({p.name})"
            for p, m in found
        )
        raise ValueError(
            f"the cache holds several {what} for {handle.name!r} and this machine cannot tell which one is meant "
            f"(its weights or dataset files are absent):\n{listing}\nPick one with weights='<weights_id, or a part of "
            f"it such as the sha256>' (and device= for the precision), or delete the files you do not want."
        )
    return found[0]


# ------------------------------------------------------------------------------------------------- image embeddings


def _dataset_name(name: str) -> str:
    if name.startswith("imagefolder:"):
        return f"imagefolder:{Path(name.split(':', 1)[1]).expanduser().resolve()}"
    return name


def _image_path(ident: dict[str, Any], dataset: str, split: str, dataset_ident: str, cache_dir: Any) -> Path:
    key = _hash({"kind": "images", "format": FORMAT_VERSION, "encoder": ident, "dataset": dataset_ident})
    return cache_root(cache_dir) / safe_name(ident["name"]) / dataset_dirname(dataset) / f"{split}-{key}.npz"


def image_cache_path(encoder: Any, dataset: ImageDataset, cache_dir: str | Path | None = None) -> Path:
    """Where ``image_embeddings`` keeps the merged file for this encoder (object or spec) and dataset split."""
    return _image_path(encoder_identity(encoder), dataset.name, dataset.split, dataset.identity, cache_dir)


def _image_expected(ident: dict[str, Any], key: str, dataset: str, dataset_ident: str, split: str) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "kind": "images",
        "key": key,
        "encoder": ident,
        "dataset": dataset,
        "dataset_identity": dataset_ident,
        "split": split,
    }


def _cached_images(
    handle: _Handle, dataset: str, split: str, dataset_ident: str | None, cache_dir: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """A verified cached file for this request: by its exact key when all is known, else by a metadata search."""
    if handle.exact and dataset_ident is not None:
        path = _image_path(encoder_identity(handle.spec), dataset, split, dataset_ident, cache_dir)
        expected = _image_expected(
            encoder_identity(handle.spec), path.stem.split("-", 1)[1], dataset, dataset_ident, split
        )
        return _read_npz(path, expected)
    folder = cache_root(cache_dir) / safe_name(handle.name) / dataset_dirname(dataset)

    def accept(meta: dict[str, Any]) -> bool:
        return (
            meta.get("kind") == "images"
            and meta.get("dataset") == dataset
            and meta.get("split") == split
            and (dataset_ident is None or meta.get("dataset_identity") == dataset_ident)
            and (handle.exact or meta.get("preprocess") in (None, handle.preprocess))
            and handle.matches(meta.get("encoder") or {})
        )

    chosen = _pick(_candidates(folder, f"{split}-*.json", accept), f"{dataset}/{split} image embeddings", handle)
    if chosen is None:
        return None
    path, meta = chosen
    got = _read_npz(
        path, {k: meta.get(k) for k in ("format", "kind", "key", "encoder", "dataset", "dataset_identity", "split")}
    )
    if got is not None:
        handle.pin(meta["encoder"])
        log.info(
            "using cached %s/%s embeddings of %s with weights_id=%s (%s): %s",
            dataset,
            split,
            handle.name,
            meta["encoder"].get("weights_id"),
            "weights not on this machine" if not handle.exact else "dataset files not on this machine",
            path,
        )
    return got


def _resolve(dataset: str | ImageDataset, split: str | None) -> tuple[ImageDataset | None, str, str]:
    if isinstance(dataset, ImageDataset):
        if split is not None and split != dataset.split:
            raise ValueError(f"split={split!r} disagrees with the dataset object's split {dataset.split!r}")
        return dataset, dataset.name, dataset.split
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a name or an ImageDataset; got {type(dataset).__name__}")
    if split is None:
        raise ValueError("give split='train' or 'test' with a dataset name")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    return None, _dataset_name(dataset), split


def _image_embeddings(
    handle: _Handle,
    dataset: str | ImageDataset,
    split: str | None,
    root: Any,
    cache_dir: Any,
    batch_size: int,
    shard_size: int,
    progress: bool,
    download: bool,
    num_workers: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    for label, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        check_positive_int(value, label)
    ds, name, split = _resolve(dataset, split)
    not_found = None
    if ds is not None:
        dataset_ident: str | None = ds.identity
    else:
        try:
            dataset_ident = dataset_identity(name, split, root=root, download=download)
        except DatasetNotFoundError as err:
            dataset_ident, not_found = None, err
    cached = _cached_images(handle, name, split, dataset_ident, cache_dir)
    if cached is not None:
        meta, arrays = cached
        labels = arrays["labels"].astype(np.int64)
        if ds is not None and not np.array_equal(labels, ds.labels):
            raise CacheMismatchError(f"a cache file holds labels that differ from {ds.name}/{ds.split}'s: delete it")
        return arrays["embeddings"], labels, meta
    if not_found is not None:
        raise not_found
    if ds is None:
        ds = load_dataset(name, split, root=root, download=download)
    return _compute_images(handle.model(), ds, cache_dir, batch_size, shard_size, progress, num_workers, handle)


def _compute_images(
    encoder: Any,
    ds: ImageDataset,
    cache_dir: Any,
    batch_size: int,
    shard_size: int,
    progress: bool,
    num_workers: int,
    handle: _Handle,
) -> tuple[np.ndarray, np.ndarray, dict]:
    if len(ds) == 0:
        raise ValueError(f"{ds.name}/{ds.split} has no images")
    ident = encoder_identity(encoder)
    path = image_cache_path(encoder, ds, cache_dir)
    key = path.stem.split("-", 1)[1]
    expected = _image_expected(ident, key, ds.name, ds.identity, ds.split)
    cached = _read_npz(path, expected)  # an Encoder object given directly lands here on a second call
    if cached is not None:
        log.info("read %d cached image embeddings from %s", len(ds), path)
        labels = cached[1]["labels"].astype(np.int64)
        if not np.array_equal(labels, ds.labels):
            raise CacheMismatchError(
                f"cache file {path} holds labels that differ from {ds.name}/{ds.split}'s: delete it"
            )
        return cached[1]["embeddings"], labels, cached[0]
    extra = {
        "dataset": ds.name,
        "dataset_identity": ds.identity,
        "split": ds.split,
        "preprocess": handle.preprocess,
        "class_names": ds.class_names,
    }
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
    started = time.perf_counter()
    with _progress.progress(
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
                _meta("images", key, ident, arrays, **extra, start=r.start, stop=r.stop),
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
    meta = _meta("images", key, ident, arrays, **extra)
    _write_npz(path, meta, **arrays)
    shutil.rmtree(shard_dir, ignore_errors=True)
    return arrays["embeddings"], arrays["labels"].astype(np.int64), meta


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
    preprocess: str | Mapping[str, str] = "default",
    device: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Image embeddings (n, dim) float32 L2-normalised and labels (n,) int64 of a dataset split, cached.

    ``encoder`` is a name (then ``weights``, ``preprocess``, ``device`` as for ``load_encoder``; the model is built
    only on a cache miss) or an encoder object; ``preprocess`` may also map encoder names to options (``preprocess_for``). ``dataset`` is a name (with ``split``) or an :class:`ImageDataset`.
    Work is saved in shards of ``shard_size`` images, so an interrupted run resumes where it stopped;
    ``num_workers`` > 0 preprocesses in DataLoader workers.
    """
    handle = _Handle(encoder, weights, preprocess, device)
    emb, labels, _ = _image_embeddings(
        handle, dataset, split, root, cache_dir, batch_size, shard_size, progress, download, num_workers
    )
    return emb, labels


# -------------------------------------------------------------------------------------------------- text embeddings


def _texts_sha(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=True).encode()).hexdigest()


def _text_path(ident: dict[str, Any], texts: Sequence[str], templates: list[str], cache_dir: Any) -> Path:
    payload = {
        "kind": "texts",
        "format": FORMAT_VERSION,
        "encoder": ident,
        "templates": templates,
        "texts": list(texts),
    }
    return cache_root(cache_dir) / safe_name(ident["name"]) / "texts" / f"{_hash(payload)}.npz"


def text_cache_path(
    encoder: Any,
    texts: Sequence[str],
    template: str | Sequence[str] = PAPER_TEMPLATE,
    cache_dir: str | Path | None = None,
) -> Path:
    """Where ``text_embeddings`` keeps these texts' embeddings for this encoder (object or spec) and template(s)."""
    return _text_path(_text_identity(encoder), texts, as_templates(template), cache_dir)


def _text_embeddings(
    handle: _Handle, texts: Sequence[str], template: Any, cache_dir: Any, batch_size: int, progress: bool
) -> np.ndarray:
    if not handle.has_text:
        raise ValueError(
            f"encoder {handle.name!r} is image-only (has_text=False): it has no text embeddings; "
            f"use a vision-language encoder (e.g. clip-vit-b16) for class texts and dictionaries"
        )
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty")
    templates = as_templates(template)
    sha = _texts_sha(texts)
    if handle.exact:
        ident = _text_identity(handle.spec)
        path = _text_path(ident, texts, templates, cache_dir)
        expected = {
            "format": FORMAT_VERSION,
            "kind": "texts",
            "key": path.stem,
            "encoder": ident,
            "templates": templates,
        }
        cached = _read_npz(path, expected)
        if cached is not None and cached[0].get("count") == len(texts):
            return cached[1]["embeddings"]
    else:

        def accept(meta: dict[str, Any]) -> bool:
            return (
                meta.get("kind") == "texts"
                and meta.get("templates") == templates
                and meta.get("texts_sha256") == sha
                and handle.matches(meta.get("encoder") or {}, texts=True)
            )

        folder = cache_root(cache_dir) / safe_name(handle.name) / "texts"
        chosen = _pick(_candidates(folder, "*.json", accept), "text embeddings", handle)
        if chosen is not None:
            path, meta = chosen
            got = _read_npz(path, {k: meta.get(k) for k in ("format", "kind", "key", "encoder", "templates")})
            if got is not None:
                handle.pin(meta["encoder"])
                log.info(
                    "using cached text embeddings of %s with weights_id=%s (weights not on this machine): %s",
                    handle.name,
                    meta["encoder"].get("weights_id"),
                    path,
                )
                return got[1]["embeddings"]
    encoder = handle.model()
    if not getattr(encoder, "has_text", False):
        raise ValueError(f"encoder {handle.name!r} is image-only (has_text=False): it has no text embeddings")
    ident = _text_identity(encoder)
    path = _text_path(ident, texts, templates, cache_dir)
    total = np.zeros((len(texts), ident["dim"]), dtype=np.float64)
    starts = range(0, len(texts), batch_size)
    # one encode_texts call per batch, the batches the encoder would form itself, so a long dictionary shows a bar
    with _progress.progress(
        total=len(texts) * len(templates),
        unit="text",
        desc=f"{ident['name']} texts",
        disable=not progress or len(starts) * len(templates) < 2,
    ) as bar:
        for t in templates:
            prompts = make_prompts(texts, t)
            parts = []
            for s in starts:
                parts.append(encoder.encode_texts(prompts[s : s + batch_size], batch_size=batch_size))
                bar.update(len(parts[-1]))
            total += _normalised(
                np.concatenate([to_numpy(a) for a in parts]), len(texts), ident["dim"], "text embeddings"
            )
    emb = _normalised(total, len(texts), ident["dim"], "averaged text embeddings")
    arrays = {"embeddings": emb}
    _write_npz(
        path,
        _meta("texts", path.stem, ident, arrays, templates=templates, texts_sha256=sha, first_texts=texts[:5]),
        **arrays,
    )
    return emb


def text_embeddings(
    encoder: Any,
    texts: Sequence[str],
    template: str | Sequence[str] = PAPER_TEMPLATE,
    *,
    weights: str | Path | None = None,
    preprocess: str | Mapping[str, str] = "default",
    device: Any = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Text embeddings (m, dim) float32 L2-normalised of ``template`` filled with each (cleaned) text, cached.

    ``encoder`` is a name (the model is built only on a cache miss) or an encoder object. With a list of templates
    each text's template embeddings are normalised, averaged and renormalised. ``progress`` shows a bar when the
    texts take more than one batch.
    """
    return _text_embeddings(
        _Handle(encoder, weights, preprocess, device), texts, template, cache_dir, batch_size, progress
    )


# ------------------------------------------------------------------------------------------------- embedding sets


def load_embedding_set(
    encoder: Any,
    dataset: str,
    *,
    weights: str | Path | None = None,
    preprocess: str | Mapping[str, str] = "default",
    device: Any = None,
    dictionary: str | Sequence[str] | None = "imagenet",
    template: str | Sequence[str] = PAPER_TEMPLATE,
    names: str = "paper",
    root: str | Path | None = None,
    dictionary_size: int | None = None,
    dictionary_exclude: Sequence[str] = (),
    download: bool = False,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    num_workers: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> Any:
    """Train and test image embeddings, class-text and dictionary embeddings of one encoder as a ``grid.EmbeddingSet``.

    ``encoder`` is a name (see :func:`bliss_utils.encoders.describe_encoder`: a cache hit needs neither the model nor
    the dataset files) or an encoder object; ``dictionary`` a name for :func:`bliss_utils.datasets.dictionaries.load_dictionary`,
    a list of entries, or None; ``names`` the style of the class names in the prompts (``"paper"``: as the authors
    wrote them, e.g. CIFAR-100's ``aquarium_fish``; ``"clean"``: underscores as spaces). Image-only encoders give no
    texts.
    """
    from bliss_utils.datasets.dictionaries import load_dictionary
    from bliss_utils.datasets.images import NAME_STYLES
    from bliss_utils.datasets.prompts import clean_label
    from bliss_utils.evaluation.grid import EmbeddingSet

    if names not in NAME_STYLES:
        raise ValueError(f"names must be one of {list(NAME_STYLES)}; got {names!r}")

    handle = _Handle(encoder, weights, preprocess, device)
    common = (root, cache_dir, batch_size, shard_size, progress, download, num_workers)
    train, train_labels, train_meta = _image_embeddings(handle, dataset, "train", *common)
    test, test_labels, test_meta = _image_embeddings(handle, dataset, "test", *common)
    class_names = train_meta.get("class_names")
    if class_names != test_meta.get("class_names"):
        raise ValueError(f"{dataset}: train and test splits list different classes")
    if names == "clean":
        class_names = [clean_label(n) for n in class_names]
    class_texts = dictionary_emb = None
    entries: list[str] | None = None
    if handle.has_text:
        class_texts = _text_embeddings(handle, class_names, template, cache_dir, 256, progress)
        if dictionary is not None:
            if isinstance(dictionary, str):
                entries = load_dictionary(dictionary, size=dictionary_size, exclude=dictionary_exclude)
            else:
                entries = list(dictionary)
            dictionary_emb = _text_embeddings(handle, entries, template, cache_dir, 256, progress)
    meta = {
        "encoder": train_meta["encoder"],
        "train_identity": train_meta["dataset_identity"],
        "test_identity": test_meta["dataset_identity"],
        "class_names": class_names,
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
        encoder=handle.name,
        dataset=train_meta["dataset"],
        meta=meta,
    )
