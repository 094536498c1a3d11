"""BLISS: hand-computed toy, agreement with the plain per-class loop, invariants and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bliss_utils.scores import bliss as bliss_module
from bliss_utils.scores._reference import reference_bliss_scores
from bliss_utils.scores.bliss import BLISS

EPS = 1e-8


def toy():
    """3 classes in 4-D. Class texts e1, e2, e3; dictionary e1, e2, e4; two training images per class."""
    e = np.eye(4)
    class_texts = e[:3]
    dictionary = np.stack([e[0], e[1], e[3]])
    train = np.array(
        [
            [0.6, 0, 0, 0.8],
            [0.8, 0, 0, 0.6],  # class 0: sim to e1 = 0.6, 0.8 -> mu 0.7, sigma 0.1
            [0, 1, 0, 0],
            [0, 0.6, 0, 0.8],  # class 1: sim to e2 = 1, 0.6   -> mu 0.8, sigma 0.2
            [0, 0, 1, 0],
            [0, 0, 0.6, 0.8],  # class 2: sim to e3 = 1, 0.6   -> mu 0.8, sigma 0.2
        ]
    )
    labels = np.array([0, 0, 1, 1, 2, 2])
    test = np.array([[0.8, 0, 0, 0.6]])  # sims: class texts (0.8, 0, 0); dictionary (0.8, 0, 0.6)
    return train, labels, class_texts, dictionary, test


def test_hand_computed_toy():
    train, labels, texts, dic, test = toy()
    model = BLISS(k=2, lam=0.5, eps=EPS).fit(train, labels, texts, dic)
    # Eq. 5: IC = -(sim - mu) / (sigma + eps)
    ic = [-(0.8 - 0.7) / (0.1 + EPS), -(0 - 0.8) / (0.2 + EPS), -(0 - 0.8) / (0.2 + EPS)]
    # D* = {e1 (sim 0.8), e4 (sim 0.6)}. Class 0: e1 -> (0.8-0.7)/0.1, e4 -> (0.6-0.7)/0.1 (its sims to e4: 0.8, 0.6).
    # Classes 1, 2: e1 -> (0.8-0)/(0+eps) (sims all 0), e4 -> (0.6-0.4)/0.4 (sims 0, 0.8 -> mu 0.4, sigma 0.4).
    et0 = ((0.8 - 0.7) / (0.1 + EPS) + (0.6 - 0.7) / (0.1 + EPS)) / 2
    et12 = (0.8 / EPS + 0.2 / (0.4 + EPS)) / 2
    np.testing.assert_allclose(model.ic_scores(test)[0], ic, rtol=1e-9)
    np.testing.assert_allclose(model.et_scores(test)[0], [et0, et12, et12], rtol=1e-9)
    s = np.array(ic) + 0.5 * np.array([et0, et12, et12])
    np.testing.assert_allclose(model.class_scores(test)[0], s, rtol=1e-9)
    assert model.score_samples(test)[0] == pytest.approx(s.min(), rel=1e-9)
    assert model.score_samples(test, normal_classes=[1, 2])[0] == pytest.approx(s[1], rel=1e-9)
    # Eq. 9 as printed: max instead of mean
    model_max = BLISS(k=2, lam=0.5, eps=EPS, aggregate="max").fit(train, labels, texts, dic)
    np.testing.assert_allclose(
        model_max.et_scores(test)[0], [(0.8 - 0.7) / (0.1 + EPS), 0.8 / EPS, 0.8 / EPS], rtol=1e-9
    )
    np.testing.assert_allclose(model.ic_mean_, [0.7, 0.8, 0.8])
    np.testing.assert_allclose(model.ic_std_, [0.1, 0.2, 0.2])


def random_problem(seed=0, n_train=400, d=24, n_classes=6, t=60, n_test=80, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    labels = rng.integers(0, n_classes, n_train)
    train = centres[labels] + rng.normal(size=(n_train, d))
    texts = centres + 0.5 * rng.normal(size=(n_classes, d))
    dic = rng.normal(size=(t, d))
    test = rng.normal(size=(n_test, d)) + centres[rng.integers(0, n_classes, n_test)]
    return tuple(a.astype(dtype) for a in (train, labels, texts, dic, test))


@pytest.mark.parametrize("aggregate", ["mean", "max"])
@pytest.mark.parametrize("k", [1, 5, 10, 60])
@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
def test_agrees_with_plain_loop(aggregate, k, lam):
    train, labels, texts, dic, test = random_problem()
    labels = labels.astype(int)
    model = BLISS(k=k, lam=lam, aggregate=aggregate).fit(train, labels, texts, dic)
    for normal in ([0], [1, 4], list(range(6))):
        expected = reference_bliss_scores(train, labels, texts, dic, test, normal, k, lam, EPS, aggregate)
        np.testing.assert_allclose(model.score_samples(test, normal), expected, rtol=0, atol=1e-10)


def test_covariance_path_agrees_with_plain_loop():
    # many images per class, few dimensions: class_moments takes the covariance route
    train, labels, texts, dic, test = random_problem(seed=1, n_train=5000, d=8, t=300)
    labels = labels.astype(int)
    model = BLISS().fit(train, labels, texts, dic)
    expected = reference_bliss_scores(train, labels, texts, dic, test, list(range(6)))
    np.testing.assert_allclose(model.score_samples(test), expected, rtol=0, atol=1e-10)


def test_chunking_changes_nothing(monkeypatch):
    train, labels, texts, dic, test = random_problem(seed=2)
    full = BLISS().fit(train, labels.astype(int), texts, dic).class_scores(test)
    monkeypatch.setattr(bliss_module, "CHUNK_BYTES", 1)  # one test image per chunk
    chunked = BLISS().fit(train, labels.astype(int), texts, dic).class_scores(test)
    np.testing.assert_allclose(full, chunked, rtol=0, atol=1e-12)  # BLAS may round a 1-row product differently


def test_lam_zero_is_biased_clip():
    from bliss_utils.scores.baselines import BiasedCLIP

    train, labels, texts, dic, test = random_problem(seed=3)
    labels = labels.astype(int)
    bliss0 = BLISS(lam=0.0).fit(train, labels, texts, dic)
    biased = BiasedCLIP().fit(train, labels, texts)
    for normal in ([2], [0, 3, 5]):
        np.testing.assert_allclose(bliss0.score_samples(test, normal), biased.score_samples(test, normal), atol=1e-12)


def test_dictionary_permutation_changes_nothing():
    train, labels, texts, dic, test = random_problem(seed=4)
    labels = labels.astype(int)
    perm = np.random.default_rng(0).permutation(len(dic))
    a = BLISS().fit(train, labels, texts, dic).class_scores(test)
    b = BLISS().fit(train, labels, texts, dic[perm]).class_scores(test)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_rescaling_inputs_changes_nothing():
    train, labels, texts, dic, test = random_problem(seed=5)
    labels = labels.astype(int)
    rng = np.random.default_rng(1)

    def rescale(a):
        return a * rng.uniform(0.1, 10, size=(len(a), 1))

    a = BLISS().fit(train, labels, texts, dic).class_scores(test)
    b = BLISS().fit(rescale(train), labels, rescale(texts), rescale(dic)).class_scores(rescale(test))
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_split_score_is_min_of_its_class_columns():
    train, labels, texts, dic, test = random_problem(seed=6)
    model = BLISS().fit(train, labels.astype(int), texts, dic)
    cols = model.class_scores(test)
    for normal in ([3], [0, 2], [1, 2, 5]):
        np.testing.assert_allclose(model.score_samples(test, normal), cols[:, normal].min(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.score_samples(test), cols.min(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(cols, model.ic_scores(test) + 0.5 * model.et_scores(test), atol=1e-12)


def test_components_give_ic_and_et_for_several_k_in_one_pass():
    train, labels, texts, dic, test = random_problem(seed=18)
    labels = labels.astype(int)
    ic, et = BLISS().fit(train, labels, texts, dic).components(test, ks=[3, 10])
    assert sorted(et) == [3, 10]
    for k in (3, 10):
        np.testing.assert_allclose(et[k], BLISS(k=k).fit(train, labels, texts, dic).et_scores(test), atol=1e-12)
    np.testing.assert_allclose(ic, BLISS().fit(train, labels, texts, dic).ic_scores(test), atol=1e-12)


def test_unfitted_classes_are_nan_columns_and_refused_as_normal():
    train, labels, texts, dic, test = random_problem(seed=7)
    labels = labels.astype(int)
    keep = labels != 4
    model = BLISS().fit(train[keep], labels[keep], texts, dic)
    cols = model.class_scores(test)
    assert cols.shape == (len(test), 6)
    assert np.isnan(cols[:, 4]).all() and not np.isnan(np.delete(cols, 4, axis=1)).any()
    np.testing.assert_array_equal(model.classes_, [0, 1, 2, 3, 5])
    np.testing.assert_allclose(model.score_samples(test), np.delete(cols, 4, axis=1).min(axis=1), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="no training images"):
        model.score_samples(test, normal_classes=[3, 4])


def test_torch_float32_and_float64():
    torch = pytest.importorskip("torch")
    train, labels, texts, dic, test = random_problem(seed=8)
    labels = labels.astype(int)
    ref = BLISS().fit(train, labels, texts, dic).score_samples(test)
    model32 = BLISS().fit(
        *(torch.from_numpy(a.astype(np.float32)) for a in (train,)),
        torch.from_numpy(labels),
        torch.from_numpy(texts.astype(np.float32)),
        torch.from_numpy(dic.astype(np.float32)),
    )
    s32 = model32.score_samples(torch.from_numpy(test.astype(np.float32)))
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, ref, rtol=1e-4, atol=1e-4)
    assert BLISS().fit(train, labels, texts, dic).score_samples(test).dtype == np.float64


def test_single_image_class_warns_and_works():
    train, labels, texts, dic, test = random_problem(seed=9)
    labels = labels.astype(int)
    first_of_0 = np.flatnonzero(labels == 0)[:1]
    keep = np.concatenate([first_of_0, np.flatnonzero(labels != 0)])
    with pytest.warns(UserWarning, match="single training image"):
        model = BLISS().fit(train[keep], labels[keep], texts, dic)
    assert model.ic_std_[0] == 0
    assert np.isfinite(model.score_samples(test, [0])).all()


# ------------------------------------------------------------------ bad input
def fitted():
    train, labels, texts, dic, test = random_problem(seed=10)
    return BLISS().fit(train, labels.astype(int), texts, dic), test


@pytest.mark.parametrize("name", ["train", "texts", "dic"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_refused(name, bad):
    train, labels, texts, dic, _ = random_problem(seed=11)
    arrays = {"train": train.copy(), "texts": texts.copy(), "dic": dic.copy()}
    arrays[name][1, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        BLISS().fit(arrays["train"], labels.astype(int), arrays["texts"], arrays["dic"])


def test_non_finite_test_refused():
    model, test = fitted()
    test = test.copy()
    test[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.score_samples(test)


def test_zero_vectors_refused():
    train, labels, texts, dic, test = random_problem(seed=12)
    dic = dic.copy()
    dic[5] = 0
    with pytest.raises(ValueError, match="zero vector"):
        BLISS().fit(train, labels.astype(int), texts, dic)
    model, test = fitted()
    test = test.copy()
    test[0] = 0
    with pytest.raises(ValueError, match="zero vector"):
        model.score_samples(test)


def test_dimension_mismatch_refused():
    train, labels, texts, dic, test = random_problem(seed=13)
    with pytest.raises(ValueError, match="dimensions disagree"):
        BLISS().fit(train, labels.astype(int), texts, dic[:, :-1])
    model, test = fitted()
    with pytest.raises(ValueError, match="dimension"):
        model.score_samples(test[:, :-2])


def test_labels_outside_class_texts_refused():
    train, labels, texts, dic, _ = random_problem(seed=14)
    labels = labels.astype(int)
    labels[0] = 6
    with pytest.raises(ValueError, match="outside the 6 class texts"):
        BLISS().fit(train, labels, texts, dic)
    labels[0] = -1
    with pytest.raises(ValueError, match="outside"):
        BLISS().fit(train, labels, texts, dic)
    with pytest.raises(ValueError, match="length"):
        BLISS().fit(train, labels[:-1], texts, dic)


def test_k_larger_than_dictionary_refused():
    train, labels, texts, dic, _ = random_problem(seed=15, t=8)
    with pytest.raises(ValueError, match="larger than the dictionary"):
        BLISS(k=9).fit(train, labels.astype(int), texts, dic)


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 2.5}, {"lam": np.nan}, {"eps": -1.0}, {"aggregate": "median"}])
def test_bad_parameters_refused(kwargs):
    train, labels, texts, dic, _ = random_problem(seed=16)
    with pytest.raises(ValueError):
        BLISS(**kwargs).fit(train, labels.astype(int), texts, dic)


def test_empty_and_unknown_normal_classes_refused():
    model, test = fitted()
    with pytest.raises(ValueError, match="empty"):
        model.score_samples(test, normal_classes=[])
    with pytest.raises(ValueError, match="unknown class"):
        model.score_samples(test, normal_classes=[0, 17])


def test_scoring_before_fit_refused():
    _, test = fitted()
    for method in ("ic_scores", "et_scores", "class_scores", "score_samples"):
        with pytest.raises(ValueError, match="not fitted"):
            getattr(BLISS(), method)(test)


def test_without_dictionary_only_lam_zero_scores():
    train, labels, texts, _, test = random_problem(seed=17)
    model = BLISS(lam=0.0).fit(train, labels.astype(int), texts, None)
    assert model.score_samples(test).shape == (len(test),)
    with pytest.raises(ValueError, match="without dictionary"):
        model.et_scores(test)
    with pytest.raises(ValueError, match="only lam = 0"):
        BLISS(lam=0.5).fit(train, labels.astype(int), texts, None)


# ------------------------------------------------------------------ properties
@settings(max_examples=40, deadline=None)
@given(
    n_train=st.integers(2, 40),
    d=st.integers(2, 12),
    n_classes=st.integers(1, 5),
    t=st.integers(1, 30),
    n_test=st.integers(1, 20),
    k=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_shapes_and_agreement_property(n_train, d, n_classes, t, n_test, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_train)
    train, texts = rng.normal(size=(n_train, d)), rng.normal(size=(n_classes, d))
    dic, test = rng.normal(size=(t, d)), rng.normal(size=(n_test, d))
    if k > t:
        with pytest.raises(ValueError, match="larger than the dictionary"):
            BLISS(k=k).fit(train, labels, texts, dic)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BLISS(k=k).fit(train, labels, texts, dic)
    fitted_classes = np.unique(labels)
    for method in ("ic_scores", "et_scores", "class_scores"):
        out = getattr(model, method)(test)
        assert out.shape == (n_test, n_classes)
        assert np.isnan(out).all(axis=0).sum() == n_classes - fitted_classes.size
    scores = model.score_samples(test)
    assert scores.shape == (n_test,)
    expected = reference_bliss_scores(train, labels, texts, dic, test, list(fitted_classes), k)
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max()))


@settings(max_examples=30, deadline=None)
@given(
    row=st.integers(0, 9),
    col=st.integers(0, 5),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    which=st.sampled_from(["train", "test"]),
)
def test_non_finite_anywhere_is_refused_property(row, col, value, which):
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(10, 6)), rng.normal(size=(10, 6))
    labels = np.arange(10) % 2
    texts, dic = rng.normal(size=(2, 6)), rng.normal(size=(12, 6))
    target = train if which == "train" else test
    target[row, col] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        BLISS().fit(train, labels, texts, dic).score_samples(test)


def test_score_grid_equals_one_fit_per_variant_against_the_plain_loop():
    # BLISS's shared path (one fit at the largest K, one dictionary search) against the plain reference per variant
    train, labels, texts, dic, test = random_problem(seed=5)
    labels = labels.astype(int)
    variants = [{"lam": lam, "k": k} for lam in (0.0, 0.5, 2.0) for k in (1, 7, 60)]
    sets = [[1], [0, 2, 5]]
    got = list(BLISS(aggregate="max").score_grid((train, labels, texts, dic), test, sets, variants))
    assert [(v, s) for v, s, _ in got] == [(v, s) for v in range(len(variants)) for s in range(len(sets))]
    for v, s, scores in got:
        p = variants[v]
        expected = reference_bliss_scores(train, labels, texts, dic, test, sets[s], p["k"], p["lam"], EPS, "max")
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-10)


def test_score_grid_without_dictionary_refuses_lam():
    train, labels, texts, _, test = random_problem(seed=6)
    with pytest.raises(ValueError, match="lam != 0 needs dictionary_embeddings"):
        BLISS(lam=0.0).score_grid((train, labels.astype(int), texts, None), test, [[0]], [{"lam": 0.5}])


def test_components_at_min_are_those_of_the_class_attaining_the_min():
    train, labels, texts, dic, test = random_problem(seed=4)
    model = BLISS(k=5, lam=0.7).fit(train, labels.astype(int), texts, dic)
    normal = [1, 3, 4]
    ic, et = model.components_at_min(test, normal)
    cols = model.class_scores(test)[:, normal]
    best = np.asarray(normal)[cols.argmin(axis=1)]
    rows = np.arange(len(test))
    np.testing.assert_allclose(ic, model.ic_scores(test)[rows, best], rtol=0, atol=1e-12)
    np.testing.assert_allclose(et, model.et_scores(test)[rows, best], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ic + 0.7 * et, model.score_samples(test, normal), rtol=0, atol=1e-12)
    assert len(set(best.tolist())) > 1  # the min moves between classes, so the pairing is exercised


def test_nearest_entries_are_the_dictionary_entries_of_the_external_text_score():
    train, labels, texts, dic, test = toy()
    model = BLISS(k=2, lam=1.0).fit(train, labels, texts, dic)
    assert model.nearest_entries(test).tolist() == [[0, 2]]  # sims to the dictionary: 0.8, 0, 0.6
    rng = np.random.default_rng(1)
    big = rng.normal(size=(40, 4))
    words = rng.normal(size=(25, 4))
    model = BLISS(k=3).fit(train, labels, texts, words)
    sims = (big / np.linalg.norm(big, axis=1, keepdims=True)) @ (words / np.linalg.norm(words, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(model.nearest_entries(big), np.argsort(-sims, axis=1)[:, :3])
    with pytest.raises(ValueError, match="without dictionary_embeddings"):
        BLISS(lam=0.0).fit(train, labels, texts, None).nearest_entries(test)
