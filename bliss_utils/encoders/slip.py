"""SLIP ViT-B/16 (Mu et al. 2022): its released checkpoint mapped onto open_clip's CLIP with a timm vision tower.

The mapping: ``visual.*`` -> ``visual.trunk.*``, ``image_projection`` (x @ P) -> the
bias-free ``visual.head.proj`` Linear with weight P.T, ``image_mlp.*`` (the SimCLR head) dropped, text keys unchanged.
The checkpoint is read with ``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace`` and the
pathlib types SLIP's launcher stores in ``args`` (mapped to pure paths, which unpickle on any OS and touch no files).
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import re
from pathlib import Path
from typing import Any

from bliss_utils._checks import require
from bliss_utils.encoders.base import OPEN_CLIP, Build, seeded
from bliss_utils.encoders.openclip import OpenClipEncoder, open_clip_encoder
from bliss_utils.encoders.weights import TINY_SEED, explicit_path, fingerprint, url_file, weights_dir_entry

logger = logging.getLogger(__name__)

# the best ViT-B/16 SLIP release (100 epochs on YFCC15M, 45.0% zero-shot ImageNet)
SLIP_URL = "https://dl.fbaipublicfiles.com/slip/slip_base_100ep.pt"
SLIP_FILENAME = SLIP_URL.rsplit("/", 1)[-1]
SLIP_TIMM_MODEL = "vit_base_patch16_224"
ENV_SLIP_CHECKPOINT = "BLISS_SLIP_CHECKPOINT"

TINY_TIMM_MODEL = "bliss_tiny_slip_vit"
TINY_VISION = {"img_size": 32, "patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 2}
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 128, "layers": 2}  # width 128: two 64-wide heads
TINY_EMBED_DIM = 24
TINY_SSL_DIMS = (64, 16)  # SimCLR head widths of the tiny checkpoint (the real one: 4096, 256)

# SLIP's launcher keeps pathlib paths in ``args`` (e.g. output_dir). They are unpickled as pure paths: a PosixPath
# saved on Linux cannot be instantiated on Windows, and pure paths do no I/O. Python 3.13 pickles them as
# pathlib._local.
_PURE = {"PosixPath": pathlib.PurePosixPath, "WindowsPath": pathlib.PureWindowsPath}
_PATH_GLOBALS = [
    (pure, f"{m}.{p}{c}") for m in ("pathlib", "pathlib._local") for c, pure in _PURE.items() for p in ("", "Pure")
]
# open_clip's vision_cfg for SLIP's timm tower besides its name and size: [CLS] pooling, a bias-free linear projection
_TIMM_TOWER = {"timm_model_pretrained": False, "timm_pool": "token", "timm_proj": "linear", "timm_proj_bias": False}


# -- the checkpoint file ---------------------------------------------------------------------------------------------
def load_slip_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a SLIP checkpoint with weights_only=True, allowing only the Namespace and pathlib paths of its ``args``."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace, *_PATH_GLOBALS]):  # torch >= 2.5
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a SLIP checkpoint we can read safely: it needs a Python object beyond tensors, "
            f"argparse.Namespace and pathlib paths, which weights_only loading refuses ({str(err).splitlines()[0]})"
        ) from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, not a SLIP checkpoint dict")
    return ckpt


def checkpoint_state_dict(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The model weights of a SLIP checkpoint (its ``state_dict`` entry, or the dict itself), ``module.`` stripped."""
    sd = ckpt.get("state_dict", ckpt)
    if "module.image_projection" not in sd and "image_projection" not in sd:
        raise ValueError("not a SLIP/CLIP checkpoint from facebookresearch/SLIP: no 'image_projection' weight")
    return {k.removeprefix("module."): v for k, v in sd.items()}


# -- the key mapping (Route A) -----------------------------------------------------------------------------------------
def slip_to_open_clip(sd: dict[str, Any]) -> dict[str, Any]:
    """Map a SLIP state dict (``module.`` stripped) onto the keys of open_clip's CLIP with a timm tower."""
    sd = {k: v for k, v in sd.items() if not k.startswith("image_mlp.")}  # SimCLR head: used in training only
    return _renamed(sd, ("image_projection", "visual.head.proj.weight"), ("visual.", "visual.trunk."))


def open_clip_to_slip(sd: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`slip_to_open_clip` (without the SimCLR head): used to build tiny SLIP-layout checkpoints."""
    return _renamed(sd, ("visual.head.proj.weight", "image_projection"), ("visual.trunk.", "visual."))


def _renamed(sd: dict[str, Any], projection: tuple[str, str], tower: tuple[str, str]) -> dict[str, Any]:
    """``sd`` with key projection[0] transposed into projection[1] (x @ P == Linear(weight=P.T, bias=None)), the keys
    under the prefix tower[0] moved under tower[1], every other key unchanged."""
    out = {}
    for key, value in sd.items():
        if key == projection[0]:
            out[projection[1]] = value.t().contiguous()
        else:
            out[tower[1] + key[len(tower[0]) :] if key.startswith(tower[0]) else key] = value
    return out


def slip_config(sd: dict[str, Any], timm_model_name: str) -> dict[str, Any]:
    """open_clip CLIP keyword arguments for a SLIP state dict; the text tower's sizes are read from its shapes."""
    vocab, width = map(int, sd["token_embedding.weight"].shape)
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k)))
    text = {"context_length": int(sd["positional_embedding"].shape[0]), "vocab_size": vocab, "width": width}
    embed_dim = int(sd["text_projection"].shape[1])
    return _clip_kwargs(embed_dim, timm_model_name, _vision_image_size(sd), layers=layers, **text)


