import csv

import pytest

from common import dataset
from common.dataset import DatasetError, _corrected, _label_rows


def test_counts(published, corrected):
    for ds in (published, corrected):
        assert len(ds.tasks) == 1138
        assert len(ds.prompts()) == 1134
        assert sum(t.benchmark == "humaneval" for t in ds.tasks) == 164
    assert sum(len(v) for v in published.spans().values()) == 7990


def test_published_mbpp_spans_are_one_character_short(published, corrected):
    prompt = "Write a function to find the longest chain which can be formed from the given set of pairs."
    pub = {k.span for k in published.prompts()[prompt].keywords}
    cor = {k.span: k.text for k in corrected.prompts()[prompt].keywords}
    assert (0, 4) in pub and (0, 5) not in pub
    assert cor[(0, 5)] == "Write"
    assert cor[(85, 91)] == "pairs."


def test_corrected_spans_read_their_words(corrected):
    for prompt, task in corrected.prompts().items():
        for kw in task.keywords:
            assert prompt[kw.start:kw.end] == kw.text
            # mbpp/274's spans come from the published pickle, which carries no types
            assert kw.label in dataset.LABELS or (task.task_id == "mbpp/274" and kw.label == "unknown")


def test_corrections_are_reported(corrected):
    msgs = [str(i) for i in corrected.issues]
    restored = [m for m in msgs if "restored to 'None'" in m]
    assert len(restored) == 6 and all(m.startswith("humaneval.csv, row ") for m in restored)
    dropped = [m for m in msgs if "Type2" in m]
    assert dropped == ["mbpp.csv, row 8: stray label 'Type2' on 'the': dropped",
                       "mbpp.csv, row 9: stray label 'Type2' on 'given': dropped"]
    words = {k.text for t in corrected.prompts().values() for k in t.keywords}
    assert "" not in words


def test_scored_region_and_model_prompt(corrected):
    by_id = corrected.by_id()
    he = by_id["HumanEval/0"]
    a, b = he.region
    assert he.prompt[a:].startswith("def has_close_elements")
    assert he.prompt[b:].startswith(">>>")
    assert he.model_prompt == he.prompt
    mb = by_id["mbpp/601"]
    assert mb.region == (0, len(mb.prompt))
    assert mb.model_prompt == mb.prompt + "\ndef function():"
    assert mb.entry_point == "max_chain_length"
    assert "assert max_chain_length" in mb.test
    assert he.entry_point == "has_close_elements" and "check(has_close_elements)" in he.test


def test_duplicate_mbpp_texts_keep_both_task_ids(corrected):
    ids = [t.task_id for t in corrected.tasks if t.prompt.startswith(
        "Write a python function to find the first repeated character")]
    assert sorted(ids) == ["mbpp/217", "mbpp/602"]


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


HE_HEADER = ["prompt_id", "prompt", "word", "label type", "index range"]
MB_HEADER = ["", "prompt_id", "Prompt", "Word", "Label Type", "index"]


def test_span_outside_the_prompt_names_file_and_row(tmp_path):
    _write(tmp_path / "humaneval.csv", HE_HEADER, [[0, "def f(): pass", "f", "operator", "(4, 5)"]])
    _write(tmp_path / "mbpp.csv", MB_HEADER, [[0, 1, "Sort it.", "it.", "Datatype", "(5, 40)"]])
    rows, _ = _label_rows(tmp_path / "humaneval.csv", tmp_path / "mbpp.csv")
    with pytest.raises(DatasetError, match=r"mbpp\.csv, row 1: span \(5, 41\) lies outside"):
        _corrected(rows, [])


def test_unknown_label_names_file_and_row(tmp_path):
    _write(tmp_path / "humaneval.csv", HE_HEADER, [[0, "def f(): pass", "f", "verb", "(4, 5)"]])
    _write(tmp_path / "mbpp.csv", MB_HEADER, [])
    rows, _ = _label_rows(tmp_path / "humaneval.csv", tmp_path / "mbpp.csv")
    with pytest.raises(DatasetError, match=r"humaneval\.csv, row 1: unknown label 'verb'"):
        _corrected(rows, [])


def test_unparsable_span_and_wrong_word(tmp_path):
    _write(tmp_path / "humaneval.csv", HE_HEADER, [[0, "def f(): pass", "f", "operator", "4-5"]])
    _write(tmp_path / "mbpp.csv", MB_HEADER, [])
    with pytest.raises(DatasetError, match=r"row 1: span '4-5' is not"):
        _label_rows(tmp_path / "humaneval.csv", tmp_path / "mbpp.csv")
    _write(tmp_path / "humaneval.csv", HE_HEADER, [[0, "def f(): pass", "g", "operator", "(4, 5)"]])
    rows, _ = _label_rows(tmp_path / "humaneval.csv", tmp_path / "mbpp.csv")
    with pytest.raises(DatasetError, match=r"reads 'f', not the labelled word 'g'"):
        _corrected(rows, [])


def test_bad_label_version():
    with pytest.raises(ValueError, match="labels must be one of"):
        dataset.load("fancy")
