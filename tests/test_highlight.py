"""The notebook display of top-k words beside human keywords."""

from __future__ import annotations

import numpy as np

from common import align, highlight
from common.dataset import Keyword
from common.results import PromptScores

PROMPT = "Write a function to sort a list of strings."


def example():
    spans = align.words(PROMPT)
    scores = np.array([5, 0, 4, 0, 3, 0, 1, 0, 2], dtype=float)  # Write function sort list strings
    keywords = [Keyword("sort", 20, 24, "operator"), Keyword("list of strings", 27, 42, "datatype")]
    return PromptScores(spans, scores), keywords


def test_text_marks_top_k_inside_keyword_brackets():
    ps, kws = example()
    assert highlight.text(PROMPT, ps, kws, k=3) == "«Write» a «function» to [«sort»] a [list of strings]."
    assert highlight.text(PROMPT, ps, kws, k=5) == \
        "«Write» a «function» to [«sort»] a [«list» of «strings»]."
    assert highlight.text(PROMPT, ps, kws, k=3, region=(8, 24)) == "«function» to [«sort»]"


def test_html_escapes_and_marks():
    ps, kws = example()
    out = highlight.to_html(PROMPT.replace("sort", "s<rt"), ps, kws, k=3)
    assert "<u><mark>s&lt;rt</mark></u>" in out and "<mark>Write</mark>" in out


def test_overlap_counts_top_k_words_on_keywords():
    ps, kws = example()
    assert highlight.overlap(PROMPT, ps, kws, k=3) == (1, 3)
    assert highlight.overlap(PROMPT, ps, kws, k=5) == (3, 5)


def test_example_from_a_result_file(tmp_path, corrected):
    from common.results import ResultWriter

    tasks = corrected.select("mbpp", 2)
    w = ResultWriter(tmp_path / "r.jsonl", "reading_last", "m")
    w.fail(tasks[0].task_id, tasks[0].prompt, "no function body", generation="x = 1")
    spans = align.words(tasks[1].prompt)
    w.add(tasks[1].task_id, tasks[1].prompt, spans, np.arange(len(spans), dtype=float),
          generation="def f():\n    return 1 < 2")
    plain, rich = highlight.example(tmp_path / "r.jsonl", k=3)
    assert plain.startswith(f"{tasks[1].task_id}, reading_last_m: ")
    assert "«" in plain and "[" in plain and "return 1 < 2" in plain
    assert "return 1 &lt; 2" in rich
    w2 = ResultWriter(tmp_path / "f.jsonl", "coding_last", "m")
    w2.fail(tasks[0].task_id, tasks[0].prompt, "no function body")
    assert "no task scored" in highlight.example(tmp_path / "f.jsonl")[0]
