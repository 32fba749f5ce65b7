"""Why a generation fails, judged so that the code and not the prompt is measured.

Failure kinds (:data:`KINDS`), one per generation, from its outcome after the interface
adaptations below:

``interface``  the tests' call does not fit the code: the function the tests call is missing
               (no rename possible) or the call passes more or fewer arguments than it takes;
``format``     a failing ``assert f(x) == y`` whose actual value is ``y`` in another type or
               format (``"Yes"`` for ``True``, ``'105'`` for ``105``, a list for a tuple or a
               set...; :func:`same_value`); the sandbox reports the actual value (:func:`probe_job`);
``logic``      any other failing test or exception raised while tested;
``load``       the code could not be extracted or loaded (syntax error, import, top-level error);
``timeout``    no verdict within the limit.

Pass rates three ways (:func:`pass_modes`): ``strict`` (the code passes under its own function
name and argument list), ``adapted`` (after renaming the function to the one the tests call and,
on MBPP, dropping the trailing length argument ``n`` the tests pass and the description never
mentions: :func:`adapted_job`), ``logic`` (adapted passes plus format failures, over the
generations whose code could be loaded and called: interface and load failures left out).

The study's MBPP prompts are the one-sentence description only, with no function name,
signature or test, so ``strict`` on MBPP measures the prompt more than the model.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace

from .execution import Job, Outcome, job_for, mbpp_tests

KINDS = ("interface", "format", "logic", "load", "timeout")
#: failure kinds that say nothing about the code's logic; left out of the controlled comparison.
NOT_LOGIC = ("interface", "format", "load")

_ARITY = re.compile(r"^TypeError: .*(positional argument|required (positional|keyword)|"
                    r"unexpected keyword argument|takes no arguments)")
_ONE_TOO_MANY = re.compile(r"^TypeError: \S+\(\) takes (\d+) positional arguments? "
                           r"but (\d+) (were|was) given")
_MISSING = re.compile(r"^(the tests call \S+, which the code does not define|\S+ is not defined by the code)")
_TEST_AT = re.compile(r"\(<test (\d+)> line \d+: ")
ACTUAL_TAG = "__aa_actual__"


def is_interface(outcome: Outcome) -> bool:
    """The tests' call does not fit: arity error raised by a test line itself, or no function."""
    if outcome.status == "error" and outcome.stage == "candidate" and _MISSING.match(outcome.detail):
        return True
    return (outcome.status == "failed" and bool(_ARITY.match(outcome.detail))
            and f"(<{outcome.stage}> line" in outcome.detail)


def drops_trailing_argument(outcome: Outcome) -> bool:
    """The tests pass exactly one positional argument more than the function takes."""
    m = _ONE_TOO_MANY.match(outcome.detail)
    return bool(m and is_interface(outcome) and int(m.group(2)) == int(m.group(1)) + 1)


def adapted_job(task, code: str, key: str, alias_of: str | None) -> Job:
    """The MBPP job with the tests' trailing argument dropped: the tests call a wrapper that
    passes all but the last positional argument to the code's function."""
    target = alias_of or task.entry_point
    wrapper = (f"\n\n__aa_target = {target}\n\ndef {task.entry_point}(*args, **kwargs):\n"
               f"    return __aa_target(*args[:-1], **kwargs)\n")
    return replace(job_for(task, code + wrapper, key=key), alias_of=None)


# -- actual values of a failing assert ----------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """A failing ``assert <call> == <expected>`` of one test."""

    test_index: int
    call: str
    expected: str


def failing_comparison(task, outcome: Outcome) -> Comparison | None:
    """The failing MBPP assert as (call, expected source), when it is a plain ``==`` of a call
    to the entry point and a literal."""
    if task.benchmark != "mbpp" or outcome.status != "failed" \
            or not outcome.detail.startswith("AssertionError"):
        return None
    m = _TEST_AT.search(outcome.detail)
    tests = mbpp_tests(task)
    if not m or int(m.group(1)) >= len(tests):
        return None
    i = int(m.group(1))
    try:
        tree = ast.parse(tests[i].strip())
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    cmp = tree.body[0].test
    if not (isinstance(cmp, ast.Compare) and len(cmp.ops) == 1 and isinstance(cmp.ops[0], ast.Eq)):
        return None
    left, right = cmp.left, cmp.comparators[0]

    def calls_entry(node) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == task.entry_point

    if calls_entry(right) and not calls_entry(left):
        left, right = right, left
    if not calls_entry(left):
        return None
    try:
        ast.literal_eval(right)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return Comparison(i, ast.unparse(left), ast.unparse(right))


