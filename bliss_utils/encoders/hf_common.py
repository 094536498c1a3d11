"""What the transformers-based backends share: the import, PIL-backend image processors, model folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bliss_utils._checks import require
from bliss_utils.encoders.base import TRANSFORMERS
from bliss_utils.encoders.weights import explicit_path, fingerprint, hf_snapshot, missing, weights_dir_entry

_CONFIG_AND_TOKENIZER = ["*.json", "*.txt", "*.model", "merges.txt"]
# a model's weights, in one file or sharded with an index
_WEIGHT_FILES = [
    f"{stem}{index}" for index in ("", ".index.json") for stem in ("model.safetensors", "pytorch_model.bin")
]


def pil_processor_class(name: str) -> Any:
    """The PIL-backed image processor class ``name``: transformers 5 calls it ``<name>Pil``; in 4.x it is ``<name>``."""
    transformers = require(*TRANSFORMERS)
    # transformers 5 defaults to a torchvision backend whose resize differs from the original PIL pipelines
    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in _WEIGHT_FILES)


def model_folder(repo_id: str, encoder: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """Folder holding a transformers model (``weights``, ``$BLISS_WEIGHTS_DIR/<encoder>`` or the HF cache) and its id.

    The id fingerprints the folder's config and weight files, wherever the folder was found.
    """
    fetch = f"the Hugging Face repo https://huggingface.co/{repo_id} (`hf download {repo_id} --local-dir <folder>`)"
    if weights is not None:
        folder = explicit_path(weights, encoder, fetch, "")
        if not _has_weights(folder):
            raise missing(encoder, fetch, "", f"{folder} holds no config.json with model weights")
    elif (folder := weights_dir_entry(encoder)) is None or not _has_weights(folder):
        for files in ("*.safetensors", "pytorch_model*.bin*"):  # some repos ship only PyTorch .bin weights
            if _has_weights(folder := hf_snapshot(repo_id, [*_CONFIG_AND_TOKENIZER, files], encoder, local_only)):
                break
        else:
            raise missing(encoder, fetch, "", f"the cached copy of {repo_id} has no model weights")
    return folder, f"hf-folder@{fingerprint(folder)}"
