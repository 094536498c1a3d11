"""``hf:REPO_ID``: any transformers CLIP-style model (``get_image_features`` / ``get_text_features``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bliss_utils._checks import require, torch_device
from bliss_utils.encoders import preprocessing as pp
from bliss_utils.encoders.base import TRANSFORMERS, Build, Encoder, EncoderSpec, finish_model
from bliss_utils.encoders.errors import WeightsNotFoundError
from bliss_utils.encoders.hf_common import model_folder, pil_processor_class


def _features(out: Any) -> Any:
    # transformers 5 returns a ModelOutput whose pooler_output holds the projected features; 4.x a tensor
    return out.pooler_output if getattr(out, "pooler_output", None) is not None else out


class HFClipEncoder(Encoder):
    """A transformers dual encoder with get_image_features/get_text_features and its own tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, max_tokens: int, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.max_tokens = max_tokens

    def _image_features(self, pixels: Any) -> Any:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]) -> Any:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        return _features(self.model.get_text_features(**tok))


def _parts(repo_id: str, weights: str | Path | None, preprocess: str, local_only: bool) -> Build:
    """Everything but the model as a :class:`Build` (no device yet): folder, identity, processor-based recipe."""
    transformers = require(*TRANSFORMERS)
    name = f"hf:{repo_id}"
    if not repo_id:
        raise ValueError("hf:REPO_ID needs a repository id, e.g. hf:openai/clip-vit-base-patch16")
    if weights is None and Path(repo_id).expanduser().is_dir():
        weights = repo_id
    elif weights is None and (repo_id.startswith(("/", ".", "~")) or repo_id.count("/") > 1):  # a path, not a hub id
        raise WeightsNotFoundError(
            f"{name}: there is no folder {Path(repo_id).expanduser()}; hf: takes a folder saved with "
            "save_pretrained (config.json, weights, tokenizer and preprocessor files) or a hub id, e.g. "
            "hf:openai/clip-vit-base-patch16"
        )
    folder, weights_id = model_folder(repo_id, name, weights, local_only)
    config = transformers.AutoConfig.from_pretrained(folder)
    generic = type(transformers.AutoImageProcessor.from_pretrained(folder)).__name__
    processor = pil_processor_class(generic.removesuffix("Fast").removesuffix("Pil")).from_pretrained(folder)
    if preprocess == "cifar":
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        recipe = pp.choose_recipe(pp.ResizeCropNormalize(_processor_size(processor), "bicubic", mean, std), "cifar")
    else:
        transform, preprocess_id = pp.hf_image_processor_transform(processor)
        recipe = SimpleNamespace(id=preprocess_id, build=lambda: transform)
    dim = int(getattr(config, "projection_dim", 0) or config.text_config.hidden_size)
    return Build(EncoderSpec(name, weights_id, recipe.id, dim), recipe, folder, None)


def describe_hf_clip(repo_id: str, *, weights: str | Path | None = None, preprocess: str = "default") -> Any:
    """The identity of ``hf:REPO_ID`` from its config and processor files, without loading the model weights."""
    return _parts(repo_id, weights, preprocess, local_only=True).spec


def load_hf_clip(
    repo_id: str, *, device: Any = None, weights: str | Path | None = None, preprocess: str = "default"
) -> HFClipEncoder:
    """Build ``hf:REPO_ID`` (REPO_ID may also be a local folder saved with save_pretrained)."""
    transformers = require(*TRANSFORMERS)
    build = _parts(repo_id, weights, preprocess, local_only=False)
    model = transformers.AutoModel.from_pretrained(build.weights)
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ValueError(
            f"{build.spec.name} loads a {type(model).__name__}, which has no get_image_features/get_text_features"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(build.weights)
    text_cfg = getattr(model.config, "text_config", model.config)
    max_tokens = int(getattr(text_cfg, "max_position_embeddings", 77))
    build = replace(build, device=torch_device(device))
    return HFClipEncoder(finish_model(model, build.device), tokenizer, max_tokens, **build.encoder_fields())


def _processor_size(processor: Any) -> int:
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = pp._compact(crop or processor.size)  # a plain dict, also of transformers 5's SizeDict
    return int(size.get("height") or size.get("shortest_edge"))
