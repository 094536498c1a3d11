"""Related methods (AnomalyCLIP, object-agnostic prompts, SSD, SSD+CMLE): equations on hand-computed toys, agreement
with plain references, quality floors on generated clusters, determinism, checkpoint handling, the chance-level
property through evaluate_grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from bliss_utils.datasets.splits import class_splits
from bliss_utils.encoders import anomalyclip_prompts
from bliss_utils.evaluation.grid import EmbeddingSet, evaluate_grid
from bliss_utils.scores.cmle import SSDCMLE, lle_weights, pseudo_captions, supcon_loss
from bliss_utils.scores.prompt_pairs import (
    CPE_TEMPLATES,
    PromptPairScore,
    agnostic_pair_texts,
    cpe_texts,
    object_aware_texts,
    pool_prompt_ensemble,
)
from bliss_utils.scores.ssd import SSD


def _clusters(n_classes=4, per_class=60, dim=16, spread=0.35, seed=0):
    """Unit-norm embeddings around random class centres, labels 0..n_classes-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    z = centres[labels] / np.sqrt(dim) + spread * rng.normal(size=(labels.size, dim)) / np.sqrt(dim)
    return z / np.linalg.norm(z, axis=1, keepdims=True), labels


def _train_test(n_classes=4, per_class=60, dim=16, seed=0):
    """Train and test images drawn around the same centres: every third image of one draw is a test image."""
    z, y = _clusters(n_classes, per_class, dim, seed=seed)
    test = np.arange(y.size) % 3 == 0
    return z[~test], y[~test], z[test], y[test]


# -- prompt-pair scores --------------------------------------------------------------------------------------------
def test_prompt_pair_score_hand_computed():
    pair = np.array([[1.0, 0.0], [0.0, 1.0]])  # g_n = e1, g_a = e2
    x = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
    model = clone(PromptPairScore(pair)).fit()
    check_is_fitted(model)
    scores = model.score_samples(x)
    np.testing.assert_allclose(scores, [-1.0, 0.2, 1.0])
    # AnomalyCLIP's Eq. 1 probability at tau = 0.07 ranks exactly as the difference does
    cos = x / np.linalg.norm(x, axis=1, keepdims=True) @ pair.T
    prob = np.exp(cos[:, 1] / 0.07) / np.exp(cos / 0.07).sum(axis=1)
    assert np.array_equal(np.argsort(prob), np.argsort(scores))


def test_object_aware_takes_min_over_normal_classes():
    pairs = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])  # class 1 has the pair swapped
    x = np.array([[0.6, 0.8]])
    model = PromptPairScore(pairs).fit()
    assert model.score_samples(x, [0])[0] == pytest.approx(0.2)
    assert model.score_samples(x, [1])[0] == pytest.approx(-0.2)
    assert model.score_samples(x, [0, 1])[0] == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="unknown class"):
        model.score_samples(x, [2])


def test_pool_prompt_ensemble_normalises_then_averages_then_renormalises():
    pair = pool_prompt_ensemble([[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0]])
    np.testing.assert_allclose(pair, [[2**-0.5, 2**-0.5], [0.0, 1.0]])


def test_prompt_texts():
    normal, abnormal = cpe_texts()
    assert len(CPE_TEMPLATES) == 35 and len(set(CPE_TEMPLATES)) == 35
    assert (len(normal), len(abnormal)) == (7 * 35, 5 * 35)
    assert normal[0] == "a bad photo of a object." and abnormal[0] == "a bad photo of a damaged object."
    assert "this is one object with damage in the scene." in abnormal
    aware = object_aware_texts(["cat", "dog"])
    assert aware[1][0][35] == "a bad photo of a flawless dog."
    assert agnostic_pair_texts() == (["a photo of an object."], ["a photo of a damaged object."])
    with pytest.raises(ValueError):
        PromptPairScore(np.zeros((3, 4))).fit()
    with pytest.raises(ValueError, match="pairs is required"):
        PromptPairScore().fit()