def _clip_kwargs(embed_dim: int, timm_model_name: str, image_size: int, **text: Any) -> dict[str, Any]:
    """open_clip CLIP keyword arguments of a SLIP model: a timm vision tower of ``image_size`` px, a text tower."""
    text["heads"] = max(1, text["width"] // 64)  # SLIP (like OpenAI CLIP) uses 64-wide heads: 8 at 512
    vision = {"timm_model_name": timm_model_name, **_TIMM_TOWER, "image_size": image_size}
    # quick_gelu reaches the text tower only: open_clip's timm towers keep timm's exact GELU, as SLIP
    return {"embed_dim": embed_dim, "quick_gelu": True, "vision_cfg": vision, "text_cfg": text}


def _vision_image_size(sd: dict[str, Any]) -> int:
    patch = int(sd["visual.patch_embed.proj.weight"].shape[-1])
    n_patches = int(sd["visual.pos_embed"].shape[1]) - 1
    return round(n_patches**0.5) * patch


def build_slip_model(sd: dict[str, Any], timm_model_name: str) -> Any:
    """An open_clip CLIP holding the SLIP weights ``sd`` (``module.`` stripped); every key must match."""
    open_clip = require(*OPEN_CLIP)
    _register_tiny_timm_model()
    model = open_clip.CLIP(**slip_config(sd, timm_model_name))
    try:
        model.load_state_dict(slip_to_open_clip(sd), strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:500]
        raise ValueError(f"the checkpoint does not fit SLIP with a {timm_model_name} vision tower: {detail}") from None
    return model


# -- tiny ------------------------------------------------------------------------------------------------------------
def _register_tiny_timm_model() -> None:
    import timm
    from timm.models import register_model

    if timm.models.is_model(TINY_TIMM_MODEL):
        return

    def bliss_tiny_slip_vit(pretrained: bool = False, **kwargs: Any) -> Any:
        from timm.models.vision_transformer import VisionTransformer

        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        model = VisionTransformer(**TINY_VISION, **kwargs)
        # open_clip's TimmModel reads default_cfg, which only timm's pretrained-config machinery would set
        model.pretrained_cfg = model.default_cfg = {"architecture": TINY_TIMM_MODEL, "num_classes": 0}
        return model

    register_model(bliss_tiny_slip_vit)


def make_tiny_slip_checkpoint(seed: int = TINY_SEED) -> dict[str, Any]:
    """A random checkpoint in SLIP's own layout (``module.`` keys, SimCLR head, ``args``), at tiny sizes."""
    import torch

    open_clip = require(*OPEN_CLIP)
    _register_tiny_timm_model()
    cfg = _clip_kwargs(TINY_EMBED_DIM, TINY_TIMM_MODEL, TINY_VISION["img_size"], **TINY_TEXT)
    with seeded(seed):
        sd = open_clip_to_slip(open_clip.CLIP(**cfg).state_dict())
        hidden, out_dim = TINY_SSL_DIMS
        width = TINY_VISION["embed_dim"]
        for i, (n_in, n_out) in enumerate([(width, hidden), (hidden, hidden), (hidden, out_dim)], start=1):
            sd[f"image_mlp.layer{i}.weight"] = torch.randn(n_out, n_in) * 0.02
            sd[f"image_mlp.layer{i}.bias"] = torch.zeros(n_out)
            if i < 3:  # BatchNorm after the first two layers
                bn = {"weight": torch.ones(n_out), "bias": torch.zeros(n_out), "running_mean": torch.zeros(n_out)}
                bn.update(running_var=torch.ones(n_out), num_batches_tracked=torch.tensor(0))
                sd.update({f"image_mlp.bn{i}.{k}": v for k, v in bn.items()})
    args = argparse.Namespace(model="SLIP_TINY", ssl_mlp_dim=hidden, ssl_emb_dim=out_dim)
    return {"epoch": 0, "state_dict": {"module." + k: v for k, v in sd.items()}, "args": args}


# -- encoders ----------------------------------------------------------------------------------------------------------
def _slip_encoder(ckpt: dict[str, Any], timm_model_name: str, build: Build) -> OpenClipEncoder:
    model = build_slip_model(checkpoint_state_dict(ckpt), timm_model_name)
    # SLIP's tokenizer is OpenAI CLIP's BPE, byte-identical to open_clip's (prompts over 77 tokens end differently)
    return open_clip_encoder(model, require(*OPEN_CLIP).get_tokenizer("ViT-B-16"), build)


def slip_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(file, weights identity): ``weights``, $BLISS_SLIP_CHECKPOINT, $BLISS_WEIGHTS_DIR, then torch hub's folder."""
    import os

    explicit = weights if weights is not None else os.environ.get(ENV_SLIP_CHECKPOINT) or None
    if explicit is not None:
        path = explicit_path(explicit, name, SLIP_URL, SLIP_FILENAME)
    else:
        path = weights_dir_entry(name, SLIP_FILENAME) or url_file(SLIP_URL, name, local_only)
    return path, f"slip-checkpoint@{fingerprint(path)}"


def load_slip_vit_b16(build: Build) -> OpenClipEncoder:
    """SLIP ViT-B/16 from its released checkpoint (found by :func:`slip_weights`)."""
    return _slip_encoder(load_slip_checkpoint(build.weights), SLIP_TIMM_MODEL, build)


def load_tiny_slip(build: Build) -> OpenClipEncoder:
    """tiny-slip: a seeded random SLIP-layout checkpoint through the same mapping as slip-vit-b16; no download."""
    return _slip_encoder(make_tiny_slip_checkpoint(), TINY_TIMM_MODEL, build)
