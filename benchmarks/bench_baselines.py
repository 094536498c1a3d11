"""Time the library's LUNAR, GMM and DN2 against ours at CIFAR-10 9-class scale, in one run, and print the ratios.

Data: generated clustered unit vectors (9 normal classes x 5,000 training images, 10,000 test images of 10 classes,
dim 768), each class a random centre plus isotropic noise, so that classes overlap as real embeddings do.
Library: PyOD's LUNAR (scikit-learn neighbour search) and scikit-learn's GaussianMixture from the same class
initialisation. Ours: bliss_utils.scores.baselines.LUNAR and GMM. Prints each time, the ratio and the largest score
difference, and the machine.

    python benchmarks/bench_baselines.py                     # full scale (PyOD's LUNAR takes many minutes)
    python benchmarks/bench_baselines.py --scale 0.2          # 20% of the images
    python benchmarks/bench_baselines.py --only lunar --skip-library
    python benchmarks/bench_baselines.py --only lunar-ties --scale 0.05
    python benchmarks/bench_baselines.py --only lunar-epochs  # LUNAR's epochs with and without reuse_freed_memory
    python benchmarks/bench_baselines.py --only dn2           # DN2 against PyOD's KNN(method="mean")
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import numpy as np
import torch
from bench_encoders import machine


def make_data(scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, train_labels, test): 9 classes x 5,000 x scale training rows, 10,000 x scale test rows of 10 classes."""
    rng = np.random.default_rng(seed)
    d, n_train, n_test = 768, max(20, int(5000 * scale)), max(20, int(1000 * scale))
    centres = rng.normal(size=(10, d))
    labels = np.repeat(np.arange(9), n_train)
    test_labels = np.repeat(np.arange(10), n_test)
    train = centres[labels] + 3.0 * rng.normal(size=(labels.size, d))
    test = centres[test_labels] + 3.0 * rng.normal(size=(test_labels.size, d))
    unit = [(a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32) for a in (train, test)]
    return unit[0], labels, unit[1]


def _sym(a: np.ndarray) -> np.ndarray:
    # scikit-learn checks the initial precisions for exact symmetry, which a computed inverse misses by rounding
    return (a + a.T) / 2


def timed(f):
    start = time.perf_counter()
    out = f()
    return out, time.perf_counter() - start


def bench_lunar(train, labels, test, skip_library: bool) -> None:
    from pyod.models.lunar import LUNAR as PyODLUNAR
    from sklearn.preprocessing import MinMaxScaler

    from bliss_utils.scores.baselines import LUNAR

    scorer = LUNAR().fit(train, labels)
    model, t_fit = timed(lambda: scorer._model(scorer._normal(None)))  # the fit itself (the grid fits lazily too)
    ours, t_ours = timed(lambda: scorer.score_samples(test))
    t_ours += t_fit
    val = np.asarray(model.val_scores_)
    print(
        f"LUNAR ours: {t_ours:.1f} s (fit {t_fit:.1f} s on {train.shape[0]} images + as many negatives, "
        f"score {test.shape[0]}); "
        f"best epoch {model.best_epoch_} of {val.size}, validation AUROC {val.max():.6f}, reached (to 1e-9) by "
        f"{int(np.sum(val >= val.max() - 1e-9))} epochs"
    )
    if skip_library:
        return
    # PyOD gets exactly the arrays ours fitted and scored (ours L2-normalises its inputs, which moves float32 ulps)
    z, q = scorer.train_.astype(np.float32), scorer._prepare(test).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        lib, t_lib = timed(lambda: PyODLUNAR(scaler=MinMaxScaler(), random_state=0).fit(z).decision_function(q))
    print(
        f"LUNAR PyOD: {t_lib:.1f} s; ratio {t_lib / t_ours:.2f}x; largest |score difference| "
        f"{np.abs(lib - ours).max():.2e} (scores range {lib.min():.3g} .. {lib.max():.3g})"
    )


def lunar_ties(train, test) -> None:
    """PyOD's LUNAR fitted twice on inputs one float32 ulp apart: which epoch it keeps, and how far the scores move."""
    from pyod.models.lunar import LUNAR as PyODLUNAR
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import MinMaxScaler

    from bliss_utils._checks import l2_normalize
    from bliss_utils.scores import lunar

    # our fit with scikit-learn's search is PyOD's fit bit for bit (tests/test_baselines.py checks it), and it
    # records the validation AUROC of every epoch, which PyOD keeps to itself
    lunar._neighbour_index = lambda k, device: NearestNeighbors(n_neighbors=k)
    moved = l2_normalize(train, "train").astype(np.float32)  # what an L2-normalising caller hands PyOD
    print(
        f"LUNAR ties: {int(np.any(moved != train, axis=1).sum())} of {len(train)} rows moved by re-normalising, "
        f"by at most {np.abs(moved - train).max():.1e}"
    )
    scores = []
    for name, z in [("as generated", train), ("re-normalised", moved)]:
        with torch.random.fork_rng(devices=[]):
            model = lunar.fast_fit(PyODLUNAR(scaler=MinMaxScaler(), random_state=0), z)
            scores.append(model.decision_function(test))
        val = np.asarray(model.val_scores_)
        print(
            f"  {name}: best epoch {model.best_epoch_}, validation AUROC {val.max()!r}; "
            f"{int(np.sum(val >= val.max() - 1e-9))} of {val.size} epochs within 1e-9 of it"
        )
    print(f"  largest |score difference| between the two fits: {np.abs(scores[0] - scores[1]).max():.2e}")


