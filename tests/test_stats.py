"""Bootstrap intervals, baselines, paired tests, Holm, accuracy-vs-alignment statistics:
hand-computed cases and planted effects."""

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from common import baselines, results, stats, tables
from common.dataset import Task
from common.metrics import STAT_FIELDS, LabelIndex, Ranked, Scorer
from common.results import PromptScores


def ps(spans, scores):
    return PromptScores(np.asarray(spans, dtype=np.int64).reshape(-1, 2),
                        np.asarray(scores, dtype=np.float64))


def stat_rows(rows):
    out = np.zeros((len(rows), len(STAT_FIELDS)))
    for i, r in enumerate(rows):
        for name, v in r.items():
            out[i, STAT_FIELDS.index(name)] = v
    return out


# --- per-prompt statistics ------------------------------------------------------------------

def test_prompt_stats_sum_to_the_pooled_score():
    # the hand-computed case of test_metrics (P = R = F1 = .25, alpha = -.4) plus a second
    # prompt, and a labelled prompt the result does not cover (a row of zeros)
    a, b, c = "abcdefghij", "klmnopqrst", "zz"
    result = {a: ps([(0, 2), (2, 5), (5, 6), (6, 10)], [0.9, 0.1, 0.5, 0.5]),
              b: ps([(0, 3), (3, 10)], [0.2, 0.1])}
    index = LabelIndex({a: [(1, 3), (6, 8)], b: [(0, 3)], c: [(0, 1)]})
    scorer = Scorer(result, index)
    st = scorer.prompt_stats(2)
    assert st.shape == (3, 7)
    # prompt a: p_sum .5, 2 top, r_sum .5, 2 humans, 4 units, D = 3, n1 = 3 + 2 = 5
    assert st[0].tolist() == pytest.approx([0.5, 2, 0.5, 2, 4, 3, 5])
    assert st[2].tolist() == [0] * 7
    m = stats.metrics_of(st.sum(axis=0))
    s = scorer.score(2)
    assert (float(m["precision"]), float(m["recall"]), float(m["f1"]), float(m["alpha"])) == \
        pytest.approx((s.precision, s.recall, s.f1, s.alpha), abs=1e-12)


def test_prompt_stats_equal_score_on_random_data():
    rng = np.random.default_rng(3)
    result, labels = {}, {}
    for i in range(40):
        p = f"prompt {i} " + "x" * 60
        cuts = np.sort(rng.choice(np.arange(1, len(p)), size=12, replace=False))
        spans = np.stack([np.r_[0, cuts[:-1]], cuts], axis=1)
        result[p] = ps(spans, rng.integers(0, 4, len(spans)))
        h0 = rng.integers(0, len(p) - 5, 4)
        labels[p] = [(int(x), int(x + rng.integers(1, 5))) for x in h0]
    scorer = Scorer(result, LabelIndex(labels))
    for k in (1, 3, 8):
        m = stats.metrics_of(scorer.prompt_stats(k).sum(axis=0))
        s = scorer.score(k)
        assert float(m["f1"]) == pytest.approx(s.f1, abs=1e-12)
        assert float(m["alpha"]) == pytest.approx(s.alpha, abs=1e-12)


# --- bootstrap ------------------------------------------------------------------------------

def test_bootstrap_interval_covers_the_known_value():
    # 200 prompts of 2 top units each; half have both units fully human (p_sum 2), half none:
    # precision = .5 exactly; its standard error over prompts is .5/sqrt(200) = .0354, so the
    # 95% percentile interval is about .5 +- .069
    st = stat_rows([{"p_sum": 2 * (i % 2), "n_top": 2} for i in range(200)])
    w = stats.bootstrap_weights(200, 2000, seed=1)
    assert w.sum(axis=1).tolist() == [200] * 2000
    lo, hi = stats.interval(stats.bootstrap_metrics(st, w)["precision"])
    assert lo < 0.5 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(200), rel=0.15)


