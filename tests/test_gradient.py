"""Gradient methods: one forward and one backward pass per target equal the per-step (ecco)
reference at the first and last generated token, the gradient itself agrees with finite
differences, and the saliency / input x gradient reductions and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common import models
from common.method import TaskFailure
from common.tiny import ARCHITECTURES, build_model, tiny_model
from gradient_based.gradients import target_gradients
from gradient_based.inputxgradient import InputXGradient
from gradient_based.reference import per_step_gradients
from gradient_based.saliency import Saliency
from tests.test_self_attention import attribute, forced_example

saliency, input_x_gradient = Saliency.reduce, InputXGradient.reduce


def two_step_gradients(model, prompt_ids, new_ids):
    """Gradients of the first and the last generated token (the paper's reading and coding)."""
    p, n = len(prompt_ids), len(new_ids)
    g = target_gradients(model, torch.cat([prompt_ids, new_ids]), [p - 1, p + n - 2])
    return g[p - 1], g[p + n - 2]


def prompt_scores(ex, name, **options):
    """A method's scores per prompt token, before they are spread onto words."""
    spans, words = ex.to_words(np.eye(ex.prompt_len)[0])  # the word spans of the region
    got = attribute(name, ex, **options)
    np.testing.assert_array_equal(got.spans, spans)
    return got.scores


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_two_backward_passes_equal_per_step_reference(arch):
    lm = tiny_model(arch)
    gen = models.generate(lm, ["def add(a, b):\n    return"], 12)[0]
    n = len(gen.new_ids)
    assert n >= 2
    reading, coding = two_step_gradients(lm.model, gen.prompt_ids, gen.new_ids)
    ref = per_step_gradients(lm.model, gen.prompt_ids, gen.new_ids, steps=[0, n - 1])
    p = len(gen.prompt_ids)
    assert reading.grad.shape == (p, ref[0].grad.shape[1])
    assert coding.grad.shape == (p + n - 1, ref[0].grad.shape[1])
    for ours, theirs in ((reading, ref[0]), (coding, ref[n - 1])):
        assert theirs.grad.abs().max() > 0
        torch.testing.assert_close(ours.embedding, theirs.embedding, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-3, atol=1e-6 * theirs.grad.abs().max())
        for reduce in (saliency, input_x_gradient):
            torch.testing.assert_close(reduce(ours), reduce(theirs), rtol=1e-4, atol=1e-7)


def test_gradient_agrees_with_finite_differences():
    """d p(token) / d embedding along a random direction, in float64."""
    lm = build_model("gpt2")
    model = lm.model.double()
    gen = models.generate(lm, ["def add(a, b):\n    return"], 4)[0]
    reading, coding = two_step_gradients(model, gen.prompt_ids, gen.new_ids)
    seq = torch.cat([gen.prompt_ids, gen.new_ids[:-1]])
    emb = model.get_input_embeddings()(seq[None]).detach()
    torch.manual_seed(1)
    direction = torch.randn_like(emb)

    def prob(e, pos, tok):
        with torch.no_grad():
            return torch.softmax(model(inputs_embeds=e).logits[0, pos], -1)[tok].item()

    h = 1e-5
    p = len(gen.prompt_ids)
    for g, pos, tok, width in ((reading, p - 1, gen.new_ids[0], p), (coding, -1, gen.new_ids[-1], len(seq))):
        d = direction.clone()
        d[0, width:] = 0
        numeric = (prob(emb + h * d, pos, tok) - prob(emb - h * d, pos, tok)) / (2 * h)
        analytic = float((g.grad.double() * d[0, :width]).sum())
        assert abs(analytic) > 1e-8
        assert numeric == pytest.approx(analytic, rel=1e-4)


@pytest.mark.parametrize("definitions", ["unified", "paper"])
def test_methods_normalise_and_reduce_as_specified(definitions):
    lm = tiny_model("codegen")
    ex = forced_example(lm)
    rows = ex.rows("gradient", definitions)
    grads = per_step_gradients(lm.model, ex.continuation.prompt_ids, ex.continuation.new_ids,
                               steps=[rows.reading - ex.prompt_len + 1, rows.coding - ex.prompt_len + 1])
    reading, coding = grads[rows.reading - ex.prompt_len + 1], grads[rows.coding - ex.prompt_len + 1]
    p = ex.prompt_len

    def words(token_scores):
        return ex.to_words(token_scores)[1]

    g, e = reading.grad.numpy(), reading.embedding.numpy()
    sal = np.linalg.norm(g, axis=1)
    ixg = np.linalg.norm(g * e, axis=1)
    opts = {"definitions": definitions}
    np.testing.assert_allclose(prompt_scores(ex, "saliency_reading", **opts), words(sal / sal.sum()),
                               rtol=1e-4)
    np.testing.assert_allclose(prompt_scores(ex, "inputxgradient_reading", **opts), words(ixg / ixg.sum()),
                               rtol=1e-4)
    # the region's words hold most, not all, of the prompt's mass (the rest is outside the region)
    assert 0 < prompt_scores(ex, "saliency_reading", **opts).sum() <= 1 + 1e-6
    # Coding: normalised over every input position of its step (prompt + generated so far),
    # reported on the prompt positions.
    g, e = coding.grad.numpy(), coding.embedding.numpy()
    sal = np.linalg.norm(g, axis=1)
    got = prompt_scores(ex, "saliency_coding", **opts)
    np.testing.assert_allclose(got, words((sal / sal.sum())[:p]), rtol=1e-4)
    assert 0 < got.sum() < 1
    ixg = np.linalg.norm(g * e, axis=1)
    np.testing.assert_allclose(prompt_scores(ex, "inputxgradient_coding", **opts),
                               words((ixg / ixg.sum())[:p]), rtol=1e-4)
    assert not np.allclose(prompt_scores(ex, "saliency_reading", **opts),
                           prompt_scores(ex, "inputxgradient_reading", **opts))


def test_single_generated_token_reading_equals_coding():
    lm = tiny_model("llama")
    ex = forced_example(lm, continuation="x")
    assert ex.n_new == 1
    np.testing.assert_allclose(prompt_scores(ex, "saliency_reading", definitions="paper"),
                               prompt_scores(ex, "saliency_coding", definitions="paper"), rtol=1e-6)


def test_two_backward_passes_share_one_forward(monkeypatch):
    lm = build_model("gpt2")
    calls = []
    lm.model.register_forward_hook(lambda m, a, o: calls.append(1))
    ex = forced_example(lm)
    from attention_alignment import catalogue
    from tests.test_self_attention import Forced
    for m in catalogue.select(None, "gradient"):
        out = m.attribute(ex.task, Forced(ex))
        assert len(out.scores) == len(ex.to_words(np.zeros(ex.prompt_len))[0])
    assert len(calls) == 1


def test_no_generated_token_fails():
    ex = forced_example(tiny_model("gpt2"), continuation="")
    with pytest.raises(TaskFailure, match="generated no token"):
        attribute("saliency_coding", ex)


def test_model_weights_are_left_untouched():
    lm = build_model("gpt_neox")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    ex = forced_example(lm)
    attribute("inputxgradient_coding", ex)
    per_step_gradients(lm.model, ex.continuation.prompt_ids, ex.continuation.new_ids, steps=[0])
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert all(p.grad is None for p in lm.model.parameters())
