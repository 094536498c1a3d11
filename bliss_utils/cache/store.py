"""Cache files on disk: written atomically, verified on every read, found by their metadata when keys cannot be made.

A file is ``.npz`` (arrays plus the metadata JSON, read with ``allow_pickle=False``) with the same metadata beside it
as ``.json`` for people. A damaged file reads as absent (and is recomputed); a file whose metadata names another
encoder, preprocessing or dataset raises :class:`CacheMismatchError` and is never mixed in.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils import __version__
from bliss_utils._io import atomic_path, atomic_write_text
from bliss_utils.cache.identity import FORMAT_VERSION

log = logging.getLogger(__name__)

_VERSIONED = ("numpy", "torch", "torchvision", "open_clip_torch", "transformers", "timm", "pillow")

Found = tuple[dict[str, Any], dict[str, np.ndarray]]  # (metadata, arrays) of a verified file


class CacheMismatchError(ValueError):
    """A cache file belongs to another encoder, preprocessing or dataset than the one asked for."""


def _versions() -> dict[str, str]:
    out = {"bliss_utils": __version__}
    for pkg in _VERSIONED:
        with contextlib.suppress(_metadata.PackageNotFoundError):  # not installed: nothing to record
            out[pkg] = _metadata.version(pkg)
    return out


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def metadata(kind: str, key: str, identity: dict[str, Any], arrays: dict[str, np.ndarray], **extra: Any) -> dict:
    """The metadata of a new cache file: what identifies it, shape, checksum, package versions, UTC date."""
    (count, dim), created = arrays["embeddings"].shape, _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    meta = {"format": FORMAT_VERSION, "kind": kind, "key": key, "encoder": identity, **extra}
    meta.update(count=int(count), dim=int(dim), dtype="float32", sha256=_checksum(arrays), versions=_versions())
    return {**meta, "created": created}


def write(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write arrays + metadata atomically (tmp + os.replace), then the JSON sidecar."""
    meta_json = json.dumps(meta, indent=1, sort_keys=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(meta_json), **arrays)
        f.flush()
        os.fsync(f.fileno())
    atomic_write_text(path.with_suffix(".json"), meta_json)


def _damage(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str | None:
    emb = arrays.get("embeddings")
    if emb is None or emb.dtype != np.float32 or emb.ndim != 2:
        return "no float32 (n, dim) embeddings"
    if emb.shape != (meta.get("count"), meta.get("dim")):
        return f"shape {emb.shape} but metadata says ({meta.get('count')}, {meta.get('dim')})"
    if _checksum(arrays) != meta.get("sha256"):
        return "checksum mismatch"
    return None


def read(path: Path, expected: dict[str, Any]) -> Found | None:
    """(metadata, arrays) of a verified cache file; None if absent or damaged; raise if it is someone else's."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("cache file %s is unreadable (%s): recomputing it", path, err)
        return None
    if wrong := [f"{k}={meta.get(k)!r} (expected {v!r})" for k, v in expected.items() if meta.get(k) != v]:
        raise CacheMismatchError(
            f"cache file {path} was written for {'; '.join(wrong)}: it is not mixed in. "
            f"Delete it (it is in the wrong place) or point cache_dir elsewhere."
        )
    if problem := _damage(meta, arrays):
        log.warning("cache file %s is damaged (%s): recomputing it", path, problem)
        return None
    return meta, arrays


def search(folder: Path, pattern: str, accept: Callable[[dict], bool], what: str) -> tuple[Path, dict] | None:
    """The one finished file in ``folder`` whose JSON sidecar ``accept`` approves; None if none; ValueError if several
    identities qualify (the caller cannot tell which one is meant)."""
    found = []
    for side in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("format") == FORMAT_VERSION and accept(meta):
            found.append((side.with_suffix(".npz"), meta))
    if len({json.dumps([m["encoder"], m.get("dataset_identity")], sort_keys=True) for _, m in found}) > 1:
        listing = "\n".join(
            f"  - weights_id={m['encoder'].get('weights_id')!r} precision={m['encoder'].get('precision')!r}"
            f" preprocess_id={m['encoder'].get('preprocess_id')!r} dataset_identity={m.get('dataset_identity')!r}"
            f" ({p.name})"
            for p, m in found
        )
        raise ValueError(
            f"the cache holds several {what} and this machine cannot tell which one is meant "
            f"(its weights or dataset files are absent):\n{listing}\nPick one with weights='<weights_id, or a part of "
            f"it such as the sha256>' (and device= for the precision), or delete the files you do not want."
        )
    return found[0] if found else None
