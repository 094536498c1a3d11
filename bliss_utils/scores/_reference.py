"""A plain, slow BLISS written straight from the paper's equations, one class at a time.

It exists to check the vectorised ``bliss.BLISS`` (tests, to 1e-10 in float64) and to time it (benchmarks/).
Nothing is cached or shared: every call recomputes the statistics of every normal class, as a first
implementation of Eq. 4-11 would.
"""

from __future__ import annotations

import numpy as np


def reference_bliss_scores(
    train: np.ndarray,
    train_labels: np.ndarray,
    class_texts: np.ndarray,
    dictionary: np.ndarray,
    test: np.ndarray,
    normal_classes: list[int],
    k: int = 10,
    lam: float = 0.5,
    eps: float = 1e-8,
    aggregate: str = "mean",
) -> np.ndarray:
    """s(x) = min over normal c of IC(x, c) + lam * ET(x, c), for every row of ``test`` (inputs any scale)."""

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    z_train, texts, dic, z = unit(train), unit(class_texts), unit(dictionary), unit(test)
    sim_dic = z @ dic.T  # sim(z, D_i) for every test image
    top = np.argsort(-sim_dic, axis=1)[:, :k]  # Eq. 7: D*, the K most similar entries
    top_sims = np.take_along_axis(sim_dic, top, axis=1)
    per_class = []
    for c in normal_classes:
        z_c = z_train[train_labels == c]
        s_c = z_c @ texts[c]  # Eq. 4
        ic = -(z @ texts[c] - s_c.mean()) / (s_c.std() + eps)  # Eq. 5 (np.std is the population std)
        s_dc = z_c @ dic.T  # Eq. 8, for every entry; D* picks its columns
        mu, sigma = s_dc.mean(axis=0), s_dc.std(axis=0)
        standardised = (top_sims - mu[top]) / (sigma[top] + eps)
        et = standardised.mean(axis=1) if aggregate == "mean" else standardised.max(axis=1)  # Eq. 9
        per_class.append(ic + lam * et)  # Eq. 10
    return np.min(per_class, axis=0)  # Eq. 11
