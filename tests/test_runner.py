"""The run loop with the ten model-internal methods: ten result files the analysis can score,
resumption after a kill, failures recorded with reasons, batched generation identical to batch
size 1, and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from attention_alignment import catalogue, runner
from common import backends, code_units, metrics, models, results
from common.backends import HFBackend
from common.tiny import build_model, save_tiny, tiny_model

TEN = ["reading_first", "reading_last", "reading_all", "coding_first", "coding_last", "coding_all",
       "saliency_reading", "saliency_coding", "inputxgradient_reading", "inputxgradient_coding"]


def run(lm, tasks, output, methods=None, family=None, batch_size=1, **options):
    chosen = catalogue.select(methods, family)
    if options:
        chosen = [m.configure(**options) for m in chosen]
    return runner.run(chosen, HFBackend(lm, batch_size=batch_size), tasks, output, progress=False)


@pytest.fixture(scope="module")
def tasks(corrected):
    """Three real tasks (two HumanEval, one MBPP) with short references: small budgets."""
    picked = corrected.select("humaneval", 2) + corrected.select("mbpp", 1)
    return [dataclasses.replace(t, reference="return x") for t in picked]


def records(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), {r["task_id"]: r for r in map(json.loads, lines[1:])}


def test_default_selection_is_the_ten_methods_of_the_study():
    assert sorted(m.name for m in catalogue.select()) == sorted(TEN)
    assert {m.name for m in catalogue.select(family="self_attention", variant="paper")} == {
        f"{s}_{w}_layer0" for s in ("reading", "coding") for w in ("first", "last", "all")}
    assert len(catalogue.select(variant="both")) == 16
    assert [m.name for m in catalogue.select("saliency_coding, reading_all")] == ["saliency_coding",
                                                                                  "reading_all"]
    assert [m.name for m in catalogue.select(family="perturbation")] == ["bert_perturbation",
                                                                        "shap_perturbation"]
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        catalogue.select("nope")
    with pytest.raises(ValueError, match="variant"):
        catalogue.select(variant="layer1")
    assert set(catalogue.PAPER_METHODS) <= set(catalogue.names())
    table = catalogue.table()
    assert table.in_paper.sum() == 12 and (table.cost_per_task.str.len() > 0).all()


def test_run_writes_ten_scorable_result_files(tmp_path, tasks, corrected):
    lm = tiny_model("gpt2")
    summary = run(lm, tasks, tmp_path)
    assert sorted(summary.methods) == sorted(TEN)
    found = results.discover(tmp_path)
    assert sorted(m for _, m, _, _ in found) == sorted(TEN)
    assert {model for _, _, model, _ in found} == {"tiny-gpt2"}
    generations = None
    for method in TEN:
        path = results.result_path(tmp_path, method, "tiny-gpt2")
        header, recs = records(path)
        assert header["meta"]["backend"]["dtype"] == "float32"
        assert header["meta"]["backend"]["model"] == "tiny:gpt2"
        assert header["meta"]["method"]["definitions"] == "unified"
        assert set(recs) == {t.task_id for t in tasks}
        gens = {tid: r["generation"] for tid, r in recs.items()}
        generations = generations or gens
        assert gens == generations, "every method must see the same generation"
        result = results.AttributionResult.load(path)
        for task in tasks:
            if task.task_id in result.failures:
                # unified definitions: every coding-stage method needs the generated function
                assert catalogue.get(method).stage == "coding", result.failures[task.task_id]
                assert "no function body" in result.failures[task.task_id]
                continue
            ps = result.prompts[task.prompt]
            want = code_units.words(task.prompt, task.region)
            np.testing.assert_array_equal(ps.spans, want)
            assert (ps.scores >= 0).all() and ps.scores.sum() > 0
        if not method.startswith("coding"):
            scores = metrics.score(result.prompts, corrected.spans(), ks=[5])
            assert 0 <= scores[5].f1 <= 1
    for task in tasks:
        gen = models.generate(lm, [task.model_prompt], models.generation_budget(lm, task.reference))[0]
        assert generations[task.task_id] == gen.text


def test_coding_methods_score_when_a_body_is_generated(tmp_path, tasks, monkeypatch):
    lm = tiny_model("llama")
    real = models.generate

    real_from_prefills = models.generate_from_prefills
    body = torch.tensor(lm.tokenizer("\n    return sorted(x)\n\nprint(1)")["input_ids"])

    def with_body(lm, prompts, budgets, batch_size=1):
        gens = real(lm, prompts, budgets, batch_size)
        return [dataclasses.replace(g, new_ids=body, text=lm.tokenizer.decode(body)) for g in gens]

    def from_prefills_with_body(lm, *args, **kwargs):  # tasks are generated from their prefills
        gens = real_from_prefills(lm, *args, **kwargs)
        return [dataclasses.replace(g, new_ids=body, text=lm.tokenizer.decode(body)) for g in gens]

    monkeypatch.setattr(models, "generate", with_body)
    monkeypatch.setattr(models, "generate_from_prefills", from_prefills_with_body)
    summary = run(lm, tasks, tmp_path, family="self_attention")
    assert summary.failed == {} and summary.scored["coding_last"] == 3
    _, recs = records(summary.paths["coding_last"])
    assert all(r["generation"].endswith("print(1)") for r in recs.values())


def test_rerun_skips_done_tasks_and_repairs_a_torn_file(tmp_path, tasks):
    lm = tiny_model("codegen")
    methods = "reading_last,saliency_reading,inputxgradient_coding"
    first = run(lm, tasks, tmp_path, methods)
    original = {m: records(p)[1] for m, p in first.paths.items()}
    again = run(lm, tasks, tmp_path, methods)
    assert again.skipped == 3 and again.scored == {}
    # A kill mid-write: the last line torn in one file, missing in another.
    p1, p2 = first.paths["reading_last"], first.paths["saliency_reading"]
    text = p1.read_text()
    p1.write_text(text[: text.rstrip("\n").rfind("\n") + 40])
    lines = p2.read_text().splitlines(keepends=True)
    p2.write_text("".join(lines[:-1]))
    resumed = run(lm, tasks, tmp_path, methods)
    assert resumed.skipped == 2
    assert resumed.scored == {"reading_last": 1, "saliency_reading": 1}
    for m, path in first.paths.items():
        assert records(path)[1] == original[m]


def test_interrupted_run_leaves_valid_files_and_resumes(tmp_path, tasks, monkeypatch):
    lm = tiny_model("gpt_neox")
    methods = ["reading_first", "saliency_coding"]
    clean = run(lm, tasks, tmp_path / "clean", methods)
    method = catalogue.get("saliency_coding")
    real = type(method).attribute
    calls = []

    def dying(self, task, backend):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, task, backend)

    monkeypatch.setattr(type(method), "attribute", dying)
    with pytest.raises(KeyboardInterrupt):
        run(lm, tasks, tmp_path / "killed", methods)
    for name in methods:  # the task in progress is recorded for no method
        path = results.result_path(tmp_path / "killed", name, lm.name)
        assert results.AttributionResult.load(path).done == {tasks[0].task_id}
    monkeypatch.setattr(type(method), "attribute", real)
    resumed = run(lm, tasks, tmp_path / "killed", methods)
    assert resumed.scored == {"reading_first": 2, "saliency_coding": 2}
    for m in methods:
        assert records(resumed.paths[m])[1] == records(clean.paths[m])[1]


def test_batched_run_equals_batch_size_one(tmp_path, tasks):
    lm = tiny_model("xglm")
    one = run(lm, tasks, tmp_path / "one", "reading_all,saliency_reading")
    two = run(lm, tasks, tmp_path / "two", "reading_all,saliency_reading", batch_size=2)
    for m in one.paths:
        a, b = records(one.paths[m])[1], records(two.paths[m])[1]
        assert a.keys() == b.keys()
        for tid in a:
            assert a[tid]["generation"] == b[tid]["generation"]
            np.testing.assert_allclose(a[tid]["scores"], b[tid]["scores"], rtol=1e-6)


def test_prompt_longer_than_context_is_recorded(tmp_path, tasks):
    lm = build_model("gpt2", context=64)
    summary = run(lm, tasks, tmp_path, "reading_first,saliency_reading")
    short = {t.task_id for t in tasks if len(models.encode(lm, t.model_prompt)) < 64}
    assert short == {"mbpp/601"}  # the HumanEval prompts are longer than 64 tokens
    for path in summary.paths.values():
        result = results.AttributionResult.load(path)
        assert set(result.failures) == {t.task_id for t in tasks} - short
        assert all("does not fit the model's context of 64" in r for r in result.failures.values())
        assert [ps.task_id for ps in result.prompts.values()] == ["mbpp/601"]


def test_budget_is_capped_by_the_context(tasks):
    lm = build_model("gpt2", context=400)
    n = len(models.encode(lm, tasks[0].model_prompt))
    assert n < 400
    long_ref = dataclasses.replace(tasks[0], reference="x = 1\n" * 500)
    assert HFBackend(lm).budget(long_ref.model_prompt, long_ref.reference) == 400 - n


def test_refuses_to_mix_precisions_in_one_file(tmp_path, tasks):
    lm = tiny_model("gpt2")
    run(lm, tasks[:1], tmp_path, "reading_first")
    half = dataclasses.replace(lm, dtype=torch.bfloat16)
    with pytest.raises(results.ResultFileError, match="backend.*'float32'.*bfloat16"):
        run(half, tasks[:1], tmp_path, "reading_first")
    # nor positions of another definition
    with pytest.raises(results.ResultFileError, match="method.*'unified'.*'paper'"):
        run(lm, tasks[:1], tmp_path, "reading_first", definitions="paper")


def test_cli_runs_a_local_model_folder(tmp_path, capsys):
    folder = tmp_path / "tiny-llama"
    save_tiny("llama", folder)
    out = tmp_path / "out"
    rc = runner.main(["--model", str(folder), "--limit", "1", "--benchmark", "mbpp", "--output", str(out),
                      "--methods", "reading_first,saliency_coding", "--cache", str(tmp_path / "c.sqlite")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tasks/s" in captured.out and "task/s" in captured.err  # summary and progress bar
    assert sorted(p.name for p in out.glob("*.jsonl")) == [
        "reading_first_tiny-llama.jsonl", "saliency_coding_tiny-llama.jsonl"]
    header, recs = records(out / "saliency_coding_tiny-llama.jsonl")
    assert list(recs) == ["mbpp/601"]


def test_cli_errors_are_clear(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # a model that cannot be loaded: an error (1); a bad option: a usage error (2); one line each
    assert runner.main(["--model", "no-org/no-model", "--output", str(tmp_path)]) == runner.EXIT_ERROR
    err = capsys.readouterr().err
    assert "not in the local Hugging Face cache" in err and len(err.strip().splitlines()) == 1
    assert runner.main(["--methods", "reading_first,bogus", "--output", str(tmp_path)]) == runner.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown method 'bogus'" in err and len(err.strip().splitlines()) == 1
    assert runner.main(["--methods", "reading_first", "--nsamples", "5", "--output", str(tmp_path)]) == 2
    assert "--nsamples applies to none of the selected methods" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert runner.main(["--output", str(tmp_path / "file")]) == runner.EXIT_USAGE
    assert "--output" in capsys.readouterr().err and (tmp_path / "file").read_text() == "x"
    with pytest.raises(SystemExit) as bad:
        runner.main(["--limit", "-1"])
    assert bad.value.code == 2 and "must be 0 (all) or a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("argv,model,limit,benchmark", [
    ([], "smollm2", 5, "mbpp"),  # a bare run: the offline model on a few tasks
    (["--limit", "2", "--benchmark", "all"], "smollm2", 2, "all"),
    (["--model", "codegen"], "codegen", 1138, "all"),  # a named model: every task
    (["--model", "codegen", "--limit", "0"], "codegen", 1138, "all"),
    (["--model", "codegen", "--limit", "7", "--benchmark", "humaneval"], "codegen", 7, "humaneval"),
])
def test_cli_default_model_and_limit(monkeypatch, argv, model, limit, benchmark, mirror):
    seen = {}

    class Fake:
        name = "fake"

        def example(self, task):
            raise AssertionError("not run")

    def fake_build(model, **kw):
        seen.update(model=model)
        return Fake()

    def fake_run(methods, backend, tasks, output, progress=True, shard=None):
        seen.update(methods=[m.name for m in methods], tasks=tasks)
        return "summary"

    monkeypatch.setattr(backends, "build", fake_build)
    monkeypatch.setattr(runner, "run", fake_run)
    assert runner.main(argv) == 0
    assert (seen["model"], len(seen["tasks"])) == (model, limit)
    if benchmark != "all":
        assert {t.benchmark for t in seen["tasks"]} == {benchmark}
    assert sorted(seen["methods"]) == sorted(TEN)
