"""toy-clip, toy-blip, toy-slip: tiny stand-ins whose text and image towers agree, for smoke runs without weights.

The rehearsal's stand-ins (toy-clip-512, toy-blip-256, toy-slip-512 and the image-only toy-vit-768) are the same maps
at the real backbones' output dimensions, so every cost after embedding is the real one.

The generated datasets draw every class with a look (:mod:`bliss_utils.datasets.looks`) that is a fixed function
of its name. A toy encoder's image tower is a fixed seeded map of pixel statistics (mean colour and the phase-free
magnitude of the low spatial frequencies, through two random layers). Its text tower reads the label out of the
prompt, renders that label's look, and returns the unit mean image embedding of the renders plus a shared "modality
gap" direction and a small per-prompt direction. So "This is a photo of a cat" lands near the generated cats, every
word (class name or dictionary entry) lands near its own look, image-text similarities are small and text-text ones
large, as with real CLIP models. Nothing is trained and nothing is downloaded; the numbers test the wiring, not the
paper.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils.datasets.looks import class_images, look_key
from bliss_utils.datasets.prompts import ENSEMBLE_TEMPLATES
from bliss_utils.encoders.base import Build, Encoder

IMAGE_SIZE = 32
MAX_FREQ = 5  # spatial frequencies |k| <= 5 cycles per image: the generated stripes have 1 to 4
HIDDEN = 128
RENDERS = 16  # images of a look averaged into its text embedding
RENDER_SEED = 12345  # the renders' own noise, shared by every label so a label's embedding depends on it alone
# t = unit(ALPHA * look + gap + BETA * own): image-text similarity about 0.2-0.4, text-text about 0.7, as in CLIP
ALPHA = 0.45
BETA = 0.55
# the per-prompt direction mostly lies in TEXT_ONLY dims that images never use (it spreads texts without blurring
# which image a text matches); its small image-space part LEAK gives each class prompt its own similarity offset,
# the bias that the standardised scores remove
LEAK = 0.3
VERSION = 1  # bump when the maps change: it is part of weights_id, hence of every cache key


@dataclass(frozen=True)
class ToySpec:
    """Embedding dimension and seed of one toy encoder, and whether it has a text tower."""

    dim: int
    seed: int
    has_text: bool = True


TOY_ENCODERS = {
    "toy-clip": ToySpec(dim=32, seed=101),
    "toy-blip": ToySpec(dim=16, seed=202),
    "toy-slip": ToySpec(dim=24, seed=303),
    # the rehearsal's: the output dimensions of CLIP ViT-B/16, BLIP, SLIP ViT-B/16 and ViT-B/16 ImageNet-21k
    "toy-clip-512": ToySpec(dim=512, seed=111),
    "toy-blip-256": ToySpec(dim=256, seed=212),
    "toy-slip-512": ToySpec(dim=512, seed=313),
    "toy-vit-768": ToySpec(dim=768, seed=414, has_text=False),
}


def _template_patterns() -> list[re.Pattern[str]]:
    # longest first, so the most specific template wins; "{}" alone is the fallback (the whole text is the label)
    templates = sorted({t for t in ENSEMBLE_TEMPLATES if t != "{}"}, key=len, reverse=True)
    return [re.compile("(.+)".join(map(re.escape, t.split("{}"))), flags=re.IGNORECASE | re.DOTALL) for t in templates]


_PATTERNS = _template_patterns()


def prompt_label(text: str) -> str:
    """The label inside a prompt of one of the known templates (e.g. "This is a photo of a {}"), else the text."""
    squashed = " ".join(text.split())
    for pattern in _PATTERNS:
        m = pattern.fullmatch(squashed)
        if m and m.group(1).strip():
            return m.group(1).strip()
    return squashed


def _seed_of(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()[:8], "little")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def to_pixels(image: Any) -> Any:
    """PIL image -> float32 tensor (3, 32, 32) in [0, 1] (RGB, bilinear resize): the toy encoders' preprocess."""
    import torch
    from PIL import Image

    rgb = image.convert("RGB")
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class ToyRecipe:
    """The toy encoders' fixed preprocessing, declared so the registry knows it without building a toy encoder."""

    size: int = IMAGE_SIZE

    @property
    def id(self) -> str:
        """Stable description of the recipe, e.g. for cache keys."""
        return f"toy-rgb{self.size}-bilinear"

    def build(self) -> Any:
        """The transform: PIL image -> float32 tensor (3, size, size)."""
        return to_pixels


