"""Chat models behind an OpenAI-compatible API as a perturbation-method generator.

Works with the OpenAI API (GPT-4 and successors) and with local servers (vLLM, llama.cpp, TGI)
through ``base_url``: the way to spread the generation-heavy methods over many GPUs.

* Key from ``OPENAI_API_KEY`` (a local server usually accepts any string).
* Deterministic by default: temperature 0 and a fixed seed. ``temperature=None`` leaves the
  server's default (1.0 at OpenAI): the study's GPT-4 BERT-masking run, noisy by design.
* Every answer goes into the SQLite :class:`~common.generation_cache.GenerationCache` before it
  is used, keyed by model, settings and prompt, so a crash or rerun never pays twice.
* Bounded concurrency (a thread pool); retries with exponential backoff on 429, 5xx,
  timeouts and dropped connections; other errors (400, 401...) are raised at once.
* Token usage and cost are counted per run; with ``max_cost_usd`` no request starts once the
  spent cost reaches the budget and :class:`BudgetExceeded` is raised. Requests already in
  flight finish and are cached, so the overshoot is at most ``concurrency`` requests.
"""

from __future__ import annotations

from . import extract
from .api_backend import PRICES_PER_1K, ApiBackend, BudgetExceeded, Usage, shown
from .generation_cache import GenerationCache

__all__ = ["PAPER_SYSTEM_PROMPT", "PRICES_PER_1K", "BudgetExceeded", "ChatBackend", "ChatError", "Usage",
           "extract_code_from_chat"]

#: The study's system prompt for GPT-4.
PAPER_SYSTEM_PROMPT = ("You are a helpful assistant that write Python code in a very concise manner. "
                       "Keep your answers short.")


class ChatError(RuntimeError):
    """A request failed for good, or the server's answer is malformed; names the prompt."""


def extract_code_from_chat(answer: str) -> str:
    """Code of a chat answer, chosen as the error analysis chooses it
    (:func:`common.extract.from_chat`: the block defining a function, usage examples dropped),
    or the whole answer when it holds no code, so that BLEU still compares something."""
    extraction = extract.from_chat(answer)
    return extraction.code if extraction.found and extraction.code.strip() else answer


class ChatBackend(ApiBackend):
    """``generate(prompts, reference)`` -> code extracted from each chat answer.

    Client, retries, usage, budget, cache access and the thread pool are
    :class:`common.api_backend.ApiBackend`'s."""

    kind = "chat"
    Error = ChatError

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache: GenerationCache | None = None, temperature: float | None = 0.0,
                 seed: int | None = 0, system_prompt: str | None = PAPER_SYSTEM_PROMPT,
                 max_tokens: int | None = None, max_cost_usd: float | None = None,
                 prices_per_1k: tuple[float, float] | None = None, concurrency: int = 4,
                 max_retries: int = 6, timeout: float = 120.0, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, extract_code: bool = True, client=None):
        super().__init__(model, base_url=base_url, api_key=api_key, cache=cache, max_cost_usd=max_cost_usd,
                         prices_per_1k=prices_per_1k, concurrency=concurrency, max_retries=max_retries,
                         timeout=timeout, backoff_base=backoff_base, backoff_max=backoff_max,
                         client=client)
        self.temperature = temperature
        self.seed = seed
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.extract_code = extract_code

    # -- settings and cache ------------------------------------------------------------------
    def settings(self) -> dict:
        """Everything that changes an answer: the cache key. The server address is not part of it,
        so a local server restarted on another port still hits the cache."""
        return {"api": "chat.completions", "temperature": self.temperature,
                "seed": self.seed, "system_prompt": self.system_prompt, "max_tokens": self.max_tokens}

    def header(self) -> dict:
        """Written to each result header and checked when a rerun appends."""
        return {"kind": self.kind, "model": self.model, **self.settings(),
                "extract_code": self.extract_code}

    def _messages(self, prompt: str) -> list[dict]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return msgs + [{"role": "user", "content": prompt}]

    # -- one request -------------------------------------------------------------------------
    def _request(self, prompt: str) -> dict:
        kwargs = {"model": self.model, "messages": self._messages(prompt)}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        resp = self._call(lambda: self.client.chat.completions.create(**kwargs), f"prompt {shown(prompt)}")
        return self._parse(resp, prompt)

    def _parse(self, resp, prompt: str) -> dict:
        """The answer and usage, validated: the server is untrusted input."""
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise ChatError(f"{self.name}: malformed response (no choices) for prompt "
                            f"{shown(prompt)}") from None
        if not isinstance(content, str):
            raise ChatError(f"{self.name}: the answer to prompt {shown(prompt)} has no text content")
        return {"answer": content, **self._count(resp)}

    def _answer(self, prompt: str) -> str:
        settings = self.settings()
        hit = self._cached(settings, prompt, "answer")
        if hit is not None:
            return hit
        value = self._request(prompt)
        self._store(settings, prompt, value)
        return value["answer"]

    # -- the generator contract --------------------------------------------------------------
    def answers(self, prompts: list[str]) -> list[str]:
        """Raw chat answers, one per prompt (each distinct prompt asked at most once)."""
        distinct = list(dict.fromkeys(prompts))
        by_prompt = dict(zip(distinct, self._pool(self._answer, distinct)))
        return [by_prompt[p] for p in prompts]

    def generate(self, prompts: list[str], reference: str | None = None) -> list[str]:
        answers = self.answers(prompts)
        return [extract_code_from_chat(a) for a in answers] if self.extract_code else answers
