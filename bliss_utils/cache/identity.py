"""What identifies a cached embedding: the encoder's identity, the dataset's identity, the texts and templates.

A cache file's name is a hash of these descriptions, so a lookup needs neither the model nor the decoded dataset.
Changing anything here changes every key: files already written would no longer be found.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bliss_utils import config
from bliss_utils.datasets.images import dataset_dirname, safe_name

FORMAT_VERSION = 2  # 2: identities fingerprint the weights file and the dataset files; lookups without models
ENCODER_FIELDS = ("name", "weights_id", "preprocess_id", "dim")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``<data>/embeddings``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else config.embeddings_dir()


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """What an encoder's image embeddings depend on: name, weights, preprocessing, dimension (and precision)."""
    if missing := [a for a in ENCODER_FIELDS if not hasattr(encoder, a)]:
        raise ValueError(f"{type(encoder).__name__} is not an encoder: it lacks {', '.join(missing)}")
    ident = {k: str(getattr(encoder, k)) for k in ENCODER_FIELDS[:3]} | {"dim": int(encoder.dim)}
    if getattr(encoder, "precision", None) is not None:  # fp16 on a GPU gives (slightly) different numbers than fp32
        ident["precision"] = str(encoder.precision)
    return ident


def text_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The part of an encoder identity that text embeddings depend on (not the image preprocessing)."""
    return {k: v for k, v in identity.items() if k != "preprocess_id"}


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:20]


def dataset_key_name(name: str) -> str:
    """A dataset name as cache files record it (an image folder by its absolute path)."""
    if name.startswith("imagefolder:"):
        return f"imagefolder:{Path(name.split(':', 1)[1]).expanduser().resolve()}"
    return name


def image_key(identity: dict[str, Any], dataset_ident: str) -> str:
    """The key of the image embeddings of one encoder identity on one dataset identity."""
    return _hash({"kind": "images", "format": FORMAT_VERSION, "encoder": identity, "dataset": dataset_ident})


def image_path(identity: dict[str, Any], dataset: str, split: str, dataset_ident: str, cache_dir: Any) -> Path:
    """``<cache>/<encoder>/<dataset>/<split>-<key>.npz`` for this encoder identity and dataset identity."""
    key = image_key(identity, dataset_ident)
    return cache_root(cache_dir) / safe_name(identity["name"]) / dataset_dirname(dataset) / f"{split}-{key}.npz"


def image_fields(identity: dict[str, Any], dataset: str, split: str, dataset_ident: str) -> dict[str, Any]:
    """The metadata a cached image file at :func:`image_path` must carry to be served."""
    key = image_key(identity, dataset_ident)
    fields = {"format": FORMAT_VERSION, "kind": "images", "key": key, "encoder": identity, "dataset": dataset}
    return {**fields, "dataset_identity": dataset_ident, "split": split}


def texts_sha(texts: Sequence[str]) -> str:
    """sha256 of a text list, recorded in text files so a metadata search can match the texts."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=True).encode()).hexdigest()


def text_path(identity: dict[str, Any], texts: Sequence[str], templates: list[str], cache_dir: Any) -> Path:
    """``<cache>/<encoder>/texts/<key>.npz`` for this text identity (see :func:`text_identity`), texts, templates."""
    payload = {"kind": "texts", "format": FORMAT_VERSION, "encoder": identity, "templates": templates}
    key = _hash({**payload, "texts": list(texts)})  # the very payload of format 2: keys of written files
    return cache_root(cache_dir) / safe_name(identity["name"]) / "texts" / f"{key}.npz"


def text_fields(identity: dict[str, Any], key: str, templates: list[str]) -> dict[str, Any]:
    """The metadata a cached text file with ``key`` must carry to be served."""
    return {"format": FORMAT_VERSION, "kind": "texts", "key": key, "encoder": identity, "templates": templates}
