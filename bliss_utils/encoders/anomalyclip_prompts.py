"""AnomalyCLIP (Zhou et al., ICLR 2024) image-level zero-shot score from the authors' released prompts.

Only what the image-level score needs is reproduced: the learned object-agnostic text prompts (with their deep
prompts) through CLIP's text tower, and the global image token at 518 px. The authors' code (MIT) is followed where it
differs from the paper: deep prompts *overwrite* token positions 1..4 before text blocks 1..8 (their issue #75), and
the image token is the CLS token of the ordinary attention path projected without ``ln_post`` (their issue #14).
DPAM, patch tokens and pixel maps only serve segmentation and are left out.

The checkpoint used is ``checkpoints/9_12_4_multiscale_visa/epoch_15.pth``: the repository's directory names are
inverted, so that file holds the prompts trained on MVTec AD, the ones the authors use for every non-MVTec target.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bliss_utils._io import atomic_path, download
from bliss_utils.encoders.errors import WeightsNotFoundError
from bliss_utils.encoders.weights import ENV_WEIGHTS_DIR, folder_name

logger = logging.getLogger(__name__)

ENCODER_NAME = "anomalyclip-vit-l14-336"
CHECKPOINT_FILE = "epoch_15.pth"
CHECKPOINT_URL = "https://github.com/zqhang/AnomalyCLIP/raw/main/checkpoints/9_12_4_multiscale_visa/epoch_15.pth"
# git's blob id (sha1 of "blob <size>\0" + bytes) of that file in the authors' repository (unchanged since commit
# ff7ca47, 2024-03-19, up to 45ed4dd, 2025-05-08): a download is checked against it before it is installed
RELEASED_GIT_BLOB = "72adc786e031b49ea288ba5f815f0d38cf158708"
# the released design: 12 learned context tokens per side, deep prompts of 4 tokens at 8 text blocks (depth 9)
N_CTX = 12
N_DEEP_TOKENS = 4
N_DEEP_LAYERS = 8
# AnomalyCLIP's prompt strings: "X" placeholders overwritten by the learned context vectors
NORMAL_PROMPT = " ".join(["X"] * N_CTX) + " object."
ABNORMAL_PROMPT = " ".join(["X"] * N_CTX) + " damaged object."
# what a results table shows in the AnomalyCLIP row when the checkpoint is absent (never a number)
NOT_RUN = "not run: checkpoint missing"
_DOWNLOAD_TIMEOUT_S = 60
_BUFFER_KEYS = re.compile(r"^(token_prefix|token_suffix|tokenized_prompts)_(pos|neg)$")
_PROJECTION_KEYS = re.compile(r"^compound_prompt_projections\.\d+\.(weight|bias)$")


class CheckpointMissingError(WeightsNotFoundError):
    """The AnomalyCLIP prompt checkpoint is not where it is looked for; the message says where to get and put it."""


@dataclass(frozen=True)
class LearnedPrompts:
    """AnomalyCLIP's learned prompts in float32: context (N_CTX, w) per side, deep prompts (N_DEEP_TOKENS, w)."""

    ctx_normal: Any
    ctx_abnormal: Any
    deep: tuple[Any, ...]
    sha256: str = ""

    @property
    def width(self) -> int:
        """Text-transformer width the prompts were learned for."""
        return int(self.ctx_normal.shape[-1])


def checkpoint_location() -> Path:
    """Where the checkpoint is looked for: ``<weights>/anomalyclip-vit-l14-336/epoch_15.pth``, with ``<weights>``
    ``$BLISS_WEIGHTS_DIR`` or else ``<data>/weights``."""
    from bliss_utils.config import data_dir

    root = os.environ.get(ENV_WEIGHTS_DIR)
    base = Path(root).expanduser() if root else data_dir() / "weights"
    return base / folder_name(ENCODER_NAME) / CHECKPOINT_FILE


def _missing_message(where: Path | None) -> str:
    put = str(where if where is not None else checkpoint_location())
    return (
        f"AnomalyCLIP prompt checkpoint not found ({NOT_RUN}).\nFetch {CHECKPOINT_URL}\n"
        f"and put it at {put} (${ENV_WEIGHTS_DIR} moves it), or run `python -m bliss_utils reproduce --download`."
    )


