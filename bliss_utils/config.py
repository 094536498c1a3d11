"""Project paths (override the root with ``BLISS_ROOT``, the data folder with ``BLISS_DATA_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def find_project_root(start: Path | None = None) -> Path:
    """Return ``$BLISS_ROOT``, else the checkout above ``start`` (the cwd), else the one this package was installed
    from (``pip install -e``), else the cwd."""
    if env := os.environ.get("BLISS_ROOT"):
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    # a script or kernel started outside the checkout still finds its data, notebooks and outputs
    for top in (here, Path(__file__).resolve().parent):
        for folder in (top, *top.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "bliss_utils").is_dir():
                return folder
    return here


def data_dir() -> Path:
    """Folder for downloaded datasets, weights and caches (``$BLISS_DATA_DIR`` or ``<root>/data``)."""
    env = os.environ.get("BLISS_DATA_DIR")
    return Path(env).expanduser().resolve() if env else find_project_root() / "data"


def embeddings_dir() -> Path:
    """Root of the embedding cache: ``<data>/embeddings``."""
    return data_dir() / "embeddings"


def figures_dir() -> Path:
    """Where notebooks write figures: ``<root>/figures``."""
    return find_project_root() / "figures"


def results_dir() -> Path:
    """Where notebooks write tables and the report: ``<root>/results``."""
    return find_project_root() / "results"


def output_dirs(output_dir: str | Path = "") -> tuple[Path, Path]:
    """(figures, results) folders: ``<output_dir>/figures`` and ``<output_dir>/results``, or the repository's."""
    if not output_dir:
        return figures_dir(), results_dir()
    out = Path(output_dir).expanduser().resolve()
    return out / "figures", out / "results"
