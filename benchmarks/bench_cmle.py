"""Training cost of SSD+CMLE's adapter: seconds per optimiser step at d=512, batch 128, with and without the LLE term.

    python benchmarks/bench_cmle.py [--n-train 2560] [--dim 512] [--epochs 5] [--threads 2]

A step's cost is the training loop's wall time (recorded by the fitted model) / its steps; the one-off setup
(pseudo-captions, caption mixture, LLE weights, SSD) is the rest of the fit's time. Prints the machine and the
projected training time of one 80-epoch trial with 5,000 and 45,000 normal images (CIFAR-10 with 1 and 9 normal
classes).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
from bench_encoders import cpu_name

from bliss_utils.scores.cmle import SSDCMLE


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def timed_fit(model: SSDCMLE, z: np.ndarray, labels: np.ndarray, words: np.ndarray) -> tuple[float, Any]:
    """Wall time of fitting one normal set, and the fitted adapter model."""
    start = time.perf_counter()
    model.fit(z, labels, None, words).score_samples(z[:10], [0])
    return time.perf_counter() - start, model.models_[frozenset({0})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=2560)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, args.dim))
    z = unit(centres[rng.integers(0, 10, args.n_train)] + 3 * rng.normal(size=(args.n_train, args.dim)))
    words = unit(rng.normal(size=(1000, args.dim)))
    labels = np.zeros(args.n_train, dtype=np.int64)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs visible, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    print(f"n_train={args.n_train} dim={args.dim} batch={args.batch_size} epochs={args.epochs}")
    # warm-up: first calls pay imports and allocator growth, which would be charged to the setup otherwise
    timed_fit(SSDCMLE(epochs=1, batch_size=args.batch_size, torch_threads=args.threads), z, labels, words)
    per_steps = []
    for lle_weight in (0.0, 1.0):
        common = {"batch_size": args.batch_size, "lle_weight": lle_weight, "torch_threads": args.threads}
        total, fitted = timed_fit(SSDCMLE(epochs=args.epochs, **common), z, labels, words)
        per_step = fitted.train_seconds / fitted.steps
        per_steps.append(per_step)
        setup = total - fitted.train_seconds
        trial = {n: 80 * -(-n // args.batch_size) * per_step / 60 for n in (5000, 45000)}
        print(
            f"lle_weight={lle_weight:g}: setup {setup:.1f} s, {per_step:.3f} s/step; 80 epochs: "
            f"{trial[5000]:.0f} min for 5,000 images, {trial[45000]:.0f} min for 45,000"
        )
    print(f"the LLE term makes a step {per_steps[1] / per_steps[0]:.1f}x as long (same run)")


if __name__ == "__main__":
    main()
