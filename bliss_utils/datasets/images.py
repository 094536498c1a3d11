"""Image datasets of the paper (CIFAR-10, CIFAR-100, TinyImageNet) and any ImageFolder, as (PIL image, label) sequences.

Every dataset carries an ``identity`` fingerprint that the embedding cache puts into its key, so embeddings of one
copy of a dataset are never served for another. It is cheap, and :func:`dataset_identity` computes it without
building the dataset: for CIFAR the sha256 of the batch files (remembered per file version), for file-based datasets
the sorted relative file list with sizes plus the labels and class names. No image is decoded.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bliss_utils import config
from bliss_utils.datasets.files import count_by_suffix, describe_bad, find_bad_images, read_rgb
from bliss_utils.datasets.prompts import clean_label

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
TINYIMAGENET_FOLDER = "tiny-imagenet-200"
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# Written by bliss_utils.datasets.synthetic next to generated data: such files cannot match torchvision's md5 sums.
SYNTHETIC_MARKER = "BLISS_SYNTHETIC.json"
# images per class in the released (train, test) splits; TinyImageNet's test split is its labelled val
PER_CLASS = {"cifar10": (5000, 1000), "cifar100": (500, 100), "tinyimagenet": (500, 50)}
UNLABELLED = -1  # the label of every image of an unlabelled test split (a flat folder of images)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or unreadable; the message says what to download and where to put it."""


def _sha(*parts: bytes) -> str:
    # joining one part returns it as is (no copy of a large array's bytes)
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


class ImageDataset:
    """A sequence of ``(PIL.Image RGB, int label)``, held as a uint8 array (N, H, W, 3) or as a list of image files.

    Attributes: ``name``, ``split``, ``class_names`` (the strings prompts are made of, in label order: see
    :func:`class_names`), ``labels`` (int64 array),
    ``identity`` (fingerprint used in cache keys) and ``transform`` (applied to each PIL image when set).
    """

    def __init__(
        self,
        name: str,
        split: str,
        class_names: Sequence[str],
        labels: Any,
        *,
        arrays: np.ndarray | None = None,
        paths: Sequence[str | Path] | None = None,
        base: Path | None = None,
        identity: str | None = None,
    ) -> None:
        if (arrays is None) == (paths is None):
            raise ValueError("give exactly one of arrays= (uint8 images) or paths= (image files)")
        self.name = name
        self.split = split
        self.class_names = _checked_names(class_names, f"{name}/{split}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.arrays = arrays
        self.paths = [Path(p) for p in paths] if paths is not None else None
        self.base = base
        self.transform: Callable[[Any], Any] | None = None
        n = len(arrays) if arrays is not None else len(self.paths)
        if self.labels.shape != (n,):
            raise ValueError(f"{name}/{split}: {n} images but labels of shape {self.labels.shape}")
        if n and self.labelled and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"{name}/{split}: labels outside 0..{len(self.class_names) - 1} (or {UNLABELLED} for every image)"
            )
        self.identity = identity or self._fingerprint(base)

    def _fingerprint(self, base: Path | None) -> str:
        if self.arrays is not None:
            content = _sha(np.ascontiguousarray(self.arrays).tobytes())
        else:
            # relative paths and sizes: hashing every image's bytes would cost minutes on the full datasets
            rel = [str(p.relative_to(base)) if base else str(p) for p in self.paths]
            sizes = [p.stat().st_size for p in self.paths]
            content = _sha("\n".join(f"{r}\t{s}" for r, s in zip(rel, sizes)).encode())
        labels = _sha(self.labels.astype("<i8").tobytes(), "\n".join(self.class_names).encode())
        return f"{self.name}|{self.split}|n={len(self)}|labels={labels}|content={content}"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        """Whether the images carry class labels (an unlabelled split has :data:`UNLABELLED` everywhere)."""
        return not (self.labels == UNLABELLED).all() or len(self.labels) == 0

    def image(self, index: int) -> Any:
        """Return image ``index`` as an RGB PIL image (no transform; files converted as ``datasets.files`` says)."""
        from PIL import Image

        if self.arrays is not None:
            return Image.fromarray(self.arrays[index])
        return read_rgb(self.paths[index])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, classes={len(self.class_names)})"


