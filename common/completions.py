"""Base code models behind an OpenAI-compatible ``/v1/completions`` server as a perturbation-method
generator: vLLM, TGI, llama.cpp server.

Base models (CodeGen, PolyCoder, InCoder...) continue a prompt; they do not chat. This backend
sends the prompt as is and takes the completion text as the generated code (the continuation,
no chat extraction), as :class:`perturbation_based.hf.HFGenerator` does locally.

* Greedy: temperature 0, no stop strings (generation runs to the budget or the model's
  end-of-sequence token, as the study's local generation does).
* Budget (``max_tokens``), the study's rule being *tokens of the reference solution + 20*. The
  server's tokenizer is unknown to the client, so the budget comes from, in this order:
  ``max_tokens=`` (a fixed number), ``budget=`` (a callable ``reference -> int``),
  ``tokenizer=`` (a Hugging Face tokenizer or its name/folder: the study's rule exactly when it
  is the served model's tokenizer); by default a character-based estimate,
  ``ceil(len(reference) / 2.8) + 20`` (:func:`char_budget`; 2.8 = characters per token of the
  1,138 reference solutions under a GPT-2-style BPE, measured with the SmolLM2 tokenizer).
  ``settings()["budget"]`` records which rule was used.
* Batching: the distinct uncached prompts go ``batch_size`` to a request (``prompt`` as a list;
  each answer is routed back by its ``choices[i].index``, which is validated). A server that
  rejects a list (HTTP 400/413/422) while the same prompts one per request succeed is sent one
  prompt per request from then on (``batching`` turns False, with a warning).
* Shared with :class:`common.chat.ChatBackend` (:class:`common.api_backend.ApiBackend`):
  retries with backoff on 429/5xx/timeouts/dropped connections, the SQLite generation cache
  (every answer stored before it is used), cost budget and :class:`BudgetExceeded` (checked
  before every request; the overshoot is at most ``concurrency`` requests of ``batch_size``
  prompts), bounded concurrency (batches on a thread pool), token usage (``usage.requests``
  counts HTTP requests: a batch is one).

vLLM's greedy output can vary in the last digits of floating point with the batch it was
computed in; the cache is what makes a rerun see the same answers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from .api_backend import ApiBackend, BudgetExceeded, shown
from .chat import ChatError
from .generation_cache import GenerationCache
from .models import BUDGET_EXTRA

__all__ = ["CHARS_PER_TOKEN", "BudgetExceeded", "CompletionsBackend", "CompletionsError", "char_budget",
           "tokenizer_budget"]

#: Characters per token of the reference solutions (see the module docstring).
CHARS_PER_TOKEN = 2.8
#: HTTP statuses with which a server refuses a list of prompts.
_LIST_REFUSED = (400, 413, 422)


class CompletionsError(ChatError):
    """A completions request failed for good, or the answer is malformed; names the prompt.

    A :class:`~common.chat.ChatError`, so run loops that stop on a failing chat backend stop on
    this one too."""


def char_budget(reference: str) -> int:
    """``ceil(len(reference) / CHARS_PER_TOKEN) + 20``: the study's budget without a tokenizer."""
    return math.ceil(len(reference) / CHARS_PER_TOKEN) + BUDGET_EXTRA


def tokenizer_budget(tokenizer) -> Callable[[str], int]:
    """The study's rule with a Hugging Face tokenizer: tokens of the reference + 20."""
    def budget(reference: str) -> int:
        return len(tokenizer(reference, add_special_tokens=False)["input_ids"]) + BUDGET_EXTRA
    return budget


