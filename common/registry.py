"""Registry of model-based attribution methods by result name (inseq style).

Every method has one small contract (captum style)::

    method.attribute(example: common.example.Example) -> np.ndarray

returning one score per *prompt token* of ``example`` (the model's own tokens of
``task.model_prompt``). The runner turns token scores into word scores on the scored region
(:func:`common.align.to_words`), so a method never deals with words, regions or files.

A method that cannot score a task raises :class:`common.example.TaskFailure` with the reason;
the runner records it in the result file.

Family modules register their methods on import; :func:`load_all` imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FAMILIES = ("self_attention", "gradient")
STAGES = ("reading", "coding")
#: Self-attention semantics: ``true`` layers (heads averaged) or the published ``layer0`` heads.
VARIANTS = ("true", "layer0")
_FAMILY_MODULES = ("self_attention_based.reading", "self_attention_based.coding",
                   "gradient_based.saliency", "gradient_based.inputxgradient")


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    stage: str
    fn: Callable[..., np.ndarray]
    variant: str = "true"
    description: str = ""

    def attribute(self, example) -> np.ndarray:
        scores = np.asarray(self.fn(example), dtype=np.float64).reshape(-1)
        if len(scores) != example.prompt_len:
            raise RuntimeError(f"method {self.name} returned {len(scores)} scores for "
                               f"{example.prompt_len} prompt tokens")
        return scores


_REGISTRY: dict[str, Method] = {}


def register(name: str, family: str, stage: str, variant: str = "true", description: str = ""):
    """Decorator: register ``fn(example) -> token scores`` under ``name``."""
    if family not in FAMILIES or stage not in STAGES or variant not in VARIANTS:
        raise ValueError(f"method {name}: bad family/stage/variant {family}/{stage}/{variant}")

    def wrap(fn):
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = Method(name, family, stage, fn, variant, description or (fn.__doc__ or "").strip())
        return fn
    return wrap


def load_all() -> None:
    for module in _FAMILY_MODULES:
        importlib.import_module(module)


def get(name: str) -> Method:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def names(family: str | None = None, variant: str | None = None) -> list[str]:
    """Registered method names, in registration order (the paper's order within a family)."""
    load_all()
    return [m.name for m in _REGISTRY.values()
            if family in (None, m.family) and (variant is None or m.family != "self_attention"
                                                or m.variant == variant)]


def select(methods: str | list[str] | None = None, family: str | None = None,
           variant: str = "true") -> list[Method]:
    """Methods to run: explicit names, or every method of ``family`` (``all`` for both) with
    the self-attention ``variant`` ``true``, ``layer0`` or ``both``."""
    load_all()
    if variant not in (*VARIANTS, "both"):
        raise ValueError(f"variant must be one of {(*VARIANTS, 'both')}, not {variant!r}")
    if methods:
        wanted = methods.split(",") if isinstance(methods, str) else list(methods)
        return [get(n.strip()) for n in wanted if n.strip()]
    fam = None if family in (None, "all") else family
    if fam is not None and fam not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or 'all', not {family!r}")
    return [get(n) for n in names(fam, None if variant == "both" else variant)]