def test_prompt_pair_quality_floor():
    rng = np.random.default_rng(0)
    pair = np.eye(8)[:2]
    normal = np.eye(8)[0] + 0.8 * rng.normal(size=(100, 8))
    anomalous = np.eye(8)[1] + 0.8 * rng.normal(size=(100, 8))
    scores = PromptPairScore(pair).fit().score_samples(np.vstack([normal, anomalous]))
    assert roc_auc_score(np.r_[np.zeros(100), np.ones(100)], scores) > 0.8


# -- SSD -----------------------------------------------------------------------------------------------------------
def test_ssd_matches_plain_loop():
    z, y = _clusters(n_classes=3, per_class=30, dim=5, seed=1)
    test = _clusters(n_classes=3, per_class=4, dim=5, seed=2)[0]
    train = z[np.isin(y, [0, 2])]
    n, d = train.shape
    mean = [sum(train[i, j] for i in range(n)) / n for j in range(d)]
    std = [np.sqrt(sum((train[i, j] - mean[j]) ** 2 for i in range(n)) / n) for j in range(d)]
    u = np.array([[(train[i, j] - mean[j]) / (std[j] + 1e-10) for j in range(d)] for i in range(n)])
    cov = np.zeros((d, d))
    for i in range(n):
        cov += np.outer(u[i], u[i]) / n
    precision = np.linalg.pinv(cov)
    expected = []
    for x in test / np.linalg.norm(test, axis=1, keepdims=True):
        v = np.array([(x[j] - mean[j]) / (std[j] + 1e-10) for j in range(d)])
        expected.append(v @ precision @ v)
    np.testing.assert_allclose(SSD().fit(z, y).score_samples(test, [0, 2]), expected, rtol=1e-8)


def test_ssd_quality_floor_and_sklearn_contract():
    z, y, test, ty = _train_test(seed=3)
    model = clone(SSD()).fit(z, y)
    check_is_fitted(model)
    assert roc_auc_score(ty != 0, model.score_samples(test, [0])) > 0.9


# -- CMLE ------------------------------------------------------------------------------------------------------------
def test_lle_weights_match_constrained_least_squares():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 6))
    clusters = np.repeat([0, 1, 2], [14, 15, 1])
    reg, k = 1e-3, 4
    idx, w = lle_weights(y, clusters, k, reg)
    assert np.all(idx[29] == -1) and np.all(w[29] == 0)  # a singleton has no neighbours
    for i in range(29):
        mates = np.flatnonzero((clusters == clusters[i]) & (np.arange(30) != i))
        nearest = mates[np.argsort(((y[mates] - y[i]) ** 2).sum(axis=1))[:k]]
        assert set(idx[i]) == set(nearest)
        # min w^T (G + r I) w subject to sum(w) = 1, through its KKT system
        diff = y[i] - y[idx[i]]
        gram = diff @ diff.T
        gram = gram + reg * np.trace(gram) * np.eye(k)
        kkt = np.block([[2 * gram, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
        solution = np.linalg.solve(kkt, np.r_[np.zeros(k), 1.0])[:k]
        np.testing.assert_allclose(w[i], solution, atol=1e-10)
        assert w[i].sum() == pytest.approx(1.0)


def test_supcon_loss_matches_plain_loop():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # classes 2 and 3 have no positive: dropped
    tau, base = 0.5, 0.07
    per_anchor = []
    for i in range(7):
        positives = [p for p in range(7) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(np.exp(float(f[i] @ f[a]) / tau) for a in range(7) if a != i)
        per_anchor.append(-np.mean([np.log(np.exp(float(f[i] @ f[p]) / tau) / denom) for p in positives]))
    expected = tau / base * np.mean(per_anchor)
    assert float(supcon_loss(f, labels, tau, base)) == pytest.approx(expected, rel=1e-10)


def test_pseudo_captions_are_mean_of_nearest_words():
    z = np.array([[1.0, 0.0]])
    words = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]])
    expected = (words[0] + words[2]) / np.linalg.norm(words[0] + words[2])
    np.testing.assert_allclose(pseudo_captions(z, words, 2)[0], expected)


def test_cmle_zero_epochs_is_ssd_and_trains_deterministically():
    z, y = _clusters(n_classes=3, per_class=40, dim=12, seed=4)
    words = np.random.default_rng(5).normal(size=(60, 12))
    test = z[::3]
    ssd = SSD().fit(z, y).score_samples(test, [0, 1])
    np.testing.assert_allclose(SSDCMLE(epochs=0).fit(z, y, None, words).score_samples(test, [0, 1]), ssd)
    state = torch.get_rng_state()
    a = SSDCMLE(epochs=2, batch_size=32).fit(z, y, None, words).score_samples(test, [0, 1])
    assert torch.equal(state, torch.get_rng_state())  # the caller's stream is untouched
    b = clone(SSDCMLE(epochs=2, batch_size=32)).fit(z, y, None, words).score_samples(test, [0, 1])
    c = SSDCMLE(epochs=2, batch_size=32, random_state=1).fit(z, y, None, words).score_samples(test, [0, 1])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, ssd)  # it trained, and the seed matters


