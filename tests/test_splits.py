"""The paper's class splits: trial counts, class coverage and errors."""

import json
from collections import Counter

import pytest

from bliss_utils.config import PACKAGE_DATA
from bliss_utils.datasets import splits
from bliss_utils.datasets.splits import PAPER_SETTINGS, class_splits, n_classes, paper_splits, setting_name


def _json_splits():
    return json.loads((PACKAGE_DATA / "splits.json").read_text())


def test_cifar10_one_class_uses_every_class_once():
    trials = class_splits("cifar10", 1)
    assert trials == [[c] for c in range(10)]


def test_cifar10_nine_classes_leaves_each_class_out_once():
    trials = class_splits("cifar10", 9)
    assert len(trials) == 10
    left_out = [set(range(10)) - set(t) for t in trials]
    assert all(len(t) == 9 and len(set(t)) == 9 for t in trials)
    assert sorted(next(iter(s)) for s in left_out) == list(range(10))


@pytest.mark.parametrize(
    ("dataset", "n_normal", "n_trials"), [("cifar10", 6, 5), ("cifar100", 20, 5), ("tinyimagenet", 20, 5)]
)
def test_json_settings_come_from_splits_json(dataset, n_normal, n_trials):
    trials = class_splits(dataset, n_normal)
    assert trials == _json_splits()[dataset][str(n_normal)]
    assert len(trials) == n_trials
    for t in trials:
        assert len(t) == n_normal == len(set(t))
        assert all(0 <= c < n_classes(dataset) for c in t)


def test_cifar100_trials_partition_the_classes():
    counts = Counter(c for t in class_splits("cifar100", 20) for c in t)
    assert sorted(counts) == list(range(100)) and set(counts.values()) == {1}


def test_returned_lists_are_copies():
    first = class_splits("cifar10", 6)
    first[0].append(99)
    first.append([])
    assert class_splits("cifar10", 6) == _json_splits()["cifar10"]["6"]


@pytest.mark.parametrize(("dataset", "n_normal"), [("cifar10", 2), ("cifar100", 6), ("svhn", 1), ("CIFAR10", 6)])
def test_unknown_setting_lists_valid_ones(dataset, n_normal):
    with pytest.raises(ValueError, match=r"valid: .*\('cifar10', 6\).*\('tinyimagenet', 20\)"):
        class_splits(dataset, n_normal)


def test_setting_names_and_class_counts():
    assert setting_name("cifar10", 6) == "cifar10-6"
    assert setting_name("tinyimagenet", 20) == "tinyimagenet-20"
    assert [n_classes(d) for d in ("cifar10", "cifar100", "tinyimagenet")] == [10, 100, 200]
    with pytest.raises(ValueError, match="unknown dataset"):
        n_classes("mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        setting_name("mnist", 1)


def test_paper_splits_covers_every_paper_setting():
    splits = paper_splits()
    assert list(splits) == [setting_name(d, n) for d, n in PAPER_SETTINGS]
    assert [len(v) for v in splits.values()] == [10, 5, 10, 5, 5]


def test_your_own_settings_name_classes_of_your_dataset(tmp_path):
    from bliss_utils.datasets.synthetic import make_fake_imagefolder

    folder = make_fake_imagefolder(tmp_path / "mine", ["cat", "dog", "pickup_truck"], n_per_class=2)
    name = f"imagefolder:{folder}"
    custom = {"pets": {"dataset": name, "trials": [["dog", "cat"], ["pickup truck"]]}}
    assert splits.dataset_settings(name, 0, custom) == {"pets": [[0, 1], [2]]}  # by name, folder or cleaned
    assert splits.setting_trials("pets", 1, custom) == [[0, 1]] and splits.setting_dataset("pets", custom) == name
    assert splits.dataset_settings("cifar10", 2, custom) == splits.paper_settings(["cifar10"], 2)
    assert splits.setting_dataset("cifar100-20") == "cifar100"
    with pytest.raises(ValueError, match="give its settings in CUSTOM_SETTINGS"):
        splits.dataset_settings(name, 0, {})
    with pytest.raises(ValueError, match=r"\['horse'\] are not classes of"):
        splits.setting_trials("pets", 0, {"pets": {"dataset": name, "trials": [["horse"]]}})
    with pytest.raises(ValueError, match="one of the paper's settings"):
        splits.setting_dataset("cifar10-1", {"cifar10-1": {"dataset": name, "trials": [["cat"]]}})
    with pytest.raises(ValueError, match="must be"):
        splits.setting_trials("pets", 0, {"pets": [["cat"]]})
    with pytest.raises(ValueError, match="unknown setting 'pet'"):
        splits.setting_trials("pet", 0, custom)
