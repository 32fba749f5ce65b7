"""Every attribution method, by name (inseq style): the twelve of the study, the published
layer-0 self-attention variants and the SHAP text-masker variant.

Adding a method: write one module with a :class:`common.method.Method` subclass, add one line
below (or call :func:`add` from your own code), and one test. ``python -m attention_alignment
--list-methods`` prints this table.
"""

from __future__ import annotations

import pandas as pd

from common.method import FAMILIES, Method, check
from gradient_based.inputxgradient import InputXGradient
from gradient_based.saliency import Saliency
from perturbation_based.bert_masking import BertMasking
from perturbation_based.shap_method import ShapKernel, ShapPartition
from self_attention_based.attention_rows import all_methods as attention_row_methods

_CATALOGUE: dict[str, Method] = {}


def add(method: Method) -> Method:
    """Add a method (checked: name, family, stage, needs, cost); a name is taken only once."""
    check(method)
    if method.name in _CATALOGUE and _CATALOGUE[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already in the catalogue")
    _CATALOGUE[method.name] = method
    return method


for _m in [BertMasking(), ShapKernel(),
           InputXGradient("reading"), InputXGradient("coding"),
           Saliency("reading"), Saliency("coding"),
           *attention_row_methods(),
           ShapPartition()]:
    add(_m)

#: The twelve methods of the study, in the order of its Table 3.
PAPER_METHODS = ("bert_perturbation", "shap_perturbation", "inputxgradient_reading",
                 "inputxgradient_coding", "saliency_reading", "saliency_coding", "reading_first",
                 "reading_last", "reading_all", "coding_first", "coding_last", "coding_all")


def names() -> list[str]:
    return list(_CATALOGUE)


def get(name: str) -> Method:
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(_CATALOGUE)}") from None


def select(methods: str | list[str] | None = None, family: str | None = None,
           variant: str = "true") -> list[Method]:
    """Methods by name (a comma-separated string or a list), or every method of ``family``
    (``all``: the model-internal ones, as ``make attention`` runs) of the self-attention
    ``variant`` ``true`` (true layers), ``paper`` (the published layer-0 heads) or ``both``."""
    if methods:
        wanted = methods.split(",") if isinstance(methods, str) else list(methods)
        return [get(n.strip()) for n in wanted if n.strip()]
    if variant not in ("true", "paper", "both"):
        raise ValueError(f"variant must be 'true', 'paper' or 'both', not {variant!r}")
    if family not in (None, "all", *FAMILIES):
        raise ValueError(f"family must be one of {FAMILIES} or 'all', not {family!r}")
    if family in (None, "all"):
        chosen = [m for m in _CATALOGUE.values() if m.needs == "model"]
    else:
        chosen = [m for m in _CATALOGUE.values() if m.family == family]
    if family == "perturbation":
        return [m for m in chosen if m.name in PAPER_METHODS]
    return [m for m in chosen if variant == "both" or m.variant == variant]


def table() -> pd.DataFrame:
    """One row per method: name, family, stage, what it needs, cost per task, in the paper."""
    return pd.DataFrame([{"method": m.name, "family": m.family, "stage": m.stage or "-",
                          "needs": m.needs, "in_paper": m.name in PAPER_METHODS,
                          "variant": m.variant, "cost_per_task": m.cost,
                          "description": m.description} for m in _CATALOGUE.values()])
