"""The BLISS score (Goodge et al., BMVC 2024, Sec. 4) on precomputed embeddings.

For a test embedding z and a normal class c (every vector L2-normalised, ``sim`` = dot product):

- Eq. 4-5, internal class score:  IC(x, c) = -(sim(z, C_c) - mu_c) / (sigma_c + eps),
  with mu_c, sigma_c the mean and population std of sim(Z_c, C_c) over the class's training images Z_c.
- Eq. 7, D* = the K dictionary entries most similar to z (the same K for every class).
- Eq. 8-9, external text score:  ET(x, c) = mean over d in D* of (sim(z, d) - mu_c(d)) / (sigma_c(d) + eps)
  (``aggregate="max"`` gives Eq. 9 as printed; the prose's mean is the default, docs/method.md).
- Eq. 10, s(x, c) = IC(x, c) + lam * ET(x, c);  Eq. 11, s(x) = min over the normal classes of s(x, c).

Higher = more anomalous. ``bliss_utils.scores._reference`` holds a plain loop over classes written straight from the
equations; the tests check that this vectorised version agrees with it to 1e-10 in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone

from bliss_utils._checks import as_labels, as_unit_embeddings, check_number, check_positive_int
from bliss_utils.scores.base import INPUTS, _Scorer

AGGREGATES = ("mean", "max")
# Bytes one working array of a test chunk may take; keeps memory bounded whatever the test set and dictionary size.
CHUNK_BYTES = 64 * 2**20


def class_moments(z_c: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of sim(z, v) over the rows z of ``z_c``, for every row v of ``texts``.

    mean = m . v and var = v^T Cov v (m, Cov: the mean and population covariance of ``z_c``), which costs
    O(n d^2 + t d^2) instead of O(n t d) when a class has more images than the embedding has dimensions.
    """
    n, d = z_c.shape
    t = texts.shape[0]
    if n * t <= n * d + t * d:
        sims = z_c @ texts.T
        return sims.mean(axis=0), sims.std(axis=0)
    mean_z = z_c.mean(axis=0)
    centred = z_c - mean_z
    cov = (centred.T @ centred) / n
    var = np.einsum("td,td->t", texts @ cov, texts)
    return texts @ mean_z, np.sqrt(np.maximum(var, 0.0))


