"""Image files as users have them: each read as 8-bit RGB, and the unreadable ones found before any embedding.

The conversion is PIL's ``Image.convert("RGB")`` (https://pillow.readthedocs.io, ``Image.convert``): grayscale is
repeated in the three channels, a palette is looked up, CMYK goes through PIL's plain formula (no colour profile),
and **alpha is dropped, not composited**: a transparent pixel shows the colour stored under it. PIL would clip
16-bit grayscale to 255 (nearly all white), so those files are scaled to 8 bits first (0..65535 -> 0..255).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# PIL's modes holding more than 8 bits a pixel that convert("RGB") clips instead of scaling
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
SHOWN = 10  # bad files listed by name in an error; the rest are counted


class BadImageError(ValueError):
    """Image files that cannot be read; the message names them."""


def to_rgb(img: Any) -> Any:
    """``img`` (a PIL image of any mode) as 8-bit RGB: PIL's conversion, 16-bit grayscale scaled first."""
    from PIL import Image

    if img.mode in _WIDE_MODES:
        scaled = np.clip(np.asarray(img, dtype=np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        img = Image.fromarray(scaled)
    return img.convert("RGB")


def read_rgb(path: Path) -> Any:
    """The image file ``path`` decoded in full as 8-bit RGB; an unreadable file is a :class:`BadImageError`."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # the whole file: a truncated one fails here, not in the middle of a batch
            return to_rgb(img)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(f"cannot read image {path}: {err}") from err


def _problem(path: Path) -> str | None:
    try:
        read_rgb(path)
    except BadImageError as err:
        return str(err.__cause__ or err)
    return None


def find_bad_images(paths: Sequence[Path], workers: int = 4) -> list[tuple[Path, str]]:
    """Every file of ``paths`` that does not decode, with the reason (decoded in threads: PIL releases the GIL)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(_problem, paths, chunksize=64))
    return [(p, why) for p, why in zip(paths, problems) if why is not None]


def describe_bad(bad: Sequence[tuple[Path, str]]) -> str:
    """One line per bad file (the first :data:`SHOWN`), then how many more."""
    lines = [f"  {p}: {why}" for p, why in bad[:SHOWN]]
    more = [f"  ... and {len(bad) - SHOWN} more"] if len(bad) > SHOWN else []
    return "\n".join([*lines, *more])


def count_by_suffix(paths: Sequence[Path]) -> str:
    """``"3 .txt, 1 .json"``: what a list of skipped files holds."""
    counts = Counter(p.suffix.lower() or "(no suffix)" for p in paths)
    return ", ".join(f"{n} {suffix}" for suffix, n in counts.most_common())
