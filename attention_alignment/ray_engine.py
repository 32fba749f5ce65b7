"""Ray as the run engine: ``python -m attention_alignment --engine ray --workers N``.

The driver (this process) connects to the Ray cluster at ``RAY_ADDRESS`` (``auto``, or
``ray://host:10001``), or starts a local one when none is set. It starts ``N`` actors
(:class:`Worker`); each builds the backend once (loads the model; with ``--device cuda`` the
actor takes one GPU, ``num_gpus=1``, and Ray makes it the actor's only visible device) and then
runs every selected method on the chunks of tasks it is sent (a chunk is a generation batch for
the model-internal methods, one task otherwise), returning the attributions and task failures.
Actors write nothing: the driver records every outcome through the one writer
(:meth:`common.results.AttributionResult.append`), in task order, so the result files are the
same as those of one process and a rerun resumes exactly as :func:`runner.run` does.

Faults. An actor whose process dies is restarted by Ray and its pending calls are retried
(``max_restarts``, ``max_task_retries``); one that cannot be restarted any more is dropped and
its chunk is sent to another actor. The error policy is the run loop's: a
:class:`~common.method.TaskFailure` is a recorded outcome; any other exception in an actor
(a bug, an API error after its retries) stops the run with that exception and one message
naming the method and the task: the chunks before it are finished and recorded, nothing from
that chunk on.

Every node needs this package installed (the same checkout on a shared file system, or
``pip install -e .``); a local cluster gets this checkout on its workers' ``PYTHONPATH``.
"""

from __future__ import annotations

import heapq
import os
import time
from pathlib import Path

from common import paths

from . import runner

#: calls queued on one actor: the next chunk is waiting when the current one ends
PER_ACTOR = 2


class Worker:
    """One Ray actor: a backend built once, the methods run on chunks of tasks sent to it."""

    def __init__(self, methods, model, options: dict, threads: int | None = None):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch

        from common import backends

        torch.set_num_threads(threads or 1)
        options = dict(options)
        if str(options.get("device", "cpu")).startswith("cuda"):
            options["device"] = "cuda"  # Ray makes the actor's one GPU device 0
        self.methods = methods
        self.error: BaseException | None = None
        try:
            self.backend = backends.build(model, **options)
            runner.check_compatible(methods, self.backend)
            for m in methods:
                m.prepare()
            if hasattr(self.backend, "families"):  # one pass computes what these families need
                self.backend.families = frozenset(m.family for m in methods if m.needs == "model")
        except Exception as exc:  # noqa: BLE001 - raised by describe(), as itself (Ray restarts a
            self.error = exc      # failed constructor's actor without its exception)

    def describe(self, prompt_style: str = "study") -> tuple[str, dict, int]:
        """Model name, each method's result header, and the chunk size."""
        if self.error is not None:
            raise self.error
        metas = {m.name: runner._meta(m, self.backend, prompt_style) for m in self.methods}
        return self.backend.name, metas, runner.chunk_size(self.methods, self.backend)

    def run_chunk(self, tasks, done: dict[str, set[str]]) -> tuple[list[list[tuple]], dict | None]:
        """Outcomes of each task (methods in ``done[task_id]`` skipped) and the API usage so far."""
        if any(m.needs == "model" for m in self.methods):
            self.backend.prepare(tasks)
        outcomes = [runner.attribute_task(t, self.methods, self.backend, done.get(t.task_id, set()))
                    for t in tasks]
        usage = self.backend.usage.as_dict() if hasattr(self.backend, "usage") else None
        return outcomes, usage


