"""BERT masking: word units, the BLEU change (hand-computed), the perturbed prompts and the
fill-mask model."""

from __future__ import annotations

import math

import pytest

from common.code_units import nltk_words, perturbation_units
from common.method import TaskFailure
from perturbation_based.bert_masking import BertFiller, BertMasking, perturbed_prompts
from perturbation_based.core import code_change, replace_spans
from tests.perturbation_fakes import FakeTask, FixedFiller, RuleGenerator, mbpp_task
from tests.tiny_bert import tiny_bert


def bleu_by_hand(precisions, ref_len, hyp_len):
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.prod(precisions) ** 0.25


def test_code_change_hand_computed():
    # one substitution at the end of 5 tokens: p_n = 4/5, 3/4, 2/3, 1/2, no brevity penalty
    assert code_change("a b c d e", "a b c d f") == pytest.approx(1 - (0.8 * 0.75 * (2 / 3) * 0.5) ** 0.25)
    # a truncated output: all n-grams match, brevity penalty exp(1 - 11/6)
    ref = "def f ( xs ) : return sorted ( xs )"
    assert code_change(ref, "def f ( xs ) :") == pytest.approx(1 - math.exp(1 - 11 / 6))
    assert code_change(ref, ref) == 0.0
    assert code_change("x  y\n", "x y") == 0.0  # whitespace tokens, layout ignored
    assert code_change("a b c d", "w x y z") == 1.0


def test_code_change_short_and_empty_outputs():
    # NLTK without smoothing gives BLEU 0 to identical code under four tokens: guarded to 0
    assert code_change("return x", "return x") == 0.0
    assert code_change("return x", "return y") == 1.0  # no 4-gram at all: BLEU 0, as in the study
    assert code_change("", "") == 0.0
    assert code_change("a b", "") == 1.0
    assert 0.0 < code_change("return x", "return y", smoothing="method1") < 1.0


def test_nltk_words_drop_punctuation_and_locate_in_order():
    prompt = "Write a function to sort a list."
    spans = nltk_words(prompt, (0, len(prompt)), drop_punctuation=True).tolist()
    assert [prompt[a:b] for a, b in spans] == ["Write", "a", "function", "to", "sort", "a", "list"]
    assert spans[5] == [25, 26]  # the second "a", found after the first
    with_punct = nltk_words(prompt, (0, len(prompt)), drop_punctuation=False)
    assert [prompt[a:b] for a, b in with_punct][-1] == "."


def test_nltk_words_quotes_and_region_offsets():
    prompt = 'import x\ndef f(s: str) -> int:\n    """ Count "ab" in s.\n    >>> f("abab")\n    2\n"""'
    region = (prompt.find("def"), prompt.find(">>>"))
    spans = nltk_words(prompt, region, drop_punctuation=True)
    words = [prompt[a:b] for a, b in spans]
    assert words == ["def", "f", "s", "str", "int", "Count", "ab", "in", "s"]
    assert all(region[0] <= a < b <= region[1] for a, b in spans)
    quoted = nltk_words(prompt, region, drop_punctuation=False)
    assert '"' in [prompt[a:b] for a, b in quoted]  # NLTK's `` and '' map back to the quotes
    # the unified units: the same words here, from one regular expression, no punctuation
    unified = perturbation_units(prompt, region)
    assert [prompt[a:b] for a, b in unified] == words
    assert (perturbation_units(prompt, region, "paper") == spans).all()


def test_replace_spans():
    assert replace_spans("abcdef", [(0, 1), (3, 5)], ["X", "YY"]) == "XbcYYf"


def test_bert_masking_scores_hand_computed():
    task = mbpp_task("Write a function to sort numbers")
    gen = RuleGenerator({"sort": "return sorted ( xs )"})
    filler = FixedFiller("thing")
    out = BertMasking(filler=filler).attribute(task, gen)
    words = [task.prompt[a:b] for a, b in out.spans]
    assert words == ["Write", "a", "function", "to", "sort", "numbers"]
    expected = [0, 0, 0, 0, 1 - math.exp(1 - 11 / 6), 0]  # only "sort" changes the code
    assert out.scores.tolist() == pytest.approx(expected)
    assert out.generation == "def f ( xs ) : return sorted ( xs )"
    # one batch: the original prompt and one perturbed prompt per word
    assert len(gen.calls) == 1 and len(gen.calls[0]) == 7 and out.details["n_generations"] == 7
    assert out.details["fills"] == ["thing"] * 6
    assert gen.calls[0][0] == task.model_prompt
    assert gen.calls[0][5] == "Write a function to thing numbers\ndef function():"
    # the fill-mask model sees the region with the word masked
    assert filler.seen[4] == "Write a function to [MASK] numbers"


