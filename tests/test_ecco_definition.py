"""Our saliency and input x gradient equal the per-step definition of ecco (the library the
study used; it no longer installs, see README "Packages"): for each generated token, the
gradient of that token's softmax probability w.r.t. the input embeddings of the prefix that
produced it; saliency = L2 norm of the gradient per position, input x gradient = L2 norm of
gradient * embedding per position, each normalised to sum 1. The reference below is written
from that definition alone (its own forward pass per step, no code of gradient_based)."""

import torch

from common.tiny import build_model
from gradient_based.gradients import target_gradients
from gradient_based.inputxgradient import InputXGradient
from gradient_based.saliency import Saliency


def ecco_step(model, ids: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ecco's attribution of the token ``ids[step]`` generated from ``ids[:step]``."""
    prefix = ids[:step]
    embeds = model.get_input_embeddings()(prefix[None]).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits[0, -1]
    prob = torch.softmax(logits, dim=-1)[ids[step]]
    prob.backward()
    grad, emb = embeds.grad[0], embeds.detach()[0]
    saliency = grad.norm(dim=-1)
    ixg = (grad * emb).norm(dim=-1)
    return saliency / saliency.sum(), ixg / ixg.sum()


def test_saliency_and_input_x_gradient_equal_the_ecco_definition():
    lm = build_model("gpt2", seed=3)
    model = lm.model
    torch.manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (7,))
    with torch.no_grad():  # greedy generation of 4 tokens, as ecco generates
        ids = prompt
        for _ in range(4):
            nxt = model(ids[None]).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt[None]])
    steps = list(range(len(prompt), len(ids)))
    ours = target_gradients(model, ids, [s - 1 for s in steps])  # query row = step - 1
    for step in steps:
        want_sal, want_ixg = ecco_step(model, ids, step)
        g = ours[step - 1]
        assert g.grad.shape[0] == step
        torch.testing.assert_close(Saliency.reduce(g), want_sal, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(InputXGradient.reduce(g), want_ixg, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(want_sal, want_ixg)  # the two definitions really differ
