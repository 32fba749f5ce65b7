import pickle

import numpy as np
import pytest

from common import results
from common.results import AttributionResult, ResultFileError, ResultWriter


def test_published_pickle_is_located(tmp_path):
    prompt = "Write a function to sort a list."
    path = tmp_path / "saliency_reading_tiny.pkl"
    path.write_bytes(pickle.dumps({prompt: [("Write", np.float32(0.5)), ("zzz", 0.9),
                                            ("sort", 0.25), ("list", 0.125)]}))
    r = AttributionResult.from_published(path)
    assert (r.method, r.model, r.source) == ("saliency_reading", "tiny", "published")
    ps = r.prompts[prompt]
    assert ps.texts(prompt) == ["Write", "sort", "list"]  # "zzz" is not in the prompt
    assert ps.scores.tolist() == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("payload, message", [
    (["not", "a", "dict"], "expected a dict"),
    ({"p": [("a", "high")]}, r"entry 1, unit 0: \('a', 'high'\) is not \(token, score\)"),
    ({"p": [("a", float("nan"))]}, "entry 1, unit 0: bad unit"),
    ({"p": 3}, "entry 1: expected str -> list"),
])
def test_malformed_published_files_are_named(tmp_path, payload, message):
    path = tmp_path / "m_x.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ResultFileError, match=message):
        AttributionResult.from_published(path)


def test_writer_round_trip_and_resume(tmp_path):
    path = results.result_path(tmp_path, "saliency_coding", "org/My_Model")
    assert path.name == "saliency_coding_org--My-Model.jsonl"
    w = ResultWriter(path, "saliency_coding", "my-model", {"device": "cpu"})
    w.add("t/1", "sort the list", [(0, 4), (9, 13)], [0.75, 0.25], generation="return sorted(x)")
    w.fail("t/2", "add two numbers", "prompt longer than the context (2048 tokens)")
    again = ResultWriter(path, "saliency_coding", "my-model")
    assert again.done == {"t/1", "t/2"}
    r = AttributionResult.load(path)
    assert r.meta == {"device": "cpu"}
    assert r.prompts["sort the list"].spans.tolist() == [[0, 4], [9, 13]]
    assert r.generations == {"t/1": "return sorted(x)"}
    assert r.failures == {"t/2": "prompt longer than the context (2048 tokens)"}
    assert [d[1:3] for d in results.discover(tmp_path)] == [("saliency_coding", "my-model")]


def test_torn_last_line_is_dropped_and_cut_on_reopen(tmp_path):
    path = tmp_path / "r.jsonl"
    w = ResultWriter(path, "m", "x")
    w.add("t/1", "abc", [(0, 3)], [1.0])
    with open(path, "a") as f:
        f.write('{"task_id": "t/2", "prompt": "de')  # killed mid-write
    torn = r"r.jsonl, line 3: torn last line ignored \(task t/2 is lost"
    with pytest.warns(results.ResultWarning, match=torn):
        assert set(AttributionResult.load(path).prompts) == {"abc"}
    w2 = ResultWriter(path, "m", "x")
    assert w2.done == {"t/1"}
    assert path.read_text().endswith("\n")
    w2.add("t/2", "def", [(0, 3)], [1.0])
    assert set(AttributionResult.load(path).prompts) == {"abc", "def"}


