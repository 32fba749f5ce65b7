"""Code extraction from chat answers and the MBPP name alias (the code of saved generations:
tests/test_saved_generations.py)."""

from __future__ import annotations

import ast

from common import extract

# Shaped like GPT-4's published answers: prose, a fenced solution, a fenced usage example.
ANSWER_WITH_EXAMPLE = ''' Here is a Python function that removes the k'th element from a given list:

```python
def remove_kth_element(lst, k):
    """Remove the k'th element."""
    return lst[:k] + lst[k+1:]

print(remove_kth_element([1, 2, 3], 1))  # Output: [1, 3]
if __name__ == "__main__":
    lst = input()
```

Here are some examples of how this function can be used:

```python
>>> remove_kth_element([1, 2, 3, 4, 5], 2)
[1, 2, 4, 5]
```
'''

# HumanEval/143 as GPT-4 answered it: the helper in its own block, the function in a second.
ANSWER_WITH_HELPER_BLOCK = '''To solve this problem, we need to create a function that will:

1. Split the sentence into words.

First, let's write a helper function to check if a number is prime:

```python
def is_prime(num):
    if num <= 1:
        return False
    return all(num % d for d in range(2, int(num ** 0.5) + 1))
```

Now, let's write the main function that uses the `is_prime` helper function:

```python
def words_in_sentence(sentence):
    words = sentence.split()
    return ' '.join(w for w in words if is_prime(len(w)))

# Example usage:
print(words_in_sentence("This is a test"))  # Output: "is"
```

This function will return the desired output for the given examples.
'''

# Cut by the token limit: the last fence never closes.
TRUNCATED = ''' Here is a Python function that checks if two lists of tuples are identical or not:

```python
def check_identical(list1, list2):
    # If the lengths of the lists are different, they cannot be identical
    if len(list1) != len(list2):
        return False
    for tupl1 in list1:'''

NO_FENCE = ''' Here is a function:

def area(r):
    return 3.14159 * r * r

This function takes the radius `r` and returns the area.
'''

TWO_VERSIONS = '''First a shell command:

```bash
pip install nothing
```

A simple version:

```
def helper(x):
    return x
```

The function you asked for:

```python
import math

def circle_area(r):
    return math.pi * r ** 2
```
'''


def test_fenced_block_with_prose_and_examples():
    ex = extract.from_chat(ANSWER_WITH_EXAMPLE, "remove_kth_element")
    assert ex.found
    tree = ast.parse(ex.code)
    assert [type(n).__name__ for n in tree.body] == ["FunctionDef"]
    assert "print(" not in ex.code and "input()" not in ex.code and ">>>" not in ex.code
    assert '"""Remove the k\'th element."""' in ex.code  # the function's docstring stays
    assert "block 1 of 1" in ex.note and "dropped 2" in ex.note


def test_helper_in_another_block_is_added():
    ex = extract.from_chat(ANSWER_WITH_HELPER_BLOCK, "words_in_sentence")
    names = extract.defined_functions(ex.code)
    assert names == ["is_prime", "words_in_sentence"]
    assert "added is_prime" in ex.note
    ns: dict = {}
    exec(ex.code, ns)
    assert ns["words_in_sentence"]("This is a test") == "is"


def test_block_defining_the_entry_point_wins():
    ex = extract.from_chat(TWO_VERSIONS, "circle_area")
    assert extract.defined_functions(ex.code) == ["circle_area"]
    assert "import math" in ex.code and "pip" not in ex.code
    # without an entry point the first block defining a function is taken; bash is never code
    ex = extract.from_chat(TWO_VERSIONS, None)
    assert extract.defined_functions(ex.code) == ["helper"]
    assert extract.code_blocks(TWO_VERSIONS)[0].startswith("def helper")


def test_unclosed_fence_runs_to_the_end():
    ex = extract.from_chat(TRUNCATED, "check_identical")
    assert ex.code.startswith("def check_identical(list1, list2):")
    assert ex.code.rstrip().endswith("for tupl1 in list1:")
    # it does not parse: it is kept as is so that the harness reports the syntax error
    assert extract._parses(ex.code) is None


def test_unfenced_code_and_no_code():
    ex = extract.from_chat(NO_FENCE, "area")
    assert ex.found and extract.defined_functions(ex.code) == ["area"]
    assert "This function" not in ex.code
    ex = extract.from_chat("I cannot help with that.", "area")
    assert not ex.found and ex.code == ""


