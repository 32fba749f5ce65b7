"""Hand-computed cases for top-k, P/R/F1 and alpha; the vectorised scorer against the
per-prompt reference on random data."""

import krippendorff
import numpy as np
import pytest

from common.metrics import LabelIndex, Ranked, Scorer, alpha_binary, overlaps_any, score
from common.reference import score_reference
from common.results import PromptScores


def ps(spans, scores):
    return PromptScores(np.asarray(spans, dtype=np.int64).reshape(-1, 2),
                        np.asarray(scores, dtype=np.float64))


PROMPT = "abcdefghij"


def test_hand_computed_precision_recall_f1_alpha():
    # units (0,2)=.9 (2,5)=.1 (5,6)=.5 (6,10)=.5; humans (1,3) (6,8); k=2.
    # top-2: (0,2), then the tie at .5 resolved in prompt order -> (5,6).
    # P: |(1,3)&(0,2)|/|(0,2)| = 1/2, over 2 top units -> .25; R: 1/2 over 2 humans -> .25.
    # human codes [1,1,0,1], model codes [1,0,1,0]: D=3, n=8, n1=5, n0=3
    # alpha = 1 - 7*3/(3*5) = -0.4
    result = {PROMPT: ps([(0, 2), (2, 5), (5, 6), (6, 10)], [0.9, 0.1, 0.5, 0.5])}
    s = score(result, {PROMPT: [(1, 3), (6, 8)]}, ks=[2])[2]
    assert s.precision == pytest.approx(0.25)
    assert s.recall == pytest.approx(0.25)
    assert s.f1 == pytest.approx(0.25)
    assert s.alpha == pytest.approx(-0.4)
    assert (s.n_topk, s.n_human, s.n_units) == (2, 2, 4)


def test_top_k_ties_keep_prompt_order():
    result = {PROMPT: ps([(0, 1), (1, 2), (2, 3), (3, 4)], [1.0, 1.0, 1.0, 1.0])}
    scorer = Scorer(result, LabelIndex({PROMPT: [(2, 3)]}))
    assert scorer.units[scorer.topk_mask(2)].tolist() == [[0, 1], [1, 2]]
    assert result[PROMPT].top_k(2).tolist() == [0, 1]
    # the human word is third in prompt order: outside the top-2 despite the equal score
    assert score(result, {PROMPT: [(2, 3)]}, ks=[2])[2].recall == 0.0


def test_duplicate_human_spans_counted_once_in_sums_but_twice_in_denominator():
    # set(H) in the numerator, len(H) in the denominator, as the published scorer does
    result = {PROMPT: ps([(0, 4)], [1.0])}
    s = score(result, {PROMPT: [(0, 2), (0, 2)]}, ks=[1])[1]
    assert s.precision == pytest.approx(2 / 4)
    assert s.recall == pytest.approx(1.0 / 2)


def test_recall_uses_human_length_and_partial_overlaps():
    # human (2,6) covered on 2 chars by (0,4) and on 2 chars by (4,8): recall 4/4
    result = {PROMPT: ps([(0, 4), (4, 8)], [2.0, 1.0])}
    s = score(result, {PROMPT: [(2, 6)]}, ks=[2])[2]
    assert s.recall == pytest.approx(1.0)
    assert s.precision == pytest.approx((2 / 4 + 2 / 4) / 2)


def test_overlap_rule_for_empty_spans():
    units = np.array([[2, 5], [3, 3], [3, 3], [7, 9]])
    # empty human (3,3) lies strictly inside (2,5); an empty unit (3,3) inside human (2,5);
    # two empty spans at the same point do not overlap; touching ends do not overlap.
    assert overlaps_any(units, np.array([[3, 3]])).tolist() == [True, False, False, False]
    assert overlaps_any(units, np.array([[2, 5]])).tolist() == [True, True, True, False]
    assert overlaps_any(units, np.array([[5, 7]])).tolist() == [False, False, False, False]
    assert overlaps_any(units, np.zeros((0, 2), dtype=np.int64)).tolist() == [False] * 4


def test_alpha_closed_form_matches_krippendorff_package():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 400))
        h = rng.random(n) < rng.random()
        m = rng.random(n) < rng.random()
        if len(set(h) | set(m)) < 2:
            continue
        ref = krippendorff.alpha(reliability_data=[h.astype(int), m.astype(int)],
                                 level_of_measurement="nominal")
        assert alpha_binary(h, m) == pytest.approx(ref, abs=1e-12)


def test_alpha_undefined_with_one_value():
    assert np.isnan(alpha_binary(np.ones(4, bool), np.ones(4, bool)))


UNIT_KINDS = ("empty", "disjoint", "overlapping")