# ----------------------------------------------------------------------------------------------- class names, no data


def _package_lines(filename: str) -> list[str]:
    return [
        ln.strip() for ln in (config.PACKAGE_DATA / filename).read_text(encoding="utf-8").splitlines() if ln.strip()
    ]


def tinyimagenet_classes() -> list[tuple[str, str]]:
    """Return TinyImageNet's (wnid, raw label) pairs in wnid-sorted order, as an ImageFolder sorts them."""
    with open(config.PACKAGE_DATA / "tinyimagenet_classes.tsv", encoding="utf-8", newline="") as f:
        rows = [(r["wnid"], r["label"]) for r in csv.DictReader(f, delimiter="\t")]
    return sorted(rows)


def paper_tinyimagenet_label(label: str) -> str:
    """A TinyImageNet label as the authors prompt it: underscores replaced by spaces, nothing else changed."""
    return label.replace("_", " ")


def _checked_names(names: Sequence[str], what: str) -> list[str]:
    names = list(names)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"{what}: class names must be non-empty strings; got {bad[0]!r}")
    return names


_CLASS_NAMES: dict[str, Callable[[], list[str]]] = {
    "cifar10": lambda: _package_lines("cifar10_classes.txt"),
    "cifar100": lambda: _package_lines("cifar100_classes.txt"),
    "tinyimagenet": lambda: [paper_tinyimagenet_label(label) for _, label in tinyimagenet_classes()],
}


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown dataset {name!r}: valid names are {', '.join(DATASETS)} or 'imagefolder:<path>'")


NAME_STYLES = ("paper", "clean")


def class_names(dataset: str, names: str = "paper") -> list[str]:
    """Class names of a dataset in label order, as prompts use them (no data needed on disk).

    ``names="paper"``: the authors' strings. CIFAR-10/100 keep torchvision's raw names ("aquarium_fish",
    "maple_tree": 9 CIFAR-100 names keep their underscore); TinyImageNet's have underscores replaced by spaces, as
    the authors' loader does. ``names="clean"``: every name through :func:`~bliss_utils.datasets.prompts.clean_label`
    (underscores become spaces). ImageFolder class names are the cleaned folder names in both styles.
    """
    if names not in NAME_STYLES:
        raise ValueError(f"names must be one of {list(NAME_STYLES)}; got {names!r}")
    if isinstance(dataset, str) and dataset.startswith("imagefolder:"):
        return _folder_classes(Path(dataset.split(":", 1)[1]).expanduser())[0]
    if not isinstance(dataset, str) or dataset not in _CLASS_NAMES:
        raise _unknown(dataset)
    raw = _CLASS_NAMES[dataset]()
    return [clean_label(c) for c in raw] if names == "clean" else raw


# ----------------------------------------------------------------------------------------------------------- CIFAR


class CifarFiles(NamedTuple):
    """Where a CIFAR archive's files lie once extracted (torchvision's CIFAR10/CIFAR100 read this layout)."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    url: str


# Naming the files here keeps torchvision (3 s to import) out of every load that only checks or fingerprints them;
# tests/test_datasets.py checks that they agree with torchvision's lists.
CIFAR_FILES = {
    "cifar10": CifarFiles(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": CifarFiles(
        "cifar-100-python", ("train",), ("test",), "meta", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    ),
}


def _cifar_class(name: str, synthetic: bool) -> Any:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    if not synthetic:
        return cls
    # Generated files cannot match the md5 sums of the real ones. check_integrity(path, md5=None) only checks that
    # the file exists, so this subclass runs torchvision's own reading code with the checksums switched off.
    unchecked = {key: [[f, None] for f, _ in getattr(cls, key)] for key in ("train_list", "test_list")}
    return type(f"Synthetic{cls.__name__}", (cls,), {**unchecked, "meta": {**cls.meta, "md5": None}})


def _cifar_identity(name: str, split: str, folder: Path) -> str:
    """The split's batch files and the meta file, by sha256: what the arrays are read from."""
    from bliss_utils._filehash import file_sha256

    layout = CIFAR_FILES[name]
    files = [*(layout.train if split == "train" else layout.test), layout.meta]
    digest = _sha("\n".join(f"{f}\t{file_sha256(folder / f)}" for f in files).encode())
    return f"{name}|{split}|files={digest}"


