"""Tasks generated for the model-internal methods reuse their generation's prefills for the
internals, alone or in a batched chunk: the same tokens as ``models.generate`` (at batch size 1
and batched), the same attention rows and gradients as the full pass, on every tiny
architecture; a cache hit, a task past the chunk's graph memory cap, a generation config that
processes logits, a model whose grad prefill differs and caches that cannot be stacked keep the
old paths."""

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


def sliding_window_model():
    """A Mistral-style tiny model whose caches keep a window of 5 positions (sliding layers)."""
    import transformers as t

    from common.tiny import tiny_tokenizer
    tok = tiny_tokenizer()
    eos = tok.eos_token_id
    cfg = t.MistralConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          hidden_size=32, intermediate_size=64, max_position_embeddings=2048,
                          sliding_window=6, vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos,
                          pad_token_id=eos)
    torch.manual_seed(0)
    model = t.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return models.LoadedModel("tiny-mistral", model.eval(), tok, "cpu", torch.float32)


def test_a_sliding_window_cache_falls_back_to_batched_generate():
    lm = sliding_window_model()
    tasks = [mbpp_task(p, f"t/{i}") for i, p in enumerate(PROMPTS)]
    backend = HFBackend(lm, batch_size=8)
    backend.prepare(tasks)
    assert backend._unbatchable and backend.generated == 2
    for task in tasks:
        ex = backend.example(task)
        budget = backend.budget(task.model_prompt, task.reference)
        ref = models.generate(lm, [task.model_prompt], budget)[0]
        assert ex.prefill is None and torch.equal(ex.continuation.new_ids, ref.new_ids)
    # alone, nothing is stacked: its own cache is continued, as before
    alone, task = HFBackend(lm, batch_size=8), mbpp_task(CHUNK[4])
    ex = alone.example(task)
    assert ex.prefill is not None and not alone._unbatchable
    budget = alone.budget(task.model_prompt, task.reference)
    assert torch.equal(ex.continuation.new_ids, models.generate(lm, [task.model_prompt], budget)[0].new_ids)


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


def chunk_tasks():
    """Runnable tasks of different prompt lengths and a task whose prompt fills the context."""
    he = dataclasses.replace(mbpp_task(PROMPTS[0]), task_id="he/0", prompt=make_task().prompt,
                             model_prompt=make_task().model_prompt)
    return [mbpp_task(PROMPTS[0], "t/0"), mbpp_task(PROMPTS[1], "t/1"), mbpp_task(CHUNK[1], "t/2"),
            he, mbpp_task("x " * 3000, "t/long")]


#: per-task budgets (the study's are tokens of the reference + 20): 1, 2 and 5 in one chunk
BUDGETS = {"t/0": 5, "t/1": 1, "t/2": 2, "he/0": 9, "t/cached": 4}


def chunk_backend(lm, batch_size=8, budgets=BUDGETS):
    backend = HFBackend(lm, batch_size=batch_size)
    real = backend.budget  # still refuses a prompt that fills the context
    by_prompt = {t.model_prompt: budgets[t.task_id] for t in chunk_tasks() + [cached_task()]
                 if t.task_id in budgets}
    backend.budget = lambda prompt, reference: min(real(prompt, reference), by_prompt[prompt])
    return backend


def cached_task():
    return mbpp_task(CHUNK[4], "t/cached")


def with_body(ex):
    """``ex`` continued by a chosen function body (random models write none), so both stages
    have rows: the prefill covers the prompt only, any continuation is read the same way."""
    lm = ex.lm
    body = torch.tensor(lm.tokenizer("\n    return sorted(x)\n\nprint(1)")["input_ids"])
    ex.continuation = dataclasses.replace(ex.continuation, new_ids=body, text=lm.tokenizer.decode(body))
    ex.ids = ex.continuation.ids
    return ex


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_chunk_is_decoded_batched_from_prefills_with_generates_tokens_and_internals(arch):
    from common.method import TaskFailure

    _, lm = fast_model(arch)
    tasks = chunk_tasks()
    backend = chunk_backend(lm)
    backend.example(cached_task())  # generated into the cache by an earlier chunk
    before = backend.generated
    backend.prepare([*tasks[:2], cached_task(), *tasks[2:]])
    assert backend.generated - before == 4
    with pytest.raises(TaskFailure, match="context"):
        backend.example(tasks[-1])
    runnable = [*tasks[:-1], cached_task()]
    prompts = [t.model_prompt for t in runnable]
    budgets = [BUDGETS[t.task_id] for t in runnable]
    batched = models.generate(lm, prompts, budgets, batch_size=8)
    for task, budget, ref in zip(runnable, budgets, batched):
        ex = backend.example(task)
        assert (ex.prefill is None) == (task.task_id == "t/cached")
        alone = models.generate(lm, [task.model_prompt], budget)[0]
        assert torch.equal(ex.continuation.new_ids, ref.new_ids) and ex.text == ref.text
        assert torch.equal(ex.continuation.new_ids, alone.new_ids) and ex.n_new == budget
        assert backend.cache.get(backend.model_id, backend._settings(budget), task.model_prompt) == {
            "text": ref.text, "new_ids": ref.new_ids.tolist()}
    for task in tasks[:-1]:
        ex = with_body(backend.example(task))
        ours = ex.internals()
        assert used_prefill(ours) and ex.prefill is None
        full = Example(lm, task, ex.continuation).internals()
        assert not used_prefill(full)
        assert_same_internals(ours, full)


