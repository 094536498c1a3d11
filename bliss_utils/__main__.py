"""Command line: ``python -m bliss_utils embed`` fills the embedding cache; ``reproduce`` runs the pipeline."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from bliss_utils.running import reproduce

EMBED_EPILOG = """\
examples:
  python -m bliss_utils embed --encoder clip-vit-b16 --dataset cifar10 --split train --download
  python -m bliss_utils embed --encoder clip-vit-b16 --preprocess clip-vit-b16=cifar --dataset cifar10 --texts
  python -m bliss_utils embed --encoder blip --dataset tinyimagenet --split test --root /data/datasets
  python -m bliss_utils embed --encoder tiny-clip --dataset imagefolder:/data/mine --split train --device cpu

Embeddings land in <cache-dir>/<encoder>/<dataset>/<split>-<key>.npz (+ .json metadata); a second run reads them back.
An interrupted run resumes from its last finished shard.
"""


# the help of each embed option too long to share a line with its add_argument call, in the order --help lists them
EMBED_HELP = {
    "--encoder": "encoder name: clip-vit-b16, blip, slip-vit-b16, vit-b16-in21k, open_clip:MODEL/PRETRAINED, "
    "open_clip:MODEL//ABS/PATH.pt, hf:REPO_ID, timm:MODEL//ABS/PATH.pth (image-only), one a $BLISS_PLUGINS module "
    "registers, or tiny-clip / tiny-blip / tiny-slip / tiny-vit (random weights, for tests)",
    "--dataset": "cifar10, cifar100, tinyimagenet, or imagefolder:PATH "
    "(PATH/train/<class>/*.jpg and PATH/test/<class>/*.jpg)",
    "--split": "which split to embed (TinyImageNet's test split is its official validation split); default both",
    "--root": "folder that holds the datasets (default: $BLISS_DATA_DIR or <project>/data)",
    "--shard-size": "images per saved shard: an interrupted run loses at most one shard of work (default 5000)",
    "--num-workers": "DataLoader worker processes that decode and preprocess images (default 0: in this process)",
    "--device": "torch device, e.g. cuda, cuda:1, mps, cpu (default: CUDA, then MPS, then CPU)",
    "--weights": "local weights file or folder for the encoder (offline use); default: the library's own cache",
    "--preprocess": "'default': the backbone's own preprocessing; 'cifar': the authors' CIFAR-statistics normalisation "
    "after a bicubic resize (they used it for CLIP). A bare OPTION applies to the encoder; ENCODER=OPTION "
    "(repeatable, e.g. clip-vit-b16=cifar) only to that encoder, others get 'default'",
    "--texts": "also embed the class names and the dictionary (needs an encoder with a text tower)",
    "--dictionary": "dictionary for --texts: imagenet, cifar10, cifar100, tinyimagenet or english (default imagenet)",
    "--dictionary-size": "keep the first N dictionary entries (english: N words)",
    "--template": "prompt template with one {} (repeat to average several); default 'This is a photo of a {}'",
    "--skip-bad-images": "decode every image file first and leave out (and list) those that cannot be read; without "
    "it, embedding refuses to start while one is unreadable, naming them",
}


def _add_embed(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "embed",
        help="compute (or read back) the cached embeddings of a dataset split",
        description="Compute the image embeddings of a dataset split with one encoder and store them in the embedding\n"
        "cache (with --texts also the class-name and dictionary text embeddings). Cached results are read back.",
        epilog=EMBED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def add(*flags: str, **kwargs: Any) -> None:
        p.add_argument(*flags, help=EMBED_HELP[flags[-1]], **kwargs)

    add("--encoder", required=True)
    add("--dataset", required=True)
    add("--split", default="both", choices=("train", "test", "both"))
    add("--root", default=None)
    p.add_argument("--download", action="store_true", help="download CIFAR / TinyImageNet into --root if absent")
    p.add_argument("--cache-dir", default=None, help="embedding cache folder (default: <data>/embeddings)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    add("--shard-size", type=int, default=5000)
    add("--num-workers", type=int, default=0)
    add("--device", default=None)
    add("--weights", default=None)
    add("--preprocess", action="append", default=None, metavar="[ENCODER=]OPTION")
    add("--texts", action="store_true")
    add("--dictionary", default="imagenet")
    add("--dictionary-size", type=int, default=None)
    add("--template", action="append", default=None)
    add("--skip-bad-images", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (cache hits, resumes, throughput)")
    p.set_defaults(func=_run_embed)


def parse_preprocess(values: Sequence[str] | None) -> str | dict[str, str] | None:
    """``--preprocess`` values as preprocess_for takes them: one bare option, or {encoder: option}."""
    if not values:
        return None
    bare = [v for v in values if "=" not in v]
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    if bare and pairs or len(bare) > 1:
        raise ValueError(f"--preprocess takes one bare option or ENCODER=OPTION pairs, not both; got {list(values)}")
    return bare[0] if bare else pairs


def _encoder(args: argparse.Namespace) -> Any:
    """What embed hands the cache: the encoder's name, so the model is built on a cache miss only."""
    return args.encoder


def _run_embed(args: argparse.Namespace) -> int:
    from bliss_utils.cache.identity import cache_root
    from bliss_utils.datasets.images import load_dataset
    from bliss_utils.datasets.prompts import PAPER_TEMPLATE
    from bliss_utils.embeddings import image_embeddings, text_embeddings

    encoder, name, folder = _encoder(args), args.encoder, cache_root(args.cache_dir)
    how = {"weights": args.weights, "preprocess": parse_preprocess(args.preprocess) or "default", "device": args.device}
    splits = ("train", "test") if args.split == "both" else (args.split,)
    sizes = {"batch_size": args.batch_size, "shard_size": args.shard_size, "num_workers": args.num_workers}
    found = {"root": args.root, "download": args.download, "skip_bad_images": args.skip_bad_images}
    for split in splits:
        ds = load_dataset(args.dataset, split, **found)
        emb, _ = image_embeddings(encoder, ds, cache_dir=args.cache_dir, progress=not args.no_progress, **sizes, **how)
        print(f"{name} {ds.name}/{split}: {emb.shape[0]} images x {emb.shape[1]} dims, cached in {folder}")
    if args.texts:  # with the class names of the last split embedded
        from bliss_utils.datasets.dictionaries import load_dictionary

        texts = partial(text_embeddings, encoder, template=args.template or PAPER_TEMPLATE, cache_dir=args.cache_dir)
        classes = texts(ds.class_names, **how)
        words = texts(load_dictionary(args.dictionary, size=args.dictionary_size), **how)
        print(f"{name} texts: {classes.shape[0]} class names, {words.shape[0]} {args.dictionary} entries")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m bliss_utils``."""
    parser = argparse.ArgumentParser(prog="python -m bliss_utils", description="BLISS reproduction tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_embed(subparsers)
    reproduce.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in ("batch_size", "shard_size"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        status = args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as err:  # missing data/weights, bad input: one clear line
        print(f"error: {err}", file=sys.stderr)
        return 1
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
