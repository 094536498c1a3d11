"""The method table: every name ``evaluate_grid`` and the notebooks accept, and the scorer it builds.

A user's method joins it with ``register_method("name", MyScorer)`` (a :class:`~bliss_utils.scores.base.Scorer`
subclass, or any callable returning one). To reach every notebook kernel and the CLI as well, put the calls in a
module and name it in ``$BLISS_PLUGINS`` (:mod:`bliss_utils.plugins`): the table imports those modules the first
time it is read, in whichever process reads it (docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from bliss_utils.plugins import PLUGINS_VAR, load_plugins
from bliss_utils.scores.base import INPUTS, Scorer

# PLUGINS_VAR stays importable from here, where the method table's users have always found it
__all__ = ["PLUGINS_VAR", "make_method", "method_class", "method_names", "method_table", "register_method"]

# name -> "module:class" of the package's own methods, imported when first built (torch and pyod stay lazy)
_BUILTIN = {
    "bliss": "bliss:BLISS",
    "biased-clip": "bliss:BiasedCLIP",
    "raw-similarity": "baselines:RawSimilarity",
    "mcm": "baselines:MCM",
    "dn2": "baselines:DN2",
    "gmm": "baselines:GMM",
    "lunar": "baselines:LUNAR",
    "ssd": "ssd:SSD",
    # related methods (docs/related_methods.md): the prompt pairs come in as the parameter ``pairs``
    "anomalyclip": "prompt_pairs:PromptPairScore",
    "agnostic-pair": "prompt_pairs:PromptPairScore",
    "agnostic-cpe": "prompt_pairs:PromptPairScore",
    "object-aware-cpe": "prompt_pairs:PromptPairScore",
    "ssd-cmle": "cmle:SSDCMLE",
}
_TABLE: dict[str, Callable[..., Scorer] | str] = dict(_BUILTIN)


def register_method(name: str, factory: Callable[..., Scorer], replace: bool = False) -> None:
    """Add ``name`` to the method table; ``factory(**params)`` must return a Scorer; ``replace`` allows redefining."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a method name must be a non-empty string; got {name!r}")
    if not callable(factory):
        raise TypeError(f"register_method({name!r}, ...): the factory must be callable; got {factory!r}")
    if name in _TABLE and not replace and _TABLE[name] is not factory:
        raise ValueError(f"method {name!r} is already registered; pass replace=True to redefine it")
    _TABLE[name] = factory


def method_table() -> dict[str, Callable[..., Scorer] | str]:
    """Every registered method name and its factory, the plugins of ``$BLISS_PLUGINS`` included."""
    load_plugins()
    return dict(_TABLE)


def method_class(name: str) -> Callable[..., Scorer]:
    """The factory registered as ``name`` (the package's own are imported on first use)."""
    table = method_table()
    if name not in table:
        raise ValueError(f"unknown method {name!r}; the method table has {list(table)} (register_method adds one)")
    factory = table[name]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(f"bliss_utils.scores.{module}"), attr)
    return factory


def make_method(name: str, **params: Any) -> Scorer:
    """A new, unfitted scorer for the method ``name`` with ``params``."""
    scorer = method_class(name)(**params)
    if not isinstance(scorer, Scorer):
        raise TypeError(f"method {name!r} built a {type(scorer).__name__}, not a bliss_utils Scorer subclass")
    bad = set(scorer.inputs) - set(INPUTS)
    if bad:
        raise ValueError(f"method {name!r} declares unknown inputs {sorted(bad)}; inputs are drawn from {INPUTS}")
    return scorer


def method_names(inputs: tuple[str, ...] | None = None) -> list[str]:
    """The registered names, in table order; with ``inputs``, only the methods that read exactly those inputs."""
    names = list(method_table())
    return names if inputs is None else [n for n in names if tuple(_inputs_of(n)) == tuple(inputs)]


def _inputs_of(name: str) -> tuple[str, ...]:
    factory = method_class(name)
    declared = getattr(factory, "inputs", None)  # a class says it; a plain function is asked by building one
    return declared if isinstance(declared, tuple) else make_method(name).inputs
