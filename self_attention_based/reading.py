"""Reading stage: attention of the first position after the prompt (the first generated token)
on the prompt tokens. Methods ``reading_first|last|all`` and ``reading_*_layer0``."""

from __future__ import annotations

from functools import partial

from common.registry import register

from .layers import REDUCTIONS, prompt_scores

STAGE = "reading"

for _suffix, (_variant, _) in REDUCTIONS.items():
    register(f"{STAGE}_{_suffix}", "self_attention", STAGE, _variant,
             f"attention row of the first position after the prompt ({_suffix})")(
        partial(prompt_scores, stage=STAGE, suffix=_suffix))
