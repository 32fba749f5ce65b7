"""Show a prompt with a method's top-k words next to the human keywords (notebooks, reports).

Text form: ``«word»`` = in the method's top k, ``[word]`` = a human keyword (both may nest).
HTML form: top-k words highlighted, human keywords underlined.
"""

from __future__ import annotations

import html

import numpy as np

from .results import PromptScores


def segments(prompt: str, top_spans, keywords=(), region: tuple[int, int] | None = None,
             ) -> list[tuple[str, bool, str | None]]:
    """``prompt[region]`` cut at every boundary of a top-k span or keyword:
    ``(text, inside a top-k span, label)`` per piece.

    ``label`` is the label of the first keyword covering the piece ("" for a keyword given as a
    bare span), or None outside every keyword. Adjacent top-k units stay separate pieces, so a
    report can box each unit. Shared by the notebooks' highlighting and the error report.
    """
    a, b = region or (0, len(prompt))
    spans = [(int(s), int(e)) for s, e in top_spans]
    kws = [(kw.start, kw.end, kw.label) if hasattr(kw, "start") else (*kw, "") for kw in keywords]
    cuts = {a, b}
    for s, e, *_ in spans + kws:
        cuts.update(c for c in (s, e) if a <= c <= b)
    cuts = sorted(cuts)
    out = []
    for s, e in zip(cuts, cuts[1:]):
        label = next((name for ks, ke, name in kws if ks <= s and e <= ke), None)
        out.append((prompt[s:e], any(ts <= s and e <= te for ts, te in spans), label))
    return out


def _runs(prompt, ps, keywords, k, region):
    """Maximal runs of characters with the same (top-k, inside a human keyword) state."""
    runs: list[tuple[str, bool, bool]] = []
    for chunk, top, label in segments(prompt, ps.spans[ps.top_k(k)], keywords, region):
        state = (top, label is not None)
        if runs and runs[-1][1:] == state:
            runs[-1] = (runs[-1][0] + chunk, *state)
        else:
            runs.append((chunk, *state))
    return runs


def text(prompt: str, ps: PromptScores, keywords=(), k: int = 10,
         region: tuple[int, int] | None = None) -> str:
    """The (region of the) prompt with top-k words in «» and human keywords in []."""
    out, inside = [], False
    for chunk, top, human in _runs(prompt, ps, keywords, k, region):
        if human != inside:  # brackets around whole keyword runs, top-k marks inside them
            out.append("[" if human else "]")
            inside = human
        out.append(f"«{chunk}»" if top else chunk)
    return "".join(out) + ("]" if inside else "")


def to_html(prompt: str, ps: PromptScores, keywords=(), k: int = 10,
            region: tuple[int, int] | None = None) -> str:
    """HTML: top-k words highlighted (yellow), human keywords underlined."""
    parts = []
    for chunk, top, human in _runs(prompt, ps, keywords, k, region):
        chunk = html.escape(chunk)
        if top:
            chunk = f"<mark>{chunk}</mark>"
        if human:
            chunk = f"<u>{chunk}</u>"
        parts.append(chunk)
    parts = ["".join(parts).replace("</u><u>", "")]
    return (f'<pre style="white-space: pre-wrap">{"".join(parts)}</pre>'
            f"<small><mark>top-{k} words</mark> &nbsp; <u>human keywords</u></small>")


def overlap(prompt: str, ps: PromptScores, keywords, k: int = 10) -> tuple[int, int]:
    """``(top-k words overlapping a human keyword, number of top-k words)``."""
    human = np.zeros(len(prompt), dtype=bool)
    for kw in keywords:
        a, b = (kw.start, kw.end) if hasattr(kw, "start") else kw
        human[a:b] = True
    idx = ps.top_k(k)
    return sum(bool(human[a:b].any()) for a, b in ps.spans[idx]), len(idx)


def example(path, k: int = 10, task_id: str | None = None, labels: str = "corrected",
            max_code: int = 400) -> tuple[str, str]:
    """``(text, html)`` of one scored task of a result file: the region with its top-k words
    next to the human keywords, and the start of the generated code."""
    from . import dataset
    from .results import AttentionResult

    result = AttentionResult.load(path)
    by_id = dataset.load(labels).by_id()
    scored = {ps.task_id: ps for ps in result.prompts.values()}
    if not scored:
        reasons = "; ".join(f"{t}: {r}" for t, r in list(result.failures.items())[:3])
        msg = f"{result.name}: no task scored ({reasons})"
        return msg, html.escape(msg)
    tid = task_id if task_id in scored else next(iter(scored))
    task, ps = by_id[tid], scored[tid]
    hits, n = overlap(task.prompt, ps, task.keywords, k)
    head = f"{tid}, {result.name}: {hits} of the top-{n} words overlap a human keyword"
    code = result.generations.get(tid, "")
    code = code[:max_code] + (" ..." if len(code) > max_code else "")
    plain = (f"{head}\n\n{text(task.prompt, ps, task.keywords, k, task.region)}\n\n"
             f"generated code:\n{code}")
    rich = (f"<b>{html.escape(head)}</b>{to_html(task.prompt, ps, task.keywords, k, task.region)}"
            f"<details><summary>generated code</summary><pre>{html.escape(code)}</pre></details>")
    return plain, rich
