"""Baseline anomaly scorers with BLISS's interface: fit(...), score_samples(X, normal_classes); higher = more anomalous.

Text-based (need class text embeddings): RawSimilarity ("w/o (5)" of Table 3), BiasedCLIP (IC alone, Eq. 5),
MCM (Ming et al. 2022, zero-shot). Image-only (use training image embeddings only): DN2 (mean distance to the k
nearest normal training images), GMM (scikit-learn GaussianMixture), LUNAR (PyOD). Every input is L2-normalised
inside, so all scorers see the same unit-sphere geometry as BLISS.

Image-only scorers fit lazily: ``fit`` validates and stores the labelled training set; the first
``score_samples(X, normal_classes)`` for a set of normal classes fits a model on those classes' images and caches it
(keyed by the frozenset of classes; the MAX_CACHED_MODELS most recently used are kept), so one ``fit`` serves
every trial of a protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._checks import as_class_list, as_embeddings, as_labels, as_test_embeddings, as_unit_embeddings, l2_normalize

logger = logging.getLogger(__name__)

# Bytes a (test chunk x class images) similarity block may take; bounds DN2's memory whatever the data size.
CHUNK_BYTES = 64 * 2**20
# Fitted GMM/LUNAR models kept per scorer: a 20-class full-covariance 768-d GMM or a LUNAR kNN index over
# 45,000 images plus negatives takes a few hundred MB, and a protocol's trials rarely repeat a class set.
MAX_CACHED_MODELS = 3


def _require(module: str, pip_name: str) -> Any:
    """Import an optional dependency or raise an ImportError naming the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - exercised only without the package
        raise ImportError(f"{module} is needed here: pip install {pip_name}") from err


class _Scorer:
    """Shared plumbing: sklearn-style params, input checks, normal-class resolution."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (lets sklearn.base.clone copy a scorer)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> _Scorer:
        """Set constructor parameters; unknown names are an error."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ValueError(f"this {type(self).__name__} instance is not fitted yet: call fit(...) before scoring")

    def _prepare(self, X: Any) -> np.ndarray:
        """Validate and L2-normalise test embeddings against the fitted dimension and dtype."""
        self._check_fitted()
        return as_test_embeddings(X, self.dim_, self.dtype_, type(self).__name__)

    def _normal(self, normal_classes: Any | None) -> np.ndarray:
        """Sorted unique normal classes; all fitted classes when None."""
        if normal_classes is None:
            return self.classes_
        return as_class_list(normal_classes, self.classes_, self.n_classes_)


