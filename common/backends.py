"""Model backends: what a method's ``attribute(task, backend)`` receives.

Every backend is a *generator* (the black box the perturbation methods perturb)::

    name: str                     # model part of result file names
    kind: str                     # "hf", "chat", ...
    header() -> dict              # settings written to each result header, checked on resume
    generate(prompts, reference) -> list[str]   # one output per prompt

:class:`HFBackend` (a local Hugging Face causal LM) also gives the model-internal methods a
task's :class:`Example` (greedy generation, token offsets, shared passes). The chat backend
(``common.chat.ChatBackend``, OpenAI-compatible APIs) is a generator only. :func:`build`
picks one from a model name.

Generation (both paths, one rule): greedy, budget = tokens of the reference solution + 20
(the study's), capped by the model's context; a prompt longer than the context is a
:class:`~common.method.TaskFailure`. Continuations are kept in the on-disk generation cache
(text and token ids), so the model-internal and the perturbation methods see the same
continuation of a task, and a rerun never generates twice.

The tasks a run prepares for the model-internal methods (:meth:`HFBackend.prepare`: a chunk of
``batch_size``, or one task for ``aa.attribute``), when not cached, are generated from a
grad-carrying prefill of each prompt alone (:func:`common.internals.prefill`), the chunk then
decoded in one left-padded batch over their stacked KV caches
(:func:`common.models.generate_from_prefills`; the same tokens as
:func:`common.models.generate`). Each :class:`Example`'s internals reuse its prefill, so the
prompt's forward runs once. The graphs a chunk keeps until its internals run are bounded
(:meth:`HFBackend.graph_cap`): tasks past the cap are prefilled without graph (still decoded
from it) and their internals run the full pass, as do cache hits.
"""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from . import code_units, models
from .generation_cache import GenerationCache
from .method import TaskFailure

#: Model names that mean a chat API when no backend is named.
CHAT_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt")
BACKENDS = ("auto", "hf", "chat", "completions")


def is_chat_model(model: str, base_url: str | None) -> bool:
    return base_url is not None or str(model).lower().startswith(CHAT_PREFIXES)


def header(backend) -> dict:
    """A backend's settings for result headers; a bare generator (any object with ``name`` and
    ``generate``) is described by its class and name."""
    if callable(getattr(backend, "header", None)):
        return backend.header()
    return {"kind": type(backend).__name__, "model": backend.name}


#: The families whose methods read a model's internals (attention, gradients).
INTERNAL_FAMILIES = frozenset({"self_attention", "gradient"})
#: Prefill graphs a chunk keeps for its tasks' internals, on a CPU (bytes; :meth:`HFBackend.graph_cap`).
GRAPH_CAP_BYTES = 4 << 30
#: On a CUDA device: this fraction of the free memory when the chunk is prepared.
GRAPH_CAP_FREE_FRACTION = 0.5


