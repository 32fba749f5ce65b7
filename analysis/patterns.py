"""The error analysis's rules: which keywords a method missed, why code failed, which pattern.

* :func:`coverage`: the human keywords inside the scored region that overlap none of a
  method's top-k units ("missed"), by label.
* :func:`failure_kind`: why an incorrect candidate is incorrect, coarsely.
* The suggested pattern of study.md section 6 (:meth:`Coverage.suggested`): a missed
  conditional -> 1, else a missed property -> 2, else a missed operator -> 3, else a missed
  datatype -> 4 (the order of the paper's numbering; :meth:`Coverage.patterns` lists every
  applicable one); nothing missed -> 0, "not explained by attention". Pattern 5 (wrong mapping
  of words to code) cannot be seen from attention coverage and is never suggested. Keywords
  with a label outside the four types (``--labels published`` keeps a few
  ``unknown``/``type2`` ones) count as missed or attended but suggest no pattern. These are
  suggestions for a human to confirm.
* Tallies over many candidates: :func:`pass_rates`, :func:`pattern_counts`, :func:`miss_rates`.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from common import dataset
from common.metrics import overlaps_any
from common.results import AttributionResult

from .execution import Outcome
from .generations import Candidate

#: label -> pattern number of study.md section 6, in the order a pattern is suggested.
PATTERN_OF_LABEL = {"conditional": 1, "property": 2, "operator": 3, "datatype": 4}
PATTERN_NAMES = {
    1: "missing attention to critical conditions",
    2: "missing attention to descriptive words of an operation or data object",
    3: "missing attention to operation descriptions",
    4: "missing attention to data types",
    5: "incorrect mapping between NL words and code elements (not detectable from attention)",
    0: "not explained by attention (every labelled keyword is in the top-k)",
}
NO_KEYWORDS = "no labelled keyword in the scored region"
SUGGESTION_NOTE = ("Patterns are SUGGESTIONS derived from which labelled keywords fall outside the "
                   "model's top-k attention; a human must confirm each one against the code.")
DEFAULT_K = 10


@dataclass
class Coverage:
    """Which labelled keywords one method's top-k misses for one prompt."""

    method: str
    k: int
    keywords: list[dataset.Keyword]
    missed: list[dataset.Keyword]
    top_k: np.ndarray  # (n, 2) spans

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
        return found or [0]

    def suggested(self) -> int | None:
        p = self.patterns()
        return p[0] if p else None


def pattern_label(p: int | None) -> str:
    return NO_KEYWORDS if p is None else PATTERN_NAMES[p]


def coverage(task: dataset.Task, scores, method: str, k: int) -> Coverage:
    """Keywords in the scored region that overlap none of the top-k units."""
    a, b = task.region
    kws = [kw for kw in task.keywords if kw.end > a and kw.start < b]
    top = scores.spans[scores.top_k(k)] if len(scores.spans) else np.zeros((0, 2), np.int64)
    spans = np.asarray([kw.span for kw in kws], dtype=np.int64).reshape(-1, 2)
    hit = overlaps_any(spans, top.reshape(-1, 2))
    return Coverage(method, k, kws, [kw for kw, h in zip(kws, hit) if not h], top.reshape(-1, 2))


SIGNATURE = re.compile(r"^TypeError: .*(positional argument|required (positional|keyword)|"
                       r"unexpected keyword argument|takes no arguments)")
#: Failure kinds that say something about the logic of the code (the narrower summary).
LOGIC_KINDS = ("wrong result", "exception in tests", "timeout")


def failure_kind(outcome: Outcome) -> str:
    """Why a candidate is incorrect, coarsely. ``wrong signature``: the tests' call does not fit
    the parameters (common on MBPP, whose prompt names no parameters), so attention to the
    description can hardly explain it."""
    if outcome.status == "timeout":
        return "timeout"
    if outcome.status == "error":
        return "load error"
    if outcome.status == "failed":
        if outcome.detail.startswith("AssertionError"):
            return "wrong result"
        if SIGNATURE.match(outcome.detail) and f"(<{outcome.stage}> line" in outcome.detail:
            return "wrong signature"
        return "exception in tests"
    return ""


@dataclass
class Analysed:
    """A candidate, its outcome, and its coverage by every method available for its model."""

    candidate: Candidate
    outcome: Outcome
    coverage: list[Coverage] = field(default_factory=list)

    @property
    def failure_kind(self) -> str:
        return failure_kind(self.outcome)


def analyse(cands: list[Candidate], outcomes: list[Outcome],
            attributions: Mapping[str, Mapping[str, AttributionResult]], k: int = DEFAULT_K,
            ) -> list[Analysed]:
    """Coverage of every candidate (correct ones too: they are the control) by every method."""
    out = []
    for c, o in zip(cands, outcomes):
        a = Analysed(c, o)
        for method, res in sorted(attributions.get(c.model, {}).items()):
            scores = res.prompts.get(c.task.prompt)
            if scores is not None:
                a.coverage.append(coverage(c.task, scores, method, k))
        out.append(a)
    return out


# -- tallies ----------------------------------------------------------------------------------

def pass_rates(analysed: list[Analysed]) -> list[dict]:
    """Per model and benchmark: counts of each status and the pass rate."""
    groups: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for a in analysed:
        groups[(a.candidate.model, a.candidate.task.benchmark)][a.outcome.status] += 1
    rows = []
    for (model, bench), c in sorted(groups.items()):
        n = sum(c.values())
        rows.append({"model": model, "benchmark": bench, "tasks": n,
                     **{s: c[s] for s in ("passed", "failed", "timeout", "error")},
                     "pass_rate": c["passed"] / n if n else float("nan")})
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
