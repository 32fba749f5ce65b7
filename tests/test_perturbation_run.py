"""The run loop with the perturbation methods: resumable result files, per-task failures, the
budget stop and resume against the local OpenAI-compatible server, and refusal to mix settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attention_alignment import catalogue, runner
from common import backends
from common.chat import BudgetExceeded, ChatBackend, ChatError
from common.generation_cache import GenerationCache
from common.method import Attribution, Method, TaskFailure
from common.results import AttributionResult, ResultFileError
from perturbation_based.bert_masking import BertMasking
from tests.openai_stub_server import StubServer
from tests.perturbation_fakes import FixedFiller, RuleGenerator, mbpp_task

TASKS = [mbpp_task("Write a function to sort numbers", "t/1"),
         mbpp_task("Count the vowels of a string", "t/2"),
         mbpp_task("Reverse the given list", "t/3")]


def chat(server, tmp_path, budget=None):
    return ChatBackend("stub-model", base_url=server.base_url, api_key="k", backoff_base=0.01,
                       cache=GenerationCache(tmp_path / "cache.sqlite"), prices_per_1k=(1.0, 1.0),
                       max_cost_usd=budget, concurrency=2)


def bert():
    return BertMasking(filler=FixedFiller())


def test_budget_stop_then_resume_pays_each_prompt_once(tmp_path):
    distinct = sum(len(t.prompt.split()) + 1 for t in TASKS)  # one per word plus the original
    path = tmp_path / "res" / "bert_perturbation_stub-model.jsonl"
    with StubServer(lifetime_s=60) as server:
        gen = chat(server, tmp_path, budget=0.45)  # ~$0.045 an answer, 7 a task: stops in task 2
        with pytest.raises(BudgetExceeded, match="budget") as stop:
            runner.run([bert()], gen, TASKS, tmp_path / "res", progress=False)
        assert "while running bert_perturbation on t/2" in " ".join(stop.value.__notes__)
        paid_first = len(server.requests)
        assert paid_first < distinct
        result = AttributionResult.load(path)
        assert list(result.prompts) == [TASKS[0].prompt] and not result.failures  # t/2 not recorded
        usage = json.loads((tmp_path / "res" / "stub-model.usage.json").read_text())
        assert usage["total"]["requests"] == paid_first and usage["total"]["cost_usd"] >= 0.45

        gen = chat(server, tmp_path, budget=10.0)
        second = runner.run([bert()], gen, TASKS, tmp_path / "res", progress=False)
        assert (second.skipped, second.scored["bert_perturbation"]) == (1, 2)
        assert len(server.requests) == distinct  # nothing asked twice, across both runs
        assert second.usage["cache_hits"] >= 1  # the answers of the interrupted task 2
        result = AttributionResult.load(path)
        assert len(result.prompts) == 3
        for task in TASKS:
            assert len(result.prompts[task.prompt].spans) == len(task.prompt.split())
            assert result.details[task.task_id]["n_generations"] == len(task.prompt.split()) + 1
        usage = json.loads((tmp_path / "res" / "stub-model.usage.json").read_text())
        assert len(usage["runs"]) == 2 and usage["total"]["requests"] == distinct


def test_backend_outage_stops_without_recording_the_task(tmp_path):
    with StubServer(lifetime_s=60) as server:
        server.faults = ["500"] * 50
        gen = ChatBackend("stub-model", base_url=server.base_url, api_key="k", backoff_base=0.001,
                          max_retries=1, cache=GenerationCache(None), concurrency=1)
        with pytest.raises(ChatError, match="giving up"):
            runner.run([bert()], gen, TASKS, tmp_path, progress=False)
    assert AttributionResult.load(tmp_path / "bert_perturbation_stub-model.jsonl").done == set()


class Flaky(Method):
    """Fails t/1 as an expected outcome, t/2 with a bug (first time only), scores the rest."""

    name, family, needs, cost = "flaky", "perturbation", "generator", "none"

    def __init__(self, bug=True, **kw):
        super().__init__(**kw)
        self.bug = bug

    def attribute(self, task, backend):
        if task.task_id == "t/1":
            raise TaskFailure("prompt longer than the context", generation="code")
        if task.task_id == "t/2" and self.bug:
            raise ZeroDivisionError("a bug in new code")
        return Attribution([(0, 5)], [0.5], generation="code", details={"k": 1})


def test_expected_failures_are_recorded_bugs_stop_the_run_and_a_rerun_completes(tmp_path):
    gen = RuleGenerator({})
    with pytest.raises(ZeroDivisionError):
        runner.run([Flaky(), bert()], gen, TASKS, tmp_path, progress=False)
    flaky = AttributionResult.load(tmp_path / "flaky_rule-model.jsonl")
    # t/1 recorded as a failure; nothing at all for t/2 (not even bert_perturbation's result)
    assert flaky.failures == {"t/1": "prompt longer than the context"}
    assert flaky.generations == {"t/1": "code"}
    assert AttributionResult.load(tmp_path / "bert_perturbation_rule-model.jsonl").done == {"t/1"}
    again = runner.run([Flaky(bug=False), bert()], gen, TASKS, tmp_path, progress=False)
    assert (again.skipped, again.scored, again.failed) == (1, {"flaky": 2, "bert_perturbation": 2}, {})
    flaky = AttributionResult.load(tmp_path / "flaky_rule-model.jsonl")
    assert flaky.done == {"t/1", "t/2", "t/3"} and flaky.details["t/3"] == {"k": 1}


def test_other_settings_are_refused(tmp_path):
    gen = RuleGenerator({"sort": "x"})
    runner.run([bert()], gen, TASKS[:1], tmp_path, progress=False)
    with pytest.raises(ResultFileError, match="method"):
        runner.run([bert().configure(smoothing="method1")], gen, TASKS, tmp_path, progress=False)


def test_catalogue_and_method_options():
    shap = catalogue.get("shap_perturbation").configure(nsamples=20)
    assert shap.settings()["nsamples"] == 20 and shap.settings()["l1_reg"] == "aic"
    assert catalogue.get("shap_perturbation").settings()["nsamples"] == 50  # the catalogue's is untouched
    with pytest.raises(KeyError, match="unknown method 'lime'"):
        catalogue.get("lime")
    with pytest.raises(ValueError, match="has no option fill_model"):
        shap.configure(fill_model="x")  # a typo is not ignored
    with pytest.raises(ValueError, match="definitions"):
        shap.configure(definitions="mine")
    assert backends.is_chat_model("gpt-4-1106-preview", None) and backends.is_chat_model("llama", "http://h/v1")
    assert not backends.is_chat_model("smollm2", None)


def test_model_internal_methods_refuse_a_chat_backend(tmp_path):
    with StubServer(lifetime_s=60) as server:
        gen = chat(server, tmp_path)
        with pytest.raises(runner.UsageError, match="saliency_coding reads the model's attention"):
            runner.run([catalogue.get("saliency_coding")], gen, TASKS, tmp_path, progress=False)
    assert not list(tmp_path.glob("*.jsonl"))


def test_real_tasks_score_words_of_the_region(corrected, tmp_path):
    tasks = corrected.select("humaneval", 2) + corrected.select("mbpp", 2)
    gen = RuleGenerator({"list": "return sorted ( xs )", "Write": "pass"})
    out = runner.run([bert()], gen, tasks, tmp_path, progress=False)
    assert out.scored == {"bert_perturbation": 4}
    result = AttributionResult.load(out.paths["bert_perturbation"])
    for t in tasks:
        ps = result.prompts[t.prompt]
        assert len(ps.spans) > 3
        assert (ps.spans[:, 0] >= t.region[0]).all() and (ps.spans[:, 1] <= t.region[1]).all()
        assert all(t.prompt[a:b].strip() == t.prompt[a:b] and t.prompt[a:b] for a, b in ps.spans)
    # the frame view and the scores of the result object
    frame = result.to_frame()
    assert len(frame) == sum(len(p.spans) for p in result.prompts.values())
    assert set(frame.task_id) == {t.task_id for t in tasks} and (frame["rank"] >= 1).all()
    scored = result.score(ks=(5,))
    assert scored.n_tasks.tolist() == [4] and 0 <= scored.f1.iloc[0] <= 1
    assert np.isfinite(scored.alpha.iloc[0])


def test_cli_budget_stop_exit_code_then_resume(tmp_path, capsys, mirror):
    argv = ["--methods", "bert_perturbation", "--model", "stub-model", "--base-url", None,
            "--fill-model", "tiny-random-bert", "--benchmark", "mbpp", "--limit", "2",
            "--output", str(tmp_path / "res"), "--cache", str(tmp_path / "c.sqlite"),
            "--no-progress", "--threads", "1"]
    with StubServer(lifetime_s=60) as server:
        argv[5] = server.base_url
        # a budget on an unpriced model could never bind: refused before any request
        assert runner.main(argv + ["--max-cost-usd", "1"]) == runner.EXIT_USAGE
        assert "no price known" in capsys.readouterr().err and not server.requests
        assert runner.main(argv + ["--max-cost-usd", "1", "--price-per-1k", "0", "0"]) == 0
        out = capsys.readouterr().out
        assert "scored    2  failed    0" in out and "$0.0000" in out
        n = len(server.requests)
        assert runner.main(argv) == 0 and len(server.requests) == n  # resumed: nothing asked
        assert "0 tasks computed, 2 already done" in capsys.readouterr().out
    # a priced model with a tiny budget stops with exit code 3, one line, rerun to resume
    with StubServer(lifetime_s=60) as server:
        argv[5] = server.base_url
        argv[3] = "gpt-4o"
        assert runner.main(argv + ["--max-cost-usd", "0.0001", "--name", "priced"]) == runner.EXIT_BUDGET
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith("stopped: cost budget") and "rerun" in last and "Traceback" not in err
        assert len(server.requests) <= 4
