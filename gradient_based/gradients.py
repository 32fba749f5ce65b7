"""Gradients of the generated tokens' probabilities w.r.t. the input embeddings.

Target (the study): softmax probability of the generated token. Reading = the first
generated token (input: the prompt); coding = the last generated token (input: prompt and
every generated token before it).

ecco's way runs one forward and one backward pass per generated token. The two targets need
only one forward pass over ``prompt + new[:-1]``: in a causal model the logits at the last
prompt position depend on the prompt alone, so they equal those of a pass over the prompt.
Two backward passes (one per target) then give both gradients. :mod:`gradient_based.reference`
is the per-step way, kept to check that the vectors are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.example import Example, TaskFailure


@dataclass
class StepGradient:
    """Gradient and embedding of each input position for one target token (float32, CPU)."""

    grad: torch.Tensor  # (positions, hidden)
    embedding: torch.Tensor  # (positions, hidden)


def two_step_gradients(model, prompt_ids: torch.Tensor, new_ids: torch.Tensor,
                       ) -> tuple[StepGradient, StepGradient]:
    """``(reading, coding)`` gradients: targets ``new_ids[0]`` and ``new_ids[-1]``."""
    if len(new_ids) == 0:
        raise TaskFailure("the model generated no token")
    p = len(prompt_ids)
    seq = torch.cat([prompt_ids, new_ids[:-1]])
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    with torch.enable_grad():
        embeds = embed(seq[None].to(device)).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeds, use_cache=False).logits[0]
        first = torch.softmax(logits[p - 1].float(), -1)[int(new_ids[0])]
        last = torch.softmax(logits[-1].float(), -1)[int(new_ids[-1])]
        (g_first,) = torch.autograd.grad(first, embeds, retain_graph=True)
        (g_last,) = torch.autograd.grad(last, embeds)
    emb = embeds.detach()[0].float().cpu()
    return (StepGradient(g_first[0, :p].float().cpu(), emb[:p]),
            StepGradient(g_last[0].float().cpu(), emb))


def step(example: Example, stage: str) -> StepGradient:
    reading, coding = example.memo("gradients", lambda: two_step_gradients(
        example.lm.model, example.generation.prompt_ids, example.generation.new_ids))
    return reading if stage == "reading" else coding


def normalised(norms: torch.Tensor) -> torch.Tensor:
    """Divide by the sum over positions (all zeros stay zeros)."""
    total = norms.sum()
    return norms / total if total > 0 else norms


def saliency(g: StepGradient) -> torch.Tensor:
    """L2 norm of the gradient per position, normalised to sum 1."""
    return normalised(g.grad.norm(dim=-1))


def input_x_gradient(g: StepGradient) -> torch.Tensor:
    """L2 norm of gradient x embedding per position, normalised to sum 1."""
    return normalised((g.grad * g.embedding).norm(dim=-1))


def prompt_scores(example: Example, stage: str, reduce) -> np.ndarray:
    """Scores of the prompt positions (normalised over all input positions of the step)."""
    return reduce(step(example, stage))[: example.prompt_len].numpy()
