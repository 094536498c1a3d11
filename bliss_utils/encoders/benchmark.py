"""Encoder throughput: ``python -m bliss_utils.encoders.benchmark [NAME ...]`` (images/s of encode_images)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np


def throughput(name: str, n_images: int = 256, batch_size: int = 64, image_size: int = 32,
               device: Any = None, repeats: int = 3) -> dict[str, Any]:
    """Images per second of ``encode_images`` on ``n_images`` random PIL images (best of ``repeats``, after a warm-up)."""
    from PIL import Image

    from . import load_encoder

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))
              for _ in range(n_images)]
    start = time.perf_counter()
    encoder = load_encoder(name, device=device)
    load_s = time.perf_counter() - start
    encoder.encode_images(images[:batch_size], batch_size=batch_size)  # warm-up
    best = min(_timed(encoder.encode_images, images, batch_size) for _ in range(repeats))
    import torch

    pixels = torch.stack([encoder.preprocess(im) for im in images])
    best_tensor = min(_timed(encoder.encode_images, pixels, batch_size) for _ in range(repeats))
    return {"encoder": name, "device": str(encoder.device), "precision": encoder.precision, "load_s": load_s,
            "images_per_s": n_images / best, "preprocessed_images_per_s": n_images / best_tensor,
            "n_images": n_images, "batch_size": batch_size, "image_size": image_size,
            "threads": torch.get_num_threads()}


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Print a throughput table for the named encoders (default: the tiny ones)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=["tiny-clip", "tiny-blip", "tiny-slip", "tiny-vit"],
                        help="encoder names (default: the four tiny encoders)")
    parser.add_argument("--n-images", type=int, default=256, help="number of random images (default 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="encode_images batch size (default 64)")
    parser.add_argument("--image-size", type=int, default=32, help="side of the square input images (default 32)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder; the best is reported")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print("encoder      device  precision     load s   images/s (PIL)   images/s (tensor)")
    for name in args.names:
        r = throughput(name, args.n_images, args.batch_size, args.image_size, args.device, args.repeats)
        print(f"{r['encoder']:<12} {r['device']:<7} {r['precision']:<13} {r['load_s']:6.2f}   "
              f"{r['images_per_s']:14.0f}   {r['preprocessed_images_per_s']:17.0f}")
    print(f"({args.n_images} random {args.image_size}x{args.image_size} RGB images, batch {args.batch_size}, "
          f"{r['threads']} torch threads)")


if __name__ == "__main__":
    main()