def probe_job(job: Job, comparison: Comparison) -> Job:
    """The same job whose failing test reports the call's actual value (type and ``repr``, cut
    to 1,000 characters) in its exception message, inside the sandbox like any test."""
    tests = list(job.tests[:comparison.test_index])
    tests.append(f"__aa_v = {comparison.call}\n"
                 f"raise AssertionError({ACTUAL_TAG!r} + ' ' + type(__aa_v).__name__ + ' ' "
                 f"+ repr(__aa_v)[:1000])\n")
    return replace(job, key=job.key + "::probe", tests=tuple(tests))


def actual_from(outcome: Outcome) -> str | None:
    """The ``repr`` of the actual value a probe reported, or None."""
    head = f"AssertionError: {ACTUAL_TAG} "
    if outcome.status != "failed" or not outcome.detail.startswith(head):
        return None
    rest = outcome.detail[len(head):]
    rest = re.sub(r" \(<test \d+> line \d+: .*\)$", "", rest, flags=re.S)
    parts = rest.split(" ", 1)
    # object addresses change every run: reports stay the same without them
    return re.sub(r" at 0x[0-9a-fA-F]+>", ">", parts[1]) if len(parts) == 2 else None


_TRUE = {"yes", "true", "y"}
_FALSE = {"no", "false", "n"}


def _scalar(x):
    """Bools and yes/no words -> bool; numbers and numeric strings -> float; other strings stripped."""
    if isinstance(x, bool):
        return x
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        s = x.strip().strip("'\"").strip()
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        try:
            return float(s)
        except ValueError:
            return s
    return x


def same_value(actual, expected, depth: int = 0) -> bool:
    """``actual`` equals ``expected`` up to type and format: number vs numeric string, bool vs
    yes/no, list vs tuple, a set vs any collection of the same elements, a string holding the
    literal of the expected value."""
    if depth > 20:
        return False
    seqs = (list, tuple)
    if isinstance(actual, set | frozenset) or isinstance(expected, set | frozenset):
        if isinstance(actual, seqs + (set, frozenset)) and isinstance(expected, seqs + (set, frozenset)):
            a, e = [_scalar(x) for x in actual], [_scalar(x) for x in expected]
            return sorted(map(repr, set(map(repr, a)))) == sorted(map(repr, set(map(repr, e))))
        return False
    if isinstance(actual, seqs) and isinstance(expected, seqs):
        return len(actual) == len(expected) and all(
            same_value(a, e, depth + 1) for a, e in zip(actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return set(map(repr, actual)) == set(map(repr, expected)) and all(
            same_value(actual[k], expected[k], depth + 1) for k in actual if k in expected)
    if isinstance(actual, str) and not isinstance(expected, str):
        try:
            parsed = ast.literal_eval(actual.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed = None
        if parsed is not None and not isinstance(parsed, str) and same_value(parsed, expected, depth + 1):
            return True
    if isinstance(expected, str) and not isinstance(actual, str):
        return same_value(expected, actual, depth + 1)
    a, e = _scalar(actual), _scalar(expected)
    if isinstance(a, float) and isinstance(e, float):
        return abs(a - e) <= 1e-9 * max(1.0, abs(e))
    return type(a) is type(e) and a == e


def is_format(actual_repr: str | None, expected_src: str) -> bool:
    """The actual value (its ``repr``) is the expected one in another type or format."""
    if actual_repr is None:
        return False
    try:
        expected = ast.literal_eval(expected_src)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    try:
        actual = ast.literal_eval(actual_repr)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False  # not a literal (an object, a generator): not the expected value
    return same_value(actual, expected)


@dataclass(frozen=True)
class Verdict:
    """One generation judged: pass modes and failure kind ('' when it passed adapted)."""

    strict: bool
    adapted: bool
    kind: str
    adaptation: str = ""   # what the adapted run changed ("renamed f", "dropped trailing n")
    actual: str = ""       # the reported actual value of a format/logic assert failure
    expected: str = ""


def kind_of(outcome: Outcome, format_failure: bool = False) -> str:
    """The failure kind of an (adapted) outcome; '' when it passed."""
    if outcome.status == "passed":
        return ""
    if outcome.status == "timeout":
        return "timeout"
    if is_interface(outcome):
        return "interface"
    if outcome.status == "error":
        return "load"
    return "format" if format_failure else "logic"


def pass_modes(verdicts) -> dict:
    """Counts and rates of the three pass modes over ``verdicts`` (a non-empty iterable)."""
    vs = list(verdicts)
    n = len(vs)
    strict = sum(v.strict for v in vs)
    adapted = sum(v.adapted for v in vs)
    formats = sum(v.kind == "format" for v in vs)
    callable_ = n - sum(v.kind in ("interface", "load") for v in vs)
    return {"tasks": n, "strict": strict, "adapted": adapted, "logic_passed": adapted + formats,
            "logic_tasks": callable_, "strict_rate": strict / n if n else float("nan"),
            "adapted_rate": adapted / n if n else float("nan"),
            "logic_rate": (adapted + formats) / callable_ if callable_ else float("nan"),
            **{k: sum(v.kind == k for v in vs) for k in KINDS}}
