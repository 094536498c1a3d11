"""How a generated class looks: a colour and stripe pattern that is a fixed function of its NAME.

The generated datasets (``bliss_utils.datasets.synthetic``) draw their images with it, and the toy encoders
(``bliss_utils.encoders.toy``) map a class word to the same look, so their text and image towers agree; neither
needs the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from bliss_utils.datasets.prompts import clean_label


def look_key(name: str) -> str:
    """The form of a class name that decides its look: cleaned and case-folded ("Aquarium_fish" == "aquarium fish")."""
    return clean_label(name).casefold()


def class_look(name: str) -> tuple[np.ndarray, float, float]:
    """(RGB colour, stripe angle, stripe frequency in cycles per image) of a class, a fixed function of its name.

    A name looks the same in every dataset and process (sha256, not Python's salted ``hash``), so an encoder can map
    the word to the look without seeing the dataset.
    """
    digest = hashlib.sha256(look_key(name).encode("utf-8")).digest()
    style = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return style.uniform(40, 215, size=3), float(style.uniform(0, np.pi)), float(style.uniform(1.0, 4.0))


def class_images(labels: np.ndarray, names: Sequence[str], size: int, seed: int, stream: int = 0) -> np.ndarray:
    """Uint8 images (n, size, size, 3) of classes ``names[labels]``: each name's look, per-image phase and noise.

    ``seed`` and ``stream`` drive only the per-image randomness; the look depends on the name alone.
    """
    labels = np.asarray(labels, dtype=np.int64)
    looks = [class_look(n) for n in names]
    colours = np.array([c for c, _, _ in looks]).reshape(len(names), 3)
    angles = np.array([a for _, a, _ in looks])
    freqs = np.array([f for _, _, f in looks])
    noise = np.random.default_rng([seed, len(names), 1, stream])
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = noise.uniform(0, 2 * np.pi, size=len(labels))
    # per-image jitter of the look itself, so that images of a class vary like photos do and classes can overlap
    angle = angles[labels] + noise.normal(0, 0.12, size=len(labels))
    freq = freqs[labels] * np.exp(noise.normal(0, 0.1, size=len(labels)))
    colour = colours[labels] + noise.normal(0, 12, size=(len(labels), 3))
    coord = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    stripes = np.sin(2 * np.pi * freq[:, None, None] * coord + phase[:, None, None])
    imgs = colour[:, None, None, :] + 40 * stripes[..., None] + noise.normal(0, 12, size=(len(labels), size, size, 3))
    return np.clip(np.rint(imgs), 0, 255).astype(np.uint8)
