"""Baseline scorers: quality floors (catch sign flips), hand-computed toys, PyOD cross-checks, caching and errors."""

import contextlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bliss_utils.evaluation.metrics import auroc
from bliss_utils.scores.baselines import DN2, GMM, LUNAR, MCM, BiasedCLIP, RawSimilarity
from bliss_utils.scores.bliss import BLISS
from bliss_utils.scores.methods import make_method, method_names

TINY_LUNAR = {"n_epochs": 5, "torch_threads": 1}  # one thread: far faster for tiny fits on a busy machine
ALL_SCORERS = [
    lambda: RawSimilarity(),
    lambda: BiasedCLIP(),
    lambda: MCM(),
    lambda: DN2(),
    lambda: GMM(),
    lambda: LUNAR(**TINY_LUNAR),
]
IDS = ["raw-similarity", "biased-clip", "mcm", "dn2", "gmm", "lunar"]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    """Gaussian 'embeddings': 4 classes (0-2 normal, 3 anomalous), texts near their class centres."""
    rng = np.random.default_rng(0)
    d, n_classes = 16, 4
    centres = _unit(rng.normal(size=(n_classes, d)))
    texts = _unit(centres + 0.15 * rng.normal(size=(n_classes, d)))
    train_labels = np.repeat(np.arange(n_classes), 60)
    train = centres[train_labels] + 0.25 * rng.normal(size=(train_labels.size, d))
    test_labels = np.repeat(np.arange(n_classes), 30)
    test = centres[test_labels] + 0.25 * rng.normal(size=(test_labels.size, d))
    return {"train": train, "train_labels": train_labels, "test": test, "test_labels": test_labels, "texts": texts}


def _fit(scorer, data, normal=None):
    train, labels = data["train"], data["train_labels"]
    if normal is not None:  # train on the normal classes only, as the protocol does
        keep = np.isin(labels, normal)
        train, labels = train[keep], labels[keep]
    return scorer.fit(train, labels, data["texts"])


# ------------------------------------------------------------------ quality floor and direction


@pytest.mark.parametrize("make", ALL_SCORERS, ids=IDS)
def test_quality_floor_on_shifted_anomalies(make, data):
    normal = [0, 1, 2]
    scorer = _fit(make(), data)
    scores = scorer.score_samples(data["test"], normal)
    assert scores.shape == (data["test"].shape[0],) and np.isfinite(scores).all()
    assert auroc(scores, data["test_labels"] == 3) >= 0.8


@pytest.mark.parametrize("make", ALL_SCORERS, ids=IDS)
def test_scale_invariance_and_none_means_all_fitted(make, data):
    normal = [0, 1, 2]
    a = _fit(make(), data, normal)
    b = make().fit(
        7.5 * data["train"][np.isin(data["train_labels"], normal)],
        data["train_labels"][np.isin(data["train_labels"], normal)],
        0.2 * data["texts"],
    )
    np.testing.assert_allclose(a.score_samples(data["test"]), b.score_samples(3.0 * data["test"]), rtol=1e-5, atol=1e-6)
    if not isinstance(a, MCM):  # MCM is zero-shot: every class text can be normal
        np.testing.assert_array_equal(a.classes_, normal)
        np.testing.assert_allclose(a.score_samples(data["test"]), a.score_samples(data["test"], normal))


@pytest.mark.parametrize("make", ALL_SCORERS, ids=IDS)
def test_scoring_before_fit_is_an_error(make, data):
    with pytest.raises(ValueError, match="not fitted"):
        make().score_samples(data["test"])


@pytest.mark.parametrize("make", ALL_SCORERS + [lambda: BLISS(lam=0.0)], ids=IDS + ["bliss"])
def test_sklearn_estimator_contract(make, data):
    from sklearn.base import BaseEstimator, clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    scorer = make()
    assert isinstance(scorer, BaseEstimator)
    with pytest.raises(NotFittedError):
        check_is_fitted(scorer)
    _fit(scorer, data) if not isinstance(scorer, BLISS) else scorer.fit(
        data["train"], data["train_labels"], data["texts"], None
    )
    check_is_fitted(scorer)
    copy = clone(scorer)
    assert type(copy) is type(scorer) and copy.get_params() == scorer.get_params()
    with pytest.raises(NotFittedError):  # clone gives back parameters only, no fitted state
        check_is_fitted(copy)
    params = scorer.get_params()
    if params:  # set_params round-trips and rejects unknown names (sklearn's own implementation)
        name = min(params)
        assert copy.set_params(**{name: params[name]}).get_params()[name] == params[name]
    with pytest.raises(ValueError, match="Invalid parameter"):
        copy.set_params(banana=1)