def test_prepare_decodes_a_chunk_once_from_prefills(monkeypatch):
    lm = fast_model("llama")[1]
    calls = []
    real, real_from_prefills = models.generate, models.generate_from_prefills

    def counting(lm, prompts, max_new_tokens, batch_size=1):
        calls.append(("generate", len(prompts), batch_size))
        return real(lm, prompts, max_new_tokens, batch_size=batch_size)

    def counting_from_prefills(lm, prompts, budgets, logits, caches, batch_size=None):
        calls.append(("from_prefills", len(prompts), batch_size))
        return real_from_prefills(lm, prompts, budgets, logits, caches, batch_size=batch_size)

    monkeypatch.setattr(models, "generate", counting)
    monkeypatch.setattr(models, "generate_from_prefills", counting_from_prefills)
    tasks = chunk_tasks()[:4]
    for batch_size in (8, 1):
        calls.clear()
        backend = HFBackend(lm, batch_size=batch_size)
        backend.prepare(tasks)
        assert calls == [("from_prefills", 4, batch_size)]
        assert all(backend.example(t).prefill is not None for t in tasks)
    # a task the chunk asks twice: generated once, its prefill read by one example only
    calls.clear()
    backend = HFBackend(lm, batch_size=8)
    twin = dataclasses.replace(tasks[0], task_id="t/twin")
    backend.prepare([tasks[0], twin])
    assert calls == [("from_prefills", 1, 8)] and backend.generated == 1
    first, second = backend.example(tasks[0]), backend.example(twin)
    assert first.prefill is second.prefill
    assert used_prefill(with_body(first).internals()) and not used_prefill(with_body(second).internals())
    # no model-internal family in the run: nothing to reuse, plain batched generation
    calls.clear()
    backend = HFBackend(lm, batch_size=8)
    backend.families = frozenset()
    backend.prepare(tasks)
    assert calls == [("generate", 4, 8)] and all(backend.example(t).prefill is None for t in tasks)


@pytest.mark.parametrize("setting", [{"suppress_tokens": [5]}, {"min_length": 500}])
def test_a_chunk_whose_generation_config_processes_logits_keeps_batched_generate(setting):
    lm = build_model("llama", attn_implementation="sdpa")
    for k, v in setting.items():
        setattr(lm.model.generation_config, k, v)
    tasks = chunk_tasks()[:4]
    backend = chunk_backend(lm)
    backend.prepare(tasks)
    prompts = [t.model_prompt for t in tasks]
    ref = models.generate(lm, prompts, [BUDGETS[t.task_id] for t in tasks], batch_size=8)
    for task, g in zip(tasks, ref):
        ex = backend.example(task)
        assert ex.prefill is None and torch.equal(ex.continuation.new_ids, g.new_ids)


def test_a_chunk_past_the_graph_cap_gets_the_full_pass_for_the_rest(monkeypatch):
    from common import backends

    _, lm = fast_model("gpt_neox")
    # longest first: a shorter prompt's graph is then never larger than its estimate from the
    # first's bytes per token (a graph is a fixed part plus a part per token)
    tasks = sorted(chunk_tasks()[:4], key=lambda t: -len(models.encode(lm, t.model_prompt)))
    lengths = [len(models.encode(lm, t.model_prompt)) for t in tasks]
    sizes = [prefill(lm.model, models.encode(lm, t.model_prompt)).graph_bytes for t in tasks]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] > 0  # it grows with the prompt
    assert sizes[0] / lengths[0] * lengths[1] <= sizes[1]
    assert prefill(lm.model, models.encode(lm, tasks[0].model_prompt), gradients=False).graph_bytes == 0
    reference = chunk_backend(lm)
    reference.prepare(tasks)
    for cap, kept in [(1, 1), (sizes[0] + sizes[1] + 100, 2), (10 * sum(sizes), 4)]:
        monkeypatch.setattr(backends, "GRAPH_CAP_BYTES", cap)
        backend = chunk_backend(lm)
        assert backend.graph_cap() == cap
        backend.prepare(tasks)
        exs = [backend.example(t) for t in tasks]
        # the first always keeps its graph; then only while the measured total stays in the cap
        assert [ex.prefill is not None for ex in exs] == [True] * kept + [False] * (4 - kept)
        for task, ex in zip(tasks, exs):
            ref = reference.example(task)
            assert torch.equal(ex.continuation.new_ids, ref.continuation.new_ids)
        for i, ex in enumerate(exs):
            ours = with_body(ex).internals()
            assert used_prefill(ours) == (i < kept)
            assert_same_internals(ours, Example(lm, tasks[i], ex.continuation).internals())


def test_the_cuda_graph_cap_is_a_share_of_the_free_memory(monkeypatch):
    from common import backends

    lm = dataclasses.replace(fast_model("llama")[1], device="cuda:1")
    seen = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: seen.append(device) or (8 << 30, 80 << 30))
    # 2 GiB the allocator holds but no tensor uses: free for the graphs too
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 3 << 30)
    cap = HFBackend(lm).graph_cap()
    assert cap == int((10 << 30) * backends.GRAPH_CAP_FREE_FRACTION) < 10 << 30
    assert seen == [torch.device("cuda:1")]
    assert HFBackend(fast_model("llama")[1]).graph_cap() == backends.GRAPH_CAP_BYTES


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
    # a chunk: batched generation, no prefill either
    tasks = chunk_tasks()[:4]
    backend = chunk_backend(lm)
    backend.prepare(tasks)
    ref = models.generate(lm, [t.model_prompt for t in tasks], [BUDGETS[t.task_id] for t in tasks],
                          batch_size=8)
    assert calls == [] and backend.generated == 4
    for task, g in zip(tasks, ref):
        ex = backend.example(task)
        assert ex.prefill is None and torch.equal(ex.continuation.new_ids, g.new_ids)
