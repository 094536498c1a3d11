"""The numbers behind the paper's figures (Fig. 1b-4), computed from plain numpy embedding arrays; no plotting here.

Every input embedding is L2-normalised here again, so ``sim`` is the cosine similarity whatever the caller passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bliss_utils._checks import as_embeddings, check_same_dim, l2_normalize
from bliss_utils.evaluation.grid import few_shot_indices


def _units(**arrays: np.ndarray) -> list[np.ndarray]:
    out = {name: l2_normalize(as_embeddings(x, name, dtype=np.float64), name) for name, x in arrays.items()}
    check_same_dim(**out)
    return list(out.values())


def _labels(y: np.ndarray, n: int, name: str, n_texts: int | None = None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}; got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer class indices; got dtype {arr.dtype}")
    if n_texts is not None and (arr.min() < 0 or arr.max() >= n_texts):
        raise ValueError(f"{name} must index the {n_texts} class texts; got range {arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


def _mean_offdiagonal(a: np.ndarray) -> float:
    sims, n = a @ a.T, len(a)
    if n < 2:
        return float("nan")
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def mean_cosine_similarities(
    images: np.ndarray,
    image_labels: np.ndarray,
    class_texts: np.ndarray,
    dictionary: np.ndarray | None = None,
    max_images: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """Fig. 1b's mean cosine similarities: text-text, image-image, image-own-text, image-other-text, text-dictionary.

    text-text and image-image average over distinct pairs; image-own-text pairs each image with its class text;
    image-other-text with every other class text; text-dictionary every class text with every dictionary entry.
    Images beyond ``max_images`` are subsampled (seeded) to bound the (n, n) image-image product.
    """
    z, t = _units(images=images, class_texts=class_texts)
    y = _labels(image_labels, len(z), "image_labels", len(t))
    sub = np.sort(np.random.default_rng(seed).choice(len(z), max_images, False)) if len(z) > max_images else slice(None)
    sims = z @ t.T
    own = float(sims[np.arange(len(z)), y].mean())
    other_mask = np.ones_like(sims, dtype=bool)
    other_mask[np.arange(len(z)), y] = False
    out = {"text_text": _mean_offdiagonal(t), "image_image": _mean_offdiagonal(z[sub]), "image_own_text": own}
    out["image_other_text"] = float(sims[other_mask].mean()) if other_mask.any() else float("nan")
    if dictionary is not None:
        _, d = _units(class_texts=t, dictionary=dictionary)
        out["text_dictionary"] = float((t @ d.T).mean())
    return out


def tsne_inputs(
    images: np.ndarray, image_labels: np.ndarray, class_texts: np.ndarray, n_per_class: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack a per-class image subsample and the class texts for Fig. 1b: (points, is_text, labels)."""
    z, t = _units(images=images, class_texts=class_texts)
    y = _labels(image_labels, len(z), "image_labels")
    rows = few_shot_indices(y, n_per_class, seed)
    classes = np.unique(y[rows])
    points = np.vstack([z[rows], t[classes]])
    is_text = np.r_[np.zeros(len(rows), bool), np.ones(len(classes), bool)]
    labels = np.r_[y[rows], classes]
    return points.astype(np.float32), is_text, labels


def tsne_2d(points: np.ndarray, perplexity: float = 30.0, seed: int = 0, exact_below: int = 500) -> np.ndarray:
    """2-D t-SNE (sklearn, cosine metric, PCA init) of the stacked points; perplexity is capped below n/3.

    Below ``exact_below`` points the exact gradient is used: faster than Barnes-Hut at that size, and deterministic.
    """
    from sklearn.manifold import TSNE

    x = as_embeddings(points, "points")
    if len(x) < 5:
        raise ValueError(f"t-SNE needs at least 5 points; got {len(x)}")
    perplexity = float(min(perplexity, max(2.0, (len(x) - 1) / 3)))
    method = "exact" if len(x) < exact_below else "barnes_hut"
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed, method=method)
    return tsne.fit_transform(x)


def similarity_distributions(
    images: np.ndarray,
    image_labels: np.ndarray,
    class_texts: np.ndarray,
    dictionary: np.ndarray,
    classes: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Fig. 2: sim(image, its own class text) for every image, sim(class text, entry) for every class x entry pair."""
    z, t, d = _units(images=images, class_texts=class_texts, dictionary=dictionary)
    y = _labels(image_labels, len(z), "image_labels", len(t))
    cls = np.unique(y) if classes is None else np.asarray(classes, dtype=np.int64)
    return {"image_to_own_text": np.einsum("ij,ij->i", z, t[y]), "text_to_dictionary": (t[cls] @ d.T).ravel()}


def distribution_summary(samples: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean, median, 5th/95th percentiles and histogram peak of each named sample (the numbers behind Fig. 2)."""
    rows = []
    for name, values in samples.items():
        v = np.asarray(values, float).ravel()
        if v.size == 0:
            raise ValueError(f"sample {name!r} is empty")
        counts, edges = np.histogram(v, bins=min(60, max(5, v.size // 5)))
        peak = int(np.argmax(counts))
        stats = {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v))}
        stats |= {"p05": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))}
        rows.append({"distribution": name, **stats, "peak": float((edges[peak] + edges[peak + 1]) / 2)})
    return pd.DataFrame(rows)