class CompletionsBackend(ApiBackend):
    """``generate(prompts, reference)`` -> the server's greedy continuation of each prompt.

    ``batch_size``: prompts per request; ``batching=False`` sends one per request. Other keyword
    arguments are :class:`~common.api_backend.ApiBackend`'s: ``max_cost_usd``, ``prices_per_1k``,
    ``concurrency`` (4), ``max_retries`` (6), ``timeout`` (120 s), ``backoff_base``,
    ``backoff_max``, ``client``.
    """

    Error = CompletionsError
    kind = "completions"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache: GenerationCache | None = None, *, max_tokens: int | None = None,
                 budget: Callable[[str], int] | None = None, tokenizer=None,
                 temperature: float = 0.0, batch_size: int = 16, batching: bool = True, **api):
        given = [k for k, v in (("max_tokens", max_tokens), ("budget", budget), ("tokenizer", tokenizer))
                 if v is not None]
        if len(given) > 1:
            raise ValueError(f"give one of max_tokens, budget, tokenizer, not {' and '.join(given)}")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        super().__init__(model, base_url=base_url, api_key=api_key, cache=cache, **api)
        self.temperature = temperature
        self.batch_size = batch_size
        self.batching = batching
        self.max_tokens = max_tokens
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if max_tokens is not None:
            self._budget, self.budget_rule = (lambda _reference: max_tokens), f"fixed {max_tokens}"
        elif budget is not None:
            self._budget, self.budget_rule = budget, f"callable {getattr(budget, '__name__', 'budget')}"
        elif tokenizer is not None:
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            self._budget = tokenizer_budget(tokenizer)
            self.budget_rule = f"tokens of the reference ({name}) + {BUDGET_EXTRA}"
        else:
            self._budget = char_budget
            self.budget_rule = f"ceil(characters of the reference / {CHARS_PER_TOKEN}) + {BUDGET_EXTRA}"

    # -- settings and budget -----------------------------------------------------------------
    def settings(self) -> dict:
        """Everything that changes an answer, the budget as its rule (for result files). The
        cache key (:meth:`cache_settings`) has the number the rule gives for the task instead,
        so two rules agreeing on a task share its answers. The server address is not part of
        either: a server restarted on another port still hits the cache."""
        return {"api": "completions", "temperature": self.temperature, "budget": self.budget_rule}

    def cache_settings(self, max_tokens: int) -> dict:
        return {"api": "completions", "temperature": self.temperature, "max_tokens": max_tokens}

    def budget(self, reference: str | None) -> int:
        """``max_tokens`` of a task's requests (see the module docstring for the rule)."""
        if reference is None and self.max_tokens is None:
            raise ValueError("the completions backend needs the task's reference solution for its "
                             "budget (or a fixed max_tokens)")
        n = self._budget(reference)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"budget rule {self.budget_rule!r} gave {n!r}, not a positive integer")
        return n

    # -- requests ----------------------------------------------------------------------------
    @staticmethod
    def _what(batch: list[str]) -> str:
        return f"prompt {shown(batch[0])}" if len(batch) == 1 else \
            f"a request of {len(batch)} prompts starting with {shown(batch[0])}"

    def _parse(self, resp, batch: list[str]) -> list[str]:
        """The answer to each prompt of ``batch``, routed by ``choices[i].index`` and validated:
        the server is untrusted input."""
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise CompletionsError(f"{self.name}: malformed response (no choices) to {self._what(batch)}")
        texts: list[str | None] = [None] * len(batch)
        indexes = [getattr(c, "index", None) for c in choices]
        for index, choice in zip(indexes, choices):
            if not isinstance(index, int) or not 0 <= index < len(batch) or texts[index] is not None:
                missing = [i for i in range(len(batch)) if i not in indexes] or [0]
                raise CompletionsError(
                    f"{self.name}: malformed response to {self._what(batch)}: choice indexes {indexes} "
                    f"are not 0..{len(batch) - 1} once each, so the answer to prompt "
                    f"{shown(batch[missing[0]])} cannot be found")
            text = getattr(choice, "text", None)
            if not isinstance(text, str):
                raise CompletionsError(f"{self.name}: the answer to prompt {shown(batch[index])} has no text")
            texts[index] = text
        missing = [i for i, t in enumerate(texts) if t is None]
        if missing:
            raise CompletionsError(f"{self.name}: malformed response to {self._what(batch)}: "
                                   f"{len(choices)} choices, no answer to prompt {shown(batch[missing[0]])}")
        return texts

    def _send(self, batch: list[str], max_tokens: int) -> list[str]:
        """One request for ``batch`` (retried), its usage counted (even when the answer turns
        out malformed: the tokens were spent), its answers validated."""
        prompt = batch if len(batch) > 1 else batch[0]
        resp = self._call(lambda: self.client.completions.create(
            model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=self.temperature),
            self._what(batch))
        self._count(resp)
        return self._parse(resp, batch)

    def _complete(self, batch: list[str], max_tokens: int) -> list[str]:
        """Answers to ``batch``, each cached as soon as its request returns; a list the server
        refuses is sent one prompt per request."""
        key = self.cache_settings(max_tokens)
        if len(batch) > 1 and self.batching:
            try:
                texts = self._send(batch, max_tokens)
            except CompletionsError as exc:
                status = getattr(exc.__cause__, "status_code", None)
                if status not in _LIST_REFUSED:
                    raise
                texts = self._complete_one_by_one(batch, max_tokens)
                # the same prompts went through one by one: it is the list that was refused
                with self._lock:
                    if self.batching:
                        self.batching = False
                        warnings.warn(f"{self.name}: the server refused a list of prompts (HTTP {status}); "
                                      f"sending one prompt per request from now on", stacklevel=2)
                return texts
            for p, t in zip(batch, texts):
                self._store(key, p, {"text": t})
            return texts
        return self._complete_one_by_one(batch, max_tokens)

    def _complete_one_by_one(self, batch: list[str], max_tokens: int) -> list[str]:
        key = self.cache_settings(max_tokens)
        texts = []
        for p in batch:
            [text] = self._send([p], max_tokens)
            self._store(key, p, {"text": text})
            texts.append(text)
        return texts

    # -- the generator contract --------------------------------------------------------------
    def generate(self, prompts: list[str], reference: str | None = None) -> list[str]:
        """The continuation of each prompt (each distinct prompt asked at most once, cached ones
        never), ``max_tokens = self.budget(reference)``."""
        max_tokens = self.budget(reference)
        key = self.cache_settings(max_tokens)
        texts: dict[str, str] = {}
        todo = []
        for p in dict.fromkeys(prompts):
            hit = self._cached(key, p, "text")
            if hit is None:
                todo.append(p)
            else:
                texts[p] = hit
        size = self.batch_size if self.batching else 1
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]
        for batch, got in zip(batches, self._pool(lambda b: self._complete(b, max_tokens), batches)):
            texts.update(zip(batch, got))
        return [texts[p] for p in prompts]