def top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values of each row and their column indices, in decreasing order (Eq. 7)."""
    try:
        import torch
    except ImportError:  # numpy alone is enough, torch is about twice as fast here
        top = np.argpartition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        return np.take_along_axis(top_sims, order, axis=1), np.take_along_axis(top, order, axis=1)
    values, indices = torch.topk(torch.from_numpy(np.ascontiguousarray(sims)), k, dim=1)
    return values.numpy(), indices.numpy()


class BLISS(_Scorer):
    """Bias-corrected language-image similarity score; higher = more anomalous.

    Parameters
    ----------
    k : number of dictionary entries in D* (Eq. 7).
    lam : weight of the external text score (Eq. 10).
    eps : added to every std (Eq. 5, 9); it is what makes a class with one training image usable.
    aggregate : "mean" (the paper's prose, the default) or "max" (Eq. 9 as printed).
    """

    inputs: ClassVar[tuple[str, ...]] = INPUTS
    grid_params: ClassVar[tuple[str, ...]] = ("lam", "k", "eps", "aggregate")

    def __init__(self, k: int = 10, lam: float = 0.5, eps: float = 1e-8, aggregate: str = "mean") -> None:
        self.k = k
        self.lam = lam
        self.eps = eps
        self.aggregate = aggregate

    def _check_params(self) -> None:
        check_positive_int(self.k, "k")
        check_number(self.lam, "lam")
        check_number(self.eps, "eps", "a finite number >= 0")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}; got {self.aggregate!r}")

    def fit(
        self, train_embeddings: Any, train_labels: Any, class_text_embeddings: Any, dictionary_embeddings: Any | None
    ) -> BLISS:
        """Fit the per-class statistics of Eq. 4 and 8 for every class that has training images.

        ``train_labels`` are integers indexing the rows of ``class_text_embeddings``. Inputs may be unnormalised
        (they are L2-normalised here), float32 or float64, numpy or torch; any float64 input makes scoring float64.
        ``dictionary_embeddings`` may be None only for lam = 0 (the internal class score alone).
        """
        z, labels, texts, dictionary = self._check_inputs(
            train_embeddings, train_labels, class_text_embeddings, dictionary_embeddings
        )
        classes, counts = np.unique(labels, return_counts=True)
        single = classes[counts == 1]
        if single.size:
            warnings.warn(
                f"class(es) {single.tolist()} have a single training image: their std is 0 and eps={self.eps} "
                "alone scales their scores",
                stacklevel=2,
            )
        n_classes, t = texts.shape[0], 0 if dictionary is None else dictionary.shape[0]
        self.ic_mean_, self.ic_std_ = (np.full(n_classes, np.nan, dtype=z.dtype) for _ in range(2))
        self.dict_mean_, self.dict_std_ = (np.full((n_classes, t), np.nan, dtype=z.dtype) for _ in range(2))
        for c in classes:
            own_text = texts[c : c + 1]
            targets = own_text if dictionary is None else np.vstack([own_text, dictionary])
            mean, std = class_moments(z[labels == c], targets)
            self.ic_mean_[c], self.ic_std_[c] = mean[0], std[0]
            self.dict_mean_[c], self.dict_std_[c] = mean[1:], std[1:]
        self.classes_, self.n_classes_, self.class_counts_ = classes, n_classes, counts
        self.dim_, self.dtype_ = z.shape[1], z.dtype
        self.class_texts_, self.dictionary_ = texts, dictionary
        return self

    def _check_inputs(self, train: Any, labels: Any, texts: Any, dictionary: Any) -> tuple:
        """Parameters and inputs checked; the embeddings L2-normalised in one dtype, the labels as integers."""
        self._check_params()
        if dictionary is None and self.lam != 0:
            raise ValueError(
                f"dictionary_embeddings is None: only lam = 0 (IC alone) works without one; lam={self.lam}"
            )
        given = dict(train_embeddings=train, class_text_embeddings=texts, dictionary_embeddings=dictionary)
        for arg in ("train_embeddings", "class_text_embeddings"):
            if given[arg] is None:
                raise ValueError(f"{arg} is required: {type(self).__name__} standardises image-text similarities")
        checked = as_unit_embeddings(**given)
        z, texts, dictionary = (checked.get(n) for n in given)
        if dictionary is not None and self.k > dictionary.shape[0]:
            raise ValueError(f"k={self.k} is larger than the dictionary ({dictionary.shape[0]} entries)")
        return z, as_labels(labels, z.shape[0], texts.shape[0]), texts, dictionary

    # ------------------------------------------------------------------ scoring
    def _full(self, fitted_cols: np.ndarray) -> np.ndarray:
        """Scatter (n, n_fitted) columns into (n, n_classes), NaN for classes without statistics."""
        out = np.full((fitted_cols.shape[0], self.n_classes_), np.nan, dtype=self.dtype_)
        out[:, self.classes_] = fitted_cols
        return out

    def _ic(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        sims = x @ self.class_texts_[classes].T
        return -(sims - self.ic_mean_[classes]) / (self.ic_std_[classes] + self.eps)

    def _et(self, x: np.ndarray, classes: np.ndarray, ks: Iterable[int]) -> dict[int, np.ndarray]:
        """ET(x, c) for several K at once: one top-max(K) search, sorted, so every smaller K is a prefix."""
        if self.dictionary_ is None:
            raise ValueError("BLISS was fitted without dictionary_embeddings: the external text score needs them")
        ks = sorted({int(k) for k in ks})
        t = self.dictionary_.shape[0]
        if ks[0] < 1 or ks[-1] > t:
            raise ValueError(f"every K must lie in 1..{t} (the dictionary size); got {ks}")
        k_max = ks[-1]
        item = np.dtype(self.dtype_).itemsize
        per_row = max(t, len(classes) * k_max * 3) * item
        chunk = max(1, CHUNK_BYTES // per_row)
        mean_c, std_c = self.dict_mean_[classes], self.dict_std_[classes] + self.eps
        out = {k: np.empty((x.shape[0], len(classes)), dtype=self.dtype_) for k in ks}
        reduce = np.mean if self.aggregate == "mean" else np.max
        for start in range(0, x.shape[0], chunk):
            sims = x[start : start + chunk] @ self.dictionary_.T
            top_sims, top = top_k(sims, k_max)
            # (classes, chunk, k_max): each test image's own D*, standardised by each class's statistics
            z = (top_sims[None] - mean_c[:, top]) / std_c[:, top]
            for k in ks:
                out[k][start : start + chunk] = reduce(z[:, :, :k], axis=2).T
        return out

    def _class_scores(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        ic = self._ic(x, classes)
        if self.lam == 0:
            return ic
        return ic + self.lam * self._et(x, classes, [self.k])[self.k]

    def nearest_entries(self, X: Any) -> np.ndarray:
        """D* of Eq. 7 for each row of ``X``: the indices of its K most similar dictionary entries, most similar
        first, shape (n_test, K); the words behind its external text score."""
        x = self._prepare(X)
        if self.dictionary_ is None:
            raise ValueError("BLISS was fitted without dictionary_embeddings: there are no entries to name")
        chunk = max(1, CHUNK_BYTES // (self.dictionary_.shape[0] * np.dtype(self.dtype_).itemsize))
        parts = [top_k(x[s : s + chunk] @ self.dictionary_.T, self.k)[1] for s in range(0, x.shape[0], chunk)]
        return np.concatenate(parts).astype(np.int64)

    def components(self, X: Any, ks: Iterable[int] = ()) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """IC and, for every K in ``ks``, ET from one dictionary search: (ic, {k: et}), each (n_test, n_classes)."""
        x = self._prepare(X)
        et = self._et(x, self.classes_, ks) if len(ks) else {}
        return self._full(self._ic(x, self.classes_)), {k: self._full(v) for k, v in et.items()}

    def ic_scores(self, X: Any) -> np.ndarray:
        """IC(x, c) of Eq. 5, shape (n_test, n_classes); NaN columns for classes without training images."""
        return self._full(self._ic(self._prepare(X), self.classes_))

    def et_scores(self, X: Any) -> np.ndarray:
        """ET(x, c) of Eq. 9, shape (n_test, n_classes); NaN columns for classes without training images."""
        return self._full(self._et(self._prepare(X), self.classes_, [self.k])[self.k])

    def class_scores(self, X: Any) -> np.ndarray:
        """s(x, c) = IC + lam * ET (Eq. 10), shape (n_test, n_classes); NaN columns for unfitted classes."""
        return self._full(self._class_scores(self._prepare(X), self.classes_))

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """s(x) = min over the normal classes of s(x, c) (Eq. 11), all fitted classes when None; higher = anomalous."""
        x = self._prepare(X)
        return self._class_scores(x, self._normal(normal_classes)).min(axis=1)

    def components_at_min(self, X: Any, normal_classes: Any) -> tuple[np.ndarray, np.ndarray]:
        """(IC, ET) of each row of ``X`` at the normal class where Eq. 11's min is attained (Fig. 4)."""
        x = self._prepare(X)
        classes = self._normal(normal_classes)
        ic = self._ic(x, classes)
        et = self._et(x, classes, [self.k])[self.k]
        best = (ic + self.lam * et).argmin(axis=1)[:, None]
        return np.take_along_axis(ic, best, axis=1)[:, 0], np.take_along_axis(et, best, axis=1)[:, 0]

    def score_grid(
        self, fit_args: Sequence[Any], X: Any, normal_sets: Sequence[Any], variants: Sequence[dict] = ({},)
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Every (lam, K) variant and set of normal classes from one fit (at the largest K) and one dictionary
        search: Eq. 10's columns per variant, Eq. 11's min over each set (see :meth:`Scorer.score_grid`)."""
        own = {"lam": self.lam, "k": self.k, "eps": self.eps, "aggregate": self.aggregate}
        params = [{**own, **v} for v in variants]
        if len({(p["eps"], p["aggregate"]) for p in params}) > 1:
            return super().score_grid(fit_args, X, normal_sets, variants)
        ks = sorted({int(p["k"]) for p in params})
        shared = {name: value for name, value in params[0].items() if name in self.get_params()}
        if "lam" in shared:  # one fit at the largest K; lam only weighs the columns below
            shared.update(k=ks[-1], lam=0.0)
        model = clone(self).set_params(**shared)
        model.fit(*fit_args)
        if model.dictionary_ is None and any(p["lam"] != 0 for p in params):
            raise ValueError("lam != 0 needs dictionary_embeddings: the external text score is computed from them")
        ic, et = model.components(X, ks if model.dictionary_ is not None else ())
        cols = [ic + p["lam"] * et[int(p["k"])] if et else ic for p in params]
        sets = [model._normal(normal) for normal in normal_sets]
        return ((v, s, c[:, cls].min(axis=1)) for v, c in enumerate(cols) for s, cls in enumerate(sets))


class BiasedCLIP(BLISS):
    """Internal class score alone (Eq. 4-5), min over the normal classes: BLISS with lam = 0 and no dictionary."""

    inputs: ClassVar[tuple[str, ...]] = ("images", "class_texts")
    grid_params: ClassVar[tuple[str, ...]] = ("eps",)
    # fixed, not parameters: with lam = 0 the dictionary, K and the aggregate play no part
    k: ClassVar[int] = 1
    lam: ClassVar[float] = 0.0
    aggregate: ClassVar[str] = "mean"

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def fit(
        self,
        train_embeddings: Any,
        train_labels: Any,
        class_text_embeddings: Any,
        dictionary_embeddings: Any | None = None,
    ) -> BiasedCLIP:
        """Fit mu_c and sigma_c of sim(Z_c, C_c) for every class with training images; a dictionary is ignored."""
        return super().fit(train_embeddings, train_labels, class_text_embeddings, None)
