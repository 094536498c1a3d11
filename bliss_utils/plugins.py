"""``$BLISS_PLUGINS``: the user's own modules, imported in whichever process reads a table they add to.

The variable holds module names or ``.py`` paths, comma-separated. The method table and the encoder registry call
:func:`load_plugins` before they read their names, so a module that calls ``register_method`` or ``register_encoder``
reaches the CLI and every notebook kernel (child processes inherit the variable; docs/extending.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

PLUGINS_VAR = "BLISS_PLUGINS"
# entries imported (or being imported) by this process: a plugin that reads a table while it loads does not recurse
_loaded: set[str] = set()


def _import_plugin(entry: str) -> None:
    """Import one ``$BLISS_PLUGINS`` entry: a module name, or a path to a .py file."""
    if not entry.endswith(".py"):
        importlib.import_module(entry)
        return
    path = Path(entry).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"${PLUGINS_VAR} names {entry!r}, but {path} is not a file")
    spec = importlib.util.spec_from_file_location(f"bliss_plugin_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def load_plugins() -> None:
    """Import every module ``$BLISS_PLUGINS`` names that this process has not imported yet."""
    # read at call time: a test or notebook may set it late
    for entry in filter(None, (e.strip() for e in os.environ.get(PLUGINS_VAR, "").split(","))):
        if entry not in _loaded:
            _loaded.add(entry)
            _import_plugin(entry)