def _random_case(rng, n_prompts=30, units="empty"):
    """Random prompts, units and labels (empty and duplicate human spans included). ``units``:
    ``disjoint`` cuts of each prompt (words, located tokens); ``empty``: plus an empty unit in
    some prompts; ``overlapping``: plus a unit overlapping others (and a duplicate) in some."""
    result, labels = {}, {}
    for i in range(n_prompts):
        length = int(rng.integers(5, 60))
        prompt = f"{i:03d}" + "x" * length
        cuts = np.sort(rng.choice(np.arange(1, len(prompt)), size=min(8, len(prompt) - 1),
                                  replace=False))
        bounds = np.concatenate([[0], cuts, [len(prompt)]])
        spans = np.stack([bounds[:-1], bounds[1:]], axis=1)
        if units == "empty" and rng.random() < 0.3:  # as an unfound-then-empty token could give
            spans = np.vstack([spans, [[int(spans[1, 0]), int(spans[1, 0])]]])
        if units == "overlapping" and rng.random() < 0.3:
            a = int(rng.integers(0, len(prompt) - 2))
            spans = np.vstack([spans, [[a, int(rng.integers(a + 1, len(prompt) + 1))]], spans[:1]])
        spans = spans[np.argsort(spans[:, 0], kind="stable")]
        scores = rng.integers(0, 4, size=len(spans)).astype(float)  # many ties
        result[prompt] = ps(spans, scores)
        hs = []
        for _ in range(int(rng.integers(0, 6))):
            a = int(rng.integers(0, len(prompt)))
            b = int(rng.integers(a, min(len(prompt), a + 8) + 1))
            hs.append((a, b))
        if hs and rng.random() < 0.3:
            hs.append(hs[0])  # duplicates, as in the published file
        labels[prompt] = hs
    return result, labels