def test_bootstrap_is_seeded():
    a = stats.bootstrap_weights(50, 10, seed=7)
    assert np.array_equal(a, stats.bootstrap_weights(50, 10, seed=7))
    assert not np.array_equal(a, stats.bootstrap_weights(50, 10, seed=8))


# --- the random baseline ---------------------------------------------------------------------

def _ten_words():
    prompt = " ".join(f"w{i}" for i in range(10))  # ten words "w0".."w9"
    units = [(3 * i, 3 * i + 2) for i in range(10)]
    human = [units[1], units[4], units[7]]         # three of them are the human keywords
    return prompt, units, human


def test_random_baseline_expected_f1_equals_its_closed_form():
    prompt, units, human = _ten_words()
    n, h, k = 10, 3, 5
    # X ~ Hypergeometric(10, 3, 5) hits: P = X/5, R = X/3, F1 = 2X/8, E[X] = 1.5 -> E[F1] = .375
    assert baselines.expected_f1_single_prompt(n, h, k) == pytest.approx(0.375)
    index = LabelIndex({prompt: human})
    scorer = Scorer(Ranked({prompt: ps(units, np.zeros(n))}), index)
    expected = stats.metrics_of(baselines.expected_random_stats(scorer, k).sum(axis=0))
    assert float(expected["f1"]) == pytest.approx(0.375, abs=1e-12)
    # and the exact mean over all C(10, 5) = 252 equally likely top-5 sets
    f1s, alphas, precisions = [], [], []
    for chosen in combinations(range(n), k):
        scores = np.zeros(n)
        scores[list(chosen)] = 1.0
        s = Scorer({prompt: ps(units, scores)}, index).score(k)
        f1s.append(s.f1)
        alphas.append(s.alpha)
        precisions.append(s.precision)
    assert np.mean(f1s) == pytest.approx(0.375, abs=1e-12)
    assert np.mean(precisions) == pytest.approx(float(expected["precision"]), abs=1e-12)
    # alpha is linear in the disagreements once n1 is fixed (it is: k model 1-codes)
    assert np.mean(alphas) == pytest.approx(float(expected["alpha"]), abs=1e-12)


def test_random_baseline_simulation_agrees_with_expectation():
    prompt, units, human = _ten_words()
    index = LabelIndex({prompt: human})
    sim = baselines.simulate_random({prompt: ps(units, np.zeros(10))}, index, 5, draws=400, seed=2)
    # sd of one draw's F1 is .19, so the mean of 400 is within .03 of .375 (3 sd)
    assert sim["f1"] == pytest.approx(0.375, abs=0.03)


def _task(prompt, i):
    return Task("mbpp", f"mbpp/{i}", prompt, (0, len(prompt)), (), "", "", None)


class _FakeDataset:
    def __init__(self, prompts):
        self.tasks = [_task(p, i) for i, p in enumerate(prompts)]

    def prompts(self):
        return {t.prompt: t for t in self.tasks}


def test_first_k_and_rare_words_rankings():
    ds = _FakeDataset(["Write a function to sort the list.",
                       "Write a function to reverse the list.",
                       "Write a function to find the heap."])
    first = baselines.first_k(ds)["Write a function to find the heap."]
    assert first.texts("Write a function to find the heap.")[:2] == ["Write", "a"]
    assert first.top_k(2).tolist() == [0, 1]
    df = baselines.document_frequency(ds)
    assert (df["write"], df["list"], df["heap"]) == (3, 2, 1)
    p = "Write a function to sort the list."
    rare = baselines.rare_words(ds)[p]
    top = [rare.texts(p)[i] for i in rare.top_k(3)]
    # "sort" (df 1) first, then "list" (2), then "Write"/"function" (3; prompt order);
    # "a", "to", "the" are stop words and come last
    assert top == ["sort", "list", "Write"]
    assert set(rare.texts(p)[i] for i in rare.top_k(7)[-3:]) == {"a", "to", "the"}


# --- paired tests and Holm ------------------------------------------------------------------

