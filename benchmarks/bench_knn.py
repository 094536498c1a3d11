"""Exact nearest neighbours, ours against the libraries, at CIFAR-10 9-class scale, in one run.

Three parts, each on generated unit-norm float32 data (clustered as bench_baselines.py's: a random centre per class
plus isotropic noise), dim 768:

1. dn2: DN2's use. 10 classes x 5,000 training images, 10,000 test images, k=5. One normal set of 9 classes
   (45,000 images): ``DN2`` against PyOD's ``KNN(method="mean")``, scikit-learn's ``NearestNeighbors`` and faiss's
   ``IndexFlatL2``. Then a cifar10-9 style trial sequence (``--trials`` trials on one test set, class t left out in
   trial t): ``DN2`` fitted once on all 50,000 images (its per-class lists are reused across the trials) against one
   scikit-learn search per trial over that trial's 45,000 images. PyOD's KNN costs the same every trial, so its
   sequence is its single time x trials (not rerun).
2. lunar-knn: LUNAR's use. The index LUNAR builds for a CIFAR-10 9-class trial (PyOD's split and MinMaxScaler of
   45,000 images, plus as many MIXED negatives: about 81,000 rows), queried with itself at k+1 = 6:
   ``BlockedKNN`` on the CPU against faiss's exact ``IndexFlatL2``. Both are checked against float64 brute force on
   a sample of rows.
3. threads: tiny LUNAR fits on 1 and 2 torch threads (a few image counts), on an otherwise idle machine and beside
   a process running matrix products on every core (as a parallel test run does), to place the one-thread rule.

Prints times, ratios, the largest score/distance differences, and the machine.

    python benchmarks/bench_knn.py                  # everything, full scale
    python benchmarks/bench_knn.py --scale 0.2      # 20% of every size
    python benchmarks/bench_knn.py --only dn2
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch


def machine() -> str:
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.platform()}; {platform.processor() or platform.machine()}; {os.cpu_count()} CPU cores; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {cuda}"
    )


def timed(f):
    start = time.perf_counter()
    out = f()
    return out, time.perf_counter() - start


def unit_data(n_per_class: int, n_classes: int, n_test: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(train, train_labels, test) float32 unit vectors; test has n_test rows spread over 10 classes."""
    rng = np.random.default_rng(seed)
    d = 768
    centres = rng.normal(size=(10, d))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    test_labels = np.arange(n_test) % 10
    out = []
    for lab in (labels, test_labels):
        a = centres[lab] + 3.0 * rng.normal(size=(lab.size, d))
        out.append((a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32))
    return out[0], labels, out[1]


def per_class_library_dn2(train, labels, q, normal_sets, k: int = 5) -> list[np.ndarray]:
    """DN2 with DN2's reuse but scikit-learn's search: the k nearest distances of each class once, merged per set."""
    from sklearn.neighbors import NearestNeighbors

    nearest = {}
    out = []
    for normal in normal_sets:
        for c in normal:
            if c not in nearest:
                z = train[labels == c]
                nearest[c] = NearestNeighbors(n_neighbors=min(k, len(z))).fit(z).kneighbors(q)[0]
        d = np.concatenate([nearest[c] for c in normal], axis=1)
        out.append(np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1))
    return out


