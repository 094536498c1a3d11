"""Image-only ViT-B/16 pre-trained on ImageNet-21k (google/vit-base-patch16-224-in21k, as the paper cites), and tiny-vit.

The embedding is the [CLS] token after the final LayerNorm (``last_hidden_state[:, 0]``); the checkpoint's
tanh pooler is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bliss_utils.encoders.base import Encoder, finish_model, seeded, select_device
from bliss_utils.encoders.hf_common import import_transformers, model_folder
from bliss_utils.encoders.weights import TINY_SEED, random_weights

VIT_REPO = "google/vit-base-patch16-224-in21k"
TINY_IMAGE_SIZE = 32


class ViTImageEncoder(Encoder):
    """A transformers ViTModel as an image-only encoder ([CLS] token of the last layer)."""

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(has_text=False, **kwargs)
        self.model = model

    def _image_features(self, pixels: Any) -> Any:
        return self.model(pixel_values=pixels).last_hidden_state[:, 0, :]


def _vit_encoder(model: Any, name: str, device: Any, preprocess: str, weights_id: str) -> ViTImageEncoder:
    from bliss_utils.encoders.registry import declared_recipe

    device = select_device(device)
    recipe = declared_recipe(name, preprocess)
    return ViTImageEncoder(
        finish_model(model, device),
        name=name,
        dim=int(model.config.hidden_size),
        device=device,
        preprocess=recipe.build(),
        preprocess_id=recipe.id,
        weights_id=weights_id,
    )


def vit_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(model folder, weights identity) of vit-b16-in21k: ``weights``, ``$BLISS_WEIGHTS_DIR``, then the HF cache."""
    return model_folder(VIT_REPO, name, weights, local_only)


def load_vit_in21k(
    name: str, *, device: Any = None, weights: str | Path | None = None, preprocess: str = "default"
) -> ViTImageEncoder:
    """ViT-B/16 ImageNet-21k (Hugging Face google/vit-base-patch16-224-in21k), image-only."""
    transformers = import_transformers()
    folder, weights_id = vit_weights(name, weights)
    model = transformers.ViTModel.from_pretrained(folder, add_pooling_layer=False)
    return _vit_encoder(model, name, device, preprocess, weights_id)


def load_tiny_vit(
    name: str, *, device: Any = None, weights: str | Path | None = None, preprocess: str = "default"
) -> ViTImageEncoder:
    """tiny-vit: a transformers ViTModel at tiny sizes with seeded random weights; image-only, no download."""
    _, weights_id = random_weights(name, weights)
    transformers = import_transformers()
    config = transformers.ViTConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=96,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
    )
    with seeded(TINY_SEED):
        model = transformers.ViTModel(config, add_pooling_layer=False)
    return _vit_encoder(model, name, device, preprocess, weights_id)