def _fit_texts(
    train_embeddings: Any | None, train_labels: Any | None, class_text_embeddings: Any
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validate (optional) training images and the class texts; return normalised texts, images and labels."""
    if class_text_embeddings is None:
        raise ValueError("class_text_embeddings is required: this scorer compares images with the class texts")
    arrays = as_unit_embeddings(class_text_embeddings=class_text_embeddings, train_embeddings=train_embeddings)
    texts = arrays["class_text_embeddings"]
    z = arrays.get("train_embeddings")
    labels = None
    if z is not None:
        if train_labels is None:
            raise ValueError("train_labels are required with train_embeddings")
        labels = as_labels(train_labels, z.shape[0], texts.shape[0])
    return texts, z, labels


class RawSimilarity(_Scorer):
    """Raw internal class score without normalisation ("w/o (5)" of Table 3): min over normal c of -sim(z, C_c).

    Training images are optional; when given, only classes with training images can be normal (as for BLISS),
    so that the comparison with BiasedCLIP and BLISS runs on the same classes.
    """

    def __init__(self) -> None:
        pass

    def fit(
        self,
        train_embeddings: Any | None,
        train_labels: Any | None = None,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> RawSimilarity:
        """Store the normalised class texts; the dictionary is ignored."""
        texts, _, labels = _fit_texts(train_embeddings, train_labels, class_text_embeddings)
        self.class_texts_ = texts
        self.n_classes_ = texts.shape[0]
        self.classes_ = np.arange(self.n_classes_) if labels is None else np.unique(labels)
        self.dim_ = texts.shape[1]
        self.dtype_ = texts.dtype
        return self

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """-max over the normal classes of sim(z, C_c); higher = more anomalous."""
        x = self._prepare(X)
        classes = self._normal(normal_classes)
        return -(x @ self.class_texts_[classes].T).max(axis=1)


class BiasedCLIP(_Scorer):
    """Internal class score alone (Eq. 4-5, population std): BLISS with lam = 0, min over the normal classes.

    Delegates to bliss_utils.bliss.BLISS(lam=0) so there is one implementation of IC; needs no dictionary.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def fit(
        self,
        train_embeddings: Any,
        train_labels: Any,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> BiasedCLIP:
        """Fit mu_c and sigma_c of sim(Z_c, C_c) for every class with training images; the dictionary is ignored."""
        from .bliss import BLISS

        if class_text_embeddings is None:
            raise ValueError("class_text_embeddings is required: Biased-CLIP compares images with the class texts")
        if train_embeddings is None or train_labels is None:
            raise ValueError("train_embeddings and train_labels are required: Biased-CLIP standardises by them")
        # k is unused when lam = 0 and no dictionary is given
        self.bliss_ = BLISS(k=1, lam=0.0, eps=self.eps).fit(train_embeddings, train_labels, class_text_embeddings, None)
        self.classes_ = self.bliss_.classes_
        self.n_classes_ = self.bliss_.n_classes_
        self.dim_ = self.bliss_.dim_
        self.dtype_ = self.bliss_.dtype_
        return self

    def ic_scores(self, X: Any) -> np.ndarray:
        """IC(x, c) for every class, shape (n_test, n_classes); NaN columns for classes without training images."""
        self._check_fitted()
        return self.bliss_.ic_scores(X)

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """min over the normal classes of IC(x, c); higher = more anomalous."""
        self._check_fitted()
        return self.bliss_.score_samples(X, normal_classes)


class MCM(_Scorer):
    """Maximum Concept Matching (Ming et al. 2022): -max_c softmax(cos(z, C_c) / T) over the normal class texts.

    Zero-shot: training images are not used (``train_embeddings`` may be None; when given they are only checked).
    Needs at least two normal classes: with one, the softmax is identically 1.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def fit(
        self,
        train_embeddings: Any | None,
        train_labels: Any | None = None,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> MCM:
        """Store the normalised class texts (every class may be normal: no statistics are needed)."""
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number; got {self.temperature!r}")
        texts, _, _ = _fit_texts(train_embeddings, train_labels, class_text_embeddings)
        self.class_texts_ = texts
        self.n_classes_ = texts.shape[0]
        self.classes_ = np.arange(self.n_classes_)
        self.dim_ = texts.shape[1]
        self.dtype_ = texts.dtype
        return self

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


class _ImageScorer(_Scorer):
    """Image-only scorers: store the labelled training images; models are fitted per set of normal classes."""

    def fit(
        self,
        train_embeddings: Any,
        train_labels: Any,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> _ImageScorer:
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
        self.train_ = z
        self.train_labels_ = labels
        self.classes_ = np.unique(labels)
        self.n_classes_ = n_classes
        self.dim_ = z.shape[1]
        self.dtype_ = z.dtype
        self.models_: OrderedDict[frozenset, Any] = OrderedDict()
        return self

    def _check_params(self) -> None:
        """Parameter checks, run at fit time (``__init__`` only stores)."""

    def _train_of(self, classes: np.ndarray) -> np.ndarray:
        return self.train_[np.isin(self.train_labels_, classes)]

    def _model(self, classes: np.ndarray) -> Any:
        """The model fitted on ``classes``' training images: fitted on first use, cached, least recently used out."""
        key = frozenset(int(c) for c in classes)
        if key in self.models_:
            self.models_.move_to_end(key)
        else:
            logger.info("fitting %s on normal classes %s", type(self).__name__, sorted(key))
            self.models_[key] = self._fit_model(self._train_of(classes), self.train_labels_, classes)
            while len(self.models_) > MAX_CACHED_MODELS:
                self.models_.popitem(last=False)
        return self.models_[key]

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> Any:  # pragma: no cover
        raise NotImplementedError


class DN2(_ImageScorer):
    """DN2 (Bergman et al. 2020): mean Euclidean distance to the k nearest normal training images.

    On unit vectors ||a - b||^2 = 2 - 2 a.b, so neighbours come from one matrix product. Per test set, the k nearest
    images of every class are kept (computed once per class); a set of normal classes merges those lists, which is
    exact because its k nearest images are among the union of its classes' k nearest. Equals PyOD's
    KNN(n_neighbors=k, method='mean') on the normalised embeddings.
    """

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def _check_params(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be a positive integer; got {self.k!r}")

    def fit(self, train_embeddings: Any, train_labels: Any, class_text_embeddings: Any | None = None,
            dictionary_embeddings: Any | None = None) -> DN2:  # fmt: skip
        """Store the normalised training images (see the class docstring)."""
        super().fit(train_embeddings, train_labels, class_text_embeddings, dictionary_embeddings)
        self._cache_key: bytes | None = None
        self._cache: dict[int, np.ndarray] = {}
        return self

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
        # the per-class lists are reused while the same test set comes back (one per trial of a protocol)
        key = hashlib.blake2b(x.tobytes(), digest_size=16).digest() + str(x.shape).encode()
        if key != self._cache_key:
            self._cache_key, self._cache = key, {}
        for c in classes:
            if int(c) not in self._cache:
                self._cache[int(c)] = self._class_nearest(x, int(c))
        sims = np.concatenate([self._cache[int(c)] for c in classes], axis=1)
        if sims.shape[1] > self.k:
            sims = np.partition(sims, sims.shape[1] - self.k, axis=1)[:, -self.k :]
        # float rounding can make 2 - 2 cos slightly negative for near-duplicates
        dist = np.sqrt(np.clip(2.0 - 2.0 * sims.astype(np.float64), 0.0, None))
        return dist.mean(axis=1)


class GMM(_ImageScorer):
    """Gaussian mixture (scikit-learn GaussianMixture) on the normal classes' training images; score = -log-likelihood.

    n_components=None fits one component per normal class, initialised from the labelled classes (their proportions,
    means and covariances + reg_covar) and refined by at most ``max_iter`` EM steps; an explicit n_components uses
    sklearn's k-means init. One EM step with full 768-d covariances on 45,000 images costs about 2 x 9 x n d^2 flops
    (minutes on 2 busy cores), hence max_iter=10 rather than sklearn's 100; sklearn warns if EM has not converged.
    """

    def __init__(
        self,
        n_components: int | None = None,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 10,
        tol: float = 1e-3,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ValueError(f"covariance_type must be full, tied, diag or spherical; got {self.covariance_type!r}")
        if self.n_components is not None and (
            not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1
        ):
            raise ValueError(f"n_components must be None or a positive integer; got {self.n_components!r}")
        if not (np.isfinite(self.reg_covar) and self.reg_covar >= 0):
            raise ValueError(f"reg_covar must be >= 0; got {self.reg_covar!r}")

    def _class_init(self, z: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """weights/means/precisions of one Gaussian per labelled class, in sklearn's parametrisation."""
        classes, counts = np.unique(labels, return_counts=True)
        weights = counts / counts.sum()
        means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        d = z.shape[1]
        eye = np.eye(d)
        if self.covariance_type == "full":
            covs = [
                np.cov(z[labels == c], rowvar=False, bias=True).reshape(d, d) + self.reg_covar * eye for c in classes
            ]
            precisions = np.stack([np.linalg.inv(cv) for cv in covs])
        elif self.covariance_type == "tied":
            centred = z - means[np.searchsorted(classes, labels)]
            cov = centred.T @ centred / z.shape[0] + self.reg_covar * eye
            precisions = np.linalg.inv(cov)
        elif self.covariance_type == "diag":
            precisions = 1.0 / np.stack([z[labels == c].var(axis=0) + self.reg_covar for c in classes])
        else:  # spherical
            precisions = 1.0 / np.array([z[labels == c].var(axis=0).mean() + self.reg_covar for c in classes])
        return {"weights_init": weights, "means_init": means, "precisions_init": precisions}

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> Any:
        mixture = _require("sklearn.mixture", "scikit-learn")
        # float64: EM with full covariances in float32 loses positive-definiteness on 768-d data
        z = z.astype(np.float64)
        own = labels[np.isin(labels, classes)]
        kwargs: dict[str, Any] = {
            "covariance_type": self.covariance_type, "reg_covar": self.reg_covar, "max_iter": self.max_iter,
            "tol": self.tol, "random_state": self.random_state,
        }  # fmt: skip
        if self.n_components is None:
            init = self._class_init(z, own)
            # every parameter is given, so sklearn's own init is overwritten: pick its cheapest (no k-means run)
            model = mixture.GaussianMixture(n_components=len(classes), init_params="random_from_data", **kwargs, **init)
        else:
            if self.n_components > z.shape[0]:
                raise ValueError(f"n_components={self.n_components} exceeds the {z.shape[0]} normal training images")
            model = mixture.GaussianMixture(n_components=self.n_components, **kwargs)
        return model.fit(z)

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """Negative log-likelihood under the mixture fitted on the normal classes; higher = more anomalous."""
        x = self._prepare(X)
        model = self._model(self._normal(normal_classes))
        return -model.score_samples(x.astype(np.float64))


class LUNAR(_ImageScorer):
    """PyOD's LUNAR (Goodge et al. 2022) on the normal classes' training images; score = its decision_function.

    Arguments are passed to pyod.models.lunar.LUNAR explicitly (PyOD's defaults otherwise, British ``n_neighbours``).
    PyOD's version differs from the original LUNAR code (neighbours among the negatives too, plain L2, WEIGHT
    network by default, k=5): see the README.
    """

    def __init__(
        self,
        n_neighbours: int = 5,
        model_type: str = "WEIGHT",
        negative_sampling: str = "MIXED",
        val_size: float = 0.1,
        epsilon: float = 0.1,
        proportion: float = 1.0,
        n_epochs: int = 200,
        lr: float = 0.001,
        wd: float = 0.1,
        random_state: int = 0,
        torch_threads: int | None = None,
    ) -> None:
        self.n_neighbours = n_neighbours
        self.model_type = model_type
        self.negative_sampling = negative_sampling
        self.val_size = val_size
        self.epsilon = epsilon
        self.proportion = proportion
        self.n_epochs = n_epochs
        self.lr = lr
        self.wd = wd
        self.random_state = random_state
        self.torch_threads = torch_threads

    def _check_params(self) -> None:
        k = self.n_neighbours
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_neighbours must be a positive integer; got {k!r}")
        if isinstance(self.n_epochs, bool) or not isinstance(self.n_epochs, (int, np.integer)) or self.n_epochs < 1:
            raise ValueError(f"n_epochs must be a positive integer; got {self.n_epochs!r}")
        if self.torch_threads is not None and (
            not isinstance(self.torch_threads, (int, np.integer)) or self.torch_threads < 1
        ):
            raise ValueError(f"torch_threads must be None or a positive integer; got {self.torch_threads!r}")

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> Any:
        torch = _require("torch", "torch")
        lunar = _require("pyod.models.lunar", "pyod")
        # PyOD needs n_neighbours + 1 neighbours among the 90% of images left after the validation split
        n_fit = int(np.floor(z.shape[0] * (1 - self.val_size)))
        if n_fit < self.n_neighbours + 1:
            raise ValueError(
                f"LUNAR needs more than n_neighbours={self.n_neighbours} training images after its validation split; "
                f"normal classes {classes.tolist()} have {z.shape[0]}"
            )
        # PyOD seeds the global torch generator; fork it so fitting does not change the caller's random stream
        with torch.random.fork_rng(devices=[]), self._threads(torch):
            model = lunar.LUNAR(
                model_type=self.model_type, n_neighbours=self.n_neighbours, negative_sampling=self.negative_sampling,
                val_size=self.val_size, scaler=None, epsilon=self.epsilon, proportion=self.proportion,
                n_epochs=self.n_epochs, lr=self.lr, wd=self.wd, random_state=self.random_state,
            )  # fmt: skip
            model.fit(z.astype(np.float32))
        return model

    @contextlib.contextmanager
    def _threads(self, torch: Any) -> Iterator[None]:
        """Run with ``torch_threads`` CPU threads (None: leave torch's setting); tiny fits are faster on one."""
        if self.torch_threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(int(self.torch_threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """LUNAR's decision_function on the normal classes' model; higher = more anomalous."""
        x = self._prepare(X)
        model = self._model(self._normal(normal_classes))
        torch = _require("torch", "torch")
        with self._threads(torch):
            return np.asarray(model.decision_function(x.astype(np.float32)), dtype=np.float64)
