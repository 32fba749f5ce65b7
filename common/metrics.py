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
    return _alpha_of_counts(human.size, int(human.sum()), int(model.sum()),
                            int((human & model).sum()))


def _alpha_of_counts(units: int, human: int, model: int, both: int) -> float:
    """:func:`alpha_binary` from its counts: units, units each coder codes 1, and both do."""
    n = 2 * units
    n1 = human + model
    n0 = n - n1
    if n0 == 0 or n1 == 0:
        return float("nan")  # one value only: alpha is undefined
    disagree = n1 - 2 * both
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


class _Cover:
    """Total overlap of a set of spans (with multiplicity) with ``[0, x)``, for many ``x``:
    ``F(x) = sum_m clip(x - m0, 0, m1 - m0) = sum_{m0 < x} (x - m0) - sum_{m1 < x} (x - m1)``,
    from sorted endpoints and their prefix sums. ``F(b) - F(a)`` is the summed overlap of
    ``[a, b)`` with the spans, the same as the difference of a per-character coverage prefix
    over the global axis, without a pass over that axis (a top-k set is a few thousand spans,
    the axis almost a million characters)."""

    def __init__(self, spans: np.ndarray):
        self.starts, self.ends = np.sort(spans[:, 0]), np.sort(spans[:, 1])
        self.start_sums = np.concatenate([[0], np.cumsum(self.starts)])
        self.end_sums = np.concatenate([[0], np.cumsum(self.ends)])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.starts, x, "left")
        j = np.searchsorted(self.ends, x, "left")
        return (i * x - self.start_sums[i]) - (j * x - self.end_sums[j])

    def between(self, spans: np.ndarray) -> np.ndarray:
        """Summed overlap of each span ``(a, b)`` with the set."""
        return self(spans[:, 1]) - self(spans[:, 0])


