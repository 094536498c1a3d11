"""Peak memory of scoring 100,000 test images against a 20,000-entry dictionary (the grid's memory bound).

    python benchmarks/bench_memory.py [--n-test 100000] [--n-dictionary 20000] [--n-classes 100]

Prints the wall time and the process's peak resident memory (ru_maxrss), inputs included.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from bliss_utils.evaluation.grid import EmbeddingSet, evaluate_grid


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-test", type=int, default=100_000)
    parser.add_argument("--n-dictionary", type=int, default=20_000)
    parser.add_argument("--n-classes", type=int, default=100)
    parser.add_argument("--n-train-per-class", type=int, default=500)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    c, d = args.n_classes, args.dim
    train_labels = np.repeat(np.arange(c), args.n_train_per_class)
    test_labels = rng.integers(0, c, args.n_test)
    centres = rng.normal(size=(c, d))
    data = EmbeddingSet(
        train=unit(centres[train_labels] + 4 * rng.normal(size=(len(train_labels), d))),
        train_labels=train_labels,
        test=unit(centres[test_labels] + 4 * rng.normal(size=(args.n_test, d))),
        test_labels=test_labels,
        class_texts=unit(centres + rng.normal(size=(c, d))),
        dictionary=unit(rng.normal(size=(args.n_dictionary, d))),
    )
    splits = {f"{c // 5}-normal": [list(range(i, i + c // 5)) for i in range(0, c, c // 5)]}
    start = time.perf_counter()
    frame = evaluate_grid(data, splits, methods=("bliss", "biased-clip"), lams=(0.5, 0.75), ks=(5, 10))
    elapsed = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"test {data.test.shape}, dictionary {data.dictionary.shape}, train {data.train.shape}, {len(frame)} rows")
    print(f"wall time {elapsed:.1f} s; peak resident memory {peak_gib:.2f} GiB (inputs included)")


if __name__ == "__main__":
    main()
