"""Image-only ViT-B/16 pre-trained on ImageNet-21k (google/vit-base-patch16-224-in21k, as the paper cites); tiny-vit.

The embedding is the [CLS] token after the final LayerNorm (``last_hidden_state[:, 0]``); the checkpoint's
tanh pooler is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bliss_utils._checks import require
from bliss_utils.encoders.base import TRANSFORMERS, Build, Encoder, finish_model, seeded
from bliss_utils.encoders.hf_common import model_folder
from bliss_utils.encoders.weights import TINY_SEED

VIT_REPO = "google/vit-base-patch16-224-in21k"
# the tiny ViT of tiny-vit, also tiny-blip's vision tower (transformers config names)
TINY_VIT = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2, patch_size=8)


class ViTImageEncoder(Encoder):
    """A transformers ViTModel as an image-only encoder ([CLS] token of the last layer)."""

    def _image_features(self, pixels: Any) -> Any:
        return self.model(pixel_values=pixels).last_hidden_state[:, 0, :]


def vit_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(model folder, weights identity) of vit-b16-in21k: ``weights``, ``$BLISS_WEIGHTS_DIR``, then the HF cache."""
    return model_folder(VIT_REPO, name, weights, local_only)


def load_vit_in21k(build: Build) -> ViTImageEncoder:
    """ViT-B/16 ImageNet-21k (Hugging Face google/vit-base-patch16-224-in21k), image-only."""
    transformers = require(*TRANSFORMERS)
    model = transformers.ViTModel.from_pretrained(build.weights, add_pooling_layer=False)
    return ViTImageEncoder(finish_model(model, build.device), **build.encoder_fields())


def load_tiny_vit(build: Build) -> ViTImageEncoder:
    """tiny-vit: a transformers ViTModel at tiny sizes with seeded random weights; image-only, no download."""
    transformers = require(*TRANSFORMERS)
    config = transformers.ViTConfig(**TINY_VIT, image_size=build.recipe.size)  # the registry's declared input size
    with seeded(TINY_SEED):
        model = transformers.ViTModel(config, add_pooling_layer=False)
    return ViTImageEncoder(finish_model(model, build.device), **build.encoder_fields())
