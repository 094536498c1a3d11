"""Which encoder a cache lookup is for: what is known of its identity without the model, and the model on a miss.

An encoder given by name is described (``describe_encoder``: weights fingerprinted, nothing built). When its weights
are not on this machine its identity is unknown (``identity`` None): only cached files can then serve without a
download, and they are found by the fields the registry declares (``wanted``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bliss_utils.cache.identity import cache_root, encoder_identity

# one model per process per (name, weights, preprocess, device, described weights id): a replaced weights file
# changes the weights id, so the old model is never reused for it
_MODELS: dict[tuple[str, ...], Any] = {}


class NotCachedError(FileNotFoundError):
    """``cached_only=True`` and the cache holds no embeddings for the request: nothing may be computed."""


class EncoderRequest:
    """An encoder asked for by name or as an object, resolved once for every lookup of one call."""

    def __init__(
        self,
        encoder: Any,
        weights: str | Path | None = None,
        preprocess: Any = "default",
        device: Any = None,
        cached_only: bool = False,
    ) -> None:
        from bliss_utils import encoders

        if not isinstance(cached_only, bool):
            raise TypeError(f"cached_only must be True or False; got {cached_only!r}")
        self.name, self.cached_only = str(getattr(encoder, "name", encoder)), cached_only
        # one option for all encoders, or {encoder name: option} as the notebooks' PREPROCESS parameter holds it
        self.preprocess = encoders.preprocess_for(self.name, preprocess)
        self.weights, self.device, self._model = weights, device, None
        self.weights_hint: str | None = None  # a weights id (or part of one) picking among cached identities
        # no device asked for by name: a file made at another precision (e.g. fp16 on a GPU) may serve
        self._free_precision = isinstance(encoder, str) and device is None
        if not isinstance(encoder, str):
            self._model, self.identity = encoder, encoder_identity(encoder)  # raises for a non-encoder
            self.has_text, self.wanted = bool(getattr(encoder, "has_text", False)), dict(self.identity)
            return
        try:
            spec = encoders.describe_encoder(encoder, weights=weights, preprocess=self.preprocess, device=device)
            self.identity: dict[str, Any] | None = encoder_identity(spec)
            self.has_text, self.wanted = spec.has_text, self._wanted(self.identity)
        except encoders.WeightsNotFoundError:  # not on this machine: a copied cache may still hold its embeddings
            self.identity, self.wanted, self.has_text = None, {"name": encoder}, True
            self.weights_hint = None if weights is None else str(weights)
            # a named backbone declares its preprocessing and dimension
            if (info := encoders.registry.backbone(encoder)) is not None:
                self.wanted.update(preprocess_id=info.recipes[self.preprocess].id, dim=info.dim)
                self.has_text = info.has_text
                if device is not None:
                    self.wanted["precision"] = encoders.registry.precision_for(device, info)

    def _wanted(self, identity: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in identity.items() if not (self._free_precision and k == "precision")}

    def accepts(self, recorded: Mapping[str, Any], texts: bool = False) -> bool:
        """Whether a cached file's encoder identity fits this request (texts do not depend on the preprocessing)."""
        if any(recorded.get(k) != v for k, v in self.wanted.items() if not (texts and k == "preprocess_id")):
            return False
        return self.weights_hint is None or self.weights_hint in str(recorded.get("weights_id", ""))

    def pin(self, recorded: Mapping[str, Any]) -> None:
        """Keep to a found cached identity, so train, test and texts come from the same weights."""
        if self.identity is None:
            self.wanted["weights_id"], self.weights_hint = str(recorded["weights_id"]), None

    def refuse_miss(self, missing: str, cache_dir: Any) -> None:
        """Raise :class:`NotCachedError` for ``missing`` when this request may only read the cache."""
        if self.cached_only:
            raise NotCachedError(
                f"{missing} of {self.name!r} are not in the cache under {cache_root(cache_dir)}, and cached_only=True "
                "forbids computing them: copy the embeddings folder there (docs/data.md), or drop cached_only"
            )

    def model(self) -> Any:
        """The encoder, built on the first miss (and once per process per name, options and weights file)."""
        if self._model is None:
            from bliss_utils import encoders

            version = "" if self.identity is None else self.identity["weights_id"]
            key = (self.name, str(self.weights), self.preprocess, str(self.device), version)
            if key not in _MODELS:  # looked up on the module at call time, so tests and hooks can replace it
                _MODELS[key] = encoders.load_encoder(
                    self.name, device=self.device, weights=self.weights, preprocess=self.preprocess
                )
            self._model = _MODELS[key]
            # the built identity keys what is computed from now on (the registry builds what it described, unless
            # the weights file changed in between: then the new file's identity is the honest key)
            self.identity = encoder_identity(self._model)
            self.wanted = self._wanted(self.identity)
            self.has_text = bool(getattr(self._model, "has_text", False))
        return self._model
