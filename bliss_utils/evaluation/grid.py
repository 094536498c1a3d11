"""The experiment grid: methods x settings x trials x lam x K on cached embeddings, as one tidy DataFrame.

BLISS's per-class statistics are fitted once for every class and shared by all trials, lams and Ks: a trial's
score is then a min over the columns of its normal classes (Eq. 11), and one top-max(K) dictionary search serves
every K. The baselines are fitted once too and scored per trial with their ``normal_classes`` argument.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from bliss_utils import _progress
from bliss_utils._checks import check_same_dim
from bliss_utils.evaluation.metrics import auroc, fpr95
from bliss_utils.scores.methods import make_method

if TYPE_CHECKING:
    import pandas

DEFAULT_METHODS = ("bliss", "biased-clip", "raw-similarity", "mcm")
# seconds: the time one row's scores took, its per-trial fit included (image baselines, SSD+CMLE); the work a
# method does before its first row (its fit; BLISS's per-class statistics and one dictionary search) is not in it
COLUMNS = ["dataset", "encoder", "setting", "trial", "method", "lam", "k", "n_shots", "auroc", "fpr95", "seconds"]


@dataclass(frozen=True)
class EmbeddingSet:
    """The embeddings one experiment needs, all from one encoder on one dataset (rows L2-normalised)."""

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    class_texts: np.ndarray | None = None
    dictionary: np.ndarray | None = None
    encoder: str = ""
    dataset: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = ("train", "test", "class_texts", "dictionary")  # the optional two only when given
        arrays = {n: getattr(self, n) for n in names if n in ("train", "test") or getattr(self, n) is not None}
        for name, a in arrays.items():
            if np.ndim(a) != 2:
                raise ValueError(f"EmbeddingSet.{name} must be 2-D (n, dim); got shape {np.shape(a)}")
        check_same_dim(**arrays)
        for name, labels, emb in (("train", self.train_labels, self.train), ("test", self.test_labels, self.test)):
            if np.shape(labels) != (len(emb),):
                raise ValueError(f"EmbeddingSet.{name}_labels must have one label per {name} embedding")


def few_shot_indices(labels: np.ndarray, n_shots: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n_shots`` images drawn per class (all of a smaller class), reproducible from ``seed``."""
    if n_shots < 1:
        raise ValueError(f"n_shots must be >= 1; got {n_shots}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    picked = [rows if rows.size <= n_shots else rng.choice(rows, n_shots, replace=False) for rows in by_class]
    return np.sort(np.concatenate(picked))


def _n_classes(data: EmbeddingSet) -> int:
    """How many classes ``data`` has: one text each, else the largest label + 1."""
    if data.class_texts is not None:
        return data.class_texts.shape[0]
    return int(max(np.max(data.train_labels), np.max(data.test_labels))) + 1


def _check_splits(splits: Mapping[str, Sequence[Sequence[int]]], n_classes: int) -> None:
    if not splits:
        raise ValueError("splits is empty: give at least one setting, e.g. {'cifar10-6': class_splits('cifar10', 6)}")
    for name, trials in splits.items():
        if len(trials) == 0:
            raise ValueError(f"setting {name!r} has no trials")
        for normal in trials:
            if len(normal) == 0:
                raise ValueError(f"setting {name!r} has a trial with no normal classes")
            bad = [c for c in normal if not 0 <= int(c) < n_classes]
            if bad:
                raise ValueError(f"setting {name!r} names unknown class(es) {bad}: the dataset has {n_classes}")


def _sweeps(lams: Sequence[float], ks: Sequence[int], eps: float, aggregate: str) -> dict[str, list]:
    """The values the grid gives each parameter a method lists in ``grid_params`` (lams in order, Ks sorted)."""
    return {"lam": list(dict.fromkeys(lams)), "k": sorted({int(k) for k in ks}), "eps": [eps], "aggregate": [aggregate]}


class _Plan(NamedTuple):
    scorer: Any  # an unfitted Scorer
    variants: list[dict]  # the parameter values of each variant (lam and K for BLISS)
    source: EmbeddingSet  # the embeddings it reads


def _plan(method: str, data: EmbeddingSet, image: EmbeddingSet, sweeps: dict, params: Mapping) -> _Plan:
    """How ``method`` runs: image-only methods read ``image``, the others ``data``."""
    scorer = make_method(method, **params.get(method, {}))
    source = image if tuple(scorer.inputs) == ("images",) else data
    for needed, kind in (("class_texts", "class text"), ("dictionary", "dictionary")):
        if needed in scorer.inputs and getattr(source, needed) is None:
            raise ValueError(f"method {method!r} needs {kind} embeddings, but data.{needed} is None")
    swept = [p for p in scorer.grid_params if p in sweeps]
    variants = [dict(zip(swept, values)) for values in itertools.product(*(sweeps[p] for p in swept))]
    return _Plan(scorer, variants, source)


def _training_part(source: EmbeddingSet, n_shots: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images and labels the grid fits on: all, or ``n_shots`` per class (one seeded draw)."""
    if n_shots is None:
        return source.train, source.train_labels
    idx = few_shot_indices(np.asarray(source.train_labels), n_shots, seed)
    return source.train[idx], source.train_labels[idx]


def _fit_args(scorer: Any, source: EmbeddingSet, training: tuple[np.ndarray, np.ndarray]) -> tuple:
    """The four fit arguments, None where the scorer does not read them."""
    train, labels = training if "images" in scorer.inputs else (None, None)
    return train, labels, *(getattr(source, n) if n in scorer.inputs else None for n in ("class_texts", "dictionary"))


def _method_rows(method: str, plan: _Plan, jobs: list, fit_args: tuple, bar: Any) -> list[tuple[tuple, dict]]:
    """(trial index, variant index) and row for every variant and trial of ``method`` (trials with too few normal
    classes left out); the seconds of a row are the time the scorer took to yield it."""
    scorer, variants, source = plan
    kept = [i for i, job in enumerate(jobs) if len(job[2]) >= scorer.min_normal_classes]
    anomalies = [~np.isin(np.asarray(source.test_labels), jobs[i][2]) for i in kept]  # one mask per trial
    stream = scorer.score_grid(fit_args, source.test, [jobs[i][2] for i in kept], variants)
    rows, started = [], time.perf_counter()
    for v, s, scores in stream:
        (setting, trial, _), variant = jobs[kept[s]], variants[v]
        row = {"encoder": source.encoder, "setting": setting, "trial": trial, "method": method}
        row.update(lam=variant.get("lam", np.nan), k=variant.get("k", np.nan))
        row.update(auroc=100 * auroc(scores, anomalies[s]), fpr95=100 * fpr95(scores, anomalies[s]))
        rows.append(((kept[s], v), {**row, "seconds": time.perf_counter() - started}))
        bar.update(1)
        started = time.perf_counter()
    return rows


def evaluate_grid(
    data: EmbeddingSet,
    splits: Mapping[str, Sequence[Sequence[int]]],
    methods: Sequence[str] = DEFAULT_METHODS,
    lams: Sequence[float] = (0.5,),
    ks: Sequence[int] = (10,),
    aggregate: str = "mean",
    image_data: EmbeddingSet | None = None,
    n_shots: int | None = None,
    seed: int = 0,
    progress: bool = True,
    eps: float = 1e-8,
    baseline_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> pandas.DataFrame:
    """AUROC and FPR95 (in %) of every method, setting, trial and variant (lam, K), as a tidy DataFrame (``COLUMNS``).

    ``methods`` are names in the method table (``bliss_utils.scores.methods``; ``register_method`` adds one), each
    built with ``baseline_params[method]`` and swept over the grid's ``lams``, ``ks``, ``eps`` and ``aggregate`` where
    it lists them in ``grid_params``. ``splits`` maps a setting name to its trials, each a list of normal class
    indices; every other test image is anomalous. ``image_data`` supplies the image-only methods (dn2, gmm, lunar,
    ssd) with other embeddings (e.g. ViT-21k) of the same dataset; without it they use ``data``'s. ``n_shots`` keeps
    that many training images per class (one draw from ``seed``, shared by every trial). A method has no rows for
    trials with fewer normal classes than it needs (MCM: 2). ``progress`` shows one bar over the rows.
    """
    import pandas as pd

    if not methods:
        raise ValueError("methods is empty")
    _check_splits(splits, _n_classes(data))
    image = image_data if image_data is not None else data
    # drawn once per embedding set (few_shot_indices refuses an n_shots below 1 before any fit)
    training = {id(source): _training_part(source, n_shots, seed) for source in (data, image)}
    sweeps, params = _sweeps(lams, ks, eps, aggregate), baseline_params or {}
    plans = {m: _plan(m, data, image, sweeps, params) for m in dict.fromkeys(methods)}
    jobs = [(name, t, list(map(int, normal))) for name, trials in splits.items() for t, normal in enumerate(trials)]
    total = sum(len(p.variants) * sum(len(j[2]) >= p.scorer.min_normal_classes for j in jobs) for p in plans.values())
    name = " ".join(n for n in (data.dataset, data.encoder) if n) or "grid"
    keyed = []  # rows in the order of trials, then methods, then variants
    with _progress.progress(
        total=total, desc=f"{name}: rows", unit="row", disable=not progress or len(jobs) < 2
    ) as bar:
        for m, (method, plan) in enumerate(plans.items()):
            fit_args = _fit_args(plan.scorer, plan.source, training[id(plan.source)])
            keyed += [((job, m, v), row) for (job, v), row in _method_rows(method, plan, jobs, fit_args, bar)]
    rows = [{"dataset": data.dataset, "n_shots": n_shots, **row} for _, row in sorted(keyed, key=lambda kr: kr[0])]
    return pd.DataFrame(rows, columns=COLUMNS)


def method_scores(
    data: EmbeddingSet,
    normal_classes: Sequence[int],
    methods: Sequence[str] = DEFAULT_METHODS,
    lam: float = 0.5,
    k: int = 10,
    image_data: EmbeddingSet | None = None,
    baseline_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Each method's score of every test image for one set of normal classes (higher = more anomalous), fitted as
    :func:`evaluate_grid` fits it, on every training image; the per-image view of one trial."""
    normal = [int(c) for c in normal_classes]
    n_classes = len(data.class_texts) if data.class_texts is not None else 1 + max(normal)
    _check_splits({"normal_classes": [normal]}, n_classes)
    image, sweeps = image_data if image_data is not None else data, _sweeps([lam], [k], 1e-8, "mean")
    out = {}
    for method in dict.fromkeys(methods):
        plan = _plan(method, data, image, sweeps, baseline_params or {})
        if len(normal) < plan.scorer.min_normal_classes:
            raise ValueError(f"{method} needs at least {plan.scorer.min_normal_classes} normal classes; got {normal}")
        fit_args = _fit_args(plan.scorer, plan.source, (plan.source.train, plan.source.train_labels))
        _, _, out[method] = next(iter(plan.scorer.score_grid(fit_args, plan.source.test, [normal], plan.variants)))
    return out


def summarize(results: pandas.DataFrame, metric: str = "auroc", by: Sequence[str] = ()) -> pandas.DataFrame:
    """Mean and population std over trials of ``metric`` for every (dataset, encoder, setting, method, lam, k, n_shots)
    and every value of the extra columns ``by`` (e.g. a dictionary label an ablation added)."""
    keys = list(dict.fromkeys([c for c in COLUMNS if c not in ("trial", "auroc", "fpr95", "seconds")] + list(by)))
    grouped = results.groupby(keys, dropna=False)[metric]
    return grouped.agg(mean="mean", std=lambda s: float(np.std(s, ddof=0)), n_trials="count").reset_index()