# ------------------------------------------------------------------ text scorers by hand

E = np.eye(3)


def test_raw_similarity_by_hand():
    texts = E[:2]
    x = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 2.0]])
    scorer = RawSimilarity().fit(None, None, texts)
    np.testing.assert_allclose(scorer.score_samples(x, [0]), [-0.6, 0.0])
    np.testing.assert_allclose(scorer.score_samples(x, [0, 1]), [-0.8, 0.0])
    np.testing.assert_allclose(scorer.score_samples(x), [-0.8, 0.0])


def test_mcm_by_hand():
    texts = E[:2]
    x = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    e = np.e
    scorer = MCM().fit(None, None, texts)
    # cos = [1, 0] -> max softmax e / (e + 1); equal cosines -> 1/2
    np.testing.assert_allclose(scorer.score_samples(x), [-e / (e + 1), -0.5, -0.5])
    hot = MCM(temperature=0.5).fit(None, None, texts)
    np.testing.assert_allclose(hot.score_samples(x[:1]), [-(e**2) / (e**2 + 1)])


def test_mcm_is_stable_at_low_temperature():
    texts = E[:2]
    scores = MCM(temperature=1e-4).fit(None, None, texts).score_samples(np.array([[1.0, 0.5, 0.0]]))
    np.testing.assert_allclose(scores, [-1.0])


def test_mcm_needs_two_normal_classes(data):
    scorer = MCM().fit(None, None, data["texts"])
    with pytest.raises(ValueError, match="at least 2 normal classes"):
        scorer.score_samples(data["test"], [1])
    with pytest.raises(ValueError, match="temperature"):
        MCM(temperature=0).fit(None, None, data["texts"])


def test_biased_clip_equals_equation_5_and_bliss_lam0(data):
    normal = [0, 2]
    scorer = _fit(BiasedCLIP(), data)
    z, texts, x = _unit(data["train"]), _unit(data["texts"]), _unit(data["test"])
    cols = []
    for c in normal:
        sims = z[data["train_labels"] == c] @ texts[c]
        cols.append(-(x @ texts[c] - sims.mean()) / (sims.std(ddof=0) + 1e-8))
    expected = np.min(cols, axis=0)
    np.testing.assert_allclose(scorer.score_samples(data["test"], normal), expected, rtol=1e-10, atol=1e-10)
    bliss = BLISS(lam=0.0).fit(data["train"], data["train_labels"], data["texts"], None)
    np.testing.assert_allclose(scorer.score_samples(data["test"], normal), bliss.score_samples(data["test"], normal))
    np.testing.assert_allclose(scorer.ic_scores(data["test"])[:, normal], np.stack(cols, axis=1), rtol=1e-10)


# ------------------------------------------------------------------ DN2


def _pyod_knn(train, test, k=5):
    from pyod.models.knn import KNN

    return KNN(n_neighbors=k, method="mean").fit(_unit(train)).decision_function(_unit(test))


@pytest.mark.parametrize("normal", [[0, 1, 2, 3], [1], [0, 3]])
def test_dn2_matches_pyod_knn_mean(data, normal):
    scorer = _fit(DN2(k=5), data)
    keep = np.isin(data["train_labels"], normal)
    expected = _pyod_knn(data["train"][keep], data["test"])
    np.testing.assert_allclose(scorer.score_samples(data["test"], normal), expected, rtol=1e-9, atol=1e-9)


def test_dn2_float32_close_to_pyod(data):
    scorer = DN2(k=3).fit(data["train"].astype(np.float32), data["train_labels"])
    scores = scorer.score_samples(data["test"].astype(np.float32), [0, 1])
    keep = np.isin(data["train_labels"], [0, 1])
    np.testing.assert_allclose(scores, _pyod_knn(data["train"][keep], data["test"], k=3), atol=2e-3)


def test_dn2_cache_follows_the_test_set(data):
    scorer = _fit(DN2(), data)
    first = scorer.score_samples(data["test"], [0, 1])
    other = data["test"][::-1].copy()
    fresh = _fit(DN2(), data).score_samples(other, [0, 1])
    np.testing.assert_allclose(scorer.score_samples(other, [0, 1]), fresh)
    np.testing.assert_allclose(scorer.score_samples(data["test"], [0, 1]), first)


