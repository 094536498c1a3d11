"""Time the CIFAR-10 9-normal-class protocol (10 trials) on random embeddings of CIFAR shapes.

Compares bliss_utils.evaluation.grid.evaluate_grid against a plain per-class loop written straight from the paper's
equations (bliss_utils.scores._reference), in one run, and prints the ratio and the largest AUROC difference.

    python benchmarks/bench_protocol.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bliss_utils.datasets.splits import class_splits
from bliss_utils.evaluation.grid import EmbeddingSet, evaluate_grid
from bliss_utils.evaluation.metrics import auroc
from bliss_utils.scores._reference import reference_bliss_scores


def cifar_shaped_embeddings(
    seed: int = 0,
    n_train: int = 50_000,
    n_test: int = 10_000,
    n_dictionary: int = 1_850,
    dim: int = 512,
    n_classes: int = 10,
) -> EmbeddingSet:
    """Random unit embeddings with class structure, in CIFAR-10's shapes (float32, as the cache stores them)."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    centres = rng.normal(size=(n_classes, dim))
    train_labels = np.repeat(np.arange(n_classes), n_train // n_classes)
    test_labels = np.repeat(np.arange(n_classes), n_test // n_classes)
    return EmbeddingSet(
        train=unit(centres[train_labels] + 4 * rng.normal(size=(n_train, dim))),
        train_labels=train_labels,
        test=unit(centres[test_labels] + 4 * rng.normal(size=(n_test, dim))),
        test_labels=test_labels,
        class_texts=unit(centres + 2 * rng.normal(size=(n_classes, dim))),
        dictionary=unit(rng.normal(size=(n_dictionary, dim)) + 0.3 * centres[rng.integers(0, n_classes, n_dictionary)]),
        encoder="random",
        dataset="cifar10-shaped",
    )


def run_grid(data: EmbeddingSet, trials: list[list[int]]) -> np.ndarray:
    frame = evaluate_grid(data, {"cifar10-9": trials}, methods=("bliss",), lams=(0.5,), ks=(10,))
    return frame["auroc"].to_numpy() / 100


def run_reference(data: EmbeddingSet, trials: list[list[int]]) -> np.ndarray:
    out = []
    for normal in trials:
        scores = reference_bliss_scores(
            data.train, data.train_labels, data.class_texts, data.dictionary, data.test, normal, k=10, lam=0.5
        )
        out.append(auroc(scores, ~np.isin(data.test_labels, normal)))
    return np.array(out)


def best_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each side; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: the library's choice)")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    data = cifar_shaped_embeddings()
    trials = class_splits("cifar10", 9)
    print(
        f"train {data.train.shape}, test {data.test.shape}, dictionary {data.dictionary.shape}, "
        f"{len(trials)} trials of 9 normal classes, K=10, lam=0.5, float32"
    )
    small = EmbeddingSet(
        data.train[::50],
        data.train_labels[::50],
        data.test[::50],
        data.test_labels[::50],
        data.class_texts,
        data.dictionary,
    )
    (
        run_grid(small, trials),
        run_reference(small, trials),
    )  # warm-up: imports and first-call costs stay out of the timing
    t_grid, auc_grid = best_time(lambda: run_grid(data, trials), args.repeats)
    t_ref, auc_ref = best_time(lambda: run_reference(data, trials), args.repeats)
    print(f"evaluate_grid:        {t_grid:8.2f} s  (mean AUROC {100 * auc_grid.mean():.3f})")
    print(f"plain per-class loop: {t_ref:8.2f} s  (mean AUROC {100 * auc_ref.mean():.3f})")
    print(f"largest AUROC difference over trials: {np.abs(auc_grid - auc_ref).max():.2e}")
    print(f"speed-up: {t_ref / t_grid:.1f}x")


if __name__ == "__main__":
    main()
