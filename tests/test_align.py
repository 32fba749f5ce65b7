import numpy as np
import pytest

from common.align import locate, to_words, words


def test_locate_searches_from_the_end_of_the_previous_match():
    prompt = "a cat and a dog"
    got = locate(prompt, ["a", "cat", "a", "dog"])
    # the second "a" is the one in "and" (index 8), the first match after "cat"
    assert got == [(0, 0, 1), (1, 2, 5), (2, 6, 7), (3, 12, 15)]


def test_locate_drops_missing_units_without_moving_on():
    prompt = "sort the list"
    got = locate(prompt, ["sort", "zzz", "list"])
    assert got == [(0, 0, 4), (2, 9, 13)]


def test_locate_spaceless_uses_offsets_of_the_spaceless_text_unchanged():
    # "sum of list" without spaces is "sumoflist"; "of" is found at 3 in that string, and the
    # published code used 3 as an offset into the original prompt (where "of" starts at 4).
    prompt = "sum of list"
    assert locate(prompt, ["sum", "of", "list"], spaceless=True) == [(0, 0, 3), (1, 3, 5),
                                                                    (2, 5, 9)]
    # a unit containing a space can never be found without spaces
    assert locate(prompt, ["sum of"], spaceless=True) == []


def test_words_inside_region():
    prompt = "x = 1\ndef f(a): return the sum."
    region = (6, len(prompt))
    got = [prompt[a:b] for a, b in words(prompt, region)]
    assert got == ["def", "f", "a", "return", "the", "sum"]


def test_to_words_spreads_scores_over_non_space_characters():
    prompt = "foo barbaz"
    # "foo" -> foo (1.0); " bar" has 3 non-space chars, all in barbaz (2.0);
    # "o b" is split 1:1 between foo and barbaz (3.0); "baz" -> barbaz (4.0)
    spans = [(0, 3), (3, 7), (2, 5), (7, 10)]
    scores = [1.0, 2.0, 3.0, 4.0]
    w, s = to_words(prompt, spans, scores)
    assert [prompt[a:b] for a, b in w] == ["foo", "barbaz"]
    assert s.tolist() == pytest.approx([1.0 + 1.5, 2.0 + 1.5 + 4.0])
    assert s.sum() == pytest.approx(sum(scores))


def test_to_words_clips_tokens_outside_the_prompt_and_region():
    prompt = "def f(): pass"
    w, s = to_words(prompt, [(0, 3), (4, 5), (13, 20)], [1.0, 2.0, 5.0], region=(4, 13))
    assert [prompt[a:b] for a, b in w] == ["f", "pass"]
    assert s.tolist() == [2.0, 0.0]


def test_to_words_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 token spans but 1 scores"):
        to_words("ab", np.array([[0, 1], [1, 2]]), [1.0])