def _cifar_folder(name: str, root: Path, download: bool) -> Path:
    """The CIFAR folder under ``root`` with every file present (downloaded first if asked), else the clear error."""
    layout = CIFAR_FILES[name]
    folder = root / layout.folder
    needed = [*layout.train, *layout.test, layout.meta]
    if download and any(not (folder / f).is_file() for f in needed):
        root.mkdir(parents=True, exist_ok=True)
        _cifar_class(name, synthetic=False)(str(root), train=True, download=True)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{name} not found: {folder} lacks {', '.join(missing)}. Download it with "
            f"`python -m bliss_utils embed --dataset {name} --download ...` "
            f"or load_dataset({name!r}, ..., download=True), "
            f"or extract {layout.url} into {root} (or set BLISS_DATA_DIR / pass root= to the folder that holds "
            f"{layout.folder}/)."
        )
    return folder


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageDataset:
    try:
        import torchvision.datasets  # noqa: F401
    except ImportError as err:  # pragma: no cover - torchvision is a dependency
        raise ImportError("CIFAR loading needs torchvision: pip install torchvision") from err
    folder = _cifar_folder(name, root, download)
    synthetic = (folder / SYNTHETIC_MARKER).is_file()
    try:
        ds = _cifar_class(name, synthetic)(str(root), train=split == "train", download=False)
    except RuntimeError as err:
        raise DatasetNotFoundError(
            f"{name} in {folder} failed torchvision's integrity check ({err}); delete that folder and download again"
        ) from err
    names = list(ds.classes)
    if names != class_names(name):
        log.warning("%s: class names on disk %s differ from the standard list; using the ones on disk", name, names[:5])
    arrays, identity = np.ascontiguousarray(ds.data), _cifar_identity(name, split, folder)
    return ImageDataset(name, split, names, np.asarray(ds.targets), arrays=arrays, identity=identity)


# ---------------------------------------------------------------------------------------------------- TinyImageNet


def tinyimagenet_folder(root: Path) -> Path:
    """Return the ``tiny-imagenet-200`` folder under ``root`` (or ``root`` itself when it is that folder)."""
    return root if (root / "wnids.txt").is_file() else root / TINYIMAGENET_FOLDER


def download_tinyimagenet(root: Path) -> Path:
    """Download and extract TinyImageNet (about 240 MB) into ``root``; return its folder."""
    from torchvision.datasets.utils import download_and_extract_archive

    root.mkdir(parents=True, exist_ok=True)
    download_and_extract_archive(TINYIMAGENET_URL, str(root))
    return root / TINYIMAGENET_FOLDER


def _tiny_missing(folder: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"TinyImageNet not found: {what}. Download {TINYIMAGENET_URL} and unzip it so that {folder}/wnids.txt, "
        f"train/ and val/ exist (or pass download=True / --download, set BLISS_DATA_DIR, or pass root=)."
    )


def _words(folder: Path) -> dict[str, str]:
    words = folder / "words.txt"
    if not words.is_file():
        return {}
    lines = (line.partition("\t") for line in words.read_text(encoding="utf-8").splitlines())
    return {wnid.strip(): names.split(",")[0].strip() for wnid, _, names in lines}


