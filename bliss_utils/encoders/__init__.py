"""Backbones behind one interface: ``load_encoder(name)`` -> :class:`Encoder` with L2-normalised float32 embeddings.

Importing this package is cheap: torch, open_clip, timm and transformers are imported by the backend modules only
when an encoder of theirs is loaded. :func:`describe_encoder` gives an encoder's identity without building it.
A user's own encoder joins with :func:`register_encoder`, in every process when its module is named in
``$BLISS_PLUGINS`` (docs/extending.md, "Your own backbone").
"""

from __future__ import annotations

from bliss_utils.encoders.base import Encoder
from bliss_utils.encoders.errors import WeightsNotFoundError
from bliss_utils.encoders.registry import (
    EncoderSpec,
    describe_encoder,
    list_encoders,
    load_encoder,
    preprocess_for,
    register_encoder,
)

__all__ = [
    "Encoder",
    "EncoderSpec",
    "WeightsNotFoundError",
    "describe_encoder",
    "list_encoders",
    "load_encoder",
    "preprocess_for",
    "register_encoder",
]
