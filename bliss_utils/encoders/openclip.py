"""open_clip backbones: OpenAI CLIP ViT-B/16 (QuickGELU), any ``open_clip:MODEL/PRETRAINED``, and tiny-clip."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from bliss_utils._checks import require, torch_device
from bliss_utils.encoders import weights as wt
from bliss_utils.encoders.base import OPEN_CLIP, Build, Encoder, EncoderSpec, finish_model, seeded
from bliss_utils.encoders.preprocessing import OPENAI_MEAN, OPENAI_STD, ResizeCropNormalize, choose_recipe

logger = logging.getLogger(__name__)

# OpenAI's weights were trained with QuickGELU; plain "ViT-B-16" would silently build a GELU model
CLIP_MODEL = "ViT-B-16-quickgelu"
CLIP_TAG = "openai"

# 32 px with patch 8 keeps it fast on a CPU
TINY_CLIP_CFG: dict[str, Any] = {"embed_dim": 32, "quick_gelu": True}
TINY_CLIP_CFG["vision_cfg"] = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32}
TINY_CLIP_CFG["text_cfg"] = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}


class OpenClipEncoder(Encoder):
    """Any open_clip model (``encode_image`` / ``encode_text``) with its tokenizer."""

    def _image_features(self, pixels: Any) -> Any:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> Any:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


_STATE_DICT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")  # what counts as a weights file in $BLISS_WEIGHTS_DIR/<encoder>/


def openai_url(model_name: str) -> str:
    """The URL of OpenAI's own TorchScript file for ``model_name`` (as open_clip lists it), or ''."""
    open_clip = require(*OPEN_CLIP)
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    return open_clip.get_pretrained_cfg(model_name, CLIP_TAG).get("url", "") if CLIP_TAG in tags else ""


def openai_sha256(model_name: str) -> str:
    """The sha256 OpenAI publishes for its file: the URL's last folder (open_clip's downloader checks the same)."""
    url = openai_url(model_name)
    return url.split("/")[-2] if "openaipublic" in url else ""


def openai_filename(model_name: str = CLIP_MODEL) -> str:
    """The file name of OpenAI's own checkpoint, e.g. ``ViT-B-16.pt``."""
    return openai_url(model_name).rsplit("/", 1)[-1]


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (OpenAI's original .pt format), told apart from torch.save files by its code."""
    import zipfile

    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def check_sha256(path: Path, expected: str) -> None:
    """Raise ValueError unless ``path``'s sha256 equals ``expected`` (checked before a TorchScript file is loaded)."""
    from bliss_utils._filehash import file_sha256

    actual = file_sha256(path)
    if not expected or actual != expected.lower():
        raise ValueError(
            f"{path} is not the checkpoint OpenAI published: sha256 {actual}, expected {expected or '(unknown)'}. "
            f"Fetch it again, or use open_clip_model.safetensors from Hugging Face."
        )


def load_openai_torchscript(path: Path, expected_sha256: str) -> Any:
    """OpenAI's TorchScript file as a plain open_clip CLIP (QuickGELU, fp32), after checking its sha256."""
    check_sha256(path, expected_sha256)
    open_clip = require(*OPEN_CLIP)
    # open_clip reads the archive's state dict and builds its own (non-scripted) CLIP from it
    return open_clip.load_openai_model(str(path), precision="fp32", device="cpu")


def _weights_id(path: Path) -> str:
    kind = "openai-torchscript" if is_torchscript(path) else "state-dict"
    return f"{kind}@{wt.fingerprint(path)}"


def _weights_dir_file(encoder: str, preferred: tuple[str, ...]) -> Path | None:
    """The weights file in ``$BLISS_WEIGHTS_DIR/<encoder>/``: the first of ``preferred`` there, else the first."""
    if (local := wt.weights_dir_entry(encoder)) is None or not local.is_dir():
        return None
    if not (found := sorted(p for p in local.iterdir() if p.is_file() and p.suffix in _SUFFIXES)):
        return None
    rank = {n: i for i, n in enumerate(preferred)}
    chosen = min(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))
    if len(found) > 1:
        logger.info("%s: %d weight files in %s; using %s", encoder, len(found), local, chosen.name)
    return chosen


def _tag_file(model_name: str, tag: str, encoder: str, local_only: bool) -> Path:
    """Resolve a pretrained tag's file ourselves so offline mode and missing files give our one clear error."""
    open_clip = require(*OPEN_CLIP)
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    preferred = (*([openai_filename(model_name)] if openai_sha256(model_name) else []), *_STATE_DICT_FILES)
    if (local := _weights_dir_file(encoder, preferred if tag == CLIP_TAG else _STATE_DICT_FILES)) is not None:
        return local
    if hub := cfg.get("hf_hub", ""):
        repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else hub.rsplit("/", 1)
        return wt.hf_first_file(repo, [filename] if filename else list(_STATE_DICT_FILES), encoder, local_only)
    if cfg.get("url"):
        return wt.url_file(cfg["url"], encoder, local_only)
    raise wt.missing(encoder, f"the weights of open_clip tag {model_name}/{tag}", "open_clip_model.safetensors")