def _load_tinyimagenet(split: str, root: Path, download: bool) -> ImageDataset:
    folder = tinyimagenet_folder(root)
    if download and not (folder / "wnids.txt").is_file():
        folder = download_tinyimagenet(root)
    if not (folder / "wnids.txt").is_file():
        raise _tiny_missing(folder, f"{folder / 'wnids.txt'} does not exist")
    wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip()})
    known = dict(tinyimagenet_classes())
    extra = _words(folder)
    names = [paper_tinyimagenet_label(known[w]) if w in known else extra.get(w) or w for w in wnids]
    if split == "train":
        per_class = [_image_files(folder / "train" / wnid / "images", "*") for wnid in wnids]
        if empty := [wnid for wnid, files in zip(wnids, per_class) if not files]:
            raise _tiny_missing(folder, f"no training images in {folder / 'train' / empty[0] / 'images'}")
        paths, labels = _by_class(per_class)
    else:
        # TinyImageNet's own test split has no labels: the paper's test split is the official validation split
        annotations = folder / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise _tiny_missing(folder, f"{annotations} does not exist")
        index = {w: i for i, w in enumerate(wnids)}
        rows = [fields for line in annotations.read_text().splitlines() if len(fields := line.split("\t")) >= 2]
        if unknown := [fields for fields in rows if fields[1] not in index]:
            raise ValueError(f"{annotations}: wnid {unknown[0][1]!r} of {unknown[0][0]} is not listed in wnids.txt")
        paths, labels = [folder / "val" / "images" / f[0] for f in rows], [index[f[1]] for f in rows]
        absent = [p for p in paths if not p.is_file()]
        if absent or not paths:
            raise _tiny_missing(folder, f"{len(absent)} validation images listed in {annotations} are missing")
    return ImageDataset("tinyimagenet", split, names, labels, paths=paths, base=folder)


# ----------------------------------------------------------------------------------------------------- ImageFolder


def _image_files(folder: Path, pattern: str) -> list[Path]:
    # none in a folder that is absent (a class folder of the other split only) or not a folder
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []


def _other_files(folder: Path) -> list[Path]:
    """Files under ``folder`` that are not images by their suffix (hidden ones, like .DS_Store, aside)."""
    files = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return sorted(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _folder_classes(path: Path) -> tuple[list[str], list[str]]:
    """Return (cleaned class names, folder names): the sorted union of the class folders of every split."""
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"image folder {path} does not exist: put the images at {path}/train/<class>/<image> and "
            f"{path}/test/<class>/<image> (or, unlabelled, {path}/test/<image>)"
        )
    dirs = [path / s for s in SPLITS if (path / s).is_dir()]
    if not dirs:
        raise DatasetNotFoundError(
            f"image folder {path} has no train/ or test/ subfolder: lay it out as {path}/train/<class>/<image> and "
            f"{path}/test/<class>/<image>"
        )
    folders = sorted(set().union(*(_class_dirs(d) for d in dirs)))
    return [clean_label(f) for f in folders], folders


def _load_imagefolder(spec: str, split: str) -> ImageDataset:
    path = Path(spec.split(":", 1)[1]).expanduser().resolve()
    names, folders = _folder_classes(path)
    split_dir = path / split
    if not split_dir.is_dir():
        raise DatasetNotFoundError(
            f"image folder {path} has no {split}/ subfolder (expected {split_dir}/<class>/<image>)"
        )
    # the images of each class folder (any depth), labelled by the folder's index
    paths, labels = _by_class([_image_files(split_dir / f, "**/*") for f in folders])
    loose = _image_files(split_dir, "*")
    if not paths and loose and split == "test":  # a flat folder: test images without labels
        paths, labels = loose, [UNLABELLED] * len(loose)
    elif loose:
        log.warning("%s: skipped %d images outside the class folders (e.g. %s)", split_dir, len(loose), loose[0].name)
    if not paths:
        where = f"{split_dir}/<class>/" + (" (or, unlabelled, directly in test/)" if split == "test" else "")
        raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {where}")
    if skipped := _other_files(split_dir):
        log.warning("%s: skipped %d files that are not images (%s)", split_dir, len(skipped), count_by_suffix(skipped))
    return ImageDataset(f"imagefolder:{path}", split, names, labels, paths=paths, base=path)


