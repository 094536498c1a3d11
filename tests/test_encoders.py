"""bliss_utils.encoders on the tiny random encoders: the embedding contract, the real loading paths, clear errors."""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bliss_utils import encoders as enc_pkg
from bliss_utils.encoders import WeightsNotFoundError, describe_encoder, list_encoders, load_encoder

TINY = ["tiny-clip", "tiny-blip", "tiny-slip", "tiny-vit"]
WITH_TEXT = ["tiny-clip", "tiny-blip", "tiny-slip"]
TEXTS = ["This is a photo of a cat", "This is a photo of an aeroplane with long wings", "dog", "a truck."]


def make_images(n: int = 7, seed: int = 0) -> list[Image.Image]:
    """Small images of mixed sizes and modes (RGB, greyscale, RGBA), as datasets deliver them."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        h, w = (32, 32) if i % 3 == 0 else (int(rng.integers(20, 48)), int(rng.integers(20, 48)))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(img.convert("L") if i % 5 == 1 else img.convert("RGBA") if i % 5 == 2 else img)
    return images


@pytest.fixture(scope="module")
def tiny():
    """Each tiny encoder loaded once per module, on the CPU."""
    return {name: load_encoder(name, device="cpu") for name in TINY}


@pytest.fixture(scope="module")
def images():
    return make_images()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, empty caches: what a machine without the weights looks like."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BLISS_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("BLISS_SLIP_CHECKPOINT", raising=False)
    return tmp_path


# -- registry and cheap import -------------------------------------------------------------------------------------
def test_import_does_not_load_heavy_libraries():
    heavy = "{'torch', 'open_clip', 'transformers', 'timm'}"
    code = f"import sys, bliss_utils.encoders as e; e.list_encoders(); print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_names_and_unknown_name():
    names = list_encoders()
    for name in ["clip-vit-b16", "blip", "slip-vit-b16", "vit-b16-in21k", *TINY]:
        assert name in names
    with pytest.raises(ValueError, match="unknown encoder 'clip'.*tiny-clip.*open_clip:MODEL/PRETRAINED.*hf:REPO_ID"):
        load_encoder("clip")


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="preprocess must be one of"):
        load_encoder("tiny-clip", preprocess="imagenet")
    with pytest.raises(ValueError, match="no weights argument"):
        load_encoder("tiny-clip", weights="x.pt")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_encoder("open_clip:NoSuchModel/openai")


def test_register_encoder(monkeypatch, tiny):
    from bliss_utils.encoders import registry

    monkeypatch.setattr(registry, "_CUSTOM", dict(registry._CUSTOM))
    calls = []

    def builder(name, device=None, weights=None, preprocess="default"):
        calls.append((name, preprocess))
        return tiny["tiny-clip"]

    enc_pkg.register_encoder("my-clip", builder)
    assert "my-clip" in list_encoders()
    assert load_encoder("my-clip", preprocess="cifar") is tiny["tiny-clip"]
    assert calls == [("my-clip", "cifar")]
    with pytest.raises(ValueError):
        enc_pkg.register_encoder("hf:x", builder)


def test_device_named_but_missing_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_encoder("tiny-clip", device="cuda")
    assert load_encoder("tiny-clip").device.type in ("cpu", "mps")


# -- the embedding contract, on every tiny encoder ---------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_image_embeddings_contract(tiny, images, name):
    enc = tiny[name]
    emb = enc.encode_images(images, batch_size=3)
    assert emb.dtype == np.float32 and emb.shape == (len(images), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # batch-size independent, in input order
    np.testing.assert_allclose(enc.encode_images(images, batch_size=64), emb, atol=1e-5)
    np.testing.assert_allclose(enc.encode_images(images[::-1], batch_size=1), emb[::-1], atol=1e-5)
    # different images give different embeddings (a degenerate random init would not)
    assert np.abs(emb[0] - emb[3]).max() > 1e-3
    # the preprocessed tensor gives the same result as the PIL list
    import torch

    pixels = torch.stack([enc.preprocess(im) for im in images])
    np.testing.assert_allclose(enc.encode_images(pixels, batch_size=4), emb, atol=1e-5)
    assert enc.encode_images([]).shape == (0, enc.dim)


@pytest.mark.parametrize("name", WITH_TEXT)
def test_text_embeddings_contract(tiny, name):
    enc = tiny[name]
    assert enc.has_text
    emb = enc.encode_texts(TEXTS, batch_size=3)
    assert emb.dtype == np.float32 and emb.shape == (len(TEXTS), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # padding to the longest text of a batch must not change an embedding
    np.testing.assert_allclose(enc.encode_texts(TEXTS, batch_size=1), emb, atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(TEXTS[::-1]), emb[::-1], atol=1e-5)
    assert np.abs(emb[0] - emb[2]).max() > 1e-3
    # text and image embeddings of one encoder live in one space
    assert enc.encode_images(make_images(2)).shape[1] == emb.shape[1] == enc.dim


def test_image_only_encoder_refuses_text(tiny):
    assert not tiny["tiny-vit"].has_text
    with pytest.raises(ValueError, match="image-only"):
        tiny["tiny-vit"].encode_texts(["a cat"])


@pytest.mark.parametrize("name", TINY)
def test_seeded_encoders_are_deterministic_across_loads(tiny, images, name):
    again = load_encoder(name, device="cpu")
    np.testing.assert_array_equal(again.encode_images(images), tiny[name].encode_images(images))
    if again.has_text:
        np.testing.assert_array_equal(again.encode_texts(TEXTS), tiny[name].encode_texts(TEXTS))
    assert (again.weights_id, again.preprocess_id) == (tiny[name].weights_id, tiny[name].preprocess_id)


@pytest.fixture(scope="module", autouse=True)
def other_process(tmp_path_factory):
    """A fresh interpreter embedding the same images with every tiny encoder, started early to overlap its imports."""
    folder = tmp_path_factory.mktemp("other_process")
    images = make_images()
    for i, im in enumerate(images):
        im.save(folder / f"{i}.png")
    code = (
        "import sys, json; from PIL import Image; from bliss_utils.encoders import load_encoder\n"
        "imgs = [Image.open(f'{sys.argv[1]}/{i}.png') for i in range(int(sys.argv[2]))]\n"
        "out = {}\n"
        f"for n in {TINY!r}:\n"
        "    e = load_encoder(n, device='cpu')\n"
        "    out[n] = [e.encode_images(imgs).tolist(), e.encode_texts(['a cat']).tolist() if e.has_text else []]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), str(len(images))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_deterministic_across_processes(tiny, images, other_process):
    # a fresh interpreter (fresh RNG state, fresh imports) must give the same numbers; PNG round-trips are lossless
    stdout, stderr = other_process.communicate(timeout=300)
    assert other_process.returncode == 0, stderr[-2000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert sorted(out) == sorted(TINY)
    for name, (img_emb, txt_emb) in out.items():
        np.testing.assert_allclose(np.array(img_emb), tiny[name].encode_images(images), atol=1e-6)
        if txt_emb:
            np.testing.assert_allclose(np.array(txt_emb), tiny[name].encode_texts(["a cat"]), atol=1e-6)


def test_bad_inputs_are_value_errors(tiny, images):
    import torch

    enc = tiny["tiny-clip"]
    with pytest.raises(ValueError, match=r"images\[1\] is a str"):
        enc.encode_images([images[0], "cat.png"])
    with pytest.raises(ValueError, match=r"shape \(n, 3, H, W\)"):
        enc.encode_images(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="list of strings"):
        enc.encode_texts("a cat")
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode_images(images, batch_size=0)


# -- preprocessing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_cifar_preprocessing_uses_cifar_statistics(tiny, name):
    from bliss_utils.encoders.preprocessing import CIFAR_MEAN, CIFAR_STD

    enc = load_encoder(name, device="cpu", preprocess="cifar")
    default = tiny[name]
    assert enc.preprocess_id != default.preprocess_id and "0.4913" in enc.preprocess_id
    assert "bicubic" in enc.preprocess_id and enc.weights_id == default.weights_id
    value = (10, 200, 90)
    x = enc.preprocess(Image.new("RGB", (50, 40), value)).numpy()
    expected = (np.array(value) / 255.0 - np.array(CIFAR_MEAN)) / np.array(CIFAR_STD)
    np.testing.assert_allclose(x.mean(axis=(1, 2)), expected, atol=1e-4)
    assert x.shape == default.preprocess(Image.new("RGB", (50, 40), value)).shape
    emb = enc.encode_images(make_images(3))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_slip_preprocessing_is_bilinear_imagenet(tiny):
    enc = tiny["tiny-slip"]
    assert "bilinear" in enc.preprocess_id and "0.485,0.456,0.406" in enc.preprocess_id
    assert "0.48145466" in tiny["tiny-clip"].preprocess_id and "bicubic" in tiny["tiny-clip"].preprocess_id


# -- CLIP: QuickGELU and the open form --------------------------------------------------------------------------------
def test_clip_vit_b16_builds_the_quickgelu_architecture(monkeypatch, tmp_path):
    import open_clip

    from bliss_utils.encoders import openclip

    assert openclip.CLIP_MODEL == "ViT-B-16-quickgelu"
    assert open_clip.get_model_config(openclip.CLIP_MODEL)["quick_gelu"] is True
    assert open_clip.get_pretrained_cfg(openclip.CLIP_MODEL, openclip.CLIP_TAG)["hf_hub"]
    fake = tmp_path / "open_clip_model.safetensors"
    fake.write_bytes(b"not used")
    seen = {}

    class Stop(Exception):
        pass

    def fake_create_model(model_name, pretrained=None, **kwargs):
        seen.update(model_name=model_name, pretrained=pretrained, **kwargs)
        raise Stop

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    with pytest.raises(Stop):
        load_encoder("clip-vit-b16", device="cpu", weights=fake)
    assert seen["model_name"] == "ViT-B-16-quickgelu" and seen["pretrained"] == str(fake)
    assert seen["force_quick_gelu"] is True


def test_tiny_clip_uses_quickgelu_in_both_towers(tiny):
    from open_clip.model import QuickGELU

    model = tiny["tiny-clip"].model
    assert any(isinstance(m, QuickGELU) for m in model.visual.modules())
    assert any(isinstance(m, QuickGELU) for m in model.transformer.modules())


def test_open_clip_form_loads_a_local_checkpoint(tiny, images, tmp_path):
    import open_clip
    import torch

    from bliss_utils.encoders import openclip

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "bliss-tiny-test.json").write_text(json.dumps(openclip.TINY_CLIP_CFG))
    open_clip.add_model_config(cfg_dir)
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny["tiny-clip"].model.state_dict(), ckpt)
    enc = load_encoder(f"open_clip:bliss-tiny-test/{ckpt}", device="cpu")
    assert enc.weights_id.startswith("state-dict@tiny.pt:") and "sha256=" in enc.weights_id
    np.testing.assert_allclose(enc.encode_images(images), tiny["tiny-clip"].encode_images(images), atol=1e-6)
    np.testing.assert_allclose(enc.encode_texts(TEXTS), tiny["tiny-clip"].encode_texts(TEXTS), atol=1e-6)


# -- SLIP: the checkpoint layout, the safe loader and the mapping against an independent forward pass -----------
def _independent_slip_forward(sd, pixels, token_ids):
    """SLIP's forward written from its own key layout: timm ViT @ image_projection; the CLIP text transformer."""
    import torch
    import torch.nn.functional as F
    from timm.models.vision_transformer import VisionTransformer

    from bliss_utils.encoders.slip import TINY_VISION

    vit = VisionTransformer(**TINY_VISION, num_classes=0, global_pool="token")
    vit.load_state_dict({k[len("visual.") :]: v for k, v in sd.items() if k.startswith("visual.")}, strict=True)
    image = vit.eval()(pixels) @ sd["image_projection"]

    width = sd["token_embedding.weight"].shape[1]
    heads = width // 64
    n_ctx = token_ids.shape[1]
    x = sd["token_embedding.weight"][token_ids] + sd["positional_embedding"][:n_ctx]
    mask = torch.full((n_ctx, n_ctx), float("-inf")).triu(1)
    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))

    def split(t):
        return t.reshape(t.shape[0], n_ctx, heads, width // heads).transpose(1, 2)

    for i in range(n_layers):
        block = {
            k[len(f"transformer.resblocks.{i}.") :]: v
            for k, v in sd.items()
            if k.startswith(f"transformer.resblocks.{i}.")
        }
        p = block.__getitem__
        h = F.layer_norm(x, (width,), p("ln_1.weight"), p("ln_1.bias"), eps=1e-5)
        q, k, v = (h @ p("attn.in_proj_weight").T + p("attn.in_proj_bias")).chunk(3, dim=-1)
        att = (split(q) @ split(k).transpose(-1, -2)) / math.sqrt(width // heads) + mask
        out = (att.softmax(-1) @ split(v)).transpose(1, 2).reshape(x.shape)
        x = x + out @ p("attn.out_proj.weight").T + p("attn.out_proj.bias")
        h = F.layer_norm(x, (width,), p("ln_2.weight"), p("ln_2.bias"), eps=1e-5)
        h = h @ p("mlp.c_fc.weight").T + p("mlp.c_fc.bias")
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + h @ p("mlp.c_proj.weight").T + p("mlp.c_proj.bias")
    x = F.layer_norm(x, (width,), sd["ln_final.weight"], sd["ln_final.bias"], eps=1e-5)
    text = x[torch.arange(x.shape[0]), token_ids.argmax(dim=-1)] @ sd["text_projection"]
    return image, text


@pytest.fixture(scope="module")
def slip_file(tmp_path_factory):
    """A tiny random checkpoint in SLIP's layout, every float perturbed so LayerNorms and biases are non-trivial."""
    import torch

    from bliss_utils.encoders.slip import make_tiny_slip_checkpoint

    ckpt = make_tiny_slip_checkpoint(seed=1)
    gen = torch.Generator().manual_seed(1)
    ckpt["state_dict"] = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in ckpt["state_dict"].items()
    }
    path = tmp_path_factory.mktemp("slip") / "slip_tiny.pt"
    torch.save(ckpt, path)
    return path, ckpt


def test_tiny_slip_checkpoint_has_slips_layout(slip_file):
    from bliss_utils.encoders.slip import TINY_EMBED_DIM, TINY_VISION

    _, ckpt = slip_file
    sd = ckpt["state_dict"]
    assert isinstance(ckpt["args"], argparse.Namespace)
    assert all(k.startswith("module.") for k in sd)
    assert sum(k.startswith("module.image_mlp.") for k in sd) == 16
    assert tuple(sd["module.image_projection"].shape) == (TINY_VISION["embed_dim"], TINY_EMBED_DIM)
    for key in (
        "visual.cls_token",
        "visual.pos_embed",
        "visual.patch_embed.proj.weight",
        "visual.blocks.0.attn.qkv.weight",
        "visual.norm.weight",
        "token_embedding.weight",
        "positional_embedding",
        "ln_final.weight",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.1.mlp.c_proj.bias",
        "text_projection",
        "logit_scale",
    ):
        assert "module." + key in sd, key


def test_slip_mapping_matches_an_independent_forward_pass(slip_file):
    import open_clip
    import torch

    from bliss_utils.encoders import slip

    path, _ = slip_file
    sd = slip.checkpoint_state_dict(slip.load_slip_checkpoint(path))
    model = slip.build_slip_model(sd, slip.TINY_TIMM_MODEL).eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = open_clip.get_tokenizer("ViT-B-16")(TEXTS)
    with torch.inference_mode():
        ref_image, ref_text = _independent_slip_forward(sd, pixels, tokens)
        torch.testing.assert_close(model.encode_image(pixels), ref_image, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.encode_text(tokens), ref_text, atol=1e-4, rtol=1e-4)
        # the mapping must not be a no-op on the projection: P (not P.T) is what SLIP multiplies by
        assert sd["image_projection"].shape[0] != sd["image_projection"].shape[1]


def test_tiny_slip_encoder_is_the_mapped_checkpoint(tiny, images):
    import torch

    from bliss_utils.encoders import slip

    sd = slip.checkpoint_state_dict(slip.make_tiny_slip_checkpoint())
    enc = tiny["tiny-slip"]
    pixels = torch.stack([enc.preprocess(im) for im in images])
    with torch.inference_mode():
        ref, _ = _independent_slip_forward(sd, pixels, torch.zeros(1, 4, dtype=torch.long))
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_images(images), ref, atol=1e-5)