def test_cmle_quality_floor():
    z, y, test, ty = _train_test(seed=6)
    words = np.random.default_rng(7).normal(size=(80, 16))
    model = SSDCMLE(epochs=3, batch_size=32).fit(z, y, None, words)
    check_is_fitted(model)
    assert roc_auc_score(ty != 0, model.score_samples(test, [0])) > 0.9


def test_cmle_refuses_bad_settings():
    z, y = _clusters(n_classes=2, per_class=20, dim=8)
    texts = np.random.default_rng(0).normal(size=(2, 8))
    with pytest.raises(ValueError, match="collapses"):
        SSDCMLE(supcon_weight=0.0).fit(z, y, None, texts)
    with pytest.raises(ValueError, match="needs dictionary_embeddings"):
        SSDCMLE().fit(z, y, texts, None)
    with pytest.raises(ValueError, match="1 distinct class_text captions among 20 training images"):
        SSDCMLE(captions="class_text").fit(z, y, texts, None).score_samples(z, [0])
    with pytest.raises(ValueError, match="device must be None or a torch device"):
        SSDCMLE(device="gpu0").fit(z, y, None, texts)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cmle_on_cuda_matches_the_cpu():
    z, y = _clusters(n_classes=3, per_class=40, dim=12, seed=4)
    words = np.random.default_rng(5).normal(size=(60, 12))
    on = {d: SSDCMLE(epochs=2, batch_size=32, device=d).fit(z, y, None, words) for d in ("cpu", "cuda")}
    scores = {d: m.score_samples(z[::3], [0, 1]) for d, m in on.items()}
    losses = {d: m.models_[frozenset({0, 1})].losses for d, m in on.items()}
    # same initial weights and batches on both devices: only float32 rounding differs
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)
    np.testing.assert_allclose(scores["cuda"], scores["cpu"], rtol=1e-3)


# -- AnomalyCLIP -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from bliss_utils.encoders import load_encoder

    return load_encoder("tiny-anomalyclip", device="cpu")


def _neutral_prompts(model, tokenizer, deep=()):
    x_id = tokenizer(["X"])[0, 1]
    ctx = model.token_embedding.weight[x_id].detach().expand(anomalyclip_prompts.N_CTX, -1).clone()
    return anomalyclip_prompts.LearnedPrompts(ctx_normal=ctx, ctx_abnormal=ctx, deep=tuple(deep))


def test_text_path_equals_plain_encoder_with_neutral_prompts(tiny):
    model, tok = tiny.model, tiny.tokenizer
    tokens = tok([anomalyclip_prompts.NORMAL_PROMPT, anomalyclip_prompts.ABNORMAL_PROMPT])
    with torch.no_grad():
        plain = model.encode_text(tokens)
        no_deep = anomalyclip_prompts.learned_text_features(model, tok, _neutral_prompts(model, tok))
        # neutral deep prompts: the hidden states plain CLIP has at positions 1..4 before blocks 1..8 (identical for
        # both prompts, whose first 5 tokens agree under the causal mask)
        seen = {}
        hooks = [
            block.register_forward_pre_hook(
                lambda m, args, kw, i=i: seen.__setitem__(i, args[0][0, 1:5].clone()), with_kwargs=True
            )
            for i, block in enumerate(model.transformer.resblocks)
        ]
        model.encode_text(tokens)
        for h in hooks:
            h.remove()
        deep = [seen[i] for i in range(1, anomalyclip_prompts.N_DEEP_LAYERS + 1)]
        with_deep = anomalyclip_prompts.learned_text_features(model, tok, _neutral_prompts(model, tok, deep))
        other = anomalyclip_prompts.learned_text_features(
            model, tok, _neutral_prompts(model, tok, [d.flip(-1) for d in deep])
        )
    torch.testing.assert_close(no_deep, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_deep, plain, rtol=1e-5, atol=1e-5)
    # the deep prompts are really written in (a constant shift would not do: LayerNorm removes it)
    assert not torch.allclose(other, plain, atol=1e-3)


