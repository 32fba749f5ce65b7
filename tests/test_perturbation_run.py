"""The runner: resumable result files, per-task failures, the budget stop and resume against the
local OpenAI-compatible server, and refusal to mix settings."""

from __future__ import annotations

import json

import pytest

from common.chat import ChatBackend, ChatError
from common.generation_cache import GenerationCache
from common.results import AttentionResult, ResultFileError
from perturbation_based import methods, run
from perturbation_based.bert_masking import BertMasking
from perturbation_based.core import Attribution
from tests.openai_stub_server import StubServer
from tests.perturbation_fakes import FixedFiller, RuleGenerator, mbpp_task

TASKS = [mbpp_task("Write a function to sort numbers", "t/1"),
         mbpp_task("Count the vowels of a string", "t/2"),
         mbpp_task("Reverse the given list", "t/3")]


def chat(server, tmp_path, budget=None):
    return ChatBackend("stub-model", base_url=server.base_url, api_key="k", backoff_base=0.01,
                       cache=GenerationCache(tmp_path / "cache.sqlite"), prices_per_1k=(1.0, 1.0),
                       max_cost_usd=budget, concurrency=2)


def test_budget_stop_then_resume_pays_each_prompt_once(tmp_path):
    distinct = sum(len(t.prompt.split()) + 1 for t in TASKS)  # one per word plus the original
    with StubServer(lifetime_s=60) as server:
        gen = chat(server, tmp_path, budget=0.45)  # ~$0.045 an answer, 7 a task: stops in task 2
        first = run.run("bert_perturbation", gen, TASKS, tmp_path / "res",
                        method=BertMasking(gen, FixedFiller()), progress=False)
        assert first.stopped and "budget" in first.stopped
        assert first.scored == 1 and first.failed == 0
        paid_first = len(server.requests)
        assert paid_first < distinct
        result = AttentionResult.load(first.path)
        assert list(result.prompts) == [TASKS[0].prompt] and not result.failures
        usage = json.loads(first.path.with_name("bert_perturbation_stub-model.usage.json").read_text())
        assert usage["total"]["requests"] == paid_first and usage["total"]["cost_usd"] >= 0.45

        gen = chat(server, tmp_path, budget=10.0)
        second = run.run("bert_perturbation", gen, TASKS, tmp_path / "res",
                         method=BertMasking(gen, FixedFiller()), progress=False)
        assert second.stopped is None and (second.skipped, second.scored) == (1, 2)
        assert len(server.requests) == distinct  # nothing asked twice, across both runs
        assert second.usage["cache_hits"] >= 1  # the answers of the interrupted task 2
        result = AttentionResult.load(first.path)
        assert len(result.prompts) == 3
        for task in TASKS:
            scores = result.prompts[task.prompt]
            assert len(scores.spans) == len(task.prompt.split())
        usage = json.loads(first.path.with_name("bert_perturbation_stub-model.usage.json").read_text())
        assert len(usage["runs"]) == 2 and usage["total"]["requests"] == distinct


def test_backend_outage_stops_without_recording_the_task(tmp_path):
    with StubServer(lifetime_s=60) as server:
        server.faults = ["500"] * 50
        gen = ChatBackend("stub-model", base_url=server.base_url, api_key="k", backoff_base=0.001,
                          max_retries=1, cache=GenerationCache(None), concurrency=1)
        out = run.run("bert_perturbation", gen, TASKS, tmp_path, method=BertMasking(gen, FixedFiller()),
                      progress=False)
    assert out.stopped and out.stopped.startswith("t/1") and out.scored == out.failed == 0
    assert AttentionResult.load(out.path).prompts == {}


class Flaky:
    """Fails one task by raising, another by returning a failure."""

    def settings(self):
        return {"kind": "flaky"}

    def attribute(self, task):
        if task.task_id == "t/1":
            raise RuntimeError("prompt longer than the context")
        if task.task_id == "t/2":
            return Attribution([], [], generation="code", failure="SHAP failed: X")
        return Attribution([(0, 7)], [0.5], generation="code")


