"""Shared plumbing of every scorer: the scikit-learn estimator contract, input checks, lazily fitted image models."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from bliss_utils._checks import as_class_list, as_embeddings, as_labels, as_test_embeddings, l2_normalize

logger = logging.getLogger(__name__)

# Fitted GMM/LUNAR models kept per scorer: a 20-class full-covariance 768-d GMM or a LUNAR kNN index over
# 45,000 images plus negatives takes a few hundred MB, and a protocol's trials rarely repeat a class set.
MAX_CACHED_MODELS = 3


INPUTS = ("images", "class_texts", "dictionary")


@contextlib.contextmanager
def torch_threads(torch: Any, threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch CPU threads, restored afterwards; None: torch's setting, untouched."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Scorer(BaseEstimator):
    """One interface for every method: ``fit`` on a training part, ``score_samples(X, normal_classes)``; higher =
    more anomalous.

    A subclass declares the embeddings it reads (``inputs``, a subset of ``INPUTS``: "images" are labelled training
    images, "class_texts" one text embedding per class, "dictionary" the external text list), the smallest set of
    normal classes it can score (``min_normal_classes``) and the parameters an experiment grid sweeps
    (``grid_params``, e.g. BLISS's lam and K).
    """

    inputs: ClassVar[tuple[str, ...]] = ("images",)
    min_normal_classes: ClassVar[int] = 1
    grid_params: ClassVar[tuple[str, ...]] = ()

    def fit(
        self,
        train_embeddings: Any,
        train_labels: Any,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> Scorer:
        """Fit on the training part; the arguments a scorer does not declare in ``inputs`` may be None."""
        raise NotImplementedError  # pragma: no cover - every scorer defines it

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:  # pragma: no cover
        """Anomaly score of each row of ``X`` for one set of normal classes; higher = more anomalous."""
        raise NotImplementedError

    def score_grid(
        self, fit_args: Sequence[Any], X: Any, normal_sets: Sequence[Any], variants: Sequence[dict] = ({},)
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Fit every variant (``self``'s parameters updated by it) on ``fit_args`` now; return an iterator of
        (variant index, set index, scores of ``X``) over variants x sets of normal classes. Override to share a fit."""
        fitted = [clone(self).set_params(**params).fit(*fit_args) for params in variants]
        return (
            (v, s, m.score_samples(X, normal)) for v, m in enumerate(fitted) for s, normal in enumerate(normal_sets)
        )


class _Scorer(Scorer):
    """Shared plumbing of a fitted scorer: input checks against the fitted state, normal classes."""

    def _check_params(self) -> None:
        """Parameter checks, run at fit time (``__init__`` only stores)."""

    def _check_fitted(self) -> None:
        check_is_fitted(self, "classes_")

    def _prepare(self, X: Any) -> np.ndarray:
        """Validate and L2-normalise test embeddings against the fitted dimension and dtype."""
        self._check_fitted()
        return as_test_embeddings(X, self.dim_, self.dtype_, type(self).__name__)

    def _normal(self, normal_classes: Any | None) -> np.ndarray:
        """Sorted unique normal classes; all fitted classes when None."""
        if normal_classes is None:
            return self.classes_
        return as_class_list(normal_classes, self.classes_, self.n_classes_)


class ImageScorer(_Scorer):
    """Image-only scorers: store the labelled training images; models are fitted per set of normal classes."""

    def fit(
        self,
        train_embeddings: Any,
        train_labels: Any,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> ImageScorer:
        """Validate and store the L2-normalised training images; texts (if given) only fix the number of classes."""
        self._check_params()
        if train_embeddings is None or train_labels is None:
            raise ValueError(f"{type(self).__name__} needs train_embeddings and train_labels (normal training images)")
        z = l2_normalize(as_embeddings(train_embeddings, "train_embeddings"), "train_embeddings")
        if class_text_embeddings is not None:
            # image-only: the texts may come from another backbone, so only their count is used
            n_classes = as_embeddings(class_text_embeddings, "class_text_embeddings").shape[0]
        else:
            raw = np.asarray(train_labels)
            n_classes = int(raw.max()) + 1 if raw.size and np.issubdtype(raw.dtype, np.number) else 1
        labels = as_labels(train_labels, z.shape[0], n_classes)
        self.train_, self.train_labels_, self.classes_, self.n_classes_ = z, labels, np.unique(labels), n_classes
        self.dim_, self.dtype_ = z.shape[1], z.dtype
        self.models_: OrderedDict[frozenset, Any] = OrderedDict()
        return self

    def _model(self, classes: np.ndarray) -> Any:
        """The model fitted on ``classes``' training images: fitted on first use, cached, least recently used out."""
        key = frozenset(int(c) for c in classes)
        if key in self.models_:
            self.models_.move_to_end(key)
        else:
            logger.info("fitting %s on normal classes %s", type(self).__name__, sorted(key))
            own = np.isin(self.train_labels_, classes)
            self.models_[key] = self._fit_model(self.train_[own], self.train_labels_[own], classes)
            while len(self.models_) > MAX_CACHED_MODELS:
                self.models_.popitem(last=False)
        return self.models_[key]

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> Any:  # pragma: no cover
        """The model of the normal ``classes`` from their training images ``z`` and labels."""
        raise NotImplementedError

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """The ``score`` of the rows of ``X`` by the model fitted on the normal classes; higher = more anomalous."""
        x = self._prepare(X)
        return self._model(self._normal(normal_classes)).score(x)