def find_checkpoint(weights: str | Path | None = None) -> Path:
    """The checkpoint file: ``weights`` (a file, or a folder holding epoch_15.pth), else the default location."""
    path = Path(weights).expanduser() if weights is not None else checkpoint_location()
    if weights is not None and path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointMissingError(_missing_message(path))
    return path


def checkpoint_or_none(weights: str | Path | None = None) -> Path | None:
    """The checkpoint path, or None when it is missing (the notebook then reports "not run: checkpoint missing")."""
    try:
        return find_checkpoint(weights)
    except CheckpointMissingError:
        return None


def download_checkpoint(
    dest: str | Path | None = None, url: str = CHECKPOINT_URL, git_blob: str | None = RELEASED_GIT_BLOB
) -> Path:
    """Download the prompt checkpoint to ``dest`` (a ``.pth`` file, or a folder to hold epoch_15.pth; default:
    ``checkpoint_location()``), atomically; the file must have git blob id ``git_blob`` (None: no check) and load as a
    prompt checkpoint before it is put in place. An existing file is kept as it is."""
    target = Path(dest).expanduser() if dest is not None else checkpoint_location()
    if target.suffix != ".pth":
        target = target / CHECKPOINT_FILE
    if target.is_file():
        return target
    logger.info("downloading %s to %s", url, target)
    try:
        with atomic_path(target, suffix=".part") as tmp:
            download(url, tmp, _DOWNLOAD_TIMEOUT_S)
            if git_blob is not None and git_blob_id(tmp) != git_blob:
                raise ValueError(f"{url} gave a file with git blob id {git_blob_id(tmp)}, not the released {git_blob}")
            load_prompt_checkpoint(tmp)  # refuse to install a file that is not the checkpoint
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise CheckpointMissingError(f"download of {url} failed ({err}).\n{_missing_message(target)}") from None
    return target


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file (computed once per file version: bliss_utils._filehash)."""
    from bliss_utils._filehash import file_sha256

    return file_sha256(path)


def git_blob_id(path: str | Path) -> str:
    """Git's blob id of a file: sha1 of ``b"blob <size>\\0"`` followed by its bytes."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def prompts_from_state(state: Any, width: int | None = None, sha256: str = "") -> LearnedPrompts:
    """Validate the authors' ``{"prompt_learner": state_dict}`` layout (keys, shapes) and return fp32 prompts."""
    import torch

    if not isinstance(state, dict) or "prompt_learner" not in state:
        found = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not an AnomalyCLIP checkpoint: expected a dict with key 'prompt_learner'; found {found}")
    sd = state["prompt_learner"]
    if not isinstance(sd, dict):
        raise ValueError(f"checkpoint['prompt_learner'] must be a state dict; got {type(sd).__name__}")
    deep_keys = [f"compound_prompts_text.{i}" for i in range(N_DEEP_LAYERS)]
    required = ["ctx_pos", "ctx_neg", *deep_keys]
    if missing := [k for k in required if k not in sd]:
        raise ValueError(f"AnomalyCLIP checkpoint lacks key(s) {missing}; found {sorted(sd)[:12]}")
    if unknown := [k for k in sd if k not in required and not _BUFFER_KEYS.match(k) and not _PROJECTION_KEYS.match(k)]:
        raise ValueError(f"AnomalyCLIP checkpoint has unexpected key(s) {sorted(unknown)[:8]}: another model's file?")
    if bad := next((k for k in required if not (isinstance(sd[k], torch.Tensor) and sd[k].is_floating_point())), None):
        raise ValueError(f"checkpoint key {bad!r} must be a floating-point tensor; got {type(sd[bad]).__name__}")
    tensors = {key: sd[key].detach().to(torch.float32) for key in required}
    w = width if width is not None else int(tensors["ctx_pos"].shape[-1])
    shapes = {"ctx_pos": (1, 1, N_CTX, w), "ctx_neg": (1, 1, N_CTX, w), **dict.fromkeys(deep_keys, (N_DEEP_TOKENS, w))}
    for key, shape in shapes.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(f"checkpoint key {key!r} has shape {tuple(tensors[key].shape)}; expected {shape}")
    if bad := [k for k, t in tensors.items() if not torch.isfinite(t).all()]:
        raise ValueError(f"checkpoint key(s) {bad} hold NaN or infinite values")
    deep = tuple(tensors[k] for k in deep_keys)
    return LearnedPrompts(tensors["ctx_pos"][0, 0], tensors["ctx_neg"][0, 0], deep, sha256)


