"""open_clip backbones: OpenAI CLIP ViT-B/16 (QuickGELU), any ``open_clip:MODEL/PRETRAINED``, and tiny-clip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .base import Encoder, finish_model, seeded, select_device
from .preprocessing import OPENAI_MEAN, OPENAI_STD, ResizeCropNormalize, choose_recipe
from .weights import explicit_path, fingerprint, hf_first_file, missing, url_file, weights_dir_entry

logger = logging.getLogger(__name__)

# OpenAI's weights were trained with QuickGELU; plain "ViT-B-16" would silently build a GELU model
CLIP_MODEL = "ViT-B-16-quickgelu"
CLIP_TAG = "openai"

# BACKBONES.md section 3; 32 px with patch 8 keeps it fast on a CPU
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_SEED = 0


def import_open_clip() -> Any:
    """Import open_clip, or raise an ImportError naming the pip command."""
    try:
        import open_clip
    except ImportError as err:
        raise ImportError("this encoder needs open_clip: pip install open_clip_torch") from err
    return open_clip


class OpenClipEncoder(Encoder):
    """Any open_clip model (``encode_image`` / ``encode_text``) with its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.tokenizer = tokenizer

    def _image_features(self, pixels: Any) -> Any:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> Any:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def _image_size(model: Any) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def make_open_clip_encoder(
    model: Any, tokenizer: Any, name: str, dim: int, device: Any, recipe: ResizeCropNormalize, weights_id: str
) -> OpenClipEncoder:
    """Wrap a built open_clip model: eval mode, device, transform and ids."""
    model = finish_model(model, device)
    return OpenClipEncoder(
        model, tokenizer, name=name, dim=dim, device=device, preprocess=recipe.build(),
        preprocess_id=recipe.id, weights_id=weights_id,
    )


def _tag_checkpoint(model_name: str, tag: str, encoder: str) -> Path:
    """Resolve a pretrained tag's file ourselves so offline mode and missing files give our one clear error."""
    open_clip = import_open_clip()
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    local = weights_dir_entry(encoder)
    if local is not None:
        found = sorted(p for p in local.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
        if found:
            return found[0]
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = hub.rstrip("/"), ""
        if not hub.endswith("/"):
            repo, filename = hub.rsplit("/", 1)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        return hf_first_file(repo, names, encoder)
    if cfg.get("url"):
        return url_file(cfg["url"], encoder)
    raise missing(encoder, f"the weights of open_clip tag {model_name}/{tag}", "open_clip_model.safetensors")


def load_open_clip_spec(
    spec: str, *, device: Any = None, weights: str | Path | None = None, preprocess: str = "default",
    name: str | None = None,
) -> OpenClipEncoder:
    """Build ``open_clip:MODEL/PRETRAINED`` (PRETRAINED: a tag of MODEL, or a local checkpoint file)."""
    open_clip = import_open_clip()
    model_name, _, pretrained = spec.partition("/")
    name = name or f"open_clip:{spec}"
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r} in {name!r}; see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if weights is None and not pretrained:
        raise ValueError(f"{name!r} names no weights: use open_clip:{model_name}/TAG with TAG one of {tags}")
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained in tags else {}
    if weights is not None:
        path = explicit_path(weights, name, f"the checkpoint for {spec}", "open_clip_model.safetensors")
        weights_id = f"{name}@sha256:{fingerprint(path)}"
    elif pretrained in tags:
        path = _tag_checkpoint(model_name, pretrained, name)
        weights_id = f"open_clip:{model_name}/{pretrained}"
    else:
        path = explicit_path(pretrained, name, f"the checkpoint for {spec} (or a tag of {model_name}: {tags})",
                             Path(pretrained).name)
        weights_id = f"{name}@sha256:{fingerprint(path)}"
    _refuse_torchscript(path, name)
    # a tag's quick_gelu must reach the architecture: passing a file path bypasses open_clip's tag lookup
    model = open_clip.create_model(
        model_name, pretrained=str(path), force_quick_gelu=bool(cfg.get("quick_gelu", False)),
    )
    default = ResizeCropNormalize(
        size=_image_size(model), interpolation=cfg.get("interpolation", "bicubic"),
        mean=tuple(cfg.get("mean", OPENAI_MEAN)), std=tuple(cfg.get("std", OPENAI_STD)),
    )
    return make_open_clip_encoder(
        model, open_clip.get_tokenizer(model_name), name, int(open_clip.get_model_config(model_name)["embed_dim"]),
        select_device(device),
        choose_recipe(default, preprocess), weights_id,
    )


def _refuse_torchscript(path: Path, name: str) -> None:
    """OpenAI's original .pt files are TorchScript archives, which torch.load(weights_only=True) cannot read."""
    import zipfile

    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(n.endswith("constants.pkl") for n in archive.namelist()):
                raise ValueError(
                    f"{path} is a TorchScript archive (OpenAI's original format), which is not loaded (it cannot be "
                    f"read with weights_only=True); for {name} use open_clip_model.safetensors from Hugging Face"
                )


def load_clip_vit_b16(name: str, *, device: Any = None, weights: str | Path | None = None,
                      preprocess: str = "default") -> OpenClipEncoder:
    """OpenAI CLIP ViT-B/16 (the paper's default backbone) through open_clip, with QuickGELU."""
    return load_open_clip_spec(f"{CLIP_MODEL}/{CLIP_TAG}", device=device, weights=weights,
                               preprocess=preprocess, name=name)


def build_tiny_clip(seed: int = TINY_SEED) -> Any:
    """The tiny open_clip CLIP (QuickGELU, real tokenizer vocabulary) with seeded random weights."""
    open_clip = import_open_clip()
    with seeded(seed):
        return open_clip.CLIP(**TINY_CLIP_CFG)


def load_tiny_clip(name: str, *, device: Any = None, weights: str | Path | None = None,
                   preprocess: str = "default") -> OpenClipEncoder:
    """tiny-clip: open_clip's CLIP architecture at 32 px with seeded random weights; no download."""
    if weights is not None:
        raise ValueError(f"{name} has seeded random weights; it takes no weights argument")
    open_clip = import_open_clip()
    default = ResizeCropNormalize(TINY_CLIP_CFG["vision_cfg"]["image_size"], "bicubic", OPENAI_MEAN, OPENAI_STD)
    return make_open_clip_encoder(
        build_tiny_clip(), open_clip.get_tokenizer("ViT-B-16"), name, TINY_CLIP_CFG["embed_dim"], select_device(device),
        choose_recipe(default, preprocess), f"{name}:random-seed{TINY_SEED}",
    )
