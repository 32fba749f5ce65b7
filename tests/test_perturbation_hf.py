"""Hugging Face path: batched generation equals one-at-a-time greedy output on a tiny model,
one batched model call per task, and the cache makes reruns generate nothing."""

from __future__ import annotations

import pytest

from attention_alignment import catalogue, runner
from common import backends, code_units, models
from common.backends import HFBackend
from common.generation_cache import GenerationCache
from common.tiny import tiny_model
from perturbation_based.bert_masking import BertFiller, BertMasking, perturbed_prompts
from perturbation_based.shap_method import ShapKernel
from tests.perturbation_fakes import FixedFiller, mbpp_task
from tests.tiny_bert import tiny_bert

TASK = mbpp_task("Write a function to find the maximum element of a list.")


@pytest.fixture
def count_model_calls(monkeypatch):
    calls = []
    real = models.generate

    def counting(lm, prompts, max_new_tokens, batch_size=1):
        calls.append((len(prompts), batch_size))
        return real(lm, prompts, max_new_tokens, batch_size=batch_size)

    monkeypatch.setattr(models, "generate", counting)
    return calls


@pytest.mark.parametrize("arch", ["codegen", "gpt2"])
def test_batched_equals_one_at_a_time(arch):
    lm = tiny_model(arch)
    model, tok = tiny_bert()
    spans = code_units.perturbation_units(TASK.prompt, TASK.region)
    _, prompts = perturbed_prompts(TASK.prompt, TASK.model_prompt, spans, BertFiller(model, tok), TASK.region)
    prompts = [TASK.model_prompt, *prompts]
    batched = HFBackend(lm, batch_size=8).generate(prompts, TASK.reference)
    single = HFBackend(lm, batch_size=1).generate(prompts, TASK.reference)
    assert batched == single
    assert len(set(batched)) > 1  # the perturbations do change this model's output


def test_one_batched_call_per_task_and_cache_hits(tmp_path, count_model_calls):
    lm = tiny_model("codegen")
    cache = tmp_path / "gen.sqlite"
    gen = HFBackend(lm, cache=GenerationCache(cache), batch_size=4, model_id="tiny-codegen-seed0")
    first = BertMasking(filler=FixedFiller("value")).attribute(TASK, gen)
    n = len(first.scores)
    assert count_model_calls == [(n + 1, 4)] and gen.generated == n + 1
    # a rerun in a new process: same cache file, nothing generated
    again = HFBackend(lm, cache=GenerationCache(cache), batch_size=4, model_id="tiny-codegen-seed0")
    second = BertMasking(filler=FixedFiller("value")).attribute(TASK, again)
    assert second.scores.tolist() == first.scores.tolist()
    assert again.generated == 0 and len(count_model_calls) == 1
    # the model-internal methods see the same continuation, from the same cache entry
    assert again.example(TASK).text == first.generation and again.generated == 0
    # the budget is part of the key: another reference length regenerates
    other = mbpp_task(TASK.prompt)
    other = type(other)(other.prompt, other.region, other.model_prompt, reference="x = 1")
    again.generate([other.model_prompt], other.reference)
    assert again.generated == 1
    assert again._settings(5)["max_new_tokens"] == 5


def test_shap_generates_each_coalition_prompt_once(tmp_path, count_model_calls):
    lm = tiny_model("codegen")
    gen = HFBackend(lm, cache=GenerationCache(tmp_path / "g.sqlite"), batch_size=8, model_id="t0")
    out = ShapKernel().attribute(TASK, gen)
    n = len(out.spans)
    assert gen.generated == out.details["n_generations"] == n + 1
    # original first, then all single-word masks in one batch (the explainer's background)
    assert sum(k for k, _ in count_model_calls) == n + 1
    rerun = HFBackend(lm, cache=GenerationCache(tmp_path / "g.sqlite"), batch_size=8, model_id="t0")
    assert ShapKernel().attribute(TASK, rerun).scores.tolist() == out.scores.tolist()
    assert rerun.generated == 0


def test_runner_with_hf_backend_from_a_model_folder(tmp_path):
    from common.tiny import save_tiny
    save_tiny("gpt2", tmp_path / "tiny-gpt2")
    gen = backends.build(str(tmp_path / "tiny-gpt2"), cache_path=tmp_path / "c.sqlite", batch_size=8)
    assert isinstance(gen, HFBackend) and gen.name == "tiny-gpt2"
    method = catalogue.get("bert_perturbation").configure(fill_model="tiny-random-bert")
    tasks = [TASK, mbpp_task("Sort the list", "t/1")]
    summary = runner.run([method], gen, tasks, tmp_path / "res", progress=False)
    assert (summary.scored, summary.failed) == ({"bert_perturbation": 2}, {})
    assert summary.paths["bert_perturbation"].name == "bert_perturbation_tiny-gpt2.jsonl"


def test_prompts_of_a_chunk_of_tasks_are_generated_together(tmp_path, count_model_calls):
    """The run loop batches the planned prompts of several tasks into one call (batches fill
    across tasks) and the results equal task-by-task generation."""
    lm = tiny_model("codegen")
    tasks = [mbpp_task("Write a function to sort a list.", "t/1"), mbpp_task("Count the vowels.", "t/2"),
             mbpp_task("Reverse the given list of numbers.", "t/3")]
    methods = [BertMasking(filler=FixedFiller("value")), ShapKernel(nsamples=8)]
    together = runner.run(methods, HFBackend(lm, batch_size=8, name="m"), tasks, tmp_path / "a",
                          progress=False)
    assert len(count_model_calls) == 1  # one call for all three tasks of both methods
    n_prompts = count_model_calls[0][0]
    assert n_prompts == len({p for t in tasks for m in methods for p in m.planned_prompts(t)})
    count_model_calls.clear()
    alone = runner.run(methods, HFBackend(lm, batch_size=8, name="m"), tasks, tmp_path / "b",
                       progress=False, prefetch=False)
    assert len(count_model_calls) >= 3  # at least one call per task
    for m in methods:
        a = (tmp_path / "a" / f"{m.name}_m.jsonl").read_text().splitlines()[1:]
        b = (tmp_path / "b" / f"{m.name}_m.jsonl").read_text().splitlines()[1:]
        assert a == b
    assert together.scored == alone.scored == {"bert_perturbation": 3, "shap_perturbation": 3}
