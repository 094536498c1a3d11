"""LUNAR baseline: PyOD's LUNAR (Goodge et al. 2022), fitted step for step as PyOD does, without its wasted work.

PyOD's ``LUNAR.fit`` does two costly things that do not change its result: before each of its 200 full-batch
epochs it scores the whole training set (about 81,000 rows for a CIFAR-10 9-class trial: the normal images plus as
many generated negatives) in eval mode only to report a training AUROC, and its scikit-learn neighbour search
queries an 81,000-point index with every one of its own points. ``fast_fit`` fits a plain PyOD LUNAR (so a fitted
model pickles like PyOD's) with the same steps in the same order (torch seeding, validation split, scaler, negatives,
the network PyOD built, Adam on the full batch, best epoch = the last epoch with the highest validation AUROC so far)
minus the training-set scoring, with the exact search of ``knn.BlockedKNN`` (faiss's flat index on the CPU, blocked
torch products on a GPU; ``benchmarks/bench_knn.py``). The skipped eval-mode pass draws
no random numbers and leaves the batch-norm statistics alone, so with the same neighbour distances the weights and
scores are PyOD's bit for bit (tested against PyOD's own ``fit``). The 200 Adam steps themselves are kept and are most
of what is left. The kept epoch is fragile in PyOD itself: the validation AUROC often plateaus, and inputs one float
rounding apart can then keep another epoch (see benchmarks/README.md).

The benchmark that justifies this fit over PyOD's own is ``benchmarks/bench_baselines.py --only lunar`` (results in
benchmarks/README.md): 1.5x PyOD on 2 CPU cores at a quarter of CIFAR-10 9-class scale, 3.1x at full scale on the GPU
machine, where the skipped per-epoch training-set scoring weighs more. What this file holds is only what differs from
PyOD's ``fit``: the skipped scoring, the neighbour index, and the thread rule for tiny fits (``ONE_THREAD_BELOW``).
"""

from __future__ import annotations

import contextlib
from copy import deepcopy
from typing import Any

import numpy as np

from bliss_utils import _malloc, _progress
from bliss_utils._checks import check_positive_int, require
from bliss_utils.scores.base import ImageScorer, torch_threads

# With torch_threads=None a fit on fewer images than this (and the scoring by its model) runs on one torch thread.
# ``benchmarks/bench_knn.py --only threads`` (2 cores): beside another process using every core, 2 threads are 2 to 10
# times slower than 1 below 500 images (the smoke runs' fits have at most 180; ~45x was seen beside a parallel test
# run); on an idle machine 1 thread costs at most ~0.4 s more per 20 epochs there. Larger fits keep torch's setting,
# so no fit of the paper's full training sets changes. The thread count moves scores at float rounding (~1e-6), so
# the rule is on the fit size alone: a model is fitted and scored on the same count.
ONE_THREAD_BELOW = 500
# LUNAR's own parameters; every other one is PyOD's, passed to pyod.models.lunar.LUNAR by name
OWN_ARGS = ("torch_threads", "device", "progress")


def _neighbour_index(n_neighbors: int, device: str | None) -> Any:
    """The exact Euclidean neighbour index LUNAR searches (PyOD's is scikit-learn's NearestNeighbors)."""
    from bliss_utils.scores.knn import BlockedKNN

    return BlockedKNN(n_neighbors=n_neighbors, device=device)


def _split_and_negatives(model: Any, X: np.ndarray) -> tuple[np.ndarray, ...]:
    """PyOD's first steps in its order: torch seed, validation split, scaler, negatives for each part."""
    import torch
    from pyod.models.lunar import generate_negative_samples
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state

    if model.random_state is not None:
        seed = int(check_random_state(model.random_state).randint(0, np.iinfo(np.int32).max))
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    rng = check_random_state(model.random_state)
    train_x, val_x = train_test_split(X, test_size=model.val_size, random_state=rng)
    model.scaler_ = model._resolve_scaler()
    if model.scaler_ is not None:
        model.scaler_.fit(train_x)
        train_x, val_x = model.scaler_.transform(train_x), model.scaler_.transform(val_x)
    negatives = (model.negative_sampling, model.proportion, model.epsilon)
    neg_train = generate_negative_samples(train_x, *negatives, random_state=rng)[0]
    neg_val = generate_negative_samples(val_x, *negatives, random_state=rng)[0]
    return train_x, val_x, neg_train, neg_val


