"""Code of a saved generation (a continuation of ``task.model_prompt``), cut by the one rule for
where a generated function ends (``common.code_units.function_span``), which the coding methods
use too. The cases are those where the earlier rules disagreed: ``example.function_body_end``
and ``extract.from_completion`` (cut at the first line without indentation) for the coding side
vs. ``extract.is_whole_code`` + ``extract.from_code`` (whole code when the text starts with a
top-level ``def``/``import``/``class``) for the error analysis."""

from __future__ import annotations

import pytest

from analysis import error_analysis as ea
from analysis import generations
from analysis.execution import Sandbox
from analysis.generations import saved_candidate
from common import code_units
from common.dataset import Task
from common.method import Attribution
from common.results import AttributionResult

ADD_PROMPT = 'def add(a, b):\n    """Add."""\n'


CHECK_ADD = "def check(candidate):\n    assert candidate(1, 2) == 3\n"


def humaneval(prompt: str = ADD_PROMPT, entry: str = "add", test: str = CHECK_ADD,
              tid: str = "HumanEval/x") -> Task:
    return Task("humaneval", tid, prompt, (0, len(prompt)), (), "", test + f"\ncheck({entry})\n",
                entry)


def mbpp(entry: str = "add_nums", asserts=("assert add_nums(1, 2) == 3",), tid="mbpp/x") -> Task:
    prompt = "Write a function to add two numbers."
    return Task("mbpp", tid, prompt, (0, len(prompt)), (), "", "\n".join(asserts), entry,
                tuple(asserts))


# -- formerly tests/test_extract.py (from_completion, is_whole_code, from_code) ------------------

def test_completion_is_cut_at_the_end_of_the_function():
    completion = "    return a + b\n\n\ndef unrelated():\n    pass\nprint(add(1, 2))\n"
    c = saved_candidate("toy", humaneval(), completion)
    assert c.kind == "completion" and c.extraction.code == "    return a + b\n"
    assert "cut at the end of the function" in c.note
    # a completion that repeats its prompt
    c = saved_candidate("toy", humaneval(), ADD_PROMPT + completion)
    assert c.extraction.code == "    return a + b\n" and "prompt removed" in c.note
    # the first line may finish the prompt's last line without indentation
    c = saved_candidate("toy", humaneval("def f():", "f"), "\n    return 1\nx = 2\n")
    assert c.kind == "completion" and c.extraction.code == "\n    return 1\n"


def test_whole_code_or_continuation():
    t = humaneval()
    assert saved_candidate("toy", t, "def f(x):\n    return x\n").kind == "code"
    c = saved_candidate("toy", t, "\n# solution\nimport re\ndef f(x):\n    return x\n")
    assert c.kind == "code" and c.extraction.code == "# solution\nimport re\ndef f(x):\n    return x\n"
    assert saved_candidate("toy", t, "\n    return x\n").kind == "completion"
    c = saved_candidate("toy", t, "    if x:\n        return 1\ndef g():\n    pass\n")
    assert c.kind == "completion" and c.extraction.code == "    if x:\n        return 1\n"
    c = saved_candidate("toy", t, "print('demo')\ndef f(x):\n    return x\n\nprint(f(1))\n")
    assert c.extraction.code == "def f(x):\n    return x\n" and "dropped 1" in c.note
    truncated = "def f(x):\n    if x:\n"
    assert saved_candidate("toy", t, truncated).extraction.code == truncated  # the harness reports it


# -- the cases where the old rules disagreed ----------------------------------------------------

def test_mbpp_generation_that_writes_its_own_function():
    # old coding rule: nothing inside "def function():" -> "no function body";
    # old analysis rule: whole code. Both now see the add function.
    t = mbpp()
    gen = "\ndef add(a, b):\n    return a + b\n"
    span = code_units.function_span(t.model_prompt, gen)
    assert (span.kind, gen[span.start:span.end]) == ("definition", "def add(a, b):\n    return a + b")
    c = saved_candidate("toy", t, gen)
    assert c.kind == "code" and c.extraction.code == "def add(a, b):\n    return a + b\n"
    assert c.extraction.alias_of == "add" and "aliased add as add_nums" in c.note


def test_trailing_examples_after_a_body_are_cut():
    gen = ("    return a + b\n\nprint(add(1, 2))\nassert add(2, 2) == 4\n"
           "if __name__ == '__main__':\n    add(0, 0)\n")
    c = saved_candidate("toy", humaneval(), gen)
    assert c.extraction.code == "    return a + b\n"
    assert c.note == (f"function body; cut at the end of the function ({len(gen) - 16} characters "
                      f"after it dropped)")
    # MBPP: the body goes under "def function():", which the tests' name is aliased to
    c = saved_candidate("toy", mbpp(), "\n    return 3\nprint(function())\n")
    assert c.extraction.code == "def function():\n    return 3\n" and c.extraction.alias_of == "function"


