"""The error analysis's rules: which keywords a method missed, why code failed, which pattern.

* :func:`coverage`: the human keywords inside the scored region that overlap none of a
  method's top-k units ("missed"), by label.
* :func:`failure_kind`: why an incorrect candidate is incorrect, coarsely.
* The suggested pattern of study.md section 6 (:meth:`Coverage.suggested`): a missed
  conditional -> 1, else a missed property -> 2, else a missed operator -> 3, else a missed
  datatype -> 4 (the order of the paper's numbering; :meth:`Coverage.patterns` lists every
  applicable one); else pattern 5 when its rule fires; nothing -> 0, "not explained by
  attention". Keywords with a label outside the four types (``--labels published`` keeps a few
  ``unknown``/``type2`` ones) count as missed or attended but suggest no pattern. These are
  suggestions for a human to confirm.
* Boilerplate words (:data:`BOILERPLATE`: "Write", "function", "given", "python"...) are never
  keywords here, neither missed nor attended: they name no code element.
* Pattern 5 (incorrect mapping between a prompt word and a code element; :func:`mapped_elements`):
  a labelled keyword inside the top-k (the model attended to it) that names an identifier or
  literal of the reference solution (same word, or one starts with the other, at least four
  letters; numbers: the same value), none of which appears in the generation's code.
* Tallies over many candidates: :func:`pass_rates`, :func:`pattern_counts`, :func:`miss_rates`.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from common import dataset
from common.metrics import overlaps_any
from common.results import AttributionResult

from . import taxonomy
from .execution import Outcome
from .generations import Candidate
from .taxonomy import NOT_LOGIC, Verdict

#: label -> pattern number of study.md section 6, in the order a pattern is suggested.
PATTERN_OF_LABEL = {"conditional": 1, "property": 2, "operator": 3, "datatype": 4}
PATTERN_NAMES = {
    1: "missing attention to critical conditions",
    2: "missing attention to descriptive words of an operation or data object",
    3: "missing attention to operation descriptions",
    4: "missing attention to data types",
    5: "incorrect mapping between NL words and code elements (an attended keyword's code element "
       "of the reference solution is absent from the generation)",
    0: "not explained by attention (every labelled keyword is in the top-k)",
}
NO_KEYWORDS = "no labelled keyword in the scored region"
SUGGESTION_NOTE = ("Patterns are SUGGESTIONS derived from which labelled keywords fall outside the "
                   "model's top-k attention; a human must confirm each one against the code.")
DEFAULT_K = 10
#: Words of the task statement that name no code element: never counted as keywords.
BOILERPLATE = frozenset({"write", "function", "functions", "given", "python", "program", "code",
                         "method", "script", "a", "an", "the", "of"})


def is_boilerplate(word: str) -> bool:
    return word.strip().strip(".,;:!?()'\"`").lower() in BOILERPLATE


_IDENT = re.compile(r"[A-Za-z]+|\d+(?:\.\d+)?")


def code_words(code: str) -> set[str]:
    """Lower-case words of code: identifiers split at underscores and case changes, string
    contents split into words, numbers as written."""
    words = set()
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|'[^'\n]*'|\"[^\"\n]*\"", code):
        tok = m.group(0).strip("'\"")
        for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+(?:\.\d+)?", tok):
            words.add(part.lower())
    return words


_NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}


def _matches(keyword: str, element: str) -> bool:
    if keyword.isdigit() or element.isdigit():
        return keyword == element
    if len(keyword) < 4:
        return keyword == element
    # "maximum" -> max, "string" -> str, "length" -> len; "sorted" <- "sort"; "reversed" ~ "reverse"
    return (len(element) >= 3 and keyword.startswith(element)) or element.startswith(keyword) \
        or (len(keyword) >= 5 and element.startswith(keyword[:5]))


@lru_cache(maxsize=4096)
def reference_elements(reference: str) -> frozenset[str]:
    """The code elements of a reference solution a prompt word can name: attributes and methods
    (``.upper``), names used but not bound there (builtins and library functions: ``max``,
    ``sorted``, ``re``), and literals (words of strings, numbers), as lower-case words
    (:func:`code_words`). Its own function, parameter and variable names are left out: naming
    is free, a generation that names them otherwise maps nothing wrongly."""
    try:
        with warnings.catch_warnings():  # invalid escapes in MBPP's references are not our news
            warnings.simplefilter("ignore")
            tree = ast.parse(reference)
    except (SyntaxError, ValueError):
        return frozenset()
    bound: set[str] = set()
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name):
            (bound.add if isinstance(node.ctx, ast.Store | ast.Del) else used.append)(node.id)
        elif isinstance(node, ast.Attribute):
            used.append(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | int | float) \
                and not isinstance(node.value, bool):
            used.append(repr(node.value))
    return frozenset(code_words("\n".join(u for u in used if u not in bound)))


def mapped_elements(keyword: str, reference: str) -> set[str]:
    """The reference solution's code elements (:func:`reference_elements`) the keyword names
    (see the module docstring)."""
    w = keyword.strip().strip(".,;:!?()'\"`").lower()
    w = _NUMBER_WORDS.get(w, w)
    if not w or is_boilerplate(w):
        return set()
    return {e for e in reference_elements(reference) if _matches(w, e)}


@dataclass
class Coverage:
    """Which labelled keywords one method's top-k misses for one prompt."""

    method: str
    k: int
    keywords: list[dataset.Keyword]
    missed: list[dataset.Keyword]
    top_k: np.ndarray  # (n, 2) spans
    #: pattern 5: attended keywords whose reference code element the generation lacks -> element
    mismapped: dict[str, list[str]] = field(default_factory=dict)

    def missed_by_label(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {lab: [] for lab in PATTERN_OF_LABEL}
        for kw in self.missed:
            if kw.label in out:
                out[kw.label].append(kw.text)
        return out

    def patterns(self) -> list[int]:
        """Every applicable pattern, in suggestion order (``[0]``: everything attended)."""
        if not self.keywords:
            return []
        labels = {kw.label for kw in self.missed}
        found = [p for lab, p in PATTERN_OF_LABEL.items() if lab in labels]
        if self.mismapped:
            found.append(5)
        return found or [0]

    def suggested(self) -> int | None:
        p = self.patterns()
        return p[0] if p else None


def pattern_label(p: int | None) -> str:
    return NO_KEYWORDS if p is None else PATTERN_NAMES[p]


def coverage(task: dataset.Task, scores, method: str, k: int, code: str | None = None) -> Coverage:
    """Keywords in the scored region (boilerplate words left out) that overlap none of the top-k
    units; with the generation's ``code``, the pattern-5 rule too."""
    a, b = task.region
    kws = [kw for kw in task.keywords if kw.end > a and kw.start < b and not is_boilerplate(kw.text)]
    top = scores.spans[scores.top_k(k)] if len(scores.spans) else np.zeros((0, 2), np.int64)
    spans = np.asarray([kw.span for kw in kws], dtype=np.int64).reshape(-1, 2)
    hit = overlaps_any(spans, top.reshape(-1, 2))
    mismapped: dict[str, list[str]] = {}
    if code is not None and task.reference:
        have = code_words(code)
        for kw, h in zip(kws, hit):
            elements = mapped_elements(kw.text, task.reference) if h else set()
            if elements and not elements & have:
                mismapped[kw.text] = sorted(elements)
    return Coverage(method, k, kws, [kw for kw, h in zip(kws, hit) if not h], top.reshape(-1, 2),
                    mismapped)


def failure_kind(outcome: Outcome) -> str:
    """The failure kind of an outcome without a probe of actual values (never ``format``); see
    :func:`analysis.taxonomy.kind_of`."""
    return taxonomy.kind_of(outcome)


#: Failure kinds that say something about the logic of the code (the controlled comparison's
#: incorrect group).
LOGIC_KINDS = ("logic", "timeout")


@dataclass
class Analysed:
    """A candidate, its outcome, and its coverage by every method available for its model."""

    candidate: Candidate
    outcome: Outcome
    coverage: list[Coverage] = field(default_factory=list)
    verdict: Verdict | None = None
    #: the method's scores for this prompt (to recompute coverage at another k)
    scores: dict = field(default_factory=dict)

    @property
    def failure_kind(self) -> str:
        return self.verdict.kind if self.verdict is not None else failure_kind(self.outcome)

    @property
    def strict(self) -> bool:
        return self.verdict.strict if self.verdict is not None else self.outcome.passed

    def group(self) -> str | None:
        """``correct`` / ``incorrect`` for the controlled comparison; None: left out (interface,
        format and load failures say nothing about the code's logic)."""
        if self.outcome.passed:
            return "correct"
        return None if self.failure_kind in NOT_LOGIC else "incorrect"

    def coverage_at(self, k: int) -> list[Coverage]:
        code = self.candidate.extraction.code if self.candidate.extraction.found else ""
        return [coverage(self.candidate.task, s, m, k, code) for m, s in sorted(self.scores.items())]


def analyse(cands: list[Candidate], outcomes: list[Outcome],
            attributions: Mapping[str, Mapping[str, AttributionResult]], k: int = DEFAULT_K,
            verdicts: list[Verdict] | None = None) -> list[Analysed]:
    """Coverage of every candidate (correct ones too: they are the control) by every method."""
    out = []
    for i, (c, o) in enumerate(zip(cands, outcomes)):
        a = Analysed(c, o, verdict=verdicts[i] if verdicts is not None else None)
        for method, res in sorted(attributions.get(c.model, {}).items()):
            scores = res.prompts.get(c.task.prompt)
            if scores is not None:
                a.scores[method] = scores
        a.coverage = a.coverage_at(k)
        out.append(a)
    return out


# -- tallies ----------------------------------------------------------------------------------

def pass_rates(analysed: list[Analysed]) -> list[dict]:
    """Per model and benchmark: counts of each status (after the interface adaptations), the
    pass rate, and the three pass modes with the failure kinds (:func:`analysis.taxonomy.pass_modes`)."""
    groups: dict[tuple[str, str], list[Analysed]] = defaultdict(list)
    for a in analysed:
        groups[(a.candidate.model, a.candidate.task.benchmark)].append(a)
    rows = []
    for (model, bench), group in sorted(groups.items()):
        c = Counter(a.outcome.status for a in group)
        n = len(group)
        verdicts = [a.verdict or Verdict(a.outcome.passed, a.outcome.passed, a.failure_kind)
                    for a in group]
        rows.append({"model": model, "benchmark": bench, "tasks": n,
                     **{s: c[s] for s in ("passed", "failed", "timeout", "error")},
                     "pass_rate": c["passed"] / n if n else float("nan"),
                     **{k: v for k, v in taxonomy.pass_modes(verdicts).items() if k != "tasks"}})
    return rows


def pattern_counts(analysed: list[Analysed], kinds: Iterable[str] | None = None,
                   ) -> dict[tuple[str, str], Counter]:
    """(model, method) -> Counter of suggested pattern (None: no labelled keyword).

    ``kinds``: only incorrect candidates of these failure kinds (e.g. ``LOGIC_KINDS``)."""
    kinds = set(kinds) if kinds is not None else None
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for a in analysed:
        if a.outcome.passed or (kinds is not None and a.failure_kind not in kinds):
            continue
        for c in a.coverage:
            out[(a.candidate.model, c.method)][c.suggested()] += 1
    return out


def miss_rates(analysed: list[Analysed]) -> list[dict]:
    """Share of labelled keywords outside the top-k, by label, for incorrect vs. correct code."""
    tally: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for a in analysed:
        group = "correct" if a.outcome.passed else "incorrect"
        for c in a.coverage:
            missed = Counter(kw.label for kw in c.missed)
            total = Counter(kw.label for kw in c.keywords)
            for lab in PATTERN_OF_LABEL:
                t = tally[(a.candidate.model, c.method, group, lab)]
                t[0] += missed[lab]
                t[1] += total[lab]
    return [{"model": m, "method": meth, "group": g, "label": lab, "missed": x, "keywords": n,
             "miss_rate": x / n if n else float("nan")}
            for (m, meth, g, lab), (x, n) in sorted(tally.items())]
