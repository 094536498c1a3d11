"""Zero-shot prompt-pair scores: a "normal" and an "abnormal" text embedding per image, no training images.

Score of an image z against a pair (g_n, g_a): cos(z, g_a) - cos(z, g_n). AnomalyCLIP's Eq. 1 reports
P(abnormal | z) = sigmoid((cos(z, g_a) - cos(z, g_n)) / tau), a monotone function of this difference, so every AUROC
is the same and no temperature is needed; the difference cannot saturate in float64 as the probability can.

The prompt texts are functions so a notebook embeds them through the cached text path, then pools them here:
- ``agnostic_pair_texts``: one object-agnostic sentence per side (our wording);
- ``cpe_texts``: WinCLIP's compositional prompt ensemble as AnomalyCLIP's code ships it (states x 35 templates);
- ``object_aware_texts``: the ensemble with each class name in place of "object" (min over the normal classes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from bliss_utils._checks import as_embeddings, l2_normalize
from bliss_utils.config import PACKAGE_DATA
from bliss_utils.scores.base import _Scorer

AGNOSTIC_OBJECT = "object"
AGNOSTIC_PAIR = ("a photo of an object.", "a photo of a damaged object.")
# WinCLIP's ensemble, a data file: state words (normal, abnormal) and the 35 templates they are put in
_ENSEMBLE = json.loads((PACKAGE_DATA / "prompt_ensemble.json").read_text(encoding="utf-8"))
NORMAL_STATES = tuple(_ENSEMBLE["normal_states"])
ABNORMAL_STATES = tuple(_ENSEMBLE["abnormal_states"])
CPE_TEMPLATES = tuple(_ENSEMBLE["templates"])


def agnostic_pair_texts() -> tuple[list[str], list[str]]:
    """The single object-agnostic pair: ([normal sentence], [abnormal sentence])."""
    return [AGNOSTIC_PAIR[0]], [AGNOSTIC_PAIR[1]]


def cpe_texts(name: str = AGNOSTIC_OBJECT) -> tuple[list[str], list[str]]:
    """WinCLIP's compositional prompt ensemble for ``name``: (normal, abnormal) sentences, states x templates."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}")

    def side(states: Sequence[str]) -> list[str]:
        return [template.format(state.format(name)) for state in states for template in CPE_TEMPLATES]

    return side(NORMAL_STATES), side(ABNORMAL_STATES)


def object_aware_texts(class_names: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """The ensemble of ``cpe_texts`` for every class name, in class order."""
    if isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError("class_names must be a non-empty list of strings")
    return [cpe_texts(name) for name in class_names]


def pool_prompt_ensemble(normal_embeddings: Any, abnormal_embeddings: Any) -> np.ndarray:
    """(2, d) pair [g_n, g_a]: each side's sentence embeddings L2-normalised, averaged, then renormalised once."""
    sides = []
    for name, emb in (("normal_embeddings", normal_embeddings), ("abnormal_embeddings", abnormal_embeddings)):
        unit = l2_normalize(as_embeddings(emb, name, dtype=np.float64), name)
        sides.append(l2_normalize(unit.mean(axis=0, keepdims=True), f"mean of {name}")[0])
    if sides[0].shape != sides[1].shape:
        raise ValueError(f"normal and abnormal embeddings differ in dimension: {sides[0].shape} vs {sides[1].shape}")
    return np.stack(sides)


def pair_scores(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(n, m) matrix cos(x_i, g_a,j) - cos(x_i, g_n,j) for unit rows ``x`` (n, d) and unit pairs (m, 2, d)."""
    return x @ pairs[:, 1].T - x @ pairs[:, 0].T


class PromptPairScore(_Scorer):
    """cos(z, g_a) - cos(z, g_n); higher = more anomalous.

    ``pairs`` is one (2, d) pair [g_n, g_a] (object-agnostic: the normal classes are ignored) or one pair per class,
    (n_classes, 2, d) (object-aware: the min over the normal classes' pairs, i.e. normal if any class looks normal).
    """

    inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, pairs: Any = None) -> None:
        self.pairs = pairs

    def fit(
        self,
        train_embeddings: Any | None = None,
        train_labels: Any | None = None,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> PromptPairScore:
        """Validate and L2-normalise the pairs; zero-shot, so every other argument is ignored."""
        if self.pairs is None:
            raise ValueError(
                "pairs is required: a (2, d) [normal, abnormal] text pair or (n_classes, 2, d); through evaluate_grid "
                "give baseline_params={method: {'pairs': ...}}"
            )
        arr = np.asarray(self.pairs, dtype=np.float64)
        if arr.ndim not in (2, 3):
            raise ValueError(f"pairs must have shape (2, d) or (n_classes, 2, d); got {arr.shape}")
        self.per_class_ = arr.ndim == 3
        arr = arr if self.per_class_ else arr[None]
        if arr.shape[1] != 2 or arr.shape[2] == 0:
            raise ValueError(f"pairs must hold a [normal, abnormal] pair of d-vectors; got shape {arr.shape}")
        flat = l2_normalize(as_embeddings(arr.reshape(-1, arr.shape[2]), "pairs", dtype=np.float64), "pairs")
        self.pairs_, self.n_classes_, self.classes_ = flat.reshape(arr.shape), arr.shape[0], np.arange(arr.shape[0])
        self.dim_, self.dtype_ = arr.shape[2], np.float64
        return self

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """Prompt-pair score of each row of ``X`` (min over the normal classes when per class)."""
        x = self._prepare(X)
        if not self.per_class_:
            return pair_scores(x, self.pairs_)[:, 0]
        return pair_scores(x, self.pairs_[self._normal(normal_classes)]).min(axis=1)