def test_slip_loader_refuses_unexpected_globals(tmp_path):
    import torch

    from bliss_utils.encoders.slip import load_slip_checkpoint

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {"module.image_projection": torch.zeros(2, 2)}, "extra": Payload()}, bad)
    with pytest.raises(ValueError, match="weights_only"):
        load_slip_checkpoint(bad)
    assert not marker.exists()


def test_slip_allow_list_is_not_process_wide(slip_file):
    import pickle

    import torch

    from bliss_utils.encoders.slip import load_slip_checkpoint

    path, _ = slip_file
    load_slip_checkpoint(path)
    if not hasattr(torch.serialization, "safe_globals"):
        pytest.skip("torch < 2.5 has only the process-wide allow-list")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_slip_checkpoint_locations(monkeypatch, offline, slip_file):
    from bliss_utils.encoders import slip

    path, _ = slip_file
    folder = offline / "weights" / "slip-vit-b16"
    folder.mkdir(parents=True)
    (folder / slip.SLIP_FILENAME).write_bytes(b"x")
    monkeypatch.setenv("BLISS_WEIGHTS_DIR", str(offline / "weights"))
    found, weights_id = slip.slip_weights("slip-vit-b16", None)
    # the identity is the file's bytes, not its name: a one-byte file named like the release is not the release
    assert found == folder / slip.SLIP_FILENAME and weights_id.startswith(f"slip-checkpoint@{slip.SLIP_FILENAME}:1B:")
    monkeypatch.setenv("BLISS_SLIP_CHECKPOINT", str(path))
    found, weights_id = slip.slip_weights("slip-vit-b16", None)
    assert found == path and weights_id.startswith("slip-checkpoint@slip_tiny.pt:") and "sha256=" in weights_id