def bench_dn2(scale: float, n_trials: int) -> None:
    import faiss
    from pyod.models.knn import KNN
    from sklearn.neighbors import NearestNeighbors

    from bliss_utils.scores.baselines import DN2

    k = 5
    train, labels, test = unit_data(max(20, int(5000 * scale)), 10, max(20, int(10000 * scale)))
    nine = labels != 9
    print(f"\n== DN2: train {train[nine].shape} of 9 classes (of {train.shape} of 10), test {test.shape}, k={k}")
    z, q = train[nine], test

    ours, t_ours = timed(lambda: DN2(k=k).fit(z, labels[nine]).score_samples(q))
    print(f"DN2 ours (fit + score): {t_ours:.2f} s")
    pyod, t_pyod = timed(lambda: KNN(n_neighbors=k, method="mean").fit(z).decision_function(q))
    print(
        f"PyOD KNN(method='mean') (fit scores its own training set too): {t_pyod:.2f} s; "
        f"ours is {t_pyod / t_ours:.2f}x faster; max |score diff| {np.abs(pyod - ours).max():.2e}"
    )
    sk, t_sk = timed(lambda: NearestNeighbors(n_neighbors=k).fit(z).kneighbors(q)[0].mean(axis=1))
    print(
        f"scikit-learn NearestNeighbors (fit + kneighbors): {t_sk:.2f} s; ratio sklearn/ours {t_sk / t_ours:.2f}; "
        f"max |score diff| {np.abs(sk - ours).max():.2e}"
    )

    def flat() -> np.ndarray:
        index = faiss.IndexFlatL2(z.shape[1])
        index.add(z)
        return np.sqrt(np.maximum(index.search(q, k)[0].astype(np.float64), 0)).mean(axis=1)

    fa, t_fa = timed(flat)
    print(
        f"faiss IndexFlatL2 (float32 distances): {t_fa:.2f} s; ratio faiss/ours {t_fa / t_ours:.2f}; "
        f"max |score diff| {np.abs(fa - ours).max():.2e}"
    )

    # a cifar10-9 style sequence on one test set: trial t leaves class t out
    print(f"-- trial sequence: {n_trials} cifar10-9 trials (class t left out), one test set")

    def ours_trials() -> list[np.ndarray]:
        scorer = DN2(k=k).fit(train, labels)
        return [scorer.score_samples(q, [c for c in range(10) if c != t]) for t in range(n_trials)]

    def sk_trials() -> list[np.ndarray]:
        out = []
        for t in range(n_trials):
            keep = labels != t
            out.append(NearestNeighbors(n_neighbors=k).fit(train[keep]).kneighbors(q)[0].mean(axis=1))
        return out

    sets = [[c for c in range(10) if c != t] for t in range(n_trials)]
    a, t_a = timed(ours_trials)
    b, t_b = timed(sk_trials)
    c, t_c = timed(lambda: per_class_library_dn2(train, labels, q, sets, k))
    diff = max(np.abs(x - y).max() for x, y in zip(a, b, strict=True))
    diff_c = max(np.abs(x - y).max() for x, y in zip(a, c, strict=True))
    print(
        f"DN2 ours, one fit, {n_trials} trials: {t_a:.2f} s\n"
        f"scikit-learn, one search per trial: {t_b:.2f} s (ratio {t_b / t_a:.2f}); max |score diff| {diff:.2e}\n"
        f"scikit-learn per class, merged per trial (DN2's reuse, the library's search): {t_c:.2f} s "
        f"(ratio {t_c / t_a:.2f}); max |score diff| {diff_c:.2e}\n"
        f"PyOD KNN: about {n_trials * t_pyod:.0f} s ({n_trials} x its single time, not rerun)"
    )


def lunar_index(scale: float) -> np.ndarray:
    """The index PyOD's LUNAR (and ours) builds from a 9-class training set: scaled normals + MIXED negatives."""
    from pyod.models.lunar import LUNAR as PyODLUNAR
    from sklearn.preprocessing import MinMaxScaler

    from bliss_utils.scores import lunar

    train, _, _ = unit_data(max(20, int(5000 * scale)), 9, 10)
    with torch.random.fork_rng(devices=[]):
        train_x, _, neg_train, _ = lunar._split_and_negatives(PyODLUNAR(scaler=MinMaxScaler(), random_state=0), train)
    return np.vstack((train_x, neg_train))


def bench_lunar_knn(scale: float, n_check: int = 500) -> None:
    import faiss

    from bliss_utils.scores import knn
    from bliss_utils.scores.knn import BlockedKNN

    k = 6
    index = lunar_index(scale)
    print(f"\n== LUNAR's search: index {index.shape} ({index.dtype}, normals + negatives), queries = the index, k={k}")
    (d_ours, i_ours), t_ours = timed(
        lambda: BlockedKNN(n_neighbors=k, device="cpu", backend="torch").fit(index).kneighbors(index, k)
    )
    print(f"BlockedKNN torch (CPU, symmetric self-search, float64 recheck of k+{knn.MARGIN}): {t_ours:.1f} s")
    x32 = np.ascontiguousarray(index, dtype=np.float32)

    def flat() -> tuple[np.ndarray, np.ndarray]:
        flat_index = faiss.IndexFlatL2(x32.shape[1])
        flat_index.add(x32)
        return flat_index.search(x32, k)

    (d2_fa, i_fa), t_fa = timed(flat)
    d_fa = np.sqrt(np.maximum(d2_fa.astype(np.float64), 0))
    print(f"faiss IndexFlatL2 as shipped (float32 distances): {t_fa:.1f} s; ratio faiss/torch {t_fa / t_ours:.2f}")
    (d_new, i_new), t_new = timed(
        lambda: BlockedKNN(n_neighbors=k, device="cpu", backend="faiss").fit(index).kneighbors(index, k)
    )
    print(
        f"BlockedKNN faiss (IndexFlatL2 candidates k+{knn.MARGIN} on centred data, float64 recheck): {t_new:.1f} s; "
        f"ratio faiss/torch {t_new / t_ours:.2f}"
    )

    def recomputed(idx: np.ndarray) -> np.ndarray:  # the distances the returned indices really have, in float64
        out = np.empty(idx.shape)
        for a in range(0, idx.shape[0], 2000):
            diff = index[a : a + 2000, None, :].astype(np.float64) - index[idx[a : a + 2000]].astype(np.float64)
            out[a : a + 2000] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        return out

    for name, d, i in [("faiss as shipped", d_fa, i_fa), ("BlockedKNN faiss", d_new, i_new)]:
        same = np.all(np.sort(i_ours, axis=1) == np.sort(i, axis=1), axis=1)
        print(
            f"  {name} vs BlockedKNN torch: same neighbour sets in {same.mean() * 100:.3f}% of rows, "
            f"distances bit-identical {np.array_equal(d, d_ours)}, max |difference| {np.abs(d - d_ours).max():.2e}; "
            f"max |distance - float64 recomputed| {np.abs(d - recomputed(i)).max():.2e} "
            f"(torch: {np.abs(d_ours - recomputed(i_ours)).max():.2e}; distances range 0 .. {d_ours.max():.3g})"
        )
    # float64 brute force on a sample of rows: the true k nearest
    rng = np.random.default_rng(0)
    rows = rng.choice(index.shape[0], size=min(n_check, index.shape[0]), replace=False)
    x64 = index.astype(np.float64)
    sq = (x64 * x64).sum(axis=1)
    true = np.empty((rows.size, k))
    for a in range(0, rows.size, 100):
        r = rows[a : a + 100]
        d2 = sq[r, None] + sq[None, :] - 2 * x64[r] @ x64.T
        idx = np.argpartition(d2, k + 4, axis=1)[:, : k + 4]  # a few spare candidates, rechecked exactly
        diff = x64[r, None, :] - x64[idx]
        true[a : a + 100] = np.sort(np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)), axis=1)[:, :k]
    print(
        f"  against float64 brute force on {rows.size} rows: max |distance error| BlockedKNN "
        f"{np.abs(d_ours[rows] - true).max():.2e} (torch), {np.abs(d_new[rows] - true).max():.2e} (faiss); faiss as "
        f"shipped {np.abs(d_fa[rows] - true).max():.2e}"
    )


