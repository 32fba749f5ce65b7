"""Saliency: L2 norm of the gradient of the generated token's probability w.r.t. each input
embedding, normalised to sum 1. ``saliency_reading`` (first generated token) and
``saliency_coding`` (last generated token)."""

from __future__ import annotations

from functools import partial

from common.registry import register

from .gradients import prompt_scores, saliency

for _stage in ("reading", "coding"):
    register(f"saliency_{_stage}", "gradient", _stage,
             description=f"gradient norm, {_stage} stage")(
        partial(prompt_scores, stage=_stage, reduce=saliency))
