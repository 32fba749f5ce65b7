"""common.internals: one SDPA forward + one batched backward give the same attention rows as the
eager ``output_attentions`` maps and the same gradients as the per-step (ecco) reference, on every
tiny architecture, at the prompt end and inside the generation."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from common.capture import full_attentions
from common.internals import internals
from common.tiny import ARCHITECTURES, build_model, tiny_model, tiny_tokenizer
from gradient_based.reference import per_step_gradients
from tests.test_self_attention import BODY, PROMPT


def fast_model(arch):
    """The shared eager tiny model's weights in a model loaded with SDPA (XGLM has no SDPA path
    in transformers: it stays eager and is read through the capture hook)."""
    ref = tiny_model(arch)
    lm = build_model(arch, attn_implementation="eager" if arch == "xglm" else "sdpa")
    lm.model.load_state_dict(ref.model.state_dict())
    return ref, lm


def sequence():
    tok = tiny_tokenizer()
    prompt = torch.tensor(tok(PROMPT, add_special_tokens=False)["input_ids"])
    new = torch.tensor(tok(BODY, add_special_tokens=False)["input_ids"])
    return prompt, new


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_rows_and_gradients_equal_eager_maps_and_per_step_reference(arch):
    ref, lm = fast_model(arch)
    assert lm.model.config._attn_implementation == ("eager" if arch == "xglm" else "sdpa")
    prompt, new = sequence()
    ids = torch.cat([prompt, new])
    p, n = len(prompt), len(new)
    rows = [p, p + n // 2, 3]  # prompt end, inside the generation, early in the prompt
    steps = [0, n // 3, n - 1]  # step t: input prompt + new[:t], target new[t], query p - 1 + t
    targets = [p - 1 + t for t in steps]
    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    out = internals(lm.model, ids, rows, targets)
    assert ALL_ATTENTION_FUNCTIONS._local_mapping == before  # the interface wrapper is gone

    full = full_attentions(ref.model, ids)
    assert out.attention.shape == (2, 4, len(rows), len(ids))
    torch.testing.assert_close(out.attention, full[:, :, rows, :], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.row(rows[1]).sum(-1), torch.ones(2, 4), rtol=0, atol=1e-5)

    reference = per_step_gradients(ref.model, prompt, new, steps=steps)
    for t, q in zip(steps, targets):
        ours, theirs = out.gradient(q), reference[t]
        assert ours.grad.shape == theirs.grad.shape == (q + 1, theirs.grad.shape[1])
        scale = float(theirs.grad.abs().max())
        assert scale > 0
        torch.testing.assert_close(ours.embedding, theirs.embedding, rtol=1e-5, atol=1e-6)
        # Relative to the target's largest component: one batched backward is not a sum of targets.
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "xglm"])
def test_each_row_and_target_is_independent_of_the_others(arch):
    """A row or target asked alone (a shorter pass) equals the same one asked with the rest."""
    _, lm = fast_model(arch)
    prompt, new = sequence()
    ids = torch.cat([prompt, new])
    p, n = len(prompt), len(new)
    both = internals(lm.model, ids, [p, p + n - 2], [p - 1, p + n - 2])
    reading = internals(lm.model, ids, [p], [p - 1])
    coding = internals(lm.model, ids, [p + n - 2], [p + n - 2], attention=True)
    torch.testing.assert_close(reading.row(p), both.row(p), rtol=0, atol=1e-6)
    torch.testing.assert_close(coding.row(p + n - 2), both.row(p + n - 2), rtol=0, atol=1e-6)
    for single, q in ((reading, p - 1), (coding, p + n - 2)):
        g = both.gradient(q).grad
        torch.testing.assert_close(single.gradient(q).grad, g, rtol=0, atol=1e-5 * float(g.abs().max()))
    # Rows past the last needed position are zero padding, not attention.
    assert reading.attention.shape[-1] == len(ids) and reading.attention[..., p + 1:].abs().max() == 0


def test_parts_can_be_skipped_and_bad_positions_are_refused():
    _, lm = fast_model("llama")
    prompt, new = sequence()
    ids = torch.cat([prompt, new])
    p = len(prompt)
    only_rows = internals(lm.model, ids, [p], [p - 1], gradients=False)
    assert only_rows.gradients == [] and only_rows.attention.shape[2] == 1
    only_grads = internals(lm.model, ids, [p], [p - 1], attention=False)
    assert only_grads.attention is None and only_grads.gradient(p - 1).grad.shape[0] == p
    with pytest.raises(ValueError, match="next token"):
        internals(lm.model, ids, [], [len(ids) - 1])
    with pytest.raises(ValueError, match="outside"):
        internals(lm.model, ids, [len(ids)], [])
    with pytest.raises(ValueError, match="no attention row"):
        internals(lm.model, ids, [], [])


def test_per_step_reference_computes_no_weight_gradient_and_restores_the_model():
    lm = build_model("gpt2")
    prompt, new = sequence()
    lm.model.transformer.h[0].mlp.c_fc.weight.requires_grad_(False)  # a frozen part stays frozen
    before = {name: p.requires_grad for name, p in lm.model.named_parameters()}
    ref = per_step_gradients(lm.model, prompt, new[:3], steps=[2])
    assert ref[2].grad.abs().max() > 0
    assert all(p.grad is None for p in lm.model.parameters())
    assert {name: p.requires_grad for name, p in lm.model.named_parameters()} == before