def test_failures_are_recorded_per_task_and_not_retried(tmp_path):
    gen = RuleGenerator({})
    out = run.run("shap_perturbation", gen, TASKS, tmp_path, method=Flaky(), progress=False)
    assert (out.scored, out.failed) == (1, 2)
    result = AttentionResult.load(out.path)
    assert result.failures == {"t/1": "RuntimeError: prompt longer than the context",
                               "t/2": "SHAP failed: X"}
    assert result.generations["t/2"] == "code"
    again = run.run("shap_perturbation", gen, TASKS, tmp_path, method=Flaky(), progress=False)
    assert (again.skipped, again.scored, again.failed) == (3, 0, 0)


def test_other_settings_are_refused(tmp_path):
    gen = RuleGenerator({"sort": "x"})
    run.run("bert_perturbation", gen, TASKS[:1], tmp_path, method=BertMasking(gen, FixedFiller()),
            progress=False)
    other = BertMasking(gen, FixedFiller())
    other.smoothing = "method1"
    with pytest.raises(ResultFileError, match="method_settings"):
        run.run("bert_perturbation", gen, TASKS, tmp_path, method=other, progress=False)


def test_registry_and_method_options():
    gen = RuleGenerator({})
    shap = methods.create("shap_perturbation", gen, **run.method_options("shap_perturbation", nsamples=20))
    assert shap.settings()["nsamples"] == 20 and shap.settings()["l1_reg"] == "aic"
    bert = methods.create("bert_perturbation", gen,
                          **run.method_options("bert_perturbation", fill_model="tiny-random-bert"))
    assert bert.settings()["fill_model"] == "tiny-random-bert"
    with pytest.raises(ValueError, match="unknown perturbation method"):
        methods.create("lime", gen)
    with pytest.raises(TypeError):
        methods.create("shap_perturbation", gen, fill_model="x")  # a typo is not ignored
    assert run.is_chat_model("gpt-4-1106-preview", None) and run.is_chat_model("llama", "http://h/v1")
    assert not run.is_chat_model("smollm2", None)


def test_real_tasks_score_words_of_the_region(corrected, tmp_path):
    tasks = corrected.select("humaneval", 2) + corrected.select("mbpp", 2)
    gen = RuleGenerator({"list": "return sorted ( xs )", "Write": "pass"})
    out = run.run("bert_perturbation", gen, tasks, tmp_path, method=BertMasking(gen, FixedFiller()),
                  progress=False)
    assert out.scored == 4
    result = AttentionResult.load(out.path)
    for t in tasks:
        ps = result.prompts[t.prompt]
        assert len(ps.spans) > 3
        assert (ps.spans[:, 0] >= t.region[0]).all() and (ps.spans[:, 1] <= t.region[1]).all()
        assert all(t.prompt[a:b].strip() == t.prompt[a:b] and t.prompt[a:b] for a, b in ps.spans)


def test_cli_budget_stop_exit_code_then_resume(tmp_path, capsys, mirror):
    argv = ["--method", "bert_perturbation", "--model", "stub-model", "--base-url", None,
            "--fill-model", "tiny-random-bert", "--benchmark", "mbpp", "--limit", "2",
            "--result-dir", str(tmp_path / "res"), "--cache", str(tmp_path / "c.sqlite"),
            "--no-progress", "--threads", "1"]
    with StubServer(lifetime_s=60) as server:
        argv[5] = server.base_url
        # a budget on an unpriced model could never bind: refused before any request
        with pytest.raises(ChatError, match="no price known"):
            run.main(argv + ["--max-cost-usd", "1"])
        assert run.main(argv + ["--max-cost-usd", "1", "--price-per-1k", "0", "0"]) == 0
        out = capsys.readouterr().out
        assert "2 scored, 0 failed" in out and "$0.0000" in out
        n = len(server.requests)
        assert run.main(argv) == 0 and len(server.requests) == n  # resumed: nothing asked
        assert "0 scored, 0 failed, 2 already done" in capsys.readouterr().out
    # a priced model with a tiny budget stops with exit code 2
    with StubServer(lifetime_s=60) as server:
        argv[5] = server.base_url
        argv[3] = "gpt-4o"
        assert run.main(argv + ["--max-cost-usd", "0.0001", "--name", "priced"]) == 2
        assert "STOPPED" in capsys.readouterr().out and len(server.requests) <= 4
