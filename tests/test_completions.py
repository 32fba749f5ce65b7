"""The completions backend against a real local OpenAI-compatible server (real HTTP, real client)."""

from __future__ import annotations

import pytest

from common.chat import ChatError
from common.completions import BudgetExceeded, CompletionsBackend, CompletionsError, char_budget
from tests.openai_stub_server import stub_backend, stub_completion

REFERENCE = "def f(a):\n    return a + 1\n"  # 28 characters: ceil(28 / 2.8) + 20 = 30 tokens


def backend(server, tmp_path, **kw):
    return stub_backend(CompletionsBackend, server, tmp_path, **kw)


def test_char_budget_is_the_documented_rule():
    assert char_budget(REFERENCE) == 30
    assert char_budget("x" * 28 + "y") == 31  # 29 / 2.8 = 10.36 -> 11
    assert char_budget("") == 20


def test_one_request_for_n_prompts_and_answers_in_order(server, tmp_path):
    be = backend(server, tmp_path, prices_per_1k=(1.0, 2.0))
    prompts = [f"def task_{i}(x):" for i in range(5)]
    assert be.generate(prompts, REFERENCE) == [stub_completion(p, 30) for p in prompts]
    assert len(server.requests) == 1
    body = server.requests[0]
    assert body["prompt"] == prompts and body["max_tokens"] == 30
    assert body["temperature"] == 0.0 and body["model"] == "stub-model"
    sent = 2 * 5  # two words per prompt
    received = sum(len(stub_completion(p, 30).split()) for p in prompts)
    assert (be.usage.requests, be.usage.prompt_tokens, be.usage.completion_tokens) == (1, sent, received)
    assert be.usage.cost_usd == pytest.approx((sent * 1.0 + received * 2.0) / 1000)


def test_answers_routed_by_index_when_choices_come_out_of_order(server, tmp_path):
    server.reverse_choices = True
    prompts = ["alpha beta", "gamma", "delta epsilon zeta"]
    assert backend(server, tmp_path).generate(prompts, REFERENCE) == [stub_completion(p, 30) for p in prompts]


def test_batches_of_batch_size_and_duplicates_asked_once(server, tmp_path):
    be = backend(server, tmp_path, batch_size=2, concurrency=1)
    prompts = ["a", "b", "a", "c", "d", "e"]
    out = be.generate(prompts, REFERENCE)
    assert out == [stub_completion(p, 30) for p in prompts]
    assert [r["prompt"] for r in server.requests] == [["a", "b"], ["c", "d"], "e"]


def test_budget_options(server, tmp_path):
    backend(server, tmp_path, max_tokens=3).generate(["one two three four five"], None)
    assert server.requests[-1]["max_tokens"] == 3
    be = backend(server, tmp_path, budget=lambda ref: len(ref.splitlines()) + 20)
    assert be.generate(["x y"], REFERENCE) == [stub_completion("x y", 22)]
    assert server.requests[-1]["max_tokens"] == 22

    class WordTokenizer:  # the HF call convention, one token per whitespace word
        name_or_path = "words"

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": text.split()}

    be = backend(server, tmp_path, tokenizer=WordTokenizer())
    be.generate(["p"], REFERENCE)
    assert server.requests[-1]["max_tokens"] == 6 + 20  # def, f(a):, return, a, +, 1
    assert be.settings()["budget"] == "tokens of the reference (words) + 20"
    with pytest.raises(ValueError, match="one of max_tokens, budget, tokenizer"):
        backend(server, tmp_path, max_tokens=3, budget=len)
    with pytest.raises(ValueError, match="reference solution"):
        backend(server, tmp_path).generate(["p"], None)


def test_cache_hits_make_no_request(server, tmp_path):
    be = backend(server, tmp_path)
    out = be.generate(["a b", "c d"], REFERENCE)
    again = backend(server, tmp_path)  # a rerun: new process state, same cache file
    assert again.generate(["c d", "a b", "c d"], REFERENCE) == [out[1], out[0], out[1]]
    assert len(server.requests) == 1
    assert again.usage.cache_hits == 2 and again.usage.requests == 0
    # a partly cached call asks only for the rest
    again.generate(["a b", "new one"], REFERENCE)
    assert server.requests[-1]["prompt"] == "new one" and len(server.requests) == 2
    # another budget is another cache entry; the budget rule itself is not (same number, same entry)
    backend(server, tmp_path).generate(["a b"], REFERENCE + "more text")
    assert len(server.requests) == 3
    backend(server, tmp_path, max_tokens=30).generate(["a b"], None)
    assert len(server.requests) == 3


def test_retries_on_429_500_and_timeout(server, tmp_path):
    server.faults = ["429", "500", "ok"]
    be = backend(server, tmp_path)
    assert be.generate(["p q", "r"], REFERENCE) == [stub_completion("p q", 30), stub_completion("r", 30)]
    assert len(server.requests) == 3 and be.usage.retries == 2 and be.usage.requests == 1
    server.faults = ["slow"]
    be = backend(server, tmp_path, timeout=0.3)
    assert be.generate(["slow one"], REFERENCE) == [stub_completion("slow one", 30)]
    assert be.usage.retries == 1 and len(server.requests) == 5


