"""LUNAR baseline: PyOD's LUNAR (Goodge et al. 2022), fitted step for step as PyOD does, without its wasted work.

PyOD's ``LUNAR.fit`` does two costly things that do not change its result: before each of its 200 full-batch
epochs it scores the whole training set (about 81,000 rows for a CIFAR-10 9-class trial: the normal images plus as
many generated negatives) in eval mode only to report a training AUROC, and its scikit-learn neighbour search
queries an 81,000-point index with every one of its own points. ``_FastLUNAR`` subclasses PyOD's LUNAR and replaces
``fit`` with the same steps in the same order (torch seeding, validation split, scaler, negatives, the network PyOD
built, Adam on the full batch, best epoch = the last epoch with the highest validation AUROC so far) minus the
training-set scoring, with the exact blocked search of ``knn.BlockedKNN``. The skipped eval-mode pass draws no random
numbers and leaves the batch-norm statistics alone, so with the same neighbour distances the weights and scores are
PyOD's bit for bit (tested against PyOD's own ``fit``). The 200 Adam steps themselves are kept and are most of what
is left. The kept epoch is fragile in PyOD itself: the validation AUROC often plateaus, and inputs one float
rounding apart can then keep another epoch (see benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from copy import deepcopy
from typing import Any

import numpy as np

from bliss_utils import _malloc, _progress
from bliss_utils._checks import check_positive_int
from bliss_utils.scores.base import _ImageScorer, _require


def _neighbour_index(n_neighbors: int, device: str | None) -> Any:
    """The exact Euclidean neighbour index LUNAR searches (PyOD's is scikit-learn's NearestNeighbors)."""
    from bliss_utils.scores.knn import BlockedKNN

    return BlockedKNN(n_neighbors=n_neighbors, device=device)


@functools.cache
def _pyod_lunar_class() -> type:
    """PyOD's LUNAR with ``fit`` replaced by ``_FastLUNAR.fit`` (built on first use: PyOD and torch load lazily)."""
    import torch
    from pyod.models.lunar import LUNAR as PyODLUNAR
    from pyod.models.lunar import generate_negative_samples
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state

    class _FastLUNAR(PyODLUNAR):
        knn_device: str | None = None
        progress_desc: str | None = None  # a bar over the epochs with this label; None: no bar

        def fit(self, X: Any, y: Any = None) -> _FastLUNAR:
            """PyOD's LUNAR.fit (pyod 3.6) minus its per-epoch training-set scoring; records the best epoch."""
            self._set_n_classes(y)
            X = X.astype("float32")
            if self.random_state is not None:
                seed = int(check_random_state(self.random_state).randint(0, np.iinfo(np.int32).max))
                torch.manual_seed(seed)
                if torch.cuda.is_available():
                    torch.cuda.manual_seed_all(seed)
            rng = check_random_state(self.random_state)
            train_x, val_x = train_test_split(X, test_size=self.val_size, random_state=rng)
            self.scaler_ = self._resolve_scaler()
            if self.scaler_ is not None:
                self.scaler_.fit(train_x)
                train_x, val_x = self.scaler_.transform(train_x), self.scaler_.transform(val_x)
            negatives = (self.negative_sampling, self.proportion, self.epsilon)
            neg_train = generate_negative_samples(train_x, *negatives, random_state=rng)[0]
            neg_val = generate_negative_samples(val_x, *negatives, random_state=rng)[0]
            k = self.n_neighbours
            index_x = np.vstack((train_x, neg_train))
            self.neigh = _neighbour_index(k + 1, self.knn_device).fit(index_x)
            # a normal training point's nearest neighbour is itself (dropped); PyOD queries the negatives, which
            # are in the index too, with k and keeps their self-matches
            own = self.neigh.kneighbors(index_x[: len(train_x)], n_neighbors=k + 1)[0][:, 1:]
            neg = self.neigh.kneighbors(index_x[len(train_x) :], n_neighbors=k)[0]
            val = self.neigh.kneighbors(np.vstack((val_x, neg_val)), n_neighbors=k)[0]

            def tensor(a: np.ndarray) -> Any:
                return torch.tensor(a, dtype=torch.float32).to(self.device)

            train_dist, val_dist = tensor(np.vstack((own, neg))), tensor(val)
            train_y = tensor(np.hstack((np.zeros(len(train_x)), np.ones(len(neg_train)))))
            val_y = np.hstack((np.zeros(len(val_x)), np.ones(len(neg_val))))
            criterion = torch.nn.MSELoss(reduction="none")
            optimizer = torch.optim.Adam(self.network.parameters(), lr=self.lr, weight_decay=self.wd)
            best_score, best_state, self.val_scores_ = 0.0, None, []
            epochs = _progress.progress(
                range(self.n_epochs),
                desc=self.progress_desc or "",
                unit="epoch",
                leave=False,
                disable=self.progress_desc is None,
            )
            with _malloc.reuse_freed_memory():  # the same ~1 GB of activations every epoch: no page faults
                for epoch in epochs:
                    with torch.no_grad():
                        self.network.eval()
                        score = roc_auc_score(val_y, self.network(val_dist).cpu())
                    self.val_scores_.append(score)
                    if score >= best_score:  # PyOD keeps the last of equally good epochs
                        best_score, best_state, self.best_epoch_ = score, deepcopy(self.network.state_dict()), epoch
                    self.network.train()
                    optimizer.zero_grad()
                    criterion(self.network(train_dist), train_y).sum().backward()
                    optimizer.step()
            self.network.load_state_dict(best_state)
            x_norm = np.copy(X) if self.scaler_ is None else self.scaler_.transform(X)
            dist = tensor(self.neigh.kneighbors(x_norm, k)[0])
            with torch.no_grad():
                self.network.eval()
                self.decision_scores_ = self.network(dist).cpu().numpy().ravel()
            self._process_decision_scores()
            return self

    return _FastLUNAR


