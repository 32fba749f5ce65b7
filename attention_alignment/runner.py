"""One run loop and one command line for every method and every backend.

    python -m attention_alignment --list-methods
    python -m attention_alignment                                   # offline default: SmolLM2,
                                                                    # 5 MBPP tasks, the ten
                                                                    # model-internal methods
    python -m attention_alignment --model codegen --limit 50 --family gradient
    python -m attention_alignment --model smollm2 --methods shap_perturbation,saliency_coding
    python -m attention_alignment --model gpt-4o --name gpt4o --family perturbation --max-cost-usd 5

Each method writes ``<output>/<method>_<model>.jsonl`` (one line per task as it finishes). A
rerun skips tasks already recorded, so a killed or stopped run resumes where it was; a file
made with other method or backend settings is refused rather than mixed. ``--shard I/N`` runs
one shard of the tasks into ``<method>_<model>.shard-I-of-N.jsonl`` (readers merge the shards);
``--engine ray --workers n`` runs the tasks on Ray actors (:mod:`attention_alignment.ray_engine`)
with the same files, resume and error policy.

Error policy: only expected per-task outcomes (:class:`common.method.TaskFailure`: prompt
longer than the context, no function body, no words in the region...) are recorded as task
failures. Anything else (a bug, a budget stop, an API error after retries, Ctrl-C) records
nothing for the task in progress and stops the run with one message and a non-zero exit:
1 error, 2 bad usage, 3 budget spent, 130 interrupted. The rerun resumes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common import backends, dataset, fetch, models, paths, shards, threads
from common.atomic import write_text
from common.chat import BudgetExceeded, ChatError
from common.method import DEFINITIONS, FAMILIES, Method, TaskFailure
from common.results import AttributionResult, ResultFileError, result_path, shard_files
from common.safe_pickle import UnsafePickle

from . import catalogue

DEFAULT_MODEL = "smollm2"
DEFAULT_LIMIT = 5
EXIT_ERROR, EXIT_USAGE, EXIT_BUDGET, EXIT_INTERRUPTED = 1, 2, 3, 130


class UsageError(ValueError):
    """Bad options or an impossible combination; the message names the option."""


@dataclass
class RunSummary:
    model: str
    methods: list[str]
    tasks: int = 0
    skipped: int = 0  # already recorded for every method
    scored: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> task -> reason
    seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)
    usage: dict | None = None

    @property
    def computed(self) -> int:
        return self.tasks - self.skipped

    @property
    def tasks_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"{self.model}: {self.computed} tasks computed, {self.skipped} already done, "
                 f"{self.seconds:.1f} s ({self.tasks_per_second:.2f} tasks/s)"]
        for m in self.methods:
            lines.append(f"  {m:28s} scored {self.scored.get(m, 0):4d}  failed "
                         f"{self.failed.get(m, 0):4d}  -> {paths.shown(self.paths[m])}")
        if self.usage:
            u = self.usage
            lines.append(f"  {u['requests']} requests, {u['cache_hits']} cache hits, "
                         f"{u['prompt_tokens']}+{u['completion_tokens']} tokens, ${u['cost_usd']:.4f}")
        return "\n".join(lines)


def _meta(method: Method, backend, prompt_style: str = "study") -> dict:
    import torch
    import transformers
    return {"method": method.settings(), "backend": backends.header(backend), "prompt_style": prompt_style,
            "family": method.family,
            "stage": method.stage, "description": method.description,
            "units": "words of the scored region (common.code_units)",
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__}}


def prompt_style_of(tasks) -> str:
    """The one prompt style of a run's tasks (``study`` for tasks without one)."""
    styles = {getattr(t, "prompt_style", "study") for t in tasks}
    if len(styles) > 1:
        raise UsageError(f"tasks of several prompt styles ({', '.join(sorted(styles))}) in one run")
    return styles.pop() if styles else "study"


