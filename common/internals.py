"""Everything the ten model-internal methods need for one task, from one forward and one backward.

:func:`internals` runs the base model once over the sequence (up to the last position anything
needs), and from that single pass takes

* the attention rows of the requested query positions, every layer and head, over the whole
  sequence; and
* for each gradient target q: the gradient of the softmax probability of the next token
  ``ids[q + 1]`` (computed from the logits at q) with respect to the input embeddings of
  positions ``0..q``, all targets in one batched backward pass (``is_grads_batched``: one
  vector-Jacobian product per one-hot row, vectorised, never a sum of targets).

Logits are computed only at the target positions: the base model gives hidden states and the
LM head (``get_output_embeddings()``) is applied to those few rows, not to every position over
the full vocabulary. Final logit scaling / soft-capping is applied where the config has it
(none of the six tested architectures does), and the first call per model checks the head
against the model's own logits on a few tokens.

Attention rows without an eager pass: models whose attention modules call transformers'
attention interface (``ALL_ATTENTION_FUNCTIONS``; SDPA, flash, ...) get that interface entry
wrapped for the duration of the call. The wrapper runs the original (fast) kernel and, for the
tracked modules, recomputes only the requested rows from the query and key it is handed, which
are already projected, rotated (RoPE), head-split and cache-extended by the module itself:
``softmax(q_row . K^T * scaling + mask)``, key heads repeated for grouped-query attention,
soft-capped when the module passes ``softcap``. So each architecture's own conventions are
respected without knowing them. Modules that compute attention themselves and return the
probabilities (eager models; XGLM, which has no SDPA path in transformers) are read by the
forward hook of :mod:`self_attention_based.capture` in the same pass instead, at eager cost.
The rows are computed from detached tensors, so they add nothing to the backward graph, and
peak memory is that of the SDPA forward + backward (the batched backward holds one cotangent
per target). The interface entry is replaced process-wide during the call (other models pass
through untouched), so do not call this concurrently from several threads.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass, field

import torch

from .capture import AttentionUnavailable, attention_modules


@dataclass
class TargetGradient:
    """Gradient and embedding of each input position ``0..q`` for one target (float32, CPU).

    Same fields as ``gradient_based.gradients.StepGradient``, so its reductions apply."""

    grad: torch.Tensor  # (q + 1, hidden)
    embedding: torch.Tensor  # (q + 1, hidden)


@dataclass
class Internals:
    rows: list[int]
    targets: list[int]
    #: ``(layers, heads, len(rows), len(ids))`` float32 CPU; None when not requested.
    attention: torch.Tensor | None
    #: one per target, in ``targets`` order
    gradients: list[TargetGradient]
    #: seconds per phase: ``forward``, ``backward``
    timings: dict = field(default_factory=dict)

    def gradient(self, q: int) -> TargetGradient:
        return self.gradients[self.targets.index(q)]

    def row(self, r: int) -> torch.Tensor:
        """``(layers, heads, len(ids))`` attention of query position ``r``."""
        return self.attention[:, :, self.rows.index(r), :]


def _row_probabilities(query, key, attention_mask, scaling, rows, softcap=None) -> torch.Tensor:
    """``(heads, len(rows), keys)`` float32 softmax of the requested query rows (batch item 0)."""
    q = query[0, :, rows, :].detach().float()  # (H, R, D)
    k = key[0].detach().float()  # (Hkv, S, D)
    if k.shape[0] != q.shape[0]:  # grouped-query attention: head h reads key head h // group
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
    scale = q.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    s = k.shape[1]
    # Causal mask for a single unpadded sequence (sdpa often passes no mask and uses is_causal).
    offset = s - query.shape[2]  # keys before the first query (a cache); 0 here
    r = torch.as_tensor(rows, device=scores.device)[:, None] + offset
    causal = torch.arange(s, device=scores.device)[None, :] > r
    scores = scores.masked_fill(causal[None], float("-inf"))
    if attention_mask is not None and torch.is_tensor(attention_mask) and attention_mask.dim() == 4:
        m = attention_mask[0, :, rows, :s]
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    return torch.softmax(scores, dim=-1)


@contextlib.contextmanager
def _capture_rows(model, rows: list[int], store: dict):
    """Fill ``store[layer] = (heads, len(rows), keys)`` during a forward pass of ``model``."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    modules = attention_modules(model)
    layers = {id(m): (i, index) for i, (m, index) in enumerate(modules)}
    impl = str(getattr(model.config, "_attn_implementation", None) or "eager")
    patched = impl != "eager" and impl in ALL_ATTENTION_FUNCTIONS
    if patched:
        original = ALL_ATTENTION_FUNCTIONS[impl]
        had_local = impl in ALL_ATTENTION_FUNCTIONS._local_mapping

        def wrapper(module, query, key, value, attention_mask, *args, **kwargs):
            out = original(module, query, key, value, attention_mask, *args, **kwargs)
            where = layers.get(id(module))
            if where is not None:
                store[where[0]] = _row_probabilities(query, key, attention_mask, kwargs.get("scaling"),
                                                     rows, kwargs.get("softcap"))
            return out

        ALL_ATTENTION_FUNCTIONS[impl] = wrapper

    def hook(module, args, output, layer, index):
        if layer in store:
            return None
        weights = output[index] if isinstance(output, tuple | list) and len(output) > index else None
        if not torch.is_tensor(weights) or weights.dim() != 4:
            raise AttentionUnavailable(
                f"{type(module).__name__} neither went through the attention interface nor returned "
                f"attention probabilities (attention implementation {impl!r})")
        store[layer] = weights[0, :, rows, :].detach().float()
        # Without the full map in the output it can be freed now (no-grad passes), not at the end.
        out = list(output)
        out[index] = None
        return type(output)(out) if isinstance(output, tuple) else out

    handles = [m.register_forward_hook(lambda m, a, o, layer=i, index=index: hook(m, a, o, layer, index))
               for i, (m, index) in enumerate(modules)]
    try:
        yield
        if len(store) != len(modules):
            raise AttentionUnavailable(f"{type(model).__name__}: the forward pass gave attention rows of "
                                       f"{len(store)} of {len(modules)} attention modules")
    finally:
        for h in handles:
            h.remove()
        if patched:
            if had_local:
                ALL_ATTENTION_FUNCTIONS[impl] = original
            else:
                del ALL_ATTENTION_FUNCTIONS[impl]