def test_writer_refuses_another_results_file(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultWriter(path, "m", "x")
    with pytest.raises(ResultFileError, match="holds m_x, not n_x"):
        ResultWriter(path, "n", "x")


@pytest.mark.parametrize("line, message", [
    ('{"task_id": 1, "prompt": "abc"}', "line 2: a record needs string"),
    ('{"task_id": "t", "prompt": "abc", "spans": [[0, 9]], "scores": [1.0]}', "outside the prompt"),
    ('{"task_id": "t", "prompt": "abc", "spans": [[0, 1]], "scores": [1.0, 2.0]}', "1 spans, 2 scores"),
    ("not json", "line 2: not JSON"),
])
def test_malformed_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "r.jsonl"
    ResultWriter(path, "m", "x")
    with open(path, "a") as f:
        f.write(line + "\n")
    with pytest.raises(ResultFileError, match=message):
        AttributionResult.load(path)


def test_open_append_reload_with_details(tmp_path):
    from common.method import Attribution

    path = tmp_path / "coding_last_tiny.jsonl"
    r = AttributionResult.open(path, "coding_last", "tiny", {"method": {"k": 1}})
    r.append("t/1", "ab cd", Attribution([(0, 2), (3, 5)], [0.1, 0.9], "pass", {"fills": ["x", "y"]}))
    r.append("t/2", "ef", failure="no function body", generation="x = 1")
    assert r.done == {"t/1", "t/2"} and len(r) == 1  # in memory as written
    back = AttributionResult.load(path)
    assert back.prompts["ab cd"].scores.tolist() == [0.1, 0.9]
    assert back.generations == {"t/1": "pass", "t/2": "x = 1"}
    assert back.details == {"t/1": {"fills": ["x", "y"]}} and back.failures == {"t/2": "no function body"}
    assert back.meta == {"method": {"k": 1}} and back.task_ids == ["t/1"]
    assert [p.name for p in tmp_path.iterdir()] == ["coding_last_tiny.jsonl"]
    # reopening resumes: the same tasks are done, appending goes on
    again = AttributionResult.open(path, "coding_last", "tiny", {"method": {"k": 1}}, match_meta=("method",))
    assert again.done == {"t/1", "t/2"}
    with pytest.raises(ResultFileError, match="method"):
        AttributionResult.open(path, "coding_last", "tiny", {"method": {"k": 2}}, match_meta=("method",))
    # a result not opened from a file appends in memory only
    mem = AttributionResult("m", "x", {})
    mem.append("t/9", "gh", Attribution([(0, 2)], [1.0]))
    assert mem.task_ids == ["t/9"]
    with pytest.raises(ValueError, match="either an attribution or a failure"):
        mem.append("t/8", "gh")


def test_writer_refuses_a_file_made_with_other_settings(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultWriter(path, "m", "x", {"dtype": "float32", "note": "a"})
    # keys outside match_meta may differ; the named ones may not
    assert ResultWriter(path, "m", "x", {"dtype": "float32", "note": "b"},
                        match_meta=("dtype",)).done == set()
    with pytest.raises(ResultFileError, match="dtype='float32', this run has 'float16'"):
        ResultWriter(path, "m", "x", {"dtype": "float16"}, match_meta=("dtype",))


def test_located_units_are_cached_and_revalidated(tmp_path):
    prompt = "Write a function to sort a list."
    path = tmp_path / "saliency_reading_tiny.pkl"
    path.write_bytes(pickle.dumps({prompt: [("Write", np.float32(0.5)), ("sort", 0.25), ("list", 0.125)]}))
    fresh = AttributionResult.from_published(path, cache=False)
    assert not list(tmp_path.glob("*.located*"))
    legacy = tmp_path / "saliency_reading_tiny.pkl.located.npz"  # a format-3 cache: replaced
    legacy.write_bytes(b"old")
    first = AttributionResult.from_published(path)
    cache = tmp_path / "saliency_reading_tiny.pkl.located"
    assert cache.is_file() and not legacy.exists()
    again = AttributionResult.from_published(path)  # from the cache
    for r in (first, again):
        assert r.prompts[prompt].spans.tolist() == fresh.prompts[prompt].spans.tolist() == [[0, 5], [20, 24],
                                                                                            [27, 31]]
        assert r.prompts[prompt].scores.tolist() == [0.5, 0.25, 0.125]
    # the pickle changes (another size): the cache is stale and the units are located again
    path.write_bytes(pickle.dumps({prompt: [("function", 1.0)]}))
    assert AttributionResult.from_published(path).prompts[prompt].spans.tolist() == [[8, 16]]
    # a damaged cache is ignored, never trusted
    cache.write_bytes(b"not a located-units file")
    assert AttributionResult.from_published(path).prompts[prompt].spans.tolist() == [[8, 16]]


def test_located_cache_keeps_non_ascii_prompts_and_rejects_spans_outside_them(tmp_path):
    from common import results
    from common.metrics import Ranked

    prompts = {"Écrire une fonction «tri».": [("fonction", 1.0), ("tri", 2.0)],
               "Sort a list → ascending.": [("Sort", 0.5), ("ascending", 0.5)]}
    path = tmp_path / "saliency_reading_tiny.pkl"
    path.write_bytes(pickle.dumps(prompts))
    fresh = AttributionResult.from_published(path, cache=False)
    AttributionResult.from_published(path)  # writes the cache
    flat = results._read_located(path, False)
    assert flat is not None and flat.prompts == list(prompts)
    again = AttributionResult.from_published(path)
    for p in prompts:
        assert again.prompts[p].spans.tolist() == fresh.prompts[p].spans.tolist()
    a, b = Ranked(fresh.prompts), Ranked.from_flat(*results.located_units(path))
    assert a.prompts == b.prompts and a.spans.tolist() == b.spans.tolist()
    assert a.rank.tolist() == b.rank.tolist() == [1, 0, 0, 1]
    # a cache whose spans run past their prompt is not trusted
    results._write_located(path, False, flat._replace(spans=flat.spans + 100))
    assert results._read_located(path, False) is None
    # nor one cut short, one naming an array it may not hold, or one with a non-finite score
    cache = tmp_path / "saliency_reading_tiny.pkl.located"
    results._write_located(path, False, flat)
    whole = cache.read_bytes()
    assert results._read_located(path, False) is not None
    cache.write_bytes(whole[:-16])
    assert results._read_located(path, False) is None
    cache.write_bytes(whole.replace(b'"rank"', b'"evil"'))
    assert results._read_located(path, False) is None
    results._write_located(path, False, flat._replace(scores=np.array([1.0, np.nan, 0.5, 0.5])))
    assert results._read_located(path, False) is None
    assert AttributionResult.from_published(path).prompts[list(prompts)[0]].spans.tolist() == \
        fresh.prompts[list(prompts)[0]].spans.tolist()
