"""The notebook display of top-k words beside human keywords."""

from __future__ import annotations

import numpy as np

from common import code_units, highlight
from common.dataset import Keyword
from common.results import PromptScores

PROMPT = "Write a function to sort a list of strings."


def example():
    spans = code_units.words(PROMPT)
    scores = np.array([5, 0, 4, 0, 3, 0, 1, 0, 2], dtype=float)  # Write function sort list strings
    keywords = [Keyword("sort", 20, 24, "operator"), Keyword("list of strings", 27, 42, "datatype")]
    return PromptScores(spans, scores), keywords


def test_text_marks_top_k_inside_keyword_brackets():
    ps, kws = example()
    assert highlight.text(PROMPT, ps, kws, k=3) == "«Write» a «function» to [«sort»] a [list of strings]."
    assert highlight.text(PROMPT, ps, kws, k=5) == \
        "«Write» a «function» to [«sort»] a [«list» of «strings»]."
    assert highlight.text(PROMPT, ps, kws, k=3, region=(8, 24)) == "«function» to [«sort»]"


BOX = '<span style="outline: 2px solid #b03030">'


def shade(alpha):
    return f'<span style="background: rgba(230, 120, 20, {0.1 + 0.8 * alpha:.2f})">'


def test_html_escapes_shades_and_marks():
    ps, kws = example()
    out = highlight.to_html(PROMPT.replace("sort", "s<rt"), ps, kws, k=3)
    # every word shaded by score / max score; the top-3 boxed; keywords underlined
    assert f"<u>{BOX}{shade(3 / 5)}s&lt;rt</span></span></u>" in out
    assert f"{BOX}{shade(1.0)}Write</span></span>" in out
    assert f"{shade(2 / 5)}strings</span>" in out and f"{BOX}{shade(2 / 5)}" not in out
    assert out.count(BOX) == 3 + 1  # and once in the legend


def test_overlap_counts_top_k_words_on_keywords():
    ps, kws = example()
    assert highlight.overlap(PROMPT, ps, kws, k=3) == (1, 3)
    assert highlight.overlap(PROMPT, ps, kws, k=5) == (3, 5)


def test_ties_at_the_kth_score_are_said():
    spans = code_units.words(PROMPT)
    ps = PromptScores(spans, np.array([5, 1, 1, 1, 1, 1, 1, 1, 0], dtype=float))
    assert highlight.tie_note(ps, 3) == ("7 words share the 3th score (1): the top-3 takes the first "
                                         "of them in prompt order")
    assert highlight.tie_note(ps, 1) == "" and highlight.tie_note(ps, 9) == ""


def test_show_one_task_of_a_result_file(tmp_path, corrected):
    from common.method import Attribution
    from common.results import AttributionResult

    tasks = corrected.select("mbpp", 2)
    r = AttributionResult.open(tmp_path / "r.jsonl", "reading_last", "m")
    r.append(tasks[0].task_id, tasks[0].prompt, failure="no function body", generation="x = 1")
    spans = code_units.words(tasks[1].prompt)
    r.append(tasks[1].task_id, tasks[1].prompt,
             Attribution(spans, np.arange(len(spans), dtype=float), "def f():\n    return 1 < 2"))
    shown = AttributionResult.load(tmp_path / "r.jsonl").show(k=3)
    plain, rich = str(shown), shown._repr_html_()
    assert plain.startswith(f"{tasks[1].task_id}, reading_last_m: ")
    assert "«" in plain and "[" in plain and "return 1 < 2" in plain
    assert "return 1 &lt; 2" in rich
    failed = AttributionResult.load(tmp_path / "r.jsonl").show(tasks[0].task_id)
    assert "failed: no function body" in str(failed)
    f = AttributionResult.open(tmp_path / "f.jsonl", "coding_last", "m")
    f.append(tasks[0].task_id, tasks[0].prompt, failure="no function body")
    assert "no task scored" in str(AttributionResult.load(tmp_path / "f.jsonl").show())
