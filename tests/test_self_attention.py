"""Self-attention methods: captured rows equal the full ``output_attentions`` maps, each method's
layer/head reduction against an independent numpy computation, and the coding position."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attention_alignment import catalogue
from common import models
from common.backends import Example, GivenExample
from common.capture import AttentionUnavailable, attention_rows, full_attentions
from common.method import TaskFailure
from common.tiny import ARCHITECTURES, build_model, tiny_model

PROMPT = ('from typing import List\n\n\ndef sort_list(numbers: List[int]) -> List[int]:\n'
          '    """ Sort the given list of integers in ascending order.\n    """\n')
BODY = "    numbers = sorted(numbers)\n    return numbers\n\n\ndef check(x):\n    pass\n"


def make_task(prompt=PROMPT, benchmark="humaneval"):
    from common.dataset import scored_region
    return SimpleNamespace(task_id="t/0", prompt=prompt, benchmark=benchmark,
                           model_prompt=prompt + ("\ndef function():" if benchmark == "mbpp" else ""),
                           region=scored_region(benchmark, prompt), reference="return 1")


def forced_example(lm, continuation=BODY, task=None):
    """An example whose 'generation' is a chosen text (random models write no function body)."""
    task = task or make_task()
    prompt_ids = models.encode(lm, task.model_prompt)
    new = torch.tensor(lm.tokenizer(continuation, add_special_tokens=False)["input_ids"])
    text = lm.tokenizer.decode(new, skip_special_tokens=True)
    return Example(lm, task, models.Continuation(prompt_ids, new, text, task.model_prompt, len(new)))


Forced = GivenExample  # the continuation chosen by the test


def attribute(name, ex, **options):
    m = catalogue.get(name)
    return (m.configure(**options) if options else m).attribute(ex.task, Forced(ex))


def rows_of(ex, definitions="unified"):
    r = ex.rows("self_attention", definitions)
    return r.reading, r.coding


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_captured_rows_equal_full_attention_maps(arch):
    lm = tiny_model(arch)
    ex = forced_example(lm)
    rows = [*rows_of(ex), 3]
    got = attention_rows(lm.model, ex.ids, rows)
    full = full_attentions(lm.model, ex.ids)
    n_layers = len(full)
    assert got.shape == (n_layers, full.shape[1], 3, len(ex.ids))
    assert n_layers == 2 and full.shape[1] == 4
    torch.testing.assert_close(got, full[:, :, rows, :], rtol=1e-5, atol=1e-6)
    # Probabilities: each row sums to one over the causal prefix and is zero beyond it.
    torch.testing.assert_close(got.sum(-1), torch.ones(n_layers, 4, 3), rtol=1e-5, atol=1e-5)
    assert got[:, :, 0, rows[0] + 1:].abs().max() == 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_self_attention_method_matches_numpy_reference(arch):
    lm = tiny_model(arch)
    ex = forced_example(lm)
    full = full_attentions(lm.model, ex.ids).numpy()  # (L, H, n, n)
    p = ex.prompt_len
    for definitions in ("unified", "paper"):
        for stage, row in zip(("reading", "coding"), rows_of(ex, definitions)):
            a = full[:, :, row, :p]
            want = {
                f"{stage}_first": a[0].mean(0), f"{stage}_last": a[-1].mean(0),
                f"{stage}_all": a.mean(axis=(0, 1)),
                f"{stage}_first_layer0": a[0, 0], f"{stage}_last_layer0": a[0, -1],
                f"{stage}_all_layer0": a[0].sum(0),
            }
            for name, ref in want.items():
                got = attribute(name, ex, definitions=definitions)
                spans, ref_words = ex.to_words(ref)
                np.testing.assert_array_equal(got.spans, spans)
                np.testing.assert_allclose(got.scores, ref_words, rtol=1e-5, atol=1e-7,
                                           err_msg=f"{arch} {name} {definitions}")
    # The variants are different computations, not aliases of one another.
    first = attribute("reading_first", ex).scores
    assert not np.allclose(first, attribute("reading_first_layer0", ex).scores)
    assert not np.allclose(attribute("reading_first", ex).scores, attribute("reading_last", ex).scores)


def test_one_pass_serves_all_model_internal_methods(monkeypatch):
    import common.internals as module
    calls = []
    real = module.internals
    monkeypatch.setattr(module, "internals", lambda *a, **k: calls.append((a[2], a[3])) or real(*a, **k))
    ex = forced_example(tiny_model("gpt2"))
    for m in catalogue.select(None, "all", "both"):
        m.attribute(ex.task, Forced(ex))
    # one call: both stages' attention rows and both stages' gradient targets (the same rows
    # under the unified definitions)
    assert calls == [(list(rows_of(ex)), list(rows_of(ex)))]


def test_query_rows_of_both_definitions():
    lm = tiny_model("llama")
    ex = forced_example(lm)
    p = ex.prompt_len
    # The function's last character is the "s" of "return numbers"; its token ends there.
    body_end = ex.text.index("numbers\n\n") + len("numbers")
    t = ex.function_last
    ends = ex.generated_char_ends()
    assert ends[t] >= body_end > (ends[t - 1] if t else 0)
    assert lm.tokenizer.decode(ex.ids[p + t]).strip().endswith("s")
    # unified: the query positions that predict the first generated token and that last token
    assert rows_of(ex) == (p - 1, p - 1 + t)
    assert ex.rows("gradient").reading == p - 1 and ex.rows("gradient").coding == p - 1 + t
    # paper: self-attention read one position later; gradients used the last generated token
    assert rows_of(ex, "paper") == (p, p + t)
    paper = ex.rows("gradient", "paper")
    assert (paper.reading, paper.coding) == (p - 1, p + ex.n_new - 2)


def test_no_function_body_fails_coding_only():
    lm = tiny_model("gpt2")
    ex = forced_example(lm, continuation="print('hi')\nx = 1\n")
    out = attribute("reading_last", ex)
    assert len(out.scores) == len(out.spans) > 0 and out.generation == ex.text
    with pytest.raises(TaskFailure, match="no function body") as failed:
        attribute("coding_last", ex)
    assert failed.value.generation == ex.text  # recorded with the failure


def test_no_generated_token_fails_with_reason():
    ex = forced_example(tiny_model("gpt2"), continuation="")
    with pytest.raises(TaskFailure, match="generated no token"):
        attribute("reading_first", ex)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "codegen"])
def test_a_model_on_its_fast_attention_gives_the_eager_scores(arch):
    """Models load with their default (SDPA) attention: the rows recomputed from its queries and
    keys equal the eager model's probabilities, and the gradients are those of the same model."""
    fast = forced_example(build_model(arch, attn_implementation="sdpa"))
    eager = forced_example(build_model(arch, attn_implementation="eager"))
    for name in ("reading_first", "coding_last", "reading_all_layer0", "saliency_coding"):
        np.testing.assert_allclose(attribute(name, fast).scores, attribute(name, eager).scores,
                                   rtol=1e-4, atol=1e-7, err_msg=f"{arch} {name}")


