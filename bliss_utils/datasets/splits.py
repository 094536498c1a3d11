"""The paper's normal/anomalous class splits (which classes are normal in each trial of each setting)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from bliss_utils.config import PACKAGE_DATA

SPLITS_FILE = PACKAGE_DATA / "splits.json"

# (dataset, number of normal classes) for every setting of the paper's Table 1
PAPER_SETTINGS: list[tuple[str, int]] = [("cifar10", 1), ("cifar10", 6), ("cifar10", 9), ("cifar100", 20)]
PAPER_SETTINGS.append(("tinyimagenet", 20))

_N_CLASSES = {"cifar10": 10, "cifar100": 100, "tinyimagenet": 200}


def n_classes(dataset: str) -> int:
    """Number of classes of one of the paper's datasets."""
    if dataset not in _N_CLASSES:
        raise ValueError(f"unknown dataset {dataset!r}: valid datasets are {sorted(_N_CLASSES)}")
    return _N_CLASSES[dataset]


@lru_cache(maxsize=1)
def _load_splits() -> dict[str, dict[int, tuple[tuple[int, ...], ...]]]:
    """Read and verify splits.json once (immutable copy, so callers cannot corrupt the cache)."""
    raw = json.loads(SPLITS_FILE.read_text(encoding="utf-8"))

    def checked(dataset: str, n_normal: int, trial: list) -> tuple[int, ...]:
        trial = tuple(int(c) for c in trial)
        if len(trial) != n_normal or len(set(trial)) != n_normal or not all(0 <= c < n_classes(dataset) for c in trial):
            raise ValueError(f"{SPLITS_FILE} is corrupt: {dataset} {n_normal}-class trial {list(trial)}")
        return trial

    return {
        dataset: {int(n): tuple(checked(dataset, int(n), trial) for trial in trials) for n, trials in settings.items()}
        for dataset, settings in raw.items()
        if not dataset.startswith("_")
    }


def class_splits(dataset: str, n_normal: int) -> list[list[int]]:
    """Normal classes of every trial of a paper setting, e.g. class_splits("cifar10", 6) -> 5 lists of 6 classes."""
    if (dataset, n_normal) not in PAPER_SETTINGS:
        listed = ", ".join(f"({d!r}, {n})" for d, n in PAPER_SETTINGS)
        raise ValueError(f"no paper split for dataset={dataset!r}, n_normal={n_normal!r}; valid: {listed}")
    if dataset == "cifar10" and n_normal == 1:
        # one trial per class: that class alone is normal
        return [[c] for c in range(10)]
    if dataset == "cifar10" and n_normal == 9:
        # one trial per class: that class alone is anomalous
        return [[c for c in range(10) if c != anomalous] for anomalous in range(10)]
    return [list(trial) for trial in _load_splits()[dataset][n_normal]]


def setting_name(dataset: str, n_normal: int) -> str:
    """Name of a setting as used in result tables, e.g. ("cifar10", 6) -> "cifar10-6"."""
    n_classes(dataset)
    return f"{dataset}-{int(n_normal)}"


def paper_splits() -> dict[str, list[list[int]]]:
    """Every paper setting, keyed by setting name, in the form evaluate_grid takes."""
    return {setting_name(d, n): class_splits(d, n) for d, n in PAPER_SETTINGS}


def paper_settings(
    datasets: Sequence[str] | None = None, max_trials: int = 0, n_normal: Sequence[int] | None = None
) -> dict[str, list[list[int]]]:
    """The paper's settings of ``datasets`` (all if None), optionally only ``n_normal`` classes, to ``max_trials``."""
    if max_trials < 0:
        raise ValueError(f"max_trials must be >= 0 (0 = every trial); got {max_trials}")
    unknown = set(datasets or ()) - {d for d, _ in PAPER_SETTINGS}
    if unknown:
        raise ValueError(f"unknown dataset(s) {sorted(unknown)}; the paper's are {sorted(_N_CLASSES)}")
    out = {}
    for d, n in PAPER_SETTINGS:
        if (datasets is None or d in datasets) and (n_normal is None or n in n_normal):
            trials = class_splits(d, n)
            out[setting_name(d, n)] = trials[:max_trials] if max_trials else trials
    return out


# ------------------------------------------------------------------------------------ settings of your own datasets
# A notebook's CUSTOM_SETTINGS: {setting name: {"dataset": name, "trials": [[normal class names of trial 0], ...]}}
Custom = Mapping[str, Mapping[str, Any]]


def _custom(setting: str, custom: Custom | None) -> Mapping[str, Any] | None:
    """The checked entry of ``setting`` in ``custom`` (None when it has none); a malformed entry is an error."""
    entry = (custom or {}).get(setting)
    if entry is None:
        return None
    if not isinstance(entry, Mapping) or set(entry) != {"dataset", "trials"} or not entry["trials"]:
        raise ValueError(
            f"CUSTOM_SETTINGS[{setting!r}] must be {{'dataset': NAME, 'trials': [[normal class names], ...]}} with at "
            f"least one trial; got {entry!r}"
        )
    if setting in paper_splits():
        raise ValueError(f"CUSTOM_SETTINGS names {setting!r}, one of the paper's settings: give it another name")
    return entry


def setting_dataset(setting: str, custom: Custom | None = None) -> str:
    """The dataset a setting belongs to: its CUSTOM_SETTINGS entry's, else the paper's (``"cifar10-6"`` -> cifar10)."""
    if (entry := _custom(setting, custom)) is not None:
        return entry["dataset"]
    if setting not in paper_splits():
        raise ValueError(
            f"unknown setting {setting!r}: the paper's are {list(paper_splits())}; give your own in CUSTOM_SETTINGS"
        )
    return setting.rsplit("-", 1)[0]


def setting_trials(setting: str, max_trials: int = 0, custom: Custom | None = None) -> list[list[int]]:
    """Normal class indices of each trial of ``setting`` (a paper setting or one of ``custom``), to ``max_trials``."""
    from bliss_utils.datasets.images import class_names
    from bliss_utils.datasets.prompts import clean_label

    if max_trials < 0:
        raise ValueError(f"max_trials must be >= 0 (0 = every trial); got {max_trials}")
    if (entry := _custom(setting, custom)) is None:
        setting_dataset(setting)  # an unknown name is an error naming the valid ones
        trials = paper_splits()[setting]
    else:
        names = [clean_label(n) for n in class_names(entry["dataset"], "clean")]
        trials = []
        for trial in entry["trials"]:
            if unknown := [c for c in trial if clean_label(c) not in names]:
                raise ValueError(
                    f"CUSTOM_SETTINGS[{setting!r}]: {unknown} are not classes of {entry['dataset']}: {names}"
                )
            trials.append(sorted({names.index(clean_label(c)) for c in trial}))
    return trials[:max_trials] if max_trials else trials


def dataset_settings(dataset: str, max_trials: int = 0, custom: Custom | None = None) -> dict[str, list[list[int]]]:
    """Every setting of ``dataset`` as evaluate_grid takes them: the paper's, or its entries in ``custom``."""
    if dataset in _N_CLASSES:
        return paper_settings([dataset], max_trials)
    own = [s for s, entry in (custom or {}).items() if _custom(s, custom) and entry["dataset"] == dataset]
    if not own:
        raise ValueError(
            f"{dataset} is not one of the paper's datasets {sorted(_N_CLASSES)}: give its settings in CUSTOM_SETTINGS "
            "= {setting name: {'dataset': NAME, 'trials': [[normal class names of trial 0], ...]}}"
        )
    return {s: setting_trials(s, max_trials, custom) for s in own}
