"""The experiment grid: methods x settings x trials x lam x K on cached embeddings, as one tidy DataFrame.

BLISS's per-class statistics are fitted once for every class and shared by all trials, lams and Ks: a trial's
score is then a min over the columns of its normal classes (Eq. 11), and one top-max(K) dictionary search serves
every K. The baselines are fitted once too and scored per trial with their ``normal_classes`` argument.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bliss_utils import _progress
from bliss_utils._checks import check_same_dim

TEXT_METHODS = ("bliss", "biased-clip", "raw-similarity", "mcm")
IMAGE_METHODS = ("dn2", "gmm", "lunar", "ssd")
# related methods (docs/related_methods.md): prompt pairs come in baseline_params[method]["pairs"]; SSD+CMLE needs
# data's dictionary (pseudo-captions), so it runs on data, not image_data
PROMPT_METHODS = ("anomalyclip", "agnostic-pair", "agnostic-cpe", "object-aware-cpe")
METHODS = TEXT_METHODS + IMAGE_METHODS + PROMPT_METHODS + ("ssd-cmle",)
DEFAULT_METHODS = ("bliss", "biased-clip", "raw-similarity", "mcm")
# seconds: wall time of one method on one trial, fitting its per-trial model included (image baselines, SSD+CMLE);
# what all trials share (BLISS's per-class statistics, the text scorers' fit) is not in it
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
        arrays = {"train": self.train, "test": self.test}
        for name in ("class_texts", "dictionary"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
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
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        picked.append(rows if rows.size <= n_shots else rng.choice(rows, n_shots, replace=False))
    return np.sort(np.concatenate(picked))


def _subset(data: EmbeddingSet, n_shots: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n_shots is None:
        return data.train, data.train_labels
    idx = few_shot_indices(np.asarray(data.train_labels), n_shots, seed)
    return data.train[idx], data.train_labels[idx]


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


def _make_baseline(method: str, baseline_params: Mapping[str, Mapping[str, Any]]) -> Any:
    from bliss_utils.scores import baselines, cmle, ssd
    from bliss_utils.scores import prompt_pairs as prompt_scores

    factory = {
        **dict.fromkeys(PROMPT_METHODS, prompt_scores.PromptPairScore),
        "ssd": ssd.SSD,
        "ssd-cmle": cmle.SSDCMLE,
        "raw-similarity": baselines.RawSimilarity,
        "mcm": baselines.MCM,
        "dn2": baselines.DN2,
        "gmm": baselines.GMM,
        "lunar": baselines.LUNAR,
    }[method]
    return factory(**baseline_params.get(method, {}))


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
) -> pandas.DataFrame:  # noqa: F821
    """AUROC and FPR95 (in %) of every method, setting, trial, lam and K, as a tidy DataFrame (see ``COLUMNS``).

    ``splits`` maps a setting name to its trials, each a list of normal class indices; every other test image is
    anomalous. ``image_data`` supplies the image-only baselines (dn2, gmm, lunar, ssd) with other embeddings (e.g. ViT-21k)
    of the same dataset; without it they use ``data``'s. ``n_shots`` keeps that many training images per class
    (one draw from ``seed``, shared by every trial). MCM has no rows for settings with a single normal class.
    ``progress`` shows a bar over the trials (with two or more), where the image baselines' models are fitted.
    """
    import pandas as pd

    from bliss_utils.evaluation.metrics import auroc, fpr95
    from bliss_utils.scores.bliss import BLISS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if not methods:
        raise ValueError("methods is empty")
    baseline_params = baseline_params or {}
    text_methods = [m for m in methods if m in TEXT_METHODS]
    if text_methods and data.class_texts is None:
        raise ValueError(f"methods {text_methods} need class text embeddings, but data.class_texts is None")
    if "bliss" in methods and data.dictionary is None:
        raise ValueError("BLISS needs dictionary embeddings, but data.dictionary is None")
    n_classes = int(max(np.max(data.train_labels), np.max(data.test_labels))) + 1
    if data.class_texts is not None:
        n_classes = data.class_texts.shape[0]
    _check_splits(splits, n_classes)

    train, train_labels = _subset(data, n_shots, seed)
    scorers: dict[str, Any] = {}
    class_cols: dict[tuple[float, int], np.ndarray] = {}
    ic = None
    if "bliss" in methods or "biased-clip" in methods:
        use_dictionary = "bliss" in methods
        model = BLISS(k=max(ks) if use_dictionary else 1, lam=0.0, eps=eps, aggregate=aggregate)
        model.fit(train, train_labels, data.class_texts, data.dictionary if use_dictionary else None)
        ic, et = model.components(data.test, ks if use_dictionary else ())
        class_cols = {(lam, k): ic + lam * et[k] for lam in lams for k in et}
    for m in ("raw-similarity", "mcm"):
        if m in methods:
            scorers[m] = _make_baseline(m, baseline_params).fit(train, train_labels, data.class_texts)
    image = image_data if image_data is not None else data
    image_train, image_labels = _subset(image, n_shots, seed)
    for m in IMAGE_METHODS:
        if m in methods:
            scorers[m] = _make_baseline(m, baseline_params).fit(image_train, image_labels)
    for m in PROMPT_METHODS:
        if m in methods:
            scorers[m] = _make_baseline(m, baseline_params).fit(None)
    if "ssd-cmle" in methods:
        scorers["ssd-cmle"] = _make_baseline("ssd-cmle", baseline_params).fit(
            train, train_labels, data.class_texts, data.dictionary
        )

    started = time.perf_counter()
    jobs = [(name, t, list(map(int, normal))) for name, trials in splits.items() for t, normal in enumerate(trials)]
    # image baselines fit each trial's model when first scoring it: the bar's pace is theirs
    name = " ".join(n for n in (data.dataset, data.encoder) if n) or "grid"
    bar = _progress.progress(jobs, desc=f"{name}: trials", unit="trial", disable=not progress or len(jobs) < 2)
    base = {"dataset": data.dataset, "n_shots": n_shots}
    rows = []
    for setting, trial, normal in bar:
        is_anomaly = ~np.isin(np.asarray(data.test_labels), normal)
        image_anomaly = ~np.isin(np.asarray(image.test_labels), normal)

        def record(
            method: str,
            scores: np.ndarray,
            anomaly: np.ndarray,
            lam: float = np.nan,
            k: float = np.nan,
            encoder: str = data.encoder,
        ) -> None:
            nonlocal started
            rows.append(
                {
                    **base,
                    "encoder": encoder,
                    "setting": setting,
                    "trial": trial,
                    "method": method,
                    "lam": lam,
                    "k": k,
                    "auroc": 100 * auroc(scores, anomaly),
                    "fpr95": 100 * fpr95(scores, anomaly),
                    "seconds": time.perf_counter() - started,
                }
            )
            started = time.perf_counter()  # each (lam, K) row of one method counts only its own scoring

        for method in methods:
            started = time.perf_counter()
            if method == "bliss":
                for (lam, k), cols in class_cols.items():
                    record(method, cols[:, normal].min(axis=1), is_anomaly, lam, k)
            elif method == "biased-clip":
                record(method, ic[:, normal].min(axis=1), is_anomaly)
            elif method == "mcm" and len(normal) < 2:
                continue
            elif method in TEXT_METHODS or method in PROMPT_METHODS or method == "ssd-cmle":
                record(method, scorers[method].score_samples(data.test, normal), is_anomaly)
            else:
                record(method, scorers[method].score_samples(image.test, normal), image_anomaly, encoder=image.encoder)
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(results: pandas.DataFrame, metric: str = "auroc", by: Sequence[str] = ()) -> pandas.DataFrame:  # noqa: F821
    """Mean and population std over trials of ``metric`` for every (dataset, encoder, setting, method, lam, k, n_shots)
    and every value of the extra columns ``by`` (e.g. a dictionary label an ablation added)."""
    keys = [c for c in COLUMNS if c not in ("trial", "auroc", "fpr95", "seconds")] + list(by)
    grouped = results.groupby(keys, dropna=False)[metric]
    out = grouped.agg(mean="mean", std=lambda s: float(np.std(s, ddof=0)), n_trials="count")
    return out.reset_index()
