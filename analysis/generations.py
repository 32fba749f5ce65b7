"""The error analysis's input: the generations to run, their code, and the attributions to read.

Candidates (one model output for one task, ready to run):

* GPT-4's published chat answers (``perturbation_based/shap/original_results.pkl``, keyed by
  prompt text): code by :func:`common.extract.from_chat`. The four MBPP texts shared by two
  task ids are run against each id's tests.
* Every generation saved in our own result files (``experiment_result/*.jsonl``), one per
  (model, task): see :func:`saved_candidate` for how its code is cut.

MBPP prompts name no function, so a candidate whose code defines another name than the tests
call is aliased (:func:`common.extract.resolve_name`; said in its note).

Attributions: GPT-4's two published files (BERT masking, SHAP) or our own result files of the
model (:func:`attributions_for`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from common import code_units, dataset, extract, fetch
from common.results import AttributionResult, discover

GPT4_ANSWERS = "upstream/perturbation_based/shap/original_results.pkl"
GPT4_ATTRIBUTIONS = {"bert_perturbation": "upstream/experiment_result/bert_perturbation_gpt4.pkl",
                     "shap_perturbation": "upstream/experiment_result/shap_perturbation_gpt4.pkl"}
NO_FUNCTION = "no function in the generation"


class AnswerFileError(ValueError):
    """A generations file is malformed; the message names the file and entry."""


@dataclass
class Candidate:
    """One model output for one task, ready to run.

    ``kind``: ``chat`` (a chat answer: code chosen from its blocks), ``code`` (a saved
    generation that writes its own top-level function, run as whole code) or ``completion``
    (a saved generation that continues the body of the prompt's function).
    """

    model: str
    task: dataset.Task
    raw: str
    kind: str
    extraction: extract.Extraction
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.model}::{self.task.task_id}"


def _with_alias(cand: Candidate) -> Candidate:
    if cand.task.benchmark != "mbpp" or not cand.extraction.found:
        return cand
    alias, note = extract.resolve_name(cand.extraction.code, cand.task.entry_point)
    if alias or note:
        cand.extraction = extract.Extraction(cand.extraction.code, alias,
                                             cand.extraction.note, cand.extraction.found)
        cand.note = "; ".join(x for x in (cand.note, note) if x)
    return cand


def gpt4_candidates(ds: dataset.Dataset, answers: Mapping) -> list[Candidate]:
    """One candidate per task id for every published answer (prompt text -> chat answer)."""
    by_prompt: dict[str, list[dataset.Task]] = defaultdict(list)
    for t in ds.tasks:
        by_prompt[t.prompt].append(t)
    out = []
    for n, (prompt, answer) in enumerate(answers.items(), 1):
        if not isinstance(prompt, str) or not isinstance(answer, str):
            raise AnswerFileError(f"{GPT4_ANSWERS}, entry {n}: expected prompt text -> answer text")
        tasks = by_prompt.get(prompt)
        if not tasks:
            raise AnswerFileError(f"{GPT4_ANSWERS}, entry {n}: prompt {prompt[:50]!r} is no "
                                  f"labelled task")
        for t in tasks:
            ex = extract.from_chat(answer, t.entry_point)
            note = ex.note
            if len(tasks) > 1:
                note += f"; prompt text shared by {', '.join(x.task_id for x in tasks)}: run " \
                        f"against each one's tests"
            out.append(_with_alias(Candidate("gpt4", t, answer, "chat", ex, note)))
    return out


_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def saved_candidate(model: str, task: dataset.Task, text: str, chat: bool = False) -> Candidate:
    """A generation saved in one of our result files.

    A chat backend's output (``chat``: its code or its whole answer) or any text with code
    fences is a chat answer (:func:`common.extract.from_chat`). Anything else continues
    ``task.model_prompt`` (a repeated prompt is removed first) and is cut by the one rule for
    where a generated function ends, :func:`common.code_units.function_span`:

    * ``body`` (the generation fills the prompt's open ``def``): the generation up to the end
      of that block, after the MBPP header of the task's prompt style (``def function():`` or
      the function's own signature; HumanEval's job puts the prompt in front);
    * ``definition`` (it writes its own top-level ``def``/``class``): the generation up to the
      end of that definition (imports before it kept), top-level example statements dropped,
      run as whole code;
    * no function: an extraction error, "no function in the generation".
    """
    if chat or "```" in text:
        ex = extract.from_chat(text, task.entry_point)
        return _with_alias(Candidate(model, task, text, "chat", ex, ex.note))
    notes = []
    generation = text
    if text.startswith(task.model_prompt):
        generation = text[len(task.model_prompt):]
        notes.append("prompt removed from the generation")
    span = code_units.function_span(task.model_prompt, generation)
    if span is None:
        ex = extract.Extraction("", None, "; ".join(notes + [NO_FUNCTION]), found=False)
        return Candidate(model, task, text, "completion", ex, ex.note)
    if generation[span.end:].strip():
        notes.append(f"cut at the end of the function ({len(generation) - span.end} characters "
                     f"after it dropped)")
    kept = generation[:span.end] + "\n"
    if span.kind == "body":
        # the MBPP header the model continued (``def function():`` or the task's own signature)
        head = task.model_prompt[len(task.prompt):].lstrip("\n") if task.benchmark == "mbpp" else ""
        ex = extract.Extraction(head + kept, None, "; ".join(["function body"] + notes))
        return _with_alias(Candidate(model, task, text, "completion", ex, ex.note))
    code, dropped = extract.strip_examples(_LEADING_BLANK_LINES.sub("", kept))
    if dropped:
        notes.append(f"dropped {dropped} top-level example statement(s)")
    ex = extract.Extraction(code, None, "; ".join(["whole code"] + notes))
    return _with_alias(Candidate(model, task, text, "code", ex, ex.note))


def _is_chat(result: AttributionResult) -> bool:
    backend = result.meta.get("backend")
    return isinstance(backend, dict) and backend.get("kind") == "chat"


def saved_candidates(ds: dataset.Dataset, result_dir: Path) -> tuple[list[Candidate], list[str]]:
    """Generations stored in our own result files, one per (model, task); returns warnings too."""
    by_id = ds.by_id()
    seen: dict[tuple[str, str], str] = {}
    cands, warnings = [], []
    for source, _method, model, path in discover(result_dir):
        if source != "computed":
            continue
        res = AttributionResult.load(path)
        style = res.meta.get("prompt_style", "study") if isinstance(res.meta, dict) else "study"
        if style not in dataset.PROMPT_STYLES:
            warnings.append(f"{path}: unknown prompt_style {style!r}; file skipped")
            continue
        for tid, text in res.generations.items():
            task = by_id.get(tid)
            if task is None:
                warnings.append(f"{path}: generation for unknown task {tid!r} skipped")
                continue
            task = task.with_prompt_style(style)  # the prompt the model continued
            if (model, tid) in seen:
                if seen[(model, tid)] != text:
                    warnings.append(f"{path}: {model} {tid}: generation differs from the one in "
                                    f"an earlier file; the first is used")
                continue
            seen[(model, tid)] = text
            cands.append(saved_candidate(model, task, text, chat=_is_chat(res)))
    return cands, warnings


def attributions_for(model: str, result_dir: Path, mirror: str | None = None,
                     methods: Iterable[str] | None = None) -> dict[str, AttributionResult]:
    """Attributions of ``model`` by method: GPT-4's two published files, or our own result files."""
    wanted = set(methods) if methods else None
    out: dict[str, AttributionResult] = {}
    if model == "gpt4":
        for method, name in GPT4_ATTRIBUTIONS.items():
            if wanted is None or method in wanted:
                out[method] = AttributionResult.load(fetch.path_of(name, mirror))
        return out
    for source, method, m, path in discover(result_dir):
        if source == "computed" and m == model and (wanted is None or method in wanted):
            out[method] = AttributionResult.load(path)
    return out