class LUNAR(_ImageScorer):
    """PyOD's LUNAR on the normal classes' training images (fast exact fit, blocked search); score = decision_function.

    Arguments are passed to pyod.models.lunar.LUNAR explicitly (PyOD's defaults otherwise, British ``n_neighbours``),
    with a fresh ``MinMaxScaler()`` per fit. Each fitted model (``models_[classes]``) also keeps ``val_scores_`` (the
    validation AUROC before every epoch) and ``best_epoch_`` (the epoch whose weights it kept). PyOD's version differs from the original LUNAR code (neighbours among
    the negatives too, plain L2, WEIGHT network by default, k=5): see the README. ``device`` (None: CUDA when
    available) runs the neighbour search; PyOD puts its network on CUDA whenever it is available. ``progress`` shows a
    bar over each fit's epochs.
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
        torch = _require("torch", "torch")
        _require("pyod.models.lunar", "pyod")
        from sklearn.preprocessing import MinMaxScaler

        # PyOD needs n_neighbours + 1 neighbours among the 90% of images left after the validation split
        n_fit = int(np.floor(z.shape[0] * (1 - self.val_size)))
        if n_fit < self.n_neighbours + 1:
            raise ValueError(
                f"LUNAR needs more than n_neighbours={self.n_neighbours} training images after its validation split; "
                f"normal classes {classes.tolist()} have {z.shape[0]}"
            )
        # PyOD seeds the global torch generator; fork it so fitting does not change the caller's random stream
        with torch.random.fork_rng(devices=[]), self._threads(torch):
            model = _pyod_lunar_class()(
                model_type=self.model_type,
                n_neighbours=self.n_neighbours,
                negative_sampling=self.negative_sampling,
                val_size=self.val_size,
                scaler=MinMaxScaler(),
                epsilon=self.epsilon,
                proportion=self.proportion,
                n_epochs=self.n_epochs,
                lr=self.lr,
                wd=self.wd,
                random_state=self.random_state,
            )
            model.knn_device = self.device
            model.progress_desc = f"LUNAR on {len(classes)} classes" if self.progress else None
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
