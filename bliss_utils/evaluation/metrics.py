"""Evaluation metrics (anomaly = positive class) and the one-sided t-test behind the paper's stars."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from bliss_utils._checks import to_numpy

if TYPE_CHECKING:
    import pandas as pd

_WELCH = {"equal_var": False, "alternative": "greater"}  # Welch's one-sided t-test, H1: mean a > mean b


def _check_scores_labels(scores: Any, is_anomaly: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a score vector and a boolean anomaly vector of the same length with both classes present."""
    s = to_numpy(scores)
    y = to_numpy(is_anomaly)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and is_anomaly must be 1-D; got shapes {s.shape} and {y.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores ({s.shape[0]}) and is_anomaly ({y.shape[0]}) differ in length")
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"scores must be numbers; got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite value(s)")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("is_anomaly must be boolean (or 0/1): True marks an anomaly")
        y = y.astype(bool)
    n_anom = int(y.sum())
    if n_anom == 0 or n_anom == y.size:
        raise ValueError(
            f"is_anomaly must contain both normals and anomalies; got {n_anom} anomalies among {y.size} samples"
        )
    return s, y


def auroc(scores: Any, is_anomaly: Any) -> float:
    """Area under the ROC curve in [0, 1] with anomalies as the positive class (higher score = more anomalous)."""
    from sklearn.metrics import roc_auc_score

    s, y = _check_scores_labels(scores, is_anomaly)
    return float(roc_auc_score(y, s))


def fpr_at_tpr(scores: Any, is_anomaly: Any, tpr: float = 0.95) -> float:
    """Fraction of normal samples flagged at the first ROC threshold that catches at least ``tpr`` of the anomalies."""
    from sklearn.metrics import roc_curve

    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1]; got {tpr}")
    s, y = _check_scores_labels(scores, is_anomaly)
    # drop_intermediate=False keeps every threshold, so the first index reaching the target is exact
    fpr, tpr_curve, _ = roc_curve(y, s, drop_intermediate=False)
    idx = int(np.searchsorted(tpr_curve, tpr - 1e-12, side="left"))
    return float(fpr[idx])


def fpr95(scores: Any, is_anomaly: Any) -> float:
    """FPR at 95% TPR: share of normals flagged at the threshold catching 95% of the anomalies (anomaly = positive)."""
    return fpr_at_tpr(scores, is_anomaly, tpr=0.95)


def _check_sample(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(to_numpy(x), dtype=np.float64).ravel()
    if arr.size < 2:
        raise ValueError(f"{name} needs at least 2 values for a t-test; got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def one_sided_ttest(a: Any, b: Any) -> float:
    """p-value of Welch's one-sided t-test, H1: mean(a) > mean(b) (per-trial AUROCs of two methods)."""
    from scipy import stats

    return float(stats.ttest_ind(_check_sample(a, "a"), _check_sample(b, "b"), **_WELCH).pvalue)


def one_sided_ttest_from_stats(
    mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int, population_std: bool = True
) -> float:
    """Welch's one-sided t-test (H1: mean a > mean b) from summary statistics, e.g. the paper's "mean ± std" cells."""
    from scipy import stats

    for name, n in (("n_a", n_a), ("n_b", n_b)):
        if int(n) != n or n < 2:
            raise ValueError(f"{name} must be an integer >= 2; got {n}")
    for name, v in (("mean_a", mean_a), ("std_a", std_a), ("mean_b", mean_b), ("std_b", std_b)):
        if not np.isfinite(v):
            raise ValueError(f"{name} must be finite; got {v}")
    if std_a < 0 or std_b < 0:
        raise ValueError(f"standard deviations must be >= 0; got {std_a}, {std_b}")
    if population_std:
        # ddof=0 -> ddof=1: scipy expects sample standard deviations
        std_a, std_b = std_a * np.sqrt(n_a / (n_a - 1)), std_b * np.sqrt(n_b / (n_b - 1))
    if std_a == 0 and std_b == 0:
        raise ValueError("both standard deviations are 0: the t statistic is undefined")
    return float(stats.ttest_ind_from_stats(mean_a, std_a, int(n_a), mean_b, std_b, int(n_b), **_WELCH).pvalue)


def beats_next_best(
    trials: pd.DataFrame,
    rows: pd.DataFrame,
    setting: str,
    alpha: float = 0.05,
    *,
    method: str = "bliss",
    group: str = "clip-based",
    exclude: Iterable[str] = (),
) -> bool:
    """Whether ``method`` beats the highest-mean other row of ``setting`` by a one-sided Welch t-test at ``alpha``."""
    # trials: per-trial results (evaluate_grid's columns plus "group"); rows: one row per (group, method, setting)
    # with "mean", "std", "n_trials" and "source" ("measured": its trials are in ``trials``; else mean ± std only)
    in_setting = trials["setting"] == setting
    ours = trials.loc[in_setting & (trials["method"] == method), "auroc"].to_numpy()
    others = rows[
        (rows["setting"] == setting)
        & ~((rows["method"] == method) & (rows["group"] == group))
        & ~rows["method"].isin(list(exclude))
    ]
    if len(ours) < 2 or others.empty:  # a single trial has no variance to test; nothing to beat
        return False
    best = others.loc[others["mean"].idxmax()]  # ties: the first row with the highest mean
    if best["source"] == "measured":
        mask = in_setting & (trials["method"] == best["method"]) & (trials["group"] == best["group"])
        p = one_sided_ttest(ours, trials.loc[mask, "auroc"].to_numpy())
    else:  # a reported row: its mean ± std (population std) over the protocol's trial count
        p = one_sided_ttest_from_stats(
            ours.mean(), ours.std(), len(ours), best["mean"], best["std"], int(best["n_trials"])
        )
    return bool(p < alpha)


def significance_stars(
    trials: pd.DataFrame,
    rows: pd.DataFrame,
    alpha: float = 0.05,
    *,
    method: str = "bliss",
    group: str = "clip-based",
    exclude: Iterable[str] = (),
) -> dict[str, bool]:
    """Table 1's stars: setting -> whether ``method`` significantly beats the next best row (``beats_next_best``)."""
    exclude = list(exclude)
    return {
        s: beats_next_best(trials, rows, s, alpha, method=method, group=group, exclude=exclude)
        for s in rows["setting"].unique()
    }
