"""Encoder names -> what they are (declared as data) and how to build them.

Each named backbone declares its dimension and its preprocessing recipes as data, and holds two functions: one that
finds its weights file and returns the weights identity (cheap: no model is built), one that builds the model from what
the entry declares (:class:`~bliss_utils.encoders.base.Build`). So :func:`describe_encoder` knows everything the
embedding cache keys on without building a model, and the built encoder carries that same identity. The family
modules import torch, open_clip, transformers and timm inside their functions, so importing them here stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from bliss_utils._checks import torch_device
from bliss_utils.encoders import anomalyclip, blip, hf_clip, openclip, slip, timm_models, toy, vit
from bliss_utils.encoders import preprocessing as pp
from bliss_utils.encoders import weights as wt
from bliss_utils.encoders.base import Build, Encoder, EncoderSpec, device_precision
from bliss_utils.plugins import PLUGINS_VAR, load_plugins

logger = logging.getLogger(__name__)

PREPROCESS_OPTIONS = ("default", "cifar")


@dataclass(frozen=True)
class Backbone:
    """A named encoder as data: its builder (a Build -> Encoder) and weights resolver ((name, weights, local_only) ->
    (file, weights id)), dimension, recipes, text tower."""

    builder: Callable[[Build], Encoder]
    weights: Callable[..., tuple[Path | None, str]]
    dim: int
    recipes: Mapping[str, pp.Recipe] | pp.Recipe = field(repr=False)
    has_text: bool = True
    precision: str | None = None  # one precision on every device (the toys compute in numpy fp32); None: precision_for

    def __post_init__(self) -> None:
        if not isinstance(self.recipes, Mapping):  # one recipe: the backbone's own, with its "cifar" counterpart
            object.__setattr__(self, "recipes", pp.recipes(self.recipes))


# each backbone's own preprocessing at a given size
_CLIP = partial(pp.ResizeCropNormalize, interpolation="bicubic", mean=pp.OPENAI_MEAN, std=pp.OPENAI_STD)
# SLIP evaluates with torchvision's default (bilinear) Resize and ImageNet statistics
_SLIP = partial(pp.ResizeCropNormalize, interpolation="bilinear", mean=pp.IMAGENET_MEAN, std=pp.IMAGENET_STD)
# the released BLIP and ViT-in21k preprocessor_config.json files: squash (no crop), BLIP bicubic, ViT bilinear
_BLIP = partial(pp.HFProcessorRecipe, "BlipImageProcessor", resample="BICUBIC", mean=pp.OPENAI_MEAN, std=pp.OPENAI_STD)
_VIT = partial(pp.HFProcessorRecipe, "ViTImageProcessor", resample="BILINEAR", mean=(0.5,) * 3, std=(0.5,) * 3)
# AnomalyCLIP: a bicubic squash, no crop (its "cifar" recipe stays a squash)
_SQUASH = partial(pp.SquashNormalize, interpolation="bicubic", mean=pp.OPENAI_MEAN, std=pp.OPENAI_STD)
# the smoke and rehearsal stand-ins: one fixed preprocessing and precision, whatever the option and device
_TOY = partial(Backbone, toy.load_toy, toy.toy_weights, precision=toy.ToyEncoder.PRECISION)
TINY_SIZE = 32
ANOMALYCLIP_SIZE = 518  # the authors' test resolution, from ViT-L/14's 336: positional embeddings interpolated
# tiny-anomalyclip runs its 32 px model at 48 px to exercise the same interpolation
TINY_ANOMALYCLIP_SIZE = 48

_BACKBONES: dict[str, Backbone] = {
    "clip-vit-b16": Backbone(openclip.load_clip_vit_b16, openclip.clip_vit_b16_weights, 512, _CLIP(224)),
    "blip": Backbone(blip.load_blip, blip.blip_weights, 256, _BLIP(384)),
    "slip-vit-b16": Backbone(slip.load_slip_vit_b16, slip.slip_weights, 512, _SLIP(224)),
    "vit-b16-in21k": Backbone(vit.load_vit_in21k, vit.vit_weights, 768, _VIT(224), has_text=False),
    "tiny-clip": Backbone(openclip.load_tiny_clip, wt.random_weights, 32, _CLIP(TINY_SIZE)),
    "tiny-blip": Backbone(blip.load_tiny_blip, blip.tiny_blip_weights, 16, _BLIP(TINY_SIZE)),
    "tiny-slip": Backbone(slip.load_tiny_slip, wt.random_weights, 24, _SLIP(TINY_SIZE)),
    "tiny-vit": Backbone(vit.load_tiny_vit, wt.random_weights, 48, _VIT(TINY_SIZE), has_text=False),
    # AnomalyCLIP's backbone with the authors' learned prompts (docs/related_methods.md): a 518 px squash, no crop
    "anomalyclip-vit-l14-336": Backbone(
        anomalyclip.load_anomalyclip_vit_l14_336, anomalyclip.anomalyclip_weights, 768, _SQUASH(ANOMALYCLIP_SIZE)
    ),
    "tiny-anomalyclip": Backbone(
        anomalyclip.load_tiny_anomalyclip, anomalyclip.tiny_anomalyclip_weights, 32, _SQUASH(TINY_ANOMALYCLIP_SIZE)
    ),
    # smoke and rehearsal stand-ins whose towers agree (encoders/toy.py): one fixed preprocessing whatever the option
    **{
        n: _TOY(s.dim, dict.fromkeys(PREPROCESS_OPTIONS, toy.ToyRecipe()), s.has_text)
        for n, s in toy.TOY_ENCODERS.items()
    },
}


@dataclass(frozen=True)
class Registered:
    """An encoder added by :func:`register_encoder`: its builder and what the user declared of its identity."""

    builder: Callable[..., Encoder]
    dim: int | None = None
    preprocess_id: str | Mapping[str, str] | None = None
    weights_id: str | Callable[[str | Path | None], str] | None = None
    has_text: bool = True
    precision: str | None = None

    @property
    def declared(self) -> bool:
        """Whether the identity is declared (dimension, preprocessing and weights), so describing builds nothing."""
        return self.dim is not None

    def spec(self, name: str, weights: Any, preprocess: str, device: Any) -> EncoderSpec | None:
        """The declared identity for these arguments; None when it must be learnt by building the encoder."""
        if not self.declared or (weights is not None and not callable(self.weights_id)):
            return None
        weights_id = self.weights_id(weights) if callable(self.weights_id) else self.weights_id
        pid = self.preprocess_id if isinstance(self.preprocess_id, str) else self.preprocess_id[preprocess]
        precision = self.precision or precision_for(device)
        return EncoderSpec(name, str(weights_id), pid, self.dim, self.has_text, precision, preprocess)


# encoders added at run time by register_encoder (here, or by a module that $BLISS_PLUGINS names)
_CUSTOM: dict[str, Registered] = {}


# open forms: prefix -> (builder, describer), each receiving the text after the prefix as its first argument
_OPEN_FORMS: dict[str, tuple[Callable[..., Encoder], Callable[..., EncoderSpec]]] = {
    "open_clip:": (openclip.load_open_clip_spec, openclip.describe_open_clip_spec),
    "hf:": (hf_clip.load_hf_clip, hf_clip.describe_hf_clip),
    "timm:": (timm_models.load_timm, timm_models.describe_timm),
}
_OPEN_FORM_HELP = (
    "open_clip:MODEL/PRETRAINED",
    "open_clip:MODEL//ABS/PATH.pt",
    "hf:REPO_ID",
    "timm:MODEL//ABS/PATH.pth",
)


def list_encoders() -> list[str]:
    """Names :func:`load_encoder` accepts, the encoders that ``$BLISS_PLUGINS`` modules register included.

    Besides them: the open forms ``open_clip:MODEL/PRETRAINED``, ``open_clip:MODEL//ABS/PATH.pt`` (a local checkpoint),
    ``hf:REPO_ID`` and ``timm:MODEL//ABS/PATH.pth`` (an image-only timm model from a local state dict).
    """
    load_plugins()
    return [*_BACKBONES, *(n for n in _CUSTOM if n not in _BACKBONES)]


def _check_declarations(name: str, dim: Any, preprocess_id: Any, weights_id: Any) -> None:
    """Refuse a partial or malformed identity declaration of ``register_encoder(name, ...)``, naming the bad value."""
    declared = {"dim": dim, "preprocess_id": preprocess_id, "weights_id": weights_id}
    missing = [k for k, v in declared.items() if v is None]
    if len(missing) == len(declared):
        return
    if missing:
        raise ValueError(f"register_encoder({name!r}): declare {missing} as well, or none of {list(declared)}")
    options, problems = list(PREPROCESS_OPTIONS), []
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        problems.append("dim must be a positive int")
    if isinstance(preprocess_id, Mapping):
        if not all(isinstance(preprocess_id.get(o), str) and preprocess_id[o] for o in options):
            problems.append(f"preprocess_id must map every option of {options} to an id")
    elif not (isinstance(preprocess_id, str) and preprocess_id):
        problems.append(f"preprocess_id must be a non-empty string or a mapping {{option: id}} over {options}")
    if not (callable(weights_id) or (isinstance(weights_id, str) and weights_id)):
        problems.append("weights_id must be a non-empty string or a callable taking the weights argument")
    if problems:
        raise ValueError(f"register_encoder({name!r}): {'; '.join(problems)}; got {declared}")


def register_encoder(
    name: str,
    builder: Callable[..., Encoder],
    *,
    dim: int | None = None,
    preprocess_id: str | Mapping[str, str] | None = None,
    weights_id: str | Callable[[str | Path | None], str] | None = None,
    has_text: bool = True,
    precision: str | None = None,
) -> None:
    """Add a named encoder: ``builder(name, device=..., weights=..., preprocess=...)`` returns an :class:`Encoder`.

    Declare its identity (``dim``, ``preprocess_id``, ``weights_id``: all three or none) and :func:`describe_encoder`
    answers from the declarations, so a cache hit builds nothing. ``preprocess_id`` is one id (the builder ignores
    the preprocess option) or {option: id}; ``weights_id`` a string, or ``weights_id(weights)`` called with the
    ``weights`` argument (None when not given; raise :class:`WeightsNotFoundError` when the file is absent);
    ``precision`` defaults to the device's. Undeclared, the encoder is built once to learn its identity; so is a
    declared one asked for with ``weights=`` when ``weights_id`` is a string. The built encoder must match what is
    declared. Registration lives in this process: put the call in a module named in ``$BLISS_PLUGINS`` to reach the
    CLI and the notebook kernels (docs/extending.md).
    """
    if not isinstance(name, str) or not name or any(name.startswith(p) for p in _OPEN_FORMS):
        raise ValueError(f"encoder name must be a non-empty string not starting with {list(_OPEN_FORMS)}; got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder for {name!r} must be callable; got {type(builder).__name__}")
    _check_declarations(name, dim, preprocess_id, weights_id)
    if precision is not None and not isinstance(precision, str):
        raise ValueError(f"register_encoder({name!r}): precision must be a string or None; got {precision!r}")
    pid = preprocess_id if not isinstance(preprocess_id, Mapping) else dict(preprocess_id)
    _CUSTOM[name] = Registered(builder, dim, pid, weights_id, bool(has_text), precision)


def backbone(name: str) -> Backbone | None:
    """The declared data of a named encoder (None for open forms and encoders registered at run time)."""
    load_plugins()
    return None if name in _CUSTOM else _BACKBONES.get(name)


def _check_preprocess(preprocess: str) -> None:
    if preprocess not in PREPROCESS_OPTIONS:
        raise ValueError(f"preprocess must be one of {list(PREPROCESS_OPTIONS)}; got {preprocess!r}")


def _check_name(name: Any) -> str | None:
    """Refuse a name that is neither registered nor an open form; return the open form's prefix (None if named)."""
    if not isinstance(name, str):
        raise ValueError(f"encoder name must be a string; got {type(name).__name__}")
    if prefix := next((p for p in _OPEN_FORMS if name.startswith(p)), None):
        return prefix
    if name not in list_encoders():  # reads $BLISS_PLUGINS first, so a plugin's encoders are known
        valid = ", ".join([*list_encoders(), *_OPEN_FORM_HELP])
        hint = f" (a module of ${PLUGINS_VAR} or register_encoder adds one)"
        raise ValueError(f"unknown encoder {name!r}{hint}; valid names: {valid}")
    return None


