"""Backbones behind one interface: ``load_encoder(name)`` -> :class:`Encoder` with L2-normalised float32 embeddings.

Importing this package is cheap: torch, open_clip, timm and transformers are imported by the backend modules only
when an encoder of theirs is loaded.
"""

from __future__ import annotations

from .base import Encoder
from .errors import WeightsNotFoundError
from .registry import list_encoders, load_encoder, register_encoder

__all__ = ["Encoder", "WeightsNotFoundError", "list_encoders", "load_encoder", "register_encoder"]
