"""One place that turns a notebook's parameters into a configuration: the paper's settings or the smoke settings.

Paper mode: CLIP ViT-B/16 on CIFAR-10, CIFAR-100 and TinyImageNet; BLIP and SLIP ViT-B/16 for Fig. 1b and Table 3;
ViT-B/16 ImageNet-21k for the image-only baselines; the ImageNet-1k dictionary; every trial of the protocol.
Smoke mode: toy vision-language encoders whose towers agree (toy-clip, toy-blip, toy-slip) and the random-weight
tiny-vit on small generated datasets (bliss_utils.synthetic), a small dictionary and few trials: it tests the
pipeline, not the paper (docs/smoke_mode.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import atomic_write_text
from .config import data_dir, figures_dir, find_project_root, results_dir

logger = logging.getLogger(__name__)

PAPER_ENCODER = "clip-vit-b16"
PAPER_BACKBONES = ("clip-vit-b16", "blip", "slip-vit-b16")
PAPER_IMAGE_ENCODER = "vit-b16-in21k"
DATASETS = ("cifar10", "cifar100", "tinyimagenet")
# which stand-in encoder replaces which paper backbone in smoke mode
SMOKE_STAND_INS = {
    "clip-vit-b16": "toy-clip",
    "blip": "toy-blip",
    "slip-vit-b16": "toy-slip",
    "vit-b16-in21k": "tiny-vit",
}
# generated data per class in smoke mode: (train, test)
SMOKE_DATA = {"cifar10": (20, 10), "cifar100": (2, 1), "tinyimagenet": (2, 1)}
SMOKE_MARKER = "BLISS_SMOKE_DATA.json"
# CIFAR-10 pairs of semantically close classes: (normal, anomalous); the paper names horse vs deer
_ENCODERS: dict[tuple[str, str | None, str], Any] = {}  # loaded encoders, shared by every Experiment of the process
CLOSE_PAIRS = (
    ("horse", "deer"),
    ("deer", "horse"),
    ("cat", "dog"),
    ("dog", "cat"),
    ("automobile", "truck"),
    ("truck", "automobile"),
    ("airplane", "ship"),
    ("ship", "airplane"),
)


@dataclass(frozen=True)
class Experiment:
    """Everything a notebook needs to know about what to run and where to write (build it with :func:`make_experiment`)."""

    smoke: bool
    encoder: str  # the main vision-language backbone (Table 1, Table 2, Figs. 2-4, ablations)
    backbones: tuple[str, ...]  # Fig. 1b and Table 3
    image_encoder: str  # image-only baselines of Table 1
    datasets: tuple[str, ...]
    data_root: Path
    figures_dir: Path
    results_dir: Path
    device: str | None = None
    seed: int = 0
    max_trials: int = 0  # 0 = every trial of the protocol
    preprocess: str = "default"
    dictionary: str = "imagenet"
    dictionary_size: int | None = None  # None = the whole dictionary
    lams: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0, 2.0)  # Table 2
    ks: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
    shots: tuple[int | None, ...] = (1, 5, 10, 50, None)  # None = all labelled images
    english_sizes: tuple[int, ...] = (1000, 5000, 20000)
    imagenet_sizes: tuple[int, ...] = (100, 500)  # seeded random subsets of the ImageNet dictionary
    tsne_per_class: int = 100
    n_quantiles: int = 10
    baseline_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stands_for: Mapping[str, str] = field(default_factory=dict)  # encoder -> paper backbone it replaces

    @property
    def executed_dir(self) -> Path:
        """Where `python -m bliss_utils reproduce` keeps the executed notebooks."""
        return self.results_dir / "executed"

    def settings(
        self, datasets: Sequence[str] | None = None, n_normal: Sequence[int] | None = None
    ) -> dict[str, list[list[int]]]:
        """The paper's settings (name -> trials of normal classes) for ``datasets``, cut to ``max_trials`` trials."""
        from .splits import PAPER_SETTINGS, class_splits, setting_name

        wanted = set(datasets or self.datasets)
        unknown = wanted - set(DATASETS)
        if unknown:
            raise ValueError(f"unknown dataset(s) {sorted(unknown)}; choose from {list(DATASETS)}")
        out = {}
        for dataset, n in PAPER_SETTINGS:
            if dataset in wanted and (n_normal is None or n in n_normal):
                trials = class_splits(dataset, n)
                out[setting_name(dataset, n)] = trials[: self.max_trials] if self.max_trials else trials
        return out

    def paper_backbone(self, encoder: str) -> str:
        """The paper's backbone an encoder stands for (itself outside smoke mode)."""
        return self.stands_for.get(encoder, encoder)

    @property
    def cache_dir(self) -> Path | None:
        """Embedding cache: smoke runs keep theirs beside the generated data; paper runs use config.embeddings_dir()."""
        return self.data_root / "embeddings" if self.smoke else None

    def load_encoder(self, name: str | None = None) -> Any:
        """The encoder ``name`` (default the main one) on this experiment's device, loaded once per process."""
        from .encoders import load_encoder

        key = (name or self.encoder, self.device, self.preprocess)
        if key not in _ENCODERS:
            _ENCODERS[key] = load_encoder(key[0], device=self.device, preprocess=self.preprocess)
        return _ENCODERS[key]

    def embedding_set(
        self,
        dataset: str,
        encoder: str | None = None,
        dictionary: str | Sequence[str] | None = None,
        template: Any = None,
        dictionary_exclude: Sequence[str] = (),
        progress: bool = True,
    ) -> Any:
        """Cached train/test image embeddings, class texts and dictionary of ``dataset`` (bliss_utils.embeddings)."""
        from .embeddings import load_embedding_set
        from .prompts import PAPER_TEMPLATE

        size = self.dictionary_size if dictionary is None or isinstance(dictionary, str) else None
        return load_embedding_set(
            self.load_encoder(encoder), dataset, dictionary=dictionary or self.dictionary,
            template=template or PAPER_TEMPLATE, root=self.data_root, dictionary_size=size,
            dictionary_exclude=tuple(dictionary_exclude), cache_dir=self.cache_dir, progress=progress,
        )  # fmt: skip

    def text_embeddings(self, texts: Sequence[str], encoder: str | None = None, template: Any = None) -> Any:
        """Text embeddings of ``texts`` through the prompt ``template`` (default the paper's), cached."""
        from .embeddings import text_embeddings
        from .prompts import PAPER_TEMPLATE

        return text_embeddings(
            self.load_encoder(encoder), list(texts), template=template or PAPER_TEMPLATE, cache_dir=self.cache_dir
        )

    def dictionary_variants(self) -> dict[str, list[str]]:
        """The dictionaries of the dictionary ablation: label -> entries (ImageNet whole and random subsets, English
        words of several sizes, the CIFAR label sets)."""
        import numpy as np

        from .dictionaries import load_dictionary

        imagenet = load_dictionary("imagenet", size=self.dictionary_size)
        out = {"imagenet": imagenet}
        rng = np.random.default_rng(self.seed)
        for n in self.imagenet_sizes:
            if n < len(imagenet):  # keep the file's order: only which entries, not their order, is random
                out[f"imagenet-random-{n}"] = [
                    imagenet[i] for i in np.sort(rng.choice(len(imagenet), n, replace=False))
                ]
        for n in self.english_sizes:
            out[f"english-{n}"] = load_dictionary("english", size=n)
        for name in ("cifar10", "cifar100"):
            out[f"{name}-labels"] = load_dictionary(name)
        return out

    def with_dictionary(self, data: Any, entries: Sequence[str], label: str, template: Any = None) -> Any:
        """``data`` with its dictionary replaced by the embeddings of ``entries`` (same encoder), labelled ``label``."""
        if not entries:
            raise ValueError(f"dictionary {label!r} is empty: nothing to replace the dictionary with")
        meta = dict(getattr(data, "meta", {}) or {}, dictionary=label, dictionary_entries=list(entries))
        return dataclasses.replace(data, dictionary=self.text_embeddings(entries, data.encoder, template), meta=meta)

    def provenance(self, *sets: Any) -> dict[str, dict[str, str]]:
        """encoder -> {'weights': ..., 'data': ...} for REPORT.md, from the EmbeddingSets' metadata."""
        out: dict[str, dict[str, str]] = {}
        for s in sets:
            meta = dict(getattr(s, "meta", {}) or {})
            enc = meta.get("encoder") or {}
            weights = str(enc.get("weights_id") or "unknown")
            if enc.get("preprocess_id"):
                weights += f" (preprocess {enc['preprocess_id']})"
            if self.smoke:
                data = f"generated {s.dataset} (bliss_utils.synthetic, {len(s.train)} train / {len(s.test)} test)"
            else:
                data = f"{s.dataset} ({len(s.train)} train / {len(s.test)} test images)"
            entry = out.setdefault(s.encoder, {"weights": weights, "data": ""})
            entry["data"] = "; ".join(dict.fromkeys(x for x in [*entry["data"].split("; "), data] if x))
        return out

    def evaluate(
        self,
        sets: Any,
        settings: Mapping[str, Sequence[Sequence[int]]] | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """grid.evaluate_grid over one EmbeddingSet or a {dataset: EmbeddingSet} mapping, each with its dataset's
        settings (default: the paper's, cut to max_trials), this experiment's seed and baseline parameters."""
        import pandas as pd

        from .grid import evaluate_grid

        by_dataset = {sets.dataset: sets} if hasattr(sets, "train") else dict(sets)
        if not by_dataset:
            raise ValueError("no embedding sets to evaluate")
        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("baseline_params", self.baseline_params)
        frames = []
        for dataset, data in by_dataset.items():
            splits = settings if settings is not None else self.settings([dataset])
            frames.append(evaluate_grid(data, splits, progress=progress, **kwargs))
        return pd.concat(frames, ignore_index=True)

    def embedding_jobs(self) -> list[tuple[str, str]]:
        """Every (encoder, dataset) the notebooks read: the main backbone and the image-only one on every dataset,
        the other backbones on CIFAR-10 (Fig. 1b, Fig. 2, Table 3)."""
        jobs = [(self.encoder, d) for d in self.datasets]
        jobs += [(b, "cifar10") for b in self.backbones if b != self.encoder]
        jobs += [(self.image_encoder, d) for d in self.datasets]
        return jobs

    def template_variants(self) -> dict[str, Any]:
        """Prompt templates of the template ablation: label -> template (or list of templates, averaged)."""
        from .prompts import ENSEMBLE_TEMPLATES, PAPER_TEMPLATE

        return {
            "paper": PAPER_TEMPLATE,
            "bare label": "{}",
            f"ensemble ({len(ENSEMBLE_TEMPLATES)})": list(ENSEMBLE_TEMPLATES),
        }

    def close_pairs(self) -> dict[str, list[list[int]]]:
        """CIFAR-10 settings with one normal and one anomalous class, semantically close (e.g. horse vs deer)."""
        from .datasets import class_names

        names = class_names("cifar10")
        return {f"{a}-vs-{b}": [[names.index(a)]] for a, b in CLOSE_PAIRS}

    def close_pair_classes(self) -> dict[str, tuple[int, int]]:
        """setting name -> (normal class, anomalous class) for :meth:`close_pairs`."""
        from .datasets import class_names

        names = class_names("cifar10")
        return {f"{a}-vs-{b}": (names.index(a), names.index(b)) for a, b in CLOSE_PAIRS}


def describe(data: Any) -> dict[str, Any]:
    """One inventory row of an EmbeddingSet: encoder, dataset, counts, dimension, weights."""
    meta = dict(getattr(data, "meta", {}) or {})
    return {
        "encoder": data.encoder, "dataset": data.dataset, "n_train": len(data.train), "n_test": len(data.test),
        "dim": int(data.train.shape[1]),
        "n_class_texts": 0 if data.class_texts is None else len(data.class_texts),
        "n_dictionary": 0 if data.dictionary is None else len(data.dictionary),
        "weights": (meta.get("encoder") or {}).get("weights_id", ""),
    }  # fmt: skip


def restrict_test(data: Any, classes: Sequence[int]) -> Any:
    """``data`` (an EmbeddingSet) with only the test images of ``classes`` (e.g. one normal vs one anomalous class)."""
    import numpy as np

    keep = np.isin(np.asarray(data.test_labels), list(classes))
    if not keep.any():
        raise ValueError(f"no test images of classes {list(classes)}")
    return dataclasses.replace(data, test=data.test[keep], test_labels=np.asarray(data.test_labels)[keep])


def smoke_data_root(output_root: Path | None = None) -> Path:
    """Default folder of the generated smoke data: ``<root>/out/smoke/data`` (git-ignored)."""
    return (output_root or find_project_root() / "out" / "smoke") / "data"


def ensure_smoke_data(root: str | Path, seed: int = 0) -> Path:
    """Generate the small fake CIFAR-10, CIFAR-100 and TinyImageNet under ``root`` once (idempotent)."""
    import json

    from . import synthetic

    root = Path(root)
    marker = root / SMOKE_MARKER
    wanted = {"seed": seed, "per_class": SMOKE_DATA, "generator": synthetic.GENERATOR_VERSION}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == json.loads(json.dumps(wanted)):
                return root
        except ValueError:
            pass  # a broken marker: regenerate
    root.mkdir(parents=True, exist_ok=True)
    logger.info("generating smoke data under %s", root)
    synthetic.make_fake_cifar(root, "cifar10", *SMOKE_DATA["cifar10"], seed=seed)
    synthetic.make_fake_cifar(root, "cifar100", *SMOKE_DATA["cifar100"], seed=seed)
    synthetic.make_fake_tinyimagenet(root, *SMOKE_DATA["tinyimagenet"], seed=seed)
    atomic_write_text(marker, json.dumps(wanted))
    return root


def make_experiment(
    smoke: bool = False,
    encoder: str = "",
    data_root: str = "",
    output_dir: str = "",
    device: str = "",
    max_trials: int = 0,
    seed: int = 0,
    preprocess: str = "default",
) -> Experiment:
    """Turn notebook parameters into an :class:`Experiment` (empty strings / 0 mean the mode's default).

    Paper mode reads data from ``data_root`` (default bliss_utils.config.data_dir()); smoke mode generates its data
    there (default ``out/smoke/data``). Figures and tables go to ``<output_dir>/figures`` and ``<output_dir>/results``
    (default the repository's ``figures/`` and ``results/``).
    """
    if not isinstance(smoke, bool):
        raise ValueError(f"smoke must be True or False; got {smoke!r}")  # noqa: TRY004 (team rule: bad input -> ValueError)
    if max_trials < 0:
        raise ValueError(f"max_trials must be >= 0 (0 = all trials); got {max_trials}")
    if preprocess not in ("default", "cifar"):
        raise ValueError(
            f"preprocess must be 'default' (each backbone's own) or 'cifar' (the authors' code); got {preprocess!r}"
        )
    out = Path(output_dir).expanduser().resolve() if output_dir else None
    figs = out / "figures" if out else figures_dir()
    res = out / "results" if out else results_dir()
    common = {"device": device or None, "seed": seed, "preprocess": preprocess, "figures_dir": figs, "results_dir": res}
    if smoke:
        root = Path(data_root).expanduser().resolve() if data_root else smoke_data_root(out)
        ensure_smoke_data(root, seed=seed)
        stand_ins = {v: k for k, v in SMOKE_STAND_INS.items()}
        main = encoder or SMOKE_STAND_INS[PAPER_ENCODER]
        return Experiment(
            smoke=True,
            encoder=main,
            backbones=tuple(SMOKE_STAND_INS[b] for b in PAPER_BACKBONES),
            image_encoder=SMOKE_STAND_INS[PAPER_IMAGE_ENCODER],
            datasets=DATASETS,
            data_root=root,
            max_trials=max_trials or 2,
            dictionary_size=64,
            lams=(0.1, 0.5, 0.75, 2.0),
            ks=(1, 5, 10),
            shots=(1, 5, None),
            english_sizes=(32, 64),
            imagenet_sizes=(16,),
            tsne_per_class=6,
            n_quantiles=5,
            baseline_params={"lunar": {"n_epochs": 5}},
            stands_for=stand_ins,
            **common,
        )
    root = Path(data_root).expanduser().resolve() if data_root else data_dir()
    return Experiment(
        smoke=False,
        encoder=encoder or PAPER_ENCODER,
        backbones=PAPER_BACKBONES,
        image_encoder=PAPER_IMAGE_ENCODER,
        datasets=DATASETS,
        data_root=root,
        max_trials=max_trials,
        **common,
    )