# -- BLIP: separate embeddings reproduce the retrieval model's ITC score ------------------------------------------
def test_blip_embeddings_reproduce_itc_score(tiny, images):
    import torch

    enc = tiny["tiny-blip"]
    pixels = torch.stack([enc.preprocess(im) for im in images[:3]])
    tok = enc.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        itc = enc.model(
            input_ids=tok["input_ids"], pixel_values=pixels, attention_mask=tok["attention_mask"], use_itm_head=False
        ).itm_score.numpy()
    sim = enc.encode_images(images[:3]) @ enc.encode_texts(TEXTS).T
    assert sim.shape == itc.shape == (3, len(TEXTS))
    np.testing.assert_allclose(sim, itc, atol=1e-5)
    assert np.ptp(sim) > 1e-3


def test_tiny_blip_tokenizer_is_wordpiece_with_cls_first(tiny):
    tok = tiny["tiny-blip"].tokenizer
    ids = tok(["This is a photo of a cat"])["input_ids"][0]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and "[UNK]" not in pieces
    assert "photo" in pieces and "##a" in pieces  # "cat" -> c ##a ##t


# -- the real BLIP and ViT loaders, fed a tiny model saved in the Hugging Face layout ---------------------------
def _real_entry_at_tiny_sizes(monkeypatch, real: str, tiny_name: str) -> str:
    """Register ``real``'s builder and weights lookup under a new name, declaring ``tiny_name``'s sizes; the name."""
    import dataclasses

    from bliss_utils.encoders import registry

    name = f"{tiny_name}-from-folder"
    tiny_info = registry.backbone(tiny_name)
    entry = dataclasses.replace(registry.backbone(real), dim=tiny_info.dim, recipes=tiny_info.recipes)
    monkeypatch.setitem(registry._BACKBONES, name, entry)
    return name


