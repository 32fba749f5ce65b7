"""Saliency: L2 norm of the gradient of the target token's probability w.r.t. each input
embedding, normalised to sum 1. ``saliency_reading`` and ``saliency_coding``."""

from __future__ import annotations

from .gradients import GradientMethod, StepGradient, normalised


class Saliency(GradientMethod):
    kind = "saliency"
    description = "L2 norm of the gradient w.r.t. each input embedding"

    @staticmethod
    def reduce(g: StepGradient):
        return normalised(g.grad.norm(dim=-1))
