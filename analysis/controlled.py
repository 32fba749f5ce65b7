"""Does a rule "explain" incorrect code more often than it fires on correct code?

For every model, attribution method and k, each rule's rate on incorrect generations is set
against the same rate on correct generations (the control):

* units: one generation (one model output for one task) with at least one labelled keyword
  (boilerplate left out) in the scored region; incorrect = a ``logic`` or ``timeout`` failure
  (:mod:`analysis.taxonomy`), correct = passed after the interface adaptations; ``interface``,
  ``format`` and ``load`` failures are left out (they say nothing about the code's logic);
* rules (:data:`RULES`): ``missed <label>`` (a keyword of that label outside the top-k: the rule
  of patterns 1-4; only generations whose prompt has such a keyword), ``pattern 5 rule``,
  ``suggested pattern p`` (the first applicable one, as the report assigns it) and
  ``explained by attention`` (any pattern suggested: the headline);
* adjustment: Mantel-Haenszel risk difference over strata benchmark x number of keywords
  (:data:`KEYWORD_BINS`), so neither a benchmark's pass rate nor a longer prompt (more keywords,
  more chances to miss one) makes the difference; stratified bootstrap interval and stratified
  permutation p (:func:`common.stats.stratified_difference`), Holm-adjusted over the rules of
  one model, method and k;
* k = 10 fixed in advance (:data:`PRIMARY_K`); 5 and 20 only as a sensitivity table.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from common import stats

from .patterns import PATTERN_OF_LABEL, Analysed, Coverage

PRIMARY_K = 10
SENSITIVITY_K = (5, 10, 20)
#: upper bounds of the keyword-count bins (the last bin is open)
KEYWORD_BINS = (4, 6, 8)
HEADLINE = "explained by attention"
ALPHA = 0.05
#: fewer generations than this in either group: the comparison is reported as underpowered
MIN_GROUP = 10


def _rules() -> list[str]:
    return ([f"missed {lab}" for lab in PATTERN_OF_LABEL] + ["pattern 5 rule"]
            + [f"suggested pattern {p}" for p in (1, 2, 3, 4, 5)] + [HEADLINE])


RULES = _rules()


def rule_value(rule: str, c: Coverage) -> float | None:
    """1/0 whether ``rule`` holds for one coverage; None where the rule does not apply."""
    if not c.keywords:
        return None
    if rule.startswith("missed "):
        lab = rule.split(" ", 1)[1]
        if not any(kw.label == lab for kw in c.keywords):
            return None
        return float(any(kw.label == lab for kw in c.missed))
    if rule == "pattern 5 rule":
        return float(bool(c.mismapped))
    if rule.startswith("suggested pattern "):
        return float(c.suggested() == int(rule.rsplit(" ", 1)[1]))
    if rule == HEADLINE:
        return float(c.suggested() not in (0, None))
    raise ValueError(f"unknown rule {rule!r}")


def keyword_bin(n: int) -> str:
    for hi, lo in zip(KEYWORD_BINS, (1,) + tuple(b + 1 for b in KEYWORD_BINS)):
        if n <= hi:
            return f"{lo}-{hi}"
    return f">{KEYWORD_BINS[-1]}"


def controlled_rates(analysed: list[Analysed], ks: Iterable[int] = (PRIMARY_K,),
                     resamples: int = stats.DEFAULT_RESAMPLES, permutations: int = 2000,
                     seed: int = stats.DEFAULT_SEED) -> list[dict]:
    """One row per model, method, k and rule (see the module docstring)."""
    rows = []
    for k in ks:
        units: dict[tuple[str, str], list[tuple[Analysed, Coverage]]] = {}
        for a in analysed:
            if a.group() is None:
                continue
            covs = a.coverage if a.coverage and a.coverage[0].k == k else a.coverage_at(k)
            for c in covs:
                units.setdefault((a.candidate.model, c.method), []).append((a, c))
        for (model, method), pairs in sorted(units.items()):
            block = []
            for rule in RULES:
                ys, gs, ss = [], [], []
                for a, c in pairs:
                    v = rule_value(rule, c)
                    if v is None:
                        continue
                    ys.append(v)
                    gs.append(a.group() == "incorrect")
                    ss.append(f"{a.candidate.task.benchmark}|{keyword_bin(len(c.keywords))}")
                r = stats.stratified_difference(np.asarray(ys), np.asarray(gs, dtype=bool),
                                                np.asarray(ss, dtype=object), resamples,
                                                permutations, seed)
                block.append({"model": model, "method": method, "k": k, "rule": rule,
                              "primary": k == PRIMARY_K,
                              "n_incorrect": r["n1"], "n_correct": r["n0"],
                              "rate_incorrect": r["rate1"], "rate_correct": r["rate0"],
                              "difference": r["diff"], "lo": r["lo"], "hi": r["hi"], "p": r["p"]})
            adjusted = stats.holm([b["p"] if not np.isnan(b["difference"]) else np.nan for b in block])
            for b, ph in zip(block, adjusted):
                b["p_holm"] = float(ph) if not np.isnan(ph) else 1.0
                b["significant"] = bool(b["p_holm"] < ALPHA)
            rows.extend(block)
    return rows


def verdict_text(row: dict) -> str:
    """One line: the difference over the control with its interval and p, and plainly whether
    it is significant."""
    if np.isnan(row["difference"]):
        return "no stratum has both incorrect and correct generations: no comparison"
    few = min(row["n_incorrect"], row["n_correct"]) < MIN_GROUP
    if row["significant"]:
        sig = "significant"
    elif few:
        sig = (f"NOT significant; too few generations for a real control ({row['n_incorrect']} "
               f"incorrect, {row['n_correct']} correct)")
    else:
        sig = "NOT significant: no evidence that the rule fires more often on incorrect than on correct code"
    return (f"{100 * row['difference']:+.1f} points over the control "
            f"[95% CI {100 * row['lo']:+.1f}, {100 * row['hi']:+.1f}], p = {row['p']:.3g}, "
            f"Holm p = {row['p_holm']:.3g}: {sig}")