@pytest.mark.parametrize("real, tiny_name", [("blip", "tiny-blip"), ("vit-b16-in21k", "tiny-vit")])
def test_real_loader_reads_a_saved_model_folder(tiny, images, tmp_path, monkeypatch, real, tiny_name):
    source = tiny[tiny_name]
    folder = tmp_path / real
    source.model.save_pretrained(folder)
    processor_cls = "BlipImageProcessor" if real == "blip" else "ViTImageProcessor"
    from bliss_utils.encoders.hf_common import pil_processor_class

    pil_processor_class(processor_cls)(size={"height": 32, "width": 32}).save_pretrained(folder)
    if source.has_text:
        source.tokenizer.save_pretrained(folder)
    # the real entry's weights lookup and loader on the tiny model, with the tiny encoder's declared sizes
    enc = load_encoder(_real_entry_at_tiny_sizes(monkeypatch, real, tiny_name), device="cpu", weights=folder)
    assert enc.weights_id.startswith("hf-folder@") and enc.dim == source.dim
    assert enc.preprocess_id == source.preprocess_id
    np.testing.assert_allclose(enc.encode_images(images), source.encode_images(images), atol=1e-6)
    if source.has_text:
        np.testing.assert_allclose(enc.encode_texts(TEXTS), source.encode_texts(TEXTS), atol=1e-6)


