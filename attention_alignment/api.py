"""The Python API: attribute a prompt (or a benchmark task) with any method in one call.

    import attention_alignment as aa
    result = aa.attribute("smollm2", "Write a function to reverse a list.", "saliency_coding")
    result.show()            # words shaded by score, top-k boxed, human keywords underlined
    result.to_frame()        # one row per word
    aa.load("experiment_result/saliency_coding_smollm2.jsonl").score()
"""

from __future__ import annotations

from common import backends, dataset, models
from common.method import Method
from common.results import AttributionResult

from . import catalogue

#: The generation budget of a prompt that is no benchmark task (no reference solution).
DEFAULT_NEW_TOKENS = 64


def run(methods: str | list[str] | None = None, *, family: str | None = None, model="smollm2",
        benchmark: str = "mbpp", limit: int | None = 5, variant: str = "true",
        definitions: str = "unified", labels: str = "corrected", output=None, device: str = "cpu",
        dtype: str | None = None, batch_size: int = 8, threads: int | None = None, cache=None,
        progress: bool = True, backend_options: dict | None = None,
        shard: str | tuple[int, int] | None = None, engine: str = "local", workers: int = 1, **options):
    """Run methods over benchmark tasks into result files (the CLI's run, from Python).

    ``methods``: names, or a ``family`` (``all`` = the ten model-internal methods). ``limit``:
    first n tasks (None: all). ``threads``: torch CPU threads (None: the idle physical cores).
    ``options``: method options, applied to the methods that have them (e.g. ``nsamples=20``).
    ``backend_options``: e.g. ``{"base_url": ..., "max_cost_usd": 5}`` for a chat model.
    ``shard``: ``"I/N"`` or ``(I, N)``, shard I of N of the tasks into its own files (readers
    merge them). ``engine="ray"``: ``workers`` Ray actors (``RAY_ADDRESS`` or a local cluster).
    Returns the run summary (``summary.paths``: method -> result file).
    """
    from common import paths, shards
    from common import threads as threads_
    from common.generation_cache import DEFAULT_PATH

    from . import runner

    print(threads_.apply(threads))
    chosen = catalogue.select(methods, family, variant)
    if definitions != "unified":
        options = {"definitions": definitions, **options}
    chosen = [m.configure(**{k: v for k, v in options.items() if m.has_option(k)}) for m in chosen]
    unused = [k for k in options if not any(m.has_option(k) for m in chosen)]
    if unused:
        raise ValueError(f"no selected method has the option {', '.join(unused)}")
    if isinstance(shard, str):
        shard = shards.parse_shard(shard)
    build = dict(device=device, dtype=dtype, batch_size=batch_size, cache_path=cache or DEFAULT_PATH,
                 **(backend_options or {}))
    tasks = dataset.load(labels).select(benchmark, limit)
    if engine == "ray":
        from . import ray_engine
        return ray_engine.run(chosen, model, build, tasks, output or paths.RESULT_DIR, workers=workers,
                              progress=progress, shard=shard, threads=threads)
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', not {engine!r}")
    backend = backends.build(model, **build)
    return runner.run(chosen, backend, tasks, output or paths.RESULT_DIR, progress=progress, shard=shard)


def load(path) -> AttributionResult:
    """A result file: ours (``.jsonl``) or a published pickle (``.pkl``)."""
    return AttributionResult.load(path)


def task_for(prompt: str, labels: str = "corrected", mirror=None):
    """A benchmark task by id (``HumanEval/0``, ``mbpp/601``) or by its exact prompt text; any
    other text becomes a one-off task: scored region = the whole text, no human keywords, no
    reference solution."""
    looks_like_id = prompt.startswith(("HumanEval/", "mbpp/")) and "\n" not in prompt
    if looks_like_id or len(prompt) < 4000:
        try:
            ds = dataset.load(labels, mirror)
        except Exception:  # noqa: BLE001 - no data here: a task id cannot be resolved, a text still can
            if looks_like_id:
                raise
            ds = None
        if ds is not None:
            by_id = ds.by_id()
            if prompt in by_id:
                return by_id[prompt]
            hit = ds.prompts().get(prompt)
            if hit is not None:
                return hit
        if looks_like_id:
            raise KeyError(f"no task {prompt!r} in the dataset")
    return dataset.Task("custom", "prompt", prompt, (0, len(prompt)), (), "", "", None)


def attribute(model, prompt: str, method: str | Method = "saliency_coding", *, device: str = "cpu",
              dtype: str | None = None, labels: str = "corrected", mirror=None,
              max_new_tokens: int = DEFAULT_NEW_TOKENS, **options) -> AttributionResult:
    """Attribute one prompt with one method; returns an in-memory :class:`AttributionResult`.

    ``model``: a short name, local folder or hub id, a loaded :class:`common.models.LoadedModel`,
    or a backend (:mod:`common.backends`). ``prompt``: a task id, a benchmark prompt, or any
    text. ``options``: the method's options (e.g. ``definitions="paper"``, ``nsamples=100``).
    A task the method cannot score raises :class:`common.method.TaskFailure` with the reason.
    ``max_new_tokens``: the generation budget of a prompt that is no benchmark task.
    """
    m = catalogue.get(method) if isinstance(method, str) else method
    if options:
        m = m.configure(**options)
    if isinstance(model, str | models.LoadedModel):
        backend = backends.build(model, device=device, dtype=dtype)
    else:
        backend = model
    if hasattr(backend, "no_reference_budget"):
        backend.no_reference_budget = max_new_tokens
    if hasattr(backend, "families") and m.needs == "model":
        backend.families = frozenset({m.family})
    task = task_for(prompt, labels, mirror)
    attribution = m.attribute(task, backend)
    result = AttributionResult(m.name, backend.name, {}, meta={"method": m.settings()})
    result.append(task.task_id, task.prompt, attribution)
    return result
