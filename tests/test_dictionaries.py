"""Dictionaries: the authors' ImageNet entries (and the de-duplicated variant), label sets, English words, exclusion."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import FakeEncoder

from bliss_utils import config
from bliss_utils.datasets.dictionaries import load_dictionary
from bliss_utils.datasets.images import class_names
from bliss_utils.datasets.prompts import make_prompts
from bliss_utils.embeddings import load_embedding_set

# the names that two ImageNet classes share (after stripping), each listed twice in the authors' dictionary
REPEATED = {
    "Sus scrofa",
    "catamount",
    "crane",
    "crawfish",
    "crayfish",
    "gong",
    "grass snake",
    "harp",
    "horn",
    "maillot",
    "missile",
    "panda",
    "panther",
    "partridge",
    "polecat",
    "sand viper",
    "tub",
    "wagon",
}


def test_imagenet_is_the_authors_dictionary_exactly():
    entries = load_dictionary("imagenet")
    lines = (config.PACKAGE_DATA / "imagenet1k_class_names.txt").read_text().splitlines()
    assert entries == [piece for line in lines for piece in line.split(",")]  # split on "," alone, like the authors
    assert len(entries) == 1860
    assert entries[:4] == ["tench", " Tinca tinca", "goldfish", " Carassius auratus"]  # the space after "," stays
    assert entries[-3:] == ["toilet tissue", " toilet paper", " bathroom tissue"]
    counts = Counter(e.strip() for e in entries)
    assert {name for name, n in counts.items() if n > 1} == REPEATED and max(counts.values()) == 2
    assert all(e == e.strip() or (e.startswith(" ") and e[1:] == e.strip()) for e in entries)
    assert load_dictionary("imagenet", size=3) == entries[:3]


def test_imagenet_unique_strips_and_drops_repeats():
    unique = load_dictionary("imagenet-unique")
    assert len(unique) == 1842 == 1860 - len(REPEATED) and len(set(unique)) == len(unique)
    assert unique[:3] == ["tench", "Tinca tinca", "goldfish"] and unique[-1] == "bathroom tissue"
    assert unique == list(dict.fromkeys(e.strip() for e in load_dictionary("imagenet")))
    assert unique.count("crane") == 1


def test_exclude_tinyimagenet_labels():
    full = load_dictionary("imagenet")
    tiny = class_names("tinyimagenet")
    reduced = load_dictionary("imagenet", exclude=tiny)
    dropped = set(full) - set(reduced)
    assert {e.strip().casefold() for e in dropped} == {t.casefold() for t in tiny} & {
        e.strip().casefold() for e in full
    }
    assert "goldfish" not in reduced and "tench" in reduced
    assert len(dropped) >= len(tiny)  # every TinyImageNet label is an ImageNet entry
    # exclusion cleans and ignores case: "Great_White_Shark" removes "great white shark"
    assert "great white shark" not in load_dictionary("imagenet", exclude=["Great_White_Shark"])


def test_label_set_dictionaries_and_size():
    assert load_dictionary("cifar10") == class_names("cifar10")
    assert len(load_dictionary("cifar100")) == 100 and "aquarium_fish" in load_dictionary("cifar100")
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
    with pytest.raises(ValueError, match="imagenet, imagenet-unique, cifar10"):
        load_dictionary("wordnet")
    with pytest.raises(ValueError, match="size"):
        load_dictionary("imagenet", size=0)
    with pytest.raises(ValueError, match="list of labels"):
        load_dictionary("imagenet", exclude="goldfish")


def test_imagenet_synonyms_drop_whole_classes():
    from bliss_utils.datasets.dictionaries import imagenet_synonyms, load_dictionary

    names = imagenet_synonyms(["goldfish", "tailed_frog"])
    assert {"goldfish", "Carassius auratus", "tailed frog", "bell toad", "ribbed toad"} <= set(names)
    assert "tench" not in names
    kept = load_dictionary("imagenet", exclude=names)
    assert "Carassius auratus" not in kept and "tench" in kept
    assert len(kept) == len(load_dictionary("imagenet")) - len(names)


def test_cifar100_paper_names_are_torchvisions_raw_names():
    paper, clean = class_names("cifar100"), class_names("cifar100", names="clean")
    underscored = [n for n in paper if "_" in n]
    assert underscored == [
        "aquarium_fish",
        "lawn_mower",
        "maple_tree",
        "oak_tree",
        "palm_tree",
        "pickup_truck",
        "pine_tree",
        "sweet_pepper",
        "willow_tree",
    ]
    assert clean == [n.replace("_", " ") for n in paper]
    prompts = make_prompts(paper)
    assert prompts[1] == "This is a photo of a aquarium_fish" and prompts[-1] == "This is a photo of a worm"
    # TinyImageNet: the authors' own cleaning (underscores to spaces) in both styles
    assert class_names("tinyimagenet")[1] == "European fire salamander" == class_names("tinyimagenet", names="clean")[1]
    with pytest.raises(ValueError, match="names must be one of"):
        class_names("cifar100", names="raw")


def test_text_path_prompts_with_the_exact_strings(fake_data, tmp_path):
    class Recording(FakeEncoder):
        def encode_texts(self, texts, batch_size=256):
            self.seen = [*getattr(self, "seen", []), *texts]
            return super().encode_texts(texts, batch_size)

    enc = Recording()
    load_embedding_set(enc, "cifar100", root=fake_data, cache_dir=tmp_path, dictionary_size=4, progress=False)
    assert "This is a photo of a aquarium_fish" in enc.seen and "This is a photo of a maple_tree" in enc.seen
    assert "This is a photo of a  Tinca tinca" in enc.seen  # the dictionary entry's leading space is kept
    assert not any("aquarium fish" in t for t in enc.seen)
