"""Run the self-attention and gradient methods of a causal LM over the benchmark tasks.

``python -m common.runner --model smollm2 --limit 5`` (``make attention``) writes one resumable
result file per method, ``experiment_result/<method>_<model>.jsonl``, that the analysis
notebooks score beside the published models.

Per task: one greedy generation (budget: reference solution tokens + 20, capped by the
context), shared by every method; then one forward pass for all self-attention methods and
one forward + two backward passes for all gradient methods. Each method's token scores are
spread onto the words of the scored region (:func:`common.align.to_words`); the generated
code is stored with every record.

A rerun skips tasks already in every result file; a killed run loses at most the task in
progress (lines are appended and flushed per task, a torn line is dropped on reopen). A task
that cannot be scored is recorded with its reason: prompt longer than the context, no token
generated, no function body (coding methods only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from self_attention_based.capture import AttentionUnavailable

from . import align, dataset, models, paths, registry
from .example import Example, TaskFailure
from .paths import RESULT_DIR
from .results import ResultFileError, ResultWriter, result_path

DEFAULT_MODEL = "smollm2"
DEFAULT_LIMIT = 5


@dataclass
class RunSummary:
    model: str
    methods: list[str]
    tasks: int = 0
    skipped: int = 0  # already done in every file
    scored: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def tasks_per_second(self) -> float:
        done = self.tasks - self.skipped
        return done / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"{self.model}: {self.tasks - self.skipped} tasks computed, {self.skipped} already "
                 f"done, {self.seconds:.1f} s ({self.tasks_per_second:.2f} tasks/s)"]
        for m in self.methods:
            lines.append(f"  {m:28s} scored {self.scored.get(m, 0):4d}  failed "
                         f"{self.failed.get(m, 0):4d}  -> {paths.shown(self.paths[m])}")
        return "\n".join(lines)



def _meta(lm: models.LoadedModel, method: registry.Method, batch_size: int) -> dict:
    import torch
    import transformers
    return {"source": lm.source, "revision": lm.revision, "dtype": str(lm.dtype).replace("torch.", ""),
            "family": method.family, "stage": method.stage, "variant": method.variant,
            "description": method.description, "decoding": "greedy",
            "budget": f"reference tokens + {models.BUDGET_EXTRA}, capped by the context",
            "units": "words of the scored region (token scores spread by characters)",
            "transformers": transformers.__version__, "torch": torch.__version__}


def _scores_to_words(example: Example, token_scores) -> tuple:
    task = example.task
    return align.to_words(task.prompt, example.offsets, token_scores, task.region)


def run(model: str | models.LoadedModel = DEFAULT_MODEL, limit: int | None = DEFAULT_LIMIT,
        benchmark: str = "all", methods: str | list[str] | None = None, family: str = "all",
        variant: str = "true", device: str = "cpu", dtype: str | None = None, batch_size: int = 1,
        output: str | os.PathLike = RESULT_DIR, tasks: list | None = None, progress: bool = True,
        labels: str = "corrected") -> RunSummary:
    """Compute the selected methods for the first ``limit`` tasks and append them to files."""
    selected = registry.select(methods, family, variant)
    if not selected:
        raise ValueError("no method selected")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, not {batch_size}")
    if tasks is None:
        tasks = dataset.load(labels).select(benchmark, limit)
    lm = model if isinstance(model, models.LoadedModel) else models.load_model(
        model, device=device, dtype=dtype, attn_implementation="eager")
    output = Path(output)
    writers = {}
    for m in selected:
        path = result_path(output, m.name, lm.name)
        meta = _meta(lm, m, batch_size)
        # a file computed in another precision or from another checkpoint is refused
        writers[m.name] = ResultWriter(path, m.name, lm.name, meta,
                                       match_meta=("source", "revision", "dtype"))
    summary = RunSummary(lm.name, [m.name for m in selected],
                         paths={n: w.path for n, w in writers.items()})
    summary.tasks = len(tasks)
    pending = [t for t in tasks if any(t.task_id not in w.done for w in writers.values())]
    summary.skipped = len(tasks) - len(pending)
    bar = _progress(len(pending), lm.name, progress)
    start = time.perf_counter()
    for s in range(0, len(pending), batch_size):
        chunk = pending[s:s + batch_size]
        runnable, budgets = [], []
        for task in chunk:
            try:
                budgets.append(_budget(lm, task))
                runnable.append(task)
            except TaskFailure as exc:
                _fail_all(writers, selected, task, str(exc), None, summary)
                bar.update(1)
        gens = models.generate(lm, [t.model_prompt for t in runnable], budgets, batch_size)
        for task, gen in zip(runnable, gens):
            _score_task(lm, task, gen, selected, writers, summary)
            bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _budget(lm: models.LoadedModel, task) -> int:
    n_prompt = len(models.encode(lm, task.model_prompt))
    budget = models.generation_budget(lm, task.reference)
    ctx = lm.context_length
    if ctx is not None:
        if n_prompt >= ctx:
            raise TaskFailure(f"prompt of {n_prompt} tokens does not fit the model's context of "
                              f"{ctx} tokens")
        budget = min(budget, ctx - n_prompt)
    return budget


def _fail_all(writers, selected, task, reason, generation, summary) -> None:
    for m in selected:
        if task.task_id not in writers[m.name].done:
            writers[m.name].fail(task.task_id, task.prompt, reason, generation=generation)
            summary.failed[m.name] = summary.failed.get(m.name, 0) + 1


def _score_task(lm, task, gen, selected, writers, summary) -> None:
    example = Example(lm, task, gen)
    for m in selected:
        writer = writers[m.name]
        if task.task_id in writer.done:
            continue
        try:
            scores = m.attribute(example)
        except TaskFailure as exc:
            writer.fail(task.task_id, task.prompt, str(exc), generation=gen.text)
            summary.failed[m.name] = summary.failed.get(m.name, 0) + 1
            continue
        spans, word_scores = _scores_to_words(example, scores)
        writer.add(task.task_id, task.prompt, spans, word_scores, generation=gen.text)
        summary.scored[m.name] = summary.scored.get(m.name, 0) + 1


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, name: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    # rate_noinv: always "tasks/s", also when a task takes longer than a second
    return tqdm(total=total, desc=name, unit="task", file=sys.stderr, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.runner", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="methods: " + ", ".join(registry.names()))
    parser.add_argument("--model", default=None,
                        help=f"short name ({', '.join(models.CHECKPOINTS)}), local folder or hub id "
                             f"(default {DEFAULT_MODEL}: offline SmolLM2-135M-Instruct)")
    parser.add_argument("--limit", type=int, default=None,
                        help=f"first N tasks (0: all 1,138; default: all, or {DEFAULT_LIMIT} when no "
                             f"--model is given, so that a bare run finishes in minutes)")
    parser.add_argument("--benchmark", default=None, choices=("all", *dataset.BENCHMARKS),
                        help="default: all, or mbpp when no --model is given (SmolLM2-Instruct answers "
                             "HumanEval prompts with prose, leaving the coding methods no function body)")
    parser.add_argument("--family", default="all", choices=("all", *registry.FAMILIES))
    parser.add_argument("--methods", default=None, help="comma-separated method names (overrides --family)")
    parser.add_argument("--variant", default="true", choices=("true", "layer0", "both"),
                        help="self-attention layers: true layers, the published layer-0 heads, or both")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", default=None, choices=models.DTYPES)
    parser.add_argument("--batch-size", type=int, default=1, help="tasks generated together (left padding)")
    parser.add_argument("--output", default=str(RESULT_DIR), help="result folder (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; 1 is fastest on a busy machine)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    try:
        limit = args.limit if args.limit is not None else (DEFAULT_LIMIT if args.model is None else 0)
        benchmark = args.benchmark or ("mbpp" if args.model is None else "all")
        summary = run(args.model or DEFAULT_MODEL, limit or None, benchmark, args.methods, args.family,
                      args.variant, args.device, args.dtype, args.batch_size, args.output,
                      progress=not args.no_progress)
    except (models.ModelLoadError, AttentionUnavailable, ResultFileError, dataset.DatasetError, KeyError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
