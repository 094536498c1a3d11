"""Encoder entries for AnomalyCLIP: ``anomalyclip-vit-l14-336`` and its tiny random stand-in ``tiny-anomalyclip``.

Images: the global token of OpenAI CLIP ViT-L/14@336 at 518 px without ``ln_post`` (bicubic squash to 518x518, no
crop, OpenAI mean/std), as AnomalyCLIP's code computes it. Texts: the plain CLIP text tower. The learned prompt pair
comes from ``prompt_embeddings()``. The weights id names the checkpoint's sha256 and the image path, so this cache
never mixes with plain ViT-L/14 embeddings. ``write_generated_checkpoint`` writes a seeded random checkpoint in the
authors' layout for tests and smoke runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bliss_utils._checks import require
from bliss_utils._io import atomic_path
from bliss_utils.encoders import anomalyclip_prompts as acp
from bliss_utils.encoders import openclip as oc
from bliss_utils.encoders.base import OPEN_CLIP, Build, finish_model
from bliss_utils.encoders.weights import TINY_SEED, random_weights

# the prompts' code (anomalyclip_prompts) needs only the standard library at import; torch is imported where used

BACKBONE_SPEC = "ViT-L-14-336-quickgelu/openai"
# the tiny CLIP with 9 text blocks, so all 8 deep prompts are used as in the real model; run at 48 px (native 32)
# to exercise the positional-embedding interpolation that 336 -> 518 px needs (the sizes: registry.py)
TINY_ANOMALYCLIP_CFG: dict[str, Any] = {**oc.TINY_CLIP_CFG, "text_cfg": {**oc.TINY_CLIP_CFG["text_cfg"], "layers": 9}}
# what the image path records in every weights id: the CLS token without ln_post (so never plain ViT-L/14's)
_IMAGE_PATH = "+cls-no-ln-post"


# names that stand for the learned [g_n, g_a] prompts in encode_texts (no text of any prompt template looks like them)
LEARNED_PROMPTS = {"<anomalyclip learned normal prompt>": 0, "<anomalyclip learned abnormal prompt>": 1}


class AnomalyClipEncoder(oc.OpenClipEncoder):
    """open_clip CLIP whose image embeddings are AnomalyCLIP's global token; holds the learned prompts."""

    def __init__(self, model: Any, tokenizer: Any, prompts: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.prompts = prompts

    def _image_features(self, pixels: Any) -> Any:
        return acp.global_image_features(self.model.visual, pixels, apply_ln_post=False)

    def encode_texts(self, texts: Any, batch_size: int = 256) -> np.ndarray:
        """Plain CLIP text embeddings; the names in ``LEARNED_PROMPTS`` give the learned pair, so it is cached too."""
        if isinstance(texts, (list, tuple)) and texts and all(t in LEARNED_PROMPTS for t in texts):
            return self.prompt_embeddings()[[LEARNED_PROMPTS[t] for t in texts]]
        if isinstance(texts, (list, tuple)) and any(t in LEARNED_PROMPTS for t in texts):
            raise ValueError(f"ask for the learned prompts {list(LEARNED_PROMPTS)} apart from other texts")
        return super().encode_texts(texts, batch_size)

    def prompt_embeddings(self) -> np.ndarray:
        """(2, dim) float32 unit rows [g_n, g_a]: the learned normal and abnormal prompts through the text tower."""
        import torch

        with torch.inference_mode():
            feats = acp.learned_text_features(self.model, self.tokenizer, self.prompts).float().cpu().numpy()
        return self._finish([feats], f"{self.name} prompt embeddings")


def anomalyclip_weights(name: str, weights: str | Path | None, local_only: bool = False) -> tuple[Path, str]:
    """(prompt checkpoint, identity): the ViT-L/14@336 weights' identity, the checkpoint's sha256 and the image path."""
    path = acp.find_checkpoint(weights)
    _, backbone_id = oc.open_clip_weights(BACKBONE_SPEC, f"open_clip:{BACKBONE_SPEC}", None, local_only)
    return path, f"{backbone_id}+anomalyclip-prompts:sha256={acp.sha256_of(path)}{_IMAGE_PATH}"


def tiny_anomalyclip_weights(
    name: str, weights: str | Path | None, local_only: bool = False
) -> tuple[Path | None, str]:
    """(prompt checkpoint or None, identity) of tiny-anomalyclip: seeded random CLIP, generated or given prompts."""
    prompts = f"generated-seed{TINY_SEED}" if weights is None else acp.sha256_of(weights)
    path = None if weights is None else Path(weights)
    return path, f"{random_weights(name, None)[1]}+prompts:{prompts}{_IMAGE_PATH}"


def load_anomalyclip_vit_l14_336(build: Build) -> AnomalyClipEncoder:
    """OpenAI ViT-L/14@336 (open_clip, QuickGELU) with AnomalyCLIP's released prompts from ``build.weights``."""
    backbone = oc.load_open_clip_spec(BACKBONE_SPEC, device=build.device)
    prompts = acp.load_prompt_checkpoint(build.weights, int(backbone.model.token_embedding.weight.shape[1]))
    return AnomalyClipEncoder(backbone.model, backbone.tokenizer, prompts, **build.encoder_fields())


def build_tiny_anomalyclip(seed: int = TINY_SEED) -> Any:
    """The tiny open_clip CLIP with 9 text blocks and seeded random weights."""
    return oc.build_tiny_clip(seed, TINY_ANOMALYCLIP_CFG)


def generated_checkpoint_state(width: int, seed: int = TINY_SEED, dtype: str = "float16") -> dict[str, Any]:
    """A seeded random checkpoint in the authors' layout ``{"prompt_learner": {...}}`` (fp16 as they save it)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cast = getattr(torch, dtype)

    def normal(*shape: int) -> Any:
        return (0.02 * torch.randn(*shape, generator=g)).to(cast)

    sd = {"ctx_pos": normal(1, 1, acp.N_CTX, width), "ctx_neg": normal(1, 1, acp.N_CTX, width)}
    sd.update({f"compound_prompts_text.{i}": normal(acp.N_DEEP_TOKENS, width) for i in range(acp.N_DEEP_LAYERS)})
    # buffers and unused projections, shaped as the authors' prompt learner registers them (77-token context)
    for side in ("pos", "neg"):
        sd[f"token_prefix_{side}"] = normal(1, 1, 1, width)
        sd[f"token_suffix_{side}"] = normal(1, 1, 77 - 1 - acp.N_CTX, width)
        sd[f"tokenized_prompts_{side}"] = torch.zeros(1, 1, 77, dtype=torch.int64)
    for i in range(acp.N_DEEP_LAYERS):
        sd[f"compound_prompt_projections.{i}.weight"] = normal(896, width)
        sd[f"compound_prompt_projections.{i}.bias"] = normal(896)
    return {"prompt_learner": sd}


def write_generated_checkpoint(path: str | Path, width: int = 768, seed: int = TINY_SEED) -> Path:
    """Write ``generated_checkpoint_state(width, seed)`` to ``path`` atomically (tests and smoke runs)."""
    import torch

    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(generated_checkpoint_state(width, seed), tmp)
    return Path(path)


def load_tiny_anomalyclip(build: Build) -> AnomalyClipEncoder:
    """tiny-anomalyclip: tiny random CLIP at 48 px; prompts from ``build.weights`` or a generated seeded checkpoint."""
    width = TINY_ANOMALYCLIP_CFG["text_cfg"]["width"]
    if build.weights is None:
        prompts = acp.prompts_from_state(generated_checkpoint_state(width), width, sha256=f"generated-seed{TINY_SEED}")
    else:
        prompts = acp.load_prompt_checkpoint(build.weights, width)
    model = finish_model(build_tiny_anomalyclip(), build.device)
    return AnomalyClipEncoder(model, require(*OPEN_CLIP).get_tokenizer("ViT-B-16"), prompts, **build.encoder_fields())
