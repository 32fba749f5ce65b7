"""Alignment metrics of study.md section 4, vectorised over all prompts at once.

Every prompt is laid on one global character axis (prompt ``i`` starts at ``offset[i]``, with a
one-character gap between prompts), so spans of different prompts can never overlap and all
pair sums become prefix-sum lookups:

* top-k: per prompt, the k units with the highest score, ties in prompt order;
* precision = sum over prompts of sum_{h in set(H), m in set(M), |m|>0} |h∩m|/|m|, divided by
  the number of top-k units; recall likewise with /|h|, divided by the number of human spans;
  F1 = 2PR/(P+R) from the pooled P and R;
* Krippendorff's alpha (nominal) over all units pooled: human code = the unit overlaps a human
  span, model code = the unit overlaps a top-k unit. Two coders and no missing values reduce
  alpha to ``1 - (n - 1) * D / (n0 * n1)`` (``n`` = 2 x units, ``D`` = disagreeing units,
  ``n0``/``n1`` = codes 0/1 over both coders), identical to the ``krippendorff`` package.

Overlap is ``a1 > b0 and a0 < b1`` on half-open spans, as in the published scorer (so empty
spans overlap what strictly contains them). ``common.reference`` holds the per-prompt
pure-Python implementation these functions are tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .dataset import LABELS, Keyword

KS = (5, 10, 20)

#: per-prompt sufficient statistics of :meth:`Scorer.prompt_stats`, in column order: the
#: precision and recall numerators, their denominators (top-k units, human spans), and the
#: units, disagreeing units and 1-codes (both coders) that alpha is a function of.
STAT_FIELDS = ("p_sum", "n_top", "r_sum", "n_human", "n_units", "disagree", "n1")


@dataclass(frozen=True)
class Score:
    k: int
    precision: float
    recall: float
    f1: float
    alpha: float
    n_prompts: int
    n_units: int
    n_topk: int
    n_human: int


def f1_of(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def alpha_binary(human: np.ndarray, model: np.ndarray) -> float:
    """Krippendorff's nominal alpha for two coders, binary codes, no missing values."""
    human = np.asarray(human, dtype=bool)
    model = np.asarray(model, dtype=bool)
    n = 2 * human.size
    n1 = int(human.sum() + model.sum())
    n0 = n - n1
    if n0 == 0 or n1 == 0:
        return float("nan")  # one value only: alpha is undefined
    disagree = int((human != model).sum())
    return 1.0 - (n - 1) * disagree / (n0 * n1)


