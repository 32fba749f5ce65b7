"""Input x gradient: L2 norm of gradient x input embedding per position, normalised to sum 1.
``inputxgradient_reading`` (first generated token) and ``inputxgradient_coding`` (last)."""

from __future__ import annotations

from functools import partial

from common.registry import register

from .gradients import input_x_gradient, prompt_scores

for _stage in ("reading", "coding"):
    register(f"inputxgradient_{_stage}", "gradient", _stage,
             description=f"norm of gradient x embedding, {_stage} stage")(
        partial(prompt_scores, stage=_stage, reduce=input_x_gradient))
