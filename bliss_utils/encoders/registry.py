"""Encoder names -> builder functions (looked up lazily, so unused backends are never imported)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import Encoder

PREPROCESS_OPTIONS = ("default", "cifar")

# name -> "module:function" inside this package, or a callable registered at run time
_BUILDERS: dict[str, str | Callable[..., Encoder]] = {
    "clip-vit-b16": "openclip:load_clip_vit_b16",
    "blip": "blip:load_blip",
    "slip-vit-b16": "slip:load_slip_vit_b16",
    "vit-b16-in21k": "vit:load_vit_in21k",
    "tiny-clip": "openclip:load_tiny_clip",
    "tiny-blip": "blip:load_tiny_blip",
    "tiny-slip": "slip:load_tiny_slip",
    "tiny-vit": "vit:load_tiny_vit",
    "toy-clip": "toy:load_toy",
    "toy-blip": "toy:load_toy",
    "toy-slip": "toy:load_toy",
}

# open forms: prefix -> builder receiving the text after the prefix as its first argument
_OPEN_FORMS: dict[str, str] = {
    "open_clip:": "openclip:load_open_clip_spec",
    "hf:": "hf_clip:load_hf_clip",
}
_OPEN_FORM_HELP = ("open_clip:MODEL/PRETRAINED", "hf:REPO_ID")


def list_encoders() -> list[str]:
    """Names accepted by :func:`load_encoder` (besides the open forms ``open_clip:MODEL/PRETRAINED`` and ``hf:REPO_ID``)."""
    return list(_BUILDERS)


def register_encoder(name: str, builder: Callable[..., Encoder]) -> None:
    """Add a named encoder; ``builder(name, device=..., weights=..., preprocess=...)`` must return an :class:`Encoder`."""
    if not isinstance(name, str) or not name or any(name.startswith(p) for p in _OPEN_FORMS):
        raise ValueError(f"encoder name must be a non-empty string not starting with {list(_OPEN_FORMS)}; got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder for {name!r} must be callable; got {type(builder).__name__}")
    _BUILDERS[name] = builder


def _resolve(target: str | Callable[..., Encoder]) -> Callable[..., Encoder]:
    if callable(target):
        return target
    module, func = target.split(":")
    return getattr(importlib.import_module(f".{module}", __package__), func)


def load_encoder(
    name: str,
    device: Any = None,
    weights: str | Path | None = None,
    preprocess: str = "default",
) -> Encoder:
    """Build the encoder ``name`` on ``device`` (CUDA, then MPS, then CPU when None), in eval mode.

    ``weights`` is a local checkpoint file or folder to use instead of the library cache / download;
    ``preprocess="cifar"`` swaps the image normalisation for the CIFAR statistics the paper's code used.
    """
    if preprocess not in PREPROCESS_OPTIONS:
        raise ValueError(f"preprocess must be one of {list(PREPROCESS_OPTIONS)}; got {preprocess!r}")
    if not isinstance(name, str):
        raise ValueError(f"encoder name must be a string; got {type(name).__name__}")
    kwargs = {"device": device, "weights": weights, "preprocess": preprocess}
    for prefix, target in _OPEN_FORMS.items():
        if name.startswith(prefix):
            return _resolve(target)(name[len(prefix):], **kwargs)
    if name not in _BUILDERS:
        valid = ", ".join([*_BUILDERS, *_OPEN_FORM_HELP])
        raise ValueError(f"unknown encoder {name!r}; valid names: {valid}")
    encoder = _resolve(_BUILDERS[name])(name, **kwargs)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"builder for {name!r} returned {type(encoder).__name__}, not an Encoder")
    return encoder
