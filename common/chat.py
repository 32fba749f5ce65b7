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

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import extract
from .generation_cache import GenerationCache

#: The study's system prompt for GPT-4.
PAPER_SYSTEM_PROMPT = ("You are a helpful assistant that write Python code in a very concise manner. "
                       "Keep your answers short.")

#: USD per 1,000 (input, output) tokens. Unknown models cost 0 unless prices are given.
PRICES_PER_1K = {
    "gpt-4-1106-preview": (0.01, 0.03),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-4": (0.03, 0.06),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
}


class ChatError(RuntimeError):
    """A request failed for good, or the server's answer is malformed; names the prompt."""


class BudgetExceeded(RuntimeError):
    """The cost budget is spent; everything answered so far is cached and saved."""


def extract_code_from_chat(answer: str) -> str:
    """Code of a chat answer, chosen as the error analysis chooses it
    (:func:`common.extract.from_chat`: the block defining a function, usage examples dropped),
    or the whole answer when it holds no code, so that BLEU still compares something."""
    extraction = extract.from_chat(answer)
    return extraction.code if extraction.found and extraction.code.strip() else answer


@dataclass
class Usage:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    missing_usage: int = 0  # answers whose server reported no token counts

    def as_dict(self) -> dict:
        return asdict(self)


class ChatBackend:
    """``generate(prompts, reference)`` -> code extracted from each chat answer (a generator
    backend of :mod:`common.backends`)."""

    kind = "chat"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache: GenerationCache | None = None, temperature: float | None = 0.0,
                 seed: int | None = 0, system_prompt: str | None = PAPER_SYSTEM_PROMPT,
                 max_tokens: int | None = None, max_cost_usd: float | None = None,
                 prices_per_1k: tuple[float, float] | None = None, concurrency: int = 4,
                 max_retries: int = 6, timeout: float = 120.0, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, extract_code: bool = True, client=None):
        import openai

        self.name = model
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.seed = seed
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        if prices_per_1k is None and model not in PRICES_PER_1K and max_cost_usd is not None:
            # a budget over an unpriced model would never bind: refuse rather than overspend
            raise ChatError(f"no price known for model {model!r}, so MAX_COST_USD cannot be enforced: "
                            f"pass prices_per_1k=(input, output) USD per 1K tokens")
        self.prices = prices_per_1k if prices_per_1k is not None else PRICES_PER_1K.get(model, (0.0, 0.0))
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extract_code = extract_code
        self.cache = cache if cache is not None else GenerationCache()
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ChatError("set OPENAI_API_KEY (or pass api_key) to use the OpenAI API")
            key = "unused"  # local servers usually ignore the key but the SDK requires one
        # retries are ours (counted, bounded, budget-aware), so the SDK's are off
        self.client = client or openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout,
                                              max_retries=0)
        self._retryable = (openai.RateLimitError, openai.InternalServerError,
                           openai.APITimeoutError, openai.APIConnectionError)
        self._status_error = openai.APIStatusError
        self.usage = Usage()
        self._lock = threading.Lock()

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

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prices[0] + completion_tokens * self.prices[1]) / 1000.0

    # -- one request -------------------------------------------------------------------------
    def _check_budget(self) -> None:
        if self.max_cost_usd is not None and self.usage.cost_usd >= self.max_cost_usd:
            raise BudgetExceeded(f"cost budget of ${self.max_cost_usd:.4f} spent "
                                 f"(${self.usage.cost_usd:.4f} so far); rerun with a larger "
                                 f"MAX_COST_USD to continue, cached answers are free")

    def _request(self, prompt: str) -> dict:
        kwargs = {"model": self.model, "messages": self._messages(prompt)}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._check_budget()
            try:
                resp = self.client.chat.completions.create(**kwargs)
                break
            except self._retryable as exc:
                if attempt == self.max_retries:
                    raise ChatError(f"{self.name}: giving up after {attempt + 1} attempts on "
                                    f"prompt {prompt[:60]!r}: {type(exc).__name__}: {exc}") from exc
                with self._lock:
                    self.usage.retries += 1
                time.sleep(self._backoff(attempt, exc))
            except self._status_error as exc:
                raise ChatError(f"{self.name}: HTTP {exc.status_code} on prompt {prompt[:60]!r}: "
                                f"{exc}") from exc
        return self._parse(resp, prompt)

    def _backoff(self, attempt: int, exc) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        retry_after = getattr(getattr(exc, "response", None), "headers", {}) or {}
        try:
            delay = max(delay, min(self.backoff_max, float(retry_after.get("retry-after", 0))))
        except (TypeError, ValueError):
            pass
        return delay * (0.5 + random.random() / 2)  # jitter spreads out synchronized retries

    def _parse(self, resp, prompt: str) -> dict:
        """The answer and usage, validated: the server is untrusted input."""
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise ChatError(f"{self.name}: malformed response (no choices) for prompt "
                            f"{prompt[:60]!r}") from None
        if not isinstance(content, str):
            raise ChatError(f"{self.name}: the answer to prompt {prompt[:60]!r} has no text content")
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", None)
        ct = getattr(usage, "completion_tokens", None)
        valid = isinstance(pt, int) and isinstance(ct, int) and pt >= 0 and ct >= 0
        pt, ct = (pt, ct) if valid else (0, 0)
        cost = self._cost(pt, ct)
        with self._lock:
            self.usage.requests += 1
            self.usage.prompt_tokens += pt
            self.usage.completion_tokens += ct
            self.usage.cost_usd += cost
            self.usage.missing_usage += not valid
        return {"answer": content, "prompt_tokens": pt, "completion_tokens": ct, "cost_usd": cost}

    def _answer(self, prompt: str) -> str:
        settings = self.settings()
        hit = self.cache.get(self.model, settings, prompt)
        if hit is not None and isinstance(hit.get("answer"), str):
            with self._lock:
                self.usage.cache_hits += 1
            return hit["answer"]
        value = self._request(prompt)
        self.cache.put(self.model, settings, prompt, value)
        return value["answer"]

    # -- the generator contract --------------------------------------------------------------
    def answers(self, prompts: list[str]) -> list[str]:
        """Raw chat answers, one per prompt (each distinct prompt asked at most once)."""
        distinct = list(dict.fromkeys(prompts))
        if self.concurrency == 1 or len(distinct) == 1:
            got = [self._answer(p) for p in distinct]
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                futures = [pool.submit(self._answer, p) for p in distinct]
                # collect all before raising, so finished answers are cached either way
                errors = [f.exception() for f in futures]
                budget = [e for e in errors if isinstance(e, BudgetExceeded)]
                other = [e for e in errors if e is not None and not isinstance(e, BudgetExceeded)]
                if other:
                    raise other[0]
                if budget:
                    raise budget[0]
                got = [f.result() for f in futures]
        by_prompt = dict(zip(distinct, got))
        return [by_prompt[p] for p in prompts]

    def generate(self, prompts: list[str], reference: str | None = None) -> list[str]:
        answers = self.answers(prompts)
        return [extract_code_from_chat(a) for a in answers] if self.extract_code else answers