def load_prompt_checkpoint(path: str | Path, width: int | None = None) -> LearnedPrompts:
    """Load the authors' prompt checkpoint with ``torch.load(weights_only=True)``; fp16 is cast to fp32."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the same user-facing problem
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    return prompts_from_state(state, width, sha256_of(path))


def _text_blocks(model: Any, x: Any, deep: list[Any]) -> Any:
    """Text blocks on (batch, seq, width) ``x``; block i >= 1 gets positions 1..n overwritten by deep[i-1]."""
    import torch

    batch_first = getattr(model.transformer, "batch_first", True)
    for i, block in enumerate(model.transformer.resblocks):
        if 1 <= i <= len(deep):
            fill = deep[i - 1].to(x.dtype).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], fill, x[:, 1 + fill.shape[1] :]], dim=1)
        x = block(x if batch_first else x.transpose(0, 1), attn_mask=model.attn_mask)
        x = x if batch_first else x.transpose(0, 1)
    return x


def learned_text_features(model: Any, tokenizer: Any, prompts: LearnedPrompts) -> Any:
    """(2, embed_dim) unnormalised text features [g_n, g_a] of AnomalyCLIP's learned prompts on an open_clip CLIP."""
    import torch

    width = int(model.token_embedding.weight.shape[1])
    if prompts.width != width:
        raise ValueError(f"prompts were learned for text width {prompts.width}, but this model's is {width}")
    n_blocks = len(model.transformer.resblocks)
    if len(prompts.deep) > n_blocks - 1:
        raise ValueError(f"{len(prompts.deep)} deep prompts need at least {len(prompts.deep) + 1} text blocks")
    tokens = tokenizer([NORMAL_PROMPT, ABNORMAL_PROMPT]).to(model.token_embedding.weight.device)
    emb = model.token_embedding(tokens).to(model.transformer.get_cast_dtype())
    ctx = torch.stack([prompts.ctx_normal, prompts.ctx_abnormal]).to(emb)
    emb = torch.cat([emb[:, :1], ctx, emb[:, 1 + N_CTX :]], dim=1)
    return _encode_embedded_text(model, emb, tokens, [d.to(emb) for d in prompts.deep])


def _encode_embedded_text(model: Any, emb: Any, tokens: Any, deep: list[Any]) -> Any:
    """CLIP's text tower from token embeddings (batch, seq, width): blocks, ln_final, EOT pooling, projection."""
    import torch

    x = emb + model.positional_embedding.to(emb.dtype)
    x = _text_blocks(model, x, deep)
    x = model.ln_final(x)
    # the end-of-text token has the largest id in CLIP's vocabulary
    x = x[range(x.shape[0]), tokens.argmax(dim=-1)]
    proj = model.text_projection
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def _interpolated_positions(visual: Any, grid: int) -> Any:
    """Positional embedding resized to a ``grid`` x ``grid`` patch grid (bilinear), without mutating the model."""
    import torch
    import torch.nn.functional as F

    pos = visual.positional_embedding
    side = round((pos.shape[0] - 1) ** 0.5)
    if side == grid:
        return pos
    patches = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bilinear")
    return torch.cat([pos[:1], patches.permute(0, 2, 3, 1).reshape(grid * grid, -1)], dim=0)


def global_image_features(visual: Any, pixels: Any, apply_ln_post: bool = False) -> Any:
    """CLS token of an open_clip VisionTransformer at any square input size, projected; ``ln_post`` optional.

    AnomalyCLIP's image-level feature is ``apply_ln_post=False`` at 518 px; with ``apply_ln_post=True`` at the native
    size this is open_clip's ``encode_image``.
    """
    import torch

    x = visual.conv1(pixels)
    grid = x.shape[-1]
    if x.shape[-2] != grid:
        raise ValueError(f"square inputs only; got a {x.shape[-2]}x{grid} patch grid")
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + _interpolated_positions(visual, grid).to(x.dtype)
    x = visual.ln_pre(x)
    x = visual.transformer(x)
    token = x[:, 0]
    if apply_ln_post:
        token = visual.ln_post(token)
    return token @ visual.proj
