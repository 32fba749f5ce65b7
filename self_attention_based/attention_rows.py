"""Self-attention methods: the attention row of one query position over the prompt tokens.

``reading_{first,last,all}`` and ``coding_{first,last,all}``: the row of the stage's query
position (:func:`common.code_units.query_rows`), reduced over layers and heads:

* true layers (default): first layer, last layer, mean over layers; heads averaged;
* the published variant (suffix ``_layer0``, ``variant="paper"``): the released files were all
  computed from layer 0: head 0 (``first``), the last head (``last``) and the sum over heads
  (``all``).

All rows of a task come from one forward pass, shared by every self-attention and gradient
method of the run (:meth:`common.backends.Example.internals`: attention rows recomputed from the
queries and keys of the model's own fast attention kernel).
"""

from __future__ import annotations

from common.method import Attribution, Method

#: suffix -> (variant, reduction of a ``(layers, heads, seq)`` row stack to ``(seq,)``)
REDUCTIONS = {
    "first": ("true", lambda a: a[0].mean(0)),
    "last": ("true", lambda a: a[-1].mean(0)),
    "all": ("true", lambda a: a.mean((0, 1))),
    "first_layer0": ("paper", lambda a: a[0, 0]),
    "last_layer0": ("paper", lambda a: a[0, -1]),
    "all_layer0": ("paper", lambda a: a[0].sum(0)),
}
STAGE_WORDS = {"reading": "the step that reads the prompt (first generated token)",
               "coding": "the step that writes the generated function's last token"}


class AttentionRow(Method):
    """Attention of the stage's query position on each prompt token, reduced over layers and
    heads; token scores are spread onto the words of the scored region."""

    family = "self_attention"
    needs = "model"
    cost = "shared: one greedy generation + one forward pass (all self-attention methods)"

    def __init__(self, stage: str, layers: str, options=None, **overrides):
        if layers not in REDUCTIONS:
            raise ValueError(f"layers must be one of {sorted(REDUCTIONS)}, not {layers!r}")
        self.stage = stage
        self.layers = layers
        self.name = f"{stage}_{layers}"
        self.variant = REDUCTIONS[layers][0]
        self.description = f"attention row of {STAGE_WORDS[stage]}, {layers.replace('_', ' ')}"
        super().__init__(options, **overrides)

    def attribute(self, task, backend) -> Attribution:
        example = backend.example(task)
        q = example.row(self.stage, self.family, self.options.definitions)
        row = REDUCTIONS[self.layers][1](example.internals(self.options.definitions).row(q))
        spans, scores = example.to_words(row[: example.prompt_len].numpy())
        return Attribution(spans, scores, generation=example.text)


def all_methods() -> list[AttentionRow]:
    """reading_{first,last,all}, coding_{first,last,all}, then the same with ``_layer0``."""
    true = [layers for layers, (variant, _) in REDUCTIONS.items() if variant == "true"]
    paper = [layers for layers in REDUCTIONS if layers not in true]
    return [AttentionRow(stage, layers) for group in (true, paper)
            for stage in ("reading", "coding") for layers in group]