def test_gives_up_after_max_retries_and_caches_nothing(server, tmp_path):
    server.faults = ["500"] * 3
    be = backend(server, tmp_path, max_retries=2)
    with pytest.raises(CompletionsError, match="giving up after 3 attempts on a request of 2 prompts "
                                               "starting with 'never'"):
        be.generate(["never", "ever"], REFERENCE)
    assert len(server.requests) == 3 and len(be.cache) == 0


def test_server_refusing_lists_falls_back_to_one_prompt_per_request(server, tmp_path):
    server.accept_lists = False
    be = backend(server, tmp_path, batch_size=8, concurrency=1)
    prompts = ["a", "b", "c"]
    with pytest.warns(UserWarning, match="refused a list of prompts"):
        assert be.generate(prompts, REFERENCE) == [stub_completion(p, 30) for p in prompts]
    assert [r["prompt"] for r in server.requests] == [prompts, "a", "b", "c"]
    assert be.batching is False
    be.generate(["d", "e"], REFERENCE)  # no more lists
    assert [r["prompt"] for r in server.requests[4:]] == ["d", "e"]


def test_a_rejected_prompt_in_a_batch_is_named_and_batching_stays(server, tmp_path):
    # the list is refused (400) and so is its second prompt alone: a bad prompt, not a list problem
    server.faults = ["400", "ok", "400"]
    be = backend(server, tmp_path, concurrency=1)
    with pytest.raises(CompletionsError, match="HTTP 400 on prompt 'second'"):
        be.generate(["first", "second"], REFERENCE)
    assert be.batching is True and len(be.cache) == 1


@pytest.mark.parametrize(("fault", "message"), [
    ("no_choices", "malformed response \\(no choices\\) to a request of 3 prompts starting with 'one'"),
    ("bad_index", "choice indexes \\[0, 0, 0\\] are not 0..2 once each, so the answer to prompt 'two'"),
    ("no_text", "the answer to prompt 'three' has no text"),
])
def test_malformed_responses_name_the_prompt(server, tmp_path, fault, message):
    server.faults = [fault]
    be = backend(server, tmp_path)
    with pytest.raises(CompletionsError, match=message) as err:
        be.generate(["one", "two", "three"], REFERENCE)
    assert isinstance(err.value, ChatError)  # run loops stopping on ChatError stop here too
    assert len(server.requests) == 1 and len(be.cache) == 0  # not retried, nothing false cached


def test_budget_stops_and_answers_so_far_are_kept(server, tmp_path):
    # a batch of two 3-word prompts with 4-word answers is 14 tokens, $0.014 at $1 per 1K tokens:
    # a $0.02 budget starts two batches
    be = backend(server, tmp_path, prices_per_1k=(1.0, 1.0), max_cost_usd=0.02, concurrency=1, batch_size=2)
    prompts = [f"task number {i}" for i in range(8)]
    with pytest.raises(BudgetExceeded, match="budget"):
        be.generate(prompts, REFERENCE)
    assert len(server.requests) == 2 and len(be.cache) == 4
    assert be.usage.cost_usd == pytest.approx(0.028)
    resumed = backend(server, tmp_path, prices_per_1k=(1.0, 1.0), max_cost_usd=1.0, batch_size=2)
    assert resumed.generate(prompts, REFERENCE) == [stub_completion(p, 30) for p in prompts]
    assert len(server.requests) == 4 and resumed.usage.cache_hits == 4


def test_budget_needs_a_price(server, tmp_path):
    with pytest.raises(CompletionsError, match="no price known for model 'stub-model'"):
        backend(server, tmp_path, max_cost_usd=1.0)


def test_concurrency_is_bounded(server, tmp_path):
    server.delay_s = 0.1
    be = backend(server, tmp_path, concurrency=3, batch_size=2)
    prompts = [f"prompt {i}" for i in range(18)]
    assert be.generate(prompts, REFERENCE) == [stub_completion(p, 30) for p in prompts]
    assert len(server.requests) == 9 and 2 <= server.max_inflight <= 3


def test_cli_runs_a_perturbation_method_on_a_completions_server(server, tmp_path, corrected):
    from attention_alignment import runner as run
    from common.results import AttributionResult

    model = "Salesforce/codegen-2B-mono"
    argv = ["--methods", "bert_perturbation", "--model", model, "--name", "codegen2b-served",
            "--backend", "completions", "--base-url", server.base_url, "--fill-model", "tiny-random-bert",
            "--benchmark", "mbpp", "--limit", "2", "--output", str(tmp_path / "res"),
            "--cache", str(tmp_path / "c.sqlite"), "--no-progress", "--threads", "1"]
    assert run.main(argv) == 0
    tasks = corrected.select("mbpp", 2)
    budgets = {char_budget(t.reference) for t in tasks}
    # the served model's id is asked for (not the result-file name), prompts go in lists
    assert {r["model"] for r in server.requests} == {model}
    assert {r["max_tokens"] for r in server.requests} == budgets
    assert any(isinstance(r["prompt"], list) and len(r["prompt"]) > 1 for r in server.requests)
    result = AttributionResult.load(tmp_path / "res" / "bert_perturbation_codegen2b-served.jsonl")
    assert not result.failures
    for t in tasks:
        assert result.generations[t.task_id] == stub_completion(t.model_prompt, char_budget(t.reference))
