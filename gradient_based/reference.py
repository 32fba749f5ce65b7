"""Reference: gradient attribution the per-step way (ecco's), for tests and bench/ only.

For every generated token t: one forward pass over ``prompt + new[:t]`` from token ids, one
backward pass from the softmax probability of ``new[t]`` to the embedding output. Independent
of :mod:`gradient_based.gradients` (token ids, not ``inputs_embeds``; one pass per step), so
agreement at the first and last step checks both.

The weights are frozen for the call (``requires_grad_(False)``, restored after): a forward hook
swaps the embedding output for a leaf copy that requires grad, so the backward pass computes the
input gradient only, as captum and inseq do, not every weight gradient (ecco flips the embedding
weight to requires_grad, which makes it compute them all: timing that would flatter us).
"""

from __future__ import annotations

import torch

from .gradients import StepGradient


def per_step_gradients(model, prompt_ids: torch.Tensor, new_ids: torch.Tensor,
                       steps: list[int] | None = None) -> dict[int, StepGradient]:
    """Gradient of each step in ``steps`` (default: every generated token)."""
    steps = list(range(len(new_ids))) if steps is None else steps
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    params = [p for p in model.parameters() if p.requires_grad]
    captured = {}

    def hook(module, args, output):
        leaf = output.detach().requires_grad_(True)
        captured["e"] = leaf
        return leaf

    out = {}
    handle = embed.register_forward_hook(hook)
    try:
        for p in params:
            p.requires_grad_(False)
        for t in steps:
            ids = torch.cat([prompt_ids, new_ids[:t]])[None].to(device)
            with torch.enable_grad():
                logits = model(input_ids=ids, use_cache=False).logits[0, -1]
                prob = torch.softmax(logits.float(), -1)[int(new_ids[t])]
                e = captured.pop("e")
                (grad,) = torch.autograd.grad(prob, e)
            out[t] = StepGradient(grad[0].float().cpu(), e.detach()[0].float().cpu())
    finally:
        handle.remove()
        for p in params:
            p.requires_grad_(True)
    return out
