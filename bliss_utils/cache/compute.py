"""Computing what the cache misses: image embeddings in resumable shards, text embeddings averaged over templates."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils import _progress
from bliss_utils._checks import l2_normalize, to_numpy
from bliss_utils.cache import store
from bliss_utils.cache.identity import encoder_identity, image_fields, text_identity, texts_sha
from bliss_utils.datasets.files import BadImageError, describe_bad, find_bad_images
from bliss_utils.datasets.images import ImageDataset
from bliss_utils.datasets.prompts import make_prompts

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 5000


@dataclass(frozen=True)
class Batching:
    """How a miss is computed: images per forward pass and per saved shard, DataLoader workers, a progress bar."""

    batch_size: int = 64
    shard_size: int = DEFAULT_SHARD_SIZE
    num_workers: int = 0
    progress: bool = True


def normalised(x: Any, n: int, dim: int, what: str) -> np.ndarray:
    """``x`` as float32 (n, dim) unit rows; an encoder returning another shape or non-finite values is an error."""
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


def _batches(dataset: ImageDataset, rows: range, encoder: Any, how: Batching) -> Iterator[Any]:
    """Batches of ``rows``: lists of PIL images, or preprocessed tensors from DataLoader workers."""
    if how.num_workers > 0:
        from torch.utils.data import DataLoader

        view = _Preprocessed(dataset, rows, encoder.preprocess)
        yield from DataLoader(view, batch_size=how.batch_size, num_workers=how.num_workers)
        return
    for start in range(rows.start, rows.stop, how.batch_size):
        yield [dataset.image(i) for i in range(start, min(start + how.batch_size, rows.stop))]


def _shard_path(shard_dir: Path, rows: range) -> Path:
    return shard_dir / f"{rows.start:09d}-{rows.stop:09d}.npz"


def _check_files(ds: ImageDataset, rows: list[int]) -> None:
    """Decode the files of ``rows`` before embedding any: a bad one stops the run now, naming every bad file."""
    if ds.paths is not None and rows and (bad := find_bad_images([ds.paths[i] for i in rows])):
        raise BadImageError(
            f"{ds.name}/{ds.split}: {len(bad)} image files cannot be read; nothing was embedded:\n{describe_bad(bad)}\n"
            "Replace or delete them, or skip them: skip_bad_images=True (load_dataset, load_embedding_set), "
            "embed --skip-bad-images, or SKIP_BAD_IMAGES = True in 07_your_data"
        )


def compute_images(encoder: Any, ds: ImageDataset, path: Path, preprocess: str, how: Batching) -> store.Found:
    """Embed every image of ``ds`` into ``path``, saving finished shards so an interrupted run resumes."""
    if len(ds) == 0:
        raise ValueError(f"{ds.name}/{ds.split} has no images")
    ident = encoder_identity(encoder)
    expected = image_fields(ident, ds.name, ds.split, ds.identity)
    extra = {"dataset": ds.name, "dataset_identity": ds.identity, "split": ds.split, "preprocess": preprocess}
    extra["class_names"] = ds.class_names
    shard_dir = path.with_suffix(".shards")
    ranges = [range(s, min(s + how.shard_size, len(ds))) for s in range(0, len(ds), how.shard_size)]
    parts = {}
    for r in ranges:
        if shard := store.read(_shard_path(shard_dir, r), {**expected, "start": r.start, "stop": r.stop}):
            parts[r.start] = shard[1]["embeddings"]
    if done := sum(len(r) for r in ranges if r.start in parts):
        log.info("%s: resuming, %d of %d images already embedded", path.name, done, len(ds))
    _check_files(ds, [i for r in ranges if r.start not in parts for i in r])
    started = time.perf_counter()
    desc = f"{ident['name']} {ds.name}/{ds.split}"
    with _progress.progress(total=len(ds), initial=done, unit="img", desc=desc, disable=not how.progress) as bar:
        for r in (r for r in ranges if r.start not in parts):
            chunks = []
            for batch in _batches(ds, r, encoder, how):
                emb = encoder.encode_images(batch, batch_size=how.batch_size)
                chunks.append(normalised(emb, len(batch), ident["dim"], "image embeddings"))
                bar.update(len(batch))
            arrays = {"embeddings": np.concatenate(chunks), "labels": ds.labels[r.start : r.stop]}
            meta = store.metadata("images", expected["key"], ident, arrays, **extra, start=r.start, stop=r.stop)
            store.write(_shard_path(shard_dir, r), meta, arrays)
            parts[r.start] = arrays["embeddings"]
    if len(ds) > done:
        rate = (len(ds) - done) / max(time.perf_counter() - started, 1e-9)
        log.info("embedded %d images of %s with %s at %.1f images/s", len(ds) - done, desc, ident["name"], rate)
    arrays = {"embeddings": np.concatenate([parts[r.start] for r in ranges]), "labels": ds.labels}
    meta = store.metadata("images", expected["key"], ident, arrays, **extra)
    store.write(path, meta, arrays)
    shutil.rmtree(shard_dir, ignore_errors=True)
    return meta, arrays


def compute_texts(
    encoder: Any, texts: list[str], templates: list[str], path: Path, batch_size: int, progress: bool
) -> np.ndarray:
    """Embed ``texts`` in every template into ``path``: per template unit rows, averaged, renormalised."""
    ident = text_identity(encoder_identity(encoder))
    total = np.zeros((len(texts), ident["dim"]), dtype=np.float64)
    starts = range(0, len(texts), batch_size)
    # one encode_texts call per batch, the batches the encoder would form itself, so a long dictionary shows a bar
    quiet, total_texts = not progress or len(starts) * len(templates) < 2, len(texts) * len(templates)
    with _progress.progress(total=total_texts, unit="text", desc=f"{ident['name']} texts", disable=quiet) as bar:
        for t in templates:
            prompts = make_prompts(texts, t)
            parts = []
            for s in starts:
                parts.append(to_numpy(encoder.encode_texts(prompts[s : s + batch_size], batch_size=batch_size)))
                bar.update(len(parts[-1]))
            total += normalised(np.concatenate(parts), len(texts), ident["dim"], "text embeddings")
    arrays = {"embeddings": normalised(total, len(texts), ident["dim"], "averaged text embeddings")}
    extra = {"templates": templates, "texts_sha256": texts_sha(texts), "first_texts": texts[:5]}
    store.write(path, store.metadata("texts", path.stem, ident, arrays, **extra), arrays)
    return arrays["embeddings"]
