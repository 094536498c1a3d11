"""Toy encoders: the Encoder contract, determinism, and text and image towers that agree on generated data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from bliss_utils.datasets.images import class_names
from bliss_utils.datasets.looks import class_images
from bliss_utils.datasets.prompts import make_prompts
from bliss_utils.datasets.splits import class_splits
from bliss_utils.datasets.synthetic import make_fake_cifar
from bliss_utils.embeddings import load_embedding_set
from bliss_utils.encoders import load_encoder
from bliss_utils.encoders.toy import TOY_ENCODERS, prompt_label
from bliss_utils.evaluation.grid import evaluate_grid

TOYS = list(TOY_ENCODERS)
TEXT_TOYS = [n for n in TOYS if TOY_ENCODERS[n].has_text]
TEXTS = ["This is a photo of a cat", "a origami dog.", "goldfish", "This is a photo of a  Tinca tinca"]


@pytest.fixture(scope="module")
def toys():
    return {name: load_encoder(name, device="cpu") for name in TOYS}


@pytest.fixture(scope="module")
def images():
    y = np.arange(9) % 3
    arrays = class_images(y, ["cat", "ship", "frog"], 32, seed=0)
    # a 64 px RGBA and a greyscale image too: preprocess must take what datasets deliver
    extra = [
        Image.fromarray(class_images(np.zeros(1, int), ["cat"], 64, 1)[0]).convert("RGBA"),
        Image.new("L", (20, 30)),
    ]
    return [Image.fromarray(a) for a in arrays] + extra


@pytest.fixture(scope="module")
def smoke_cifar10(tmp_path_factory):
    """The smoke run's generated CIFAR-10: 20 train and 10 test images a class."""
    root = tmp_path_factory.mktemp("smoke")
    make_fake_cifar(root, "cifar10", n_train_per_class=20, n_test_per_class=10)
    return root


@pytest.mark.parametrize("name", TOYS)
def test_encoder_contract(toys, images, name):
    enc = toys[name]
    spec = TOY_ENCODERS[name]
    assert (enc.name, enc.dim, enc.has_text) == (name, spec.dim, spec.has_text)
    img = enc.encode_images(images)
    outputs = [(img, len(images))]
    if spec.has_text:
        txt = enc.encode_texts(TEXTS)
        np.testing.assert_allclose(enc.encode_texts(TEXTS[::-1], batch_size=3)[::-1], txt, atol=1e-6)
        outputs.append((txt, len(TEXTS)))
    else:  # the image-only stand-in, like the backbone it stands for
        with pytest.raises(ValueError, match="image-only"):
            enc.encode_texts(TEXTS)
    for z, n in outputs:
        assert z.dtype == np.float32 and z.shape == (n, enc.dim)
        np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode_images(images, batch_size=1), img, atol=1e-6)
    tensor = torch.stack([enc.preprocess(im) for im in images])
    np.testing.assert_allclose(enc.encode_images(tensor, batch_size=4), img, atol=1e-6)
    # a fresh load gives the same maps (seeded), and the toys are different encoders
    np.testing.assert_array_equal(load_encoder(name, device="cpu").encode_images(images), img)
    assert len({toys[n].weights_id for n in TOYS}) == len(TOYS)


def test_deterministic_across_processes(toys, images):
    code = (
        "import json; from bliss_utils.encoders import load_encoder; e = load_encoder('toy-clip', device='cpu'); "
        f"print(json.dumps(e.encode_texts({TEXTS!r}).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_array_equal(
        np.array(json.loads(out.stdout), dtype=np.float32), toys["toy-clip"].encode_texts(TEXTS)
    )


def test_prompt_label_reads_the_label_out_of_known_templates():
    assert prompt_label("This is a photo of a aquarium_fish") == "aquarium_fish"
    assert prompt_label("This is a photo of a  Tinca tinca") == "Tinca tinca"
    assert prompt_label("a origami maple tree.") == "maple tree"
    assert prompt_label("goldfish") == "goldfish"