def _by_class(per_class: list[list[Path]]) -> tuple[list[Path], list[int]]:
    """The files of each class in turn, each labelled by its class's index."""
    return [p for files in per_class for p in files], [i for i, files in enumerate(per_class) for _ in files]


def without_bad_images(ds: ImageDataset) -> ImageDataset:
    """``ds`` less the image files that do not decode (listed in a warning); its identity is that of the rest."""
    if ds.paths is None:
        return ds
    bad = find_bad_images(ds.paths)
    if not bad:
        return ds
    log.warning("%s/%s: skipping %d unreadable images:\n%s", ds.name, ds.split, len(bad), describe_bad(bad))
    skip = {p for p, _ in bad}
    keep = [i for i, p in enumerate(ds.paths) if p not in skip]
    if not keep:
        raise DatasetNotFoundError(f"{ds.name}/{ds.split}: none of its {len(ds)} images can be read")
    paths, labels = [ds.paths[i] for i in keep], ds.labels[keep]
    return ImageDataset(ds.name, ds.split, ds.class_names, labels, paths=paths, base=ds.base)


# ------------------------------------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[[str, Path, bool], ImageDataset]] = {
    "cifar10": lambda split, root, download: _load_cifar("cifar10", split, root, download),
    "cifar100": lambda split, root, download: _load_cifar("cifar100", split, root, download),
    "tinyimagenet": _load_tinyimagenet,
}


def load_dataset(
    name: str, split: str, root: str | Path | None = None, download: bool = False, skip_bad_images: bool = False
) -> ImageDataset:
    """Load split ``"train"`` or ``"test"`` of ``cifar10``, ``cifar100``, ``tinyimagenet`` or ``imagefolder:<path>``.

    ``root`` defaults to :func:`bliss_utils.config.data_dir`; ``download=True`` fetches CIFAR or TinyImageNet
    when absent; ``skip_bad_images=True`` decodes every file now and leaves out those that fail (see
    :func:`without_bad_images`; otherwise embedding refuses to start while one is unreadable).
    Missing files raise :class:`DatasetNotFoundError` saying what to download and where to put it.
    """
    ds = _load(name, split, root, download)
    return without_bad_images(ds) if skip_bad_images else ds


def _load(name: str, split: str, root: str | Path | None, download: bool) -> ImageDataset:
    if split not in SPLITS:
        raise ValueError(
            f"unknown split {split!r}: use 'train' or 'test' (TinyImageNet's test is its official val split)"
        )
    if isinstance(name, str) and name.startswith("imagefolder:"):
        return _load_imagefolder(name, split)
    if name not in DATASETS:
        raise _unknown(name)
    folder = Path(root).expanduser() if root is not None else config.data_dir()
    return DATASETS[name](split, folder, download)


def dataset_identity(name: str, split: str, root: str | Path | None = None, download: bool = False) -> str:
    """``load_dataset(name, split, root).identity`` without decoding anything (CIFAR: file checksums; else file list).

    Raises :class:`DatasetNotFoundError` when the files are absent, like :func:`load_dataset`.
    """
    if name in ("cifar10", "cifar100") and split in SPLITS:
        folder = Path(root).expanduser() if root is not None else config.data_dir()
        return _cifar_identity(name, split, _cifar_folder(name, folder, download))
    # TinyImageNet and image folders are lists of files: building the dataset only lists and stats them
    return load_dataset(name, split, root=root, download=download).identity


def dataset_dirname(name: str) -> str:
    """Filesystem-safe folder name for a dataset name (``imagefolder:<path>`` -> ``imagefolder-<folder>-<hash>``)."""
    if name.startswith("imagefolder:"):
        path = name.split(":", 1)[1]
        return f"imagefolder-{safe_name(Path(path).name)}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"
    return safe_name(name)


def safe_name(text: str) -> str:
    """Replace every character outside ``[A-Za-z0-9._-]`` by ``_`` (for cache folder names)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    if not safe:
        raise ValueError(f"cannot make a folder name from {text!r}")
    return safe
