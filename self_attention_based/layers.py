"""Which layers and heads a self-attention method reads, shared by the reading and coding stages.

True layers (default): first layer, last layer, mean over layers; heads averaged.
Published variant (suffix ``_layer0``): the released files were all computed from layer 0:
head 0 (``first``), the last head (``last``) and the sum over heads (``all``).
"""

from __future__ import annotations

import numpy as np
import torch

from common.example import Example, TaskFailure

from .capture import attention_rows

#: suffix -> (variant, reduction of a ``(layers, heads, seq)`` row stack to ``(seq,)``)
REDUCTIONS = {
    "first": ("true", lambda a: a[0].mean(0)),
    "last": ("true", lambda a: a[-1].mean(0)),
    "all": ("true", lambda a: a.mean((0, 1))),
    "first_layer0": ("layer0", lambda a: a[0, 0]),
    "last_layer0": ("layer0", lambda a: a[0, -1]),
    "all_layer0": ("layer0", lambda a: a[0].sum(0)),
}


def _rows(example: Example) -> tuple[list[int], torch.Tensor]:
    """Both stages' rows from one forward pass (the coding row only if there is a body)."""
    rows = [example.reading_index]
    try:
        rows.append(example.coding_index)
    except TaskFailure:
        pass
    return rows, attention_rows(example.lm.model, example.ids, rows)


def stage_row(example: Example, stage: str) -> torch.Tensor:
    """``(layers, heads, seq)`` attention of the stage's position."""
    rows, att = example.memo("attention_rows", lambda: _rows(example))
    index = example.reading_index if stage == "reading" else example.coding_index
    return att[:, :, rows.index(index), :]


def prompt_scores(example: Example, stage: str, suffix: str) -> np.ndarray:
    """Attention of the stage's position on each prompt token, reduced over layers/heads."""
    reduce = REDUCTIONS[suffix][1]
    return reduce(stage_row(example, stage))[: example.prompt_len].numpy()
