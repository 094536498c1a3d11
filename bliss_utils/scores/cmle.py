"""SSD+CMLE: CMG's cross-modal linear embedding (Chen et al., Eqs. 8-13) as a residual adapter on frozen embeddings.

CMG trains a ResNet-50 from scratch with captions; here (no captions, no pixels) each normal training image gets a
pseudo-caption, the normalised mean of its ``n_caption_words`` nearest dictionary embeddings (BLISS's dictionary), and
a residual adapter f(z) = z + W2 relu(W1 z + b1) + b2 (W2, b2 zero at start, so 0 epochs is exactly SSD) is trained:

- the captions are clustered by a diagonal Gaussian mixture (``n_clusters`` components, the released code's 5);
- SupCon (Khosla et al. 2020; tau 0.5, base 0.07, one view) on a projection head pulls images of a caption cluster
  together, as CMG's released code does;
- ``lle_weight`` * ||f(z_a) - sum_j W_aj f(z_j)||^2 (Eq. 13) keeps each image at the LLE reconstruction (Eq. 12) of its
  neighbours, with the weights W fitted on the captions inside each cluster (standard LLE: rows sum to 1).

Alone the LLE term collapses (a constant f gives zero loss), hence ``supcon_weight`` > 0 is required. The adapter must
be non-linear: a Mahalanobis distance is unchanged by any invertible linear map. The score is SSD on f(train), f(test).
CMER (CMG's masked-image part) is not reproduced: it needs pixels and the authors' matcher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bliss_utils import _progress
from bliss_utils._checks import as_embeddings, check_number, check_positive_int, l2_normalize, require, torch_device
from bliss_utils.scores.base import INPUTS, ImageScorer, torch_threads
from bliss_utils.scores.ssd import MahalanobisModel, fit_mahalanobis

CAPTION_SOURCES = ("dictionary", "class_text")
# rows per batched LLE solve: bounds the (rows, k, d) difference block to a few tens of MB at d = 768
LLE_CHUNK = 1024


def pseudo_captions(z: np.ndarray, dictionary: np.ndarray, n_words: int) -> np.ndarray:
    """(n, d) unit rows: the normalised mean of the ``n_words`` dictionary embeddings nearest to each row of ``z``."""
    if not 1 <= n_words <= dictionary.shape[0]:
        raise ValueError(f"n_caption_words must be in 1..{dictionary.shape[0]} (dictionary size); got {n_words}")
    sims = z @ dictionary.T
    top = np.argpartition(-sims, n_words - 1, axis=1)[:, :n_words]
    return l2_normalize(dictionary[top].mean(axis=1), "pseudo-captions")


def lle_weights(y: np.ndarray, clusters: np.ndarray, k: int, reg: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """LLE reconstruction weights inside each cluster: (neighbour indices, weights), both (n, k).

    w_i = G_i^-1 1 / 1^T G_i^-1 1 with G_i the Gram matrix of (y_i - y_j) over i's nearest cluster-mates, regularised
    by reg * trace(G_i) (scikit-learn's rule). Rows with fewer mates use what there is (weight 0 padding); a singleton
    cluster gets all-zero weights and index -1 (no term).
    """
    from sklearn.neighbors import NearestNeighbors

    n = y.shape[0]
    idx = np.full((n, k), -1, dtype=np.int64)
    w = np.zeros((n, k), dtype=np.float64)
    for c in np.unique(clusters):
        members = np.flatnonzero(clusters == c)
        kk = min(k, members.size - 1)
        if kk < 1:
            continue
        ym = y[members].astype(np.float64)
        # kneighbors() without X leaves each point out of its own neighbour list
        nearest = NearestNeighbors(n_neighbors=kk).fit(ym).kneighbors(return_distance=False)
        for start in range(0, members.size, LLE_CHUNK):
            rows = slice(start, start + LLE_CHUNK)
            diff = ym[rows, None, :] - ym[nearest[rows]]
            gram = np.einsum("nid,njd->nij", diff, diff)
            trace = np.trace(gram, axis1=1, axis2=2)
            gram = gram + np.eye(kk) * np.where(trace > 0, reg * trace, reg)[:, None, None]
            sol = np.linalg.solve(gram, np.ones((gram.shape[0], kk, 1)))[..., 0]
            idx[members[rows], :kk] = members[nearest[rows]]
            w[members[rows], :kk] = sol / sol.sum(axis=1, keepdims=True)
    return idx, w


def supcon_loss(features: Any, labels: Any, temperature: float = 0.5, base_temperature: float = 0.07) -> Any:
    """Supervised contrastive loss (one view) of unit ``features`` (n, m) with integer ``labels`` (n,); torch scalar.

    Anchors without a positive are dropped; (temperature / base_temperature) scales the mean, as in SupCon's code.
    """
    import torch

    n = features.shape[0]
    logits = features @ features.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positive.sum(dim=1)
    keep = n_pos > 0
    if not bool(keep.any()):
        return features.sum() * 0.0
    mean_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)[keep] / n_pos[keep]
    return -(temperature / base_temperature) * mean_log_prob.mean()


@dataclass
class AdaptedSSD:
    """A trained residual adapter and SSD fitted on the adapted normal training images (with the training's
    per-epoch mean loss, optimiser steps and wall time, for benchmarks)."""

    adapter: Any
    ssd: MahalanobisModel
    losses: list[float]
    steps: int = 0
    train_seconds: float = 0.0

    def score(self, x: np.ndarray) -> np.ndarray:
        """SSD score of the adapted rows of ``x``."""
        return self.ssd.score(_apply(self.adapter, x))


def _linear(n_in: int, n_out: int, generator: Any, zero: bool = False) -> Any:
    """nn.Linear with PyTorch's default init drawn from ``generator`` (the global torch stream is not touched)."""
    import torch

    layer = torch.nn.utils.skip_init(torch.nn.Linear, n_in, n_out)
    bound = 1.0 / np.sqrt(n_in)
    with torch.no_grad():
        for p in layer.parameters():  # the weight, then the bias: the order of the draws from ``generator``
            p.zero_() if zero else p.uniform_(-bound, bound, generator=generator)
    return layer


def _residual_adapter(dim: int, hidden: int, generator: Any) -> Any:
    """The adapter's layers, z -> z + outer(relu(inner(z))) (:func:`_adapt`); the outer layer starts at zero, so
    training starts from the identity. A ModuleDict of torch's own layers, so a fitted SSDCMLE pickles."""
    import torch

    inner = _linear(dim, hidden, generator)
    return torch.nn.ModuleDict({"inner": inner, "outer": _linear(hidden, dim, generator, zero=True)})


def _adapt(adapter: Any, z: Any) -> Any:
    import torch

    return z + adapter["outer"](torch.relu(adapter["inner"](z)))


def _apply(adapter: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return _adapt(adapter, torch.as_tensor(np.asarray(x, dtype=np.float32))).double().numpy()


class SSDCMLE(ImageScorer):
    """SSD on frozen embeddings passed through a residual adapter trained with CMG's CMLE (see the module docstring).

    Needs the dictionary (pseudo-captions) or, with ``captions="class_text"``, the class texts; fitted per set of
    normal classes (one adapter per trial), seeded from ``random_state`` with a local torch.Generator. ``device``
    (None: CUDA, then MPS, then the CPU) trains the adapter; the weights are drawn and the batches shuffled on
    the CPU whatever the device, and scoring runs on the CPU.
    """

    inputs: ClassVar[tuple[str, ...]] = INPUTS  # the dictionary, or the class texts, give the captions

    def __init__(
        self,
        epochs: int = 80,
        batch_size: int = 128,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        hidden: int | None = None,
        head_dim: int = 128,
        n_clusters: int = 5,
        n_neighbours: int = 10,
        n_caption_words: int = 10,
        captions: str = "dictionary",
        supcon_weight: float = 1.0,
        lle_weight: float = 1.0,
        temperature: float = 0.5,
        base_temperature: float = 0.07,
        random_state: int = 0,
        progress: bool = True,
        torch_threads: int | None = None,
        device: str | None = None,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.betas = betas
        self.hidden = hidden
        self.head_dim = head_dim
        self.n_clusters = n_clusters
        self.n_neighbours = n_neighbours
        self.n_caption_words = n_caption_words
        self.captions = captions
        self.supcon_weight = supcon_weight
        self.lle_weight = lle_weight
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.random_state = random_state
        self.progress = progress
        self.torch_threads = torch_threads
        self.device = device

    def _check_params(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer; got {self.epochs!r}")
        for name in ("batch_size", "head_dim", "n_clusters", "n_neighbours", "n_caption_words"):
            check_positive_int(getattr(self, name), name)
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (SupCon needs pairs); got {self.batch_size}")
        if self.captions not in CAPTION_SOURCES:
            raise ValueError(f"captions must be one of {list(CAPTION_SOURCES)}; got {self.captions!r}")
        collapse = ": the LLE loss alone collapses (a constant embedding gives it zero loss)"
        check_number(self.supcon_weight, "supcon_weight", "> 0", collapse)
        check_number(self.lle_weight, "lle_weight", ">= 0")
        for name in ("lr", "temperature", "base_temperature"):
            check_number(getattr(self, name), name, "a positive number")
        torch_device(self.device)

    def fit(
        self,
        train_embeddings: Any,
        train_labels: Any,
        class_text_embeddings: Any | None = None,
        dictionary_embeddings: Any | None = None,
    ) -> SSDCMLE:
        """Store the normalised training images and the caption source (dictionary or class texts)."""
        super().fit(train_embeddings, train_labels, class_text_embeddings, dictionary_embeddings)
        source = dictionary_embeddings if self.captions == "dictionary" else class_text_embeddings
        arg = "dictionary_embeddings" if self.captions == "dictionary" else "class_text_embeddings"
        if source is None:
            raise ValueError(f"SSDCMLE(captions={self.captions!r}) needs {arg}")
        texts = l2_normalize(as_embeddings(source, arg, dtype=np.float64), arg)
        if texts.shape[1] != self.dim_:
            raise ValueError(f"{arg} has dimension {texts.shape[1]} but the images {self.dim_}: same backbone?")
        self.caption_source_ = texts
        return self

    def _captions(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if self.captions == "class_text":
            return self.caption_source_[labels]
        return pseudo_captions(z.astype(np.float64), self.caption_source_, self.n_caption_words)

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> AdaptedSSD:
        torch = require("torch", "torch", "SSD+CMLE")
        targets = self._cluster_targets(z, labels)
        adapter, losses, steps, train_seconds = self._train_adapter(torch, z, *targets, classes)
        adapter.cpu().eval().requires_grad_(False)
        return AdaptedSSD(adapter, fit_mahalanobis(_apply(adapter, z)), losses, steps, train_seconds)

    def _cluster_targets(self, z: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CMLE's targets: the captions' GMM clusters (SupCon labels) and their LLE neighbours and weights."""
        mixture = require("sklearn.mixture", "scikit-learn", "SSD+CMLE")
        y = self._captions(z, own)
        n_distinct = np.unique(np.round(y, 12), axis=0).shape[0]
        if n_distinct < self.n_clusters:
            fix = "give more training images" if self.captions == "dictionary" else "use captions='dictionary'"
            raise ValueError(
                f"SSD+CMLE: {n_distinct} distinct {self.captions} captions among {len(z)} training images, fewer than "
                f"n_clusters={self.n_clusters}: lower n_clusters (e.g. BASELINE_PARAMS={{'ssd-cmle': {{'n_clusters': "
                f"{max(n_distinct, 1)}}}}}) or {fix}"
            )
        gmm = mixture.GaussianMixture(self.n_clusters, covariance_type="diag", random_state=self.random_state)
        clusters = gmm.fit_predict(y)
        return (clusters, *lle_weights(y, clusters, self.n_neighbours))

    def _train_adapter(
        self, torch: Any, z: np.ndarray, clusters: np.ndarray, nb_idx: np.ndarray, nb_w: np.ndarray, classes: Any
    ) -> tuple[Any, list[float], int, float]:
        """(adapter, mean loss per epoch, optimiser steps, seconds) of the Adam epochs on SupCon + LLE."""
        generator = torch.Generator().manual_seed(int(self.random_state))
        dim = z.shape[1]
        device = torch_device(self.device)  # the layers are drawn on the CPU, then moved
        adapter = _residual_adapter(dim, self.hidden or dim, generator).to(device)
        head = torch.nn.Sequential(
            _linear(dim, dim, generator), torch.nn.ReLU(), _linear(dim, self.head_dim, generator)
        ).to(device)
        optimiser = torch.optim.Adam([*adapter.parameters(), *head.parameters()], lr=self.lr, betas=tuple(self.betas))
        zt = torch.as_tensor(z, dtype=torch.float32, device=device)
        ct = torch.as_tensor(clusters, dtype=torch.int64, device=device)
        idx_t = torch.as_tensor(np.clip(nb_idx, 0, None), device=device)
        w_t = torch.as_tensor(nb_w, dtype=torch.float32, device=device)
        losses: list[float] = []
        steps, desc = 0, f"SSD+CMLE on classes {classes.tolist()}"
        epochs = _progress.progress(
            range(int(self.epochs)), desc=desc, unit="epoch", leave=False, disable=not self.progress
        )
        with torch_threads(torch, self.torch_threads):
            started = time.perf_counter()
            for _ in epochs:
                # drawn on the CPU so that a seed gives the same batches on every device
                order = torch.randperm(zt.shape[0], generator=generator).to(device)
                total = 0.0
                for start in range(0, zt.shape[0], self.batch_size):
                    batch = order[start : start + self.batch_size]
                    if batch.numel() < 2:
                        continue
                    loss = self._step_loss(torch, adapter, head, zt, ct, idx_t, w_t, batch)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    steps += 1
                    total += float(loss.detach()) * batch.numel()
                losses.append(total / zt.shape[0])
            return adapter, losses, steps, time.perf_counter() - started

    def _step_loss(
        self, torch: Any, adapter: Any, head: Any, zt: Any, ct: Any, idx_t: Any, w_t: Any, batch: Any
    ) -> Any:
        fz = _adapt(adapter, zt[batch])
        proj = torch.nn.functional.normalize(head(fz), dim=1)
        loss = self.supcon_weight * supcon_loss(proj, ct[batch], self.temperature, self.base_temperature)
        if self.lle_weight > 0:
            nb = idx_t[batch]
            f_nb = _adapt(adapter, zt[nb.reshape(-1)]).reshape(nb.shape[0], nb.shape[1], -1)
            recon = (w_t[batch][:, :, None] * f_nb).sum(dim=1)
            # rows of a singleton cluster have all-zero weights: no reconstruction term
            has = (w_t[batch].abs().sum(dim=1) > 0).float()
            err = ((fz - recon) ** 2).sum(dim=1) * has
            loss = loss + self.lle_weight * err.sum() / has.sum().clamp(min=1.0)
        return loss
