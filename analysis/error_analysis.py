"""Error analysis: run generations against the benchmark tests and explain failures with attention.

Pipeline (``python -m analysis.error_analysis``; ``make errors``):

1. generations: GPT-4's published chat answers (``perturbation_based/shap/original_results.pkl``,
   keyed by prompt text; the four MBPP texts shared by two task ids are run against each id's
   tests) and every generation saved in our own result files (``experiment_result/*.jsonl``);
2. code extraction (``common.extract``) and execution in the sandbox (``common.execution``);
3. for every generation and every attention method available for its model: the human keywords
   inside the scored region that overlap none of the method's top-k units ("missed"), by label;
4. for each incorrect generation a *suggested* pattern of study.md section 6: a missed
   conditional -> 1, else a missed property -> 2, else a missed operator -> 3, else a missed
   datatype -> 4 (the order of the paper's numbering; every applicable pattern is listed too);
   nothing missed -> "not explained by attention". Pattern 5 (wrong mapping of words to code)
   cannot be seen from attention coverage and is never suggested. Keywords with a label outside
   the four types (``--labels published`` keeps a few ``unknown``/``type2`` ones) count as missed
   or attended but suggest no pattern. These are suggestions for a human to confirm, and every
   output says so.

Outputs (``other_data/``): ``execution_outcomes.csv`` (every generation), ``incorrect_generations.csv``
(one row per incorrect generation and method), ``explainable_errors.txt`` (counts, shares,
examples, and miss rates of incorrect vs. correct generations as a control),
``error_report.html`` (self-contained), ``error_*.png`` (pass rates, patterns, missed keywords).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import atomic, dataset, extract, fetch, highlight, paths, safe_pickle
from common.execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, Outcome, Sandbox, job_for
from common.metrics import overlaps_any
from common.results import AttentionResult, discover

GPT4_ANSWERS = "upstream/perturbation_based/shap/original_results.pkl"
GPT4_ATTENTION = {"bert_perturbation": "upstream/experiment_result/bert_perturbation_gpt4.pkl",
                  "shap_perturbation": "upstream/experiment_result/shap_perturbation_gpt4.pkl"}

#: label -> pattern number of study.md section 6, in the order a pattern is suggested.
PATTERN_OF_LABEL = {"conditional": 1, "property": 2, "operator": 3, "datatype": 4}
PATTERN_NAMES = {
    1: "missing attention to critical conditions",
    2: "missing attention to descriptive words of an operation or data object",
    3: "missing attention to operation descriptions",
    4: "missing attention to data types",
    5: "incorrect mapping between NL words and code elements (not detectable from attention)",
    0: "not explained by attention (every labelled keyword is in the top-k)",
}
NO_KEYWORDS = "no labelled keyword in the scored region"
SUGGESTION_NOTE = ("Patterns are SUGGESTIONS derived from which labelled keywords fall outside the "
                   "model's top-k attention; a human must confirm each one against the code.")
DEFAULT_K = 10


class AnswerFileError(ValueError):
    """A generations file is malformed; the message names the file and entry."""


@dataclass
class Generation:
    """One model output for one task, ready to run."""

    model: str
    task: dataset.Task
    raw: str
    kind: str  # "chat", "code" or "completion"
    extraction: extract.Extraction
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.model}::{self.task.task_id}"


@dataclass
class Coverage:
    """Which labelled keywords one method's top-k misses for one prompt."""

    method: str
    k: int
    keywords: list[dataset.Keyword]
    missed: list[dataset.Keyword]
    top_k: np.ndarray  # (n, 2) spans

    def missed_by_label(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {lab: [] for lab in PATTERN_OF_LABEL}
        for kw in self.missed:
            if kw.label in out:
                out[kw.label].append(kw.text)
        return out

    def patterns(self) -> list[int]:
        """Every applicable pattern, in suggestion order (``[0]``: everything attended)."""
        if not self.keywords:
            return []
        labels = {kw.label for kw in self.missed}
        found = [p for lab, p in PATTERN_OF_LABEL.items() if lab in labels]
        return found or [0]

    def suggested(self) -> int | None:
        p = self.patterns()
        return p[0] if p else None


SIGNATURE = re.compile(r"^TypeError: .*(positional argument|required (positional|keyword)|"
                       r"unexpected keyword argument|takes no arguments)")
FAILURE_KINDS = ("wrong result", "exception in tests", "wrong signature", "load error", "timeout")


def failure_kind(outcome: Outcome) -> str:
    """Why a generation is incorrect, coarsely. ``wrong signature``: the tests' call does not fit
    the parameters (common on MBPP, whose prompt names no parameters), so attention to the
    description can hardly explain it."""
    if outcome.status == "timeout":
        return "timeout"
    if outcome.status == "error":
        return "load error"
    if outcome.status == "failed":
        if outcome.detail.startswith("AssertionError"):
            return "wrong result"
        if SIGNATURE.match(outcome.detail) and f"(<{outcome.stage}> line" in outcome.detail:
            return "wrong signature"
        return "exception in tests"
    return ""


@dataclass
class Analysed:
    generation: Generation
    outcome: Outcome
    coverage: list[Coverage] = field(default_factory=list)

    @property
    def failure_kind(self) -> str:
        return failure_kind(self.outcome)


# --------------------------------------------------------------------------------------------
# generations
# --------------------------------------------------------------------------------------------

def gpt4_generations(ds: dataset.Dataset, answers: Mapping) -> list[Generation]:
    """One generation per task id for every published answer (prompt text -> chat answer)."""
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
            out.append(_with_alias(Generation("gpt4", t, answer, "chat", ex, note)))
    return out


def _with_alias(gen: Generation) -> Generation:
    if gen.task.benchmark != "mbpp" or not gen.extraction.found:
        return gen
    alias, note = extract.resolve_name(gen.extraction.code, gen.task.entry_point)
    if alias or note:
        gen.extraction = extract.Extraction(gen.extraction.code, alias,
                                            gen.extraction.note, gen.extraction.found)
        gen.note = "; ".join(x for x in (gen.note, note) if x)
    return gen


def completion_generation(model: str, task: dataset.Task, text: str) -> Generation:
    """A saved generation: a chat-style answer if it has fences; whole code if it starts with a
    top-level ``def``/``import``/``class``; else a continuation of the model prompt (MBPP: of
    ``def function():``), cut at the end of that function."""
    if "```" in text:
        ex = extract.from_chat(text, task.entry_point)
        return _with_alias(Generation(model, task, text, "chat", ex, ex.note))
    body = text[len(task.model_prompt):] if text.startswith(task.model_prompt) else text
    if extract.is_whole_code(body):
        ex = extract.from_code(body)
        return _with_alias(Generation(model, task, text, "code", ex, ex.note))
    ex = extract.from_completion(text, task.model_prompt)
    if task.benchmark == "mbpp":
        head = dataset.MBPP_SUFFIX.lstrip("\n")
        ex = extract.Extraction(head + ex.code, None, ex.note)
    return _with_alias(Generation(model, task, text, "completion", ex, ex.note))


def saved_generations(ds: dataset.Dataset, result_dir: Path) -> tuple[list[Generation], list[str]]:
    """Generations stored in our own result files, one per (model, task); returns warnings too."""
    by_id = ds.by_id()
    seen: dict[tuple[str, str], str] = {}
    gens, warnings = [], []
    for source, _method, model, path in discover(result_dir):
        if source != "computed":
            continue
        res = AttentionResult.load(path)
        for tid, text in res.generations.items():
            task = by_id.get(tid)
            if task is None:
                warnings.append(f"{path}: generation for unknown task {tid!r} skipped")
                continue
            if (model, tid) in seen:
                if seen[(model, tid)] != text:
                    warnings.append(f"{path}: {model} {tid}: generation differs from the one in "
                                    f"an earlier file; the first is used")
                continue
            seen[(model, tid)] = text
            gens.append(completion_generation(model, task, text))
    return gens, warnings


# --------------------------------------------------------------------------------------------
# execution and attention
# --------------------------------------------------------------------------------------------

def execute(gens: list[Generation], sandbox: Sandbox) -> list[Outcome]:
    jobs, outcomes = [], {}
    for g in gens:
        if not g.extraction.found:
            outcomes[g.key] = Outcome(g.key, "error", g.extraction.note, "extraction")
            continue
        jobs.append(job_for(g.task, g.extraction.code, key=g.key, alias_of=g.extraction.alias_of))
    for o in sandbox.run_many(jobs):
        outcomes[o.key] = o
    return [outcomes[g.key] for g in gens]


def coverage(task: dataset.Task, scores, method: str, k: int) -> Coverage:
    """Keywords in the scored region that overlap none of the top-k units."""
    a, b = task.region
    kws = [kw for kw in task.keywords if kw.end > a and kw.start < b]
    top = scores.spans[scores.top_k(k)] if len(scores.spans) else np.zeros((0, 2), np.int64)
    spans = np.asarray([kw.span for kw in kws], dtype=np.int64).reshape(-1, 2)
    hit = overlaps_any(spans, top.reshape(-1, 2))
    return Coverage(method, k, kws, [kw for kw, h in zip(kws, hit) if not h], top.reshape(-1, 2))


def attention_for(model: str, result_dir: Path, mirror: str | None = None,
                  methods: Iterable[str] | None = None) -> dict[str, AttentionResult]:
    """Attention results of ``model``: GPT-4's two published files, or our own result files."""
    wanted = set(methods) if methods else None
    out: dict[str, AttentionResult] = {}
    if model == "gpt4":
        for method, name in GPT4_ATTENTION.items():
            if wanted is None or method in wanted:
                out[method] = AttentionResult.from_published(fetch.path_of(name, mirror))
        return out
    for source, method, m, path in discover(result_dir):
        if source == "computed" and m == model and (wanted is None or method in wanted):
            out[method] = AttentionResult.load(path)
    return out


def analyse(gens: list[Generation], outcomes: list[Outcome],
            attention: Mapping[str, Mapping[str, AttentionResult]], k: int = DEFAULT_K,
            ) -> list[Analysed]:
    """Coverage of every generation (correct ones too: they are the control) by every method."""
    out = []
    for g, o in zip(gens, outcomes):
        a = Analysed(g, o)
        for method, res in sorted(attention.get(g.model, {}).items()):
            scores = res.prompts.get(g.task.prompt)
            if scores is not None:
                a.coverage.append(coverage(g.task, scores, method, k))
        out.append(a)
    return out


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------

def pass_rates(analysed: list[Analysed]) -> list[dict]:
    """Per model and benchmark: counts of each status and the pass rate."""
    groups: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for a in analysed:
        groups[(a.generation.model, a.generation.task.benchmark)][a.outcome.status] += 1
    rows = []
    for (model, bench), c in sorted(groups.items()):
        n = sum(c.values())
        rows.append({"model": model, "benchmark": bench, "tasks": n,
                     **{s: c[s] for s in ("passed", "failed", "timeout", "error")},
                     "pass_rate": c["passed"] / n if n else float("nan")})
    return rows


LOGIC_KINDS = ("wrong result", "exception in tests", "timeout")


def pattern_counts(analysed: list[Analysed], kinds: Iterable[str] | None = None,
                   ) -> dict[tuple[str, str], Counter]:
    """(model, method) -> Counter of suggested pattern (None: no labelled keyword).

    ``kinds``: only incorrect generations of these failure kinds (e.g. ``LOGIC_KINDS``)."""
    kinds = set(kinds) if kinds is not None else None
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for a in analysed:
        if a.outcome.passed or (kinds is not None and a.failure_kind not in kinds):
            continue
        for c in a.coverage:
            out[(a.generation.model, c.method)][c.suggested()] += 1
    return out


def miss_rates(analysed: list[Analysed]) -> list[dict]:
    """Share of labelled keywords outside the top-k, by label, for incorrect vs. correct code."""
    tally: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for a in analysed:
        group = "correct" if a.outcome.passed else "incorrect"
        for c in a.coverage:
            missed = Counter(kw.label for kw in c.missed)
            total = Counter(kw.label for kw in c.keywords)
            for lab in PATTERN_OF_LABEL:
                t = tally[(a.generation.model, c.method, group, lab)]
                t[0] += missed[lab]
                t[1] += total[lab]
    return [{"model": m, "method": meth, "group": g, "label": lab, "missed": x, "keywords": n,
             "miss_rate": x / n if n else float("nan")}
            for (m, meth, g, lab), (x, n) in sorted(tally.items())]


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------

OUTCOME_FIELDS = ["model", "benchmark", "task_id", "status", "failure_kind", "detail", "stage", "kind",
                  "extraction_note", "alias_of"]
INCORRECT_FIELDS = ["model", "benchmark", "task_id", "status", "failure_kind", "detail",
                    "extraction_note",
                    "method", "k", "n_keywords", "n_missed", "missed_conditional",
                    "missed_property", "missed_operator", "missed_datatype",
                    "suggested_pattern", "suggested_pattern_name", "all_patterns",
                    "pattern_status", "top_k_words"]


def _csv_text(fields: list[str], rows: Iterable[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def outcome_rows(analysed: list[Analysed]) -> list[dict]:
    return [{"model": a.generation.model, "benchmark": a.generation.task.benchmark,
             "task_id": a.generation.task.task_id, "status": a.outcome.status,
             "failure_kind": a.failure_kind, "detail": a.outcome.detail,
             "stage": a.outcome.stage, "kind": a.generation.kind,
             "extraction_note": a.generation.note, "alias_of": a.generation.extraction.alias_of or ""}
            for a in analysed]


def _pattern_label(p: int | None) -> str:
    return NO_KEYWORDS if p is None else PATTERN_NAMES[p]


def incorrect_rows(analysed: list[Analysed]) -> list[dict]:
    rows = []
    for a in analysed:
        if a.outcome.passed:
            continue
        g, o = a.generation, a.outcome
        base = {"model": g.model, "benchmark": g.task.benchmark, "task_id": g.task.task_id,
                "status": o.status, "failure_kind": a.failure_kind, "detail": o.detail,
                "extraction_note": g.note,
                "pattern_status": "suggestion, to be confirmed by a human"}
        if not a.coverage:
            rows.append({**base, "method": "", "suggested_pattern": "",
                         "suggested_pattern_name": "no attention available for this model/task"})
            continue
        for c in a.coverage:
            by = c.missed_by_label()
            p = c.suggested()
            rows.append({**base, "method": c.method, "k": c.k, "n_keywords": len(c.keywords),
                         "n_missed": len(c.missed),
                         **{f"missed_{lab}": "; ".join(by[lab]) for lab in PATTERN_OF_LABEL},
                         "suggested_pattern": "" if p is None else p,
                         "suggested_pattern_name": _pattern_label(p),
                         "all_patterns": ";".join(map(str, c.patterns())),
                         "top_k_words": "; ".join(g.task.prompt[s:e] for s, e in c.top_k)})
    return rows


def explainable_errors_text(analysed: list[Analysed], k: int, examples: int = 3) -> str:
    lines = ["Error analysis: incorrect generations explained by attention", "",
             SUGGESTION_NOTE,
             f"A keyword is missed when it overlaps none of the method's top-{k} units.",
             "Suggestion order: conditional (1) > property (2) > operator (3) > datatype (4); "
             "pattern 5 is never suggested.", ""]
    lines.append("Pass rates")
    for r in pass_rates(analysed):
        lines.append(f"  {r['model']:<12} {r['benchmark']:<10} {r['passed']:>4}/{r['tasks']:<4} "
                     f"= {r['pass_rate']:6.1%}   failed {r['failed']}, timeout {r['timeout']}, "
                     f"error {r['error']}")
    lines.append("")
    lines.append("Why incorrect (failure kinds)")
    kinds = Counter((a.generation.model, a.generation.task.benchmark, a.failure_kind)
                    for a in analysed if not a.outcome.passed)
    for (model, bench, kind), v in sorted(kinds.items()):
        lines.append(f"  {model:<12} {bench:<10} {kind:<20} {v:>5}")
    lines.append("")
    by_pattern: dict[tuple, list[tuple[Analysed, Coverage]]] = defaultdict(list)
    for a in analysed:
        if not a.outcome.passed:
            for c in a.coverage:
                by_pattern[(a.generation.model, c.method, c.suggested())].append((a, c))
    for (model, method), counts in sorted(pattern_counts(analysed).items()):
        n = sum(counts.values())
        explained = sum(v for p, v in counts.items() if p not in (0, None))
        lines.append(f"{model} / {method}: {n} incorrect generations; suggested as explained by "
                     f"attention: {explained} ({explained / n:.1%})")
        for p in (1, 2, 3, 4, 0, None):
            v = counts.get(p, 0)
            label = f"pattern {p}" if p else ("not explained" if p == 0 else "no keywords")
            lines.append(f"  {label:<14} {v:>5}  {v / n:6.1%}  {_pattern_label(p)}")
            for a, c in by_pattern.get((model, method, p), [])[:examples if v else 0]:
                by = c.missed_by_label()
                missed = ", ".join(f"{lab}: {'/'.join(w)}" for lab, w in by.items() if w) or "-"
                lines.append(f"      e.g. {a.generation.task.task_id} [{a.outcome.status}] "
                             f"missed {missed}; {a.outcome.detail[:100]}")
        lines.append("")
    lines.append(f"Only incorrect results, exceptions and timeouts ({', '.join(LOGIC_KINDS)}); "
                 f"wrong signatures and code that did not load are left out:")
    for (model, method), counts in sorted(pattern_counts(analysed, LOGIC_KINDS).items()):
        n = sum(counts.values())
        cells = ", ".join(f"{'p' + str(p) if p else ('not explained' if p == 0 else 'no keywords')} "
                          f"{counts.get(p, 0)} ({counts.get(p, 0) / n:.1%})" for p in (1, 2, 3, 4, 0))
        lines.append(f"  {model} / {method}: {n} generations: {cells}")
    lines.append("")
    lines.append("Control: share of labelled keywords outside the top-k, incorrect vs. correct code")
    rates = miss_rates(analysed)
    keyed = {(r["model"], r["method"], r["group"], r["label"]): r for r in rates}
    for model, method in sorted({(r["model"], r["method"]) for r in rates}):
        lines.append(f"  {model} / {method}")
        for lab in PATTERN_OF_LABEL:
            parts = []
            for group in ("incorrect", "correct"):
                r = keyed.get((model, method, group, lab))
                parts.append(f"{group} {r['miss_rate']:.1%} of {r['keywords']}" if r and r["keywords"]
                             else f"{group} -")
            lines.append(f"    {lab:<12} " + "   ".join(parts))
    return "\n".join(lines) + "\n"


LABEL_COLOURS = {"datatype": "#cfe8ff", "operator": "#ffe0b3", "property": "#d9f2d0",
                 "conditional": "#f8c8dc"}


def render_prompt(prompt: str, keywords: list[dataset.Keyword], top_k: np.ndarray) -> str:
    """The prompt as HTML: keywords on a background coloured by label, top-k units boxed."""
    out = []
    for chunk, top, label in highlight.segments(prompt, top_k, keywords):
        text = html.escape(chunk)
        classes = ([f"kw-{label}"] if label else []) + (["top"] if top else [])
        out.append(f'<span class="{" ".join(classes)}">{text}</span>' if classes else text)
    return "".join(out)


def report_html(analysed: list[Analysed], k: int) -> str:
    style = "\n".join(f".kw-{lab} {{ background: {col}; }}" for lab, col in LABEL_COLOURS.items())
    legend = " ".join(f'<span class="kw-{lab}">{lab}</span>' for lab in LABEL_COLOURS)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Error analysis: incorrect generations and attention</title><style>",
        "body { font-family: sans-serif; max-width: 1100px; margin: 1em auto; }",
        "pre { background: #f6f6f6; padding: .5em; overflow-x: auto; white-space: pre-wrap; }",
        ".prompt { font-family: monospace; white-space: pre-wrap; border: 1px solid #ddd; padding: .5em; }",
        ".top { outline: 2px solid #c00; font-weight: bold; }",
        ".note { background: #fff6d5; border: 1px solid #e0c060; padding: .5em; }",
        "table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; }",
        style, "</style></head><body>",
        "<h1>Error analysis: incorrect generations and attention</h1>",
        f"<p class='note'>{html.escape(SUGGESTION_NOTE)}</p>",
        f"<p>Legend: {legend}; <span class='top'>boxed</span> = in the method's top-{k}.</p>",
        "<p>Patterns: " + "; ".join(f"{p if p else 'not explained'}: {html.escape(PATTERN_NAMES[p])}"
                                    for p in (1, 2, 3, 4, 5, 0)) + ".</p>",
        "<h2>Pass rates</h2><table><tr><th>model</th><th>benchmark</th><th>passed</th>"
        "<th>failed</th><th>timeout</th><th>error</th><th>pass rate</th></tr>"]
    for r in pass_rates(analysed):
        parts.append(f"<tr><td>{html.escape(r['model'])}</td><td>{r['benchmark']}</td>"
                     f"<td>{r['passed']}/{r['tasks']}</td><td>{r['failed']}</td><td>{r['timeout']}"
                     f"</td><td>{r['error']}</td><td>{r['pass_rate']:.1%}</td></tr>")
    parts.append("</table><h2>Suggested patterns</h2><table><tr><th>model</th><th>method</th>"
                 + "".join(f"<th>{p}</th>" for p in ("1", "2", "3", "4", "not explained", "no keywords"))
                 + "</tr>")
    for (model, method), c in sorted(pattern_counts(analysed).items()):
        parts.append(f"<tr><td>{html.escape(model)}</td><td>{html.escape(method)}</td>"
                     + "".join(f"<td>{c.get(p, 0)}</td>" for p in (1, 2, 3, 4, 0, None)) + "</tr>")
    parts.append("</table>")
    for model in sorted({a.generation.model for a in analysed}):
        wrong = [a for a in analysed if a.generation.model == model and not a.outcome.passed]
        parts.append(f"<h2>{html.escape(model)}: {len(wrong)} incorrect generations</h2>")
        for a in wrong:
            g, o = a.generation, a.outcome
            sugg = ", ".join(f"{c.method}: {c.suggested() if c.suggested() is not None else '-'}"
                             for c in a.coverage) or "no attention available"
            parts.append(f"<details><summary><b>{html.escape(g.task.task_id)}</b> "
                         f"[{o.status}: {a.failure_kind}] suggested pattern ({sugg})</summary>")
            parts.append(f"<p>{html.escape(o.detail)}</p>")
            if g.note:
                parts.append(f"<p><i>{html.escape(g.note)}</i></p>")
            if a.coverage:
                for c in a.coverage:
                    by = c.missed_by_label()
                    missed = "; ".join(f"{lab}: {', '.join(w)}" for lab, w in by.items() if w) or "none"
                    parts.append(f"<p>{html.escape(c.method)} (top-{c.k}); missed: "
                                 f"{html.escape(missed)}</p>")
                    parts.append(f"<div class='prompt'>{render_prompt(g.task.prompt, c.keywords, c.top_k)}"
                                 f"</div>")
            else:
                plain = render_prompt(g.task.prompt, list(g.task.keywords), np.zeros((0, 2), int))
                parts.append(f"<div class='prompt'>{plain}</div>")
            parts.append(f"<pre>{html.escape(g.extraction.code)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_outputs(analysed: list[Analysed], out_dir: Path, k: int) -> dict[str, Path]:
    out_dir = Path(out_dir)
    files = {
        "outcomes": (out_dir / "execution_outcomes.csv", _csv_text(OUTCOME_FIELDS, outcome_rows(analysed))),
        "incorrect": (out_dir / "incorrect_generations.csv",
                      _csv_text(INCORRECT_FIELDS, incorrect_rows(analysed))),
        "summary": (out_dir / "explainable_errors.txt", explainable_errors_text(analysed, k)),
        "report": (out_dir / "error_report.html", report_html(analysed, k)),
    }
    for path, text in files.values():
        atomic.write_text(path, text)
    return {name: path for name, (path, _) in files.items()}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------

PATTERN_ORDER = (1, 2, 3, 4, 0)


def _pyplot():
    import matplotlib
    if "inline" not in matplotlib.get_backend():  # headless unless a notebook shows figures
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def fig_pass_rates(analysed: list[Analysed]):
    plt = _pyplot()
    rates = pass_rates(analysed)
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"{r['model']}\n{r['benchmark']}" for r in rates]
    ax.bar(labels, [100 * r["pass_rate"] for r in rates], color="#4c72b0")
    for i, r in enumerate(rates):
        ax.text(i, 100 * r["pass_rate"] + 1, f"{r['passed']}/{r['tasks']}", ha="center")
    ax.set_ylabel("pass rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Generations passing the benchmark tests")
    fig.tight_layout()
    return fig


def fig_patterns(analysed: list[Analysed], kinds: Iterable[str] | None = None):
    plt = _pyplot()
    counts = pattern_counts(analysed, kinds)
    keys = sorted(counts)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.9 * max(1, len(keys))))
    left = np.zeros(len(keys))
    colours = ["#c44e52", "#55a868", "#dd8452", "#4c72b0", "#999999"]
    for p, col in zip(PATTERN_ORDER, colours):
        share = np.asarray([100 * counts[k].get(p, 0) / max(1, sum(counts[k].values())) for k in keys])
        ax.barh([f"{m} / {meth}" for m, meth in keys], share, left=left, color=col,
                label=f"pattern {p}" if p else "not explained")
        left += share
    ax.set_xlabel("share of incorrect generations (%)")
    ax.set_title("Suggested error patterns (suggestions, to be confirmed)")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    return fig


