"""``timm:MODEL``: any timm image model as an image-only encoder, its weights a local state dict file.

The file comes from ``weights=``, from the name itself (``timm:MODEL//abs/path.pth``, as ``open_clip:`` takes one),
or from ``$BLISS_WEIGHTS_DIR/timm--MODEL/``; nothing is downloaded. The model is built with ``num_classes=0``, so
it returns its pooled features (the classifier's keys in the file are ignored). Its preprocessing is timm's eval
transform for the model's pretrained config. (Named ``timm_models`` so it does not shadow the library.)
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bliss_utils._checks import require, torch_device
from bliss_utils._filehash import file_fingerprint
from bliss_utils.encoders import weights as wt
from bliss_utils.encoders.base import Build, Encoder, EncoderSpec, finish_model
from bliss_utils.encoders.errors import WeightsNotFoundError
from bliss_utils.encoders.preprocessing import _fmt, choose_recipe

logger = logging.getLogger(__name__)

TIMM = ("timm", "timm", "a timm:MODEL encoder")
PREFIX = "timm:"
# wrappers a training script may save the state dict in, outermost first
_WRAPPERS = ("state_dict_ema", "state_dict", "model")


@dataclass(frozen=True)
class TimmRecipe:
    """timm's eval transform (resize to ``size / crop_pct``, crop ``input_size``, normalise) after an RGB conversion."""

    input_size: tuple[int, int]
    interpolation: str
    crop_pct: float
    crop_mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def size(self) -> int:
        """The side the CIFAR-statistics recipe crops to (choose_recipe's "cifar" option)."""
        return min(self.input_size)

    @property
    def id(self) -> str:
        """Stable description of the recipe, e.g. for cache keys."""
        h, w = self.input_size
        return (
            f"rgb+timm-eval(input_size={h}x{w};interpolation={self.interpolation};crop_pct={self.crop_pct:.8g};"
            f"crop_mode={self.crop_mode};mean={_fmt(self.mean)};std={_fmt(self.std)})"
        )

    def build(self) -> Any:
        """The transform as a PIL -> (3, H, W) float tensor callable."""
        timm = require(*TIMM)
        config = {**asdict(self), "input_size": (3, *self.input_size)}  # the fields are create_transform's arguments
        return _RGB(timm.data.create_transform(**config, is_training=False))


