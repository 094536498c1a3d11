"""Atomic file writes (a reader sees the old file or the whole new one, never half of it) and checked downloads."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``: it replaces ``path`` in one step if the block succeeds, else goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def download(url: str, path: str | Path, timeout: float) -> Path:
    """Stream ``url`` into ``path`` (pass a temporary path); OSError if fewer bytes came than were announced."""
    import urllib.request

    path = Path(path)
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
        expected = int(response.headers.get("Content-Length") or 0)
        while chunk := response.read(1 << 20):
            out.write(chunk)
    if expected and path.stat().st_size != expected:
        raise OSError(f"incomplete download: {path.stat().st_size} of {expected} bytes")
    return path