def _head(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from final hidden states, with the config's final scaling / soft-capping."""
    logits = model.get_output_embeddings()(hidden)
    cfg = model.config
    scale = getattr(cfg, "logit_scale", None)  # Cohere multiplies
    if isinstance(scale, int | float):
        logits = logits * scale
    divide = getattr(cfg, "logits_scaling", None)  # Granite divides
    if isinstance(divide, int | float):
        logits = logits / divide
    cap = getattr(cfg, "final_logit_softcapping", None)  # Gemma 2/3
    if isinstance(cap, int | float) and cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


_HEAD_CHECKED: weakref.WeakSet = weakref.WeakSet()


def _check_head(model, ids: torch.Tensor, device) -> None:
    """Once per model: base model + :func:`_head` equals the model's own logits (few tokens)."""
    if model in _HEAD_CHECKED:
        return
    short = ids[None, : min(8, len(ids))].to(device)
    with torch.no_grad():
        ref = model(input_ids=short, use_cache=False).logits[0].float()
        ours = _head(model, model.base_model(input_ids=short, use_cache=False).last_hidden_state[0]).float()
    if not torch.allclose(ours, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max())):
        raise RuntimeError(f"{type(model).__name__}: base model + output embeddings do not reproduce "
                           f"the model's logits (max difference {float((ours - ref).abs().max()):.2e}); "
                           f"internals() does not know this architecture's head")
    _HEAD_CHECKED.add(model)


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def internals(model, ids: torch.Tensor, rows: list[int], targets: list[int], attention: bool = True,
              gradients: bool = True) -> Internals:
    """Attention rows ``rows`` and next-token-probability gradients at ``targets`` of ``ids`` (1-D).

    Runs positions ``0..max(rows + targets)`` once. ``attention``/``gradients`` False skip
    that part (no rows captured / a no-grad pass without the head).
    """
    rows = [int(r) for r in rows] if attention else []
    targets = [int(q) for q in targets] if gradients else []
    n = len(ids)
    if not rows and not targets:
        raise ValueError("internals(): no attention row and no gradient target requested")
    if any(r < 0 or r >= n for r in rows):
        raise ValueError(f"attention rows {rows} outside a sequence of {n} tokens")
    if any(q < 0 or q + 1 >= n for q in targets):
        raise ValueError(f"gradient targets {targets} need a next token inside a sequence of {n} tokens")
    stop = max(rows + targets) + 1
    device = next(model.parameters()).device
    seq = ids[:stop].to(device)
    if targets:
        _check_head(model, seq, device)
    store: dict[int, torch.Tensor] = {}
    capture = _capture_rows(model, rows, store) if rows else contextlib.nullcontext()
    t0 = time.perf_counter()
    with capture, torch.set_grad_enabled(bool(targets)):
        embeds = model.get_input_embeddings()(seq[None]).detach()
        if targets:
            embeds.requires_grad_(True)
        hidden = model.base_model(inputs_embeds=embeds, use_cache=False).last_hidden_state[0]
        if targets:
            logits = _head(model, hidden[targets]).float()  # (T, vocab)
            nxt = ids[[q + 1 for q in targets]].to(device)
            probs = torch.softmax(logits, -1).gather(1, nxt[:, None])[:, 0]  # (T,)
    _sync(device)
    t1 = time.perf_counter()
    grads: list[TargetGradient] = []
    if targets:
        eye = torch.eye(len(targets), device=device, dtype=probs.dtype)
        (g,) = torch.autograd.grad(probs, embeds, grad_outputs=eye, is_grads_batched=True)  # (T,1,S,H)
        emb = embeds.detach()[0].float().cpu()
        g = g[:, 0].float().cpu()
        grads = [TargetGradient(g[i, : q + 1], emb[: q + 1]) for i, q in enumerate(targets)]
    _sync(device)
    t2 = time.perf_counter()
    att = None
    if rows:
        att = torch.stack([store[i] for i in sorted(store)]).cpu()
        if att.shape[-1] < n:
            att = torch.nn.functional.pad(att, (0, n - att.shape[-1]))
    return Internals(rows, targets, att, grads, {"forward": t1 - t0, "backward": t2 - t1})
