"""Prompt templates and label cleaning: the one place where a class name becomes a sentence."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

# The authors' one prompt for class labels and dictionary entries alike ("a" even before a vowel).
PAPER_TEMPLATE = "This is a photo of a {}"

# An optional ensemble, averaged per label (see embeddings.text_embeddings): a handful of the 80 ImageNet
# templates published with CLIP (Radford et al. 2021; github.com/openai/CLIP,
# notebooks/Prompt_Engineering_for_ImageNet.ipynb: the 7-template subset it recommends), plus the paper's own template.
ENSEMBLE_TEMPLATES = [
    PAPER_TEMPLATE,
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
]
ENSEMBLE_TEMPLATES += ["a {} in a video game.", "art of the {}.", "a photo of the small {}."]


def clean_label(label: str) -> str:
    """The clean form of a label: Unicode NFC, underscores become spaces, whitespace runs collapse, ends stripped."""
    if not isinstance(label, str):
        raise ValueError(f"a label must be a string; got {type(label).__name__}: {label!r}")
    # NFC: a folder named on macOS (decomposed, NFD) matches the same name typed elsewhere (composed)
    cleaned = " ".join(unicodedata.normalize("NFC", label).replace("_", " ").split())
    if not cleaned:
        raise ValueError(f"label {label!r} is empty after cleaning")
    return cleaned


def _check_template(template: str) -> str:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"a prompt template must be a string with exactly one '{{}}' placeholder; got {template!r}")
    return template


def as_templates(template: str | Sequence[str]) -> list[str]:
    """Return ``template`` as a validated, non-empty list of templates (a single string becomes a list of one)."""
    templates = [template] if isinstance(template, str) else list(template)
    if not templates:
        raise ValueError("the list of prompt templates is empty")
    return [_check_template(t) for t in templates]


def make_prompts(labels: Iterable[str], template: str = PAPER_TEMPLATE) -> list[str]:
    """Fill ``template`` with each label exactly as given, in order.

    Labels are not cleaned here: the paper prompts with CIFAR-100's raw names ("aquarium_fish") and the dictionary's
    exact entries (" Tinca tinca", leading space kept). Clean them first (:func:`clean_label`, or
    ``class_names(dataset, names="clean")``) for the clean setup.
    """
    _check_template(template)
    labels = list(labels)
    if bad := [label for label in labels if not isinstance(label, str) or not label.strip()]:
        raise ValueError(f"a label must be a non-empty string; got {bad[0]!r}")
    return [template.format(label) for label in labels]