def _busy() -> None:  # a process keeping every core busy with matrix products, as a parallel test run does
    a = torch.rand(1024, 1024)
    while True:
        a = torch.tanh(a @ a)


def bench_threads(sizes: list[int], n_epochs: int = 20, busy: bool = False) -> None:
    import multiprocessing

    from bliss_utils.scores.lunar import LUNAR

    note = ", beside a process running matrix products on every core" if busy else ""
    print(f"\n== LUNAR fit + score on 1 and 2 torch threads ({n_epochs} epochs, d=768, 100 test images{note})")
    hog = multiprocessing.get_context("spawn").Process(target=_busy, daemon=True) if busy else None
    if hog is not None:
        hog.start()
    try:
        _thread_rows(LUNAR, sizes, n_epochs)
    finally:
        if hog is not None:
            hog.terminate()
            hog.join()


def _thread_rows(LUNAR: type, sizes: list[int], n_epochs: int) -> None:
    warm, warm_labels, warm_test = unit_data(10, 9, 10)
    for threads in (1, 2):  # imports and first-call set-up, outside the timings
        LUNAR(n_epochs=2, torch_threads=threads, progress=False).fit(warm, warm_labels).score_samples(warm_test)
    for n in sizes:
        train, labels, test = unit_data(max(1, n // 9), 9, 100)
        row = []
        scores = []
        for threads in (1, 2):
            scorer = LUNAR(n_epochs=n_epochs, torch_threads=threads, progress=False).fit(train, labels)
            s, t = timed(lambda: scorer.score_samples(test))  # noqa: B023 (called here)
            scores.append(s)
            row.append(t)
        print(
            f"  {train.shape[0]:>6} images: 1 thread {row[0]:.2f} s, 2 threads {row[1]:.2f} s "
            f"(2 threads / 1 thread {row[1] / row[0]:.2f}); scores bit-identical: {np.array_equal(*scores)}, "
            f"max diff {np.abs(scores[0] - scores[1]).max():.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the CIFAR-10 9-class sizes")
    parser.add_argument("--trials", type=int, default=3, help="cifar10-9 trials in DN2's sequence")
    parser.add_argument("--only", choices=["dn2", "lunar-knn", "threads"])
    parser.add_argument(
        "--thread-sizes", default="45,180,450,1000,2000,5000", help="image counts of the tiny LUNAR fits (comma list)"
    )
    args = parser.parse_args()
    import faiss

    print(f"machine: {machine()}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads")
    print(f"scale {args.scale}")
    start = time.perf_counter()
    if args.only in (None, "dn2"):
        bench_dn2(args.scale, args.trials)
    if args.only in (None, "lunar-knn"):
        bench_lunar_knn(args.scale)
    if args.only in (None, "threads"):
        bench_threads([int(s) for s in args.thread_sizes.split(",")])
        bench_threads([int(s) for s in args.thread_sizes.split(",")], busy=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
