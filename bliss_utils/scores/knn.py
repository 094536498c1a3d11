"""Exact Euclidean k-nearest neighbours by blocked matrix products in torch (all CPU threads, or the GPU).

``BlockedKNN`` implements the part of ``sklearn.neighbors.NearestNeighbors`` that PyOD's LUNAR uses (``fit`` and
``kneighbors``), for LUNAR's search of about 81,000 points (normal images plus as many generated negatives) in 768
dimensions. Three things make it faster than a plain brute-force search while returning the same neighbours:

- candidates come from float32 squared distances ||q||^2 + ||y||^2 - 2 q.y on data centred at the index mean (one
  matrix product per block); the ``k + MARGIN`` best candidates then get their distances recomputed in float64 from
  the differences themselves, and the k smallest are returned. The neighbour set can only differ from an exact
  float64 search where two distances lie within float32 rounding of each other, and then the distances agree to
  that rounding;
- queries that are rows of the index (LUNAR queries its own training points) are answered by one symmetric
  self-search that computes every pair once, half the products of querying the rows one by one;
- every answered row is remembered by a digest of its bytes, so a row asked for again (LUNAR's training scores
  re-query its training points) costs a dictionary look-up.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from bliss_utils._checks import as_embeddings, check_positive_int, torch_device

# Extra float32 candidates per row whose distances are recomputed in float64 (absorbs float32 rounding at the k-th).
MARGIN = 8
# Bytes one float32 (query block x index block) distance block may take.
BLOCK_BYTES = 64 * 2**20
# Remembered query rows beyond the index's own; past this the memo is cleared (bounds memory over many test sets).
MAX_MEMO_ROWS = 200_000


def _digests(x: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x]


class BlockedKNN:
    """Exact Euclidean kNN (``fit`` / ``kneighbors`` as in scikit-learn); device None: CUDA, then MPS, then the CPU."""

    def __init__(self, n_neighbors: int = 5, device: str | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.device = device

    def fit(self, X: Any, y: Any = None) -> BlockedKNN:
        """Index the rows of ``X`` (y is ignored)."""
        import torch

        check_positive_int(self.n_neighbors, "n_neighbors")
        x = as_embeddings(X, "X")
        self.device_ = torch_device(self.device)
        self.fit_X_ = x  # as given (LUNAR's float32): rows are upcast to float64 where distances are computed
        self.n_samples_fit_ = x.shape[0]
        self.center_ = x.mean(axis=0, dtype=np.float64)
        self._index = torch.from_numpy((x - self.center_).astype(np.float32)).to(self.device_)
        self._index_sq = (self._index * self._index).sum(dim=1)
        self._position = {key: i for i, key in enumerate(_digests(x))}
        self._memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._self: tuple[np.ndarray, np.ndarray] | None = None
        return self

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
        if hit.any():
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
        """k nearest indexed rows of every row of ``q`` (None: of every indexed row, by a symmetric self-search)."""
        import torch

        n = self.n_samples_fit_
        width = min(n, k + MARGIN)
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
        return self._exact(q, best_idx.cpu().numpy(), k)

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
