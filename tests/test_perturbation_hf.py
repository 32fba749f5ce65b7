"""Hugging Face path: batched generation equals one-at-a-time greedy output on a tiny model,
one batched model call per task, and the cache makes reruns generate nothing."""

from __future__ import annotations

import pytest

from common import models
from common.generation_cache import GenerationCache
from perturbation_based import run
from perturbation_based.bert_masking import BertFiller, BertMasking, perturbed_prompts
from perturbation_based.hf import HFGenerator
from perturbation_based.shap_method import ShapKernel
from tests.perturbation_fakes import FixedFiller, mbpp_task
from tests.tiny_bert import tiny_bert
from tests.tiny_models import tiny_model

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
    _, _, prompts = perturbed_prompts(TASK.prompt, TASK.model_prompt, TASK.region, BertFiller(model, tok))
    prompts = [TASK.model_prompt, *prompts]
    batched = HFGenerator(lm, batch_size=8).generate(prompts, TASK.reference)
    single = HFGenerator(lm, batch_size=1).generate(prompts, TASK.reference)
    assert batched == single
    assert len(set(batched)) > 1  # the perturbations do change this model's output


def test_one_batched_call_per_task_and_cache_hits(tmp_path, count_model_calls):
    lm = tiny_model("codegen")
    cache = tmp_path / "gen.sqlite"
    gen = HFGenerator(lm, cache=GenerationCache(cache), batch_size=4, model_id="tiny-codegen-seed0")
    first = BertMasking(gen, FixedFiller("value")).attribute(TASK)
    n = len(first.scores)
    assert count_model_calls == [(n + 1, 4)] and gen.generated == n + 1
    # a rerun in a new process: same cache file, nothing generated
    again = HFGenerator(lm, cache=GenerationCache(cache), batch_size=4, model_id="tiny-codegen-seed0")
    second = BertMasking(again, FixedFiller("value")).attribute(TASK)
    assert second.scores == first.scores and again.generated == 0 and len(count_model_calls) == 1
    # the budget is part of the key: another reference length regenerates
    other = mbpp_task(TASK.prompt)
    other = type(other)(other.prompt, other.region, other.model_prompt, reference="x = 1")
    again.generate([other.model_prompt], other.reference)
    assert again.generated == 1
    assert again.settings(5)["max_new_tokens"] == 5


def test_shap_generates_each_coalition_prompt_once(tmp_path, count_model_calls):
    lm = tiny_model("codegen")
    gen = HFGenerator(lm, cache=GenerationCache(tmp_path / "g.sqlite"), batch_size=8, model_id="t0")
    out = ShapKernel(gen).attribute(TASK)
    assert out.failure is None, out.failure
    n = len(out.spans)
    assert gen.generated == out.n_generations == n + 1
    # original first, then all single-word masks in one batch (the explainer's background)
    assert sum(k for k, _ in count_model_calls) == n + 1
    rerun = HFGenerator(lm, cache=GenerationCache(tmp_path / "g.sqlite"), batch_size=8, model_id="t0")
    assert ShapKernel(rerun).attribute(TASK).scores == out.scores and rerun.generated == 0


def test_runner_with_hf_backend_from_a_model_folder(tmp_path):
    from tests.tiny_models import save_tiny
    save_tiny("gpt2", tmp_path / "tiny-gpt2")
    gen = run.build_generator(str(tmp_path / "tiny-gpt2"), cache_path=tmp_path / "c.sqlite", batch_size=8)
    assert isinstance(gen, HFGenerator) and gen.name == "tiny-gpt2"
    opts = run.method_options("bert_perturbation", fill_model="tiny-random-bert")
    tasks = [TASK, mbpp_task("Sort the list", "t/1")]
    summary = run.run("bert_perturbation", gen, tasks, tmp_path / "res", opts, progress=False)
    assert (summary.scored, summary.failed) == (2, 0)
    assert summary.path.name == "bert_perturbation_tiny-gpt2.jsonl"