def test_dn2_small_classes_and_too_few_images():
    rng = np.random.default_rng(1)
    train, labels = rng.normal(size=(7, 5)), np.array([0, 0, 1, 1, 1, 2, 2])
    test = rng.normal(size=(4, 5))
    scorer = DN2(k=4).fit(train, labels)
    keep = labels != 2
    np.testing.assert_allclose(scorer.score_samples(test, [0, 1]), _pyod_knn(train[keep], test, k=4), atol=1e-9)
    with pytest.raises(ValueError, match="larger than the 2 training images"):
        scorer.score_samples(test, [2])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        DN2(k=0).fit(train, labels)


# ------------------------------------------------------------------ GMM and LUNAR: lazy per-subset fits


def test_gmm_fits_once_per_subset_with_one_component_per_class(data):
    scorer = _fit(GMM(), data)
    assert scorer.models_ == {}
    a = scorer.score_samples(data["test"], [0, 1])
    b = scorer.score_samples(data["test"], [1, 0])
    assert list(scorer.models_) == [frozenset({0, 1})]
    np.testing.assert_array_equal(a, b)
    assert scorer.models_[frozenset({0, 1})]["means"].shape[0] == 2
    full = scorer.score_samples(data["test"])
    assert len(scorer.models_) == 2 and scorer.models_[frozenset({0, 1, 2, 3})]["means"].shape[0] == 4
    assert not np.allclose(full, a)
    # a model fitted on classes {0, 1} alone is the same model
    keep = np.isin(data["train_labels"], [0, 1])
    alone = GMM().fit(data["train"][keep], data["train_labels"][keep]).score_samples(data["test"])
    np.testing.assert_allclose(a, alone, rtol=1e-8)


