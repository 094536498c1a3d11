"""Dictionaries: ImageNet entries as SPEC.md defines them, label sets, English words, exclusion."""

from __future__ import annotations

import pytest

from bliss_utils import config
from bliss_utils.datasets import class_names
from bliss_utils.dictionaries import load_dictionary


def test_imagenet_every_comma_separated_name_once():
    entries = load_dictionary("imagenet")
    raw = [
        n.strip()
        for line in (config.PACKAGE_DATA / "imagenet1k_class_names.txt").read_text().splitlines()
        for n in line.split(",")
        if n.strip()
    ]
    assert entries == list(dict.fromkeys(raw))  # file order, exact repeats kept once
    assert len(entries) == len(set(entries)) and 1800 <= len(entries) <= 1900  # SPEC: "about 1,850"
    assert entries[:3] == ["tench", "Tinca tinca", "goldfish"]
    assert all(e == e.strip() and "," not in e for e in entries)
    assert "crane" in entries and "Carcharodon carcharias" in entries


def test_exclude_tinyimagenet_labels():
    full = load_dictionary("imagenet")
    tiny = class_names("tinyimagenet")
    reduced = load_dictionary("imagenet", exclude=tiny)
    dropped = set(full) - set(reduced)
    assert {e.casefold() for e in dropped} == {t.casefold() for t in tiny} & {e.casefold() for e in full}
    assert "goldfish" not in reduced and "tench" in reduced
    assert len(dropped) >= len(tiny)  # every TinyImageNet label is an ImageNet entry
    # exclusion cleans and ignores case: "Great_White_Shark" removes "great white shark"
    assert "great white shark" not in load_dictionary("imagenet", exclude=["Great_White_Shark"])


def test_label_set_dictionaries_and_size():
    assert load_dictionary("cifar10") == class_names("cifar10")
    assert len(load_dictionary("cifar100")) == 100
    assert load_dictionary("tinyimagenet", size=5) == class_names("tinyimagenet")[:5]
    assert load_dictionary("cifar10", exclude=["cat"], size=3) == ["airplane", "automobile", "bird"]


def test_english_words_alphabetic_and_sized():
    words = load_dictionary("english", size=3000)
    assert len(words) == 3000 == len(set(words)) and all(w.isalpha() for w in words)
    assert words[0] == "the"
    assert "the" not in load_dictionary("english", size=50, exclude=["The"])
    assert len(load_dictionary("english", size=50, exclude=["The"])) == 50
    assert load_dictionary("english", size=100)[:50] == words[:50]  # a larger dictionary extends a smaller one


def test_bad_input():
    with pytest.raises(ValueError, match="imagenet, cifar10"):
        load_dictionary("wordnet")
    with pytest.raises(ValueError, match="size"):
        load_dictionary("imagenet", size=0)
    with pytest.raises(ValueError, match="list of labels"):
        load_dictionary("imagenet", exclude="goldfish")


def test_imagenet_synonyms_drop_whole_classes():
    from bliss_utils.dictionaries import imagenet_synonyms, load_dictionary

    names = imagenet_synonyms(["goldfish", "tailed_frog"])
    assert {"goldfish", "Carassius auratus", "tailed frog", "bell toad", "ribbed toad"} <= set(names)
    assert "tench" not in names
    kept = load_dictionary("imagenet", exclude=names)
    assert "Carassius auratus" not in kept and "tench" in kept
    assert len(kept) == len(load_dictionary("imagenet")) - len(names)