def check_compatible(methods: list[Method], backend) -> None:
    """Model-internal methods need a local model's internals, not a black-box API."""
    if not methods:
        raise UsageError("no method selected")
    internal = [m.name for m in methods if m.needs == "model"]
    if internal and not hasattr(backend, "example"):
        raise UsageError(f"{', '.join(internal)} read{'s' if len(internal) == 1 else ''} the model's "
                         f"attention or gradients, which a {getattr(backend, 'kind', '?')} backend "
                         f"does not expose: use a local Hugging Face model, or only the "
                         f"perturbation methods")


def run(methods: list[Method], backend, tasks, output: str | os.PathLike = paths.RESULT_DIR,
        progress: bool = True, shard: tuple[int, int] | None = None,
        prefetch: bool = True) -> RunSummary:
    """Attribute every task not yet recorded, for every method, appending as each task ends.

    ``shard=(I, N)``: only shard I of N of ``tasks`` (:func:`common.shards.select`), written to
    the shard's own files ``<method>_<model>.shard-I-of-N.jsonl``. ``prefetch``: generate the
    planned prompts of the black-box methods of a chunk of ``batch_size`` tasks together (a
    local model's batches then fill across tasks); results are identical either way, and each
    task is still recorded as it finishes."""
    check_compatible(methods, backend)
    style = prompt_style_of(tasks)
    for m in methods:
        m.prepare()
    if hasattr(backend, "families"):  # one forward/backward computes what these families need
        backend.families = frozenset(m.family for m in methods if m.needs == "model")
    tasks = shard_tasks(tasks, shard)
    output = Path(output)
    results = open_results(methods, backend.name, {m.name: _meta(m, backend, style) for m in methods},
                           output, shard, len(tasks))
    for r in results.values():  # files from before the option are study-style
        if r.meta.get("prompt_style", "study") != style:
            raise ResultFileError(f"{r.path} was made with prompt_style='study', this run has "
                                  f"{style!r}: use another result folder or model name")
    summary = RunSummary(backend.name, [m.name for m in methods],
                         paths={n: r.path for n, r in results.items()}, tasks=len(tasks))
    pending = pending_tasks(tasks, results)
    summary.skipped = len(tasks) - len(pending)
    internal = any(m.needs == "model" for m in methods)
    # black-box methods that know their prompts in advance get them generated across tasks
    planned = ([m for m in methods if hasattr(m, "planned_prompts")]
               if prefetch and hasattr(backend, "prefetch") else [])
    chunk = chunk_size(methods, backend, prefetching=bool(planned))
    bar = _progress(len(pending), backend.name, progress)
    usage_path = usage_file(output, backend.name, shard)
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    try:
        for s in range(0, len(pending), chunk):
            batch = pending[s:s + chunk]
            if internal:
                backend.prepare(batch)  # generations of the chunk, batched
            if planned:
                _prefetch(batch, planned, backend, results)
            for task in batch:
                done = {name for name, r in results.items() if task.task_id in r.done}
                record_outcomes(task, attribute_task(task, methods, backend, done), results, summary)
                bar.update(1)
                if hasattr(backend, "usage"):
                    summary.usage = _write_usage(usage_path, run_id, backend.usage.as_dict())
                    bar.set_postfix(cost=f"${summary.usage['cost_usd']:.3f}")
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        if hasattr(backend, "usage"):
            summary.usage = _write_usage(usage_path, run_id, backend.usage.as_dict())
    return summary


def _prefetch(batch, planned, backend, results) -> None:
    """The chunk's perturbed prompts (of tasks not yet done) generated together into the cache;
    a task whose prompts cannot be planned (e.g. no words) is left to its own attribute call."""
    items = []
    for task in batch:
        for m in planned:
            if task.task_id in results[m.name].done:
                continue
            try:
                items += [(p, task.reference) for p in m.planned_prompts(task)]
            except TaskFailure:
                continue
    backend.prefetch(items)


def shard_tasks(tasks, shard: tuple[int, int] | None) -> list:
    return list(tasks) if shard is None else shards.select(tasks, *shard)