def fig_missed_keywords(analysed: list[Analysed]):
    plt = _pyplot()
    rows = miss_rates(analysed)
    pairs = sorted({(r["model"], r["method"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(4 * max(1, len(pairs)), 3.2),
                             squeeze=False)
    for ax, (model, method) in zip(axes[0], pairs):
        x = np.arange(len(PATTERN_OF_LABEL))
        for j, group in enumerate(("incorrect", "correct")):
            vals = [next((100 * r["miss_rate"] for r in rows if (r["model"], r["method"], r["group"],
                          r["label"]) == (model, method, group, lab)), np.nan) for lab in PATTERN_OF_LABEL]
            ax.bar(x + 0.4 * j - 0.2, vals, width=0.4, label=f"{group} code",
                   color="#c44e52" if group == "incorrect" else "#8c8c8c")
        ax.set_xticks(x, list(PATTERN_OF_LABEL), fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"{model} / {method}", fontsize=9)
        ax.set_ylabel("keywords outside top-k (%)")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Which kinds of keywords the attention misses")
    fig.tight_layout()
    return fig


def figures(analysed: list[Analysed]) -> dict[str, object]:
    """Pass rates, suggested patterns, keyword miss rates by label (matplotlib figures)."""
    return {"pass_rates": fig_pass_rates(analysed), "patterns": fig_patterns(analysed),
            "missed_keywords": fig_missed_keywords(analysed)}


def save_figures(analysed: list[Analysed], out_dir: Path) -> dict[str, Path]:
    import matplotlib.pyplot as plt
    paths_out = {}
    for name, fig in figures(analysed).items():
        path = Path(out_dir) / f"error_{name}.png"
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths_out[name] = path
    return paths_out


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def run(models: list[str] | None = None, k: int = DEFAULT_K, out_dir: Path = paths.OTHER_DATA_DIR,
        result_dir: Path = paths.RESULT_DIR, mirror: str | None = None, labels: str = "corrected",
        timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
        workers: int | None = None, limit: int | None = None, write: bool = True,
        log=print) -> tuple[list[Analysed], dict[str, Path]]:
    """The whole pipeline; ``models`` None = GPT-4 plus every model with saved generations."""
    ds = dataset.load(labels, mirror)
    gens: list[Generation] = []
    if models is None or "gpt4" in models:
        answers = safe_pickle.load(fetch.path_of(GPT4_ANSWERS, mirror))
        if not isinstance(answers, dict):
            raise AnswerFileError(f"{GPT4_ANSWERS}: expected a dict prompt text -> answer")
        gens += gpt4_generations(ds, answers)
    saved, warnings = saved_generations(ds, Path(result_dir))
    for w in warnings:
        log(f"warning: {w}")
    gens += [g for g in saved if models is None or g.model in models]
    if limit is not None:
        per_model: Counter = Counter()
        kept = []
        for g in gens:
            per_model[g.model] += 1
            if per_model[g.model] <= limit:
                kept.append(g)
        gens = kept
    if not gens:
        raise SystemExit("no generations to analyse (GPT-4 not selected and no saved generations)")
    log(f"running {len(gens)} generations of {', '.join(sorted({g.model for g in gens}))}")
    with Sandbox(workers=workers or Sandbox.workers, timeout=timeout, memory_mb=memory_mb) as sb:
        missing = [name for name, ok in sb.layers().items() if not ok]
        if missing:
            log(f"warning: sandbox without {', '.join(missing)} on this machine (see the "
                f"execution module's safety notes); in-process guards and limits still apply")
        outcomes = execute(gens, sb)
    attention = {m: attention_for(m, Path(result_dir), mirror) for m in {g.model for g in gens}}
    analysed = analyse(gens, outcomes, attention, k)
    files = {}
    if write:
        files = write_outputs(analysed, Path(out_dir), k)
        files.update(save_figures(analysed, Path(out_dir)))
    for r in pass_rates(analysed):
        log(f"{r['model']} {r['benchmark']}: {r['passed']}/{r['tasks']} passed ({r['pass_rate']:.1%})")
    for path in files.values():
        log(f"wrote {path}")
    return analysed, files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.error_analysis",
        description="Run generations against HumanEval/MBPP tests in a sandbox and suggest which "
                    "error pattern (study.md section 6) the model's attention points to.")
    parser.add_argument("--models", nargs="*", help="models to analyse (default: gpt4 and every "
                        "model with saved generations)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="top-k units (default %(default)s)")
    parser.add_argument("--out", type=Path, default=paths.OTHER_DATA_DIR, help="output folder")
    parser.add_argument("--result-dir", type=Path, default=paths.RESULT_DIR,
                        help="folder of our own result files (default %(default)s)")
    parser.add_argument("--mirror", help="data mirror (default: $DATA_MIRROR or download)")
    parser.add_argument("--labels", choices=dataset.LABEL_VERSIONS, default="corrected")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per task")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="address space per task")
    parser.add_argument("--workers", type=int, help="parallel sandboxes (default: CPUs, at most 4)")
    parser.add_argument("--limit", type=int, help="at most this many generations per model (quick runs)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    try:
        run(args.models or None, args.k, args.out, args.result_dir, args.mirror, args.labels,
            args.timeout, args.memory_mb, args.workers, args.limit)
    except (AnswerFileError, fetch.DataUnavailable, fetch.ChecksumMismatch,
            dataset.DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