# -- hf:REPO_ID on a tiny CLIPModel saved to disk ---------------------------------------------------------------
def test_hf_clip_form_on_a_saved_tiny_model(tmp_path, images):
    import torch
    import transformers

    from bliss_utils.encoders.blip import tiny_tokenizer, tiny_vocab

    vocab = tiny_vocab()
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "pad_token_id": 0,
            "bos_token_id": vocab.index("[CLS]"),
            "eos_token_id": vocab.index("[SEP]"),
        },
        vision_config={
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    folder = tmp_path / "tiny-hf-clip"
    model.save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    tiny_tokenizer().save_pretrained(folder)

    enc = load_encoder(f"hf:{folder}", device="cpu")
    assert enc.dim == 16 and enc.has_text and "sha256=" in enc.weights_id
    img, txt = enc.encode_images(images[:3]), enc.encode_texts(TEXTS)
    pixels = torch.stack([enc.preprocess(im) for im in images[:3]])
    tok = enc.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=pixels)
        reference = (out.logits_per_image / model.logit_scale.exp()).numpy()
    np.testing.assert_allclose(img @ txt.T, reference, atol=1e-5)
    with pytest.raises(WeightsNotFoundError, match="there is no folder .*gone; hf: takes a folder saved with"):
        describe_encoder(f"hf:{tmp_path / 'gone'}")  # a path, not a hub id: no library traceback