def _unique_rows(spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct spans (sorted) and the index of each span among them; one int64 key per span is
    far faster than ``np.unique(axis=0)``."""
    if not len(spans):
        return spans.reshape(0, 2), np.zeros(0, dtype=np.int64)
    base = int(spans.max()) + 1
    keys, inverse = np.unique(spans[:, 0] * base + spans[:, 1], return_inverse=True)
    return np.stack([keys // base, keys % base], axis=1), inverse.reshape(-1)


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
        #: each span's label as its position in LABELS (len(LABELS) for none of them)
        self._kind_codes = np.full(len(self.kinds), len(LABELS), dtype=np.int64)
        for i, label in enumerate(LABELS):
            self._kind_codes[self.kinds == label] = i
        self._subsets: dict[bytes, tuple] = {}
        self._geometries: dict[tuple, list[_Geometry]] = {}
        self._positions: dict[tuple, np.ndarray] = {}

    def positions(self, prompts: list[str], only: Iterable[str] | None = None) -> np.ndarray:
        """Index position of each prompt, -1 for prompts without labels or outside ``only``.
        Cached for the full set: the results of one benchmark share one prompt list."""
        key = tuple(prompts)
        if only is None and key in self._positions:
            return self._positions[key]
        wanted = None if only is None else set(only)
        pos = np.fromiter((self.position.get(p, -1) if wanted is None or p in wanted else -1
                           for p in prompts), dtype=np.int64, count=len(prompts))
        if only is None:
            self._positions[key] = pos
        return pos

    def owner_of(self, starts: np.ndarray) -> np.ndarray:
        """Position of the prompt each global start offset lies in."""
        return np.searchsorted(self.offset, starts, "right") - 1

    def geometry(self, units: np.ndarray, unit_owner: np.ndarray, positions: np.ndarray) -> _Geometry:
        """The :class:`_Geometry` of sorted global ``units`` (owned by the prompts
        ``unit_owner``) scored on the prompts ``positions``: reused for equal units on the same
        prompts (the methods of one model), found by a cheap fingerprint and checked in full."""
        n = len(units)
        key = (self._chosen(positions)[1], n,
               tuple(units[[0, n // 2, n - 1]].ravel().tolist()) if n else ())
        for g in self._geometries.get(key, ()):
            if np.array_equal(g.units, units):  # equal units have equal owners
                return g
        if sum(map(len, self._geometries.values())) >= 32:  # a few MB each
            self._geometries.clear()
        g = _Geometry(self, units, unit_owner, positions)
        self._geometries.setdefault(key, []).append(g)
        return g

    def _chosen(self, positions: np.ndarray) -> tuple[np.ndarray, bytes]:
        """The prompts at ``positions`` as a mask over the index, and as a compact cache key."""
        chosen = np.zeros(len(self.prompts), dtype=bool)
        chosen[positions] = True
        return chosen, np.packbits(chosen).tobytes()

    def subset(self, positions: np.ndarray) -> tuple:
        """Human spans, kinds, distinct spans, their :class:`_Cover`, each human span's label
        code (its position in ``LABELS``) and its index among the distinct spans, for some
        prompts.

        Cached: every published result covers the same prompts, so this is built once.
        """
        chosen, key = self._chosen(positions)
        if key not in self._subsets:
            keep = chosen[self.owner]
            unique, inverse = _unique_rows(self.spans[keep])
            self._subsets[key] = (self.spans[keep], self.kinds[keep], unique, _Cover(unique),
                                  self._kind_codes[keep],
                                  inverse)
        return self._subsets[key]


class Ranked:
    """A result flattened once: every unit of every prompt with its rank inside its prompt
    (score descending, ties in prompt order). Independent of labels, so one ``Ranked`` serves
    both label versions.

    ``result``: prompt text -> object with ``spans`` ``(n, 2)`` and ``scores`` ``(n,)``
    (a :class:`common.results.PromptScores`).
    """

    def __init__(self, result: Mapping):
        prompts = list(result)
        parts = [result[p] for p in prompts]
        sizes = np.fromiter((len(r.scores) for r in parts), dtype=np.int64, count=len(parts))
        if parts:
            spans = np.concatenate([np.asarray(r.spans, dtype=np.int64).reshape(-1, 2)
                                    for r in parts])
            scores = np.concatenate([np.asarray(r.scores, dtype=np.float64) for r in parts])
        else:
            spans, scores = np.zeros((0, 2), dtype=np.int64), np.zeros(0)
        self._set(prompts, sizes, spans, scores)

    @classmethod
    def from_flat(cls, prompts: list[str], sizes: np.ndarray, spans: np.ndarray,
                  scores: np.ndarray, rank: np.ndarray | None = None) -> Ranked:
        """From units already concatenated in prompt order (``sizes[i]`` units of
        ``prompts[i]``): no per-prompt objects. A ``rank`` saved earlier (:attr:`rank`) is
        used when it is the rank of ``scores`` (checked in linear time), else recomputed."""
        self = cls.__new__(cls)
        self._set(list(prompts), np.asarray(sizes, dtype=np.int64),
                  np.asarray(spans, dtype=np.int64).reshape(-1, 2),
                  np.asarray(scores, dtype=np.float64), rank)
        return self

    def _set(self, prompts, sizes, spans, scores, rank=None) -> None:
        if sizes.sum() != len(spans) or len(spans) != len(scores) or len(sizes) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts, {int(sizes.sum())} units by size, "
                             f"{len(spans)} spans and {len(scores)} scores do not agree")
        self.prompts, self.sizes, self.spans = prompts, sizes, spans
        self.owner = np.repeat(np.arange(len(prompts)), sizes)
        if rank is not None and _is_rank(rank, self.owner, sizes, scores):
            self.rank = rank
            return
        # lexsort is stable: equal scores keep prompt order
        order = np.lexsort((-scores, self.owner))
        sorted_owner = self.owner[order]
        self.rank = np.empty(len(scores), dtype=np.int64)
        self.rank[order] = np.arange(len(scores)) - np.searchsorted(sorted_owner, sorted_owner)


def _is_rank(rank, owner: np.ndarray, sizes: np.ndarray, scores: np.ndarray) -> bool:
    """Is ``rank`` each unit's rank inside its prompt (score descending, ties in prompt order)?"""
    n = len(owner)
    if not (isinstance(rank, np.ndarray) and rank.dtype == np.int64 and rank.shape == (n,)):
        return False
    if n == 0:
        return True
    if ((rank < 0) | (rank >= sizes[owner])).any():
        return False
    slot = (np.cumsum(sizes) - sizes)[owner] + rank  # where each unit sits in rank order
    at = np.full(n, -1, dtype=np.int64)
    at[slot] = np.arange(n)
    if (at < 0).any():  # two units with one rank
        return False
    s = scores[at]  # slots of a prompt are contiguous, so neighbours compare inside a prompt
    ordered = (s[1:] < s[:-1]) | ((s[1:] == s[:-1]) & (at[1:] > at[:-1]))
    return bool(ordered[owner[1:] == owner[:-1]].all())


def _placed(ranked: Ranked, index: LabelIndex, prompts: Iterable[str] | None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A result's units on ``index``'s global axis, in ``(start, end)`` order: the index
    position of each result prompt (-1: not scored), and the rank, global span and index
    position of each scored unit. Independent of the labels, so kept on ``ranked`` for the
    last prompt layout it was placed on: both label versions share one (their prompts are the
    same), and so do their scorers."""
    layout = (tuple(index.prompts), None if prompts is None else frozenset(prompts))
    cached = getattr(ranked, "_placed_on", None)
    if cached is not None and cached[0] == layout:
        return cached[1]
    pos = index.positions(ranked.prompts, prompts)
    keep = pos[ranked.owner] >= 0
    if keep.all():
        owner, spans, rank = ranked.owner, ranked.spans, ranked.rank
    else:
        at = np.flatnonzero(keep)
        owner, spans, rank = ranked.owner.take(at), np.take(ranked.spans, at, axis=0), \
            ranked.rank.take(at)
    unit_owner = pos[owner]
    units = spans + index.offset[unit_owner][:, None]
    # sorted by (start, end) on the global axis, so the top-k spans come out sorted and
    # de-duplicating them is a neighbour comparison
    key = units[:, 0] * (index.length + 1) + units[:, 1]
    if len(key) > 1 and (key[1:] < key[:-1]).any():  # results in index order are sorted
        # a stable sort finds the runs of each prompt's (sorted) units: a few merges
        order = np.argsort(key, kind="stable")
        # np.take on rows: fancy indexing of an (n, 2) array is ten times slower
        units = np.take(units, order, axis=0)
        rank, unit_owner = rank.take(order), unit_owner.take(order)
    out = (pos, rank, units, unit_owner)
    ranked._placed_on = (layout, out)
    return out


@dataclass(frozen=True)
class _Parts:
    """What a :class:`Scorer` computes for one k."""

    n_top: int  # top-k units (duplicates kept)
    top_owner: np.ndarray  # index position of each top-k unit's prompt
    p_each: np.ndarray  # precision term of each distinct top-k unit
    p_owner: np.ndarray  # its prompt
    r_each: np.ndarray  # recall term of each distinct human span
    model_code: np.ndarray  # per unit: does it overlap a top-k unit
    top: np.ndarray | None = None  # the top-k units (general path only)
    #: disjoint path: is each top-k unit (in ``top_owner`` order) a human one; the model then
    #: codes 1 exactly the top-k units, so alpha's counts are sums over them
    top_is_human: np.ndarray | None = None
    #: disjoint path: summed width of the top-k units before each unit (``units + 1``); units
    #: are never empty there, so a range holds a top-k unit exactly when its width sum is > 0
    top_width: np.ndarray | None = None


class _Geometry:
    """What a :class:`Scorer` derives from its units and the human spans, never from the
    scores: every method of one model has the same units, so their scorers share one
    (:meth:`LabelIndex.geometry`)."""

    #: the attributes a scorer takes from its geometry
    SHARED = ("human", "human_kinds", "human_unique", "human_cover", "_kind_codes",
              "_human_to_unique", "_any_empty", "_disjoint", "unit_is_human", "_width",
              "_unique_range", "_human_range", "_unit_precision", "_first", "_last",
              "_first_out", "_last_out", "_unique_width", "_human_unique_owner", "_n_human",
              "_n_units", "_n_human_units", "_n_human_units_total")

    def __init__(self, index: LabelIndex, units: np.ndarray, unit_owner: np.ndarray,
                 positions: np.ndarray):
        self.units = units
        (self.human, self.human_kinds, self.human_unique, self.human_cover, self._kind_codes,
         self._human_to_unique) = index.subset(positions)
        self._any_empty = bool((units[:, 1] == units[:, 0]).any())
        # Disjoint units (words, located tokens: every result we know) make a unit overlap a
        # top-k unit exactly when it is one, and the units overlapping a span a contiguous
        # range in unit order: every k is then a few prefix sums over the units. Otherwise
        # (overlapping or empty units) the general searches.
        u0, u1 = units[:, 0], units[:, 1]
        self._disjoint = (len(units) > 0 and not self._any_empty
                          and bool((u0[1:] >= u1[:-1]).all()))
        self._width = self._unique_range = self._human_range = self._unit_precision = None
        self._first = self._last = self._first_out = self._last_out = self._unique_width = None
        if self._disjoint:
            self._width = u1 - u0
            self._unique_range = _unit_range(units, self.human_unique)
            self._human_range = (self._unique_range[0][self._human_to_unique],
                                 self._unique_range[1][self._human_to_unique])
            # every (distinct human span, unit it overlaps) pair, from the ranges
            lo, hi = self._unique_range
            counts = hi - lo
            h = np.repeat(np.arange(len(lo)), counts)
            u = lo[h] + np.arange(len(h)) - np.repeat(np.cumsum(counts) - counts, counts)
            hu = self.human_unique
            overlap = (np.minimum(hu[:, 1].take(h), u1.take(u))
                       - np.maximum(hu[:, 0].take(h), u0.take(u)))
            n = len(units)
            self._unit_precision = np.bincount(u, overlap, minlength=n) / self._width
            self.unit_is_human = np.bincount(u, minlength=n) > 0
            # the parts of the first and last unit of each range that stick out of the span
            some = hi > lo
            self._first, self._last = np.minimum(lo, n - 1), np.maximum(hi - 1, 0)
            self._first_out = np.where(some, np.maximum(hu[:, 0] - u0[self._first], 0), 0)
            self._last_out = np.where(some, np.maximum(u1[self._last] - hu[:, 1], 0), 0)
            self._unique_width = hu[:, 1] - hu[:, 0]
        else:
            self.unit_is_human = overlaps_any(units, self.human)
        # per index prompt: the k-independent columns of Scorer.prompt_stats
        n = len(index.prompts)
        self._human_unique_owner = index.owner_of(self.human_unique[:, 0])
        self._n_human = np.bincount(index.owner_of(self.human[:, 0]), minlength=n)
        self._n_units = np.bincount(unit_owner, minlength=n)
        self._n_human_units = np.bincount(unit_owner, self.unit_is_human, minlength=n)
        self._n_human_units_total = int(np.count_nonzero(self.unit_is_human))


def _unit_range(units: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi)``: the (disjoint, sorted) ``units`` overlapping each span, by the overlap rule
    (``u1 > s0 and u0 < s1``; an empty span overlaps the unit strictly containing it)."""
    lo = np.searchsorted(units[:, 1], spans[:, 0], "right")
    hi = np.searchsorted(units[:, 0], spans[:, 1], "left")
    return lo, np.maximum(hi, lo)


class Scorer:
    """One result against one :class:`LabelIndex`; ``score(k)`` is cheap for every k.

    Only prompts of ``prompts`` (default: all of the result) that have labels are scored.
    """

    def __init__(self, result: Mapping | Ranked, index: LabelIndex,
                 prompts: Iterable[str] | None = None):
        ranked = result if isinstance(result, Ranked) else Ranked(result)
        self.index = index
        pos, self.rank, units, unit_owner = _placed(ranked, index, prompts)
        self.n_prompts = int((pos >= 0).sum())
        #: per index prompt: is it scored (in the result, with labels, among ``prompts``)
        self.scored = np.zeros(len(index.prompts), dtype=bool)
        self.scored[pos[pos >= 0]] = True
        self._base = index.length + 1
        self.units = units
        self._unit_owner = unit_owner
        geometry = index.geometry(units, unit_owner, pos[pos >= 0])
        for name in _Geometry.SHARED:
            setattr(self, name, getattr(geometry, name))
        self._parts_of: dict[int, _Parts] = {}

    def topk_mask(self, k: int) -> np.ndarray:
        return self.rank < k

    def _parts(self, k: int) -> _Parts:
        """The per-k terms, computed once per k: :meth:`score`, :meth:`prompt_stats` and
        :meth:`label_coverage` share them."""
        if k not in self._parts_of:
            self._parts_of[k] = (self._disjoint_parts(k) if self._disjoint
                                 else self._general_parts(k))
        return self._parts_of[k]

    def _disjoint_parts(self, k: int) -> _Parts:
        mask = self.topk_mask(k)
        top = np.flatnonzero(mask)  # integer takes are several times faster than boolean masks
        top_width = np.zeros(len(mask) + 1, dtype=np.int64)
        np.cumsum(self._width * mask, out=top_width[1:])
        # recall: top-k width inside each distinct human span's unit range, minus the parts of
        # the range's first and last unit outside the span when those units are top-k
        lo, hi = self._unique_range
        covered = (top_width[hi] - top_width[lo] - self._first_out * mask[self._first]
                   - self._last_out * mask[self._last])
        r_each = np.divide(covered, self._unique_width, out=np.zeros(len(covered)),
                           where=self._unique_width > 0)
        owner = self._unit_owner.take(top)
        return _Parts(len(top), owner, self._unit_precision.take(top), owner, r_each, mask,
                      top_is_human=self.unit_is_human.take(top), top_width=top_width)

    def _general_parts(self, k: int) -> _Parts:
        top = np.take(self.units, np.flatnonzero(self.topk_mask(k)), axis=0)
        keys = top[:, 0] * self._base + top[:, 1]
        top_unique = top[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(top) else top
        # precision: each distinct top-k unit, human coverage inside it / its length
        width = top_unique[:, 1] - top_unique[:, 0]
        covered = self.human_cover.between(top_unique)
        p_each = np.divide(covered, width, out=np.zeros(len(width)), where=width > 0)
        # recall: each distinct human span, top-k coverage inside it / its length
        hu = self.human_unique
        h_width = hu[:, 1] - hu[:, 0]
        h_cov = _Cover(top_unique).between(hu)
        r_each = np.divide(h_cov, h_width, out=np.zeros(len(hu)), where=h_width > 0)
        # empty spans overlap by containment: the general search
        model_code = overlaps_any(self.units, top)
        return _Parts(len(top), self.index.owner_of(top[:, 0]), p_each, self.index.owner_of(top_unique[:, 0]),
                      r_each, model_code, top=top)

    def score(self, k: int) -> Score:
        parts = self._parts(k)
        n_top = parts.n_top
        p_sum, r_sum = float(np.sum(parts.p_each)), float(np.sum(parts.r_each))
        precision = p_sum / n_top if n_top else 0.0
        recall = r_sum / len(self.human) if len(self.human) else 0.0
        if parts.top_is_human is None:
            alpha = alpha_binary(self.unit_is_human, parts.model_code)
        else:  # alpha_binary's counts, from the top-k units alone
            alpha = _alpha_of_counts(len(self.units), self._n_human_units_total, n_top,
                                     int(np.count_nonzero(parts.top_is_human)))
        return Score(k, precision, recall, f1_of(precision, recall), alpha, self.n_prompts,
                     len(self.units), n_top, len(self.human))


    def prompt_stats(self, k: int) -> np.ndarray:
        """Per-prompt sufficient statistics, ``(n index prompts, 7)`` in :data:`STAT_FIELDS`
        order; prompts not scored are rows of zeros.

        Summed over prompts they give back :meth:`score` (precision = p_sum / n_top, recall =
        r_sum / n_human, alpha from units, disagreements and n1), so a bootstrap over prompts
        is a weight matrix times this array (:mod:`common.stats`).
        """
        n = len(self.index.prompts)
        parts = self._parts(k)
        out = np.zeros((n, len(STAT_FIELDS)))
        out[:, 0] = np.bincount(parts.p_owner, parts.p_each, minlength=n)
        out[:, 1] = np.bincount(parts.top_owner, minlength=n)
        out[:, 2] = np.bincount(self._human_unique_owner, parts.r_each, minlength=n)
        out[:, 3] = self._n_human
        out[:, 4] = self._n_units
        # units coded 1 by the model, and by both coders
        if parts.top_is_human is None:
            model = np.bincount(self._unit_owner, parts.model_code, minlength=n)
            both = np.bincount(self._unit_owner, self.unit_is_human & parts.model_code, minlength=n)
        else:  # the model codes 1 the top-k units
            model = out[:, 1]
            both = np.bincount(parts.top_owner, parts.top_is_human, minlength=n)
        out[:, 5] = self._n_human_units + model - 2 * both  # disagreements
        out[:, 6] = self._n_human_units + model
        return out

    def label_coverage(self, k: int) -> dict[str, float]:
        """Share of human keywords of each type that overlap a top-k unit."""
        parts = self._parts(k)
        if self._disjoint:  # a top-k unit inside the span's unit range
            lo, hi = self._human_range
            hit = parts.top_width.take(hi) - parts.top_width.take(lo) > 0
        else:
            hit = overlaps_any(self.human, parts.top)
        n = len(LABELS) + 1
        total = np.bincount(self._kind_codes, minlength=n)
        hits = np.bincount(self._kind_codes, hit, minlength=n)
        return {label: float(hits[i] / total[i]) if total[i] else float("nan")
                for i, label in enumerate(LABELS)}


def score(result: Mapping | Ranked, labels: Mapping[str, Iterable] | LabelIndex, ks: Iterable[int] = KS,
          prompts: Iterable[str] | None = None) -> dict[int, Score]:
    """Score one result at each k; ``labels`` is prompt -> spans (or Keywords) or an index."""
    index = labels if isinstance(labels, LabelIndex) else LabelIndex(labels)
    scorer = Scorer(result, index, prompts)
    return {k: scorer.score(k) for k in ks}
