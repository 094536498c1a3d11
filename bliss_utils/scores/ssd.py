"""SSD's detector (Sehwag et al. 2021; the score CMG uses): Mahalanobis distance on frozen features, one cluster.

Features are L2-normalised, standardised with the normal training images' per-dimension mean and std, and scored by
the squared Mahalanobis distance under the pseudo-inverse of their biased covariance. Higher = more anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bliss_utils._checks import l2_normalize
from bliss_utils.scores.base import ImageScorer

# SSD's own guard against a zero std in a constant dimension
STD_EPS = 1e-10


@dataclass(frozen=True)
class MahalanobisModel:
    """Fitted one-cluster SSD statistics: standardisation and the pseudo-inverse covariance (float64).

    The standardised training features have mean zero, so the cluster centre is the origin.
    """

    mean: np.ndarray
    std: np.ndarray
    precision: np.ndarray

    def score(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of rows of ``x`` (L2-normalised inside) to the training cluster."""
        u = (l2_normalize(np.asarray(x, dtype=np.float64), "X") - self.mean) / (self.std + STD_EPS)
        return np.einsum("ij,jk,ik->i", u, self.precision, u)


def fit_mahalanobis(train: np.ndarray) -> MahalanobisModel:
    """Fit SSD's one-cluster model on (n, d) training features."""
    z = l2_normalize(np.asarray(train, dtype=np.float64), "train_embeddings")
    if z.shape[0] < 2:
        raise ValueError(f"SSD needs at least 2 training images to estimate a covariance; got {z.shape[0]}")
    mean, std = z.mean(axis=0), z.std(axis=0)
    u = (z - mean) / (std + STD_EPS)
    cov = np.cov(u, rowvar=False, bias=True).reshape(z.shape[1], z.shape[1])
    return MahalanobisModel(mean=mean, std=std, precision=np.linalg.pinv(cov, hermitian=True))


class SSD(ImageScorer):
    """Mahalanobis distance to the normal classes' training images (one cluster); fitted per set of normal classes.

    ``score_samples`` (ImageScorer's) is the squared Mahalanobis distance to the normal classes' images.
    """

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> Any:
        return fit_mahalanobis(z)
