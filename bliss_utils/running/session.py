"""What every notebook shares, resolved by one call from its parameters cell: ``session = open_session(globals())``.

A notebook keeps its own knobs; the shared ones (where the data, cache and outputs live, the device, the smoke
labels, and the text settings of its embeddings) are read here once. An empty string or 0 means the documented
default (``""``: the project's folder or the automatic device; ``DICTIONARY_SIZE = 0``: the whole dictionary).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bliss_utils.config import output_dirs

# parameter -> the type every notebook declares it with
SHARED = {"DATA_ROOT": str, "CACHE_DIR": str, "OUTPUT_DIR": str, "DEVICE": str, "SMOKE": bool, "PAPER_BACKBONE": dict}
# the embedding settings a notebook may declare, and load_embedding_set's argument each becomes
TEXT_SETTINGS = {
    "PREPROCESS": "preprocess",
    "DICTIONARY": "dictionary",
    "DICTIONARY_SIZE": "dictionary_size",
    "TEMPLATE": "template",
    "NAMES": "names",
}


@dataclass(frozen=True)
class Session:
    """A notebook's resolved shared settings, and the loaders that use them."""

    figures: Path
    results: Path
    where: dict  # root, cache_dir, device: where embeddings are found or computed
    text: dict = field(default_factory=dict)  # the notebook's embedding settings, as load_embedding_set's arguments
    smoke: bool = False
    paper_backbone: dict = field(default_factory=dict)

    def load(self, encoder: str, dataset: str, **changes: Any) -> Any:
        """Cached embeddings of ``encoder`` on ``dataset`` with the notebook's settings, ``changes`` applied."""
        from bliss_utils import embeddings

        return embeddings.load_embedding_set(encoder, dataset, **{**self.text, **self.where, **changes})

    def text_embeddings(self, encoder: str, texts: list[str], template: str | list[str]) -> Any:
        """Cached embeddings of ``texts`` through ``encoder``'s text tower with ``template``."""
        from bliss_utils import embeddings

        preprocess = self.text.get("preprocess")
        where = {k: v for k, v in self.where.items() if k != "root"}
        return embeddings.text_embeddings(encoder, texts, template=template, preprocess=preprocess, **where)

    def backbone(self, encoder: str) -> str:
        """The paper's backbone ``encoder`` stands in for (itself outside smoke mode)."""
        return self.paper_backbone.get(encoder, encoder)

    def label(self, encoder: str) -> str:
        """``encoder``'s name in figures: the paper's backbone, and the stand-in's name in smoke mode."""
        return self.backbone(encoder) + (f" (stand-in: {encoder})" if encoder in self.paper_backbone else "")

    def provenance(self, sets: Iterable[Any]) -> Any:
        """The provenance table of the embedding sets a notebook used (report.provenance)."""
        from bliss_utils.evaluation.report import provenance

        return provenance(sets, self.paper_backbone, self.smoke)


def _checked(namespace: Mapping[str, Any], name: str, kind: type) -> Any:
    if name not in namespace:
        raise NameError(f"the notebook's parameters cell does not define {name} (every notebook declares it)")
    value = namespace[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise TypeError(f"parameter {name} must be a {kind.__name__}; got {value!r}")
    return value


def open_session(namespace: Mapping[str, Any], style: bool = True) -> Session:
    """Resolve the shared parameters of a notebook's namespace (``globals()``) once; ``style`` sets the figure style."""
    shared = {name: _checked(namespace, name, kind) for name, kind in SHARED.items()}
    text = {arg: namespace[name] for name, arg in TEXT_SETTINGS.items() if name in namespace}
    if "dictionary_size" in text:
        text["dictionary_size"] = text["dictionary_size"] or None
    figures, results = output_dirs(shared["OUTPUT_DIR"])
    if style:
        from bliss_utils.evaluation.plotting import apply_style

        apply_style()
    where = {"root": shared["DATA_ROOT"] or None, "cache_dir": shared["CACHE_DIR"] or None}
    where["device"] = shared["DEVICE"] or None
    return Session(figures, results, where, text, shared["SMOKE"], dict(shared["PAPER_BACKBONE"]))