def _sklearn_gmm_from_classes(z, labels, reg_covar, max_iter, tol):
    """scikit-learn's GaussianMixture started from the labelled classes (proportions, means, covariances)."""
    from sklearn.mixture import GaussianMixture

    classes, counts = np.unique(labels, return_counts=True)
    d = z.shape[1]
    covs = [np.cov(z[labels == c], rowvar=False, bias=True) + reg_covar * np.eye(d) for c in classes]
    gm = GaussianMixture(
        len(classes),
        covariance_type="full",
        reg_covar=reg_covar,
        max_iter=max_iter,
        tol=tol,
        weights_init=counts / counts.sum(),
        means_init=np.stack([z[labels == c].mean(0) for c in classes]),
        precisions_init=np.stack([np.linalg.inv(c) for c in covs]),
        init_params="random_from_data",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" for max_iter=1
        return gm.fit(z)


@pytest.mark.parametrize("max_iter, tol", [(1, 1e-3), (4, 0.0), (100, 1e-3)])
def test_gmm_matches_sklearn_gaussian_mixture(data, max_iter, tol):
    normal = [0, 1, 2]
    keep = np.isin(data["train_labels"], normal)
    z, labels = _unit(data["train"][keep]), data["train_labels"][keep]
    reference = _sklearn_gmm_from_classes(z, labels, 1e-3, max_iter, tol)
    scorer = GMM(reg_covar=1e-3, max_iter=max_iter, tol=tol).fit(z, labels)
    scores = scorer.score_samples(data["test"])
    np.testing.assert_allclose(scores, -reference.score_samples(_unit(data["test"])), rtol=1e-7, atol=1e-7)
    assert scorer.models_[frozenset(normal)]["n_iter"] == reference.n_iter_


def test_gmm_one_component_is_the_normal_gaussian(data):
    from scipy.stats import multivariate_normal

    normal = [0, 1, 2]
    keep = np.isin(data["train_labels"], normal)
    z = _unit(data["train"][keep])
    scores = GMM(components="one", reg_covar=1e-4).fit(z, data["train_labels"][keep]).score_samples(data["test"])
    cov = np.cov(z, rowvar=False, bias=True) + 1e-4 * np.eye(z.shape[1])
    expected = -multivariate_normal(z.mean(axis=0), cov).logpdf(_unit(data["test"]))
    np.testing.assert_allclose(scores, expected, rtol=1e-7)
    assert auroc(scores, data["test_labels"] == 3) >= 0.8


def test_gmm_cache_keeps_recent_models_and_refits_identically(data):
    from bliss_utils.scores.baselines import MAX_CACHED_MODELS

    scorer = _fit(GMM(), data)
    subsets = [[0], [1], [2], [3], [0, 1], [2, 3]][: MAX_CACHED_MODELS + 2]
    first = [scorer.score_samples(data["test"], s) for s in subsets]
    assert len(scorer.models_) == MAX_CACHED_MODELS
    assert frozenset(subsets[0]) not in scorer.models_ and frozenset(subsets[-1]) in scorer.models_
    np.testing.assert_array_equal(scorer.score_samples(data["test"], subsets[0]), first[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"components": "banana"}, "components"),
        ({"reg_covar": -1}, "reg_covar"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": np.nan}, "tol"),
    ],
)
def test_gmm_bad_params(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit(GMM(**kwargs), data)


def test_lunar_is_seeded_and_cached(data):
    import torch

    state = torch.random.get_rng_state()
    a = _fit(LUNAR(**TINY_LUNAR), data).score_samples(data["test"], [0, 1])
    assert torch.equal(state, torch.random.get_rng_state())  # fitting leaves the caller's torch stream alone
    torch.manual_seed(123)
    scorer = _fit(LUNAR(**TINY_LUNAR), data)
    b = scorer.score_samples(data["test"], [0, 1])
    np.testing.assert_array_equal(a, b)
    model = scorer.models_[frozenset({0, 1})]
    assert (model.n_neighbours, model.random_state, model.n_epochs) == (5, 0, TINY_LUNAR["n_epochs"])


@contextlib.contextmanager
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _pyod_reference(z, test, n_epochs):
    """PyOD's own LUNAR (scikit-learn neighbour search) fitted on z and its test scores, on one torch thread as ours
    runs here (matrix products may round differently on other thread counts), outside the caller's random stream."""
    import torch
    from pyod.models.lunar import LUNAR as PyODLUNAR
    from sklearn.preprocessing import MinMaxScaler

    with _one_torch_thread(), torch.random.fork_rng(devices=[]):
        model = PyODLUNAR(n_epochs=n_epochs, scaler=MinMaxScaler(), random_state=0).fit(z)
        return model, model.decision_function(test)


@pytest.fixture(scope="module")
def lunar_case(data):
    """Normal classes 0-2, their labels, PyOD's LUNAR (12 epochs) fitted on the images exactly as our scorer stores
    them (L2-normalised float32), and the test images exactly as our scorer scores them."""
    keep = np.isin(data["train_labels"], [0, 1, 2])
    z, labels = data["train"][keep].astype(np.float32), data["train_labels"][keep]
    stored = LUNAR().fit(z, labels)  # fit only stores; the model is fitted on the first score_samples
    test = stored._prepare(data["test"].astype(np.float32))
    return (z, labels, test, *_pyod_reference(stored.train_, test, 12))


def test_lunar_fit_is_pyods_bit_for_bit_with_pyods_search(lunar_case, monkeypatch):
    """With scikit-learn's index swapped back in, the fast fit reproduces PyOD's weights and scores exactly."""
    import torch
    from sklearn.neighbors import NearestNeighbors

    from bliss_utils.scores import lunar

    z, labels, test, reference, expected = lunar_case
    monkeypatch.setattr(lunar, "_neighbour_index", lambda k, device: NearestNeighbors(n_neighbors=k))
    scorer = LUNAR(n_epochs=12, torch_threads=1).fit(z, labels)
    scorer.score_samples(test)
    model = scorer.models_[frozenset({0, 1, 2})]
    assert type(model.neigh) is NearestNeighbors
    for ours, theirs in zip(model.network.state_dict().values(), reference.network.state_dict().values()):
        assert torch.equal(ours, theirs)
    np.testing.assert_array_equal(model.decision_scores_, reference.decision_scores_)
    with _one_torch_thread():  # on exactly PyOD's test array (score_samples would L2-normalise it once more)
        np.testing.assert_array_equal(model.decision_function(test), expected)
    # PyOD keeps the last epoch whose validation AUROC is the highest so far
    val = np.asarray(model.val_scores_)
    assert val.size == 12 and model.best_epoch_ == np.flatnonzero(val == val.max())[-1]


def test_lunar_matches_pyod_lunar(lunar_case):
    """Same seed, same data: PyOD's own LUNAR and ours (blocked search) agree to float32 rounding."""
    z, labels, test, reference, expected = lunar_case
    scorer = LUNAR(n_epochs=12, torch_threads=1).fit(z, labels)
    scores = scorer.score_samples(test)
    model = scorer.models_[frozenset({0, 1, 2})]
    assert type(model.neigh).__name__ == "BlockedKNN" and type(reference.neigh).__name__ == "NearestNeighbors"
    np.testing.assert_allclose(model.decision_scores_, reference.decision_scores_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    # the neighbour distances themselves, on the index PyOD built (normals + negatives)
    q = model.scaler_.transform(test)
    np.testing.assert_allclose(model.neigh.kneighbors(q, 5)[0], reference.neigh.kneighbors(q, 5)[0], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_neighbours": 0}, "n_neighbours"),
        ({"n_epochs": 1.5}, "n_epochs"),
        ({"model_type": "X"}, "model_type"),
        ({"val_size": 1.0}, "val_size"),
    ],
)
def test_lunar_bad_params(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit(LUNAR(**kwargs), data)


def test_lunar_needs_enough_images():
    rng = np.random.default_rng(0)
    scorer = LUNAR(**TINY_LUNAR).fit(rng.normal(size=(12, 4)), np.repeat([0, 1], 6))
    with pytest.raises(ValueError, match="more than n_neighbours"):
        scorer.score_samples(rng.normal(size=(3, 4)), [0])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("make", ALL_SCORERS, ids=IDS)
def test_bad_input(make, data):
    train, labels, texts, test = data["train"], data["train_labels"], data["texts"], data["test"]
    bad = train.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        make().fit(bad, labels, texts)
    zero = train.copy()
    zero[5] = 0
    with pytest.raises(ValueError, match="zero vector"):
        make().fit(zero, labels, texts)
    scorer = make().fit(train[labels < 3], labels[labels < 3], texts)
    with pytest.raises(ValueError, match="embedding dimension"):
        scorer.score_samples(test[:, :-1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        scorer.score_samples(np.full_like(test, np.inf))
    with pytest.raises(ValueError, match="zero vector"):
        scorer.score_samples(np.zeros_like(test))
    with pytest.raises(ValueError, match="normal_classes is empty"):
        scorer.score_samples(test, [])
    with pytest.raises(ValueError, match="unknown class"):
        scorer.score_samples(test, [0, 17])
    if not isinstance(scorer, MCM):
        with pytest.raises(ValueError, match="no training images"):
            scorer.score_samples(test, [0, 3])
    with pytest.raises(ValueError, match="outside the 4 class texts"):
        make().fit(train, np.where(labels == 3, 4, labels), texts)


@pytest.mark.parametrize("make", [RawSimilarity, BiasedCLIP, MCM], ids=["raw-similarity", "biased-clip", "mcm"])
def test_text_scorers_check_text_dimension(make, data):
    with pytest.raises(ValueError, match="dimensions disagree"):
        make().fit(data["train"], data["train_labels"], data["texts"][:, :-1])
    with pytest.raises(ValueError, match="class_text_embeddings is required"):
        make().fit(data["train"], data["train_labels"], None)


def test_image_scorers_ignore_text_dimension(data):
    # image-only baselines may run on ViT-21k embeddings while the class texts come from CLIP
    scorer = DN2().fit(data["train"], data["train_labels"], np.ones((4, 3)))
    assert scorer.n_classes_ == 4 and scorer.score_samples(data["test"], [0]).shape == (data["test"].shape[0],)


@settings(max_examples=25, deadline=None)
@given(
    n_train=st.integers(6, 30),
    n_test=st.integers(1, 12),
    dim=st.integers(2, 9),
    n_cls=st.integers(2, 4),
    seed=st.integers(0, 2**16),
)
def test_shapes_property(n_train, n_test, dim, n_cls, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n_train) % n_cls
    with warnings.catch_warnings():  # classes with a single image warn (BLISS's std-0 warning)
        warnings.simplefilter("ignore")
        _check_shapes(rng, labels, n_train, n_test, dim, n_cls)


def _check_shapes(rng, labels, n_train, n_test, dim, n_cls):
    train, test, texts = rng.normal(size=(n_train, dim)), rng.normal(size=(n_test, dim)), rng.normal(size=(n_cls, dim))
    for scorer in (RawSimilarity(), BiasedCLIP(), MCM(), DN2(k=2)):  # class 0 has >= 2 images
        scorer.fit(train, labels, texts)
        out = scorer.score_samples(test)
        assert out.shape == (n_test,) and np.isfinite(out).all()
        if not isinstance(scorer, MCM):
            # one class's score is the min over a set containing it: never below the all-class score
            assert (scorer.score_samples(test, [0]) >= out - 1e-12).all()


def test_import_stays_light():
    code = (
        "import sys, bliss_utils, bliss_utils.scores.baselines, bliss_utils.evaluation.metrics, "
        "bliss_utils.datasets.splits, bliss_utils.evaluation.reported;"
        "heavy = [m for m in ('torch', 'pyod', 'open_clip', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fitted_lunar_pickles_and_scores_the_same(data):
    import pickle

    scorer = _fit(LUNAR(**TINY_LUNAR), data)
    before = scorer.score_samples(data["test"], [0, 1])
    again = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_array_equal(again.score_samples(data["test"], [0, 1]), before)


# ------------------------------------------------------------------ every method of the table pickles


def _small_params(name, d, n_classes):
    rng = np.random.default_rng(5)
    params = {
        "lunar": {"n_epochs": 3},
        "ssd-cmle": {"epochs": 1, "progress": False},
        "gmm": {"progress": False},
        "agnostic-pair": {"pairs": rng.normal(size=(2, d))},
        "agnostic-cpe": {"pairs": rng.normal(size=(2, d))},
        "anomalyclip": {"pairs": rng.normal(size=(2, d))},
        "object-aware-cpe": {"pairs": rng.normal(size=(n_classes, 2, d))},
    }
    return params.get(name, {})


@pytest.mark.parametrize("name", method_names())
def test_every_fitted_method_pickles_and_scores_the_same(name, data):
    import pickle

    n_classes, d = data["texts"].shape
    dictionary = _unit(np.random.default_rng(6).normal(size=(40, d)))
    scorer = make_method(name, **_small_params(name, d, n_classes))
    if "progress" in scorer.get_params():
        scorer.set_params(progress=False)
    scorer.fit(data["train"], data["train_labels"], data["texts"], dictionary)
    normal = [0, 1, 2]
    before = scorer.score_samples(data["test"], normal)  # lazily fitted models are fitted (and pickled) too
    again = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_array_equal(again.score_samples(data["test"], normal), before)
    np.testing.assert_array_equal(
        again.score_samples(data["test"][::-1], normal), scorer.score_samples(data["test"][::-1], normal)
    )


def test_lunar_with_faiss_search_equals_the_torch_search(data, monkeypatch):
    """The CPU search's library (faiss) changes no LUNAR number: its float64-rechecked distances are the torch
    search's bit for bit."""
    from bliss_utils.scores import lunar
    from bliss_utils.scores.knn import BlockedKNN

    fast = _fit(LUNAR(**TINY_LUNAR, device="cpu"), data)
    a = fast.score_samples(data["test"], [0, 1, 2])
    assert fast.models_[frozenset({0, 1, 2})].neigh.backend_ == "faiss"
    monkeypatch.setattr(lunar, "_neighbour_index", lambda k, device: BlockedKNN(k, device, backend="torch"))
    slow = _fit(LUNAR(**TINY_LUNAR, device="cpu"), data)
    np.testing.assert_array_equal(slow.score_samples(data["test"], [0, 1, 2]), a)
    assert slow.models_[frozenset({0, 1, 2})].neigh.backend_ == "torch"


def test_lunar_tiny_fits_pick_one_thread(data, monkeypatch):
    """torch_threads=None: a fit on fewer than ONE_THREAD_BELOW images runs (and scores) as torch_threads=1 does."""
    import torch

    from bliss_utils.scores import lunar

    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    auto = _fit(LUNAR(n_epochs=3), data).score_samples(data["test"], [0, 1])
    assert seen and seen[0::2] == [1] * len(seen[0::2])  # set to 1, then restored, for the fit and the scoring
    np.testing.assert_array_equal(
        auto, _fit(LUNAR(n_epochs=3, torch_threads=1), data).score_samples(data["test"], [0, 1])
    )
    seen.clear()
    monkeypatch.setattr(lunar, "ONE_THREAD_BELOW", 10)  # the same fit counted as large: torch's setting is left
    _fit(LUNAR(n_epochs=3), data).score_samples(data["test"], [0, 1])
    assert seen == []