# -- timm:MODEL on timm's own tiny test architectures, random weights saved with torch.save ----------------------
def _save_timm(path: pathlib.Path, model_name: str, seed: int) -> dict:
    import timm
    import torch

    torch.manual_seed(seed)
    state = timm.create_model(model_name, pretrained=False).state_dict()  # with its classifier, as released files are
    torch.save(state, path)
    return state


def test_timm_form_embeds_with_the_file_it_names(tmp_path, images):
    import timm
    import torch

    from bliss_utils.encoders import describe_encoder

    state = _save_timm(tmp_path / "vit.pth", "test_vit", seed=0)
    name = f"timm:test_vit/{tmp_path / 'vit.pth'}"  # an absolute path after MODEL/: timm:test_vit//tmp/...
    assert "//" in name
    spec, enc = describe_encoder(name, device="cpu"), load_encoder(name, device="cpu")
    assert not enc.has_text and spec.has_text is False
    for field in ("name", "weights_id", "preprocess_id", "dim", "precision"):
        assert getattr(spec, field) == getattr(enc, field), field
    assert "sha256=" in spec.weights_id and spec.preprocess_id.startswith("rgb+timm-eval(input_size=160x160")
    emb = enc.encode_images(images, batch_size=3)
    assert emb.dtype == np.float32 and emb.shape == (len(images), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the same numbers as timm's own model given the file's tensors (its classifier dropped)
    reference = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    reference.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    with torch.inference_mode():
        ref = reference(torch.stack([enc.preprocess(im) for im in images])).numpy()
    assert enc.dim == ref.shape[1]
    np.testing.assert_allclose(emb, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="image-only"):
        enc.encode_texts(["a cat"])
    # weights= is the same file by another route; other bytes are another identity
    assert describe_encoder("timm:test_vit", weights=tmp_path / "vit.pth").weights_id == spec.weights_id
    _save_timm(tmp_path / "other.pth", "test_vit", seed=1)
    assert describe_encoder("timm:test_vit", weights=tmp_path / "other.pth").weights_id != spec.weights_id
    assert "0.4913" in describe_encoder(name, preprocess="cifar").preprocess_id


def test_timm_form_errors_name_the_file_and_model(tmp_path, monkeypatch):
    from bliss_utils.encoders import describe_encoder

    monkeypatch.delenv("BLISS_WEIGHTS_DIR", raising=False)
    missing = tmp_path / "absent.pth"
    for call in (describe_encoder, load_encoder):
        with pytest.raises(WeightsNotFoundError, match="absent.pth.*does not exist"):
            call(f"timm:test_vit/{missing}")
    with pytest.raises(WeightsNotFoundError, match="names no weights file.*timm:test_vit//ABS/PATH"):
        describe_encoder("timm:test_vit")
    _save_timm(tmp_path / "resnet.pth", "test_resnet", seed=0)
    with pytest.raises(ValueError, match=r"resnet\.pth does not fit timm model 'test_vit'.*missing keys"):
        load_encoder("timm:test_vit", weights=tmp_path / "resnet.pth", device="cpu")
    with pytest.raises(ValueError, match="unknown timm model 'no_such_net'"):
        describe_encoder(f"timm:no_such_net/{missing}")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth is not a state dict file"):
        load_encoder("timm:test_vit", weights=tmp_path / "notes.pth", device="cpu")


def test_timm_form_finds_its_file_in_the_weights_dir(tmp_path, monkeypatch):
    from bliss_utils.encoders import describe_encoder

    folder = tmp_path / "w" / "timm--test_resnet"
    folder.mkdir(parents=True)
    _save_timm(folder / "model.pth", "test_resnet", seed=0)
    monkeypatch.setenv("BLISS_WEIGHTS_DIR", str(tmp_path / "w"))
    spec = describe_encoder("timm:test_resnet", device="cpu")
    assert spec.weights_id == describe_encoder("timm:test_resnet", weights=folder / "model.pth").weights_id
    assert load_encoder("timm:test_resnet", device="cpu").dim == spec.dim


# -- missing weights: one clear error, fast, offline ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, url_part, file_part",
    [
        ("clip-vit-b16", "huggingface.co/timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors"),
        ("blip", "huggingface.co/Salesforce/blip-itm-base-coco", "blip"),
        ("slip-vit-b16", "https://dl.fbaipublicfiles.com/slip/slip_base_100ep.pt", "slip_base_100ep.pt"),
        ("vit-b16-in21k", "huggingface.co/google/vit-base-patch16-224-in21k", "vit-b16-in21k"),
    ],
)
def test_offline_missing_checkpoint_gives_one_clear_error(offline, name, url_part, file_part, monkeypatch):
    import socket

    attempts = []
    monkeypatch.setattr(
        socket.socket,
        "connect",
        lambda self, *a: attempts.append(a) or (_ for _ in ()).throw(OSError("network disabled in this test")),
    )
    with pytest.raises(WeightsNotFoundError) as info:
        load_encoder(name, device="cpu")
    assert attempts == [], "an offline lookup must not touch the network"
    message = str(info.value)
    assert url_part in message and file_part in message
    assert "BLISS_WEIGHTS_DIR" in message and "weights=" in message and "Offline mode is on" in message
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), (
        "the library's own traceback must not be chained in"
    )
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize(
    "name",
    [
        "clip-vit-b16",
        "blip",
        "slip-vit-b16",
        "vit-b16-in21k",
        "open_clip:ViT-B-32/openai",
        "hf:openai/clip-vit-base-patch16",
    ],
)
def test_missing_weights_path_is_named(offline, name):
    missing = offline / "nowhere" / "weights.bin"
    with pytest.raises(WeightsNotFoundError, match="does not exist") as info:
        load_encoder(name, device="cpu", weights=missing)
    assert str(missing) in str(info.value)