def open_results(methods: list[Method], model: str, metas: dict[str, dict], output: Path,
                 shard: tuple[int, int] | None, planned: int) -> dict[str, AttributionResult]:
    """Each method's result file (a shard's own file for a sharded run), opened for appending."""
    results = {}
    for m in methods:
        _check_no_other_set(result_path(output, m.name, model), shard)
        meta = metas[m.name]
        if shard is not None:
            meta = {**meta, "shard": {"index": shard[0], "count": shard[1], "tasks": planned}}
        results[m.name] = AttributionResult.open(result_path(output, m.name, model, shard), m.name, model,
                                                 meta, match_meta=("method", "backend", "prompt_style"),
                                                 update_meta=("shard",) if shard else ())
    return results


def _check_no_other_set(logical: Path, shard: tuple[int, int] | None) -> None:
    """Refuse, before writing anything, a run whose files would make two results of one: an
    unsharded run beside shard files, or shards of another count."""
    others = [p for _, n, p in shard_files(logical) if shard is None or n != shard[1]]
    if others:
        what = "an unsharded run" if shard is None else f"shards of {shard[1]}"
        raise ResultFileError(f"{others[0]} exists: {what} would make a second result of "
                              f"{logical.stem}; use its --shard, another --output, or move those files")
    if shard is not None and logical.exists():
        raise ResultFileError(f"{logical} exists: a sharded run would make a second result of it; use "
                              f"another --output, or move it")


def pending_tasks(tasks, results: dict[str, AttributionResult]) -> list:
    """Tasks some method has not recorded yet."""
    return [t for t in tasks if any(t.task_id not in r.done for r in results.values())]


def chunk_size(methods: list[Method], backend, prefetching: bool = False) -> int:
    """Tasks whose generations are made together: a batch, for the model-internal methods and
    for black-box methods whose prompts are generated across tasks (``prefetching``)."""
    internal = any(m.needs == "model" for m in methods)
    return getattr(backend, "batch_size", 1) if internal or prefetching else 1


def usage_file(output: Path, model: str, shard: tuple[int, int] | None) -> Path:
    """API usage log; a shard has its own (concurrent shards never write one file)."""
    suffix = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    return output / f"{model}{suffix}.usage.json"


def attribute_task(task, methods: list[Method], backend, done: set[str] = frozenset()) -> list[tuple]:
    """Every method not in ``done`` on one task: ``(method name, attribution, failure reason,
    failure generation)`` each. Only a TaskFailure is an outcome; anything else propagates."""
    outcomes = []
    for m in methods:
        if m.name in done:
            continue
        try:
            outcomes.append((m.name, m.attribute(task, backend), None, None))
        except TaskFailure as exc:
            outcomes.append((m.name, None, str(exc), exc.generation))
        except BaseException as exc:
            exc.add_note(f"while running {m.name} on {task.task_id} (nothing recorded for this task; "
                         f"rerun to resume)")
            raise
    return outcomes


def record_outcomes(task, outcomes: list[tuple], results: dict[str, AttributionResult],
                    summary: RunSummary) -> None:
    """Append one task's outcomes, recorded together once every method is done with it."""
    for name, attribution, failure, generation in outcomes:
        if failure is None:
            results[name].append(task.task_id, task.prompt, attribution)
            summary.scored[name] = summary.scored.get(name, 0) + 1
        else:
            results[name].append(task.task_id, task.prompt, failure=failure, generation=generation)
            summary.failed[name] = summary.failed.get(name, 0) + 1
            summary.failures.setdefault(name, {})[task.task_id] = failure


def _write_usage(path: Path, run_id: str, usage: dict) -> dict:
    """Per-run and total API usage beside the result files, rewritten atomically."""
    data = {"runs": {}}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("runs"), dict):
                data = loaded
        except json.JSONDecodeError:
            pass  # a damaged usage log is rebuilt from this run on; results are unaffected
    data["runs"][run_id] = usage
    total: dict = {}
    for one in data["runs"].values():
        for k, v in one.items():
            if isinstance(v, int | float):
                total[k] = total.get(k, 0) + v
    data["total"] = total
    write_text(path, json.dumps(data, indent=1) + "\n")
    return usage


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **_):
        pass

    def close(self):
        pass


