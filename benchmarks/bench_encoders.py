"""Encoder throughput: ``python benchmarks/bench_encoders.py [NAME ...]`` (images/s of encode_images).

``--random-weights`` times the real architectures without their weights: it saves a randomly initialised
clip-vit-b16, blip or vit-b16-in21k in the layout its loader reads (a checkpoint file or a Hugging Face folder) and
loads it through that loader with ``weights=``, so preprocessing, model size and precision are the real ones. Random
weights cost the same as trained ones; BLIP's saved tokenizer is the tiny generated one (a real BERT vocabulary cannot
be downloaded here), which splits words into more pieces, so its text rate is a lower bound.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RANDOM_WEIGHTS = ("clip-vit-b16", "blip", "vit-b16-in21k")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else platform's answer (for benchmark headers)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """CPU model, cores and torch threads, and the GPU when there is one (the benchmarks' header line)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}; {gpu}"


def save_random_weights(name: str, folder: Path) -> Path:
    """Save ``name``'s real architecture with random weights under ``folder`` in its loader's layout; the path."""
    import torch

    from bliss_utils._checks import require
    from bliss_utils.encoders.base import OPEN_CLIP, TRANSFORMERS
    from bliss_utils.encoders.blip import tiny_tokenizer
    from bliss_utils.encoders.hf_common import pil_processor_class
    from bliss_utils.encoders.openclip import CLIP_MODEL

    folder.mkdir(parents=True, exist_ok=True)
    if name == "clip-vit-b16":
        path = folder / "clip-vit-b16-random.pt"
        torch.save(require(*OPEN_CLIP).create_model(CLIP_MODEL).state_dict(), path)
        return path
    transformers = require(*TRANSFORMERS)
    if name == "blip":
        model = transformers.BlipForImageTextRetrieval(transformers.BlipConfig())  # the base model's sizes, 384 px
        tiny_tokenizer().save_pretrained(folder)
        processor = pil_processor_class("BlipImageProcessor")(size={"height": 384, "width": 384})
    elif name == "vit-b16-in21k":
        model = transformers.ViTModel(transformers.ViTConfig(), add_pooling_layer=False)  # ViT-B/16 at 224 px
        processor = pil_processor_class("ViTImageProcessor")(size={"height": 224, "width": 224})
    else:
        raise ValueError(f"--random-weights knows {', '.join(RANDOM_WEIGHTS)}; got {name!r}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def throughput(
    name: str,
    n_images: int = 256,
    batch_size: int = 64,
    image_size: int = 32,
    device: Any = None,
    repeats: int = 3,
    weights: Path | None = None,
    n_texts: int = 0,
) -> dict[str, Any]:
    """Images per second of ``encode_images`` on ``n_images`` random PIL images (best of ``repeats``, after a warm-up);
    with ``n_texts``, also prompts per second of ``encode_texts``."""
    from PIL import Image

    from bliss_utils.encoders import load_encoder

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)) for _ in range(n_images)
    ]
    start = time.perf_counter()
    encoder = load_encoder(name, device=device, weights=weights)
    load_s = time.perf_counter() - start
    encoder.encode_images(images[:batch_size], batch_size=batch_size)  # warm-up
    best = min(_timed(encoder.encode_images, images, batch_size) for _ in range(repeats))
    import torch

    pixels = torch.stack([encoder.preprocess(im) for im in images])
    best_tensor = min(_timed(encoder.encode_images, pixels, batch_size) for _ in range(repeats))
    texts_per_s = float("nan")
    if n_texts and encoder.has_text:
        texts = [f"This is a photo of a word{i}" for i in range(n_texts)]
        texts_per_s = n_texts / min(_timed(encoder.encode_texts, texts) for _ in range(repeats))
    return {
        "texts_per_s": texts_per_s,
        "encoder": name,
        "device": str(encoder.device),
        "precision": encoder.precision,
        "load_s": load_s,
        "images_per_s": n_images / best,
        "preprocessed_images_per_s": n_images / best_tensor,
        "n_images": n_images,
        "batch_size": batch_size,
        "image_size": image_size,
        "threads": torch.get_num_threads(),
    }


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Print a throughput table for the named encoders (default: the tiny ones)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        default=["tiny-clip", "tiny-blip", "tiny-slip", "tiny-vit"],
        help="encoder names (default: the four tiny encoders)",
    )
    parser.add_argument("--n-images", type=int, default=256, help="number of random images (default 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="encode_images batch size (default 64)")
    parser.add_argument("--image-size", type=int, default=32, help="side of the square input images (default 32)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder; the best is reported")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help=f"time the real architectures ({', '.join(RANDOM_WEIGHTS)}) with random weights, "
        "saved and loaded through their real loaders",
    )
    parser.add_argument("--n-texts", type=int, default=0, help="also time encode_texts on this many prompts")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPU cores, {gpu}")
    print("encoder        device  precision     load s   images/s (PIL)   images/s (tensor)   texts/s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            weights = save_random_weights(name, Path(tmp, name)) if args.random_weights else None
            r = throughput(
                name, args.n_images, args.batch_size, args.image_size, args.device, args.repeats, weights, args.n_texts
            )
            print(
                f"{r['encoder']:<14} {r['device']:<7} {r['precision']:<13} {r['load_s']:6.2f}   "
                f"{r['images_per_s']:14.1f}   {r['preprocessed_images_per_s']:17.1f}   {r['texts_per_s']:7.1f}"
            )
    print(
        f"({args.n_images} random {args.image_size}x{args.image_size} RGB images, batch {args.batch_size}, "
        f"{r['threads']} torch threads{', random weights' if args.random_weights else ''})"
    )


if __name__ == "__main__":
    main()
