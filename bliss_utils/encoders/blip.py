"""BLIP image-text contrastive (ITC) embeddings through transformers' BlipForImageTextRetrieval, and tiny-blip.

The embeddings are the retrieval model's own ITC path (BACKBONES.md section 2): image = vision_proj of the
[CLS] state of vision_model, text = text_proj of the [CLS] state of the text encoder run without the image;
their cosine equals ``model(..., use_itm_head=False).itm_score``. BlipModel's get_*_features would use other,
unloaded projections.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

from .base import Encoder, finish_model, seeded, select_device
from .hf_common import import_transformers, model_folder, pil_processor_class
from .preprocessing import (
    ResizeCropNormalize,
    choose_recipe,
    hf_image_processor_transform,
)

BLIP_REPO = "Salesforce/blip-itm-base-coco"
BLIP_MAX_TOKENS = 35  # the original BLIP's text length for retrieval

TINY_SEED = 0
TINY_IMAGE_SIZE = 32
TINY_WORDS = ("this", "is", "a", "photo", "of", "the")


class BlipITCEncoder(Encoder):
    """BLIP's ITC image and text embeddings (``BlipForImageTextRetrieval`` without the ITM head)."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.tokenizer = tokenizer

    def _image_features(self, pixels: Any) -> Any:
        hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state
        return self.model.vision_proj(hidden[:, 0, :])

    def _text_features(self, texts: list[str]) -> Any:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=BLIP_MAX_TOKENS, return_tensors="pt")
        hidden = self.model.text_encoder(
            input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device),
        ).last_hidden_state
        return self.model.text_proj(hidden[:, 0, :])


def _blip_encoder(model: Any, processor: Any, tokenizer: Any, name: str, device: Any, preprocess: str,
                  weights_id: str) -> BlipITCEncoder:
    device = select_device(device)
    if preprocess == "cifar":
        size = int(processor.size["height"])
        recipe = choose_recipe(ResizeCropNormalize(size, "bicubic", tuple(processor.image_mean),
                                                   tuple(processor.image_std)), "cifar")
        transform, preprocess_id = recipe.build(), recipe.id
    else:
        transform, preprocess_id = hf_image_processor_transform(processor)
    return BlipITCEncoder(
        finish_model(model, device), tokenizer, name=name, dim=int(model.config.image_text_hidden_size),
        device=device, preprocess=transform, preprocess_id=preprocess_id, weights_id=weights_id,
    )


def load_blip(name: str, *, device: Any = None, weights: str | Path | None = None,
              preprocess: str = "default") -> BlipITCEncoder:
    """BLIP ViT-B retrieval model fine-tuned on COCO (Salesforce/blip-itm-base-coco), ITC embeddings."""
    transformers = import_transformers()
    folder, weights_id = model_folder(BLIP_REPO, name, weights)
    model = transformers.BlipForImageTextRetrieval.from_pretrained(folder)
    processor = pil_processor_class("BlipImageProcessor").from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return _blip_encoder(model, processor, tokenizer, name, device, preprocess, weights_id)


def tiny_vocab() -> list[str]:
    """A small generated WordPiece vocabulary: BERT's special tokens, characters, ``##`` continuations, a few words."""
    chars = string.ascii_lowercase + string.digits
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS, *chars, *string.punctuation,
            *("##" + c for c in chars)]


def tiny_tokenizer() -> Any:
    """A BERT-uncased-style tokenizer over :func:`tiny_vocab` (NOT bert-base-uncased, which cannot be downloaded)."""
    transformers = import_transformers()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
        return transformers.BertTokenizer.from_pretrained(folder)


def tiny_blip_config() -> Any:
    """A small BlipConfig with the real model's structure."""
    transformers = import_transformers()
    # BlipVisionConfig initialises with std 1e-10 (fine before loading weights, degenerate for a random model)
    vision = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": TINY_IMAGE_SIZE, "patch_size": 8, "initializer_range": 0.02}
    vocab = tiny_vocab()
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "encoder_hidden_size": 48, "max_position_embeddings": 64,
            "pad_token_id": vocab.index("[PAD]"), "bos_token_id": vocab.index("[CLS]"),
            "sep_token_id": vocab.index("[SEP]"), "eos_token_id": vocab.index("[SEP]"),
            # at BERT's std 0.02 the residual stream keeps [CLS]'s own embedding: every text embeds alike (cos > 0.9999)
            "initializer_range": 0.2}
    return transformers.BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)


def load_tiny_blip(name: str, *, device: Any = None, weights: str | Path | None = None,
                   preprocess: str = "default") -> BlipITCEncoder:
    """tiny-blip: BlipForImageTextRetrieval at tiny sizes with seeded random weights and a generated vocabulary."""
    if weights is not None:
        raise ValueError(f"{name} has seeded random weights; it takes no weights argument")
    transformers = import_transformers()
    with seeded(TINY_SEED):
        model = transformers.BlipForImageTextRetrieval(tiny_blip_config())
    processor = pil_processor_class("BlipImageProcessor")(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
    return _blip_encoder(model, processor, tiny_tokenizer(), name, device, preprocess,
                         f"{name}:random-seed{TINY_SEED}")
