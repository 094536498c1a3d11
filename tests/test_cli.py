"""``python -m bliss_utils embed``: help text, a real run on generated data, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import FakeEncoder

from bliss_utils import __main__ as cli
from bliss_utils.datasets.images import load_dataset
from bliss_utils.embeddings import image_cache_path, image_embeddings


def test_embed_help_explains_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "bliss_utils", "embed", "--help"], capture_output=True, text=True, check=True
    ).stdout
    parser = cli.build_parser()
    embed = parser._subparsers._group_actions[0].choices["embed"]
    for action in embed._actions:
        assert action.help, f"{action.option_strings} has no help"
        assert action.option_strings[-1] in out
    for word in ("--encoder", "--dataset", "--split", "--download", "--cache-dir", "--preprocess", "BLISS_DATA_DIR"):
        assert word in out


def test_no_subcommand_prints_help(capsys):
    assert cli.main([]) == 2
    assert "embed" in capsys.readouterr().out


def test_embed_run_with_fake_encoder_fills_the_cache(fake_data, tmp_path, monkeypatch, capsys):
    encoders = []

    def fake_loader(args):
        assert (args.encoder, args.preprocess, args.device) == ("fake", None, "cpu")
        encoders.append(FakeEncoder())
        return encoders[-1]

    monkeypatch.setattr(cli, "_encoder", fake_loader)
    argv = [
        "embed",
        "--encoder",
        "fake",
        "--dataset",
        "cifar10",
        "--root",
        str(fake_data),
        "--cache-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--no-progress",
        "--texts",
        "--dictionary",
        "cifar100",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "cifar10/train: 60 images x 16 dims" in out and "cifar10/test: 30 images" in out
    assert "10 class names, 100 cifar100 entries" in out
    assert encoders[0].images_encoded == 90
    # the library reads what the command wrote, without recomputing
    again = FakeEncoder()
    image_embeddings(again, "cifar10", "test", root=fake_data, cache_dir=tmp_path, progress=False)
    assert again.images_encoded == 0
    assert cli.main(argv) == 0 and encoders[1].images_encoded == 0


def test_embed_missing_data_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder())
    status = cli.main(
        ["embed", "--encoder", "fake", "--dataset", "cifar10", "--split", "train", "--root", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: cifar10 not found") and "Traceback" not in err
    with pytest.raises(SystemExit):
        cli.main(["embed", "--encoder", "fake", "--dataset", "cifar10", "--batch-size", "0"])


def test_embed_with_tiny_clip(fake_data, tmp_path, capsys, monkeypatch):
    pytest.importorskip("open_clip")
    argv = [
        "embed",
        "--encoder",
        "tiny-clip",
        "--dataset",
        "tinyimagenet",
        "--split",
        "test",
        "--root",
        str(fake_data),
        "--cache-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert "tiny-clip tinyimagenet/test: 20 images x" in capsys.readouterr().out
    from bliss_utils.encoders import load_encoder

    encoder = load_encoder("tiny-clip", device="cpu")
    ds = load_dataset("tinyimagenet", "test", root=fake_data)
    path = image_cache_path(encoder, ds, tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert (
        meta["encoder"]["weights_id"] == encoder.weights_id
        and meta["encoder"]["preprocess_id"] == encoder.preprocess_id
    )
    with np.load(path, allow_pickle=False) as f:
        emb = f["embeddings"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # deterministic and batch-size independent: a fresh run of the same encoder gives the same numbers
    direct = encoder.encode_images([ds[i][0] for i in range(len(ds))], batch_size=3)
    np.testing.assert_allclose(emb, direct, atol=1e-5)
    # preprocessing in DataLoader workers feeds the same pixels as preprocessing in this process
    workers, _ = image_embeddings(
        encoder, ds, cache_dir=tmp_path / "workers", num_workers=1, batch_size=8, progress=False
    )
    np.testing.assert_allclose(workers, emb, atol=1e-5)
    # a second run is a cache hit: it builds no model
    from bliss_utils import encoders
    from bliss_utils.cache import request

    monkeypatch.setattr(request, "_MODELS", {})
    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: pytest.fail("embed built a model on a cache hit"))
    assert cli.main(argv) == 0 and "tiny-clip tinyimagenet/test: 20 images x" in capsys.readouterr().out


def test_preprocess_option_per_encoder():
    from bliss_utils.encoders import preprocess_for

    mapping = cli.parse_preprocess(["clip-vit-b16=cifar", "blip=default"])
    assert mapping == {"clip-vit-b16": "cifar", "blip": "default"}
    assert preprocess_for("clip-vit-b16", mapping) == "cifar"
    assert preprocess_for("slip-vit-b16", mapping) == "default"  # not named: its own preprocessing
    assert preprocess_for("blip", cli.parse_preprocess(["cifar"])) == "cifar"
    assert preprocess_for("blip", cli.parse_preprocess(None)) == "default"
    with pytest.raises(ValueError, match="default.*cifar"):
        preprocess_for("blip", {"blip": "imagenet"})
    with pytest.raises(ValueError, match="not both"):
        cli.parse_preprocess(["cifar", "blip=default"])
