"""Input validation shared by every scorer: clear errors instead of silent garbage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_embeddings(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Validate a (n, d) embedding matrix (finite, no zero rows) and return it as float32/float64."""
    arr = to_numpy(x)
    if arr.ndim == 1 and name.endswith("_embedding"):
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero embedding dimensions (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if dtype is None:
        dtype = np.float64 if arr.dtype == np.float64 else np.float32
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or infinite values (first at row {bad[0]}, column {bad[1]})")
    return arr


def l2_normalize(x: np.ndarray, name: str) -> np.ndarray:
    """Divide each row by its L2 norm; a zero row is an error (its direction is undefined)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    if (zero := np.flatnonzero(norms[:, 0] == 0)).size:
        raise ValueError(f"{name} has {zero.size} zero vector(s) (first at row {zero[0]}): cannot L2-normalise")
    return x / norms


def check_positive_int(value: Any, name: str, allow_none: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is a positive integer (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        kind = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{name} must be {kind}; got {value!r}")


# What a number parameter may be: the phrase its error message uses, and the test (besides being finite).
NUMBER_RULES: dict[str, Callable[[Any], bool]] = {
    "a finite number": lambda v: True,
    "a finite number >= 0": lambda v: v >= 0,
    ">= 0": lambda v: v >= 0,
    "a positive number": lambda v: v > 0,
    "> 0": lambda v: v > 0,
}


def check_number(value: Any, name: str, rule: str = "a finite number", why: str = "") -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is finite and meets ``rule`` (a key of NUMBER_RULES)."""
    if not (np.isfinite(value) and NUMBER_RULES[rule](value)):
        raise ValueError(f"{name} must be {rule}; got {value!r}{why}")


def as_unit_embeddings(**arrays: Any) -> dict[str, np.ndarray]:
    """Validate named (n, d) arrays (None entries skipped), cast them to one dtype (float64 if any is), L2-normalise
    them and check that they share d; the names appear in every error."""
    checked = {name: as_embeddings(a, name) for name, a in arrays.items() if a is not None}
    dtype = np.result_type(*checked.values())
    out = {name: l2_normalize(a.astype(dtype, copy=False), name) for name, a in checked.items()}
    check_same_dim(**out)
    return out


def as_test_embeddings(x: Any, dim: int, dtype: np.dtype, owner: str) -> np.ndarray:
    """Validate test embeddings ``X`` against the dimension and dtype a scorer was fitted with; L2-normalise them."""
    arr = as_embeddings(x, "X", dtype=dtype)
    if arr.shape[1] != dim:
        raise ValueError(
            f"X has embedding dimension {arr.shape[1]} but {owner} was fitted on dimension {dim}: "
            "were they made by the same backbone?"
        )
    return l2_normalize(arr, "X")


def check_same_dim(**arrays: np.ndarray) -> None:
    """Raise if the named (n, d) arrays disagree on d (e.g. embeddings from two backbones)."""
    dims = {name: a.shape[1] for name, a in arrays.items()}
    if len(set(dims.values())) > 1:
        listed = ", ".join(f"{n}={d}" for n, d in dims.items())
        raise ValueError(f"embedding dimensions disagree ({listed}): were they made by the same backbone?")


def as_labels(y: Any, n: int, n_classes: int, name: str = "train_labels") -> np.ndarray:
    """Validate integer class labels of length ``n`` indexing ``n_classes`` rows."""
    arr = to_numpy(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n} (one per embedding); got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.isfinite(arr).all() and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must be integers indexing the class texts; got dtype {arr.dtype}")
    if (bad := arr[(arr < 0) | (arr >= n_classes)]).size:
        raise ValueError(
            f"{name} has label(s) {sorted(set(bad.tolist()))[:5]} outside the {n_classes} class texts "
            f"(0..{n_classes - 1})"
        )
    return arr.astype(np.int64, copy=False)


def as_class_list(normal_classes: Any, available: np.ndarray, n_classes: int) -> np.ndarray:
    """Validate a set of normal classes against the classes fitted (``available``) and return it as an index array."""
    arr = np.atleast_1d(to_numpy(normal_classes)).astype(np.int64).ravel()
    if arr.size == 0:
        raise ValueError("normal_classes is empty: give at least one normal class")
    if (unknown := arr[(arr < 0) | (arr >= n_classes)]).size:
        raise ValueError(f"unknown class(es) {sorted(set(unknown.tolist()))}: there are {n_classes} class texts")
    if (missing := np.setdiff1d(arr, available)).size:
        raise ValueError(
            f"normal class(es) {missing.tolist()} have no training images: their statistics were not fitted"
        )
    return np.unique(arr)


def require(module: str, pip_name: str, needed_for: str = "this") -> Any:
    """Import an optional dependency, or raise an ImportError naming what needs it and the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{needed_for} needs {module}: pip install {pip_name}") from err


def torch_device(device: Any = None, float64: bool = False) -> Any:
    """``device`` as a torch.device; None: CUDA, then MPS (not for ``float64`` work: MPS has no float64), then the
    CPU. An unknown device, or one this machine lacks: ValueError."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps and not float64 else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be None or a torch device such as 'cpu', 'cuda', 'cuda:1' or 'mps'; got {device!r}"
        ) from err
    if (dev.type == "cuda" and not torch.cuda.is_available()) or (dev.type == "mps" and not has_mps):
        raise ValueError(f"device {device!r} was requested but {dev.type.upper()} is not available here")
    if dev.type == "mps" and float64:
        raise ValueError(f"device {device!r}: this computation runs in float64, which MPS does not support")
    return dev