def _progress(total: int, name: str, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm
    # rate_noinv: always "tasks/s", also when a task takes longer than a second
    return tqdm(total=total, desc=name, unit="task", file=sys.stderr, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]")


# -- command line ------------------------------------------------------------------------------

#: CLI flag -> method option; applied to every selected method that has the option.
METHOD_FLAGS = {"fill_model": "--fill-model", "nsamples": "--nsamples", "l1_reg": "--l1-reg",
                "max_evals": "--max-evals", "seed": "--seed", "smoothing": "--smoothing"}


def _l1(value: str):
    return False if value.lower() in ("false", "none", "0") else value


def _non_negative(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or a positive integer, not {n}")
    return n


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attention_alignment", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list-methods", action="store_true", help="print the catalogue of methods and exit")
    sel = p.add_argument_group("what to run")
    sel.add_argument("--methods", help="comma-separated method names (see --list-methods)")
    sel.add_argument("--family", choices=("all", *FAMILIES), default=None,
                     help="every method of a family; 'all' (default) = the ten model-internal methods")
    sel.add_argument("--variant", default="true", choices=("true", "paper", "both"),
                     help="self-attention layers: true layers, the published layer-0 heads, or both")
    sel.add_argument("--definitions", default="unified", choices=DEFINITIONS,
                     help="word units and reading/coding positions: one for all families (unified) "
                          "or the published code's per family (paper); see common/code_units.py")
    sel.add_argument("--benchmark", choices=("all", *dataset.BENCHMARKS),
                     help="default: all, or mbpp when no --model is given")
    sel.add_argument("--limit", type=_non_negative,
                     help=f"first N tasks (0: all 1,138; default: all, or {DEFAULT_LIMIT} with no --model)")
    sel.add_argument("--labels", default="corrected", choices=dataset.LABEL_VERSIONS)
    sel.add_argument("--prompt-style", default="study", choices=dataset.PROMPT_STYLES,
                     help="what the model is given for MBPP: the study's text (default) or the "
                          "description plus the function's def line; the scored region is the "
                          "labelled text either way")
    sel.add_argument("--shard", metavar="I/N",
                     help="run shard I of N (0-based) of the selected tasks into its own files "
                          "<method>_<model>.shard-I-of-N.jsonl; readers merge the shards "
                          "(Slurm: --shard $SLURM_ARRAY_TASK_ID/N)")
    eng = p.add_argument_group("engine")
    eng.add_argument("--engine", default="local", choices=("local", "ray"),
                     help="local: this process; ray: one Ray actor per worker holding the model "
                          "(RAY_ADDRESS: an existing cluster; else a local one)")
    eng.add_argument("--workers", type=_positive,
                     help="Ray actors (default 1); with --device cuda each takes one GPU")
    mod = p.add_argument_group("model")
    mod.add_argument("--model", help=f"short name ({', '.join(models.CHECKPOINTS)}), local folder, hub id, "
                                     f"or a chat model id (default {DEFAULT_MODEL}: offline SmolLM2-135M)")
    mod.add_argument("--name", help="model part of the result file names (default: from --model)")
    mod.add_argument("--backend", default="auto", choices=backends.BACKENDS)
    mod.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    mod.add_argument("--tokenizer", help="completions backend: the served model's tokenizer (name or "
                                         "folder) for the study's budget (default: a character estimate)")
    mod.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    mod.add_argument("--dtype", choices=models.DTYPES)
    mod.add_argument("--batch-size", type=_positive, default=8,
                     help="prompts generated together (left padding; results equal to one at a time)")
    mod.add_argument("--threads", type=_positive,
                     help="torch CPU threads (default: the idle physical cores, from the machine's "
                          "load; printed in the run header)")
    mod.add_argument("--cache", default=None,
                     help="generation cache, SQLite (default .cache/generations.sqlite)")
    opt = p.add_argument_group("method options (applied to the selected methods that have them)")
    opt.add_argument("--fill-model", help="BERT masking's fill-mask model (default bert-base-uncased; "
                                          "tiny-random-bert: offline smoke tests only, random fills)")
    opt.add_argument("--nsamples", type=_positive, help="SHAP KernelExplainer samples (default 50)")
    opt.add_argument("--l1-reg", type=_l1, help="SHAP l1_reg (default aic)")
    opt.add_argument("--max-evals", type=_positive, help="SHAP text variant evaluations")
    opt.add_argument("--seed", type=int, help="SHAP coalition sampling seed (default 0)")
    opt.add_argument("--smoothing", help="NLTK BLEU smoothing method (default none, as the study)")
    api = p.add_argument_group("chat APIs")
    api.add_argument("--temperature", default="0",
                     help="chat temperature; 'default' leaves the server's (the study's noisy GPT-4 "
                          "BERT run)")
    api.add_argument("--max-cost-usd", type=float,
                     default=float(os.environ["MAX_COST_USD"]) if os.environ.get("MAX_COST_USD") else None)
    api.add_argument("--price-per-1k", type=float, nargs=2, metavar=("INPUT", "OUTPUT"),
                     help="USD per 1K input and output tokens (needed for a budget on an unpriced model)")
    api.add_argument("--no-extract-code", action="store_true",
                     help="compare whole chat answers, as the published GPT-4 runs did")
    api.add_argument("--concurrency", type=_positive, default=4)
    out = p.add_argument_group("output")
    out.add_argument("--output", default=str(paths.RESULT_DIR), help="result folder (default %(default)s)")
    out.add_argument("--no-progress", action="store_true")
    return p


def _select(args) -> list[Method]:
    try:
        methods = catalogue.select(args.methods, args.family, args.variant)
    except KeyError as exc:
        raise UsageError(f"--methods: {exc.args[0]}") from None
    if args.definitions != "unified":
        methods = [m.configure(definitions=args.definitions) for m in methods]
    for option, flag in METHOD_FLAGS.items():
        value = getattr(args, option)
        if value is None:
            continue
        having = [m for m in methods if m.has_option(option)]
        if not having:
            raise UsageError(f"{flag} applies to none of the selected methods "
                             f"({', '.join(m.name for m in methods)})")
        methods = [m.configure(**{option: value}) if m in having else m for m in methods]
    if args.device != "cpu":  # the fill-mask model runs where the model runs
        methods = [m.configure(fill_device=args.device) if m.has_option("fill_device") else m
                   for m in methods]
    return methods


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        return shards.parse_shard(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _validate_output(folder: str) -> Path:
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output {folder}: exists and is not a folder")
    return path


def _validate(args, methods) -> None:
    """Every option that can be checked before any work (one line naming the option)."""
    from common.api_backend import is_priced

    try:
        models.check_device(args.device)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from None
    except models.ModelLoadError as exc:
        raise UsageError(f"--device: {exc}") from None
    model = args.model or DEFAULT_MODEL
    kind = args.backend
    if kind == "auto":
        kind = "chat" if backends.is_chat_model(model, args.base_url) else "hf"
    if kind == "hf" and (args.max_cost_usd is not None or args.price_per_1k):
        raise UsageError("--max-cost-usd / --price-per-1k apply to API backends (chat, completions) only; "
                         f"{model!r} runs locally")
    if args.max_cost_usd is not None:
        if args.max_cost_usd <= 0:
            raise UsageError(f"--max-cost-usd must be positive, not {args.max_cost_usd}")
        if not is_priced(model, args.price_per_1k):
            raise UsageError(f"--max-cost-usd: no price known for model {model!r}, so the budget could "
                             f"never bind: give --price-per-1k INPUT OUTPUT (USD per 1K tokens)")
    if args.temperature != "default":
        try:
            float(args.temperature)
        except ValueError:
            raise UsageError(f"--temperature must be a number or 'default', "
                             f"not {args.temperature!r}") from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list_methods:
        import pandas as pd
        with pd.option_context("display.max_colwidth", 90, "display.width", 250):
            print(catalogue.table().drop(columns="description").to_string(index=False))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stage = "setting up"
    try:
        methods = _select(args)
        output = _validate_output(args.output)
        _validate(args, methods)
        thread_line = threads.apply(args.threads)
        no_model = args.model is None
        limit = args.limit if args.limit is not None else (DEFAULT_LIMIT if no_model else 0)
        benchmark = args.benchmark or ("mbpp" if no_model else "all")
        tasks = dataset.load(args.labels, prompt_style=args.prompt_style).select(benchmark, limit or None)
        shard = _shard(args.shard)
        if args.engine != "ray" and args.workers is not None:
            raise UsageError("--workers applies to --engine ray only")
        temperature = None if args.temperature == "default" else float(args.temperature)
        options = dict(
            backend=args.backend, base_url=args.base_url, name=args.name,
            device=args.device, dtype=args.dtype, batch_size=args.batch_size,
            cache_path=str(args.cache or _default_cache()),
            temperature=temperature, max_cost_usd=args.max_cost_usd, concurrency=args.concurrency,
            prices_per_1k=tuple(args.price_per_1k) if args.price_per_1k else None,
            extract_code=not args.no_extract_code, tokenizer=args.tokenizer)
        model = args.model or DEFAULT_MODEL
        where = f" (shard {shard[0]} of {shard[1]})" if shard else ""
        if args.engine == "ray":
            from . import ray_engine
            print(f"{len(tasks)} tasks{where} x {len(methods)} methods on {model}, Ray engine, "
                  f"{args.workers or 1} worker(s) -> {paths.shown(output)}; {thread_line}", file=sys.stderr)
            stage = "running"
            summary = ray_engine.run(methods, model, options, tasks, output, workers=args.workers or 1,
                                     progress=not args.no_progress, shard=shard, threads=args.threads)
        else:
            backend = backends.build(model, **options)
            check_compatible(methods, backend)
            print(f"{len(tasks)} tasks{where} x {len(methods)} methods on {backend.name} -> "
                  f"{paths.shown(output)}; {thread_line}", file=sys.stderr)
            stage = "running"
            summary = run(methods, backend, tasks, output, progress=not args.no_progress, shard=shard)
    except UsageError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except (models.ModelLoadError, fetch.DataUnavailable, fetch.ChecksumMismatch, dataset.DatasetError,
            ResultFileError, UnsafePickle, ChatError) as exc:
        return _fail(f"error: {exc}", EXIT_ERROR, exc)
    except ValueError as exc:
        if stage == "running":  # a ValueError inside a method is a bug, not bad usage
            return _bug(exc, stage)
        return _fail(f"error: {exc}", EXIT_USAGE)
    except BudgetExceeded as exc:
        return _fail(f"stopped: {exc}", EXIT_BUDGET, exc)
    except KeyboardInterrupt as exc:
        return _fail("interrupted: every finished task is saved; rerun the same command to resume",
                     EXIT_INTERRUPTED, exc)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, then the traceback to fix it
        return _bug(exc, stage)
    print(summary)
    return 0


def _bug(exc: BaseException, stage: str) -> int:
    notes = " ".join(getattr(exc, "__notes__", None) or [])
    print(f"error: {type(exc).__name__} while {stage}: {exc} {notes}".rstrip(), file=sys.stderr)
    traceback.print_exception(exc)
    return EXIT_ERROR


def main_exit() -> None:
    """Console-script entry point (``attention-alignment ...``)."""
    sys.exit(main())


def _fail(message: str, code: int, exc: BaseException | None = None) -> int:
    notes = getattr(exc, "__notes__", None) or []
    print(" ".join([message, *notes]), file=sys.stderr)
    return code


def _default_cache() -> Path:
    from common.generation_cache import DEFAULT_PATH
    return DEFAULT_PATH