def test_weights_dir_folder_names_are_safe(monkeypatch, offline):
    from bliss_utils.encoders.weights import folder_name

    assert folder_name("open_clip:ViT-B-32/openai") == "open_clip--ViT-B-32--openai"
    monkeypatch.setenv("BLISS_WEIGHTS_DIR", str(offline / "w"))
    with pytest.raises(WeightsNotFoundError) as info:
        load_encoder("open_clip:ViT-B-32/openai", device="cpu")
    assert str(offline / "w" / "open_clip--ViT-B-32--openai") in str(info.value)


def test_tiny_blip_texts_are_not_degenerate(tiny):
    # a random BERT at std 0.02 maps every text to nearly the same [CLS] embedding, which would hide text-path bugs
    t = tiny["tiny-blip"].encode_texts(["This is a photo of a cat", "This is a photo of a airplane", "dog"])
    off_diagonal = (t @ t.T)[~np.eye(3, dtype=bool)]
    assert off_diagonal.max() < 0.99


# -- released checkpoint layouts ---------------------------------------------------------------------------------------
def _openai_layout_archive(path):
    """A tiny CLIP saved as OpenAI saved theirs: a TorchScript archive whose state dict has OpenAI's keys."""
    import warnings

    import open_clip
    import torch

    cfg = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1},  # 64-wide heads, as OpenAI
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg).eval()
    with torch.no_grad():  # OpenAI's files hold fp16 weights
        for p in model.parameters():
            p.copy_(p.half().float())

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in model.named_children():
                self.add_module(k, v)
            for k, v in model.named_parameters(recurse=False):
                self.register_parameter(k, v)

        def forward(self, x):
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(Holder(), torch.zeros(1)).save(str(path))
    return model


def test_openai_torchscript_checkpoint_loads_after_its_checksum(tmp_path, images, monkeypatch):
    import torch

    from bliss_utils._filehash import file_sha256
    from bliss_utils.encoders import openclip

    monkeypatch.setenv("BLISS_DATA_DIR", str(tmp_path / "memo"))
    path = tmp_path / "ViT-B-16.pt"
    reference = _openai_layout_archive(path)
    assert openclip.is_torchscript(path)
    with pytest.raises(ValueError, match=f"sha256 {file_sha256(path)}, expected 0+"):
        openclip.load_openai_torchscript(path, "0" * 64)
    model = openclip.load_openai_torchscript(path, file_sha256(path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), reference.encode_image(x), atol=1e-5, rtol=0)
    # clip-vit-b16 sends a TorchScript file through that check, against the sha256 in OpenAI's URL
    assert openclip.openai_sha256(openclip.CLIP_MODEL) == openclip.openai_url(openclip.CLIP_MODEL).split("/")[-2]
    seen = []
    monkeypatch.setattr(
        openclip, "load_openai_torchscript", lambda p, sha: seen.append(sha) or (_ for _ in ()).throw(KeyError("stop"))
    )
    with pytest.raises(KeyError):
        load_encoder("clip-vit-b16", device="cpu", weights=path)
    assert seen == [openclip.openai_sha256(openclip.CLIP_MODEL)]