def test_bert_masking_humaneval_keeps_text_outside_region():
    prompt = 'def inc(x):\n    """ Add one to x\n    >>> inc(1)\n    2\n    """\n'
    task = FakeTask(prompt, (0, prompt.find(">>>")), prompt, "HumanEval/0", "return x + 1", "humaneval")
    spans = perturbation_units(task.prompt, task.region, "paper")
    fills, prompts = perturbed_prompts(task.prompt, task.model_prompt, spans, FixedFiller("zz"), task.region)
    assert [prompt[a:b] for a, b in spans] == ["def", "inc", "x", "Add", "one", "to", "x"]
    assert prompts[4] == prompt.replace("Add one", "Add zz")
    assert all(p.endswith(">>> inc(1)\n    2\n    \"\"\"\n") for p in prompts)


def test_empty_region_is_a_failure_not_scores():
    task = mbpp_task("...")
    with pytest.raises(TaskFailure, match="no words"):
        BertMasking(filler=FixedFiller()).attribute(task, RuleGenerator({}))


def test_tiny_bert_filler_batched_equals_single_and_long_text():
    model, tok = tiny_bert()
    batched = BertFiller(model, tok, batch_size=4)
    single = BertFiller(model, tok, batch_size=1)
    texts = ["write a [MASK] to sort", "[MASK] the list", "return the [MASK] of all even numbers in it"]
    fills = batched.fill(texts)
    assert fills == single.fill(texts)
    assert all(isinstance(f, str) and f and "[MASK]" not in f for f in fills)
    assert all(f in tok.get_vocab() or f.lower() in tok.get_vocab() for f in fills)
    long_text = " ".join(["word"] * 700) + " [MASK] " + " ".join(["end"] * 10)
    assert len(batched.fill([long_text])) == 1  # windowed, not a crash past 512 tokens
    with pytest.raises(ValueError, match="exactly one"):
        batched.fill(["no mask here"])


def test_tiny_bert_end_to_end_mask_goes_through_bert():
    model, tok = tiny_bert()
    task = mbpp_task("Write a function to sort numbers")
    gen = RuleGenerator({"sort": "return sorted ( xs )", "numbers": "# numbers"})
    filler = BertFiller(model, tok)
    out = BertMasking(filler=filler).attribute(task, gen)
    fills = out.details["fills"]
    assert len(fills) == 6 == len(out.scores)
    for (a, b), fill, p in zip(out.spans, fills, gen.calls[0][1:]):
        assert p == task.model_prompt[:a] + fill + task.model_prompt[b:]


def test_fill_never_writes_a_special_token():
    import torch

    from perturbation_based.bert_masking import tiny_random_bert
    model, tok = tiny_random_bert(seed=1)  # a private copy: its head is changed below
    with torch.no_grad():
        model.cls.predictions.decoder.bias[tok.sep_token_id] = 1e4
        model.cls.predictions.decoder.bias[tok.convert_tokens_to_ids("house")] = 1e3
    assert BertFiller(model, tok).fill(["sort the [MASK] list"]) == ["house"]


def test_unavailable_fill_model_says_what_to_do(tmp_path, capsys):
    from attention_alignment.runner import main
    from common.models import ModelLoadError
    from perturbation_based.bert_masking import BertFiller
    missing = str(tmp_path / "no-such-bert")
    with pytest.raises(ModelLoadError, match=r"fill-mask model .*no-such-bert.* --fill-model"):
        BertFiller(missing)
    # the CLI turns it into one line on stderr and exit code 1, not a traceback
    code = main(["--methods", "bert_perturbation", "--model", "unused", "--base-url",
                 "http://127.0.0.1:9/v1", "--fill-model", missing, "--limit", "1",
                 "--output", str(tmp_path), "--cache", str(tmp_path / "c.sqlite"),
                 "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: fill-mask model") and "while running" not in err[-1]
    assert not list(tmp_path.glob("*.jsonl"))  # stopped before any result file was made
