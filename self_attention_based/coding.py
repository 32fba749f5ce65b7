"""Coding stage: attention of the last token of the generated function body (end of the def
block, found by indentation) on the prompt tokens. Methods ``coding_first|last|all`` and
``coding_*_layer0``."""

from __future__ import annotations

from functools import partial

from common.registry import register

from .layers import REDUCTIONS, prompt_scores

STAGE = "coding"

for _suffix, (_variant, _) in REDUCTIONS.items():
    register(f"{STAGE}_{_suffix}", "self_attention", STAGE, _variant,
             f"attention row of the last token of the generated function body ({_suffix})")(
        partial(prompt_scores, stage=STAGE, suffix=_suffix))
