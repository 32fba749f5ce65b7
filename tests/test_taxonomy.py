"""Failure taxonomy, pass modes (analysis.taxonomy), the pattern-5 rule and boilerplate words
(analysis.patterns), and the controlled comparison on planted data (common.stats,
analysis.controlled)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import controlled, patterns, taxonomy
from analysis import error_analysis as ea
from analysis.execution import Outcome, Sandbox
from analysis.generations import saved_candidate
from common import stats
from common.dataset import Keyword, Task
from common.results import PromptScores
from tests.test_error_analysis import scores_on


def mbpp(entry: str, asserts: tuple[str, ...], tid: str) -> Task:
    prompt = "Write a function to do it."
    return Task("mbpp", tid, prompt, (0, len(prompt)), (), "", "\n".join(asserts), entry, asserts)


@pytest.mark.parametrize("actual, expected, same", [
    (True, "Yes", True), (False, "No", True), (False, "Yes", False),
    ("105", 105, True), (105, "105", True), (104, "105", False),
    ((1, 2), [1, 2], True), ([2, 1], [1, 2], False), ({1, 2}, (2, 1), True), ({1, 2}, [1, 3], False),
    ("[1, 2]", [1, 2], True), ({"a": "1"}, {"a": 1}, True), ({"a": 1}, {"b": 1}, False),
    (1.0000000000001, 1.0, True), (1.1, 1.0, False), ("abc", "abd", False), (None, 0, False),
])
def test_same_value(actual, expected, same):
    assert taxonomy.same_value(actual, expected) is same


def test_is_format_reads_reprs():
    assert taxonomy.is_format("True", "'Yes'")
    assert not taxonomy.is_format("<object at 0x1>", "'Yes'")  # not a literal
    assert not taxonomy.is_format(None, "1")


def test_failing_comparison_and_probe_job():
    t = mbpp("f", ("assert f(1) == 2", "assert 3 == f(2)", "assert g(f(1)) == 1", "assert f(1) == x"),
             "mbpp/t")
    fail = lambda i: Outcome("k", "failed", f"AssertionError (<test {i}> line 1: {t.test_list[i]})",  # noqa: E731
                             f"test {i}")
    c = taxonomy.failing_comparison(t, fail(1))
    assert (c.test_index, c.call, c.expected) == (1, "f(2)", "3")
    assert taxonomy.failing_comparison(t, fail(2)) is None  # the call is wrapped
    assert taxonomy.failing_comparison(t, fail(3)) is None  # expected is no literal
    assert taxonomy.failing_comparison(t, Outcome("k", "failed", "ValueError: x", "test 0")) is None
    assert taxonomy.actual_from(Outcome("k", "failed", "AssertionError: __aa_actual__ str 'a b' "
                                        "(<test 1> line 2: raise AssertionError(x))")) == "'a b'"


def test_drops_trailing_argument_only_for_one_extra():
    one = Outcome("k", "failed", "TypeError: f() takes 1 positional argument but 2 were given "
                  "(<test 0> line 1: assert f([1], 1) == 1)", "test 0")
    two = Outcome("k", "failed", "TypeError: f() takes 1 positional argument but 3 were given "
                  "(<test 0> line 1: assert f([1], 1, 2) == 1)", "test 0")
    assert taxonomy.drops_trailing_argument(one) and not taxonomy.drops_trailing_argument(two)


def test_pass_modes_by_hand():
    V = taxonomy.Verdict
    vs = [V(True, True, ""), V(False, True, ""), V(False, False, "format"), V(False, False, "interface"),
          V(False, False, "load"), V(False, False, "logic")]
    m = taxonomy.pass_modes(vs)
    assert (m["strict"], m["adapted"], m["logic_passed"], m["logic_tasks"]) == (1, 2, 3, 4)
    assert m["strict_rate"] == pytest.approx(1 / 6) and m["logic_rate"] == pytest.approx(3 / 4)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1, timeout=5.0, memory_mb=512) as sb:
        yield sb


def test_execute_classifies_and_adapts(sandbox):
    cands = [
        # own name, right arguments: strict pass
        saved_candidate("toy", mbpp("add", ("assert add(1, 2) == 3",), "mbpp/a"),
                        "\ndef add(a, b):\n    return a + b\n"),
        # MBPP's trailing length argument: passes adapted only (renamed and n dropped)
        saved_candidate("toy", mbpp("sum_list", ("assert sum_list([1, 2], 2) == 3",), "mbpp/b"),
                        "\ndef total(xs):\n    return sum(xs)\n"),
        # right value, other format
        saved_candidate("toy", mbpp("is_even", ("assert is_even(2) == 'Yes'",), "mbpp/c"),
                        "\ndef is_even(x):\n    return x % 2 == 0\n"),
        # wrong value
        saved_candidate("toy", mbpp("is_even", ("assert is_even(2) == 'Yes'",), "mbpp/d"),
                        "\ndef is_even(x):\n    return x % 2 == 1\n"),
        # two arguments too many: interface
        saved_candidate("toy", mbpp("f", ("assert f(1, 2, 3) == 1",), "mbpp/e"),
                        "\ndef f(x):\n    return x\n"),
    ]
    outcomes, verdicts = ea.execute(cands, sandbox)
    got = [(v.strict, v.adapted, v.kind) for v in verdicts]
    assert got == [(True, True, ""), (False, True, ""), (False, False, "format"),
                   (False, False, "logic"), (False, False, "interface")], [o.detail for o in outcomes]
    assert "dropped the trailing argument" in verdicts[1].adaptation
    assert (verdicts[2].actual, verdicts[2].expected) == ("True", "'Yes'")
    assert verdicts[3].actual == "False"


# -- boilerplate and pattern 5 --------------------------------------------------------------------

PROMPT = "Write a function to find the maximum of a list."


def kw(word, label):
    s = PROMPT.index(word)
    return Keyword(word, s, s + len(word), label)


def units(*words):
    return scores_on(*words, prompt=PROMPT)


def test_boilerplate_never_missed():
    t = Task("mbpp", "mbpp/z", PROMPT, (0, len(PROMPT)), (kw("Write", "operator"), kw("maximum", "property")),
             "def m(xs):\n    return max(xs)\n", "", "m")
    c = patterns.coverage(t, units("maximum"), "m", k=1)
    assert [k.text for k in c.keywords] == ["maximum"] and c.missed == [] and c.suggested() == 0


def test_pattern5_rule():
    t = Task("mbpp", "mbpp/z", PROMPT, (0, len(PROMPT)), (kw("maximum", "property"), kw("list", "datatype")),
             "def m(xs):\n    return max(xs)\n", "", "m")
    assert patterns.mapped_elements("maximum", t.reference) == {"max"}
    assert patterns.mapped_elements("the", t.reference) == set()
    # the reference's own names (function, parameters, variables) are free naming, not elements
    ref = "def largest(numbers):\n    result = max(numbers)\n    return str(result).upper()\n"
    assert patterns.reference_elements(ref) == {"max", "str", "upper"}
    assert patterns.mapped_elements("result", ref) == set() == patterns.mapped_elements("numbers", ref)
    assert patterns.mapped_elements("uppercase", ref) == {"upper"}
    assert patterns.mapped_elements("string", ref) == {"str"}
    # attended "maximum", the generation uses min: the reference's max is absent -> pattern 5
    c = patterns.coverage(t, units("maximum", "list"), "m", k=2, code="def m(xs):\n    return min(xs)\n")
    assert c.mismapped == {"maximum": ["max"]} and c.patterns() == [5] and c.suggested() == 5
    ok = patterns.coverage(t, units("maximum", "list"), "m", k=2, code="def m(xs):\n    return max(xs)\n")
    assert ok.mismapped == {} and ok.suggested() == 0
    # not attended: pattern 2 (missed property), and the pattern-5 rule does not fire
    c = patterns.coverage(t, units("list"), "m", k=1, code="def m(xs):\n    return min(xs)\n")
    assert c.mismapped == {} and c.patterns() == [2]


# -- statistics on planted data ----------------------------------------------------------------

def test_mh_risk_difference_by_hand():
    # stratum 0: incorrect 1/2, correct 2/2, w = 2*2/4 = 1, d = -1/2
    # stratum 1: incorrect 0/1, correct 1/3, w = 1*3/4 = 3/4, d = -1/3; one-group stratum 2 ignored
    y = [1, 0, 1, 1, 0, 0, 1, 0, 1]
    g = [1, 1, 0, 0, 1, 0, 0, 0, 1]
    s = [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert stats.mh_risk_difference(y, g, s) == pytest.approx((-0.5 - 0.25) / 1.75)
    assert np.isnan(stats.mh_risk_difference([1, 0], [1, 1], [0, 0]))


def cells(*groups):
    """Units from (stratum, incorrect, count, fires) cells."""
    y, g, s = [], [], []
    for stratum, incorrect, n, fires in groups:
        y += [1.0] * fires + [0.0] * (n - fires)
        g += [incorrect] * n
        s += [stratum] * n
    return np.asarray(y), np.asarray(g), np.asarray(s)


def test_stratification_removes_a_confounded_difference():
    # within each stratum the rule fires equally often (25% and 75%), but stratum 1 holds most
    # incorrect code: raw 65% vs 35%, adjusted exactly 0
    y, g, s = cells((0, True, 40, 10), (0, False, 160, 40), (1, True, 160, 120), (1, False, 40, 30))
    r = stats.stratified_difference(y, g, s, resamples=300, permutations=500)
    assert r["rate1"] == pytest.approx(0.65) and r["rate0"] == pytest.approx(0.35)
    assert r["diff"] == pytest.approx(0.0) and r["p"] > 0.5 and r["lo"] <= 0 <= r["hi"]


def planted(effect: float, n: int = 400, seed: int = 3):
    """Generations with a rule that fires with rate 0.3 (+ effect on incorrect code)."""
    rng = np.random.default_rng(seed)
    g = rng.random(n) < 0.5
    s = rng.integers(0, 3, n)
    y = (rng.random(n) < 0.3 + effect * g).astype(float)
    return y, g, s


def test_planted_separating_rule_is_detected():
    r = stats.stratified_difference(*planted(0.3), resamples=500, permutations=1000)
    assert r["p"] < 0.01 and 0.15 < r["diff"] < 0.45 and r["lo"] > 0 and r["lo"] < r["diff"] < r["hi"]


def test_planted_null_rule_is_not_significant():
    r = stats.stratified_difference(*planted(0.0), resamples=500, permutations=1000)
    assert r["p"] > 0.05 and r["lo"] < 0 < r["hi"]


def test_controlled_rates_on_planted_generations():
    """End to end through analysis.controlled: a planted rule (missed property on incorrect code
    only) is significant after Holm; the conditional, missed as often on both, is not."""
    prompt = "Write a function to count the even numbers in a list if it is not empty."
    kws = tuple(Keyword(w, prompt.index(w), prompt.index(w) + len(w), lab)
                for w, lab in (("count", "operator"), ("even", "property"), ("list", "datatype"),
                               ("if", "conditional")))
    import re
    spans = np.asarray([(m.start(), m.end()) for m in re.finditer(r"\w+", prompt)], dtype=np.int64)
    words = [prompt[a:b] for a, b in spans]

    def scores(*attended):
        sc = np.zeros(len(spans))
        for rank, w in enumerate(attended):
            sc[words.index(w)] = 10.0 - rank
        return PromptScores(spans, sc)

    from analysis.generations import Candidate
    from common.extract import Extraction
    rng = np.random.default_rng(0)
    analysed = []
    for i in range(120):
        incorrect = i % 2 == 0
        t = Task("mbpp", f"mbpp/{i}", prompt, (0, len(prompt)), kws, "", "", "f")
        miss_even = incorrect and rng.random() < 0.8 or (not incorrect and rng.random() < 0.1)
        miss_if = rng.random() < 0.5
        attended = ["count", "list"] + ([] if miss_even else ["even"]) + ([] if miss_if else ["if"])
        o = Outcome(f"toy::mbpp/{i}", "failed" if incorrect else "passed",
                    "AssertionError (x)" if incorrect else "", "test 0" if incorrect else "")
        a = patterns.Analysed(Candidate("toy", t, "", "chat", Extraction("def f(): pass\n")), o,
                              scores={"m": scores(*attended)})
        a.coverage = a.coverage_at(4)
        analysed.append(a)
    rows = {r["rule"]: r for r in controlled.controlled_rates(analysed, (4,), resamples=300,
                                                                permutations=500)}
    assert rows["missed property"]["significant"] and rows["missed property"]["difference"] > 0.4
    assert not rows["missed conditional"]["significant"]
    assert "NOT significant" in controlled.verdict_text(rows["missed conditional"])
    assert rows["missed operator"]["n_incorrect"] == 0 or np.isnan(rows["missed operator"]["difference"]) \
        or not rows["missed operator"]["significant"]