def _neighbour_distances(model: Any, parts: tuple[np.ndarray, ...], device: str | None) -> tuple[np.ndarray, ...]:
    """(training distances, training targets, validation distances, validation targets), as PyOD builds them."""
    train_x, val_x, neg_train, neg_val = parts
    k = model.n_neighbours
    index_x = np.vstack((train_x, neg_train))
    model.neigh = _neighbour_index(k + 1, device).fit(index_x)
    # a normal training point's nearest neighbour is itself (dropped); PyOD queries the negatives, which are in the
    # index too, with k and keeps their self-matches
    own = model.neigh.kneighbors(index_x[: len(train_x)], n_neighbors=k + 1)[0][:, 1:]
    neg = model.neigh.kneighbors(index_x[len(train_x) :], n_neighbors=k)[0]
    val = model.neigh.kneighbors(np.vstack((val_x, neg_val)), n_neighbors=k)[0]
    train_y = np.hstack((np.zeros(len(train_x)), np.ones(len(neg_train))))
    return np.vstack((own, neg)), train_y, val, np.hstack((np.zeros(len(val_x)), np.ones(len(neg_val))))


def _train(model: Any, train_dist: Any, train_y: Any, val_dist: Any, val_y: np.ndarray, desc: str | None) -> None:
    """PyOD's full-batch Adam epochs; keeps the last epoch with the best validation AUROC (``best_epoch_``)."""
    import torch
    from sklearn.metrics import roc_auc_score

    criterion = torch.nn.MSELoss(reduction="none")
    optimizer = torch.optim.Adam(model.network.parameters(), lr=model.lr, weight_decay=model.wd)
    best_score, best_state, model.val_scores_ = 0.0, None, []
    epochs = _progress.progress(range(model.n_epochs), desc=desc or "", unit="epoch", leave=False, disable=desc is None)
    with _malloc.reuse_freed_memory():  # the same ~1 GB of activations every epoch: no page faults
        for epoch in epochs:
            with torch.no_grad():
                model.network.eval()
                score = roc_auc_score(val_y, model.network(val_dist).cpu())
            model.val_scores_.append(score)
            if score >= best_score:  # PyOD keeps the last of equally good epochs
                best_score, best_state, model.best_epoch_ = score, deepcopy(model.network.state_dict()), epoch
            model.network.train()
            optimizer.zero_grad()
            criterion(model.network(train_dist), train_y).sum().backward()
            optimizer.step()
    model.network.load_state_dict(best_state)


def fast_fit(model: Any, X: np.ndarray, device: str | None = None, desc: str | None = None) -> Any:
    """Fit a PyOD ``LUNAR`` as its ``fit`` (pyod 3.6) does, minus the per-epoch training-set scoring, with the exact
    blocked neighbour search on ``device``; ``desc`` labels a bar over the epochs (None: no bar)."""
    import torch

    model._set_n_classes(None)
    X = X.astype("float32")
    train_dist, train_y, val_dist, val_y = _neighbour_distances(model, _split_and_negatives(model, X), device)

    def tensor(a: np.ndarray) -> Any:
        return torch.tensor(a, dtype=torch.float32).to(model.device)

    _train(model, tensor(train_dist), tensor(train_y), tensor(val_dist), val_y, desc)
    x_norm = np.copy(X) if model.scaler_ is None else model.scaler_.transform(X)
    dist = tensor(model.neigh.kneighbors(x_norm, model.n_neighbours)[0])
    with torch.no_grad():
        model.network.eval()
        model.decision_scores_ = model.network(dist).cpu().numpy().ravel()
    model._process_decision_scores()
    return model


