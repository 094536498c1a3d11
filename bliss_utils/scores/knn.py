"""Exact Euclidean k-nearest neighbours for LUNAR: faiss's exact flat search on the CPU, torch products on a GPU.

``BlockedKNN`` implements the part of ``sklearn.neighbors.NearestNeighbors`` that PyOD's LUNAR uses (``fit`` and
``kneighbors``), for LUNAR's search of about 81,000 points (normal images plus as many generated negatives) in 768
dimensions. The candidates come from a library on the CPU; what this file adds is what LUNAR needs beyond it:

- candidates: the ``k + MARGIN`` nearest by float32 squared distances on data centred at the index mean, from
  faiss's exact ``IndexFlatL2`` on the CPU (``benchmarks/bench_knn.py``: faster than the torch search below at
  CIFAR-10 9-class scale, same neighbours), or, on CUDA/MPS (or with ``backend="torch"``), from blocked torch
  matrix products with one symmetric self-search when the queries are the index itself;
- exact distances: the candidates' distances are recomputed in float64 from the differences themselves and the k
  smallest are returned (float32 distances ||q||^2 + ||y||^2 - 2 q.y are off by ~1e-2 for a row's own match). The
  neighbour set can only differ from an exact float64 search where two distances lie within float32 rounding of
  each other, and then the distances agree to that rounding; LUNAR reads only the distances;
- every answered row is remembered by a digest of its bytes, so a row asked for again (LUNAR's training scores
  re-query its training points) costs a dictionary look-up, and queries that are rows of the index are answered
  from one search of the whole index.

faiss-cpu is needed on the CPU path (``bliss_utils._checks.require``); its search runs on as many threads as torch.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from bliss_utils._checks import as_embeddings, check_positive_int, require, torch_device

# Extra float32 candidates per row whose distances are recomputed in float64 (absorbs float32 rounding at the k-th).
MARGIN = 8
# Bytes one float32 (query block x index block) distance block may take.
BLOCK_BYTES = 64 * 2**20
# Remembered query rows beyond the index's own; past this the memo is cleared (bounds memory over many test sets).
MAX_MEMO_ROWS = 200_000


def _digests(x: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x]


BACKENDS = (None, "faiss", "torch")


class BlockedKNN:
    """Exact Euclidean kNN (``fit`` / ``kneighbors`` as in scikit-learn); device None: CUDA, then MPS, then the CPU.

    ``backend`` picks the candidate search: None: faiss on the CPU, torch on CUDA/MPS; "faiss" (CPU only) or
    "torch" (the blocked torch search on any device, kept for the GPU and for benchmarks/bench_knn.py).
    """

    def __init__(self, n_neighbors: int = 5, device: str | None = None, backend: str | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.device = device
        self.backend = backend

    def fit(self, X: Any, y: Any = None) -> BlockedKNN:
        """Index the rows of ``X`` (y is ignored)."""
        import torch

        check_positive_int(self.n_neighbors, "n_neighbors")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {self.backend!r}")
        x = as_embeddings(X, "X")
        self.device_ = torch_device(self.device)
        if self.backend == "faiss" and self.device_.type != "cpu":
            raise ValueError(f"backend='faiss' searches on the CPU; got device {self.device_}")
        self.backend_ = self.backend or ("faiss" if self.device_.type == "cpu" else "torch")
        self.fit_X_ = x  # as given (LUNAR's float32): rows are upcast to float64 where distances are computed
        self.n_samples_fit_ = x.shape[0]
        self.center_ = x.mean(axis=0, dtype=np.float64)
        if self.backend_ == "faiss":
            self._index = self._faiss_index()
        else:
            centred = np.ascontiguousarray(x - self.center_, dtype=np.float32)
            self._index = torch.from_numpy(centred).to(self.device_)
            self._index_sq = (self._index * self._index).sum(dim=1)
        self._position = {key: i for i, key in enumerate(_digests(x))}
        self._memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._self: tuple[np.ndarray, np.ndarray] | None = None
        return self

    def __getstate__(self) -> dict[str, Any]:
        # a faiss index does not pickle; it is rebuilt from fit_X_ on loading (the same float32 rows)
        state = self.__dict__.copy()
        if state.get("backend_") == "faiss":
            state["_index"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if state.get("backend_") == "faiss":
            self._index = self._faiss_index()

    def _faiss_index(self) -> Any:
        """faiss's exact flat index over the centred float32 rows (built at fit, and again when unpickled)."""
        faiss = require("faiss", "faiss-cpu", "LUNAR's neighbour search on the CPU")
        index = faiss.IndexFlatL2(self.fit_X_.shape[1])
        index.add(np.ascontiguousarray(self.fit_X_ - self.center_, dtype=np.float32))
        return index

    def kneighbors(
        self, X: Any, n_neighbors: int | None = None, return_distance: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Distances (float64, increasing) and indices of the ``n_neighbors`` nearest indexed rows of each row of X."""
        if not hasattr(self, "fit_X_"):
            raise ValueError("this BlockedKNN is not fitted yet: call fit(X) first")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        check_positive_int(k, "n_neighbors")
        if k > self.n_samples_fit_:
            raise ValueError(f"n_neighbors={k} exceeds the {self.n_samples_fit_} indexed rows")
        q = as_embeddings(X, "X")
        if q.shape[1] != self.fit_X_.shape[1]:
            raise ValueError(f"X has {q.shape[1]} features but the index was fitted on {self.fit_X_.shape[1]}")
        # a row is recognised by its bytes: LUNAR queries its index in the index's own dtype (float32)
        keys = _digests(q)
        dist = np.empty((q.shape[0], k))
        idx = np.empty((q.shape[0], k), dtype=np.int64)
        in_index = np.array([self._position.get(key, -1) for key in keys])
        hit = in_index >= 0
        # a digest match is confirmed on the values (a collision would otherwise go unnoticed)
        hit[hit] = np.all(q[hit].astype(np.float64) == self.fit_X_[in_index[hit]], axis=1)
        if hit.sum() * 4 >= self.n_samples_fit_ and (self._self is None or self._self[0].shape[1] < k):
            self._self = self._search(None, k)
        todo = []
        for i, key in enumerate(keys):
            if hit[i] and self._self is not None and self._self[0].shape[1] >= k:
                dist[i], idx[i] = self._self[0][in_index[i], :k], self._self[1][in_index[i], :k]
            elif key in self._memo and self._memo[key][0].shape[0] >= k:
                dist[i], idx[i] = self._memo[key][0][:k], self._memo[key][1][:k]
            else:
                todo.append(i)
        if todo:
            rows = np.asarray(todo)
            d_new, i_new = self._search(q[rows].astype(np.float64), k)
            dist[rows], idx[rows] = d_new, i_new
            if len(self._memo) + rows.size > MAX_MEMO_ROWS:
                self._memo = {}
            for j, r in enumerate(rows):
                self._memo[keys[r]] = (d_new[j], i_new[j])
        return (dist, idx) if return_distance else idx

    def _search(self, q: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest indexed rows of every row of ``q`` (None: of every indexed row)."""
        width = min(self.n_samples_fit_, k + MARGIN)
        if self.backend_ == "faiss":
            import faiss
            import torch

            queries = self._index.reconstruct_n(0, self.n_samples_fit_) if q is None else q - self.center_
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(torch.get_num_threads())  # as many threads as torch (LUNAR's one-thread rule)
            try:
                _, candidates = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), width)
            finally:
                faiss.omp_set_num_threads(before)
        else:
            candidates = self._torch_candidates(q, width)
        return self._exact(q, candidates, k)

    def _torch_candidates(self, q: np.ndarray | None, width: int) -> np.ndarray:
        """The ``width`` nearest candidates by blocked torch products (None: a symmetric self-search)."""
        import torch

        n = self.n_samples_fit_
        queries = self._index if q is None else torch.from_numpy((q - self.center_).astype(np.float32))
        queries = queries.to(self.device_)
        queries_sq = (queries * queries).sum(dim=1)
        m = queries.shape[0]
        best = torch.full((m, width), torch.inf, device=self.device_)
        best_idx = torch.zeros((m, width), dtype=torch.int64, device=self.device_)
        block = max(width, int(np.sqrt(BLOCK_BYTES / 4)))

        def merge(rows: slice, vals: torch.Tensor, pos: torch.Tensor) -> None:
            vals, which = torch.topk(torch.cat([best[rows], vals], dim=1), width, dim=1, largest=False)
            best[rows] = vals
            best_idx[rows] = torch.gather(torch.cat([best_idx[rows], pos], dim=1), 1, which)

        for a in range(0, m, block):
            rows = slice(a, min(a + block, m))
            # symmetric self-search: block pairs (a, b) with b >= a, each used for both sides
            for b in range(a if q is None else 0, n, block):
                cols = slice(b, min(b + block, n))
                # ||y||^2 - 2 q.y in one fused product ranks a row's candidates like ||q - y||^2; adding
                # ||q||^2 to the few kept makes every running best a squared distance
                d = torch.addmm(self._index_sq[None, cols], queries[rows], self._index[cols].T, alpha=-2.0)
                vals, pos = torch.topk(d, min(width, d.shape[1]), dim=1, largest=False)
                merge(rows, vals + queries_sq[rows, None], pos + b)
                if q is None and b != a:
                    d += queries_sq[rows, None]  # squared distances: the columns rank their rows by them too
                    vals, pos = torch.topk(d, min(width, d.shape[0]), dim=0, largest=False)
                    merge(cols, vals.T, pos.T + a)
        return best_idx.cpu().numpy()

    def _exact(self, q: np.ndarray | None, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Recompute the candidates' distances in float64 from the differences; keep the k smallest, increasing."""
        queries = self.fit_X_ if q is None else q
        dist = np.empty(candidates.shape)
        step = max(1, (32 * 2**20) // (candidates.shape[1] * queries.shape[1] * 8))
        for a in range(0, queries.shape[0], step):
            rows = queries[a : a + step, None, :].astype(np.float64, copy=False)  # new queries are float64 already
            diff = rows - self.fit_X_[candidates[a : a + step]].astype(np.float64, copy=False)
            dist[a : a + step] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, order, axis=1), np.take_along_axis(candidates, order, axis=1)