def _pair_stats(rng, n, better=0.0):
    """(2 methods, n prompts, 1 model, 7): method 0 hits ``better`` more of 10 top units."""
    hits = rng.integers(2, 8, size=n).astype(float)
    out = np.zeros((2, n, 1, 7))
    for m, extra in enumerate((better, 0.0)):
        out[m, :, 0] = np.stack([np.clip(hits + extra * 10, 0, 10), np.full(n, 10), hits,
                                 np.full(n, 10), np.full(n, 30), np.full(n, 8), np.full(n, 20)],
                                axis=1)
    return out


def _diff_f1(v):
    return (v["f1"][:, 0] - v["f1"][:, 1]).mean(axis=-1)


def test_permutation_test_identical_inputs_give_p_one():
    st = _pair_stats(np.random.default_rng(0), 60)
    st[1] = st[0]
    effect, p = stats.permutation_test(st, _diff_f1, [[0, 1]], permutations=500, seed=1)
    assert effect == 0.0 and p == 1.0
    # the general (non-pair) path too
    effect, p = stats.permutation_test(np.concatenate([st, st]), lambda v: (
        v["f1"][:, :2].mean(axis=1) - v["f1"][:, 2:].mean(axis=1)).mean(axis=-1),
        [[0, 1, 2, 3]], permutations=200, seed=1)
    assert p == 1.0


def test_permutation_test_planted_difference_gives_small_p():
    st = _pair_stats(np.random.default_rng(0), 60, better=0.1)
    effect, p = stats.permutation_test(st, _diff_f1, [[0, 1]], permutations=999, seed=1)
    # P rises by .1 (about .45 -> .55) at equal R (about .45): F1 .45 -> .495
    assert effect == pytest.approx(0.045, abs=0.01)
    assert p == pytest.approx(1 / 1000)  # no permutation reaches the planted effect
    # relabelling the sides flips the sign, not the p-value
    effect2, p2 = stats.permutation_test(st[::-1], _diff_f1, [[0, 1]], permutations=999, seed=1)
    assert effect2 == pytest.approx(-effect) and p2 == p


def test_holm_hand_computed():
    # sorted .01, .03, .04 -> x3, x2, x1 = .03, .06, .04 -> monotone .03, .06, .06
    assert stats.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def _synthetic_tables(n=40, bert_bonus=0.0, seed=0):
    """Tables with per-prompt statistics for the five models x twelve methods at k = 5."""
    rng = np.random.default_rng(seed)
    prompt_stats, rows = {}, []
    for model in results.PAPER_MODELS:
        for method in results.PAPER_METHODS:
            hits = rng.integers(1, 5, size=n).astype(float)
            if method == "bert_perturbation":
                hits = hits + bert_bonus
            st = np.stack([hits, np.full(n, 5), hits, np.full(n, 6), np.full(n, 20),
                           10 - hits, np.full(n, 11)], axis=1)
            prompt_stats["corrected", model, method, 5] = st
            m = stats.metrics_of(st.sum(axis=0))
            rows.append(("corrected", model, method, 5, *(float(m[x]) for x in tables.METRICS)))
    t2 = pd.DataFrame(rows, columns=["mode", "model", "method", "k", *tables.METRICS])
    t2["n_tasks"] = n
    return tables.Tables(t2, tables.table3_of(t2), t2.iloc[:0], t2.iloc[:0], prompt_stats,
                         {"corrected": [f"p{i}" for i in range(n)]})


def test_findings_tests_find_a_planted_bert_advantage_and_are_deterministic():
    t = _synthetic_tables(bert_bonus=1.0)
    f = tables.findings_tests(t, ks=(5,), resamples=300, permutations=300)
    assert list(f.columns) == list(tables.FINDINGS_COLUMNS)
    assert len(f) == 3 * 2
    bert = f[(f.claim == "bert_best") & (f.metric == "f1")].iloc[0]
    assert bert.effect > 0 and bert.effect_lo > 0 and bert.p_holm < 0.05 and bert.holds
    assert bert.models_agree == 5
    again = tables.findings_tests(t, ks=(5,), resamples=300, permutations=300)
    pd.testing.assert_frame_equal(f, again)
    # Holm never lowers a p-value
    assert (f.p_holm >= f.p).all()


