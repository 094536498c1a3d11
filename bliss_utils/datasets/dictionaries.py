"""Text dictionaries for the external text score: ImageNet-1k names, the datasets' label sets, general English words."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from bliss_utils import config
from bliss_utils._checks import check_positive_int
from bliss_utils.datasets.images import class_names
from bliss_utils.datasets.prompts import clean_label

DEFAULT_ENGLISH_SIZE = 10_000


def _imagenet_lines() -> list[str]:
    text = (config.PACKAGE_DATA / "imagenet1k_class_names.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    if len(lines) != 1000 or any(not ln.strip() for ln in lines):
        raise ValueError(f"imagenet1k_class_names.txt must hold 1,000 non-empty lines, one per class; got {len(lines)}")
    return lines


def imagenet_entries() -> list[str]:
    """The authors' dictionary: every comma-separated piece of ``imagenet1k_class_names.txt``, exactly as split.

    1,860 entries in class order. Like the authors' code it splits on "," alone, so a synonym keeps the space after
    its comma (" Tinca tinca"), and a name shared by two classes (18 of them, e.g. "crane", the bird and the
    machine) is there twice.
    """
    return [piece for line in _imagenet_lines() for piece in line.split(",")]


def imagenet_unique_entries() -> list[str]:
    """The ImageNet names whitespace-stripped with repeats dropped (first occurrence kept, class order): 1,842.

    A repeat embeds to the same vector and takes two of the K nearest-entry slots; this variant avoids that.
    """
    return list(dict.fromkeys(e.strip() for e in imagenet_entries()))


def imagenet_synonyms(labels: Iterable[str]) -> list[str]:
    """Every name of each ImageNet-1k class that has one of ``labels`` among its names (e.g. "goldfish" also gives
    "Carassius auratus"), so a dictionary can drop whole classes rather than label strings."""
    wanted = {clean_label(label).casefold() for label in labels}
    out: dict[str, None] = {}
    for line in _imagenet_lines():
        names = [n.strip() for n in line.split(",") if n.strip()]
        if any(clean_label(n).casefold() in wanted for n in names):
            out.update(dict.fromkeys(names))
    return list(out)


def english_words(size: int) -> list[str]:
    """The ``size`` most frequent purely alphabetic English words according to ``wordfreq``'s offline word list."""
    try:
        from wordfreq import top_n_list
    except ImportError as err:
        raise ImportError("the 'english' dictionary needs wordfreq: pip install wordfreq") from err
    n = size
    while True:
        # ask for more than needed: the list also holds numbers, contractions and symbols that are filtered out
        words = [w for w in top_n_list("en", int(n * 1.3) + 100) if w.isalpha()]
        if len(words) >= size or n > 2_000_000:
            break
        n *= 2
    if len(words) < size:
        raise ValueError(f"wordfreq knows only {len(words)} alphabetic English words; asked for {size}")
    return words[:size]


_DICTIONARIES: dict[str, Callable[[], list[str]]] = {
    "imagenet": imagenet_entries,
    "imagenet-unique": imagenet_unique_entries,
    **{dataset: partial(class_names, dataset) for dataset in ("cifar10", "cifar100", "tinyimagenet")},
}
DICTIONARIES = (*_DICTIONARIES, "english")


def load_dictionary(name: str = "imagenet", size: int | None = None, exclude: Iterable[str] = ()) -> list[str]:
    """Return a dictionary's entries in their fixed order, minus ``exclude``, cut to the first ``size`` entries.

    ``"imagenet"`` is the authors' 1,860 entries (exact strings, repeats kept), ``"imagenet-unique"`` the 1,842
    distinct stripped names; ``"cifar10"``, ``"cifar100"``, ``"tinyimagenet"`` are the label sets as
    :func:`~bliss_utils.datasets.class_names` gives them (the paper's strings).

    ``exclude`` compares case-insensitively after :func:`clean_label` ("aquarium_fish" removes "aquarium fish") and
    is applied before ``size``. For ``"english"`` ``size`` (default 10,000) is the number of most frequent words.
    """
    check_positive_int(size, "size", allow_none=True)
    if isinstance(exclude, str):
        raise ValueError("exclude must be a list of labels, not a single string")
    drop = {clean_label(e).casefold() for e in exclude}
    if name == "english":
        size = size or DEFAULT_ENGLISH_SIZE
        entries = english_words(size + len(drop))
    elif name in _DICTIONARIES:
        entries = _DICTIONARIES[name]()
    else:
        raise ValueError(f"unknown dictionary {name!r}: valid names are {', '.join(DICTIONARIES)}")
    kept = [e for e in entries if clean_label(e).casefold() not in drop]
    return kept[:size] if size is not None else kept
