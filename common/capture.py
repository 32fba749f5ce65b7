"""Capture a few rows of every layer's attention probabilities in one forward pass.

``output_attentions=True`` keeps every layer's full ``heads x seq x seq`` map until the pass
ends (for a 1,000-token sequence and a 32-layer, 32-head model: 4 GB in float32). The methods
need two rows per layer, so a forward hook on each attention module copies those rows and
drops the full map at once: peak memory is one layer's map, not all of them.

Attention modules are found through the model's own ``_can_record_outputs["attentions"]``
(the hook points transformers itself uses for ``output_attentions``), which covers every
architecture in transformers 5; a model without it falls back to modules named ``*Attention``.
"""

from __future__ import annotations

import contextlib
import re

import torch


class AttentionUnavailable(RuntimeError):
    """The model does not return attention probabilities (wrong implementation or architecture)."""


def _recorder_specs(model) -> list[tuple]:
    """``(class, class-name suffix, output index, layer name)`` of each attention recorder,
    normalised the way transformers' own output capturing reads ``_can_record_outputs``."""
    for module in model.modules():
        specs = (getattr(type(module), "_can_record_outputs", None) or {}).get("attentions")
        if specs is None:
            continue
        out = []
        for spec in specs if isinstance(specs, list | tuple) else [specs]:
            if isinstance(spec, type):
                out.append((spec, None, 1, None))
            elif isinstance(spec, str):
                out.append((None, spec, 1, None))
            else:
                out.append((getattr(spec, "target_class", None), getattr(spec, "class_name", None),
                            getattr(spec, "index", 1), getattr(spec, "layer_name", None)))
        return out
    return []


def attention_modules(model) -> list[tuple[torch.nn.Module, int]]:
    """``(module, index of the probabilities in its output)`` per self-attention layer, in order."""
    specs = _recorder_specs(model)
    found = []
    for name, module in model.named_modules():
        for cls, class_name, index, layer_name in specs:
            if not ((cls is not None and isinstance(module, cls))
                    or (class_name is not None and name.endswith(class_name))):
                continue
            if layer_name is not None and f".{layer_name.strip('.')}." not in f".{name}.":
                continue
            found.append((module, index))
            break
    if not found:
        pattern = re.compile(r"(Self)?Attention$")
        for module in model.modules():
            if pattern.search(type(module).__name__) and not any(
                    pattern.search(type(c).__name__) for c in module.modules() if c is not module):
                found.append((module, 1))
    if not found:
        raise AttentionUnavailable(f"{type(model).__name__}: no attention module found to read "
                                   f"attention probabilities from")
    return found


def _implementation(model) -> str:
    return str(getattr(model.config, "_attn_implementation", None) or "unknown")


@contextlib.contextmanager
def _hooks(model, rows: list[int], store: list):
    handles = []
    impl = _implementation(model)

    def hook(module, args, output, index):
        weights = output[index] if isinstance(output, tuple | list) and len(output) > index else None
        if not torch.is_tensor(weights) or weights.dim() != 4:
            raise AttentionUnavailable(
                f"{type(module).__name__} returned no attention probabilities (attention "
                f"implementation {impl!r}); load the model with attn_implementation='eager'")
        store.append(weights[0, :, rows, :].float().cpu())
        # Returning the output without the full map lets it be freed now, not at the end.
        out = list(output)
        out[index] = None
        return type(output)(out) if isinstance(output, tuple) else out

    for module, index in attention_modules(model):
        # First in line, so that no other hook (transformers' own output recorder) sees the map.
        handles.append(module.register_forward_hook(
            lambda m, a, o, index=index: hook(m, a, o, index), prepend=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def attention_rows(model, ids: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Attention probabilities of query positions ``rows`` over the sequence ``ids`` (1-D).

    Returns ``(layers, heads, len(rows), len(ids))`` float32 on CPU. Only positions up to the
    last requested row are run (causal models: later tokens cannot change these rows).
    """
    if not rows:
        raise ValueError("no rows requested")
    stop = max(rows) + 1
    if min(rows) < 0 or stop > len(ids):
        raise ValueError(f"rows {rows} outside a sequence of {len(ids)} tokens")
    store: list[torch.Tensor] = []
    device = next(model.parameters()).device
    with _hooks(model, list(rows), store), torch.no_grad():
        model(input_ids=ids[None, :stop].to(device), use_cache=False)
    if not store:
        raise AttentionUnavailable(f"{type(model).__name__}: the forward pass called no attention "
                                   f"module")
    out = torch.stack(store)
    if out.shape[-1] < len(ids):
        out = torch.nn.functional.pad(out, (0, len(ids) - out.shape[-1]))
    return out


def full_attentions(model, ids: torch.Tensor) -> torch.Tensor:
    """Reference: every layer's full map via ``output_attentions=True`` ``(layers, heads, n, n)``."""
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=ids[None].to(device), output_attentions=True, use_cache=False)
    if not out.attentions or out.attentions[0] is None:
        raise AttentionUnavailable(f"{type(model).__name__}: output_attentions returned nothing")
    return torch.stack([a[0].float().cpu() for a in out.attentions])
