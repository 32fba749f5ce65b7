"""The error analysis's outputs: CSV tables, a text summary, a self-contained HTML report, figures.

Files (``write_outputs``, ``save_figures``; ``other_data/`` by default):
``execution_outcomes.csv`` (every candidate, with its failure kind and pass modes),
``incorrect_generations.csv`` (one row per incorrect candidate and method),
``controlled_rates.csv`` (each rule's rate on incorrect vs. correct code, adjusted, with
interval, p and Holm p, k = 10 and the sensitivity ks: :mod:`analysis.controlled`),
``explainable_errors.txt`` (headline: the controlled comparison; then the taxonomy, pass modes,
the rules with one worked example each, counts), ``error_report.html`` (the same; no scripts,
no links: works offline), ``error_*.png`` (pass rates, patterns, missed keywords).
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common import atomic, dataset, highlight, paths

from .controlled import HEADLINE, PRIMARY_K, SENSITIVITY_K, controlled_rates, verdict_text
from .patterns import (
    BOILERPLATE,
    PATTERN_NAMES,
    PATTERN_OF_LABEL,
    SUGGESTION_NOTE,
    Analysed,
    Coverage,
    miss_rates,
    pass_rates,
    pattern_counts,
    pattern_label,
)
from .taxonomy import KINDS

# -- tables and text --------------------------------------------------------------------------

OUTCOME_FIELDS = ["model", "benchmark", "task_id", "status", "failure_kind", "strict_passed",
                  "adapted_passed", "adaptation", "actual", "expected", "detail", "stage", "kind",
                  "extraction_note", "alias_of"]
CONTROLLED_FIELDS = ["model", "method", "k", "primary", "rule", "n_incorrect", "n_correct",
                     "rate_incorrect", "rate_correct", "difference", "lo", "hi", "p", "p_holm",
                     "significant"]
PROMPT_NOTE = ("The study's MBPP prompts are MBPP's one-sentence description only: no function "
               "name, no signature, no test. Strict pass rates on MBPP therefore measure the "
               "prompt; the adapted and logic-only rates measure the code.")
INCORRECT_FIELDS = ["model", "benchmark", "task_id", "status", "failure_kind", "detail",
                    "extraction_note",
                    "method", "k", "n_keywords", "n_missed", "missed_conditional",
                    "missed_property", "missed_operator", "missed_datatype", "pattern5_mismapped",
                    "suggested_pattern", "suggested_pattern_name", "all_patterns",
                    "pattern_status", "top_k_words"]


def _csv_text(fields: list[str], rows: Iterable[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def portable(text: str) -> str:
    """``text`` with this machine's paths replaced (the interpreter by ``python``, the
    environment by ``<venv>``, the checkout by ``.``, its parent by ``..``, the home folder by
    ``~``, a job's throw-away sandbox folder by ``<sandbox>``), so committed outputs are the same
    on every machine and every run."""
    # the sandbox worker's WORKDIR_PREFIX (it imports nothing of the project), inside its private
    # /tmp and in the host's temp folder (no namespace)
    for tmp in dict.fromkeys(("/tmp", tempfile.gettempdir())):
        text = re.sub(re.escape(f"{tmp}/sandbox-") + r"[A-Za-z0-9_]+", "<sandbox>", text)
    names = [(sys.executable, "python"), (sys.prefix, "<venv>"), (sys.base_prefix, "<python>"),
             (str(paths.ROOT), "."), (str(paths.ROOT.parent), ".."),
             (os.path.expanduser("~"), "~")]
    for path, name in sorted(names, key=lambda p: -len(p[0])):  # longest first: nested paths
        if path and len(path) > 1:
            text = text.replace(path, name)
    return text


def outcome_rows(analysed: list[Analysed]) -> list[dict]:
    return [{"model": a.candidate.model, "benchmark": a.candidate.task.benchmark,
             "task_id": a.candidate.task.task_id, "status": a.outcome.status,
             "failure_kind": a.failure_kind, "strict_passed": int(a.strict),
             "adapted_passed": int(a.outcome.passed),
             "adaptation": a.verdict.adaptation if a.verdict else "",
             "actual": a.verdict.actual if a.verdict else "",
             "expected": a.verdict.expected if a.verdict else "", "detail": portable(a.outcome.detail),
             "stage": a.outcome.stage, "kind": a.candidate.kind,
             "extraction_note": a.candidate.note, "alias_of": a.candidate.extraction.alias_of or ""}
            for a in analysed]


def incorrect_rows(analysed: list[Analysed]) -> list[dict]:
    rows = []
    for a in analysed:
        if a.outcome.passed:
            continue
        cand, o = a.candidate, a.outcome
        base = {"model": cand.model, "benchmark": cand.task.benchmark, "task_id": cand.task.task_id,
                "status": o.status, "failure_kind": a.failure_kind, "detail": portable(o.detail),
                "extraction_note": cand.note,
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
                         "pattern5_mismapped": "; ".join(f"{w} -> {'/'.join(e)}"
                                                         for w, e in c.mismapped.items()),
                         "suggested_pattern": "" if p is None else p,
                         "suggested_pattern_name": pattern_label(p),
                         "all_patterns": ";".join(map(str, c.patterns())),
                         "top_k_words": "; ".join(cand.task.prompt[s:e] for s, e in c.top_k)})
    return rows


RULE_TEXT = {
    1: "a keyword labelled conditional (e.g. 'whether', 'if') lies outside the method's top-k",
    2: "no conditional missed, and a keyword labelled property lies outside the top-k",
    3: "no conditional or property missed, and a keyword labelled operator lies outside the top-k",
    4: "only keywords labelled datatype lie outside the top-k",
    5: "nothing labelled is missed, and a keyword inside the top-k names a code element of the "
       "reference solution (a method, builtin or library name, or literal: 'maximum' -> max, 'sort' "
       "-> sorted, 'uppercase' -> upper, the same number), none of which appears in the generation",
}


PATTERN5_CAVEAT = ("Caveat: the pattern-5 rule reads the generated code, so it is partly a correctness "
                   "signal by construction (code lacking the reference's literal, e.g. 'Found a match!', "
                   "or its builtin usually fails): a difference over the control is no evidence about "
                   "attention by itself.")


def worked_examples(analysed: list[Analysed]) -> list[dict]:
    """One example per pattern rule: the first (by model, task id, method) incorrect generation
    with a logic failure whose suggested pattern it is."""
    found: dict[int, dict] = {}
    for a in sorted(analysed, key=lambda a: (a.candidate.model != "gpt4", a.candidate.model,
                                             a.candidate.task.task_id)):
        if a.group() != "incorrect":
            continue
        for c in a.coverage:
            for p in (1, 2, 3, 4, 5):
                if p in found or c.suggested() != p:
                    continue
                by = c.missed_by_label()
                evidence = ("; ".join(f"{w} -> reference {'/'.join(e)} (absent from the generation)"
                                      for w, e in c.mismapped.items()) if p == 5 else
                            "; ".join(f"missed {lab}: {', '.join(w)}" for lab, w in by.items() if w))
                found[p] = {"pattern": p, "rule": RULE_TEXT[p], "model": a.candidate.model,
                            "method": c.method, "k": c.k, "task_id": a.candidate.task.task_id,
                            "prompt": a.candidate.task.prompt, "evidence": evidence,
                            "top_k_words": "; ".join(a.candidate.task.prompt[x:y] for x, y in c.top_k),
                            "failure": f"{a.failure_kind}: {a.outcome.detail[:200]}",
                            "code": a.candidate.extraction.code, "keywords": c.keywords,
                            "top_k": c.top_k}
    return [found[p] for p in sorted(found)]


def _rate(x) -> str:
    return "-" if x != x else f"{x:.1%}"


def controlled_lines(controlled: list[dict]) -> list[str]:
    lines = [f"HEADLINE: controlled comparison at k = {PRIMARY_K} (fixed in advance)",
             "A rule 'explains' failures only if it fires more often on incorrect code than on correct",
             "code. Difference = Mantel-Haenszel risk difference, incorrect minus correct, stratified",
             "by benchmark x number of keywords; 95% stratified bootstrap interval; two-sided",
             "stratified permutation p; Holm over the rules of one model/method. Incorrect = logic",
             "failures and timeouts; interface, format and load failures are left out.", ""]
    head = [r for r in controlled if r["primary"] and r["rule"] == HEADLINE]
    for r in head:
        lines.append(f"  {r['model']} / {r['method']}: explained by attention on "
                     f"{_rate(r['rate_incorrect'])} of {r['n_incorrect']} incorrect vs. "
                     f"{_rate(r['rate_correct'])} of {r['n_correct']} correct generations")
        lines.append(f"      {verdict_text(r)}")
    lines += ["", f"Every rule at k = {PRIMARY_K}:",
              f"  {'model / method':<32} {'rule':<24} {'incorrect':>16} {'correct':>16}  "
              f"{'diff [95% CI]':<24} {'p':>7} {'Holm p':>7}"]
    for r in controlled:
        if not r["primary"]:
            continue
        ci = ("-" if r["difference"] != r["difference"] else
              f"{100 * r['difference']:+.1f} [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]")
        mark = "" if r["significant"] else "  n.s."
        lines.append(f"  {r['model'] + ' / ' + r['method']:<32} {r['rule']:<24} "
                     f"{_rate(r['rate_incorrect']):>7} of {r['n_incorrect']:<5} "
                     f"{_rate(r['rate_correct']):>7} of {r['n_correct']:<5}  {ci:<24} "
                     f"{r['p']:7.3g} {r['p_holm']:7.3g}{mark}")
    sens = [r for r in controlled if r["rule"] == HEADLINE and not r["primary"]]
    if sens:
        lines += ["", "Sensitivity (other k, same headline rule; not the pre-registered analysis):"]
        for r in sorted(sens, key=lambda r: (r["model"], r["method"], r["k"])):
            lines.append(f"  k = {r['k']:<3} {r['model']} / {r['method']}: {verdict_text(r)}")
    return lines


def taxonomy_lines(analysed: list[Analysed]) -> list[str]:
    lines = ["Failure taxonomy and pass rates three ways", f"  {PROMPT_NOTE}",
             "  strict = passes under its own name and arguments; adapted = after renaming to the",
             "  tests' function and dropping the trailing length argument the MBPP tests pass;",
             "  logic-only = adapted passes + format failures, over generations that could be",
             "  loaded and called (interface and load failures left out).", ""]
    for r in pass_rates(analysed):
        lines.append(f"  {r['model']:<12} {r['benchmark']:<10} strict {r['strict']:>4}/{r['tasks']:<4} "
                     f"{_rate(r['strict_rate']):>6}  adapted {r['adapted']:>4} {_rate(r['adapted_rate']):>6}"
                     f"  logic-only {r['logic_passed']:>4}/{r['logic_tasks']:<4} {_rate(r['logic_rate']):>6}")
        lines.append("      failures: " + ", ".join(f"{kd} {r[kd]}" for kd in KINDS))
    return lines


def explainable_errors_text(analysed: list[Analysed], k: int, examples: int = 3,
                            controlled: list[dict] | None = None) -> str:
    if controlled is None:
        controlled = controlled_rates(analysed, (k,))
    lines = ["Error analysis: do attention rules explain incorrect generations?", "",
             SUGGESTION_NOTE, ""]
    lines += controlled_lines(controlled) + [""]
    lines += taxonomy_lines(analysed) + [""]
    lines += ["Pattern rules, each with one worked example from the data (suggestions, to be "
              "confirmed by a human)",
              f"  Boilerplate words never count as keywords: {', '.join(sorted(BOILERPLATE))}."]
    for ex in worked_examples(analysed):
        lines += [f"  Pattern {ex['pattern']} ({PATTERN_NAMES[ex['pattern']]})",
                  f"    rule: {ex['rule']}",
                  f"    e.g. {ex['model']} {ex['task_id']} ({ex['method']}, top-{ex['k']}): "
                  f"{ex['prompt'][:160]!r}",
                  f"    top-{ex['k']}: {ex['top_k_words']}",
                  f"    evidence: {ex['evidence']}",
                  f"    outcome: {ex['failure']}"]
    lines += [f"  {PATTERN5_CAVEAT}", ""]
    lines.append(f"A keyword is missed when it overlaps none of the method's top-{k} units.")
    lines.append("Suggestion order: conditional (1) > property (2) > operator (3) > datatype (4) > "
                 "pattern-5 rule (5). The shares below are raw (no control): read them with the "
                 "headline above.")
    lines.append("")
    by_pattern: dict[tuple, list[tuple[Analysed, Coverage]]] = defaultdict(list)
    for a in analysed:
        if not a.outcome.passed:
            for c in a.coverage:
                by_pattern[(a.candidate.model, c.method, c.suggested())].append((a, c))
    for (model, method), counts in sorted(pattern_counts(analysed).items()):
        n = sum(counts.values())
        explained = sum(v for p, v in counts.items() if p not in (0, None))
        lines.append(f"{model} / {method}: {n} incorrect generations (every kind); suggested as "
                     f"explained by attention: {explained} ({explained / n:.1%}), raw share")
        for p in (1, 2, 3, 4, 5, 0, None):
            v = counts.get(p, 0)
            label = f"pattern {p}" if p else ("not explained" if p == 0 else "no keywords")
            lines.append(f"  {label:<14} {v:>5}  {v / n:6.1%}  {pattern_label(p)}")
            for a, c in by_pattern.get((model, method, p), [])[:examples if v else 0]:
                by = c.missed_by_label()
                missed = ", ".join(f"{lab}: {'/'.join(w)}" for lab, w in by.items() if w) or "-"
                lines.append(f"      e.g. {a.candidate.task.task_id} [{a.failure_kind}] "
                             f"missed {missed}; {portable(a.outcome.detail)[:100]}")
        lines.append("")
    lines.append("Keywords outside the top-k by label, incorrect vs. correct code (raw shares)")
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
    lines += ["", SUGGESTION_NOTE]
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


def report_html(analysed: list[Analysed], k: int, controlled: list[dict] | None = None) -> str:
    if controlled is None:
        controlled = controlled_rates(analysed, (k,))
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
        f"<h2>Headline: controlled comparison (k = {PRIMARY_K}, fixed in advance)</h2>",
        "<p>A rule explains failures only if it fires more often on incorrect code than on correct "
        "code. Difference: Mantel-Haenszel risk difference (incorrect minus correct) stratified by "
        "benchmark x number of keywords, 95% stratified bootstrap interval, two-sided stratified "
        "permutation p, Holm over the rules of one model/method. Incorrect = logic failures and "
        "timeouts; interface, format and load failures left out.</p>",
        "<table><tr><th>model</th><th>method</th><th>rule</th><th>incorrect</th><th>correct</th>"
        "<th>difference [95% CI]</th><th>p</th><th>Holm p</th><th>verdict</th></tr>"]
    for r in controlled:
        if not r["primary"]:
            continue
        ci = ("-" if r["difference"] != r["difference"] else
              f"{100 * r['difference']:+.1f} [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]")
        bold = ("<b>", "</b>") if r["rule"] == HEADLINE else ("", "")
        parts.append(f"<tr><td>{html.escape(r['model'])}</td><td>{html.escape(r['method'])}</td>"
                     f"<td>{bold[0]}{html.escape(r['rule'])}{bold[1]}</td>"
                     f"<td>{_rate(r['rate_incorrect'])} of {r['n_incorrect']}</td>"
                     f"<td>{_rate(r['rate_correct'])} of {r['n_correct']}</td><td>{ci}</td>"
                     f"<td>{r['p']:.3g}</td><td>{r['p_holm']:.3g}</td>"
                     f"<td>{'significant' if r['significant'] else 'not significant'}</td></tr>")
    parts.append("</table>")
    sens = sorted((r for r in controlled if r["rule"] == HEADLINE and not r["primary"]),
                  key=lambda r: (r["model"], r["method"], r["k"]))
    if sens:
        parts.append("<h3>Sensitivity: other k (headline rule only)</h3><ul>")
        parts += [f"<li>k = {r['k']}, {html.escape(r['model'])} / {html.escape(r['method'])}: "
                  f"{html.escape(verdict_text(r))}</li>" for r in sens]
        parts.append("</ul>")
    parts.append(f"<h2>Failure taxonomy and pass rates three ways</h2><p>{html.escape(PROMPT_NOTE)}</p>"
                 "<table><tr><th>model</th><th>benchmark</th><th>strict</th><th>adapted</th>"
                 "<th>logic-only</th>" + "".join(f"<th>{kd}</th>" for kd in KINDS) + "</tr>")
    for r in pass_rates(analysed):
        parts.append(f"<tr><td>{html.escape(r['model'])}</td><td>{r['benchmark']}</td>"
                     f"<td>{r['strict']}/{r['tasks']} ({_rate(r['strict_rate'])})</td>"
                     f"<td>{r['adapted']}/{r['tasks']} ({_rate(r['adapted_rate'])})</td>"
                     f"<td>{r['logic_passed']}/{r['logic_tasks']} ({_rate(r['logic_rate'])})</td>"
                     + "".join(f"<td>{r[kd]}</td>" for kd in KINDS) + "</tr>")
    parts.append("</table><h2>Pattern rules with one worked example each</h2>"
                 f"<p>{html.escape(PATTERN5_CAVEAT)}</p>"
                 "<p>Boilerplate words never count as keywords: "
                 f"{html.escape(', '.join(sorted(BOILERPLATE)))}.</p>")
    for ex in worked_examples(analysed):
        parts.append(f"<h3>Pattern {ex['pattern']}: {html.escape(PATTERN_NAMES[ex['pattern']])}</h3>"
                     f"<p>Rule: {html.escape(ex['rule'])}.</p><p>Example (a suggestion): "
                     f"{html.escape(ex['model'])} {html.escape(ex['task_id'])}, {html.escape(ex['method'])} "
                     f"top-{ex['k']}; {html.escape(ex['evidence'])}; {html.escape(ex['failure'])}</p>"
                     f"<div class='prompt'>{render_prompt(ex['prompt'], ex['keywords'], ex['top_k'])}</div>"
                     f"<pre>{html.escape(ex['code'])}</pre>")
    parts.append("<h2>Suggested patterns (raw counts of incorrect generations, no control)</h2>"
                 "<table><tr><th>model</th><th>method</th>"
                 + "".join(f"<th>{p}</th>" for p in ("1", "2", "3", "4", "5", "not explained", "no keywords"))
                 + "</tr>")
    for (model, method), c in sorted(pattern_counts(analysed).items()):
        parts.append(f"<tr><td>{html.escape(model)}</td><td>{html.escape(method)}</td>"
                     + "".join(f"<td>{c.get(p, 0)}</td>" for p in (1, 2, 3, 4, 5, 0, None)) + "</tr>")
    parts.append("</table>")
    for model in sorted({a.candidate.model for a in analysed}):
        wrong = [a for a in analysed if a.candidate.model == model and not a.outcome.passed]
        parts.append(f"<h2>{html.escape(model)}: {len(wrong)} incorrect generations</h2>")
        for a in wrong:
            cand, o = a.candidate, a.outcome
            sugg = ", ".join(f"{c.method}: {c.suggested() if c.suggested() is not None else '-'}"
                             for c in a.coverage) or "no attention available"
            parts.append(f"<details><summary><b>{html.escape(cand.task.task_id)}</b> "
                         f"[{o.status}: {a.failure_kind}] suggested pattern ({sugg}; to be confirmed)"
                         f"</summary>")
            parts.append(f"<p>{html.escape(portable(o.detail))}</p>")
            if cand.note:
                parts.append(f"<p><i>{html.escape(cand.note)}</i></p>")
            if a.coverage:
                for c in a.coverage:
                    by = c.missed_by_label()
                    missed = "; ".join(f"{lab}: {', '.join(w)}" for lab, w in by.items() if w) or "none"
                    parts.append(f"<p>{html.escape(c.method)} (top-{c.k}); missed: "
                                 f"{html.escape(missed)}</p>")
                    parts.append(f"<div class='prompt'>{render_prompt(cand.task.prompt, c.keywords, c.top_k)}"
                                 f"</div>")
            else:
                plain = render_prompt(cand.task.prompt, list(cand.task.keywords), np.zeros((0, 2), int))
                parts.append(f"<div class='prompt'>{plain}</div>")
            parts.append(f"<pre>{html.escape(cand.extraction.code)}</pre></details>")
    parts.append(f"<p class='note'>{html.escape(SUGGESTION_NOTE)}</p></body></html>")
    return "\n".join(parts)


def write_outputs(analysed: list[Analysed], out_dir: Path, k: int,
                  controlled: list[dict] | None = None) -> dict[str, Path]:
    """Every file but the figures; ``controlled`` (default: computed at k and the sensitivity ks)."""
    out_dir = Path(out_dir)
    if controlled is None:
        controlled = controlled_rates(analysed, sorted({k, *SENSITIVITY_K}) if k == PRIMARY_K else (k,))
    files = {
        "controlled": (out_dir / "controlled_rates.csv", _csv_text(CONTROLLED_FIELDS, controlled)),
        "outcomes": (out_dir / "execution_outcomes.csv", _csv_text(OUTCOME_FIELDS, outcome_rows(analysed))),
        "incorrect": (out_dir / "incorrect_generations.csv",
                      _csv_text(INCORRECT_FIELDS, incorrect_rows(analysed))),
        "summary": (out_dir / "explainable_errors.txt",
                    explainable_errors_text(analysed, k, controlled=controlled)),
        "report": (out_dir / "error_report.html", report_html(analysed, k, controlled)),
    }
    for path, text in files.values():
        atomic.write_text(path, text)
    return {name: path for name, (path, _) in files.items()}



# -- figures ---------------------------------------------------------------------------------

PATTERN_ORDER = (1, 2, 3, 4, 5, 0)


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
    colours = ["#c44e52", "#55a868", "#dd8452", "#4c72b0", "#8172b3", "#999999"]
    for p, col in zip(PATTERN_ORDER, colours):
        share = np.asarray([100 * counts[k].get(p, 0) / max(1, sum(counts[k].values())) for k in keys])
        ax.barh([f"{m} / {meth}" for m, meth in keys], share, left=left, color=col,
                label=f"{p}: {PATTERN_NAMES[p]}" if p else "not explained")
        left += share
    ax.set_xlabel("share of incorrect generations (%)")
    ax.set_title("Suggested error patterns (suggestions, to be confirmed)")
    ax.legend(fontsize=8, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def fig_missed_keywords(analysed: list[Analysed]):
    plt = _pyplot()
    rows = miss_rates(analysed)
    pairs = sorted({(r["model"], r["method"]) for r in rows})
    # at most four panels a row: more model/method pairs make the figure taller, not wider
    ncols = min(4, max(1, len(pairs)))
    nrows = -(-max(1, len(pairs)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    for ax, (model, method) in zip(axes.flat, pairs):
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
            fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        paths_out[name] = path
    return paths_out