class Example:
    """A task, the model and its greedy continuation: what a model-internal method reads.

    Expensive passes are computed once per task and shared by the methods of a run through
    :meth:`memo`. Query rows come from :func:`common.code_units.query_rows`.
    """

    def __init__(self, lm: models.LoadedModel, task, continuation: models.Continuation,
                 families: frozenset[str] = INTERNAL_FAMILIES, prefill=None):
        self.lm = lm
        #: the :class:`common.internals.Prefill` of the continuation's generation, if any: the
        #: first :meth:`internals` call reuses and releases it
        self.prefill = prefill
        self.task = task
        self.continuation = continuation
        self.prompt_len = len(continuation.prompt_ids)
        self.ids = continuation.ids
        #: the model-internal families of the run: what :meth:`internals` computes in its pass
        self.families = frozenset(families)
        self._memo: dict = {}

    @property
    def text(self) -> str:
        return self.continuation.text

    @property
    def n_new(self) -> int:
        return len(self.continuation.new_ids)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Character spans of the prompt tokens in ``task.model_prompt``."""
        off = models.token_offsets(self.lm.tokenizer, self.task.model_prompt)
        if len(off) != self.prompt_len:
            raise RuntimeError(f"{self.task.task_id}: {len(off)} token offsets for "
                               f"{self.prompt_len} prompt tokens")
        return off

    def generated_char_ends(self) -> np.ndarray:
        """End of each generated token in the generation text (decoding growing prefixes)."""
        tok = self.lm.tokenizer
        new = self.continuation.new_ids.tolist()
        ends = [len(tok.decode(new[:k + 1], skip_special_tokens=True,
                               clean_up_tokenization_spaces=False)) for k in range(len(new))]
        return np.maximum.accumulate(np.asarray(ends, dtype=np.int64)) if ends else np.zeros(0, np.int64)

    @cached_property
    def function_last(self) -> int | None:
        """Index among the generated tokens of the token holding the generated function's last
        character (:func:`common.code_units.function_span`), or None."""
        span = code_units.function_span(self.task.model_prompt, self.text)
        if span is None or self.n_new == 0:
            return None
        return code_units.last_token_of(self.generated_char_ends(), span.end)

    def rows(self, family: str, definitions: str = "unified") -> code_units.Rows:
        return code_units.query_rows(self.prompt_len, self.n_new, self.function_last, family,
                                     definitions)

    def row(self, stage: str, family: str, definitions: str = "unified") -> int:
        """The stage's query row; a missing function is a TaskFailure carrying the generation."""
        try:
            return self.rows(family, definitions).of(stage)
        except TaskFailure as exc:
            raise TaskFailure(str(exc), generation=self.text) from None

    def internals(self, definitions: str = "unified"):
        """Attention rows and next-token gradients of both stages, for every model-internal
        family of the run, from one forward and one batched backward
        (:func:`common.internals.internals`; over the generation's :attr:`prefill` and the
        generated positions only, when there is one); computed once and shared by all those
        methods."""
        def compute():
            from .internals import internals
            rows, targets = set(), set()
            if "self_attention" in self.families:
                r = self.rows("self_attention", definitions)
                rows = {r.reading} | ({r.coding} if r.coding is not None else set())
            if "gradient" in self.families:
                r = self.rows("gradient", definitions)
                targets = {r.reading} | ({r.coding} if r.coding is not None else set())
            prefill, self.prefill = self.prefill, None  # single use; internals() releases it
            return internals(self.lm.model, self.ids, sorted(rows), sorted(targets),
                             attention=bool(rows), gradients=bool(targets), prefill=prefill)
        return self.memo(("internals", definitions), compute)

    def memo(self, key, compute):
        """``compute()`` once per example; shared by the methods of a run."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def to_words(self, token_scores) -> tuple[np.ndarray, np.ndarray]:
        """Token scores of the prompt spread onto the words of the scored region."""
        from .align import to_words
        return to_words(self.task.prompt, self.offsets, token_scores, self.task.region)


class HFBackend:
    """A local Hugging Face causal LM: a generator for the perturbation methods and the
    :class:`Example` of each task for the model-internal methods.

    ``cache``: a :class:`GenerationCache` (default in memory; the CLI uses the on-disk one).
    ``model_id`` names the weights in cache keys (default: name, source and revision); give
    randomly initialised models a distinct one.
    """

    kind = "hf"

    def __init__(self, lm: models.LoadedModel, cache: GenerationCache | None = None,
                 batch_size: int = 8, name: str | None = None, model_id: str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, not {batch_size}")
        self.lm = lm
        self.name = name or lm.name
        self.model_id = model_id or f"{lm.name}|{getattr(lm, 'source', '')}|{getattr(lm, 'revision', None)}"
        self.cache = cache if cache is not None else GenerationCache(None)
        self.batch_size = batch_size
        self.generated = 0  # prompts actually run through the model (cache misses)
        #: model-internal families of the run (the run loop sets it): one pass computes their needs
        self.families = INTERNAL_FAMILIES
        #: budget of a prompt with no reference solution (a one-off prompt, not a benchmark task)
        self.no_reference_budget = 64
        #: set when this model's prefill caches could not be stacked into a batch cache
        self._unbatchable = False
        self._examples: dict[str, Example | TaskFailure] = {}

    def header(self) -> dict:
        return {"kind": self.kind, "model": getattr(self.lm, "source", "") or self.lm.name,
                "revision": getattr(self.lm, "revision", None),
                "dtype": str(self.lm.dtype).replace("torch.", ""), "decoding": "greedy",
                "budget": f"reference tokens + {models.BUDGET_EXTRA}, capped by the context"}

    # -- generation ----------------------------------------------------------------------------
    def budget(self, prompt: str, reference: str) -> int:
        """New-token budget of ``prompt``; a prompt that fills the context is a TaskFailure."""
        n_prompt = len(models.encode(self.lm, prompt))
        budget = (models.generation_budget(self.lm, reference) if reference
                  else self.no_reference_budget)
        ctx = self.lm.context_length
        if ctx is not None:
            if n_prompt >= ctx:
                raise TaskFailure(f"prompt of {n_prompt} tokens does not fit the model's context of "
                                  f"{ctx} tokens")
            budget = min(budget, ctx - n_prompt)
        return budget

    def _settings(self, budget: int) -> dict:
        # device type and dtype are keyed: greedy ties can break differently across them
        device = str(getattr(self.lm, "device", "cpu")).split(":")[0]
        return {"decoding": "greedy", "max_new_tokens": budget, "dtype": str(self.lm.dtype),
                "device": device}

    def _cached(self, prompt: str, budget: int) -> models.Continuation | None:
        import torch

        hit = self.cache.get(self.model_id, self._settings(budget), prompt)
        ids = hit.get("new_ids") if hit else None
        if (isinstance(ids, list) and all(isinstance(i, int) for i in ids)
                and isinstance(hit.get("text"), str)):
            return models.Continuation(models.encode(self.lm, prompt), torch.tensor(ids, dtype=torch.long),
                                       hit["text"], prompt, budget)
        return None

    def _store(self, prompt: str, budget: int, g: models.Continuation) -> None:
        self.cache.put(self.model_id, self._settings(budget), prompt,
                       {"text": g.text, "new_ids": g.new_ids.tolist()})
        self.generated += 1

    def continuations(self, prompts: list[str], budgets: list[int]) -> list[models.Continuation]:
        """Greedy continuations (cached; each distinct prompt generated at most once)."""
        out: dict[tuple[str, int], models.Continuation] = {}
        todo = []
        for prompt, budget in dict.fromkeys(zip(prompts, budgets)):
            hit = self._cached(prompt, budget)
            if hit is not None:
                out[prompt, budget] = hit
            else:
                todo.append((prompt, budget))
        if todo:
            gens = models.generate(self.lm, [p for p, _ in todo], [b for _, b in todo],
                                   batch_size=self.batch_size)
            for (prompt, budget), g in zip(todo, gens):
                self._store(prompt, budget, g)
                out[prompt, budget] = g
        return [out[p, b] for p, b in zip(prompts, budgets)]

    def graph_cap(self) -> int:
        """Bytes of prefill graphs a chunk may keep alive until its tasks' internals run:
        :data:`GRAPH_CAP_BYTES` on a CPU, :data:`GRAPH_CAP_FREE_FRACTION` of the free memory
        on a CUDA device (the internals' own passes need the rest)."""
        device = str(getattr(self.lm, "device", "cpu"))
        if device.startswith("cuda"):
            import torch
            dev = torch.device(device)
            # Blocks torch's allocator keeps after the previous chunk are free to it, not to the driver.
            cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
            return int((torch.cuda.mem_get_info(dev)[0] + cached) * GRAPH_CAP_FREE_FRACTION)
        return GRAPH_CAP_BYTES

    def _continuations_with_prefills(self, prompts: list[str], budgets: list[int]) -> list[tuple]:
        """``(continuation, prefill)`` of each prompt: greedy continuations generated (batched)
        from :func:`common.internals.prefill` of each prompt alone
        (:func:`common.models.generate_from_prefills`), whose graphs the examples' internals then
        reuse instead of running the prompts again. The cached continuation and no prefill on a
        cache hit; no prefill either for a prompt generated after the chunk's graphs reached
        :meth:`graph_cap` (prefilled without graph, for decoding only). Everything falls back to
        :meth:`continuations` where a prefill cannot give :func:`models.generate`'s tokens (no
        budget, a generation config that processes logits, a model whose grad-enabled prefill is
        not bit-identical to generation's: :func:`common.internals.matches_generation`, prefill
        caches that cannot be stacked into one batch: :class:`common.models.CacheNotBatchable`)."""
        out: dict[tuple[str, int], tuple] = {}
        todo, plain = [], []
        for key in dict.fromkeys(zip(prompts, budgets)):
            hit = self._cached(*key)
            if hit is not None:
                out[key] = (hit, None)
            else:  # no budget: nothing to generate, nothing a prefill could give
                (todo if key[1] >= 1 else plain).append(key)
        got = self._generate_with_prefills(todo) if todo else []
        if got is None:
            plain, got = plain + todo, []
        out.update(zip(todo, got))
        if plain:
            conts = self.continuations([p for p, _ in plain], [b for _, b in plain])
            out.update((key, (c, None)) for key, c in zip(plain, conts))
        return [out[key] for key in zip(prompts, budgets)]

    def _generate_with_prefills(self, todo: list[tuple[str, int]]) -> list[tuple] | None:
        """:meth:`_continuations_with_prefills` of uncached prompts with budgets; None where the
        guards send them to plain generation (nothing stored then)."""
        from .internals import matches_generation, prefill

        families = self.families & INTERNAL_FAMILIES
        if (not families or not models.first_step_is_argmax(self.lm)
                or matches_generation(self.lm.model) is False
                or (len(todo) > 1 and self._unbatchable)):
            return None
        cap, kept, per_token = self.graph_cap(), 0, 0.0
        pres = []
        for prompt, _ in todo:
            ids = models.encode(self.lm, prompt)
            # The next graph is estimated from the largest per-token size seen in the chunk, so
            # the cap is crossed by no more than that estimate's error; the first always fits.
            keep = kept + per_token * len(ids) <= cap
            pre = prefill(self.lm.model, ids, attention=keep and "self_attention" in families,
                          gradients=keep and "gradient" in families)
            kept += pre.graph_bytes
            per_token = max(per_token, pre.graph_bytes / len(ids))
            pres.append((pre, keep))
            if not matches_generation(self.lm.model, pre):  # never a different greedy generation
                return self._released(pres)
        try:
            conts = models.generate_from_prefills(
                self.lm, [p for p, _ in todo], [b for _, b in todo], [pre.logits.detach() for pre, _ in pres],
                [pre.cache for pre, _ in pres], batch_size=self.batch_size)
        except models.CacheNotBatchable:
            self._unbatchable = True  # a property of the model's cache: do not prefill again
            return self._released(pres)
        got = []
        for (prompt, budget), cont, (pre, keep) in zip(todo, conts, pres):
            self._store(prompt, budget, cont)
            if not keep:
                pre.release()
            got.append((cont, pre if keep else None))
        return got

    @staticmethod
    def _released(pres) -> None:
        for pre, _ in pres:
            pre.release()
        return None

    def generate(self, prompts: list[str], reference: str) -> list[str]:
        """The generator contract: greedy continuation text of each prompt."""
        budgets = [self.budget(p, reference) for p in prompts]
        return [c.text for c in self.continuations(prompts, budgets)]

    def prefetch(self, items: list[tuple[str, str]]) -> int:
        """Generate ``(prompt, reference)`` pairs of several tasks together into the cache, so
        batches fill across tasks (a task's own prompts rarely fill one). A prompt too long for
        the context is left to the task, which records the failure. Returns prompts generated."""
        prompts, budgets = [], []
        for prompt, reference in dict.fromkeys(items):
            try:
                budgets.append(self.budget(prompt, reference))
                prompts.append(prompt)
            except TaskFailure:
                continue
        before = self.generated
        if prompts:
            self.continuations(prompts, budgets)
        return self.generated - before

    # -- model-internal methods ----------------------------------------------------------------
    def prepare(self, tasks) -> None:
        """Generate the continuations of ``tasks`` together (batched); forget earlier tasks.

        Uncached tasks are generated from prefills of their prompts, each run alone, that
        their examples' internals reuse (:meth:`_continuations_with_prefills`): the prompt's
        forward runs once, not twice, and the decoding stays batched. Tasks whose prefill graph
        would pass the chunk's :meth:`graph_cap`, cache hits, and runs the guards send to plain
        batched generation get the full internals pass."""
        self._examples = {}
        runnable, budgets = [], []
        for task in tasks:
            try:
                budgets.append(self.budget(task.model_prompt, task.reference))
                runnable.append(task)
            except TaskFailure as exc:
                self._examples[task.task_id] = exc
        pairs = self._continuations_with_prefills([t.model_prompt for t in runnable], budgets)
        for task, (cont, pre) in zip(runnable, pairs):
            self._examples[task.task_id] = Example(self.lm, task, cont, self.families, pre)

    def example(self, task) -> Example:
        """The task's greedy generation and shared passes (generated now if not prepared)."""
        if task.task_id not in self._examples:
            self.prepare([task])
        got = self._examples[task.task_id]
        if isinstance(got, TaskFailure):
            raise got
        return got


class GivenExample:
    """A backend serving one given :class:`Example` (a chosen continuation): for benches, tests
    and for attributing a continuation that was not generated greedily."""

    kind = "given"

    def __init__(self, example: Example, name: str = "given"):
        self.ex = example
        self.name = name

    def example(self, task) -> Example:
        return self.ex


def build(model, *, backend: str = "auto", base_url: str | None = None, name: str | None = None,
          device: str = "cpu", dtype: str | None = None, batch_size: int = 8,
          cache_path: str | os.PathLike | None = None,
          temperature: float | None = 0.0, seed: int | None = 0, max_cost_usd: float | None = None,
          concurrency: int = 4, prices_per_1k: tuple[float, float] | None = None,
          extract_code: bool = True, api_key: str | None = None, tokenizer=None):
    """A backend for ``model``: a short name, folder or hub id (``hf``), a loaded model, a chat
    model id (``chat``), or a model served by an OpenAI-compatible ``/v1/completions`` server
    (``completions``: vLLM, TGI, llama.cpp; ``tokenizer`` names the tokenizer for the study's
    budget); ``auto`` picks chat for a base URL or an OpenAI-style name. A HF model is loaded
    with its default (fastest) attention implementation: :mod:`common.internals` reads the
    attention rows the self-attention methods need without an eager pass."""
    from .results import model_slug

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    cache = GenerationCache(cache_path)
    if isinstance(model, models.LoadedModel):
        return HFBackend(model, cache=cache, batch_size=batch_size, name=name)
    if backend == "auto":
        backend = "chat" if is_chat_model(model, base_url) else "hf"
    if backend == "completions":
        from .completions import CompletionsBackend
        if tokenizer is not None:
            tokenizer = _load_tokenizer(tokenizer)
        gen = CompletionsBackend(model, base_url=base_url, api_key=api_key, cache=cache,
                                 tokenizer=tokenizer, batch_size=batch_size, concurrency=concurrency,
                                 max_cost_usd=max_cost_usd, prices_per_1k=prices_per_1k)
        gen.name = name or model_slug(model)
        return gen
    if backend == "chat":
        from .chat import ChatBackend
        gen = ChatBackend(model, base_url=base_url, api_key=api_key, cache=cache,
                          temperature=temperature, seed=seed, max_cost_usd=max_cost_usd,
                          prices_per_1k=prices_per_1k, concurrency=concurrency,
                          extract_code=extract_code)
        gen.name = name or model_slug(model)
        return gen
    lm = models.load_model(model, device=device, dtype=dtype)
    return HFBackend(lm, cache=cache, batch_size=batch_size, name=name)


def _load_tokenizer(name_or_path):
    """A tokenizer by name or folder (the completions backend's budget); one clear error."""
    if not isinstance(name_or_path, str):
        return name_or_path
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise models.ModelLoadError(f"tokenizer {name_or_path!r} could not be loaded "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
