"""Image preprocessing recipes as data, with stable ids (the ids become part of embedding-cache keys).

A recipe is declared per encoder in the registry, so its id is known without importing torch or building a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the statistics the BLISS authors' released code normalised CLIP inputs with
CIFAR_MEAN = (0.4913, 0.4821, 0.4465)
CIFAR_STD = (0.2470, 0.2434, 0.2615)


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.8g}" for v in values)


@dataclass(frozen=True)
class ResizeCropNormalize:
    """Resize the shorter side to ``size`` (``interpolation``), centre-crop ``size``x``size``, RGB, normalise."""

    size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_mode: ClassVar[str] = "shortest"  # open_clip's name of the resize step

    @property
    def id(self) -> str:
        """Stable description of the recipe, e.g. for cache keys."""
        crop = f"+centercrop{self.size}" if self.resize_mode == "shortest" else ""  # a squash has nothing to crop
        stats = f"mean={_fmt(self.mean)};std={_fmt(self.std)}"
        return f"resize-{self.resize_mode}{self.size}-{self.interpolation}{crop}+rgb+normalize({stats})"

    def build(self) -> Callable[[Any], Any]:
        """The transform as a PIL -> (3, size, size) float tensor callable (open_clip's eval transform)."""
        import open_clip

        mode, interpolation = self.resize_mode, self.interpolation
        return open_clip.image_transform(self.size, False, self.mean, self.std, mode, interpolation)


@dataclass(frozen=True)
class HFProcessorRecipe:
    """A transformers image processor (PIL backend) with its settings pinned: squash to ``size``x``size``, normalise."""

    processor: str
    size: int
    resample: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def id(self) -> str:
        """Stable description of the recipe, e.g. for cache keys."""
        return (
            f"rgb+hf:{self.processor}(resize{self.size}x{self.size}-{self.resample.lower()};nocrop"
            f";mean={_fmt(self.mean)};std={_fmt(self.std)})"
        )

    def make_processor(self) -> Any:
        """The transformers processor with these settings (``<processor>Pil`` in transformers 5)."""
        from PIL import Image

        from bliss_utils.encoders.hf_common import pil_processor_class

        flags = dict.fromkeys(("do_resize", "do_rescale", "do_normalize"), True)
        size, resample = {"height": self.size, "width": self.size}, Image.Resampling[self.resample]
        stats = {"image_mean": list(self.mean), "image_std": list(self.std)}
        return pil_processor_class(self.processor)(size=size, resample=resample, **stats, **flags)

    def build(self) -> Callable[[Any], Any]:
        """The transform as a PIL -> (3, size, size) float tensor callable."""
        return hf_image_processor_transform(self.make_processor())[0]


@dataclass(frozen=True)
class SquashNormalize(ResizeCropNormalize):
    """Resize to ``size`` x ``size`` ignoring the aspect ratio (``interpolation``), RGB, normalise; no crop."""

    resize_mode: ClassVar[str] = "squash"


Recipe = ResizeCropNormalize | HFProcessorRecipe | SquashNormalize


def cifar_recipe(size: int) -> ResizeCropNormalize:
    """The authors' CIFAR-statistics preprocessing: bicubic resize, centre crop, CIFAR mean/std."""
    return ResizeCropNormalize(size, "bicubic", CIFAR_MEAN, CIFAR_STD)


def choose_recipe(default: Recipe, preprocess: str) -> Recipe:
    """``default`` for preprocess="default", the CIFAR-statistics recipe at the same size for "cifar"."""
    return cifar_recipe(default.size) if preprocess == "cifar" else replace(default)


def recipes(default: Recipe) -> dict[str, Recipe]:
    """The recipes of every preprocessing option for an encoder whose own preprocessing is ``default``."""
    if isinstance(default, SquashNormalize):  # a squash stays a squash (AnomalyCLIP's recipes)
        return {"default": default, "cifar": replace(default, mean=CIFAR_MEAN, std=CIFAR_STD)}
    return {"default": default, "cifar": cifar_recipe(default.size)}


def _compact(size: Any) -> Any:
    """A processor's size setting as a plain dict without unset fields (transformers 5 uses a SizeDict dataclass)."""
    import dataclasses

    if dataclasses.is_dataclass(size) and not isinstance(size, type):
        size = dataclasses.asdict(size)
    if hasattr(size, "items"):
        return {k: v for k, v in size.items() if v is not None}
    return size


def _resample_name(resample: Any) -> Any:
    """PIL's name for a resample setting: a processor loaded from JSON holds 3 where a fresh one holds BICUBIC."""
    from PIL import Image

    try:
        return Image.Resampling(int(resample)).name
    except (TypeError, ValueError):
        return getattr(resample, "name", resample)


def hf_image_processor_transform(processor: Any) -> tuple[Callable[[Any], Any], str]:
    """Wrap a transformers image processor as a PIL -> (3, H, W) tensor callable, with an id from its settings."""

    def transform(image: Any) -> Any:
        # not every processor converts greyscale/RGBA itself (ViT's does not); open_clip's transforms do the same
        if getattr(image, "mode", "RGB") != "RGB":
            image = image.convert("RGB")
        return processor(images=image, return_tensors="pt")["pixel_values"][0]

    size = _compact(getattr(processor, "size", None))
    crop = _compact(getattr(processor, "crop_size", None)) if getattr(processor, "do_center_crop", False) else None
    resample = _resample_name(getattr(processor, "resample", None))
    pid = (
        f"rgb+hf:{type(processor).__name__}(size={size};resample={resample};crop={crop};"
        f"mean={_fmt(tuple(processor.image_mean))};std={_fmt(tuple(processor.image_std))})"
    )
    return transform, pid
