"""The one error a missing checkpoint ends in."""

from __future__ import annotations


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither given, nor in the library cache, nor downloadable (offline or no network)."""
