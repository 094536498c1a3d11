"""The one progress bar every long step uses: tqdm's, with an estimate of the time left.

In JupyterLab (and a terminal) it is ``tqdm.auto``'s bar. With ``BLISS_PROGRESS=text`` (``reproduce`` sets it for the
notebooks it runs headless) it is a plain text bar redrawn at most every ``TEXT_MININTERVAL`` seconds, so the
executed notebooks and the terminal get a few lines, not thousands of updates, and no widget. tqdm's own environment
variables still apply (tqdm >= 4.66 reads them when it is imported): ``TQDM_DISABLE=1`` hides every bar,
``TQDM_MININTERVAL`` sets the redraw interval in either mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

MODE_VAR = "BLISS_PROGRESS"
MODES = ("auto", "text")
TEXT_MININTERVAL = 10.0  # seconds between redraws of a headless bar


def progress_mode() -> str:
    """``$BLISS_PROGRESS``: ``"auto"`` (widget in a notebook, terminal bar elsewhere) or ``"text"`` (rare redraws)."""
    mode = os.environ.get(MODE_VAR, "").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE_VAR} must be one of {list(MODES)}; got {os.environ[MODE_VAR]!r}")
    return mode


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str = "",
    total: float | None = None,
    initial: float = 0,
    unit: str = "it",
    leave: bool = True,
    disable: bool = False,
) -> Any:
    """A tqdm bar over ``iterable`` (or updated by hand to ``total`` from ``initial``); ``leave=False``: an inner bar.

    ``disable=True`` hides it; ``disable=False`` leaves the choice to tqdm, so ``TQDM_DISABLE=1`` still hides it.
    """
    # tqdm applies its TQDM_* variables as defaults: an argument passed here would override them
    kwargs: dict[str, Any] = {"desc": desc, "total": total, "initial": initial, "unit": unit, "leave": leave}
    if disable:
        kwargs["disable"] = True
    if progress_mode() == "text":
        from tqdm.std import tqdm

        if "TQDM_MININTERVAL" not in os.environ:
            kwargs["mininterval"] = TEXT_MININTERVAL
        kwargs["position"] = 0  # an inner bar takes the outer one's line: cursor moves would land in notebooks as text
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