def test_image_path_with_ln_post_at_native_size_equals_encode_images(tiny):
    from bliss_utils.encoders import load_encoder

    clip = load_encoder("tiny-clip", device="cpu")  # same seeded vision tower as tiny-anomalyclip
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = anomalyclip_prompts.global_image_features(tiny.model.visual, pixels, apply_ln_post=True)
    np.testing.assert_allclose(
        ours.numpy() / np.linalg.norm(ours.numpy(), axis=1, keepdims=True), clip.encode_images(pixels), atol=1e-5
    )
    shape = tuple(tiny.model.visual.positional_embedding.shape)
    big = tiny.encode_images(torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)))
    assert big.shape == (2, tiny.dim) and tuple(tiny.model.visual.positional_embedding.shape) == shape


def test_generated_checkpoint_loads_and_bad_ones_are_refused(tiny, tmp_path):
    from bliss_utils.encoders.anomalyclip import generated_checkpoint_state, write_generated_checkpoint

    path = write_generated_checkpoint(tmp_path / "epoch_15.pth", width=32)
    prompts = anomalyclip_prompts.load_prompt_checkpoint(path, width=32)
    raw = torch.load(path, weights_only=True)["prompt_learner"]
    assert raw["ctx_pos"].dtype == torch.float16 and prompts.ctx_normal.dtype == torch.float32
    torch.testing.assert_close(prompts.ctx_abnormal, raw["ctx_neg"][0, 0].float())
    assert len(prompts.deep) == 8 and prompts.sha256 == anomalyclip_prompts.sha256_of(path)
    with pytest.raises(ValueError, match="width 768"):
        wide = anomalyclip_prompts.load_prompt_checkpoint(write_generated_checkpoint(tmp_path / "wide.pth"))
        anomalyclip_prompts.learned_text_features(tiny.model, tiny.tokenizer, wide)

    def broken(edit):
        state = generated_checkpoint_state(32)
        edit(state["prompt_learner"])
        return anomalyclip_prompts.prompts_from_state(state, 32)

    with pytest.raises(ValueError, match="lacks key"):
        broken(lambda sd: sd.pop("compound_prompts_text.7"))
    with pytest.raises(ValueError, match="unexpected key"):
        broken(lambda sd: sd.update({"visual.proj": torch.zeros(1)}))
    with pytest.raises(ValueError, match="shape"):
        broken(lambda sd: sd.update({"ctx_pos": torch.zeros(1, 1, 11, 32)}))
    with pytest.raises(ValueError, match="prompt_learner"):
        anomalyclip_prompts.prompts_from_state({"state_dict": {}})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        anomalyclip_prompts.load_prompt_checkpoint(tmp_path / "junk.pth")


def test_git_blob_id_matches_git():
    import subprocess
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert anomalyclip_prompts.git_blob_id(path) == expected.stdout.strip()


