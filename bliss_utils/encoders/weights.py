"""Where pretrained weights come from: an explicit path, ``$BLISS_WEIGHTS_DIR``, or each library's own cache/download.

Every way of not finding them ends in one :class:`WeightsNotFoundError` naming the file to fetch and where to put it.
Environment variables are read at call time, so a test or notebook can switch them without re-importing anything.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from bliss_utils._filehash import file_fingerprint, folder_fingerprint
from bliss_utils._io import atomic_path, download
from bliss_utils.encoders.errors import WeightsNotFoundError

logger = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "BLISS_WEIGHTS_DIR"
ENV_OFFLINE = "BLISS_OFFLINE"
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", ENV_OFFLINE)
_DOWNLOAD_TIMEOUT_S = 30


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or BLISS_OFFLINE is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


def folder_name(encoder: str) -> str:
    """The encoder's folder under ``$BLISS_WEIGHTS_DIR`` (``:`` and ``/`` of the open forms become ``--``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", encoder)


def weights_dir_entry(encoder: str, filename: str = "") -> Path | None:
    """``$BLISS_WEIGHTS_DIR/<encoder>[/<filename>]`` if BLISS_WEIGHTS_DIR is set and that path exists, else None."""
    if not (root := os.environ.get(ENV_WEIGHTS_DIR)):
        return None
    path = Path(root).expanduser() / folder_name(encoder) / filename
    return path if path.exists() else None


def missing(encoder: str, fetch: str, filename: str, detail: str = "") -> WeightsNotFoundError:
    """Build the one error a missing checkpoint ends in: what to fetch and the places it is looked for."""
    root = os.environ.get(ENV_WEIGHTS_DIR) or "<BLISS_WEIGHTS_DIR>"
    where = Path(root) / folder_name(encoder) / filename
    if filename:
        put = f"  - put it at {where} (set the environment variable {ENV_WEIGHTS_DIR}), or"
        arg = f"  - pass load_encoder({encoder!r}, weights='/path/to/{filename}')."
    else:  # a Hugging Face model: a folder with config.json, the weights, tokenizer and preprocessor files
        put = f"  - put the repo's files in the folder {where}/ (set the environment variable {ENV_WEIGHTS_DIR}), or"
        arg = f"  - pass load_encoder({encoder!r}, weights='/path/to/that/folder')."
    head = f"pretrained weights for encoder {encoder!r} not found{': ' + detail if detail else ''}."
    tail = "With internet access and offline mode off, the weights download into the library's cache on first use."
    lines = [head, f"Fetch: {fetch}", "Then either:", put, arg, tail]
    if is_offline():
        on = [v for v in _OFFLINE_VARS if os.environ.get(v)]
        lines.append(f"(Offline mode is on: {', '.join(on)}; nothing was downloaded.)")
    return WeightsNotFoundError("\n".join(lines))


def explicit_path(weights: str | Path, encoder: str, fetch: str, filename: str) -> Path:
    """Return ``weights`` as an existing path, else raise :class:`WeightsNotFoundError`."""
    path = Path(weights).expanduser()
    if not path.exists():
        raise missing(encoder, fetch, filename, f"weights path {str(path)!r} does not exist")
    return path


def _hf_cache_dir() -> str | None:
    # huggingface_hub reads HF_HOME/HF_HUB_CACHE once at import; read them again so later changes are honoured
    home = os.environ.get("HF_HOME")
    return os.environ.get("HF_HUB_CACHE") or (os.path.join(home, "hub") if home else None)


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors

    return (errors.EntryNotFoundError, errors.HfHubHTTPError, errors.OfflineModeIsEnabled, ConnectionError)


def _from_hub(download: Callable[..., str], local_only: bool, encoder: str, fetch: str, file: str, what: str) -> Path:
    """``download(cache_dir=..., local_files_only=...)`` of huggingface_hub; its failures end in :func:`missing`."""
    try:
        return Path(download(cache_dir=_hf_cache_dir(), local_files_only=local_only or is_offline()))
    except _hub_errors() as err:
        detail = f"{type(err).__name__} while reading {what} from the Hugging Face cache"
        raise missing(encoder, fetch, file, detail) from None


def hf_snapshot(repo_id: str, patterns: Sequence[str], encoder: str, local_only: bool = False) -> Path:
    """Local folder with the files of ``repo_id`` matching ``patterns``, from the HF cache or downloaded into it."""
    from huggingface_hub import snapshot_download

    fetch = (
        f"the Hugging Face repo https://huggingface.co/{repo_id} (e.g. `hf download {repo_id} --local-dir <folder>`)"
    )
    download = partial(snapshot_download, repo_id, allow_patterns=list(patterns))
    return _from_hub(download, local_only, encoder, fetch, "", repo_id)


def hf_file(repo_id: str, filename: str, encoder: str, local_only: bool = False) -> Path:
    """Local path of ``filename`` from ``repo_id``, from the HF cache or downloaded into it."""
    from huggingface_hub import hf_hub_download

    fetch = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
    download = partial(hf_hub_download, repo_id, filename)
    return _from_hub(download, local_only, encoder, fetch, filename, f"{repo_id}/{filename}")


def hf_first_file(repo_id: str, filenames: Sequence[str], encoder: str, local_only: bool = False) -> Path:
    """The first of ``filenames`` that ``repo_id`` provides; if none, the error names the first (preferred) one."""
    first_error = None
    for fname in filenames:
        try:
            return hf_file(repo_id, fname, encoder, local_only)
        except WeightsNotFoundError as err:
            first_error = first_error or err
    assert first_error is not None, "no filenames given"
    raise first_error


def url_file(url: str, encoder: str, local_only: bool = False) -> Path:
    """Local copy of ``url`` under torch.hub's checkpoint folder (``$TORCH_HOME``), downloaded once, atomically."""
    import torch

    filename = url.rsplit("/", 1)[-1]
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if target.is_file():
        return target
    if local_only or is_offline():
        raise missing(encoder, url, filename, f"not in the torch hub cache ({target})")
    logger.info("downloading %s to %s", url, target)
    try:
        with atomic_path(target, suffix=".part") as tmp:  # a failed download leaves nothing behind
            download(url, tmp, _DOWNLOAD_TIMEOUT_S)
    except (urllib.error.URLError, OSError) as err:
        raise missing(encoder, url, filename, f"download failed ({err})") from None
    return target


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")


def fingerprint(path: Path) -> str:
    """Size and sha256 of a weights file, or of a model folder's config and weight files (remembered per file version).

    This is what ``weights_id`` records: the bytes actually loaded, whatever the file is called or where it was found.
    """
    if path.is_file():
        return file_fingerprint(path)
    files = [p for p in path.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")]
    return folder_fingerprint(path, sorted(str(p.relative_to(path)) for p in files))


TINY_SEED = 0


def random_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[None, str]:
    """(no file, identity) of a tiny encoder's seeded random weights: one per name; a weights argument is refused."""
    if weights is not None:
        raise ValueError(f"{name} has seeded random weights; it takes no weights argument")
    return None, f"{name}:random-seed{TINY_SEED}"
