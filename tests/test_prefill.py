"""A task generated alone reuses its generation's prefill for the internals: the same tokens as
``models.generate``, the same attention rows and gradients as the full pass, on every tiny
architecture; a cache hit, a generation config that processes logits and a chunk of several
tasks keep the old paths."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from common import models
from common.backends import Example, HFBackend
from common.internals import internals, matches_generation, prefill
from common.tiny import ARCHITECTURES, build_model
from tests.perturbation_fakes import mbpp_task
from tests.test_internals import fast_model, sequence
from tests.test_self_attention import make_task

PROMPTS = ["Write a function to find the maximum element of a list.",
           "Write a python function to count the number of vowels in a string."]


def assert_same_internals(ours, full):
    assert ours.rows == full.rows and ours.targets == full.targets
    if full.attention is None:
        assert ours.attention is None
    else:
        assert ours.attention.shape == full.attention.shape
        torch.testing.assert_close(ours.attention, full.attention, rtol=0, atol=1e-5)
    for a, b in zip(ours.gradients, full.gradients, strict=True):
        scale = float(b.grad.abs().max())
        assert scale > 0 and a.grad.shape == b.grad.shape
        torch.testing.assert_close(a.embedding, b.embedding, rtol=0, atol=0)
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-5 * scale)


def used_prefill(out) -> bool:
    return "prefill" in out.timings


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_prefill_path_equals_the_full_pass(arch):
    _, lm = fast_model(arch)
    prompt, new = sequence()
    ids = torch.cat([prompt, new])
    p, n = len(prompt), len(new)
    cases = [([p - 1, p + n // 2], [p - 1, p + n // 2]),  # unified: reading and coding
             ([p, p + n - 2], [p - 1, p + n - 2]),  # paper: rows one step later, last token
             ([p - 1], [p - 1]),  # no function: the prefill alone, no continuation pass
             ([p + 3], []), ([], [p + 3]), ([p - 1], [p + 1])]
    for rows, targets in cases:
        pre = prefill(lm.model, prompt)
        ours = internals(lm.model, ids, rows, targets, attention=bool(rows), gradients=bool(targets),
                         prefill=pre)
        assert used_prefill(ours) and pre.released and pre.cache is None
        full = internals(lm.model, ids, rows, targets, attention=bool(rows), gradients=bool(targets))
        assert not used_prefill(full)
        assert_same_internals(ours, full)


@pytest.mark.parametrize("arch", ["llama", "xglm"])
def test_a_prefill_that_does_not_cover_the_request_falls_back_to_the_full_pass(arch):
    _, lm = fast_model(arch)
    prompt, new = sequence()
    ids = torch.cat([prompt, new])
    p = len(prompt)
    other = prompt.clone()
    other[0] = (other[0] + 1) % len(lm.tokenizer)
    for pre, rows, targets in [(prefill(lm.model, prompt), [3, p], [p - 1]),  # a row inside the prompt
                               (prefill(lm.model, prompt), [p], [p - 2]),  # a target inside it
                               (prefill(lm.model, prompt, gradients=False), [p], [p + 1]),  # no graph
                               (prefill(lm.model, prompt, attention=False), [p - 1], [p + 1]),  # no row
                               (prefill(lm.model, other), [p], [p])]:  # another prompt
        ours = internals(lm.model, ids, rows, targets, prefill=pre)
        assert not used_prefill(ours) and pre.released
        assert_same_internals(ours, internals(lm.model, ids, rows, targets))
    used = prefill(lm.model, prompt)
    internals(lm.model, ids, [p], [p], prefill=used)
    again = internals(lm.model, ids, [p], [p], prefill=used)  # single use: its cache was extended
    assert not used_prefill(again)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_task_generated_alone_gets_the_same_tokens_and_internals(arch):
    _, lm = fast_model(arch)
    for task in [make_task(), *map(mbpp_task, PROMPTS)]:
        backend = HFBackend(lm, batch_size=1)
        ex = backend.example(task)
        assert ex.prefill is not None and backend.generated == 1
        budget = backend.budget(task.model_prompt, task.reference)
        ref = models.generate(lm, [task.model_prompt], budget)[0]
        assert ex.n_new > 1 and torch.equal(ex.continuation.new_ids, ref.new_ids)
        assert ex.text == ref.text and torch.equal(ex.continuation.prompt_ids, ref.prompt_ids)
        assert backend.cache.get(backend.model_id, backend._settings(budget), task.model_prompt) == {
            "text": ref.text, "new_ids": ref.new_ids.tolist()}
        # A body for the coding stage, whatever this random model wrote: the prefill covers only
        # the prompt, so any continuation after it is read the same way.
        body = torch.tensor(lm.tokenizer("\n    return sorted(x)\n\nprint(1)")["input_ids"])
        for definitions in ("unified", "paper"):
            ex = HFBackend(lm, batch_size=1).example(task)
            ex.continuation = dataclasses.replace(ex.continuation, new_ids=body,
                                                  text=lm.tokenizer.decode(body))
            ex.ids = ex.continuation.ids
            ours = ex.internals(definitions)
            assert used_prefill(ours) and ex.prefill is None
            assert ex.rows("gradient", definitions).coding is not None
            full = Example(lm, task, ex.continuation).internals(definitions)
            assert not used_prefill(full)
            assert_same_internals(ours, full)


def first_token_eos(arch="llama"):
    """A model whose greedy choice after any prompt is EOS (its head row of EOS is that of its
    usual favourite, doubled)."""
    lm = build_model(arch, attn_implementation="sdpa")
    ids = models.encode(lm, mbpp_task(PROMPTS[0]).model_prompt)
    with torch.no_grad():
        top = int(lm.model(input_ids=ids[None]).logits[0, -1].argmax())
        head = lm.model.get_output_embeddings().weight
        head[lm.tokenizer.eos_token_id] = 2 * head[top]
    return lm


def from_prefills(lm, prompts, budgets, batch_size=None):
    pres = [prefill(lm.model, models.encode(lm, p)) for p in prompts]
    return models.generate_from_prefills(lm, prompts, budgets, [p.logits.detach() for p in pres],
                                         [p.cache for p in pres], batch_size=batch_size)


@pytest.mark.parametrize("budget", [1, 2, 5])
def test_short_budgets_and_an_eos_first_token_equal_generate(budget):
    gpt2, eos_first = fast_model("gpt2")[1], first_token_eos()
    for lm, prompt in [(gpt2, PROMPTS[0]), (gpt2, PROMPTS[1]), (eos_first, PROMPTS[0])]:
        task = mbpp_task(prompt)
        ours = from_prefills(lm, [task.model_prompt], [budget])[0]
        ref = models.generate(lm, [task.model_prompt], budget)[0]
        assert torch.equal(ours.new_ids, ref.new_ids) and ours.text == ref.text
        assert len(ours.new_ids) == (1 if lm is eos_first else budget)
    assert ours.new_ids.tolist() == [lm.tokenizer.eos_token_id]  # it stops at once
    with pytest.raises(ValueError, match="budget"):
        from_prefills(lm, [PROMPTS[0]], [0])


#: Prompts of 8 to 37 tokens: one batch pads most rows.
CHUNK = [mbpp_task(PROMPTS[0]).model_prompt, "Return True if all", make_task().model_prompt,
         mbpp_task(PROMPTS[1]).model_prompt, "Given a string s, return the first character"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_prompts_decoded_batched_from_their_prefills_equal_generate(arch):
    _, lm = fast_model(arch)
    lengths = [len(models.encode(lm, p)) for p in CHUNK]
    assert len(set(lengths)) == len(CHUNK) and max(lengths) >= 4 * min(lengths)
    budgets = [5, 1, 9, 2, 7]
    alone = [models.generate(lm, [p], b)[0] for p, b in zip(CHUNK, budgets)]
    batched = models.generate(lm, CHUNK, budgets, batch_size=8)
    for batch_size in (None, 2):  # one batch; batches of two (a row decoded alone among them)
        ours = from_prefills(lm, CHUNK, budgets, batch_size)
        for a, b, c, budget in zip(ours, alone, batched, budgets):
            assert torch.equal(a.new_ids, b.new_ids) and torch.equal(a.new_ids, c.new_ids)
            assert a.text == b.text and torch.equal(a.prompt_ids, b.prompt_ids)
            assert len(a.new_ids) == budget  # random weights: no EOS in these few steps


def test_an_eos_first_row_is_done_before_the_batch_decodes(monkeypatch):
    lm = first_token_eos()
    prompts = [mbpp_task(PROMPTS[0]).model_prompt] + CHUNK[1:3]
    ref = models.generate(lm, prompts, 6, batch_size=8)
    assert [len(g.new_ids) for g in ref] == [1, 6, 6]  # only the first row stops at once
    widths = []
    real = lm.model.generate
    monkeypatch.setattr(lm.model, "generate",
                        lambda **kw: widths.append(kw["input_ids"].shape) or real(**kw))
    ours = from_prefills(lm, prompts, [6, 6, 6])
    assert [g.new_ids.tolist() for g in ours] == [g.new_ids.tolist() for g in ref]
    assert widths == [(2, max(len(models.encode(lm, p)) for p in prompts[1:]) + 1)]


def test_caches_that_cannot_be_stacked_are_refused_before_decoding():
    lm = fast_model("llama")[1]
    pres = [prefill(lm.model, models.encode(lm, p)) for p in CHUNK[:2]]
    lengths = [p.length for p in pres]
    stacked = models.batched_cache([p.cache for p in pres], lengths)
    keys = stacked.layers[0].keys
    assert keys.shape[:3] == (2, 2, max(lengths)) and not keys.requires_grad
    short = min(range(2), key=lengths.__getitem__)
    pad = max(lengths) - lengths[short]
    assert pad > 0 and not keys[short, :, :pad].any()  # the pad slots: zeros, under the mask
    assert torch.equal(keys[short, :, pad:], pres[short].cache.layers[0].keys[0].detach())
    pres[1].cache.layers[1].values = pres[1].cache.layers[1].values[:, :, 1:]  # a truncated layer
    with pytest.raises(models.CacheNotBatchable, match="values"):
        models.batched_cache([p.cache for p in pres], lengths)
    with pytest.raises(models.CacheNotBatchable, match="values"):
        models.generate_from_prefills(lm, CHUNK[:2], [3, 3], [p.logits.detach() for p in pres],
                                      [p.cache for p in pres])


def test_no_budget_and_a_full_context_use_the_old_path():
    lm = fast_model("gpt2")[1]
    backend = HFBackend(lm, batch_size=1)
    backend.no_reference_budget = 0
    task = dataclasses.replace(mbpp_task(PROMPTS[0]), reference="")
    ex = backend.example(task)
    assert ex.n_new == 0 and ex.prefill is None
    # a context that caps the budget: generation stops at the context, same tokens as generate
    small = build_model("gpt2", context=60, attn_implementation="sdpa")
    n = len(models.encode(small, task.model_prompt))
    backend = HFBackend(small, batch_size=1)
    backend.no_reference_budget = 200
    ex = backend.example(task)
    assert ex.prefill is not None and backend.budget(task.model_prompt, "") == 60 - n
    ref = models.generate(small, [task.model_prompt], 60 - n)[0]
    assert torch.equal(ex.continuation.new_ids, ref.new_ids) and len(ref.new_ids) == 60 - n


@pytest.mark.parametrize("setting", [{"suppress_tokens": [5]}, {"forced_eos_token_id": 0},
                                     {"min_length": 500}, {"renormalize_logits": True}])
def test_a_generation_config_that_processes_logits_keeps_generate(setting):
    lm = build_model("llama", attn_implementation="sdpa")
    assert models.first_step_is_argmax(lm)
    for k, v in setting.items():
        setattr(lm.model.generation_config, k, v)
    assert not models.first_step_is_argmax(lm)
    task = mbpp_task(PROMPTS[0])
    backend = HFBackend(lm, batch_size=1)
    ex = backend.example(task)
    assert ex.prefill is None
    budget = backend.budget(task.model_prompt, task.reference)
    assert torch.equal(ex.continuation.new_ids, models.generate(lm, [task.model_prompt], budget)[0].new_ids)


def test_a_cache_hit_has_no_prefill_and_uses_the_full_pass():
    lm = fast_model("llama")[1]
    task = mbpp_task(PROMPTS[1])
    backend = HFBackend(lm, batch_size=1)
    first = backend.example(task)
    assert first.prefill is not None
    backend.prepare([task])  # a new chunk: the continuation now comes from the cache
    hit = backend.example(task)
    assert hit is not first and hit.prefill is None and backend.generated == 1
    assert torch.equal(hit.ids, first.ids)
    full = hit.internals()
    assert not used_prefill(full)
    assert_same_internals(first.internals(), full)


def test_prepare_of_several_tasks_stays_batched(monkeypatch):
    lm = fast_model("llama")[1]
    calls = []
    real, real_from_prefills = models.generate, models.generate_from_prefills

    def counting(lm, prompts, max_new_tokens, batch_size=1):
        calls.append((len(prompts), batch_size))
        return real(lm, prompts, max_new_tokens, batch_size=batch_size)

    def refused(*args, **kwargs):
        raise AssertionError("several tasks are generated together, not from a prefill")

    monkeypatch.setattr(models, "generate", counting)
    monkeypatch.setattr(models, "generate_from_prefills", refused)
    tasks = [mbpp_task(p, f"t/{i}") for i, p in enumerate(PROMPTS)] + [make_task()]
    for batch_size in (8, 1):
        calls.clear()
        backend = HFBackend(lm, batch_size=batch_size)
        backend.prepare(tasks)
        assert calls == [(3, batch_size)]
        assert all(backend.example(t).prefill is None for t in tasks)
    # a chunk of one task (the last of a run, or --batch-size 1) is generated from a prefill
    monkeypatch.setattr(models, "generate_from_prefills", real_from_prefills)
    calls.clear()
    backend = HFBackend(lm, batch_size=8)
    backend.prepare(tasks[:1])
    assert calls == [] and backend.example(tasks[0]).prefill is not None
    # no model-internal family in the run: nothing to reuse, plain generation
    backend = HFBackend(lm, batch_size=8)
    backend.families = frozenset()
    backend.prepare(tasks[1:2])
    assert calls == [(1, 8)] and backend.example(tasks[1]).prefill is None


@pytest.mark.parametrize("arch,attn", [(a, attn) for a in ARCHITECTURES for attn in ("sdpa", "eager")
                                       if not (a == "xglm" and attn == "sdpa")])  # XGLM: no SDPA
def test_the_grad_prefill_is_generations_prefill_bit_for_bit(arch, attn):
    lm = build_model(arch, attn_implementation=attn)
    assert matches_generation(lm.model) is None  # checked once per model, on its first prefill
    pre = prefill(lm.model, models.encode(lm, mbpp_task(PROMPTS[1]).model_prompt))
    assert matches_generation(lm.model, pre) is True and matches_generation(lm.model) is True


def test_a_model_whose_grad_prefill_differs_keeps_generate(monkeypatch):
    from common import internals as module

    lm = build_model("llama", attn_implementation="sdpa")
    pre = prefill(lm.model, models.encode(lm, PROMPTS[0]))
    pre.logits = pre.logits.detach() + 1e-3  # as if the grad-enabled kernels rounded otherwise
    assert matches_generation(lm.model, pre) is False
    task = mbpp_task(PROMPTS[0])
    calls = []
    monkeypatch.setattr(module, "prefill", lambda *a, **k: calls.append(a) or prefill(*a, **k))
    backend = HFBackend(lm, batch_size=1)
    ex = backend.example(task)
    assert ex.prefill is None and calls == []  # the recorded answer: no prefill run at all
    budget = backend.budget(task.model_prompt, task.reference)
    assert torch.equal(ex.continuation.new_ids, models.generate(lm, [task.model_prompt], budget)[0].new_ids)