def lunar_epochs(scale: float, n_epochs: int = 10) -> None:
    """PyOD's LUNAR network trained full-batch as LUNAR trains it, with and without reuse_freed_memory, in one run."""
    import resource

    from pyod.models.lunar import WEIGHT_MODEL

    from bliss_utils import _malloc

    n = int(2 * 45_000 * scale * 0.9)  # normal training rows after the validation split, plus as many negatives
    rows = torch.rand(n, 5, generator=torch.Generator().manual_seed(0))
    target = (torch.arange(n) >= n // 2).float()

    def epoch(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(rows), target, reduction="none").sum().backward()
        optimizer.step()

    results = {}
    contexts = [("glibc defaults", contextlib.nullcontext), ("reuse_freed_memory", _malloc.reuse_freed_memory)]
    for name, context in contexts:
        torch.manual_seed(0)
        net = WEIGHT_MODEL(5)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=0.1)
        with context():
            for _ in range(3):  # warm-up: the allocator reaches its working size
                epoch(net, optimizer)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            _, seconds = timed(lambda: [epoch(net, optimizer) for _ in range(n_epochs)])  # noqa: B023 (called here)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        results[name] = (seconds / n_epochs, faults / n_epochs, [p.detach().clone() for p in net.parameters()])
        print(
            f"LUNAR epochs, {name}: {seconds / n_epochs:.3f} s an epoch on {n} rows, {faults / n_epochs:.0f} page "
            f"faults an epoch"
        )
    (t0, _, w0), (t1, _, w1) = results.values()
    same = all(torch.equal(a, b) for a, b in zip(w0, w1, strict=True))
    print(f"  ratio {t0 / t1:.2f}x; weights after {n_epochs + 3} epochs bit-identical: {same}")


def bench_gmm(train, labels, test, skip_library: bool) -> None:
    from sklearn.mixture import GaussianMixture

    from bliss_utils.scores.baselines import GMM

    scorer = GMM()
    ours, t_ours = timed(lambda: scorer.fit(train, labels).score_samples(test))
    n_iter = next(iter(scorer.models_.values()))["n_iter"]
    print(f"GMM ours: {t_ours:.1f} s ({n_iter} EM steps)")
    if skip_library:
        return

    def library() -> np.ndarray:
        z = scorer.train_.astype(np.float64)  # exactly the images ours fitted (L2-normalised)
        classes, counts = np.unique(labels, return_counts=True)
        eye = np.eye(z.shape[1])
        covs = [np.cov(z[labels == c], rowvar=False, bias=True) + 1e-6 * eye for c in classes]
        gm = GaussianMixture(
            len(classes),
            reg_covar=1e-6,
            max_iter=10,
            tol=1e-3,
            weights_init=counts / counts.sum(),
            means_init=np.stack([z[labels == c].mean(0) for c in classes]),
            precisions_init=np.stack([_sym(np.linalg.inv(c)) for c in covs]),
            init_params="random_from_data",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(z)
        print(f"  (scikit-learn: {gm.n_iter_} EM steps)")
        return -gm.score_samples(scorer._prepare(test).astype(np.float64))

    lib, t_lib = timed(library)
    print(
        f"GMM scikit-learn: {t_lib:.1f} s; ratio {t_lib / t_ours:.2f}x; largest |score difference| "
        f"{np.abs(lib - ours).max():.2e} (relative {np.abs(lib - ours).max() / np.abs(lib).max():.1e})"
    )


def bench_dn2(train, labels, test, skip_library: bool) -> None:
    from pyod.models.knn import KNN

    from bliss_utils.scores.baselines import DN2

    scorer = DN2()
    ours, t_ours = timed(lambda: scorer.fit(train, labels).score_samples(test))
    print(f"DN2 ours: {t_ours:.1f} s (k=5, {train.shape[0]} training images, {test.shape[0]} test)")
    if skip_library:
        return
    z, q = scorer.train_, scorer._prepare(test)  # exactly the normalised arrays ours used
    lib, t_lib = timed(lambda: KNN(n_neighbors=5, method="mean").fit(z).decision_function(q))
    print(
        f"DN2 PyOD KNN(method='mean'): {t_lib:.1f} s; ratio {t_lib / t_ours:.2f}x; largest |score difference| "
        f"{np.abs(lib - ours).max():.2e} (scores range {lib.min():.3g} .. {lib.max():.3g})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the CIFAR-10 9-class sizes")
    parser.add_argument("--skip-library", action="store_true", help="time ours only")
    parser.add_argument(
        "--only",
        choices=["lunar", "gmm", "dn2", "lunar-ties", "lunar-epochs"],
        help="run one of them (lunar-ties: how PyOD's LUNAR picks its epoch on inputs one rounding apart; "
        "lunar-epochs: its training epochs with and without reuse_freed_memory; neither is part of the default run)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.only == "lunar-epochs":  # builds its own inputs
        lunar_epochs(args.scale)
        return
    train, labels, test = make_data(args.scale)
    print(f"data: train {train.shape}, test {test.shape}, scale {args.scale}")
    if args.only in (None, "dn2"):
        bench_dn2(train, labels, test, args.skip_library)
    if args.only in (None, "gmm"):
        bench_gmm(train, labels, test, args.skip_library)
    if args.only in (None, "lunar"):
        bench_lunar(train, labels, test, args.skip_library)
    if args.only == "lunar-ties":
        lunar_ties(train, test)


if __name__ == "__main__":
    main()