def test_indented_fence_is_dedented():
    answer = "1. Step one:\n\n   ```python\n   def f():\n       return 1\n   ```\n"
    assert extract.from_chat(answer, "f").code == "def f():\n    return 1\n"


def test_resolve_name():
    assert extract.resolve_name("def mine(x):\n    return x\n", "theirs") == \
        ("mine", "aliased mine as theirs (the only function defined)")
    assert extract.resolve_name("def theirs(x):\n    return x\n", "theirs") == (None, "")
    root = "def helper(x):\n    return x\n\ndef main(x):\n    return helper(x)\n"
    alias, note = extract.resolve_name(root, "theirs")
    assert alias == "main" and "the only one the others do not call" in note
    ambiguous = "def a(x):\n    return x\n\ndef b(x):\n    return x\n"
    alias, note = extract.resolve_name(ambiguous, "theirs")
    assert alias is None and "no alias" in note
    assert extract.resolve_name("x = 1\n", "theirs")[0] is None


def test_recursion_does_not_make_a_function_a_helper():
    # mbpp/45's shape: the main function calls itself and the helper
    code = ("def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n\n"
            "def gcd_of_array(arr):\n    if len(arr) == 2:\n        return gcd(arr[0], arr[1])\n"
            "    return gcd(arr[0], gcd_of_array(arr[1:]))\n")
    alias, note = extract.resolve_name(code, "get_gcd")
    assert alias == "gcd_of_array" and "of 2 functions" in note
    # mbpp/367's shape: a class, a recursive main function, a recursive helper it calls
    code = ("class Node:\n    pass\n\ndef isBalanced(r):\n    return r is None or "
            "(abs(height(r.left) - height(r.right)) <= 1 and isBalanced(r.left))\n\n"
            "def height(n):\n    return 0 if n is None else 1 + max(height(n.left), height(n.right))\n")
    assert extract.resolve_name(code, "is_tree_balanced")[0] == "isBalanced"
    # two functions calling each other: neither is the root, no alias is guessed
    mutual = "def a(x):\n    return b(x)\n\ndef b(x):\n    return a(x)\n"
    assert extract.resolve_name(mutual, "f")[0] is None


BROKEN_THEN_FIXED = """Here is a version with a lambda:

```python
def count_even(numbers):
    return len([n for n in numbers if lambda x: x % 2 == 0(n)])
```

Or, more concisely:

```python
def count_even(numbers):
    return len(list(filter(lambda x: x % 2 == 0, numbers)))
```
"""


def test_a_block_that_does_not_parse_is_passed_over():
    # mbpp/697's shape: the first block defining the entry point is a syntax error
    ex = extract.from_chat(BROKEN_THEN_FIXED, "count_even")
    assert "filter(" in ex.code and "block 2 of 2" in ex.note
    ns: dict = {}
    exec(ex.code, ns)
    assert ns["count_even"]([1, 2, 4, 7]) == 2
    # without an entry point the same holds for "first block defining a function"
    assert "filter(" in extract.from_chat(BROKEN_THEN_FIXED, None).code
    # when no block parses, the first is kept so that the harness reports its syntax error
    only_broken = BROKEN_THEN_FIXED.split("Or, more")[0]
    ex = extract.from_chat(only_broken, "count_even")
    assert "lambda x: x % 2 == 0(n)" in ex.code and "no block parses" in ex.note


def test_strip_examples_keeps_definitions_and_module_docstring():
    code = '"""Module."""\nimport re\nX = 3\nprint(X)\nf(2)\ndef f(y):\n    print(y)\n'
    out, dropped = extract.strip_examples(code)
    assert dropped == 2
    assert out == '"""Module."""\nimport re\nX = 3\ndef f(y):\n    print(y)\n'


def test_real_gpt4_answers(mirror):
    from common import fetch, safe_pickle
    answers = safe_pickle.load(fetch.path_of("upstream/perturbation_based/shap/original_results.pkl",
                                             mirror))
    answer = answers["Write a python function to get the position of rightmost set bit."]
    ex = extract.from_chat(answer, "get_First_Set_Bit_Pos")
    assert extract.defined_functions(ex.code) == ["rightmost_set_bit"]
    assert ">>>" not in ex.code  # the unclosed REPL block is not code
    assert extract.resolve_name(ex.code, "get_First_Set_Bit_Pos")[0] == "rightmost_set_bit"
    found = sum(extract.from_chat(a).found for a in answers.values())
    assert found >= len(answers) - 3  # only answers with no code at all come out empty
