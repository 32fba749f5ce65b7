"""What every generator behind an OpenAI-compatible HTTP API shares.

:class:`ApiBackend` is the base of :class:`common.chat.ChatBackend` (``/v1/chat/completions``)
and :class:`common.completions.CompletionsBackend` (``/v1/completions``). It holds:

* the ``openai`` client (key from ``OPENAI_API_KEY``; a local server gets a dummy key; the
  SDK's own retries off, because ours are counted, bounded and budget-aware);
* :meth:`ApiBackend._call`: one request with retries and exponential backoff with jitter on
  429, 5xx, timeouts and dropped connections (honouring ``retry-after``); other HTTP errors
  (400, 401...) raise at once. The budget is checked before every attempt;
* token usage and cost (:class:`Usage`), and the cost budget (:class:`BudgetExceeded`);
* access to the SQLite :class:`~common.generation_cache.GenerationCache`;
* :meth:`ApiBackend._pool`: bounded concurrency (a thread pool) that lets every request in
  flight finish, so its answer is cached, before an error is raised.

Errors are raised as ``self.Error`` (``ChatError`` for the chat backend, ``CompletionsError``
for the completions backend), with a message naming the prompt.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from .generation_cache import GenerationCache

#: USD per 1,000 (input, output) tokens. Unknown models cost 0 unless prices are given.
PRICES_PER_1K = {
    "gpt-4-1106-preview": (0.01, 0.03),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-4": (0.03, 0.06),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
}


class BudgetExceeded(RuntimeError):
    """The cost budget is spent; everything answered so far is cached and saved."""


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


def is_priced(model: str, prices_per_1k=None) -> bool:
    """A cost budget can bind: prices are given, or the model is in :data:`PRICES_PER_1K`."""
    return prices_per_1k is not None or model in PRICES_PER_1K


def shown(prompt: str) -> str:
    """A prompt as error messages name it: its first 60 characters."""
    return repr(prompt[:60])


class ApiBackend:
    """Client, retries, usage, budget, cache and thread pool of an OpenAI-compatible backend.

    Subclasses set ``Error`` (the exception class they raise) and implement the generator
    contract (``name``, ``usage``, ``settings()``, ``generate(prompts, reference)``).
    """

    Error: type[RuntimeError] = RuntimeError
    kind = "api"

    def header(self) -> dict:
        """Written to each result header and checked when a rerun appends."""
        return {"kind": self.kind, "model": self.model, **self.settings()}

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache: GenerationCache | None = None, max_cost_usd: float | None = None,
                 prices_per_1k: tuple[float, float] | None = None, concurrency: int = 4,
                 max_retries: int = 6, timeout: float = 120.0, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, client=None):
        import openai

        # ``model`` is what the server is asked for and what the cache is keyed by; ``name`` only
        # names the model in result files and messages (a run loop may set it to a short name)
        self.model = model
        self.name = model
        self.base_url = base_url
        self.max_cost_usd = max_cost_usd
        if max_cost_usd is not None and not is_priced(model, prices_per_1k):
            # a budget over an unpriced model would never bind: refuse rather than overspend
            raise self.Error(f"no price known for model {model!r}, so MAX_COST_USD cannot be enforced: "
                             f"pass prices_per_1k=(input, output) USD per 1K tokens")
        self.prices = prices_per_1k if prices_per_1k is not None else PRICES_PER_1K.get(model, (0.0, 0.0))
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.cache = cache if cache is not None else GenerationCache()
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise self.Error("set OPENAI_API_KEY (or pass api_key) to use the OpenAI API")
            key = "unused"  # local servers usually ignore the key but the SDK requires one
        # retries are ours (counted, bounded, budget-aware), so the SDK's are off
        self.client = client or openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout,
                                              max_retries=0)
        self._retryable = (openai.RateLimitError, openai.InternalServerError,
                           openai.APITimeoutError, openai.APIConnectionError)
        self._status_error = openai.APIStatusError
        self.usage = Usage()
        self._lock = threading.Lock()

    # -- cost and budget -----------------------------------------------------------------------
    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prices[0] + completion_tokens * self.prices[1]) / 1000.0

    def _check_budget(self) -> None:
        if self.max_cost_usd is not None and self.usage.cost_usd >= self.max_cost_usd:
            raise BudgetExceeded(f"cost budget of ${self.max_cost_usd:.4f} spent "
                                 f"(${self.usage.cost_usd:.4f} so far); rerun with a larger "
                                 f"MAX_COST_USD to continue, cached answers are free")

    def _count(self, resp) -> dict:
        """Count one answered request: its token usage (validated; a server that reports none
        is counted in ``missing_usage``, not invented) and cost."""
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
        return {"prompt_tokens": pt, "completion_tokens": ct, "cost_usd": cost}

    # -- one request with retries ------------------------------------------------------------
    def _call(self, send: Callable[[], object], what: str):
        """``send()`` (one API call) with retries; ``what`` names the prompt(s) in errors."""
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._check_budget()
            try:
                return send()
            except self._retryable as exc:
                if attempt == self.max_retries:
                    raise self.Error(f"{self.name}: giving up after {attempt + 1} attempts on "
                                     f"{what}: {type(exc).__name__}: {exc}") from exc
                with self._lock:
                    self.usage.retries += 1
                time.sleep(self._backoff(attempt, exc))
            except self._status_error as exc:
                raise self.Error(f"{self.name}: HTTP {exc.status_code} on {what}: {exc}") from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    def _backoff(self, attempt: int, exc) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        retry_after = getattr(getattr(exc, "response", None), "headers", {}) or {}
        try:
            delay = max(delay, min(self.backoff_max, float(retry_after.get("retry-after", 0))))
        except (TypeError, ValueError):
            pass
        return delay * (0.5 + random.random() / 2)  # jitter spreads out synchronized retries

    # -- cache --------------------------------------------------------------------------------
    def _cached(self, settings: dict, prompt: str, field: str) -> str | None:
        """The cached ``value[field]`` of ``prompt``, or None (a miss, or an entry without it)."""
        hit = self.cache.get(self.model, settings, prompt)
        if hit is not None and isinstance(hit.get(field), str):
            with self._lock:
                self.usage.cache_hits += 1
            return hit[field]
        return None

    def _store(self, settings: dict, prompt: str, value: dict) -> None:
        self.cache.put(self.model, settings, prompt, value)

    # -- concurrency --------------------------------------------------------------------------
    def _pool(self, fn: Callable, items: list) -> list:
        """``[fn(item) for item in items]`` on at most ``concurrency`` threads."""
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(fn, item) for item in items]
            # collect all before raising, so finished answers are cached either way
            errors = [f.exception() for f in futures]
            budget = [e for e in errors if isinstance(e, BudgetExceeded)]
            other = [e for e in errors if e is not None and not isinstance(e, BudgetExceeded)]
            if other:
                raise other[0]
            if budget:
                raise budget[0]
            return [f.result() for f in futures]
