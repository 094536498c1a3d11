"""BLIP image-text contrastive (ITC) embeddings through transformers' BlipForImageTextRetrieval, and tiny-blip.

The embeddings are the retrieval model's own ITC path: image = vision_proj of the
[CLS] state of vision_model, text = text_proj of the [CLS] state of the text encoder run without the image;
their cosine equals ``model(..., use_itm_head=False).itm_score``. BlipModel's get_*_features would use other,
unloaded projections.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

from bliss_utils._checks import require
from bliss_utils.encoders.base import TRANSFORMERS, Build, Encoder, finish_model, seeded
from bliss_utils.encoders.hf_common import model_folder
from bliss_utils.encoders.vit import TINY_VIT
from bliss_utils.encoders.weights import TINY_SEED, random_weights

BLIP_REPO = "Salesforce/blip-itm-base-coco"
BLIP_MAX_TOKENS = 35  # the original BLIP's text length for retrieval
# the original BLIP vision transformer's LayerNorm eps; the converted Hub configs carry transformers' default 1e-5
BLIP_VISION_LN_EPS = 1e-6
_EPS_SUFFIX = f"+vision-ln-eps={BLIP_VISION_LN_EPS:g}"  # what every blip weights id records of it

TINY_WORDS = ("this", "is", "a", "photo", "of", "the")


class BlipITCEncoder(Encoder):
    """BLIP's ITC image and text embeddings (``BlipForImageTextRetrieval`` without the ITM head)."""

    def _image_features(self, pixels: Any) -> Any:
        hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state
        return self.model.vision_proj(hidden[:, 0, :])

    def _text_features(self, texts: list[str]) -> Any:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=BLIP_MAX_TOKENS, return_tensors="pt")
        tok = {k: tok[k].to(self.device) for k in ("input_ids", "attention_mask")}
        hidden = self.model.text_encoder(**tok).last_hidden_state
        return self.model.text_proj(hidden[:, 0, :])


def blip_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(model folder, weights identity) of blip; the identity records the vision LayerNorm eps it is loaded with."""
    folder, weights_id = model_folder(BLIP_REPO, name, weights, local_only)
    return folder, weights_id + _EPS_SUFFIX


def tiny_blip_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[None, str]:
    """(no file, identity) of tiny-blip's seeded random weights, with the vision LayerNorm eps."""
    return None, random_weights(name, weights)[1] + _EPS_SUFFIX


def load_blip(build: Build) -> BlipITCEncoder:
    """BLIP ViT-B retrieval model fine-tuned on COCO (Salesforce/blip-itm-base-coco), ITC embeddings."""
    transformers = require(*TRANSFORMERS)
    config = transformers.BlipConfig.from_pretrained(build.weights)
    config.vision_config.layer_norm_eps = BLIP_VISION_LN_EPS  # what blip_weights' identity records
    model = transformers.BlipForImageTextRetrieval.from_pretrained(build.weights, config=config)
    tokenizer = transformers.AutoTokenizer.from_pretrained(build.weights)
    return BlipITCEncoder(finish_model(model, build.device), tokenizer, **build.encoder_fields())


def tiny_vocab() -> list[str]:
    """A small generated WordPiece vocabulary: BERT's special tokens, characters, ``##`` continuations, a few words."""
    chars = string.ascii_lowercase + string.digits
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return [*special, *TINY_WORDS, *chars, *string.punctuation, *("##" + c for c in chars)]


def tiny_tokenizer() -> Any:
    """A BERT-uncased-style tokenizer over :func:`tiny_vocab` (NOT bert-base-uncased, which cannot be downloaded)."""
    transformers = require(*TRANSFORMERS)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
        return transformers.BertTokenizer.from_pretrained(folder)


def tiny_blip_config(image_size: int) -> Any:
    """A small BlipConfig with the real model's structure, for ``image_size`` px inputs."""
    transformers = require(*TRANSFORMERS)
    # BlipVisionConfig initialises with std 1e-10 (fine before loading weights, degenerate for a random model)
    vision = {**TINY_VIT, "image_size": image_size, "initializer_range": 0.02, "layer_norm_eps": BLIP_VISION_LN_EPS}
    vocab = tiny_vocab()
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    text.update(num_attention_heads=2, encoder_hidden_size=TINY_VIT["hidden_size"], max_position_embeddings=64)
    text.update(pad_token_id=vocab.index("[PAD]"), bos_token_id=vocab.index("[CLS]"))
    text.update(sep_token_id=vocab.index("[SEP]"), eos_token_id=vocab.index("[SEP]"))
    # at BERT's std 0.02 the residual stream keeps [CLS]'s own embedding: every text embeds alike (cos > 0.9999)
    text["initializer_range"] = 0.2
    return transformers.BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)


def load_tiny_blip(build: Build) -> BlipITCEncoder:
    """tiny-blip: BlipForImageTextRetrieval at tiny sizes with seeded random weights and a generated vocabulary."""
    transformers = require(*TRANSFORMERS)
    with seeded(TINY_SEED):
        model = transformers.BlipForImageTextRetrieval(tiny_blip_config(build.recipe.size))
    return BlipITCEncoder(finish_model(model, build.device), tiny_tokenizer(), **build.encoder_fields())