class LUNAR(ImageScorer):
    """PyOD's LUNAR on the normal classes' training images (fast exact fit, exact search); score = decision_function.

    Arguments are passed to pyod.models.lunar.LUNAR explicitly (PyOD's defaults otherwise, British ``n_neighbours``),
    with a fresh ``MinMaxScaler()`` per fit. Each fitted model (``models_[classes]``) also keeps ``val_scores_`` (the
    validation AUROC before every epoch) and ``best_epoch_`` (the epoch whose weights it kept). PyOD's version differs
    from the original LUNAR code (neighbours among the negatives too, plain L2, WEIGHT network by default, k=5): see
    docs/baselines.md. ``device`` (None: CUDA, then MPS, then the CPU) runs the neighbour search; PyOD puts its
    network on CUDA whenever it is available. ``progress`` shows a bar over each fit's epochs. ``torch_threads``
    sets the CPU threads of each fit and of scoring by its model; None: one thread for a fit on fewer than
    ``ONE_THREAD_BELOW`` images, torch's setting otherwise.
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
        device: str | None = None,
        progress: bool = True,
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
        self.device = device
        self.progress = progress

    def _check_params(self) -> None:
        check_positive_int(self.n_neighbours, "n_neighbours")
        check_positive_int(self.n_epochs, "n_epochs")
        check_positive_int(self.torch_threads, "torch_threads", allow_none=True)
        if self.model_type not in ("WEIGHT", "SCORE"):
            raise ValueError(f"model_type must be 'WEIGHT' or 'SCORE'; got {self.model_type!r}")
        if self.negative_sampling not in ("UNIFORM", "SUBSPACE", "MIXED"):
            raise ValueError(f"negative_sampling must be UNIFORM, SUBSPACE or MIXED; got {self.negative_sampling!r}")
        if not 0 < self.val_size < 1:
            raise ValueError(f"val_size must lie strictly between 0 and 1; got {self.val_size!r}")

    def _fit_model(self, z: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> Any:
        torch = require("torch", "torch", "LUNAR")
        pyod_lunar = require("pyod.models.lunar", "pyod", "LUNAR")
        from sklearn.preprocessing import MinMaxScaler

        # PyOD needs n_neighbours + 1 neighbours among the 90% of images left after the validation split
        n_fit = int(np.floor(z.shape[0] * (1 - self.val_size)))
        if n_fit < self.n_neighbours + 1:
            raise ValueError(
                f"LUNAR needs more than n_neighbours={self.n_neighbours} training images after its validation split; "
                f"normal classes {classes.tolist()} have {z.shape[0]}"
            )
        # PyOD seeds the global torch generator; fork it so fitting does not change the caller's random stream
        with torch.random.fork_rng(devices=[]), self._threads(torch, z.shape[0]):
            pyod_args = {name: value for name, value in self.get_params().items() if name not in OWN_ARGS}
            model = pyod_lunar.LUNAR(scaler=MinMaxScaler(), **pyod_args)
            # fast_fit casts the images to float32, as PyOD's fit does
            fast_fit(model, z, self.device, f"LUNAR on {len(classes)} classes" if self.progress else None)
        model.n_fit_images_ = z.shape[0]  # fixes the thread count its scoring runs on
        return model

    def _threads(self, torch: Any, n_images: int) -> contextlib.AbstractContextManager:
        """Run with ``torch_threads`` CPU threads; None: one thread for a fit on fewer than ONE_THREAD_BELOW images,
        else torch's setting."""
        return torch_threads(torch, self.torch_threads or (1 if n_images < ONE_THREAD_BELOW else None))

    def score_samples(self, X: Any, normal_classes: Any | None = None) -> np.ndarray:
        """LUNAR's decision_function on the normal classes' model; higher = more anomalous."""
        x, model = self._prepare(X), self._model(self._normal(normal_classes))
        torch = require("torch", "torch", "LUNAR")
        with self._threads(torch, getattr(model, "n_fit_images_", ONE_THREAD_BELOW)):
            return np.asarray(model.decision_function(x.astype(np.float32)), dtype=np.float64)