def toy_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[None, str]:
    """(no file, identity) of a toy encoder: a constant per name and generator version; refuses a weights argument."""
    if weights is not None:
        raise ValueError(f"{name} has no weights to load (it is built from a seed); got weights={weights!r}")
    spec = TOY_ENCODERS[name]
    return None, f"toy-v{VERSION}-dim{spec.dim}-seed{spec.seed}"


class ToyEncoder(Encoder):
    """A seeded, training-free vision-language stand-in (see the module docstring)."""

    # plain fp32 on every device (the registry declares it): nothing to gain from autocast, and numpy does the work
    PRECISION = "fp32"

    def __init__(self, build: Build) -> None:
        super().__init__(**build.encoder_fields())
        spec = TOY_ENCODERS[self.name]
        self.seed = spec.seed
        rng = np.random.default_rng(spec.seed)
        n_features = 3 + (2 * MAX_FREQ + 1) * (MAX_FREQ + 1)
        self._w1 = rng.normal(0, 2.0 / np.sqrt(n_features), size=(n_features, HIDDEN)).astype(np.float32)
        self._b1 = rng.normal(0, 0.5, size=HIDDEN).astype(np.float32)
        self._w2 = rng.normal(0, 1.0 / np.sqrt(HIDDEN), size=(HIDDEN, spec.dim)).astype(np.float32)
        # orthonormal: column 0 is the gap direction, the next ones the text-only directions
        self._text_basis = np.linalg.qr(rng.normal(size=(spec.dim, 1 + max(2, spec.dim // 4))))[0]
        self.gap_ = self._text_basis[:, 0]
        self._looks: dict[str, np.ndarray] = {}

    # -- image tower ---------------------------------------------------------------------------------------------
    def _image_features(self, pixels: Any) -> Any:
        import torch
        import torch.nn.functional as F

        if pixels.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            pixels = F.interpolate(pixels, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        # numpy on the CPU: these arrays are tiny, and torch's thread pool only adds overhead here
        x = pixels.float().cpu().numpy()
        colour = 3.0 * (x.mean(axis=(2, 3)) - 0.5)
        grey = x.mean(axis=1)
        grey = grey - grey.mean(axis=(1, 2), keepdims=True)
        spectrum = np.abs(np.fft.rfft2(grey)) / IMAGE_SIZE**2  # magnitude: blind to the stripes' random phase
        rows = np.concatenate([spectrum[:, : MAX_FREQ + 1], spectrum[:, -MAX_FREQ:]], axis=1)[:, :, : MAX_FREQ + 1]
        feats = np.concatenate([colour, 12.0 * rows.reshape(len(x), -1)], axis=1).astype(np.float32)
        z = np.tanh(feats @ self._w1 + self._b1) @ self._w2
        basis = self._text_basis.astype(np.float32)
        # images live orthogonal to the gap and text-only directions, so texts and images form two separate cones
        return torch.from_numpy(z - (z @ basis) @ basis.T)

    def _image_embed(self, pixels: Any) -> np.ndarray:
        return _unit(self._image_features(pixels).double().cpu().numpy())

    # -- text tower ----------------------------------------------------------------------------------------------
    def look_embedding(self, label: str) -> np.ndarray:
        """Unit mean image embedding of ``label``'s generated look (float64, cached)."""
        import torch

        key = look_key(label)
        if key not in self._looks:
            imgs = class_images(np.zeros(RENDERS, dtype=np.int64), [key], IMAGE_SIZE, RENDER_SEED)
            pixels = torch.from_numpy(imgs.astype(np.float32) / 255.0).permute(0, 3, 1, 2).to(self.device)
            with torch.inference_mode():
                self._looks[key] = _unit(self._image_embed(pixels).mean(axis=0))
        return self._looks[key]

    def _own_direction(self, text: str) -> np.ndarray:
        # tokenizers lower-case and ignore spacing, so the per-prompt part does too
        rng = np.random.default_rng(_seed_of(self.seed, " ".join(text.casefold().split())))
        text_only = self._text_basis[:, 1:] @ rng.normal(size=self._text_basis.shape[1] - 1)
        return _unit(_unit(text_only) + LEAK * _unit(rng.normal(size=self.dim)))

    def _text_features(self, texts: list[str]) -> Any:
        import torch

        rows = [ALPHA * self.look_embedding(prompt_label(t)) + self.gap_ + BETA * self._own_direction(t) for t in texts]
        return torch.from_numpy(np.array(rows, dtype=np.float32).reshape(len(texts), self.dim))


def load_toy(build: Build) -> ToyEncoder:
    """Build a toy encoder of :data:`TOY_ENCODERS` (both preprocess options give the same fixed pipeline, as there are
    no normalisation statistics to swap)."""
    return ToyEncoder(build)