def test_missing_checkpoint_is_reported_and_download_installs(tmp_path, monkeypatch):
    from bliss_utils.encoders.anomalyclip import write_generated_checkpoint

    monkeypatch.setenv("BLISS_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert anomalyclip_prompts.checkpoint_or_none() is None
    with pytest.raises(anomalyclip_prompts.CheckpointMissingError, match="not run: checkpoint missing") as err:
        anomalyclip_prompts.find_checkpoint()
    assert anomalyclip_prompts.CHECKPOINT_URL in str(err.value) and "anomalyclip-vit-l14-336" in str(err.value)
    source = write_generated_checkpoint(tmp_path / "src.pth", width=32)
    with pytest.raises(anomalyclip_prompts.CheckpointMissingError, match="not the released"):
        anomalyclip_prompts.download_checkpoint(url=source.as_uri())  # not the authors' file
    assert anomalyclip_prompts.checkpoint_or_none() is None
    installed = anomalyclip_prompts.download_checkpoint(
        url=source.as_uri(), git_blob=anomalyclip_prompts.git_blob_id(source)
    )
    assert (
        installed == anomalyclip_prompts.checkpoint_location() and anomalyclip_prompts.checkpoint_or_none() == installed
    )
    assert anomalyclip_prompts.sha256_of(installed) == anomalyclip_prompts.sha256_of(source)
    (tmp_path / "bad.pth").write_bytes(b"html error page")
    with pytest.raises(anomalyclip_prompts.CheckpointMissingError, match="not a readable"):
        anomalyclip_prompts.download_checkpoint(tmp_path / "other", url=(tmp_path / "bad.pth").as_uri(), git_blob=None)
    assert (tmp_path / "other").is_dir() and not list((tmp_path / "other").iterdir())


def test_tiny_anomalyclip_ids_and_prompt_pair(tiny, tmp_path):
    from bliss_utils.encoders import load_encoder
    from bliss_utils.encoders.anomalyclip import write_generated_checkpoint

    assert "cls-no-ln-post" in tiny.weights_id and tiny.preprocess_id.startswith("resize-squash48")
    pair = tiny.prompt_embeddings()
    assert pair.shape == (2, tiny.dim) and np.allclose(np.linalg.norm(pair, axis=1), 1, atol=1e-6)
    other = load_encoder("tiny-anomalyclip", weights=write_generated_checkpoint(tmp_path / "c.pth", 32, seed=3))
    assert other.weights_id != tiny.weights_id and not np.allclose(other.prompt_embeddings(), pair)


# -- the protocol ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dataset", "n_normal", "n_classes"), [("cifar10", 1, 10), ("cifar10", 9, 10), ("cifar100", 20, 100)]
)
def test_scores_ignoring_the_normal_set_average_exactly_50(dataset, n_normal, n_classes):
    # equal class sizes in the test set (as in CIFAR), continuous scores: each cross-class pair is counted once
    rng = np.random.default_rng(n_classes + n_normal)
    test_labels = np.repeat(np.arange(n_classes), 7)
    test = rng.normal(size=(test_labels.size, 8))
    data = EmbeddingSet(train=test[:n_classes], train_labels=np.arange(n_classes), test=test, test_labels=test_labels)
    pair = rng.normal(size=(2, 8))
    splits = {f"{dataset}-{n_normal}": class_splits(dataset, n_normal)}
    res = evaluate_grid(data, splits, methods=("agnostic-pair",), baseline_params={"agnostic-pair": {"pairs": pair}})
    assert len(res) == len(splits[f"{dataset}-{n_normal}"]) and res["auroc"].std() > 1  # trials differ...
    assert res["auroc"].mean() == pytest.approx(50.0, abs=1e-9)  # ...but average exactly 50


def test_related_methods_run_through_the_grid():
    z, y, test, ty = _train_test(n_classes=4, per_class=40, dim=16, seed=8)
    words = np.random.default_rng(1).normal(size=(40, 16))
    texts = np.random.default_rng(2).normal(size=(4, 16))
    data = EmbeddingSet(train=z, train_labels=y, test=test, test_labels=ty, class_texts=texts, dictionary=words)
    params = {
        "agnostic-cpe": {"pairs": np.random.default_rng(3).normal(size=(2, 16))},
        "object-aware-cpe": {"pairs": np.random.default_rng(4).normal(size=(4, 2, 16))},
        "ssd-cmle": {"epochs": 1, "batch_size": 32},
    }
    res = evaluate_grid(
        data,
        {"toy": [[0], [1, 2]]},
        methods=("ssd", "ssd-cmle", "agnostic-cpe", "object-aware-cpe"),
        baseline_params=params,
    )
    assert set(res["method"]) == {"ssd", "ssd-cmle", "agnostic-cpe", "object-aware-cpe"} and len(res) == 8
    assert res.loc[res["method"] == "ssd", "auroc"].min() > 80


