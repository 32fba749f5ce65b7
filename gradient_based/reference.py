"""Reference: gradient attribution the per-step way (ecco's), for tests and bench/ only.

For every generated token t: one forward pass over ``prompt + new[:t]`` from token ids, the
embedding output captured by a hook (as ecco does), one backward pass from the softmax
probability of ``new[t]``. Independent of :mod:`gradient_based.gradients` (token ids, not
``inputs_embeds``; one pass per step), so agreement at the first and last step checks both.
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
    out = {}
    for t in steps:
        ids = torch.cat([prompt_ids, new_ids[:t]])[None].to(device)
        captured = {}

        def hook(module, args, output, captured=captured):
            output.retain_grad()
            captured["e"] = output

        handle = embed.register_forward_hook(hook)
        frozen = not embed.weight.requires_grad
        try:
            with torch.enable_grad():
                # ecco relies on the embedding weights requiring grad so that their output does
                embed.weight.requires_grad_(True)
                logits = model(input_ids=ids, use_cache=False).logits[0, -1]
                prob = torch.softmax(logits.float(), -1)[int(new_ids[t])]
                prob.backward()
        finally:
            handle.remove()
            if frozen:
                embed.weight.requires_grad_(False)
        e = captured["e"]
        out[t] = StepGradient(e.grad[0].float().cpu(), e.detach()[0].float().cpu())
        model.zero_grad(set_to_none=True)
    return out
