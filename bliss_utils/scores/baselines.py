"""Baseline anomaly scorers with BLISS's interface: fit(...), score_samples(X, normal_classes); higher = more anomalous.

Text-based (need class text embeddings): RawSimilarity ("w/o (5)" of Table 3), BiasedCLIP (IC alone, Eq. 5;
in bliss.py, as BLISS with lam = 0),
MCM (Ming et al. 2022, zero-shot). Image-only (use training image embeddings only): DN2 (mean distance to the k
nearest normal training images), GMM (EM of scikit-learn's GaussianMixture, in torch: bliss_utils.scores.gmm), LUNAR
(PyOD's, with an exact neighbour search: bliss_utils.scores.lunar, scores.knn). Every input is L2-normalised
inside, so all scorers see the same unit-sphere geometry as BLISS.

Image-only scorers fit lazily: ``fit`` validates and stores the labelled training set; the first
``score_samples(X, normal_classes)`` for a set of normal classes fits a model on those classes' images and caches it
(keyed by the frozenset of classes; the MAX_CACHED_MODELS most recently used are kept), so one ``fit`` serves
every trial of a protocol.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

from bliss_utils._checks import as_labels, as_unit_embeddings, check_number, check_positive_int
from bliss_utils.scores.base import MAX_CACHED_MODELS, ImageScorer, _Scorer
from bliss_utils.scores.bliss import BiasedCLIP
from bliss_utils.scores.gmm import GMM
from bliss_utils.scores.lunar import LUNAR

# Bytes a (test chunk x class images) similarity block may take; bounds DN2's memory whatever the data size.
CHUNK_BYTES = 64 * 2**20


class _TextScorer(_Scorer):
    """Scorers of image-text similarity alone: fitting stores the normalised class texts; the dictionary is ignored.

    Training images are optional and only checked; when given, they fix which classes can be normal if
    ``classes_from_images`` (RawSimilarity, as for BLISS), else every class may be normal (MCM: no statistics).
    """

    inputs: ClassVar[tuple[str, ...]] = ("images", "class_texts")
    classes_from_images: ClassVar[bool] = True

    def fit(
        self,
        train_embeddings: Any | None,
        train_labels: Any | None = None,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> _TextScorer:
        """Validate (optional) training images and the class texts; store the normalised texts."""
        self._check_params()
        if class_text_embeddings is None:
            raise ValueError("class_text_embeddings is required: this scorer compares images with the class texts")
        arrays = as_unit_embeddings(class_text_embeddings=class_text_embeddings, train_embeddings=train_embeddings)
        texts, z, labels = arrays["class_text_embeddings"], arrays.get("train_embeddings"), None
        if z is not None:
            if train_labels is None:
                raise ValueError("train_labels are required with train_embeddings")
            labels = as_labels(train_labels, z.shape[0], texts.shape[0])
        self.class_texts_, self.n_classes_, self.dim_, self.dtype_ = texts, texts.shape[0], texts.shape[1], texts.dtype
        by_images = labels is not None and self.classes_from_images
        self.classes_ = np.unique(labels) if by_images else np.arange(self.n_classes_)
        return self


class RawSimilarity(_TextScorer):
    """Raw internal class score without normalisation ("w/o (5)" of Table 3): min over normal c of -sim(z, C_c).

    Training images are optional; when given, only classes with training images can be normal (as for BLISS),
    so that the comparison with BiasedCLIP and BLISS runs on the same classes.
    """

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """-max over the normal classes of sim(z, C_c); higher = more anomalous."""
        x = self._prepare(X)
        return -(x @ self.class_texts_[self._normal(normal_classes)].T).max(axis=1)


class MCM(_TextScorer):
    """Maximum Concept Matching (Ming et al. 2022): -max_c softmax(cos(z, C_c) / T) over the normal class texts.

    Zero-shot: training images are not used (``train_embeddings`` may be None; when given they are only checked),
    and every class may be normal (no statistics are needed).
    Needs at least two normal classes: with one, the softmax is identically 1.
    """

    min_normal_classes: ClassVar[int] = 2
    classes_from_images: ClassVar[bool] = False

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def _check_params(self) -> None:
        check_number(self.temperature, "temperature", "a positive number")

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """-max softmax(cos / T) over the normal classes; higher = more anomalous."""
        x = self._prepare(X)
        classes = self._normal(normal_classes)
        if classes.size < 2:
            raise ValueError(
                f"MCM needs at least 2 normal classes (got {classes.size}): with one the softmax is always 1"
            )
        logits = (x @ self.class_texts_[classes].T) / self.temperature
        # max softmax = 1 / sum_j exp(l_j - l_max), computed without overflow
        logits = logits - logits.max(axis=1, keepdims=True)
        return -1.0 / np.exp(logits).sum(axis=1)


class DN2(ImageScorer):
    """DN2 (Bergman et al. 2020): mean Euclidean distance to the k nearest normal training images.

    On unit vectors ||a - b||^2 = 2 - 2 a.b, so neighbours come from one matrix product. Per test set, the k nearest
    images of every class are kept (computed once per class); a set of normal classes merges those lists, which is
    exact because its k nearest images are among the union of its classes' k nearest. Equals PyOD's
    KNN(n_neighbors=k, method='mean') and scikit-learn's NearestNeighbors on the normalised embeddings (to 1e-9 in
    float64, float32 rounding in float32; tested against PyOD).

    Kept instead of those libraries because ``benchmarks/bench_knn.py --only dn2`` shows it faster at equal scores
    (CIFAR-10 9-class scale, 2 CPU cores, scores equal to 1e-7; numbers in benchmarks/README.md): one normal set in
    7.5 s against PyOD's 87 s (its fit also scores its own training set) and scikit-learn's 9.2 s, and 3 cifar10-9
    trials on one test set in 10.1 s against 39.7 s for one scikit-learn search per trial, since the per-class lists
    are computed once.
    """

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def _check_params(self) -> None:
        check_positive_int(self.k, "k")

    def _class_nearest(self, x: np.ndarray, c: int) -> np.ndarray:
        """(n_test, min(k, n_c)) largest similarities of each test row to class c's training images."""
        z = self.train_[self.train_labels_ == c]
        k = min(self.k, z.shape[0])
        chunk = max(1, CHUNK_BYTES // (z.shape[0] * x.dtype.itemsize))
        out = np.empty((x.shape[0], k), dtype=x.dtype)
        for start in range(0, x.shape[0], chunk):
            sims = x[start : start + chunk] @ z.T
            if k < z.shape[0]:
                sims = np.partition(sims, z.shape[0] - k, axis=1)[:, -k:]
            out[start : start + chunk] = sims
        return out

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """Mean distance to the k nearest training images of the normal classes; higher = more anomalous."""
        x = self._prepare(X)
        classes = self._normal(normal_classes)
        n_train = int(np.isin(self.train_labels_, classes).sum())
        if n_train < self.k:
            raise ValueError(
                f"k={self.k} is larger than the {n_train} training images of normal classes {classes.tolist()}"
            )
        # the per-class lists are reused while the same test set comes back (one per trial of a protocol); DN2 fits no
        # model per set of classes, so ``models_`` (emptied by fit) holds them, for the last test set only
        key = hashlib.blake2b(x.tobytes(), digest_size=16).digest() + str(x.shape).encode()
        if key not in self.models_:
            self.models_.clear()
        cache = self.models_.setdefault(key, {})
        for c in {int(c) for c in classes} - cache.keys():
            cache[c] = self._class_nearest(x, c)
        sims = np.concatenate([cache[int(c)] for c in classes], axis=1)
        if sims.shape[1] > self.k:
            sims = np.partition(sims, sims.shape[1] - self.k, axis=1)[:, -self.k :]
        # float rounding can make 2 - 2 cos slightly negative for near-duplicates
        dist = np.sqrt(np.clip(2.0 - 2.0 * sims.astype(np.float64), 0.0, None))
        return dist.mean(axis=1)


__all__ = ["DN2", "GMM", "LUNAR", "MAX_CACHED_MODELS", "MCM", "BiasedCLIP", "RawSimilarity"]
