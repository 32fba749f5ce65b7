"""The shared units: words of a prompt, the generated function's span (one rule for the coding
position and the error analysis), and the reading/coding query rows of both definitions."""

from __future__ import annotations

import numpy as np
import pytest

from common.code_units import FunctionSpan, function_span, last_token_of, query_rows, words
from common.method import TaskFailure

HE = ('from typing import List\n\n\ndef sort_list(numbers: List[int]) -> List[int]:\n'
      '    """ Sort the given list of integers in ascending order.\n    """\n')
MBPP = "Write a function to add.\ndef function():"


@pytest.mark.parametrize("prompt,gen,body", [
    (HE, "    return sorted(numbers)\n\n\ndef main():\n    pass\n", "    return sorted(numbers)"),
    (HE, "    return sorted(numbers)", "    return sorted(numbers)"),
    (HE, "    if x:\n\n        y = 1\n    return y\nprint(1)\n", "    if x:\n\n        y = 1\n    return y"),
    (HE, "print(1)\n", None),
    (HE, "\n\n", None),
    (MBPP, "\n    return a + b\n\n\nassert f()", "\n    return a + b"),
    (MBPP, " return 1\nx = 2", " return 1"),
    (MBPP, "\nx = 2\n", None),
    ("def helper(a):\n    return a\n\n\ndef target(b):\n    \"\"\"Doc.\"\"\"\n", "    return helper(b)\nz",
     "    return helper(b)"),
    ("no def here\n", "def f():\n\treturn 1\n\nx", "def f():\n\treturn 1"),
    ("no def here\n", "x = 1\n", None),
    # where the two old rules disagreed: an empty open def followed by the model's own function
    (MBPP, "\ndef add(a, b):\n    return a + b\n", "def add(a, b):\n    return a + b"),
    # nested functions stay inside; trailing examples stay outside
    (MBPP, "\n    def inner(x):\n        return x\n    return inner(2)\nassert function() == 2\n",
     "\n    def inner(x):\n        return x\n    return inner(2)"),
    # a class the model writes instead of a function, with its methods
    (MBPP, "\nclass S:\n    def f(self):\n        return 1\n\nS().f()\n",
     "class S:\n    def f(self):\n        return 1"),
    # decorators belong to the definition
    (MBPP, "\n@cache\ndef f(n):\n    return n\nprint(f(1))", "@cache\ndef f(n):\n    return n"),
    # a comment at column 0 inside a body neither ends nor extends it
    (MBPP, "\n    x = 1\n# note\n    return x\nprint(1)", "\n    x = 1\n# note\n    return x"),
    # continuation lines inside a string or brackets never end a block
    (MBPP, "\n    s = '''a\nb\n'''\n    return s\nfoo()", "\n    s = '''a\nb\n'''\n    return s"),
    (MBPP, "\n    return [1,\n2,\n    3]\nprint(2)", "\n    return [1,\n2,\n    3]"),
    # cut by the budget inside a bracket: the rest of the text is the body
    (MBPP, "\n    return [1,\n2, 3", "\n    return [1,\n2, 3"),
    # imports before the model's own function are not the function
    (HE, "import math\ndef sort_list(x):\n    return sorted(x)\nprint(sort_list([2, 1]))",
     "def sort_list(x):\n    return sorted(x)"),
])
def test_function_span(prompt, gen, body):
    span = function_span(prompt, gen)
    if body is None:
        assert span is None
    else:
        assert gen[span.start:span.end] == body
        assert span.kind == ("definition" if body.startswith(("def", "class", "@")) else "body")


def test_function_span_kinds():
    assert function_span(MBPP, "\n    return 1") == FunctionSpan(0, 13, "body")
    assert function_span(MBPP, "\ndef g():\n    return 1") == FunctionSpan(1, 22, "definition")
    assert function_span(MBPP, "  # one line only") is None  # finishes the prompt's last line


def test_words_are_the_one_unit():
    prompt = "Don't sort the list's items; return x_1 + 2.5"
    assert [prompt[a:b] for a, b in words(prompt)] == ["Don't", "sort", "the", "list's", "items",
                                                       "return", "x_1", "2", "5"]
    assert words(prompt, (6, 14)).tolist() == [[6, 10], [11, 14]]
    assert words("...").shape == (0, 2)


def test_last_token_of_character():
    ends = np.array([2, 5, 5, 9])
    assert last_token_of(ends, 1) == 0 and last_token_of(ends, 2) == 0
    assert last_token_of(ends, 3) == 1 and last_token_of(ends, 9) == 3 and last_token_of(ends, 20) == 3


def test_query_rows():
    # prompt of 10 tokens, 6 generated, the function's last token is generated token 3
    assert query_rows(10, 6, 3, "gradient") == query_rows(10, 6, 3, "self_attention")
    r = query_rows(10, 6, 3, "self_attention")
    assert (r.reading, r.coding) == (9, 12)
    r = query_rows(10, 6, 3, "self_attention", "paper")
    assert (r.reading, r.coding) == (10, 13)
    r = query_rows(10, 6, None, "gradient", "paper")  # paper gradients: last generated token
    assert (r.reading, r.coding) == (9, 14)
    r = query_rows(10, 6, None, "gradient")
    assert r.of("reading") == 9
    with pytest.raises(TaskFailure, match="no function body"):
        r.of("coding")
    with pytest.raises(TaskFailure, match="generated no token"):
        query_rows(10, 0, None, "gradient")
    with pytest.raises(ValueError, match="definitions"):
        query_rows(10, 6, 3, "gradient", "mine")
