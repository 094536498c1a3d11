"""What every notebook shares, resolved by one call from its parameters cell: ``session = open_session(globals())``.

A notebook keeps its own knobs; the shared ones (where the data, cache and outputs live, the device, the smoke
labels, and the text settings of its embeddings) are read here once. An empty string or 0 means the documented
default (``""``: the project's folder or the automatic device; ``DICTIONARY_SIZE = 0``: the whole dictionary).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bliss_utils.config import find_project_root, output_dirs
from bliss_utils.running.reproduce import STAND_INS_VAR, parameter_fits

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


SMOKE_HINT = (
    "To try this notebook without them, on generated data with stand-in encoders: set SMOKE = True in its "
    "parameters cell (or `papermill NOTEBOOK OUT.ipynb -p SMOKE True`)."
)


class NotebookStop(FileNotFoundError):
    """What a notebook needs is missing; IPython and papermill show this message alone, not a library traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ParameterError(TypeError):
    """A parameter holds a value of another type than its notebook declares (a papermill -p, an edited cell)."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def _stop_if_missing(load: Callable[[], Any], smoke: bool) -> Any:
    """``load()``, with a missing dataset or checkpoint in paper mode turned into a :class:`NotebookStop`, and
    unreadable image files into one naming them."""
    from bliss_utils.datasets.files import BadImageError
    from bliss_utils.datasets.images import DatasetNotFoundError
    from bliss_utils.encoders import WeightsNotFoundError

    try:
        return load()
    except BadImageError as err:  # the list of files is the message; a traceback would bury it
        raise NotebookStop(str(err)) from None
    except (DatasetNotFoundError, WeightsNotFoundError) as err:
        if smoke:
            raise
        raise NotebookStop(f"{err}\n\n{SMOKE_HINT}") from None


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

        kwargs = {**self.text, **self.where, **changes}
        return _stop_if_missing(partial(embeddings.load_embedding_set, encoder, dataset, **kwargs), self.smoke)

    def text_embeddings(self, encoder: str, texts: list[str], template: str | list[str]) -> Any:
        """Cached embeddings of ``texts`` through ``encoder``'s text tower with ``template``."""
        from bliss_utils import embeddings

        where = {k: v for k, v in self.where.items() if k != "root"} | {"preprocess": self.text.get("preprocess")}
        load = partial(embeddings.text_embeddings, encoder, texts, template=template, **where)
        return _stop_if_missing(load, self.smoke)

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


def _declared(notebook: str) -> dict[str, Any]:
    """The parameters (name -> declared value) of ``notebooks/<notebook>.ipynb`` in the project."""
    from bliss_utils.running import reproduce

    path = find_project_root() / "notebooks" / f"{notebook}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(
            f"open_session(..., notebook={notebook!r}): no notebook {path} (start the kernel inside the repository, "
            "or set $BLISS_ROOT to it)"
        )
    return reproduce.declared_parameters(path)


def check_parameters(namespace: Mapping[str, Any], notebook: str, declared: Mapping[str, Any] | None = None) -> None:
    """Raise a :class:`ParameterError` for a parameter whose value is not of the type ``notebook`` declares
    (``declared``: its parameters, when already read)."""
    for name, default in (declared if declared is not None else _declared(notebook)).items():
        if name in namespace and not parameter_fits(value := namespace[name], default):
            kind = type(default).__name__
            raise ParameterError(
                f"{name} = {value!r} is a {type(value).__name__}, but {notebook} declares a {kind} ({name}: {kind} = "
                f"{default!r}). With papermill, -p gives numbers, booleans and strings; give a list or a dict with "
                f"-y, e.g. -y '{name}: {json.dumps(default)}'"
            )


def apply_smoke(
    namespace: MutableMapping[str, Any], notebook: str, declared: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Put ``notebooks/smoke.json``'s values into ``namespace`` where a parameter still holds the value the notebook
    file ``notebook`` declares (``declared``, when already read), generate the smoke data on first use, and return
    what changed.

    Parameters given explicitly (a papermill ``-p``, an edit of the parameters cell) differ from the file and win.
    """
    from bliss_utils.running import reproduce

    root = find_project_root()
    declared = declared if declared is not None else _declared(notebook)
    settings = reproduce.mode_settings("smoke", root)
    data = Path(namespace.get("DATA_ROOT") or reproduce.generated_data_root("smoke", root)).expanduser().resolve()
    wanted = reproduce.stand_in_values(settings, notebook, declared, str(data))
    changes = {k: v for k, v in wanted.items() if namespace.get(k) == declared[k]}
    changes["DATA_ROOT"] = str(reproduce.make_generated_data(data, settings["data"]))
    if not namespace.get("CACHE_DIR"):  # beside the generated data, as reproduce --smoke keeps it
        changes["CACHE_DIR"] = str(data / "embeddings")
    namespace.update(changes)
    print("SMOKE: stand-ins from notebooks/smoke.json (not the paper's numbers):", changes)
    return changes


def open_session(namespace: MutableMapping[str, Any], notebook: str = "", style: bool = True) -> Session:
    """Resolve the shared parameters of a notebook's namespace (``globals()``) once; ``style`` sets the figure style.

    With ``SMOKE = True`` in a notebook run on its own, ``notebook`` (its file's name without .ipynb) is needed:
    :func:`apply_smoke` fills the namespace with the smoke values first (``reproduce`` injects them itself).
    """
    declared = _declared(notebook) if notebook else None  # the notebook file, read once for both uses below
    if declared is not None:  # papermill's -p and an edited cell are checked here; reproduce's --set before it starts
        check_parameters(namespace, notebook, declared)
    if namespace.get("SMOKE") is True and not os.environ.get(STAND_INS_VAR):
        if not notebook:
            raise ValueError("SMOKE = True on its own needs open_session(globals(), notebook=<its file name>)")
        apply_smoke(namespace, notebook, declared)
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
