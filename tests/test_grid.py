"""The evaluation grid agrees with scoring each trial on its own, and refuses bad requests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bliss_utils.evaluation.grid import (
    COLUMNS,
    EmbeddingSet,
    evaluate_grid,
    few_shot_indices,
    method_scores,
    summarize,
)
from bliss_utils.evaluation.metrics import auroc, fpr95
from bliss_utils.scores.baselines import MCM, RawSimilarity
from bliss_utils.scores.bliss import BLISS


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n_classes, d = 5, 16
    centres = rng.normal(size=(n_classes, d))
    train_labels = np.repeat(np.arange(n_classes), 30)
    test_labels = np.repeat(np.arange(n_classes), 12)
    return EmbeddingSet(
        train=unit(centres[train_labels] + rng.normal(size=(len(train_labels), d))),
        train_labels=train_labels,
        test=unit(centres[test_labels] + rng.normal(size=(len(test_labels), d))),
        test_labels=test_labels,
        class_texts=unit(centres + 0.5 * rng.normal(size=(n_classes, d))),
        dictionary=unit(rng.normal(size=(40, d))),
        encoder="toy",
        dataset="toyset",
    )


SPLITS = {"toy-1": [[0], [3]], "toy-3": [[0, 1, 2], [2, 3, 4]]}


def test_bliss_rows_match_scoring_each_trial_alone(data):
    frame = evaluate_grid(data, SPLITS, methods=("bliss",), lams=(0.25, 1.0), ks=(3, 10), aggregate="max")
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 4 * 2 * 2  # trials x lams x ks
    for row in frame.itertuples():
        normal = SPLITS[row.setting][row.trial]
        model = BLISS(k=int(row.k), lam=row.lam, aggregate="max").fit(
            data.train, data.train_labels, data.class_texts, data.dictionary
        )
        scores = model.score_samples(data.test, normal)
        anomaly = ~np.isin(data.test_labels, normal)
        assert row.auroc == pytest.approx(100 * auroc(scores, anomaly), abs=1e-9)
        assert row.fpr95 == pytest.approx(100 * fpr95(scores, anomaly), abs=1e-9)
        assert (row.dataset, row.encoder) == ("toyset", "toy")


def test_baseline_rows_match_the_baselines(data):
    frame = evaluate_grid(data, SPLITS, methods=("biased-clip", "raw-similarity", "mcm"))
    by = frame.set_index(["method", "setting", "trial"])
    for setting, trials in SPLITS.items():
        for t, normal in enumerate(trials):
            anomaly = ~np.isin(data.test_labels, normal)
            biased = BLISS(lam=0).fit(data.train, data.train_labels, data.class_texts, None)
            assert by.loc[("biased-clip", setting, t), "auroc"] == pytest.approx(
                100 * auroc(biased.score_samples(data.test, normal), anomaly)
            )
            raw = RawSimilarity().fit(data.train, data.train_labels, data.class_texts).score_samples(data.test, normal)
            assert by.loc[("raw-similarity", setting, t), "auroc"] == pytest.approx(100 * auroc(raw, anomaly))
            if len(normal) > 1:
                mcm = MCM().fit(None, None, data.class_texts).score_samples(data.test, normal)
                assert by.loc[("mcm", setting, t), "auroc"] == pytest.approx(100 * auroc(mcm, anomaly))
    # MCM needs at least two normal classes: no rows for single-class settings
    assert set(frame.loc[frame.method == "mcm", "setting"]) == {"toy-3"}
    assert frame.loc[frame.method != "bliss", ["lam", "k"]].isna().all().all()


def test_image_only_methods_use_image_data(data):
    rng = np.random.default_rng(1)
    image = EmbeddingSet(
        train=unit(rng.normal(size=(len(data.train), 7)) + 3 * np.eye(7)[data.train_labels]),
        train_labels=data.train_labels,
        test=unit(rng.normal(size=(len(data.test), 7)) + 3 * np.eye(7)[data.test_labels]),
        test_labels=data.test_labels,
        encoder="toy-image",
    )
    frame = evaluate_grid(data, SPLITS, methods=("dn2", "biased-clip"), image_data=image)
    # each row names the encoder its method ran on
    encoders = frame.groupby("method")["encoder"].unique().map(list).to_dict()
    assert encoders == {"dn2": ["toy-image"], "biased-clip": ["toy"]}
    from bliss_utils.scores.baselines import DN2

    normal = SPLITS["toy-3"][1]
    expected = DN2().fit(image.train, image.train_labels).score_samples(image.test, normal)
    got = frame.query("setting == 'toy-3' and trial == 1 and method == 'dn2'")["auroc"].item()
    assert got == pytest.approx(100 * auroc(expected, ~np.isin(image.test_labels, normal)))


def test_few_shot_uses_one_seeded_draw(data):
    idx = few_shot_indices(data.train_labels, 3, seed=7)
    assert np.array_equal(idx, few_shot_indices(data.train_labels, 3, seed=7))
    assert not np.array_equal(idx, few_shot_indices(data.train_labels, 3, seed=8))
    assert np.bincount(data.train_labels[idx]).tolist() == [3] * 5
    frame = evaluate_grid(data, SPLITS, methods=("bliss",), n_shots=3, seed=7)
    assert (frame["n_shots"] == 3).all()
    normal = SPLITS["toy-3"][0]
    model = BLISS().fit(data.train[idx], data.train_labels[idx], data.class_texts, data.dictionary)
    expected = 100 * auroc(model.score_samples(data.test, normal), ~np.isin(data.test_labels, normal))
    assert frame.query("setting == 'toy-3' and trial == 0")["auroc"].item() == pytest.approx(expected)


def test_summarize_uses_population_std(data):
    frame = evaluate_grid(data, SPLITS, methods=("bliss", "biased-clip"))
    table = summarize(frame)
    row = table.query("method == 'bliss' and setting == 'toy-3'").iloc[0]
    values = frame.query("method == 'bliss' and setting == 'toy-3'")["auroc"].to_numpy()
    assert row["mean"] == pytest.approx(values.mean())
    assert row["std"] == pytest.approx(values.std(ddof=0))
    assert row["n_trials"] == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": ("bliss", "knn")}, "unknown method"),
        ({"splits": {}}, "splits is empty"),
        ({"splits": {"x": [[0, 9]]}}, "unknown class"),
        ({"splits": {"x": [[]]}}, "no normal classes"),
        ({"n_shots": 0}, "n_shots"),
    ],
)
def test_bad_requests_refused(data, kwargs, message):
    args = {"splits": SPLITS, **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate_grid(data, **args)


def test_missing_texts_or_dictionary_refused(data):
    no_dict = EmbeddingSet(data.train, data.train_labels, data.test, data.test_labels, data.class_texts, None)
    with pytest.raises(ValueError, match="dictionary"):
        evaluate_grid(no_dict, SPLITS, methods=("bliss",))
    assert len(evaluate_grid(no_dict, SPLITS, methods=("biased-clip",))) == 4
    no_text = EmbeddingSet(data.train, data.train_labels, data.test, data.test_labels)
    with pytest.raises(ValueError, match="class text"):
        evaluate_grid(no_text, SPLITS, methods=("raw-similarity",))


def test_embedding_set_refuses_mismatched_dimensions(data):
    with pytest.raises(ValueError, match="dimensions disagree"):
        EmbeddingSet(data.train, data.train_labels, data.test[:, :-1], data.test_labels)
    with pytest.raises(ValueError, match="one label per"):
        EmbeddingSet(data.train, data.train_labels[:-1], data.test, data.test_labels)


def test_summarize_by_extra_columns(data):
    frame = evaluate_grid(data, SPLITS, methods=("bliss",))
    both = pd.concat([frame.assign(dictionary="a"), frame.assign(dictionary="b", auroc=frame["auroc"] / 2)])
    table = summarize(both, by=["dictionary"]).set_index(["dictionary", "setting"])["mean"]
    assert table[("b", "toy-3")] == pytest.approx(table[("a", "toy-3")] / 2)
    assert len(table) == 2 * len(SPLITS)


def test_summarize_by_a_column_it_already_groups_by(data):
    frame = evaluate_grid(data, SPLITS, methods=("bliss", "mcm"))
    pd.testing.assert_frame_equal(summarize(frame, by=["method"]), summarize(frame))  # was pandas' "already exists"


def test_one_normal_class_normalisation_cannot_change_the_auroc() -> None:
    """Table 3's first row: with one normal class, IC = (sim_mean - sim) / sigma is a positive affine map of the raw
    score -sim, so w/o (5) and w (5) must have the same AUROC in every trial (the paper's CLIP cell differs)."""
    from bliss_utils.datasets.splits import class_splits

    rng = np.random.default_rng(3)
    texts = rng.normal(size=(10, 16))
    train_labels = np.repeat(np.arange(10), 30)
    test_labels = np.repeat(np.arange(10), 20)
    train = texts[train_labels] * 0.3 + rng.normal(size=(300, 16))
    test = texts[test_labels] * 0.3 + rng.normal(size=(200, 16))
    data = EmbeddingSet(train=train, train_labels=train_labels, test=test, test_labels=test_labels, class_texts=texts)
    frame = evaluate_grid(data, {"cifar10-1": class_splits("cifar10", 1)}, methods=["raw-similarity", "biased-clip"])
    wide = frame.pivot_table(index="trial", columns="method", values="auroc")
    np.testing.assert_allclose(wide["raw-similarity"], wide["biased-clip"], rtol=0, atol=1e-9)
    assert wide["raw-similarity"].std() > 0  # the trials differ, so the equality is not a constant coincidence


def test_seconds_hold_each_trials_own_fit(data, monkeypatch):
    import time

    from bliss_utils.scores import baselines

    fit = baselines.GMM._fit_model

    def slow_fit(self, *args, **kwargs):
        time.sleep(0.3)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(baselines.GMM, "_fit_model", slow_fit)
    frame = evaluate_grid(data, SPLITS, methods=("bliss", "gmm"), progress=False)
    # GMM is fitted once per trial, inside that trial's row; BLISS's rows only score
    assert (frame.loc[frame["method"] == "gmm", "seconds"] >= 0.3).all()
    assert (frame.loc[frame["method"] == "bliss", "seconds"] < 0.3).all()


def test_method_scores_are_the_scores_of_one_trial_of_the_grid(data):
    normal = [0, 2]
    scores = method_scores(data, normal, ["bliss", "raw-similarity", "dn2"], lam=0.5, k=3)
    anomalous = ~np.isin(data.test_labels, normal)
    grid = evaluate_grid(data, {"s": [normal]}, ["bliss", "raw-similarity", "dn2"], lams=[0.5], ks=[3], progress=False)
    for method, s in scores.items():
        assert s.shape == (len(data.test),)
        assert grid.set_index("method").loc[method, "auroc"] == pytest.approx(100 * auroc(s, anomalous))
    bliss = BLISS(k=3, lam=0.5).fit(data.train, data.train_labels, data.class_texts, data.dictionary)
    np.testing.assert_allclose(scores["bliss"], bliss.score_samples(data.test, normal), rtol=1e-6)
    with pytest.raises(ValueError, match="mcm needs at least 2 normal classes"):
        method_scores(data, [1], ["mcm"])
    with pytest.raises(ValueError, match="unknown class"):
        method_scores(data, [9], ["bliss"])