def test_texts_ignore_spacing_and_case_and_an_underscored_name_keeps_its_look(toys):
    enc = toys["toy-clip"]
    a, b, raw, clean = enc.encode_texts(
        [
            "This is a photo of a  Tinca tinca",
            "This is a photo of a tinca Tinca",
            "This is a photo of a aquarium_fish",
            "This is a photo of a aquarium fish",
        ]
    )
    np.testing.assert_allclose(a, b, atol=1e-6)
    # like a tokenizer, "aquarium_fish" is another text than "aquarium fish", but it names the same look
    assert not np.allclose(raw, clean, atol=1e-3)
    np.testing.assert_array_equal(enc.look_embedding("aquarium_fish"), enc.look_embedding("Aquarium fish"))
    assert enc.look_embedding("aquarium_fish") @ enc.look_embedding("maple tree") < 0.99


@pytest.mark.parametrize("name", TEXT_TOYS)
def test_towers_agree_with_a_modality_gap(toys, name):
    enc = toys[name]
    names = class_names("cifar10")
    y = np.repeat(np.arange(10), 20)
    img = enc.encode_images([Image.fromarray(a) for a in class_images(y, names, 32, seed=7)])
    txt = enc.encode_texts(make_prompts(names))
    sims = img @ txt.T
    # the images a prompt is most similar to are (on average) its own class's: 9 classes of 10 at least, chance is 1
    means = np.stack([sims[y == c].mean(axis=0) for c in range(10)])
    assert (means.argmax(axis=0) == np.arange(10)).sum() >= 9
    own = sims[np.arange(len(y)), y]
    assert own.mean() > sims.mean() + 0.05
    # like CLIP: images and texts in two cones, small image-text and large text-text similarity
    assert 0.1 < sims.mean() < 0.45
    assert 0.55 < (txt @ txt.T)[~np.eye(10, dtype=bool)].mean() < 0.9


# smoke mode's three toys and one at a real output dimension (the rehearsal's differ from it only in dim and seed)
@pytest.mark.parametrize("name", ["toy-clip", "toy-blip", "toy-slip", "toy-clip-512"])
def test_bliss_and_biased_clip_beat_chance_on_the_smoke_data(toys, smoke_cifar10, tmp_path, name):
    data = load_embedding_set(
        toys[name], "cifar10", root=smoke_cifar10, dictionary_size=64, cache_dir=tmp_path, progress=False
    )
    grid = evaluate_grid(
        data,
        {"six": class_splits("cifar10", 6), "one": class_splits("cifar10", 1)},
        methods=("bliss", "biased-clip"),
        lams=(-1000.0, -0.5, 0.5, 1000.0),
        ks=(10,),
    )
    mean = grid.fillna({"lam": 0.0}).groupby(["setting", "method", "lam"]).auroc.mean()
    assert mean["six", "biased-clip", 0.0] >= 80
    assert mean["six", "bliss", 0.5] >= 80
    assert mean["one", "bliss", 0.5] >= 90
    # sign checks: the external text score alone (lam large) points the right way, and flipping it hurts
    assert mean["one", "bliss", 1000.0] >= 70 and mean["one", "bliss", -1000.0] <= 30
    assert mean["six", "bliss", -0.5] < mean["six", "bliss", 0.5]


def test_weights_are_refused_and_names_checked():
    with pytest.raises(ValueError, match="no weights"):
        load_encoder("toy-clip", device="cpu", weights="somewhere.pt")
    with pytest.raises(ValueError, match="unknown encoder 'toy-vit'"):
        load_encoder("toy-vit")


@pytest.mark.parametrize("name", TOYS)
def test_declared_precision_is_the_one_the_toy_runs_at_on_any_device(toys, name):
    # the toys compute in numpy fp32 on every device: the cache key declared for a CUDA run must say so too, or a
    # run on a GPU machine refuses the toy it just built (its identity would differ from the described one)
    from bliss_utils.encoders import describe_encoder

    assert describe_encoder(name, device="cuda").precision == toys[name].precision == "fp32"
