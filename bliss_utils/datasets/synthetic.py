"""Small generated stand-ins for CIFAR and TinyImageNet, written in each dataset's own on-disk format.

Tests and the notebooks' smoke mode read them through the same loaders as the real data. Each class gets a colour and
stripe pattern that is a fixed function of its NAME (``bliss_utils.datasets.looks``), plus per-image phase and noise:
a random encoder separates the classes a little, and the toy encoders (``bliss_utils.encoders.toy``) map the word to
the same look, so their text and image towers agree. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils._io import atomic_path
from bliss_utils.config import PACKAGE_DATA
from bliss_utils.datasets.images import (
    CIFAR_FILES,
    SYNTHETIC_MARKER,
    TINYIMAGENET_FOLDER,
    class_names,
    tinyimagenet_classes,
)
from bliss_utils.datasets.looks import class_images

# Bump when the images change for the same arguments, so that generated data from an older version is regenerated.
GENERATOR_VERSION = 2
# Images drawn at once: class_images holds several float64 temporaries of this many images (at 64 px, about 0.5 GB
# each), so full-size datasets are drawn in chunks; chunk i uses stream i, so one chunk is exactly class_images' call.
CHUNK = 5000

# CIFAR-100's 20 superclasses, each with its 5 fine classes (the dataset's own grouping).
_CIFAR100_COARSE = json.loads((PACKAGE_DATA / "cifar100_superclasses.json").read_text(encoding="utf-8"))


def chunked_images(
    labels: np.ndarray, names: Sequence[str], size: int, seed: int, chunk: int = CHUNK
) -> Iterator[np.ndarray]:
    """:func:`class_images` of ``labels`` in consecutive pieces of ``chunk`` images, piece i drawn with stream i."""
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer; got {chunk!r}")
    labels = np.asarray(labels, dtype=np.int64)
    for i, start in enumerate(range(0, len(labels), chunk)):
        yield class_images(labels[start : start + chunk], names, size, seed, stream=i)


def _labels(n_classes: int, per_class: int) -> np.ndarray:
    return np.tile(np.arange(n_classes, dtype=np.int64), per_class)


def _write_pickle(path: Path, obj: dict) -> None:
    # CIFAR's files are pickles (the format torchvision reads); str keys load the same way with encoding="latin1"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _fresh_folder(folder: Path, **info: object) -> None:
    # a dataset generated before (other sizes, or cut short) is replaced whole: no image of it may linger among the
    # new ones; a folder without the marker may hold real data, which is never overwritten
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / SYNTHETIC_MARKER).is_file():
            raise FileExistsError(
                f"{folder} holds files that were not generated here; generated data does not "
                "overwrite them: choose another root"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the marker first, so that a generation cut short is still known as generated
    info = {"generator": "bliss_utils.datasets.synthetic", "version": GENERATOR_VERSION, **info}
    (folder / SYNTHETIC_MARKER).write_text(json.dumps(info, indent=1))


def _check_counts(**counts: int) -> None:
    for name, n in counts.items():
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {n!r}")


def make_fake_cifar(
    root: str | Path,
    name: str = "cifar10",
    n_train_per_class: int = 5,
    n_test_per_class: int = 3,
    seed: int = 0,
    chunk: int = CHUNK,
) -> Path:
    """Write a fake CIFAR-10/100 in CIFAR's own format under ``root`` (``chunk`` images drawn at a time); return it."""
    counts = {"n_train_per_class": n_train_per_class, "n_test_per_class": n_test_per_class}
    _check_counts(**counts)
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"name must be 'cifar10' or 'cifar100'; got {name!r}")
    names = class_names(name)
    train_y, test_y = _labels(len(names), n_train_per_class), _labels(len(names), n_test_per_class)
    # CIFAR stores each image as 3072 bytes: the 1024 red, then green, then blue values, row-major
    pieces = chunked_images(np.concatenate([train_y, test_y]), names, 32, seed, chunk)
    flat = np.concatenate([np.empty((0, 3072), np.uint8), *(p.transpose(0, 3, 1, 2).reshape(-1, 3072) for p in pieces)])
    train_x, test_x = flat[: len(train_y)], flat[len(train_y) :]
    layout = CIFAR_FILES[name]
    folder = Path(root) / layout.folder
    _fresh_folder(folder, dataset=name, seed=seed, **counts)
    write = _write_cifar10 if name == "cifar10" else _write_cifar100
    write(folder, layout, names, (train_y, train_x), (test_y, test_x))
    return folder


def _files(n: int, prefix: str) -> list[str]:
    return [f"{prefix}_{i}.png" for i in range(n)]