def preprocess_for(encoder: str, mapping: Mapping[str, str] | str | None) -> str:
    """The preprocessing option of ``encoder``: ``mapping`` is one option for all, or {encoder name: option}.

    Names missing from the mapping get "default", e.g. ``preprocess_for("blip", {"clip-vit-b16": "cifar"})``.
    """
    if mapping is None:
        return "default"
    if isinstance(mapping, str):
        value = mapping
    elif isinstance(mapping, Mapping):
        if bad := {k: v for k, v in mapping.items() if v not in PREPROCESS_OPTIONS}:
            raise ValueError(f"preprocess options must be one of {list(PREPROCESS_OPTIONS)}; got {bad}")
        value = mapping.get(encoder, "default")
    else:
        raise ValueError(f"preprocess must be an option name, a mapping of encoder -> option or None; got {mapping!r}")
    _check_preprocess(value)
    return value


def precision_for(device: Any = None, info: Backbone | None = None) -> str:
    """The numeric precision an encoder runs at on ``device``: its backbone's fixed one, else the device's."""
    if info is not None and info.precision is not None:
        return info.precision
    return device_precision(torch_device(device))


def describe_encoder(
    name: str, weights: str | Path | None = None, preprocess: str = "default", device: Any = None
) -> EncoderSpec:
    """The identity of encoder ``name`` without building it: finds (never downloads) and fingerprints its weights.

    Raises :class:`WeightsNotFoundError` when the weights are not on this machine. An encoder added with
    :func:`register_encoder` is described by its declarations; one that declares nothing is built to learn them.
    """
    _check_preprocess(preprocess)
    if prefix := _check_name(name):
        spec = _OPEN_FORMS[prefix][1](name[len(prefix) :], weights=weights, preprocess=preprocess)
        return replace(spec, precision=precision_for(device), preprocess=preprocess)
    if (info := backbone(name)) is not None:
        return _declared(name, info, weights, preprocess, device, local_only=True)[0]
    if (spec := _CUSTOM[name].spec(name, weights, preprocess, device)) is not None:
        return spec
    e = load_encoder(name, device=device, weights=weights, preprocess=preprocess)
    return EncoderSpec(e.name, e.weights_id, e.preprocess_id, e.dim, e.has_text, e.precision, preprocess)


