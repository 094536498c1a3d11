"""sha256 of large files (weights, dataset archives), computed once per file version and remembered on disk.

A file version is (absolute path, size, mtime_ns): a replaced or edited file is hashed again. The memo is a small
JSON file in the data folder (when there is one: no folder is made for it), written atomically; losing it only costs
the time to hash again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from bliss_utils import config
from bliss_utils._io import atomic_write_text

log = logging.getLogger(__name__)

MEMO_NAME = "file-sha256.json"
_LOCK = threading.Lock()
_SEEN: dict[str, str] = {}


def memo_path() -> Path:
    """Where the remembered hashes live: ``<data>/file-sha256.json``."""
    return config.data_dir() / MEMO_NAME


def _read_memo(memo: Path) -> dict[str, str]:
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    # a hand-edited or damaged entry is dropped rather than trusted
    return {k: v for k, v in data.items() if isinstance(v, str) and len(v) == 64} if isinstance(data, dict) else {}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of ``path``'s bytes; remembered per (absolute path, size, mtime_ns) in this process and on disk."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"cannot fingerprint {path}: not a file")
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    with _LOCK:
        if key not in _SEEN and key in (known := _read_memo(memo := memo_path())):
            _SEEN[key] = known[key]
        if key in _SEEN:
            return _SEEN[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    sha = digest.hexdigest()
    with _LOCK:
        _SEEN[key] = sha
        if not memo.parent.is_dir():  # no data folder: nothing is written outside one
            return sha
        known = _read_memo(memo)  # read again: another process may have added entries meanwhile
        known[key] = sha
        try:
            atomic_write_text(memo, json.dumps(known, indent=0, sort_keys=True))
        except OSError as err:  # a read-only data folder only costs re-hashing next time
            log.debug("could not write %s: %s", memo, err)
    return sha


def file_fingerprint(path: str | Path) -> str:
    """``<name>:<size>B:sha256=<hex>`` of one file (its bytes, not its location)."""
    path = Path(path)
    return f"{path.name}:{path.stat().st_size}B:sha256={file_sha256(path)}"


def folder_fingerprint(folder: str | Path, names: list[str]) -> str:
    """One sha256 over the relative names, sizes and hashes of ``names`` (files inside ``folder``), in sorted order."""
    folder, digest, total = Path(folder), hashlib.sha256(), 0
    for rel in sorted(names):
        size = (folder / rel).stat().st_size
        total += size
        digest.update(f"{rel}\t{size}\t{file_sha256(folder / rel)}\n".encode())
    return f"{len(names)} files:{total}B:sha256={digest.hexdigest()}"


def _clear_process_memo() -> None:
    """Forget the in-process memo (tests use it to check the on-disk one)."""
    with _LOCK:
        _SEEN.clear()


__all__ = ["file_fingerprint", "file_sha256", "folder_fingerprint", "memo_path"]
