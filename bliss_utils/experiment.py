"""One place that turns a notebook's parameters into a configuration: the paper's settings or the smoke settings.

Paper mode: CLIP ViT-B/16 on CIFAR-10, CIFAR-100 and TinyImageNet; BLIP and SLIP ViT-B/16 for Fig. 1b and Table 3;
ViT-B/16 ImageNet-21k for the image-only baselines; the ImageNet-1k dictionary; every trial of the protocol.
Smoke mode: tiny random-weight encoders (tiny-clip, tiny-blip, tiny-slip, tiny-vit) on small generated datasets
(bliss_utils.synthetic), a small dictionary and few trials: it tests the pipeline, not the paper.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import data_dir, figures_dir, find_project_root, results_dir

logger = logging.getLogger(__name__)

PAPER_ENCODER = "clip-vit-b16"
PAPER_BACKBONES = ("clip-vit-b16", "blip", "slip-vit-b16")
PAPER_IMAGE_ENCODER = "vit-b16-in21k"
DATASETS = ("cifar10", "cifar100", "tinyimagenet")
# which tiny random encoder stands in for which paper backbone in smoke mode
SMOKE_STAND_INS = {"clip-vit-b16": "tiny-clip", "blip": "tiny-blip", "slip-vit-b16": "tiny-slip", "vit-b16-in21k": "tiny-vit"}
# generated data per class in smoke mode: (train, test)
SMOKE_DATA = {"cifar10": (20, 10), "cifar100": (3, 2), "tinyimagenet": (3, 2)}
SMOKE_MARKER = "BLISS_SMOKE_DATA.json"
# CIFAR-10 pairs of semantically close classes: (normal, anomalous); the paper names horse vs deer
CLOSE_PAIRS = (("horse", "deer"), ("deer", "horse"), ("cat", "dog"), ("dog", "cat"),
               ("automobile", "truck"), ("truck", "automobile"), ("airplane", "ship"), ("ship", "airplane"))


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
    tsne_per_class: int = 100
    n_quantiles: int = 10
    baseline_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stands_for: Mapping[str, str] = field(default_factory=dict)  # encoder -> paper backbone it replaces

    @property
    def executed_dir(self) -> Path:
        """Where `python -m bliss_utils reproduce` keeps the executed notebooks."""
        return self.results_dir / "executed"

    def settings(self, datasets: Sequence[str] | None = None, n_normal: Sequence[int] | None = None) -> dict[str, list[list[int]]]:
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

    def embedding_set(self, dataset: str, encoder: str | None = None, dictionary: str | None = None,
                      template: Any = None, with_texts: bool = True, progress: bool = True) -> Any:
        """Cached train/test image embeddings, class texts and dictionary of ``dataset`` (bliss_utils.embeddings)."""
        from . import embeddings
        from .prompts import PAPER_TEMPLATE

        name = encoder or self.encoder
        kwargs: dict[str, Any] = {}
        if with_texts:
            kwargs["dictionary"] = dictionary or self.dictionary
            if self.dictionary_size is not None:
                kwargs["dictionary_size"] = self.dictionary_size
        kwargs = _supported(embeddings.load_embedding_set, {
            **kwargs, "template": template or PAPER_TEMPLATE, "root": self.data_root, "device": self.device,
            "preprocess": self.preprocess, "progress": progress, "with_texts": with_texts,
        })
        return embeddings.load_embedding_set(name, dataset, **kwargs)

    def text_embeddings(self, texts: Sequence[str], encoder: str | None = None, template: Any = None) -> Any:
        """Text embeddings of ``texts`` through the prompt ``template`` (default the paper's), cached."""
        from . import embeddings
        from .prompts import PAPER_TEMPLATE

        kwargs = _supported(embeddings.text_embeddings, {"device": self.device})
        return embeddings.text_embeddings(encoder or self.encoder, list(texts), template=template or PAPER_TEMPLATE, **kwargs)

    def dictionary_entries(self, name: str | None = None, size: int | None = None, exclude: Sequence[str] = ()) -> list[str]:
        """Entries of a dictionary (bliss_utils.dictionaries), cut to ``size`` (default: the mode's dictionary size)."""
        from .dictionaries import load_dictionary

        size = size if size is not None else self.dictionary_size
        entries = load_dictionary(name or self.dictionary, size=size if (name or self.dictionary) == "english" else None,
                                  exclude=tuple(exclude))
        return entries[:size] if size else entries

    def with_dictionary(self, data: Any, entries: Sequence[str], template: Any = None, label: str = "") -> Any:
        """``data`` with its dictionary replaced by the embeddings of ``entries`` (same encoder)."""
        if not entries:
            raise ValueError(f"dictionary {label or ''} is empty: nothing to replace the dictionary with")
        meta = dict(getattr(data, "meta", {}) or {}, dictionary=label or f"{len(entries)} entries")
        return dataclasses.replace(data, dictionary=self.text_embeddings(entries, data.encoder, template), meta=meta)

    def provenance(self, *sets: Any) -> dict[str, dict[str, str]]:
        """encoder -> {'weights': ..., 'data': ...} for REPORT.md, from the EmbeddingSets' metadata."""
        out: dict[str, dict[str, str]] = {}
        for s in sets:
            meta = dict(getattr(s, "meta", {}) or {})
            weights = str(meta.get("weights_id") or meta.get("weights") or ("random (smoke)" if self.smoke else "unknown"))
            data = str(meta.get("dataset_identity") or meta.get("data") or s.dataset)
            if self.smoke:
                data = f"generated {s.dataset} (bliss_utils.synthetic)"
            entry = out.setdefault(s.encoder, {"weights": weights, "data": ""})
            entry["data"] = "; ".join(x for x in dict.fromkeys([*entry["data"].split("; "), data]) if x)
        return out

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


def _supported(func: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the keyword arguments ``func`` accepts (the embeddings API may grow options; pass what it knows)."""
    import inspect

    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in kwargs.items() if v is not None}
    return {k: v for k, v in kwargs.items() if k in params and v is not None}


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
    wanted = {"seed": seed, "per_class": SMOKE_DATA}
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
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(wanted))
    os.replace(tmp, marker)
    return root


def make_experiment(smoke: bool = False, encoder: str = "", data_root: str = "", output_dir: str = "",
                    device: str = "", max_trials: int = 0, seed: int = 0, preprocess: str = "default") -> Experiment:
    """Turn notebook parameters into an :class:`Experiment` (empty strings / 0 mean the mode's default).

    Paper mode reads data from ``data_root`` (default bliss_utils.config.data_dir()); smoke mode generates its data
    there (default ``out/smoke/data``). Figures and tables go to ``<output_dir>/figures`` and ``<output_dir>/results``
    (default the repository's ``figures/`` and ``results/``).
    """
    if not isinstance(smoke, bool):
        raise ValueError(f"smoke must be True or False; got {smoke!r}")
    if max_trials < 0:
        raise ValueError(f"max_trials must be >= 0 (0 = all trials); got {max_trials}")
    if preprocess not in ("default", "cifar"):
        raise ValueError(f"preprocess must be 'default' (each backbone's own) or 'cifar' (the authors' code); got {preprocess!r}")
    out = Path(output_dir).expanduser().resolve() if output_dir else None
    figs = out / "figures" if out else figures_dir()
    res = out / "results" if out else results_dir()
    common = dict(device=device or None, seed=seed, preprocess=preprocess, figures_dir=figs, results_dir=res)
    if smoke:
        root = Path(data_root).expanduser().resolve() if data_root else smoke_data_root(out)
        ensure_smoke_data(root, seed=seed)
        stand_ins = {v: k for k, v in SMOKE_STAND_INS.items()}
        main = encoder or SMOKE_STAND_INS[PAPER_ENCODER]
        return Experiment(
            smoke=True, encoder=main, backbones=tuple(SMOKE_STAND_INS[b] for b in PAPER_BACKBONES),
            image_encoder=SMOKE_STAND_INS[PAPER_IMAGE_ENCODER], datasets=DATASETS, data_root=root,
            max_trials=max_trials or 2, dictionary_size=64, lams=(0.1, 0.5, 0.75, 2.0), ks=(1, 5, 10),
            shots=(1, 5, None), english_sizes=(32, 64), tsne_per_class=6, n_quantiles=5,
            baseline_params={"lunar": {"n_epochs": 5}}, stands_for=stand_ins, **common,
        )
    root = Path(data_root).expanduser().resolve() if data_root else data_dir()
    return Experiment(
        smoke=False, encoder=encoder or PAPER_ENCODER, backbones=PAPER_BACKBONES, image_encoder=PAPER_IMAGE_ENCODER,
        datasets=DATASETS, data_root=root, max_trials=max_trials, **common,
    )
