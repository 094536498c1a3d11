"""Command line: ``python -m bliss_utils embed`` fills the embedding cache; ``reproduce`` runs the pipeline."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
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


def _add_embed(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "embed",
        help="compute (or read back) the cached embeddings of a dataset split",
        description="Compute the image embeddings of a dataset split with one encoder and store them in the embedding\n"
        "cache (with --texts also the class-name and dictionary text embeddings). Cached results are read back.",
        epilog=EMBED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder name: clip-vit-b16, blip, slip-vit-b16, vit-b16-in21k, open_clip:MODEL/PRETRAINED, "
        "hf:REPO_ID, or tiny-clip / tiny-blip / tiny-slip / tiny-vit (random weights, for tests)",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="cifar10, cifar100, tinyimagenet, or imagefolder:PATH "
        "(PATH/train/<class>/*.jpg and PATH/test/<class>/*.jpg)",
    )
    p.add_argument(
        "--split",
        default="both",
        choices=("train", "test", "both"),
        help="which split to embed (TinyImageNet's test split is its official validation split); default both",
    )
    _add_data_options(p)
    _add_encoder_options(p)
    _add_text_options(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (cache hits, resumes, throughput)")
    p.set_defaults(func=_run_embed)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", default=None, help="folder that holds the datasets (default: $BLISS_DATA_DIR or <project>/data)"
    )
    p.add_argument("--download", action="store_true", help="download CIFAR / TinyImageNet into --root if absent")
    p.add_argument("--cache-dir", default=None, help="embedding cache folder (default: <data>/embeddings)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument(
        "--shard-size",
        type=int,
        default=5000,
        help="images per saved shard: an interrupted run loses at most one shard of work (default 5000)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader worker processes that decode and preprocess images (default 0: in this process)",
    )


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default=None, help="torch device, e.g. cuda, cuda:1, mps, cpu (default: CUDA, then MPS, then CPU)"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="local weights file or folder for the encoder (offline use); default: the library's own cache",
    )
    p.add_argument(
        "--preprocess",
        action="append",
        default=None,
        metavar="[ENCODER=]OPTION",
        help="'default': the backbone's own preprocessing; 'cifar': the authors' CIFAR-statistics normalisation "
        "after a bicubic resize (they used it for CLIP). A bare OPTION applies to the encoder; ENCODER=OPTION "
        "(repeatable, e.g. clip-vit-b16=cifar) only to that encoder, others get 'default'",
    )


def _add_text_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--texts",
        action="store_true",
        help="also embed the class names and the dictionary (needs an encoder with a text tower)",
    )
    p.add_argument(
        "--dictionary",
        default="imagenet",
        help="dictionary for --texts: imagenet, cifar10, cifar100, tinyimagenet or english (default imagenet)",
    )
    p.add_argument(
        "--dictionary-size", type=int, default=None, help="keep the first N dictionary entries (english: N words)"
    )
    p.add_argument(
        "--template",
        action="append",
        default=None,
        help="prompt template with one {} (repeat to average several); default 'This is a photo of a {}'",
    )


def parse_preprocess(values: Sequence[str] | None) -> str | dict[str, str] | None:
    """``--preprocess`` values as preprocess_for takes them: one bare option, or {encoder: option}."""
    if not values:
        return None
    bare = [v for v in values if "=" not in v]
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    if bare and pairs or len(bare) > 1:
        raise ValueError(f"--preprocess takes one bare option or ENCODER=OPTION pairs, not both; got {list(values)}")
    return bare[0] if bare else pairs


def _load_encoder(args: argparse.Namespace) -> Any:
    from bliss_utils.encoders import load_encoder, preprocess_for

    preprocess = preprocess_for(args.encoder, parse_preprocess(args.preprocess))
    return load_encoder(args.encoder, device=args.device, weights=args.weights, preprocess=preprocess)


def _run_embed(args: argparse.Namespace) -> int:
    from bliss_utils.datasets.images import load_dataset
    from bliss_utils.datasets.prompts import PAPER_TEMPLATE
    from bliss_utils.embeddings import image_cache_path, image_embeddings, text_embeddings

    encoder = _load_encoder(args)
    splits = ("train", "test") if args.split == "both" else (args.split,)
    class_names = None
    for split in splits:
        ds = load_dataset(args.dataset, split, root=args.root, download=args.download)
        class_names = ds.class_names
        emb, labels = image_embeddings(
            encoder,
            ds,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            progress=not args.no_progress,
            num_workers=args.num_workers,
        )
        path = image_cache_path(encoder, ds, args.cache_dir)
        print(f"{encoder.name} {ds.name}/{split}: {emb.shape[0]} images x {emb.shape[1]} dims -> {path}")
    if args.texts:
        from bliss_utils.datasets.dictionaries import load_dictionary

        template = args.template or PAPER_TEMPLATE
        classes = text_embeddings(encoder, class_names, template, cache_dir=args.cache_dir)
        entries = load_dictionary(args.dictionary, size=args.dictionary_size)
        words = text_embeddings(encoder, entries, template, cache_dir=args.cache_dir)
        print(f"{encoder.name} texts: {classes.shape[0]} class names, {words.shape[0]} {args.dictionary} entries")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m bliss_utils``."""
    parser = argparse.ArgumentParser(prog="python -m bliss_utils", description="BLISS reproduction tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_embed(subparsers)
    reproduce.register(subparsers)
    subparsers.choices["reproduce"].set_defaults(func=reproduce.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
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
