"""LUNAR baseline: PyOD's LUNAR (Goodge et al. 2022) with its neighbour search replaced by ``knn.BlockedKNN``.

PyOD's ``LUNAR.fit`` builds a ``sklearn.neighbors.NearestNeighbors`` over the normal images plus as many generated
negatives (about 81,000 points for a CIFAR-10 9-class trial) and queries it for every one of them, the validation
set and the training set again. ``_PyODLUNAR`` keeps PyOD's code for everything (negatives, scaler, network,
training, seeds) and only swaps the index PyOD assigns to ``self.neigh`` for a ``BlockedKNN`` with the same number
of neighbours: same neighbour distances (to float rounding), a symmetric self-search, no repeated queries, and the
GPU when present.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._checks import check_positive_int
from ._scorer import _ImageScorer, _require


def _pyod_lunar_class() -> type:
    """PyOD's LUNAR with ``neigh`` intercepted: a Euclidean NearestNeighbors assigned by fit becomes a BlockedKNN."""
    from pyod.models.lunar import LUNAR as PyODLUNAR
    from sklearn.neighbors import NearestNeighbors

    from .knn import BlockedKNN

    class _PyODLUNAR(PyODLUNAR):
        knn_device: str | None = None

        @property
        def neigh(self) -> Any:
            return self.__dict__["neigh"]

        @neigh.setter
        def neigh(self, value: Any) -> None:
            if isinstance(value, NearestNeighbors):
                euclidean = value.metric == "euclidean" or (value.metric == "minkowski" and value.p == 2)
                if not euclidean or value.metric_params:
                    raise ValueError(f"BlockedKNN is Euclidean only; PyOD asked for metric={value.metric!r}")
                value = BlockedKNN(n_neighbors=value.n_neighbors, device=self.knn_device)
            self.__dict__["neigh"] = value

    return _PyODLUNAR


class LUNAR(_ImageScorer):
    """PyOD's LUNAR on the normal classes' training images (exact blocked neighbour search); score = decision_function.

    Arguments are passed to pyod.models.lunar.LUNAR explicitly (PyOD's defaults otherwise, British ``n_neighbours``),
    with a fresh ``MinMaxScaler()`` per fit. PyOD's version differs from the original LUNAR code (neighbours among
    the negatives too, plain L2, WEIGHT network by default, k=5): see the README. ``device`` (None: CUDA when
    available) runs the neighbour search; PyOD puts its network on CUDA whenever it is available.
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
                model_type=self.model_type, n_neighbours=self.n_neighbours, negative_sampling=self.negative_sampling,
                val_size=self.val_size, scaler=MinMaxScaler(), epsilon=self.epsilon, proportion=self.proportion,
                n_epochs=self.n_epochs, lr=self.lr, wd=self.wd, random_state=self.random_state,
            )  # fmt: skip
            model.knn_device = self.device
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