def test_capture_drops_the_full_maps():
    """With the hooks on, even ``output_attentions=True`` gets no map: none outlives its layer."""
    from common.capture import _hooks
    lm = tiny_model("gpt_neox")
    ids = models.encode(lm, PROMPT)
    store = []
    with _hooks(lm.model, [5], store), torch.no_grad():
        out = lm.model(ids[None], output_attentions=True)
    assert [s.shape for s in store] == [(4, 1, len(ids))] * 2
    assert out.attentions is None or all(a is None for a in out.attentions)
    with torch.no_grad():
        out = lm.model(ids[None], output_attentions=True)  # hooks removed: maps are back
    assert out.attentions[0].shape == (1, 4, len(ids), len(ids))


def test_attention_modules_one_per_layer_for_every_architecture():
    from common.capture import attention_modules
    for arch in ARCHITECTURES:
        mods = attention_modules(tiny_model(arch).model)
        assert len(mods) == 2 and all(index == 1 for _, index in mods), arch
        assert all(type(m).__name__.endswith("Attention") for m, _ in mods)


def test_fallback_finds_attention_modules_by_class_name(monkeypatch):
    import common.capture as capture
    lm = tiny_model("gpt2")
    monkeypatch.setattr(capture, "_recorder_specs", lambda model: [])
    mods = capture.attention_modules(lm.model)
    assert [type(m).__name__ for m, _ in mods] == ["GPT2Attention"] * 2
    ex = forced_example(lm)
    row = rows_of(ex)[0]
    got = capture.attention_rows(lm.model, ex.ids, [row])
    torch.testing.assert_close(got[:, :, 0], full_attentions(lm.model, ex.ids)[:, :, row])


def test_model_without_attention_modules_is_a_clear_error():
    import common.capture as capture
    with pytest.raises(AttentionUnavailable, match="no attention module"):
        capture.attention_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))
