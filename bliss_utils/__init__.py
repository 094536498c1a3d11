"""bliss_utils: the BLISS score, its baselines, backbones, embedding cache and experiment grid.

Heavy dependencies (torch, open_clip, transformers, pyod) are imported lazily, so ``import bliss_utils`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "BLISS": "scores.bliss",
    "RawSimilarity": "scores.baselines",
    "BiasedCLIP": "scores.bliss",
    "MCM": "scores.baselines",
    "DN2": "scores.baselines",
    "GMM": "scores.baselines",
    "LUNAR": "scores.baselines",
    "Scorer": "scores.base",
    "register_method": "scores.methods",
    "make_method": "scores.methods",
    "method_names": "scores.methods",
    "auroc": "evaluation.metrics",
    "fpr95": "evaluation.metrics",
    "fpr_at_tpr": "evaluation.metrics",
    "one_sided_ttest": "evaluation.metrics",
    "class_splits": "datasets.splits",
    "evaluate_grid": "evaluation.grid",
    "EmbeddingSet": "evaluation.grid",
    "load_embedding_set": "embeddings",
    "image_embeddings": "embeddings",
    "text_embeddings": "embeddings",
    "load_encoder": "encoders",
    "progress": "_progress",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'bliss_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
