"""BlockedKNN: the same neighbours and distances as scikit-learn's exact search, self-queries and repeats included,
with faiss's candidates (the CPU default) and with the blocked torch search (kept for the GPU)."""

import pickle

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from bliss_utils.scores import knn
from bliss_utils.scores.knn import BlockedKNN


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return rng.random((300, 12)).astype(np.float32), rng.random((40, 12)).astype(np.float32)


@pytest.mark.parametrize(
    "backend, block_bytes",
    [("faiss", knn.BLOCK_BYTES), ("torch", knn.BLOCK_BYTES), ("torch", 4 * 40**2)],  # torch: one block, 40-row blocks
)
def test_matches_sklearn_on_queries_self_queries_and_repeats(points, monkeypatch, backend, block_bytes):
    monkeypatch.setattr(knn, "BLOCK_BYTES", block_bytes)
    index, queries = points
    ours = BlockedKNN(n_neighbors=6, device="cpu", backend=backend).fit(index)
    assert ours.backend_ == backend
    ref = NearestNeighbors(n_neighbors=6).fit(index)
    # LUNAR's order: half the index with k+1 (self-search), the other half, new points, then everything again
    for q, k in [(index[:150], 6), (index[150:], 5), (queries, 5), (np.vstack([index, queries]), 5), (queries, 3)]:
        d, i = ours.kneighbors(q, k)
        d_ref, _ = ref.kneighbors(q, k)
        np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-6)
        # the returned indices point at rows at the returned distances
        np.testing.assert_allclose(np.linalg.norm(q[:, None].astype(np.float64) - index[i], axis=2), d, rtol=1e-12)
        assert np.all(np.diff(d, axis=1) >= 0)
    assert ours._self is not None and ours.kneighbors(index[:5], 6)[0][:, 0].max() == 0.0  # a row is its own nearest


def test_errors(points):
    index, queries = points
    with pytest.raises(ValueError, match="not fitted"):
        BlockedKNN().kneighbors(queries)
    ours = BlockedKNN().fit(index)
    with pytest.raises(ValueError, match="exceeds the 300 indexed rows"):
        ours.kneighbors(queries, 301)
    with pytest.raises(ValueError, match="12"):
        ours.kneighbors(queries[:, :5])
    with pytest.raises(ValueError, match="n_neighbors must be a positive integer"):
        BlockedKNN(n_neighbors=0).fit(index)
    with pytest.raises(ValueError, match="device must be None or a torch device"):
        BlockedKNN(device="gpu0").fit(index)


def test_cpu_default_is_faiss_and_gives_the_torch_search_distances(points):
    index, queries = points
    fast = BlockedKNN(n_neighbors=6, device="cpu").fit(index)
    slow = BlockedKNN(n_neighbors=6, device="cpu", backend="torch").fit(index)
    assert fast.backend_ == "faiss"
    for q in (index, queries):
        np.testing.assert_array_equal(fast.kneighbors(q)[0], slow.kneighbors(q)[0])
    with pytest.raises(ValueError, match="backend must be one of"):
        BlockedKNN(backend="sklearn").fit(index)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_pickles_and_answers_the_same(points, backend):
    index, queries = points
    ours = BlockedKNN(n_neighbors=5, device="cpu", backend=backend).fit(index)
    before = ours.kneighbors(queries)
    again = pickle.loads(pickle.dumps(ours))
    again._memo = {}  # answered afresh, not from the memo
    after = again.kneighbors(queries)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