@pytest.mark.parametrize("units", UNIT_KINDS)
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_reference_on_random_data(seed, units):
    rng = np.random.default_rng(seed)
    result, labels = _random_case(rng, units=units)
    ref_input = {p: [(tuple(s), float(v)) for s, v in zip(r.spans, r.scores)]
                 for p, r in result.items()}
    # the disjoint path serves disjoint units only; the general one everything else
    assert Scorer(result, LabelIndex(labels))._disjoint == (units == "disjoint")
    got = score(Ranked(result), labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        p, r, f1, alpha = score_reference(ref_input, labels, k)
        assert got[k].precision == pytest.approx(p, abs=1e-12)
        assert got[k].recall == pytest.approx(r, abs=1e-12)
        assert got[k].f1 == pytest.approx(f1, abs=1e-12)
        assert got[k].alpha == pytest.approx(alpha, abs=1e-12)


def test_scoring_a_subset_of_prompts_ignores_the_others():
    rng = np.random.default_rng(7)
    result, labels = _random_case(rng, 10)
    first = list(result)[:4]
    sub = score(result, labels, ks=[3], prompts=first)[3]
    alone = score({p: result[p] for p in first}, {p: labels[p] for p in first}, ks=[3])[3]
    assert sub == alone
    assert sub.n_prompts == 4


def test_label_coverage_by_type():
    from common.dataset import Keyword
    kws = [Keyword("ab", 0, 2, "operator"), Keyword("ef", 4, 6, "datatype"),
           Keyword("ij", 8, 10, "datatype")]
    result = {PROMPT: ps([(0, 2), (4, 6), (8, 10)], [3.0, 2.0, 1.0])}
    cov = Scorer(result, LabelIndex({PROMPT: kws})).label_coverage(2)
    assert cov["operator"] == 1.0
    assert cov["datatype"] == 0.5
    assert np.isnan(cov["conditional"])


@pytest.mark.parametrize("units", UNIT_KINDS)
def test_label_coverage_equals_a_brute_force_overlap_check(units):
    from common.dataset import LABELS, Keyword
    from common.reference import _touches

    rng = np.random.default_rng(11)
    result, spans = _random_case(rng, units=units)
    labels = {p: [Keyword(p[a:b], a, b, LABELS[int(rng.integers(0, 3))]) for a, b in hs]
              for p, hs in spans.items()}
    scorer = Scorer(result, LabelIndex(labels))
    for k in (1, 3, 5):
        hits = {label: [] for label in LABELS}
        for p, r in result.items():
            order = sorted(range(len(r.scores)), key=lambda i: -r.scores[i])  # ties: prompt order
            top = [tuple(r.spans[i]) for i in order[:k]]
            for kw in labels[p]:
                hits[kw.label].append(any(_touches((kw.start, kw.end), m) for m in top))
        got = scorer.label_coverage(k)
        for label in LABELS:
            if hits[label]:
                assert got[label] == pytest.approx(np.mean(hits[label]), abs=1e-12)
            else:
                assert np.isnan(got[label])


@pytest.mark.parametrize("units", UNIT_KINDS)
def test_prompt_stats_sum_to_the_score_on_every_path(units):
    from common import stats

    result, labels = _random_case(np.random.default_rng(5), units=units)
    scorer = Scorer(result, LabelIndex(labels))
    for k in (1, 3, 5):
        st = scorer.prompt_stats(k)
        m = stats.metrics_of(st.sum(axis=0))
        s = scorer.score(k)
        assert (float(m["precision"]), float(m["recall"]), float(m["alpha"])) == \
            pytest.approx((s.precision, s.recall, s.alpha), abs=1e-12)
        assert st[:, 1].sum() == s.n_topk and st[:, 4].sum() == s.n_units


@pytest.mark.parametrize("units", UNIT_KINDS)
def test_result_order_does_not_matter(units):
    result, labels = _random_case(np.random.default_rng(2), units=units)
    backwards = dict(reversed(list(result.items())))
    assert score(backwards, labels, ks=(1, 4)) == score(result, labels, ks=(1, 4))


def test_a_saved_rank_is_used_only_when_it_is_the_rank_of_the_scores():
    from common.metrics import _is_rank

    result, _ = _random_case(np.random.default_rng(4), units="disjoint")
    r = Ranked(result)
    flat = (r.prompts, r.sizes, r.spans, np.concatenate([result[p].scores for p in r.prompts]))
    assert _is_rank(r.rank, r.owner, r.sizes, flat[3])
    assert Ranked.from_flat(*flat, rank=r.rank.copy()).rank.tolist() == r.rank.tolist()
    first = np.flatnonzero(r.owner == 0)
    scores = flat[3]
    tie = [i for i in first if (scores[first] == scores[i]).sum() > 1]
    bad = []
    swapped = r.rank.copy()  # two units of one prompt with different scores swap ranks
    i, j = next((i, j) for i in first for j in first if scores[i] > scores[j])
    swapped[[i, j]] = swapped[[j, i]]
    bad.append(swapped)
    doubled = r.rank.copy()  # two units with one rank
    doubled[first[1]] = doubled[first[0]]
    bad.append(doubled)
    bad.append(r.rank[:-1])  # wrong length
    bad.append(r.rank.astype(np.float64))
    if tie:  # equal scores out of prompt order
        a, b = tie[0], next(x for x in tie[1:] if scores[x] == scores[tie[0]])
        flipped = r.rank.copy()
        flipped[[a, b]] = flipped[[b, a]]
        bad.append(flipped)
    for rank in bad:
        assert not _is_rank(rank, r.owner, r.sizes, scores)
        assert Ranked.from_flat(*flat, rank=rank).rank.tolist() == r.rank.tolist()  # recomputed
    assert len(bad) == 5


@pytest.mark.parametrize("units", UNIT_KINDS)
def test_one_ranked_result_scored_on_several_indexes_equals_fresh_ones(units):
    rng = np.random.default_rng(9)
    result, labels = _random_case(rng, units=units)
    _, other = _random_case(np.random.default_rng(10), units=units)  # same prompts, other spans
    other = dict(zip(labels, other.values()))
    fewer = dict(list(labels.items())[::2])
    shared = Ranked(dict(reversed(list(result.items()))))  # placed once, reused when it may
    for lab, prompts in [(labels, None), (other, None), (fewer, None), (labels, list(result)[:5]),
                         (labels, None)]:
        got = score(shared, lab, ks=(1, 4), prompts=prompts)
        assert got == score(Ranked(result), lab, ks=(1, 4), prompts=prompts)


@pytest.mark.parametrize("units", UNIT_KINDS)
def test_results_with_the_same_units_share_one_geometry_and_score_as_alone(units):
    rng = np.random.default_rng(4)
    result, labels = _random_case(rng, units=units)
    rescored = {p: ps(r.spans, rng.permutation(r.scores) + 1) for p, r in result.items()}
    # the same count and first, middle and last unit: one other unit moved by one character
    moved = {p: ps(r.spans.copy(), r.scores) for p, r in result.items()}
    inner = next(r for r in moved.values() if len(r.spans) > 3 and r.spans[1, 1] - r.spans[1, 0] > 1)
    inner.spans[1, 1] -= 1
    index = LabelIndex(labels)
    scorers = [Scorer(r, index) for r in (result, rescored, moved)]
    assert scorers[0].unit_is_human is scorers[1].unit_is_human  # shared
    assert scorers[2].unit_is_human is not scorers[0].unit_is_human  # not fooled
    assert [len(found) for found in index._geometries.values()] == [2]  # by the fingerprint
    for r, scorer in zip((result, rescored, moved), scorers):
        alone = Scorer(r, LabelIndex(labels))
        for k in (1, 3, 5):
            assert scorer.score(k) == alone.score(k)
            assert (scorer.prompt_stats(k) == alone.prompt_stats(k)).all()