def mean_dictionary_similarity(images: np.ndarray, dictionary: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of each image to the whole dictionary (the x-axis of Fig. 3)."""
    z, d = _units(images=images, dictionary=dictionary)
    return z @ d.mean(axis=0)  # mean of dot products = dot with the mean entry


def threshold_for_flag_rate(scores: np.ndarray, flag_rate: float) -> float:
    """Score threshold that flags (score > threshold) the top ``flag_rate`` share of samples."""
    s = np.asarray(scores, float)
    if not 0 < flag_rate < 1:
        raise ValueError(f"flag_rate must be in (0, 1); got {flag_rate}")
    return float(np.quantile(s, 1 - flag_rate))


def errors_by_quantile(
    mean_dict_sim: np.ndarray, flagged: np.ndarray, is_anomaly: np.ndarray, n_quantiles: int = 10
) -> pd.DataFrame:
    """Fig. 3: false negatives / positives of the ``flagged`` decisions per quantile of mean dictionary similarity.

    ``flagged`` is the detector's decision (e.g. ``scores > threshold``); samples pooled over several trials may be
    passed together. Returns one row per quantile (1 = lowest similarity) with counts, ``fn_share``/``fp_share`` (share
    of all FN/FP errors falling in that quantile; each sums to 1 over quantiles) and ``fn_rate``/``fp_rate``.
    """
    m = np.asarray(mean_dict_sim, float).ravel()
    flagged = np.asarray(flagged).ravel()
    a = np.asarray(is_anomaly).ravel()
    if not (len(m) == len(flagged) == len(a)):
        raise ValueError(
            f"mean_dict_sim, flagged and is_anomaly must have the same length; got {len(m)}, {len(flagged)}, {len(a)}"
        )
    if flagged.dtype != bool or a.dtype != bool:
        raise ValueError("flagged and is_anomaly must be boolean arrays")
    if n_quantiles < 1 or n_quantiles > len(m):
        raise ValueError(f"n_quantiles must be between 1 and the number of samples ({len(m)}); got {n_quantiles}")
    fn, fp = a & ~flagged, ~a & flagged
    order = np.argsort(m, kind="stable")
    parts = np.array_split(order, n_quantiles)
    out = pd.DataFrame({"quantile": range(1, n_quantiles + 1), "n": [len(idx) for idx in parts]})
    out["mean_dictionary_similarity"] = [float(m[idx].mean()) for idx in parts]
    for column, counted in (("n_anomalies", a), ("fn", fn), ("fp", fp)):
        out[column] = [int(counted[idx].sum()) for idx in parts]
    out["fn_share"] = out["fn"] / max(int(fn.sum()), 1)
    out["fp_share"] = out["fp"] / max(int(fp.sum()), 1)
    out["fn_rate"] = out["fn"] / out["n"]
    out["fp_rate"] = out["fp"] / out["n"]
    return out


def pooled_errors_by_quantile(
    mean_dict_sim: np.ndarray,
    scores_by_trial: Sequence[np.ndarray],
    anomaly_by_trial: Sequence[np.ndarray],
    n_quantiles: int = 10,
    flag_rate: float = 0.0,
) -> pd.DataFrame:
    """Fig. 3 over several trials: in each trial flag the images scoring in the top ``flag_rate`` share (0: the trial's
    share of anomalies, so as many are flagged as there are anomalies), then pool the trials' errors per quantile."""
    if len(scores_by_trial) != len(anomaly_by_trial) or not scores_by_trial:
        raise ValueError("give one score array and one is_anomaly array per trial (at least one trial)")
    anomalous = [np.asarray(is_anomaly, bool) for is_anomaly in anomaly_by_trial]
    rates = [flag_rate or float(is_anomaly.mean()) for is_anomaly in anomalous]  # 0: each trial's anomaly share
    flagged = [np.asarray(s, float) > threshold_for_flag_rate(s, r) for s, r in zip(scores_by_trial, rates)]
    m = np.tile(np.asarray(mean_dict_sim, float).ravel(), len(scores_by_trial))
    return errors_by_quantile(m, np.concatenate(flagged), np.concatenate(anomalous), n_quantiles)


def error_similarity_correlation(table: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation of quantile index with FN and FP share (Fig. 3's claim: FN rises, FP falls)."""
    from scipy.stats import spearmanr

    def rho(share: pd.Series) -> float:  # undefined (NaN) when the share is constant, e.g. no errors at all
        return float(spearmanr(table["quantile"], share).statistic) if share.nunique() > 1 else float("nan")

    return {"spearman_fn": rho(table["fn_share"]), "spearman_fp": rho(table["fp_share"])}