class _RGB:
    """Convert greyscale and RGBA images before ``transform`` (timm's transforms keep the mode); picklable for
    DataLoader workers."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> Any:
        return self.transform(image if getattr(image, "mode", "RGB") == "RGB" else image.convert("RGB"))


class TimmImageEncoder(Encoder):
    """A timm model built with ``num_classes=0``: its forward pass returns the pooled (pre-logits) features."""

    def _image_features(self, pixels: Any) -> Any:
        return self.model(pixels)


def _model_name(spec: str) -> str:
    timm = require(*TIMM)
    model_name = spec.partition("/")[0]
    if not model_name:
        raise ValueError(f"{PREFIX + spec!r} names no timm model: use timm:MODEL//ABS/PATH.pth")
    if not timm.is_model(model_name):
        raise ValueError(f"unknown timm model {model_name!r} in {PREFIX + spec!r}; see timm.list_models()")
    return model_name


@functools.cache
def model_facts(model_name: str) -> tuple[int, dict[str, Any]]:
    """(embedding dimension, pretrained data config) of a timm model, from a forward pass on torch's meta device
    (no memory, no weights); a model the meta device cannot run is built once on the CPU instead."""
    import torch

    timm = require(*TIMM)

    def facts(model: Any) -> tuple[int, dict[str, Any]]:
        config = timm.data.resolve_model_data_config(model)
        return int(model(torch.zeros(1, *config["input_size"])).shape[-1]), config

    try:
        with torch.device("meta"):
            return facts(timm.create_model(model_name, pretrained=False, num_classes=0))
    except (NotImplementedError, RuntimeError) as err:
        logger.info("%s does not run on the meta device (%s); building it on the CPU for its size", model_name, err)
    model = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    with torch.inference_mode():
        return facts(model)


def _recipe(model_name: str, preprocess: str) -> Any:
    c = model_facts(model_name)[1]
    size = tuple(int(s) for s in c["input_size"][-2:])
    args = (c["interpolation"], float(c["crop_pct"]), c.get("crop_mode", "center"), tuple(c["mean"]), tuple(c["std"]))
    return choose_recipe(TimmRecipe(size, *args), preprocess)


def weights_file(spec: str, weights: str | Path | None = None) -> Path:
    """The state dict file of ``timm:<spec>``: ``weights``, else the path after ``MODEL/``, else the one weights file
    in ``$BLISS_WEIGHTS_DIR/timm--MODEL/``; none is a :class:`WeightsNotFoundError` naming the file looked for."""
    name, (model_name, _, embedded) = PREFIX + spec, spec.partition("/")
    never = "timm:MODEL reads a local state dict file and downloads nothing"
    given = weights if weights is not None else embedded or None
    if given is None:
        folder = Path(os.environ.get(wt.ENV_WEIGHTS_DIR) or f"<{wt.ENV_WEIGHTS_DIR}>") / wt.folder_name(name)
        found = sorted(p for p in folder.iterdir() if p.suffix in wt.WEIGHT_SUFFIXES) if folder.is_dir() else []
        if len(found) > 1:
            raise ValueError(f"{folder} holds several weights files {[p.name for p in found]}; pass weights=FILE")
        if not found:
            raise WeightsNotFoundError(
                f"{name!r} names no weights file ({never}): use timm:{model_name}//ABS/PATH.pth, pass weights=FILE, "
                f"or put the one file in {folder}"
            )
        given = found[0]
    path = Path(given).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(f"weights file {str(path)!r} of encoder {name!r} does not exist ({never})")
    if not path.is_file():
        raise ValueError(f"the weights of {name!r} must be a state dict file; {path} is not a file")
    return path


def _timm_build(spec: str, weights: str | Path | None, preprocess: str) -> Build:
    """The identity of ``timm:<spec>`` as a :class:`Build` (no device yet): file fingerprint, recipe, dimension."""
    model_name, path = _model_name(spec), weights_file(spec, weights)
    recipe, dim = _recipe(model_name, preprocess), model_facts(model_name)[0]
    identity = EncoderSpec(PREFIX + spec, f"state-dict@{file_fingerprint(path)}", recipe.id, dim, has_text=False)
    return Build(identity, recipe, path, None)


def describe_timm(spec: str, *, weights: str | Path | None = None, preprocess: str = "default") -> EncoderSpec:
    """The identity of ``timm:<spec>`` without building it (the file is fingerprinted, the size read on meta)."""
    return _timm_build(spec, weights, preprocess).spec


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors or torch.save file, unwrapped from a training checkpoint and ``module.``."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle's, torch's and safetensors' many ways of failing on a file that is no state dict
        raise ValueError(f"{path} is not a state dict file: {type(err).__name__}: {err}") from None
    while isinstance(state, dict) and (inner := next((state[k] for k in _WRAPPERS if k in state), None)) is not None:
        state = inner
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state(model: Any, model_name: str, path: Path) -> None:
    """Load the state dict in ``path`` into ``model`` (the classifier's keys dropped), or raise naming what differs."""
    state, own = read_state_dict(path), model.state_dict()
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    state = {k: v for k, v in state.items() if k in own or not k.startswith(tuple(f"{h}." for h in heads))}
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    changed = [k for k, v in own.items() if k in state and state[k].shape != v.shape]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in changed]
    problems = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches (file vs model)": shapes}
    if detail := "; ".join(f"{len(found)} {what}, e.g. {found[:3]}" for what, found in problems.items() if found):
        raise ValueError(f"{path} does not fit timm model {model_name!r} (num_classes=0): {detail}")
    model.load_state_dict(state, strict=True)


def load_timm(
    spec: str, *, device: Any = None, weights: str | Path | None = None, preprocess: str = "default"
) -> TimmImageEncoder:
    """Build ``timm:MODEL`` with the state dict of a local file, image-only, in eval mode on ``device``."""
    timm = require(*TIMM)
    build = replace(_timm_build(spec, weights, preprocess), device=torch_device(device))
    model_name = _model_name(spec)
    model = timm.create_model(model_name, pretrained=False, num_classes=0)
    load_state(model, model_name, build.weights)
    return TimmImageEncoder(finish_model(model, build.device), **build.encoder_fields())