def connect(address: str | None = None, **init_options) -> bool:
    """Connect to ``address`` or ``RAY_ADDRESS``, or start a local cluster; True if this call
    started Ray in this process (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        # the raylet waits this long for its agents; on a busy machine their start-up (Python
        # imports) can take longer than Ray's default, and the node then fails to start
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
        # a local cluster's workers inherit the driver's environment: give them this checkout
        path = os.environ.get("PYTHONPATH", "")
        if str(paths.ROOT) not in path.split(os.pathsep):
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(paths.ROOT), path) if p)
    ray.init(address=address, **{"log_to_driver": True, **init_options})
    return True


def run(methods, model, options: dict, tasks, output=paths.RESULT_DIR, *, workers: int = 1,
        progress: bool = True, shard: tuple[int, int] | None = None, threads: int | None = None,
        max_restarts: int = 3, address: str | None = None, init_options: dict | None = None
        ) -> runner.RunSummary:
    """:func:`runner.run` on Ray: ``workers`` actors, each building ``backends.build(model,
    **options)``; the same result files, resume and error policy."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    if workers < 1:
        raise runner.UsageError(f"--workers must be at least 1, not {workers}")
    if options.get("max_cost_usd") is not None:
        raise runner.UsageError("--max-cost-usd is a budget per process: with --engine ray each worker "
                                "would spend it; use --engine local (API calls run --concurrency at once)")
    tasks = runner.shard_tasks(tasks, shard)
    output = Path(output)
    started = connect(address, **(init_options or {}))
    actors = []
    try:
        gpu = str(options.get("device", "cpu")).startswith("cuda")
        if gpu and ray.cluster_resources().get("GPU", 0) < 1:
            raise runner.UsageError("--device cuda with --engine ray: the Ray cluster has no GPU")
        actor_class = ray.remote(Worker).options(
            num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=max_restarts,
            max_task_retries=max_restarts)
        actors = [actor_class.remote(methods, model, options, threads) for _ in range(workers)]
        style = runner.prompt_style_of(tasks)
        described = _get(ray, [a.describe.remote(style) for a in actors], RayTaskError)
        name, metas, chunk = described[0]
        if any(d[:2] != (name, metas) for d in described[1:]):
            raise RuntimeError("the Ray workers disagree on the model or the method settings (different "
                               "package versions on the nodes?)")
        results = runner.open_results(methods, name, metas, output, shard, len(tasks))
        summary = runner.RunSummary(name, [m.name for m in methods],
                                    paths={n: r.path for n, r in results.items()}, tasks=len(tasks))
        pending = runner.pending_tasks(tasks, results)
        summary.skipped = len(tasks) - len(pending)
        chunks = [pending[s:s + chunk] for s in range(0, len(pending), chunk)]
        start = time.perf_counter()
        try:
            _stream(ray, actors, chunks, results, summary, output, shard, progress,
                    RayActorError, RayTaskError)
        finally:
            summary.seconds = time.perf_counter() - start
        return summary
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
        if started:
            ray.shutdown()


def _get(ray, refs, task_error):
    """``ray.get``; an exception raised inside an actor is re-raised as itself."""
    try:
        return ray.get(refs)
    except task_error as exc:
        raise _cause(exc) from None


def _cause(exc):
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _stream(ray, actors, chunks, results, summary, output, shard, progress, actor_error, task_error):
    """Send chunks to the actors (at most PER_ACTOR queued on each, at most a window of chunks
    ahead of the oldest unwritten one) and record finished chunks in task order.

    An exception from a chunk stops the run at that chunk: nothing more is sent, the chunks
    before it finish and are recorded, then the exception is raised (the files hold the same
    prefix whichever worker was faster)."""
    bar = runner._progress(sum(len(c) for c in chunks), summary.model, progress)
    usage_path = runner.usage_file(output, summary.model, shard)
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"-{os.getpid()}"
    usage: dict[int, dict] = {}
    alive = set(range(len(actors)))
    queued = {a: 0 for a in alive}
    todo = list(range(len(chunks)))  # a heap: a chunk sent back after an actor died goes first
    window = PER_ACTOR * len(actors)
    inflight: dict = {}
    finished: dict[int, list] = {}
    written = 0
    error, error_at = None, len(chunks)  # the first failing chunk in task order
    try:
        while written < min(error_at, len(chunks)):
            while todo and todo[0] < min(written + window, error_at):
                free = [a for a in alive if queued[a] < PER_ACTOR]
                if not free:
                    break
                a = min(free, key=lambda x: (queued[x], x))
                idx = heapq.heappop(todo)
                done = {t.task_id: {n for n, r in results.items() if t.task_id in r.done}
                        for t in chunks[idx]}
                inflight[actors[a].run_chunk.remote(chunks[idx], done)] = (idx, a)
                queued[a] += 1
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                idx, a = inflight.pop(ref)
                queued[a] -= 1
                try:
                    outcomes, used = ray.get(ref)
                except actor_error:
                    # Ray's restarts and retries are spent: drop the actor, the chunk goes to another
                    alive.discard(a)
                    heapq.heappush(todo, idx)
                    if not alive:
                        raise RuntimeError("every Ray worker died (see the Ray logs above); the "
                                           "finished tasks are saved, rerun to resume") from None
                    continue
                except task_error as exc:
                    if idx < error_at:
                        error, error_at = _cause(exc), idx
                    continue
                finished[idx] = outcomes
                if used is not None:
                    usage[a] = used
            while written in finished and written < error_at:
                for task, outcome in zip(chunks[written], finished.pop(written)):
                    runner.record_outcomes(task, outcome, results, summary)
                    bar.update(1)
                written += 1
            if usage:
                summary.usage = runner._write_usage(usage_path, run_id, _total(usage))
        if error is not None:
            raise error
    finally:
        bar.close()  # chunks still in flight end with their actors (killed by run)


def _total(usage: dict[int, dict]) -> dict:
    total: dict = {}
    for one in usage.values():
        for k, v in one.items():
            if isinstance(v, int | float):
                total[k] = total.get(k, 0) + v
    return total
