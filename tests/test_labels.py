"""The corrected label version's remaining fixes, each recorded as a correction."""

import re

import pytest

from common import dataset, tables

WHOLE = re.compile(r"\w")


def _kinds(ds):
    out = {}
    for c in ds.corrections:
        out.setdefault(c.kind, []).append(c)
    return out


def test_mbpp_274_labels_restored_from_the_published_pickle(corrected, mirror):
    task = corrected.by_id()["mbpp/274"]
    assert [k.text for k in task.keywords] == ["find", "sum", "of", "even", "index", "binomial",
                                               "coefficients"]
    assert all(task.prompt[k.start:k.end] == k.text for k in task.keywords)
    restored = _kinds(corrected)["restored_from_pickle"]
    assert [(c.task_id, c.before, c.after) for c in restored][0] == ("mbpp/274", "", "(27, 31)")
    without = dataset.load("corrected", mirror, without=("restored_from_pickle",))
    assert without.by_id()["mbpp/274"].keywords == ()


def test_inside_word_spans_move_to_the_following_whole_word(corrected):
    moved = _kinds(corrected)["inside_word_moved"]
    assert len(moved) == 97
    assert all(c.file == "mbpp.csv" and c.task_id.startswith("mbpp/") for c in moved)
    by_id = corrected.by_id()
    for c in moved:
        prompt = by_id[c.task_id].prompt
        a0, b0 = map(int, c.before.strip("()").split(","))
        a, b = map(int, c.after.strip("()").split(","))
        assert a > a0 and prompt[a:b] == prompt[a0:b0] == c.word
        assert (a == 0 or not WHOLE.match(prompt[a - 1])) and (b == len(prompt)
                                                               or not WHOLE.match(prompt[b]))
    # the example of the issue: "n" inside "python" in mbpp/634
    assert any(c.task_id == "mbpp/634" and c.word == "n" and "'python'" in c.why for c in moved)
    # after the fix no MBPP keyword sits inside a word while a whole-word occurrence follows
    for task in corrected.tasks:
        if task.benchmark != "mbpp":
            continue
        for k in task.keywords:
            if k.label != "unknown" and dataset._inside_word(task.prompt, k.start, k.end):
                pattern = rf"(?<!\w){re.escape(k.text)}(?!\w)"
                assert re.compile(pattern).search(task.prompt, k.start) is None, (task.task_id, k)


def test_duplicate_merge_is_the_24_spans_of_the_four_shared_texts(corrected):
    merged = _kinds(corrected)["duplicate_merged"]
    assert len(merged) == 24
    shared = {t.prompt for t in corrected.tasks
              if sum(u.prompt == t.prompt for u in corrected.tasks) == 2}
    assert len(shared) == 4
    by_id = corrected.by_id()
    assert {by_id[c.task_id].prompt for c in merged} == shared


def test_corrections_frame_and_counts(corrected):
    frame = tables.corrections_frame(corrected)
    assert list(frame.columns) == ["file", "row", "task_id", "word", "before", "after", "kind", "why"]
    counts = frame.kind.value_counts().to_dict()
    assert counts["none_restored"] == 6 and counts["type2_dropped"] == 2
    # every MBPP CSV row with a span had its inclusive end made exclusive
    ends = frame[frame.kind == "end_exclusive"]
    a, b = ends.before.iloc[0].strip("()").split(","), ends.after.iloc[0].strip("()").split(",")
    assert int(b[1]) == int(a[1]) + 1


def test_unknown_correction_kind_is_refused(mirror):
    with pytest.raises(ValueError, match="unknown correction kinds"):
        dataset.load("corrected", mirror, without=("spelling",))


def test_word_characters_are_regex_word_characters():
    word = re.compile(r"\w")
    text = "".join(map(chr, range(0x3000))) + "ß_é٣²½ⅷ𝟘\u200b"  # letters, digits, numerics, none
    assert [dataset._wordy(text, i) for i in range(len(text))] == \
        [bool(word.match(c)) for c in text]
    assert not dataset._wordy(text, -1) and not dataset._wordy(text, len(text))
