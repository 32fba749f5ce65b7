"""Input x gradient: L2 norm of gradient x input embedding per position, normalised to sum 1.
``inputxgradient_reading`` and ``inputxgradient_coding``."""

from __future__ import annotations

from .gradients import GradientMethod, StepGradient, normalised


class InputXGradient(GradientMethod):
    kind = "inputxgradient"
    description = "L2 norm of gradient x input embedding"

    @staticmethod
    def reduce(g: StepGradient):
        return normalised((g.grad * g.embedding).norm(dim=-1))