def _write_cifar10(folder: Path, layout: Any, names: list[str], train: tuple, test: tuple) -> None:
    """CIFAR-10's python pickles: five training batches, one test batch, the meta file."""
    (train_y, train_x), (test_y, test_x) = train, test
    batches = np.array_split(np.arange(len(train_y)), len(layout.train))
    for i, (file, idx) in enumerate(zip(layout.train, batches, strict=True), start=1):
        label = f"training batch {i} of {len(layout.train)}"
        batch = {"labels": train_y[idx].tolist(), "data": train_x[idx], "filenames": _files(len(idx), f"train{i}")}
        _write_pickle(folder / file, {"batch_label": label, **batch})
    test = {"labels": test_y.tolist(), "data": test_x, "filenames": _files(len(test_y), "test")}
    _write_pickle(folder / layout.test[0], {"batch_label": "testing batch 1 of 1", **test})
    per_batch = len(train_y) // len(layout.train) or 1
    _write_pickle(folder / layout.meta, {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})


def _write_cifar100(folder: Path, layout: Any, names: list[str], train: tuple, test: tuple) -> None:
    """CIFAR-100's python pickles: one training and one test file with fine and coarse labels, the meta file."""
    coarse_of = {fine: c for c, fines in enumerate(_CIFAR100_COARSE.values()) for fine in fines}
    coarse = np.array([coarse_of[n] for n in names])
    for split, (y, x) in (("train", train), ("test", test)):
        labels = {"fine_labels": y.tolist(), "coarse_labels": coarse[y].tolist()}
        content = {"filenames": _files(len(y), split), "batch_label": f"{split}ing batch 1 of 1", **labels, "data": x}
        _write_pickle(folder / (layout.train if split == "train" else layout.test)[0], content)
    _write_pickle(folder / layout.meta, {"fine_label_names": names, "coarse_label_names": list(_CIFAR100_COARSE)})


def make_fake_tinyimagenet(
    root: str | Path,
    n_train_per_class: int = 2,
    n_val_per_class: int = 1,
    seed: int = 0,
    n_classes: int | None = None,
    chunk: int = CHUNK,
) -> Path:
    """Write a fake TinyImageNet (64x64 JPEGs, official layout, val annotations) under ``root``; return the folder.

    ``n_classes`` keeps only the first classes in wnid order (default: all 200); images are drawn ``chunk`` at a time.
    """
    from PIL import Image

    counts = {"n_train_per_class": n_train_per_class, "n_val_per_class": n_val_per_class}
    _check_counts(**counts)
    classes = tinyimagenet_classes()
    if n_classes is not None:
        if not 1 <= n_classes <= len(classes):
            raise ValueError(f"n_classes must be between 1 and {len(classes)}; got {n_classes}")
        classes = classes[:n_classes]
    k = len(classes)
    folder = Path(root) / TINYIMAGENET_FOLDER
    _fresh_folder(folder, dataset="tinyimagenet", seed=seed, **counts)
    wnids = [w for w, _ in classes]
    # the real wnids.txt is not sorted: shuffling checks that the loader sorts, as an ImageFolder would
    order = np.random.default_rng(seed).permutation(k)
    (folder / "wnids.txt").write_text("".join(f"{wnids[i]}\n" for i in order))
    (folder / "words.txt").write_text("".join(f"{w}\t{label.replace('_', ' ')}\n" for w, label in classes))
    train_y, val_y = _labels(k, n_train_per_class), _labels(k, n_val_per_class)
    train_dirs = [folder / "train" / w / "images" for w in wnids]
    val_images = folder / "val" / "images"
    for d in (*(train_dirs if n_train_per_class else []), val_images):
        d.mkdir(parents=True, exist_ok=True)
    # train images first, then val, in one stream of labels: the same images whatever the chunk boundaries
    targets = [train_dirs[c] / f"{wnids[c]}_{i // k}.JPEG" for i, c in enumerate(train_y)]
    targets += [val_images / f"val_{i}.JPEG" for i in range(len(val_y))]
    pieces = chunked_images(np.concatenate([train_y, val_y]), [label for _, label in classes], 64, seed, chunk)
    for img, path in zip((img for piece in pieces for img in piece), targets, strict=True):
        Image.fromarray(img).save(path, format="JPEG", quality=90)
    for c in range(k) if n_train_per_class else ():
        boxes = "".join(f"{wnids[c]}_{j}.JPEG\t0\t0\t63\t63\n" for j in range(n_train_per_class))
        (folder / "train" / wnids[c] / f"{wnids[c]}_boxes.txt").write_text(boxes)
    annotations = [f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63\n" for i, c in enumerate(val_y)]
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return folder


def make_fake_imagefolder(root: str | Path, class_names: list[str], n_per_class: int = 2, seed: int = 0) -> Path:
    """Write ``root/{train,test}/<class>/*.png`` (32x32) for an ImageFolder dataset; return ``root``."""
    from PIL import Image

    _check_counts(n_per_class=n_per_class)
    root = Path(root)
    k = len(class_names)
    for s, split in enumerate(("train", "test")):
        y = _labels(k, n_per_class)
        for i, (img, c) in enumerate(zip(class_images(y, class_names, 32, seed, stream=s), y)):
            out = root / split / class_names[c]
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out / f"{i:05d}.png")
    return root