def overlaps_any(units: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """For each unit ``(u0, u1)``: does some span ``(h0, h1)`` satisfy ``h1 > u0 and h0 < u1``?

    Counted with sorted searches: #(h0 < u1) - #(h1 <= u0), plus back the empty spans sitting
    exactly on an empty unit (counted in the second term but not the first).
    """
    if len(units) == 0:
        return np.zeros(0, dtype=bool)
    if len(spans) == 0:
        return np.zeros(len(units), dtype=bool)
    h0, h1 = np.sort(spans[:, 0]), np.sort(spans[:, 1])
    u0, u1 = units[:, 0], units[:, 1]
    count = np.searchsorted(h0, u1, "left") - np.searchsorted(h1, u0, "right")
    empty = np.sort(spans[spans[:, 0] == spans[:, 1], 0])
    if len(empty):
        on = np.searchsorted(empty, u0, "right") - np.searchsorted(empty, u0, "left")
        count = count + np.where(u0 == u1, on, 0)
    return count > 0


def _coverage_prefix(spans: np.ndarray, length: int) -> np.ndarray:
    """Prefix sums of how many spans cover each character of the global axis."""
    diff = (np.bincount(spans[:, 0], minlength=length + 1)
            - np.bincount(spans[:, 1], minlength=length + 1))
    cover = np.cumsum(diff[:length])
    return np.concatenate([[0], np.cumsum(cover)])


def _unique_rows(spans: np.ndarray) -> np.ndarray:
    """Distinct spans; one int64 key per span is far faster than ``np.unique(axis=0)``."""
    if not len(spans):
        return spans.reshape(0, 2)
    base = int(spans.max()) + 1
    keys = np.unique(spans[:, 0] * base + spans[:, 1])
    return np.stack([keys // base, keys % base], axis=1)


class LabelIndex:
    """Human spans of every prompt on the global axis; build once, score many results."""

    def __init__(self, labels: Mapping[str, Iterable]):
        self.prompts = list(labels)
        self.position = {p: i for i, p in enumerate(self.prompts)}
        lengths = np.fromiter((len(p) + 1 for p in self.prompts), dtype=np.int64,
                              count=len(self.prompts))
        self.offset = np.concatenate([[0], np.cumsum(lengths)])
        self.length = int(self.offset[-1])
        spans, owner, kinds = [], [], []
        for i, p in enumerate(self.prompts):
            for item in labels[p]:
                if isinstance(item, Keyword):
                    spans.append((item.start, item.end))
                    kinds.append(item.label)
                else:
                    spans.append(tuple(item))
                    kinds.append("")
                owner.append(i)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.spans = (np.asarray(spans, dtype=np.int64).reshape(-1, 2)
                      + self.offset[self.owner][:, None])
        self.kinds = np.asarray(kinds, dtype=object)
        self._subsets: dict[bytes, tuple] = {}

    def subset(self, positions: np.ndarray) -> tuple:
        """Human spans, kinds, distinct spans and their coverage prefix for some prompts.

        Cached: every published result covers the same prompts, so this is built once.
        """
        chosen = np.zeros(len(self.prompts), dtype=bool)
        chosen[positions] = True
        key = np.packbits(chosen).tobytes()
        if key not in self._subsets:
            keep = chosen[self.owner]
            unique = _unique_rows(self.spans[keep])
            self._subsets[key] = (self.spans[keep], self.kinds[keep], unique,
                                  _coverage_prefix(unique, self.length))
        return self._subsets[key]


class Ranked:
    """A result flattened once: every unit of every prompt with its rank inside its prompt
    (score descending, ties in prompt order). Independent of labels, so one ``Ranked`` serves
    both label versions.

    ``result``: prompt text -> object with ``spans`` ``(n, 2)`` and ``scores`` ``(n,)``
    (a :class:`common.results.PromptScores`).
    """

    def __init__(self, result: Mapping):
        self.prompts = list(result)
        parts = [result[p] for p in self.prompts]
        self.sizes = np.fromiter((len(r.scores) for r in parts), dtype=np.int64, count=len(parts))
        self.owner = np.repeat(np.arange(len(parts)), self.sizes)
        if parts:
            self.spans = np.concatenate([np.asarray(r.spans, dtype=np.int64).reshape(-1, 2)
                                         for r in parts])
            scores = np.concatenate([np.asarray(r.scores, dtype=np.float64) for r in parts])
        else:
            self.spans, scores = np.zeros((0, 2), dtype=np.int64), np.zeros(0)
        order = np.lexsort((np.arange(len(scores)), -scores, self.owner))
        sorted_owner = self.owner[order]
        self.rank = np.empty(len(scores), dtype=np.int64)
        self.rank[order] = np.arange(len(scores)) - np.searchsorted(sorted_owner, sorted_owner)


class Scorer:
    """One result against one :class:`LabelIndex`; ``score(k)`` is cheap for every k.

    Only prompts of ``prompts`` (default: all of the result) that have labels are scored.
    """

    def __init__(self, result: Mapping | Ranked, index: LabelIndex,
                 prompts: Iterable[str] | None = None):
        ranked = result if isinstance(result, Ranked) else Ranked(result)
        wanted = None if prompts is None else set(prompts)
        pos = np.fromiter((index.position.get(p, -1) if wanted is None or p in wanted else -1
                           for p in ranked.prompts), dtype=np.int64, count=len(ranked.prompts))
        self.index = index
        self.n_prompts = int((pos >= 0).sum())
        keep = pos[ranked.owner] >= 0
        if keep.all():
            owner, spans, self.rank = ranked.owner, ranked.spans, ranked.rank
        else:
            owner, spans, self.rank = ranked.owner[keep], ranked.spans[keep], ranked.rank[keep]
        units = spans + index.offset[pos[owner]][:, None]
        # sorted by (start, end) on the global axis, so the top-k spans come out sorted and
        # de-duplicating them is a neighbour comparison
        self._base = index.length + 1
        order = np.argsort(units[:, 0] * self._base + units[:, 1], kind="stable")
        self.units, self.rank = units[order], self.rank[order]
        self._any_empty = bool((self.units[:, 1] == self.units[:, 0]).any())
        self.human, self.human_kinds, self.human_unique, self.human_prefix = \
            index.subset(pos[pos >= 0])
        self.unit_is_human = overlaps_any(self.units, self.human)

    def topk_mask(self, k: int) -> np.ndarray:
        return self.rank < k

    def _parts(self, k: int) -> tuple:
        """Top-k units, their distinct spans, each distinct top unit's precision term, each
        distinct human span's recall term, and each unit's model code."""
        top = self.units[self.topk_mask(k)]
        keys = top[:, 0] * self._base + top[:, 1]
        top_unique = top[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(top) else top
        # precision: each distinct top-k unit, human coverage inside it / its length
        width = top_unique[:, 1] - top_unique[:, 0]
        covered = self.human_prefix[top_unique[:, 1]] - self.human_prefix[top_unique[:, 0]]
        p_each = np.divide(covered, width, out=np.zeros(len(width)), where=width > 0)
        # recall: each distinct human span, top-k coverage inside it / its length
        model_prefix = _coverage_prefix(top_unique, self.index.length)
        hu = self.human_unique
        h_width = hu[:, 1] - hu[:, 0]
        h_cov = model_prefix[hu[:, 1]] - model_prefix[hu[:, 0]]
        r_each = np.divide(h_cov, h_width, out=np.zeros(len(hu)), where=h_width > 0)
        if self._any_empty:  # empty spans overlap by containment: the general search
            model_code = overlaps_any(self.units, top)
        else:
            model_code = model_prefix[self.units[:, 1]] > model_prefix[self.units[:, 0]]
        return top, top_unique, p_each, r_each, model_code

    def score(self, k: int) -> Score:
        top, _, p_each, r_each, model_code = self._parts(k)
        p_sum, r_sum = float(np.sum(p_each)), float(np.sum(r_each))
        precision = p_sum / len(top) if len(top) else 0.0
        recall = r_sum / len(self.human) if len(self.human) else 0.0
        alpha = alpha_binary(self.unit_is_human, model_code)
        return Score(k, precision, recall, f1_of(precision, recall), alpha, self.n_prompts,
                     len(self.units), len(top), len(self.human))

    def _owner(self, starts: np.ndarray) -> np.ndarray:
        """Index position of the prompt each global start offset lies in."""
        return np.searchsorted(self.index.offset, starts, "right") - 1

    def prompt_stats(self, k: int) -> np.ndarray:
        """Per-prompt sufficient statistics, ``(n index prompts, 7)`` in :data:`STAT_FIELDS`
        order; prompts not scored are rows of zeros.

        Summed over prompts they give back :meth:`score` (precision = p_sum / n_top, recall =
        r_sum / n_human, alpha from units, disagreements and n1), so a bootstrap over prompts
        is a weight matrix times this array (:mod:`common.stats`).
        """
        n = len(self.index.prompts)
        top, top_unique, p_each, r_each, model_code = self._parts(k)
        if not hasattr(self, "_unit_owner"):
            self._unit_owner = self._owner(self.units[:, 0])
            self._human_owner = self._owner(self.human[:, 0])
            self._human_unique_owner = self._owner(self.human_unique[:, 0])
        out = np.zeros((n, len(STAT_FIELDS)))
        out[:, 0] = np.bincount(self._owner(top_unique[:, 0]), p_each, minlength=n)
        out[:, 1] = np.bincount(self._owner(top[:, 0]), minlength=n)
        out[:, 2] = np.bincount(self._human_unique_owner, r_each, minlength=n)
        out[:, 3] = np.bincount(self._human_owner, minlength=n)
        out[:, 4] = np.bincount(self._unit_owner, minlength=n)
        out[:, 5] = np.bincount(self._unit_owner, self.unit_is_human != model_code, minlength=n)
        out[:, 6] = np.bincount(self._unit_owner, self.unit_is_human.astype(np.int64)
                                + model_code, minlength=n)
        return out

    def label_coverage(self, k: int) -> dict[str, float]:
        """Share of human keywords of each type that overlap a top-k unit."""
        hit = overlaps_any(self.human, self.units[self.topk_mask(k)])
        return {label: float(hit[self.human_kinds == label].mean())
                if (self.human_kinds == label).any() else float("nan") for label in LABELS}


def score(result: Mapping | Ranked, labels: Mapping[str, Iterable] | LabelIndex, ks: Iterable[int] = KS,
          prompts: Iterable[str] | None = None) -> dict[int, Score]:
    """Score one result at each k; ``labels`` is prompt -> spans (or Keywords) or an index."""
    index = labels if isinstance(labels, LabelIndex) else LabelIndex(labels)
    scorer = Scorer(result, index, prompts)
    return {k: scorer.score(k) for k in ks}