def _declared(
    name: str, info: Backbone, weights: Any, preprocess: str, device: Any, local_only: bool
) -> tuple[EncoderSpec, Path | None]:
    """The identity a backbone entry declares, its weights found (downloaded unless ``local_only``), and the file."""
    path, weights_id = info.weights(name, weights, local_only=local_only)
    recipe = info.recipes[preprocess]
    spec = EncoderSpec(name, weights_id, recipe.id, info.dim, info.has_text, precision_for(device, info), preprocess)
    return spec, path


def _check_built(name: str, encoder: Any, declared: EncoderSpec | None) -> None:
    """Refuse a registered builder's encoder that is no Encoder, or whose identity differs from the declared one
    (the cache would key its embeddings under one identity and look them up under another)."""
    if not isinstance(encoder, Encoder):
        raise TypeError(f"builder for {name!r} returned {type(encoder).__name__}, not an Encoder")
    fields = ("name", "weights_id", "preprocess_id", "dim", "has_text", "precision")
    pairs = {f: (getattr(declared, f), getattr(encoder, f)) for f in fields} if declared is not None else {}
    if diff := {f: pair for f, pair in pairs.items() if pair[0] != pair[1]}:
        raise ValueError(f"encoder {name!r} differs from its register_encoder declaration (declared, built): {diff}")


def load_encoder(
    name: str, device: Any = None, weights: str | Path | None = None, preprocess: str = "default"
) -> Encoder:
    """Build the encoder ``name`` on ``device`` (CUDA, then MPS, then CPU when None), in eval mode.

    ``weights`` is a local checkpoint file or folder to use instead of the library cache / download;
    ``preprocess="cifar"`` swaps the image normalisation for the CIFAR statistics the paper's code used for CLIP.
    """
    _check_preprocess(preprocess)
    kwargs = {"device": device, "weights": weights, "preprocess": preprocess}
    if prefix := _check_name(name):
        return _OPEN_FORMS[prefix][0](name[len(prefix) :], **kwargs)
    if (info := backbone(name)) is not None:
        spec, path = _declared(name, info, weights, preprocess, device, local_only=False)
        return info.builder(Build(spec, info.recipes[preprocess], path, torch_device(device)))
    registered = _CUSTOM[name]
    declared = registered.spec(name, weights, preprocess, device)
    encoder = registered.builder(name, **kwargs)
    _check_built(name, encoder, declared)
    return encoder