def test_nested_function_and_column_0_comment_stay_in_the_body():
    # the old rule cut at "# helper done" (the first line without indentation)
    gen = ("\n    def helper(x):\n        return x + b\n# helper done\n\n    return helper(a)\n"
           "print(helper(1))\n")
    c = saved_candidate("toy", humaneval("def add(a, b):"), gen)
    assert c.extraction.code == ("\n    def helper(x):\n        return x + b\n# helper done\n\n"
                                 "    return helper(a)\n")


def test_a_class_is_a_definition_and_module_code_after_it_is_cut():
    # old analysis rule: whole code, kept the top-level assignment "s = Stack()"
    gen = "\nclass Stack:\n    def __init__(self):\n        self.items = []\n\ns = Stack()\nprint(s)\n"
    c = saved_candidate("toy", mbpp("Stack", ("assert Stack().items == []",)), gen)
    assert c.kind == "code"
    assert c.extraction.code == "class Stack:\n    def __init__(self):\n        self.items = []\n"
    assert c.extraction.alias_of is None  # the tests' name is defined


def test_generation_cut_inside_a_bracket():
    # a continuation line at column 0 inside brackets stays (the old rule cut there)
    c = saved_candidate("toy", humaneval(), "    return sum([a,\nb])\nprint(1)\n")
    assert c.extraction.code == "    return sum([a,\nb])\n"
    # a generation stopped by its budget inside a bracket runs to its end (a syntax error to report)
    c = saved_candidate("toy", humaneval(), "    return sum([a,\n  b")
    assert c.kind == "completion" and c.extraction.code == "    return sum([a,\n  b\n"


def test_no_function_is_an_extraction_error():
    # HumanEval: text after the prompt's function at column 0, no def of its own
    for text in ("print(add(1, 2))\n", "", "\n\n"):
        c = saved_candidate("toy", humaneval(), text)
        assert not c.extraction.found and c.extraction.code == ""
        assert c.note == generations.NO_FUNCTION
    c = saved_candidate("toy", humaneval(), ADD_PROMPT)
    assert not c.extraction.found
    assert c.note == f"prompt removed from the generation; {generations.NO_FUNCTION}"


class NoJobs:
    def run_many(self, jobs):
        assert list(jobs) == []
        return []


def test_execute_reports_a_missing_function_without_running_it():
    c = saved_candidate("toy", mbpp(), "\n\n")
    outcomes, verdicts = ea.execute([c], NoJobs())
    assert [(o.status, o.detail, o.stage) for o in outcomes] == \
        [("error", generations.NO_FUNCTION, "extraction")]
    assert verdicts[0].kind == "load" and not verdicts[0].strict


def test_chat_backend_generations_are_chat_answers(tmp_path, corrected):
    # a chat backend saves the answer's code; as a continuation of MBPP's "def function():"
    # its first line would finish that header
    t = corrected.by_id()["mbpp/602"]
    code = "def first_char(s):\n    return s[0]\nprint(first_char('ab'))\n"
    res = AttributionResult.open(tmp_path / "shap_perturbation_chat.jsonl", "shap_perturbation", "chat",
                                 meta={"backend": {"kind": "chat"}})
    res.append(t.task_id, t.prompt, Attribution([[0, 5]], [1.0], generation=code))
    (c,), _ = generations.saved_candidates(corrected, tmp_path)
    assert c.kind == "chat" and c.extraction.code == "def first_char(s):\n    return s[0]\n"
    assert c.extraction.alias_of == "first_char"
    assert saved_candidate("toy", t, code).kind == "completion"  # without the backend's word


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1, timeout=5.0, memory_mb=512) as sb:
        yield sb


def test_cut_code_runs(sandbox):
    """Each case passes the task's tests; the old rules' code failed to load or missed a name."""
    cands = [saved_candidate("toy", mbpp(), "\ndef add(a, b):\n    return a + b\nprint(add(1, 2))\n"),
             saved_candidate("toy", humaneval(), "    return sum([a,\nb])\nadd(1)\n"),
             saved_candidate("toy", humaneval("def add(a, b):", tid="HumanEval/y"),
                             "\n    def helper(x):\n        return x + b\n# done\n    return helper(a)\n"),
             saved_candidate("toy", mbpp("Stack", ("assert Stack().items == []",), tid="mbpp/y"),
                             "\nclass Stack:\n    def __init__(self):\n        self.items = []\n"
                             "s = Stack(1)\n")]
    assert len({c.key for c in cands}) == 4
    outcomes, _ = ea.execute(cands, sandbox)
    assert [o.status for o in outcomes] == ["passed"] * 4, [o.detail for o in outcomes]
