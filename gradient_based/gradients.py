"""Gradients of generated tokens' probabilities w.r.t. the input embeddings (study section 3).

Target of a query row q: the softmax probability of the token that follows it, ``ids[q + 1]``,
computed from the logits at q; input: positions ``0..q``. The reading and coding rows come from
:func:`common.code_units.query_rows`.

ecco's way runs one forward and one backward pass per generated token. All targets of a task
need only one forward pass over ``ids[:max(q) + 1]``: in a causal model the logits at q depend
on positions up to q alone; one batched backward then gives every gradient
(:func:`common.internals.internals`, shared with the self-attention methods).
:mod:`gradient_based.reference` is the per-step way, kept to check the vectors are equal.

The methods (``saliency.py``, ``inputxgradient.py``) reduce a gradient to one score per
position: an L2 norm over the embedding dimension, divided by the sum over the step's input
positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.method import Attribution, Method


@dataclass
class StepGradient:
    """Gradient and embedding of each input position for one target token (float32, CPU)."""

    grad: torch.Tensor  # (positions, hidden)
    embedding: torch.Tensor  # (positions, hidden)


def target_gradients(model, ids: torch.Tensor, queries: list[int]) -> dict:
    """``{q: gradient of p(ids[q+1] | ids[:q+1]) w.r.t. the embeddings of positions 0..q}``,
    from one forward and one batched backward (:func:`common.internals.internals`)."""
    from common.internals import internals

    wanted = sorted({int(q) for q in queries})
    inner = internals(model, ids, [], wanted, attention=False)
    return {q: inner.gradient(q) for q in wanted}


def normalised(norms: torch.Tensor) -> torch.Tensor:
    """Divide by the sum over positions (all zeros stay zeros)."""
    total = norms.sum()
    return norms / total if total > 0 else norms


class GradientMethod(Method):
    """A gradient reduced to one score per prompt token, spread onto the region's words."""

    family = "gradient"
    needs = "model"
    cost = "shared: one greedy generation + one forward and two backward passes (all gradient methods)"
    #: short name of the reduction, e.g. ``saliency``
    kind = ""

    def __init__(self, stage: str, options=None, **overrides):
        self.stage = stage
        self.name = f"{self.kind}_{stage}"
        super().__init__(options, **overrides)

    @staticmethod
    def reduce(g: StepGradient) -> torch.Tensor:
        raise NotImplementedError

    def attribute(self, task, backend) -> Attribution:
        example = backend.example(task)
        q = example.row(self.stage, self.family, self.options.definitions)
        scores = self.reduce(example.internals(self.options.definitions).gradient(q))
        spans, word_scores = example.to_words(scores[: example.prompt_len].numpy())
        return Attribution(spans, word_scores, generation=example.text)