def test_reported_related_block_is_labelled_and_leaves_the_paper_tables_alone():
    from bliss_utils.evaluation.reported import load_reported, reported_results

    related = load_reported()["related"]
    assert "REPORTED" in related["_about"]
    for paper in ("anomalyclip", "cmg"):
        assert related[paper]["source"].startswith("reported in")
        assert all(0 < row["auroc"] <= 100 for row in related[paper]["rows"])
    assert not reported_results()["method"].isin(["anomalyclip", "cmg", "ssd"]).any()


@pytest.mark.slow
def test_smoke_all_four_rows_with_tiny_stand_ins(tiny):
    from PIL import Image

    from bliss_utils.encoders import load_encoder

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(4, 3))

    def images(per_class):
        labels = np.repeat(np.arange(4), per_class)
        noise = rng.integers(-40, 40, size=(labels.size, 32, 32, 3))
        pixels = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        return [Image.fromarray(p) for p in pixels], labels

    (train_im, y), (test_im, ty) = images(12), images(6)
    clip = load_encoder("tiny-clip", device="cpu")
    names = ["red", "green", "blue", "grey"]
    data = EmbeddingSet(
        train=clip.encode_images(train_im),
        train_labels=y,
        test=clip.encode_images(test_im),
        test_labels=ty,
        class_texts=clip.encode_texts([f"a photo of a {n}." for n in names]),
        dictionary=clip.encode_texts([f"a photo of a {w}." for w in ("cat", "dog", "car", "ship", "tree", "sky")]),
    )
    pair = pool_prompt_ensemble(*(clip.encode_texts(side) for side in agnostic_pair_texts()))
    cpe = pool_prompt_ensemble(*(clip.encode_texts(side) for side in cpe_texts()))
    aware = np.stack([pool_prompt_ensemble(*(clip.encode_texts(s) for s in c)) for c in object_aware_texts(names)])
    test_ac = tiny.encode_images(test_im)
    ac_data = EmbeddingSet(train=test_ac, train_labels=ty, test=test_ac, test_labels=ty)  # zero-shot: train unused
    splits = {"toy": [[0], [1, 2]]}
    params = {
        "agnostic-pair": {"pairs": pair},
        "agnostic-cpe": {"pairs": cpe},
        "object-aware-cpe": {"pairs": aware},
        "ssd-cmle": {"epochs": 1, "batch_size": 16, "n_caption_words": 3, "n_clusters": 2},
    }
    res = evaluate_grid(
        data, splits, ("agnostic-pair", "agnostic-cpe", "object-aware-cpe", "ssd", "ssd-cmle"), baseline_params=params
    )
    ac = evaluate_grid(
        ac_data, splits, ("anomalyclip",), baseline_params={"anomalyclip": {"pairs": tiny.prompt_embeddings()}}
    )
    assert len(res) == 10 and len(ac) == 2
    assert res["auroc"].between(0, 100).all() and ac["auroc"].between(0, 100).all()


def test_learned_prompt_pair_comes_through_the_cached_text_path(tmp_path) -> None:
    from bliss_utils.embeddings import text_embeddings
    from bliss_utils.encoders import load_encoder
    from bliss_utils.encoders.anomalyclip import LEARNED_PROMPTS

    enc = load_encoder("tiny-anomalyclip", device="cpu")
    cached = text_embeddings(enc, list(LEARNED_PROMPTS), template="{}", cache_dir=tmp_path)
    np.testing.assert_allclose(cached, enc.prompt_embeddings(), atol=1e-6)
    plain = enc.encode_texts(["a photo of an object."])
    assert plain.shape == (1, enc.dim) and not np.allclose(plain[0], cached[0], atol=1e-3)
    with pytest.raises(ValueError, match="apart from other texts"):
        enc.encode_texts([next(iter(LEARNED_PROMPTS)), "a photo"])