def test_clip_weights_dir_with_both_files_picks_openais(tmp_path, monkeypatch, offline, caplog):
    import logging

    from bliss_utils.encoders import openclip

    folder = offline / "w" / "clip-vit-b16"
    folder.mkdir(parents=True)
    (folder / "open_clip_model.safetensors").write_bytes(b"a")
    _openai_layout_archive(folder / openclip.openai_filename())
    monkeypatch.setenv("BLISS_WEIGHTS_DIR", str(offline / "w"))
    monkeypatch.setenv("BLISS_DATA_DIR", str(offline / "memo"))
    with caplog.at_level(logging.INFO, logger="bliss_utils.encoders.openclip"):
        path, weights_id = openclip.clip_vit_b16_weights("clip-vit-b16", None)
    assert path.name == "ViT-B-16.pt" and weights_id.startswith("openai-torchscript@ViT-B-16.pt:")
    assert "using ViT-B-16.pt" in caplog.text
    (folder / "ViT-B-16.pt").unlink()
    path, weights_id = openclip.clip_vit_b16_weights("clip-vit-b16", None)
    assert path.name == "open_clip_model.safetensors" and weights_id.startswith("state-dict@")


def test_slip_checkpoint_whose_args_hold_paths(tmp_path, images, tiny):
    import torch

    from bliss_utils.encoders.slip import load_slip_checkpoint, make_tiny_slip_checkpoint

    ckpt = make_tiny_slip_checkpoint()
    ckpt["args"].output_dir = pathlib.PosixPath("/checkpoint/slip/run")  # as SLIP's launcher stores it
    ckpt["args"].log_dir = pathlib.PureWindowsPath("C:/logs")
    torch.save(ckpt, tmp_path / "slip.pt")
    loaded = load_slip_checkpoint(tmp_path / "slip.pt")
    assert loaded["args"].output_dir == pathlib.PurePosixPath("/checkpoint/slip/run")
    assert type(loaded["args"].output_dir) is pathlib.PurePosixPath  # unpickles on any OS, does no I/O
    assert str(loaded["args"].log_dir) == "C:\\logs"
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(loaded["state_dict"][k], v)


def test_blip_loads_with_the_original_vision_layernorm_eps(tmp_path, tiny, images, monkeypatch):
    import torch
    import transformers

    from bliss_utils.encoders import blip

    source = tiny["tiny-blip"]
    folder = tmp_path / "blip"
    source.model.config.vision_config.layer_norm_eps = 1e-5  # what the converted Hub configs carry
    source.model.save_pretrained(folder)
    source.model.config.vision_config.layer_norm_eps = blip.BLIP_VISION_LN_EPS
    source.tokenizer.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["vision_config"]["layer_norm_eps"] == 1e-5
    enc = load_encoder(_real_entry_at_tiny_sizes(monkeypatch, "blip", "tiny-blip"), device="cpu", weights=folder)
    norms = [m for m in enc.model.vision_model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == blip.BLIP_VISION_LN_EPS for m in norms)
    assert enc.weights_id.endswith("+vision-ln-eps=1e-06")
    np.testing.assert_allclose(enc.encode_images(images), source.encode_images(images), atol=1e-6)
    as_saved = transformers.BlipForImageTextRetrieval.from_pretrained(folder).eval()
    assert as_saved.vision_model.post_layernorm.eps == 1e-5


def test_leading_space_is_harmless_to_every_tokenizer(tiny):
    from bliss_utils.encoders.blip import tiny_tokenizer

    for name in ("tiny-clip", "tiny-slip"):  # open_clip's BPE, the same code as OpenAI's and SLIP's tokenizer
        tok = tiny[name].tokenizer
        assert tok([" foo", " a photo of a cat"]).tolist() == tok(["foo", "a photo of a cat"]).tolist()
    bert = tiny_tokenizer()  # BLIP's WordPiece (BertTokenizer), on a small vocabulary
    assert bert([" foo", " this is a photo"])["input_ids"] == bert(["foo", "this is a photo"])["input_ids"]
