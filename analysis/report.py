"""The error analysis's outputs: CSV tables, a text summary, a self-contained HTML report, figures.

Files (``write_outputs``, ``save_figures``; ``other_data/`` by default):
``execution_outcomes.csv`` (every candidate), ``incorrect_generations.csv`` (one row per
incorrect candidate and method), ``explainable_errors.txt`` (counts, shares, examples, and
miss rates of incorrect vs. correct code as a control), ``error_report.html`` (no scripts, no
links: works offline), ``error_*.png`` (pass rates, patterns, missed keywords).
"""

from __future__ import annotations

import csv
import html
import io
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common import atomic, dataset, highlight, paths

from .patterns import (
    LOGIC_KINDS,
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

# -- tables and text --------------------------------------------------------------------------

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


def portable(text: str) -> str:
    """``text`` with this machine's paths replaced (the interpreter by ``python``, the
    environment by ``<venv>``, the checkout by ``.``, its parent by ``..``, the home folder by
    ``~``), so committed outputs are the same on every machine."""
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
             "failure_kind": a.failure_kind, "detail": portable(a.outcome.detail),
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
                         "suggested_pattern": "" if p is None else p,
                         "suggested_pattern_name": pattern_label(p),
                         "all_patterns": ";".join(map(str, c.patterns())),
                         "top_k_words": "; ".join(cand.task.prompt[s:e] for s, e in c.top_k)})
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
    kinds = Counter((a.candidate.model, a.candidate.task.benchmark, a.failure_kind)
                    for a in analysed if not a.outcome.passed)
    for (model, bench, kind), v in sorted(kinds.items()):
        lines.append(f"  {model:<12} {bench:<10} {kind:<20} {v:>5}")
    lines.append("")
    by_pattern: dict[tuple, list[tuple[Analysed, Coverage]]] = defaultdict(list)
    for a in analysed:
        if not a.outcome.passed:
            for c in a.coverage:
                by_pattern[(a.candidate.model, c.method, c.suggested())].append((a, c))
    for (model, method), counts in sorted(pattern_counts(analysed).items()):
        n = sum(counts.values())
        explained = sum(v for p, v in counts.items() if p not in (0, None))
        lines.append(f"{model} / {method}: {n} incorrect generations; suggested as explained by "
                     f"attention: {explained} ({explained / n:.1%})")
        for p in (1, 2, 3, 4, 0, None):
            v = counts.get(p, 0)
            label = f"pattern {p}" if p else ("not explained" if p == 0 else "no keywords")
            lines.append(f"  {label:<14} {v:>5}  {v / n:6.1%}  {pattern_label(p)}")
            for a, c in by_pattern.get((model, method, p), [])[:examples if v else 0]:
                by = c.missed_by_label()
                missed = ", ".join(f"{lab}: {'/'.join(w)}" for lab, w in by.items() if w) or "-"
                lines.append(f"      e.g. {a.candidate.task.task_id} [{a.outcome.status}] "
                             f"missed {missed}; {portable(a.outcome.detail)[:100]}")
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
    for model in sorted({a.candidate.model for a in analysed}):
        wrong = [a for a in analysed if a.candidate.model == model and not a.outcome.passed]
        parts.append(f"<h2>{html.escape(model)}: {len(wrong)} incorrect generations</h2>")
        for a in wrong:
            cand, o = a.candidate, a.outcome
            sugg = ", ".join(f"{c.method}: {c.suggested() if c.suggested() is not None else '-'}"
                             for c in a.coverage) or "no attention available"
            parts.append(f"<details><summary><b>{html.escape(cand.task.task_id)}</b> "
                         f"[{o.status}: {a.failure_kind}] suggested pattern ({sugg})</summary>")
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



# -- figures ---------------------------------------------------------------------------------

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


