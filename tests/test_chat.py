"""The chat backend against a real local OpenAI-compatible server (real HTTP, real client)."""

from __future__ import annotations

import pytest

from common.chat import BudgetExceeded, ChatBackend, ChatError, extract_code_from_chat
from common.generation_cache import GenerationCache
from tests.openai_stub_server import stub_answer, stub_backend


def backend(server, tmp_path, **kw):
    return stub_backend(ChatBackend, server, tmp_path, **kw)


def test_extract_code_from_chat():
    # the block that defines a function wins; usage examples around it are dropped
    answer = ("Sure:\n```bash\npip install x\n```\n```python\ndef f(a):\n    return a + 1\n\n"
              "print(f(2))\n```\nThis adds one.")
    assert extract_code_from_chat(answer) == "def f(a):\n    return a + 1\n\n"
    # an answer cut by the token limit: the unclosed fence runs to the end
    assert extract_code_from_chat("```python\ndef g():\n    return 1\n") == "def g():\n    return 1\n"
    # an unfenced function is found in prose
    assert extract_code_from_chat("Here:\ndef h():\n    return 2\nDone.").startswith("def h():")
    # no code at all: the whole answer is compared
    assert extract_code_from_chat("no fences, just return 1") == "no fences, just return 1"


def test_answer_request_body_and_usage(server, tmp_path):
    be = backend(server, tmp_path, prices_per_1k=(1.0, 2.0))
    [code] = be.generate(["Sort the list."])
    assert code == "def solution():\n    return 'Sort' + 'the' + 'list'\n"
    body = server.requests[0]
    assert body["temperature"] == 0.0 and body["seed"] == 0 and body["model"] == "stub-model"
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1] == {"role": "user", "content": "Sort the list."}
    sent = len(body["messages"][0]["content"].split()) + 3
    received = len(stub_answer("Sort the list.").split())
    assert (be.usage.prompt_tokens, be.usage.completion_tokens) == (sent, received)
    assert be.usage.cost_usd == pytest.approx((sent * 1.0 + received * 2.0) / 1000)


def test_default_temperature_option_omits_it(server, tmp_path):
    be = backend(server, tmp_path, temperature=None, seed=None)
    be.generate(["x"])
    assert "temperature" not in server.requests[0] and "seed" not in server.requests[0]


def test_cache_hits_across_backends_and_no_duplicate_requests(server, tmp_path):
    be = backend(server, tmp_path)
    out = be.generate(["a b", "c d", "a b"])
    assert len(server.requests) == 2  # the repeated prompt is asked once
    again = backend(server, tmp_path)  # a rerun: new process state, same cache file
    assert again.generate(["c d", "a b"]) == [out[1], out[0]]
    assert len(server.requests) == 2
    assert again.usage.cache_hits == 2 and again.usage.requests == 0 and again.usage.cost_usd == 0
    # a different setting is a different cache entry
    backend(server, tmp_path, seed=1).generate(["a b"])
    assert len(server.requests) == 3


def test_retries_on_429_and_500(server, tmp_path):
    server.faults = ["429", "500", "ok"]
    be = backend(server, tmp_path)
    assert be.generate(["p q"]) == [extract_code_from_chat(stub_answer("p q"))]
    assert len(server.requests) == 3 and be.usage.retries == 2 and be.usage.requests == 1


def test_retry_on_timeout(server, tmp_path):
    server.faults = ["slow"]
    be = backend(server, tmp_path, timeout=0.3)
    assert be.generate(["slow one"]) == [extract_code_from_chat(stub_answer("slow one"))]
    assert be.usage.retries == 1 and len(server.requests) == 2


def test_gives_up_after_max_retries(server, tmp_path):
    server.faults = ["500"] * 3
    be = backend(server, tmp_path, max_retries=2)
    with pytest.raises(ChatError, match="giving up after 3 attempts"):
        be.generate(["never"])
    assert len(server.requests) == 3
    assert len(be.cache) == 0  # nothing false was cached


def test_client_errors_are_not_retried(server, tmp_path):
    server.faults = ["400"]
    be = backend(server, tmp_path)
    with pytest.raises(ChatError, match="HTTP 400"):
        be.generate(["bad"])
    assert len(server.requests) == 1


def test_missing_usage_is_counted_not_invented(server, tmp_path):
    server.usage = False
    be = backend(server, tmp_path, prices_per_1k=(1.0, 1.0))
    be.generate(["x y"])
    assert be.usage.missing_usage == 1 and be.usage.cost_usd == 0.0


def test_concurrency_is_bounded(server, tmp_path):
    server.delay_s = 0.1
    be = backend(server, tmp_path, concurrency=3)
    prompts = [f"prompt {i}" for i in range(9)]
    assert be.generate(prompts) == [extract_code_from_chat(stub_answer(p)) for p in prompts]
    assert 2 <= server.max_inflight <= 3


def test_budget_stops_and_answers_so_far_are_kept(server, tmp_path):
    # each answer costs about $0.03 at $1 per 1K tokens (~30 tokens): a $0.05 budget starts two
    be = backend(server, tmp_path, prices_per_1k=(1.0, 1.0), max_cost_usd=0.05, concurrency=1)
    prompts = [f"task number {i}" for i in range(5)]
    with pytest.raises(BudgetExceeded, match="budget"):
        be.generate(prompts)
    assert len(server.requests) == 2 and len(be.cache) == 2
    assert 0.05 <= be.usage.cost_usd < 0.08
    resumed = backend(server, tmp_path, prices_per_1k=(1.0, 1.0), max_cost_usd=1.0)
    assert len(resumed.generate(prompts)) == 5
    assert len(server.requests) == 5  # the two paid answers were not asked again
    assert resumed.usage.cache_hits == 2


def test_openai_without_key_is_an_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ChatError, match="OPENAI_API_KEY"):
        ChatBackend("gpt-4o", cache=GenerationCache(None))


def test_budget_needs_a_price(server, tmp_path):
    with pytest.raises(ChatError, match="no price known for model 'stub-model'"):
        backend(server, tmp_path, max_cost_usd=1.0)
    assert backend(server, tmp_path, max_cost_usd=1.0, prices_per_1k=(0.5, 1.0)).prices == (0.5, 1.0)


def test_result_name_is_not_the_model_asked_for(server, tmp_path):
    # a run loop renames the generator for its result file; the server is still asked for the model id
    be = backend(server, tmp_path)
    be.name = "short-name"
    be.generate(["x y"])
    assert server.requests[0]["model"] == "stub-model"
    again = backend(server, tmp_path)  # the cache is keyed by the model id too
    assert again.generate(["x y"]) and again.usage.cache_hits == 1 and len(server.requests) == 1
