"""The Encoder interface and what every backend shares: what a builder is given, batching, precision, L2 norms."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils._checks import as_embeddings, check_positive_int, l2_normalize

logger = logging.getLogger(__name__)

# the optional libraries behind the backends, as _checks.require takes them: (module, pip name, what needs it)
OPEN_CLIP = ("open_clip", "open_clip_torch", "this encoder")
TRANSFORMERS = ("transformers", "transformers", "this encoder")


def device_precision(device: Any) -> str:
    """The precision a torch model runs at on ``device``: fp16 autocast on CUDA (LayerNorm and softmax stay fp32),
    fp32 on the CPU and MPS."""
    return "fp16-autocast" if getattr(device, "type", str(device)) == "cuda" else "fp32"


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder's embeddings depend on, known without building it (the embedding cache's encoder key)."""

    name: str
    weights_id: str
    preprocess_id: str
    dim: int
    has_text: bool = True
    precision: str | None = None  # None: not known here (an identity recovered from a cache, no device asked for)
    preprocess: str = "default"


@dataclass(frozen=True)
class Build:
    """What the registry hands a named encoder's builder: the identity it declares, the recipe, the weights file (None
    for seeded random weights) and the device. The builder makes the model; the facts come from here."""

    spec: EncoderSpec
    recipe: Any  # a preprocessing.Recipe whose id is spec.preprocess_id
    weights: Path | None
    device: Any

    def encoder_fields(self) -> dict[str, Any]:
        """The keyword arguments of :class:`Encoder` for this build."""
        fields = {k: getattr(self.spec, k) for k in ("name", "dim", "weights_id", "has_text", "precision")}
        return {**fields, "device": self.device, "preprocess": self.recipe.build(), "preprocess_id": self.recipe.id}


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


class Encoder:
    """An image (and usually text) encoder returning L2-normalised float32 numpy embeddings, in input order.

    Backends subclass it and implement ``_image_features(pixels)`` (a preprocessed batch already on the device)
    and, if ``has_text``, ``_text_features(texts)``; both return unnormalised (n, dim) tensors. ``model`` and
    ``tokenizer`` are kept for them.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        name: str,
        dim: int,
        device: Any,
        preprocess: Callable[[Any], Any],
        preprocess_id: str,
        weights_id: str,
        has_text: bool = True,
        precision: str | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.name, self.dim, self.device, self.preprocess = name, int(dim), device, preprocess
        self.preprocess_id, self.weights_id, self.has_text = preprocess_id, weights_id, has_text
        self.precision = precision or device_precision(device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={str(self.device)!r}, "
            f"precision={self.precision!r}, weights_id={self.weights_id!r}, preprocess_id={self.preprocess_id!r})"
        )

    # -- to implement -------------------------------------------------------------------------------------------
    def _image_features(self, pixels: Any) -> Any:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> Any:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        fp16 = self.precision == "fp16-autocast"
        return torch.autocast(device_type="cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()

    def _finish(self, chunks: list[np.ndarray], what: str) -> np.ndarray:
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = as_embeddings(np.concatenate(chunks, axis=0), what, dtype=np.float32)
        if out.shape[1] != self.dim:
            raise RuntimeError(f"{self.name}: {what} have dimension {out.shape[1]}, expected {self.dim}")
        return l2_normalize(out, what).astype(np.float32, copy=False)

    def _run(self, features: Callable[[Any], Any], batches: Iterable[Any], what: str) -> np.ndarray:
        """``features`` of every batch without gradients (under autocast on CUDA), joined, checked and normalised."""
        import torch

        with torch.inference_mode(), self._autocast():
            chunks = [features(batch).float().cpu().numpy() for batch in batches]
        return self._finish(chunks, f"{self.name} {what}")

    def _pixel_batches(self, images: Any, batch_size: int) -> Iterator[Any]:
        import torch

        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"a preprocessed image tensor must have shape (n, 3, H, W); got {tuple(images.shape)}")
            for sl in _batches(images.shape[0], batch_size):
                yield images[sl].to(self.device, dtype=torch.float32)
            return
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            got = type(images).__name__
            raise ValueError(f"images must be a list of PIL images or a preprocessed (n, 3, H, W) tensor; got {got}")
        from PIL import Image

        for sl in _batches(len(images), batch_size):
            batch = images[sl]
            if bad := [i for i, img in enumerate(batch) if not isinstance(img, Image.Image)]:
                raise ValueError(f"images[{sl.start + bad[0]}] is a {type(batch[bad[0]]).__name__}, not a PIL image")
            yield torch.stack([self.preprocess(img) for img in batch]).to(self.device, dtype=torch.float32)

    def encode_images(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """Embed a list of PIL images (or a tensor already made by ``self.preprocess``): float32 (n, dim), unit norm."""
        check_positive_int(batch_size, "batch_size")
        return self._run(self._image_features, self._pixel_batches(images, batch_size), "image embeddings")

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed a list of strings: float32 (m, dim), unit norm."""
        if not self.has_text:
            raise ValueError(f"encoder {self.name!r} is image-only: it has no text embeddings")
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f"texts must be a list of strings; got {type(texts).__name__}")
        if bad := [i for i, t in enumerate(texts) if not isinstance(t, str)]:
            raise ValueError(f"texts[{bad[0]}] is a {type(texts[bad[0]]).__name__}, not a string")
        check_positive_int(batch_size, "batch_size")
        batches = (list(texts[sl]) for sl in _batches(len(texts), batch_size))
        return self._run(self._text_features, batches, "text embeddings")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded, restoring the caller's RNG state afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def finish_model(model: Any, device: Any) -> Any:
    """Move ``model`` to ``device`` in eval mode with gradients off (open_clip builds models in train mode)."""
    return model.to(device).eval().requires_grad_(False)