# --- accuracy vs alignment --------------------------------------------------------------------

def test_point_biserial_and_auc_hand_computed():
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1])
    # r between (1,2,3,4) and (0,0,1,1): cov 0.5, sd 1.118 and 0.5 -> .8944
    assert stats.point_biserial(x, y) == pytest.approx(0.5 / (np.sqrt(1.25) * 0.5))
    assert stats.auc(x, y) == 1.0
    assert stats.auc(np.array([1.0, 1.0, 2.0]), np.array([1, 0, 0])) == pytest.approx(0.25)
    assert np.isnan(stats.point_biserial(x, np.ones(4)))


def test_by_stratum_on_planted_data():
    rng = np.random.default_rng(0)
    n = 300
    passed = rng.random(2 * n) < 0.5
    score = np.where(np.arange(2 * n) < n, passed + rng.normal(0, 0.5, 2 * n), rng.random(2 * n))
    stratum = np.where(np.arange(2 * n) < n, "related", "unrelated")
    res = stats.by_stratum(score, passed, stratum, resamples=300, seed=1).set_index("stratum")
    assert res.loc["related", "auc_lo"] > 0.8 and res.loc["related", "r_pb_lo"] > 0.5
    assert res.loc["unrelated", "auc_lo"] < 0.5 < res.loc["unrelated", "auc_hi"]
    assert res.loc["unrelated", "r_pb_lo"] < 0 < res.loc["unrelated", "r_pb_hi"]
    assert res.n_tasks.tolist() == [n, n]
    with pytest.raises(ValueError, match="same length"):
        stats.by_stratum(score, passed[:-1], stratum)


# --- tables end to end (published files, through the mirror) ---------------------------------

@pytest.fixture(scope="module")
def small_entries(mirror):
    from common import fetch
    out = {}
    for mode in ("paper", "corrected"):
        es = []
        for method, model in [("saliency_coding", "codegen"), ("bert_perturbation", "gpt4")]:
            path = fetch.path_of(f"upstream/experiment_result/{method}_{model}.pkl", mirror=mirror)
            res = results.AttributionResult.from_published(path, False, method, model)
            es.append(tables.Entry("published", method, model, Ranked(res.prompts)))
        out[mode] = es
    return out


def test_same_seed_gives_byte_identical_csvs(small_entries, mirror, tmp_path):
    def run(seed, folder):
        t = tables.compute(small_entries, mirror=mirror, benchmarks=False, resamples=200, seed=seed)
        return {p.name: p.read_bytes() for p in tables.write(t, tmp_path / folder)}, t

    first, t = run(11, "a")
    second, _ = run(11, "b")
    other, _ = run(12, "c")
    assert first == second
    assert first["table2.csv"] != other["table2.csv"]
    t2 = t.table2
    assert list(t2.columns[:8]) == ["mode", "model", "method", "k", "precision", "recall", "f1",
                                    "alpha"]
    assert (t2.f1_lo <= t2.f1).all() and (t2.f1 <= t2.f1_hi).all()
    assert set(t2[t2.model == "baseline"].method) == set(baselines.METHODS)
    # the random baseline's expected precision: hand-check one prompt's closed form
    assert (t2.n_tasks == 1134).all()


def test_outcomes_file_without_status_names_the_file(tmp_path):
    path = tmp_path / "outcomes.csv"
    path.write_text("model,benchmark,task_id\ngpt4,mbpp,mbpp/1\n")
    with pytest.raises(ValueError, match=r"outcomes\.csv: missing columns \['status'\]"):
        tables.load_outcomes(path)


def test_stop_words_read_from_source_equal_sklearns_without_importing_it():
    import subprocess
    import sys
    from pathlib import Path

    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    code = ("import sys; from common import baselines; w = baselines._stop_words(); "
            "print(len(w), 'sklearn' in sys.modules, ','.join(sorted(w)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split(" ", 2)
    assert out[1] == "False"  # the list came from the source file: no scipy import
    assert set(out[2].strip().split(",")) == ENGLISH_STOP_WORDS and int(out[0]) > 300
