"""One task with its greedy generation, as every model-based method sees it.

The expensive passes (attention rows, gradients) are computed once per task and shared by all
methods of a family through :meth:`Example.memo`.

Positions: the sequence is ``prompt_ids + new_ids``; ``prompt_len`` = P. The *reading*
position is P (the first position after the prompt, i.e. the first generated token); the
*coding* position is the last generated token of the function body the model writes.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

from .models import Generation, LoadedModel, token_offsets


class TaskFailure(Exception):
    """A task (or one method on it) cannot be scored; the message is the recorded reason."""


_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+\w+", re.M)


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def function_body_end(code: str, prompt_chars: int) -> int | None:
    """End (exclusive, last non-space character) of the function the generation writes.

    That function is the block of the prompt's last ``def`` (HumanEval: the signature and
    docstring to complete; MBPP: ``def function():``), or the first ``def`` of the generation
    when the prompt has none. The block runs while lines are blank or indented deeper than
    the ``def`` line. Returns None when the block holds no generated character (the model
    wrote nothing inside it).
    """
    defs = [m for m in _DEF.finditer(code) if m.start() < prompt_chars]
    if not defs:
        defs = [m for m in _DEF.finditer(code)]
        if not defs:
            return None
    head = defs[-1]
    base = len(head.group(1).expandtabs(4))
    line_end = code.find("\n", head.start())
    if line_end < 0:
        return None
    end = line_end  # last non-space character seen inside the block
    pos = line_end + 1
    while pos < len(code):
        nl = code.find("\n", pos)
        nl = len(code) if nl < 0 else nl
        line = code[pos:nl]
        if line.strip():
            if _indent(line) <= base:
                break
            end = pos + len(line.rstrip())
        pos = nl + 1
    return end if end > prompt_chars else None


class Example:
    """A task, the model and its greedy generation; what a method's ``attribute`` receives."""

    def __init__(self, lm: LoadedModel, task, generation: Generation):
        self.lm = lm
        self.task = task
        self.generation = generation
        self.prompt_len = len(generation.prompt_ids)
        self.ids = generation.ids
        self._memo: dict = {}

    @cached_property
    def offsets(self) -> np.ndarray:
        """Character spans of the prompt tokens in ``task.model_prompt``."""
        off = token_offsets(self.lm.tokenizer, self.task.model_prompt)
        if len(off) != self.prompt_len:
            raise RuntimeError(f"{self.task.task_id}: {len(off)} token offsets for "
                               f"{self.prompt_len} prompt tokens")
        return off

    @property
    def n_new(self) -> int:
        return len(self.generation.new_ids)

    @property
    def reading_index(self) -> int:
        if self.n_new == 0:
            raise TaskFailure("the model generated no token")
        return self.prompt_len

    @cached_property
    def coding_index(self) -> int:
        """Sequence index of the last generated token of the function body."""
        if self.n_new == 0:
            raise TaskFailure("the model generated no token")
        prompt = self.task.model_prompt
        code = prompt + self.generation.text
        end = function_body_end(code, len(prompt))
        if end is None:
            raise TaskFailure("generation has no function body (nothing generated inside the def "
                              "block, found by indentation)")
        ends = self.generated_char_ends()
        # The token holding the body's last character: the first whose decoded end reaches it.
        k = int(np.searchsorted(ends, end - len(prompt), side="left"))
        return self.prompt_len + min(k, self.n_new - 1)

    def generated_char_ends(self) -> np.ndarray:
        """End of each generated token in ``generation.text`` (decoding growing prefixes)."""
        tok = self.lm.tokenizer
        new = self.generation.new_ids.tolist()
        ends = [len(tok.decode(new[:k + 1], skip_special_tokens=True,
                               clean_up_tokenization_spaces=False)) for k in range(len(new))]
        return np.maximum.accumulate(np.asarray(ends, dtype=np.int64)) if ends else np.zeros(0, np.int64)

    def memo(self, key, compute):
        """``compute()`` once per example; shared by the methods of a family."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]