def _open_clip_file(spec: str, name: str, weights: str | Path | None, local_only: bool) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, pretrained config) of ``MODEL/PRETRAINED`` or of ``weights``: the lookup order of loading."""
    open_clip = require(*OPEN_CLIP)
    model_name, _, pretrained = spec.partition("/")
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r} in {name!r}; see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if weights is None and not pretrained:
        raise ValueError(f"{name!r} names no weights: use open_clip:{model_name}/TAG with TAG one of {tags}")
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained in tags else {}
    if weights is not None:
        return wt.explicit_path(weights, name, f"the checkpoint for {spec}", "open_clip_model.safetensors"), cfg
    if pretrained in tags:
        return _tag_file(model_name, pretrained, name, local_only), cfg
    fetch = f"the checkpoint for {spec} (or a tag of {model_name}: {tags})"
    return wt.explicit_path(pretrained, name, fetch, Path(pretrained).name), cfg


def _open_clip_build(spec: str, weights: str | Path | None, preprocess: str, local_only: bool) -> tuple[Build, dict]:
    """The identity of ``open_clip:MODEL/PRETRAINED`` as a :class:`Build` (no device yet) and the tag's config."""
    open_clip = require(*OPEN_CLIP)
    name, model_name = f"open_clip:{spec}", spec.partition("/")[0]
    path, cfg = _open_clip_file(spec, name, weights, local_only)
    size = open_clip.get_model_config(model_name)["vision_cfg"].get("image_size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean, std = tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD))
    recipe = choose_recipe(ResizeCropNormalize(size, cfg.get("interpolation", "bicubic"), mean, std), preprocess)
    dim = int(open_clip.get_model_config(model_name)["embed_dim"])
    return Build(EncoderSpec(name, _weights_id(path), recipe.id, dim), recipe, path, None), cfg


def describe_open_clip_spec(spec: str, *, weights: str | Path | None = None, preprocess: str = "default") -> Any:
    """The identity of ``open_clip:MODEL/PRETRAINED`` without building it (weights found, never downloaded)."""
    return _open_clip_build(spec, weights, preprocess, local_only=True)[0].spec


def _open_clip_model_encoder(model_name: str, cfg: dict[str, Any], build: Build) -> OpenClipEncoder:
    """The encoder ``build`` declares: open_clip's ``model_name`` (tag config ``cfg``) with ``build.weights``."""
    open_clip = require(*OPEN_CLIP)
    if is_torchscript(build.weights):
        model = load_openai_torchscript(build.weights, openai_sha256(model_name))
    else:  # a tag's quick_gelu must reach the architecture: passing a file path bypasses open_clip's tag lookup
        quick_gelu = bool(cfg.get("quick_gelu", False))
        model = open_clip.create_model(model_name, pretrained=str(build.weights), force_quick_gelu=quick_gelu)
    return open_clip_encoder(model, open_clip.get_tokenizer(model_name), build)


def load_open_clip_spec(
    spec: str, *, device: Any = None, weights: str | Path | None = None, preprocess: str = "default"
) -> OpenClipEncoder:
    """Build ``open_clip:MODEL/PRETRAINED`` (PRETRAINED: a tag of MODEL, or a local checkpoint file)."""
    build, cfg = _open_clip_build(spec, weights, preprocess, local_only=False)
    return _open_clip_model_encoder(spec.partition("/")[0], cfg, replace(build, device=torch_device(device)))


def open_clip_encoder(model: Any, tokenizer: Any, build: Build) -> OpenClipEncoder:
    """Wrap a built open_clip model as the encoder ``build`` declares: eval mode, on its device."""
    return OpenClipEncoder(finish_model(model, build.device), tokenizer, **build.encoder_fields())


def open_clip_weights(spec: str, name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(file, weights identity) of ``MODEL/PRETRAINED``: ``weights``, else ``$BLISS_WEIGHTS_DIR``, else the HF cache."""
    path, _ = _open_clip_file(spec, name, weights, local_only)
    return path, _weights_id(path)


def clip_vit_b16_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(file, weights identity) of clip-vit-b16 (see :func:`open_clip_weights`)."""
    return open_clip_weights(f"{CLIP_MODEL}/{CLIP_TAG}", name, weights, local_only)


def load_clip_vit_b16(build: Build) -> OpenClipEncoder:
    """OpenAI CLIP ViT-B/16 (the paper's default backbone) through open_clip, with QuickGELU."""
    return _open_clip_model_encoder(CLIP_MODEL, require(*OPEN_CLIP).get_pretrained_cfg(CLIP_MODEL, CLIP_TAG), build)


def build_tiny_clip(seed: int = wt.TINY_SEED, cfg: dict[str, Any] = TINY_CLIP_CFG) -> Any:
    """The tiny open_clip CLIP ``cfg`` (QuickGELU, real tokenizer vocabulary) with seeded random weights."""
    open_clip = require(*OPEN_CLIP)
    with seeded(seed):
        return open_clip.CLIP(**cfg)


def load_tiny_clip(build: Build) -> OpenClipEncoder:
    """tiny-clip: open_clip's CLIP architecture at 32 px with seeded random weights; no download."""
    return open_clip_encoder(build_tiny_clip(), require(*OPEN_CLIP).get_tokenizer("ViT-B-16"), build)
