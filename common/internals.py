"""Everything the ten model-internal methods need for one task, from one forward and one backward.

:func:`internals` runs the base model once over the sequence (up to the last position anything
needs; over the generated positions only when handed the generation's :class:`Prefill`, below),
and from that single pass takes

* the attention rows of the requested query positions, every layer and head, over the whole
  sequence; and
* for each gradient target q: the gradient of the softmax probability of the next token
  ``ids[q + 1]`` (computed from the logits at q) with respect to the input embeddings of
  positions ``0..q``, all targets in one batched backward pass (``is_grads_batched``: one
  vector-Jacobian product per one-hot row, vectorised, never a sum of targets).

Reusing the generation's prefill: a task generated for the model-internal methods
(``common.backends.HFBackend``, alone or in a batch) is generated from :func:`prefill`, a
grad-enabled forward of its prompt alone that keeps the KV cache, the logits of the last prompt
position P-1 (greedy generation's first token, then ``model.generate`` continues from a detached
copy of the cache, left-padded into one batch cache when several prompts decode together: the
same tokens, tested) and the attention row of P-1. Handed to :func:`internals`, it gives the rows
and targets at P-1 (the reading stage of both families under the unified definitions) without
running the prompt again; later rows and targets come from one pass over P..stop-1 on top of its
cache, whose keys and values carry their gradient back into the prompt's embeddings. One batched
backward then runs over both embedding leaves (a prompt position's gradient is the sum through
both paths) and the result equals the full pass to float tolerance (tested on every tiny
architecture). A prefill is single use (the continuation pass extends its cache) and released by
the call; rows or targets before P-1, a prefill without the needed row or graph, or none at all
(a generation-cache hit, a task past the chunk's graph memory cap, generation without a prefill)
run the full pass.

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
import inspect
import time
import weakref
from dataclasses import dataclass, field

import torch

from .capture import AttentionUnavailable, attention_modules
from .models import cache_kwarg, output_cache


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
    #: seconds per phase: ``forward``, ``backward``; ``prefill`` (run during generation) when
    #: a :class:`Prefill` was reused
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
    # Causal mask for a single unpadded sequence (sdpa often passes no mask and uses is_causal,
    # also for one query over a cache), the query's row shifted by the keys before it.
    offset = s - query.shape[2]  # keys before the first query: a prefill's cache, or 0
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


@dataclass
class Prefill:
    """A grad-carrying forward of a prompt, shared by its greedy generation and :func:`internals`.

    Made by :func:`prefill`; single use: the :func:`internals` call it is handed to extends its
    cache and then releases it (:meth:`release`), so the graph lives no longer than needed.
    """

    #: prompt ids ``(P,)`` (CPU)
    ids: torch.Tensor
    #: ``(1, P, hidden)`` input embeddings; a leaf requiring grad when ``gradients``
    embeds: torch.Tensor | None
    #: the prompt's KV cache; its keys/values carry the graph back to ``embeds``
    cache: object
    #: ``(vocab,)`` float32 logits at ``P - 1`` (the first generated token's), with the graph
    logits: torch.Tensor | None
    #: ``(layers, heads, 1, P)`` attention row of ``P - 1``; None when not captured
    row: torch.Tensor | None
    gradients: bool
    seconds: float = 0.0
    #: bytes the graph saves for the backward (distinct storages, parameters excluded; 0
    #: without ``gradients``): what keeping this prefill until its internals costs in memory
    graph_bytes: int = 0
    released: bool = False

    @property
    def length(self) -> int:
        return len(self.ids)

    def release(self) -> None:
        self.embeds = self.cache = self.logits = self.row = None
        self.released = True


class _SavedBytes:
    """Saved-tensors hooks summing the bytes a forward keeps for its backward: each distinct
    storage once, the model's parameters (alive anyway) not counted."""

    def __init__(self, model):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: set[int] = set()
        self.total = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # no plain storage: count the tensor itself
            key, size = None, t.numel() * t.element_size()
        if key is None or (key not in self.params and key not in self.seen):
            if key is not None:
                self.seen.add(key)
            self.total += size
        return t.detach()  # not t: the graph holding its own output would be a reference cycle

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


def prefill(model, prompt_ids: torch.Tensor, attention: bool = True, gradients: bool = True) -> Prefill:
    """One forward over the prompt ``prompt_ids`` (1-D) with the KV cache kept: the logits of the
    last prompt position (from which greedy generation takes the first token), the attention
    row of that position (``attention``) and, with ``gradients``, the graph from both back to
    the input embeddings (its size in :attr:`Prefill.graph_bytes`). Hand it to :func:`internals`
    after generating from it (:func:`common.models.generate_from_prefills`, which copies the
    cache without the graph)."""
    ids = prompt_ids.cpu()
    n = len(ids)
    if n < 1:
        raise ValueError("prefill(): empty prompt")
    device = next(model.parameters()).device
    seq = ids.to(device)
    _check_head(model, seq, device)
    store: dict[int, torch.Tensor] = {}
    capture = _capture_rows(model, [n - 1], store) if attention else contextlib.nullcontext()
    saved = _SavedBytes(model)
    hooks = (torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack) if gradients
             else contextlib.nullcontext())
    t0 = time.perf_counter()
    with capture, hooks, torch.set_grad_enabled(gradients):
        embeds = model.get_input_embeddings()(seq[None]).detach()
        if gradients:
            embeds.requires_grad_(True)
        out = model.base_model(inputs_embeds=embeds, use_cache=True)
        logits = _head(model, out.last_hidden_state[0, [n - 1]]).float()[0]
    cache = output_cache(out)
    if cache is None:
        raise RuntimeError(f"{type(model).__name__}: the forward pass returned no KV cache")
    row = torch.stack([store[i] for i in sorted(store)]) if attention else None
    _sync(device)
    return Prefill(ids, embeds if gradients else None, cache, logits, row, gradients,
                   time.perf_counter() - t0, graph_bytes=saved.total)


_GENERATION_MATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tensors(cache) -> list[torch.Tensor]:
    return [v for layer in getattr(cache, "layers", [cache]) for v in vars(layer).values()
            if torch.is_tensor(v)]


def matches_generation(model, pre: Prefill | None = None) -> bool | None:
    """Whether a grad-enabled prefill gives ``model.generate``'s own prefill bit for bit (last
    logits, keys and values), so that greedy generation may continue from it: checked once per
    model on ``pre`` against the no-grad forward ``generate`` runs (kernels chosen with grad
    enabled could differ on some devices). Without ``pre``: the recorded answer, None if not
    checked yet."""
    if pre is None or model in _GENERATION_MATCH:
        return _GENERATION_MATCH.get(model)
    device = next(model.parameters()).device
    ids = pre.ids[None].to(device)
    # generate's own prefill call: the full mask, logits of the last position where supported
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **keep)
    cache = output_cache(out)
    ours, theirs = _tensors(pre.cache), _tensors(cache)
    same = (torch.equal(out.logits[0, -1].float(), pre.logits.detach()) and len(ours) == len(theirs)
            and all(a.shape == b.shape and torch.equal(a.detach(), b) for a, b in zip(ours, theirs)))
    _GENERATION_MATCH[model] = same
    return same


def _prefill_covers(pre: Prefill, ids: torch.Tensor, rows: list[int], targets: list[int]) -> bool:
    """Whether ``pre`` gives what :func:`internals` needs before the continuation pass."""
    p = pre.length
    if pre.released or len(ids) <= p or not torch.equal(ids[:p].cpu(), pre.ids):
        return False
    if any(r < p - 1 for r in rows) or any(q < p - 1 for q in targets):
        return False  # a position inside the prompt: not in the cache's last row (no definition asks)
    if (p - 1) in rows and pre.row is None:
        return False
    return not targets or pre.gradients


def _next_token_probabilities(logits: torch.Tensor, ids: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """``(T,)`` softmax probability of token ``ids[q + 1]`` from the logits ``(T, vocab)`` at each
    target ``q``."""
    nxt = ids[[q + 1 for q in targets]].to(logits.device)
    return torch.softmax(logits.float(), -1).gather(1, nxt[:, None])[:, 0]


def _target_gradients(probs: torch.Tensor, leaves: list[torch.Tensor],
                      targets: list[int]) -> list[TargetGradient]:
    """Each target probability's gradient with respect to the input embeddings ``leaves``
    (``(1, positions, hidden)`` each, in sequence order), in one batched backward."""
    eye = torch.eye(len(targets), device=probs.device, dtype=probs.dtype)
    g = torch.autograd.grad(probs, leaves, grad_outputs=eye, is_grads_batched=True)  # (T,1,*,H) each
    g = torch.cat(g, dim=2)[:, 0].float().cpu()
    emb = torch.cat([leaf.detach() for leaf in leaves], dim=1)[0].float().cpu()
    return [TargetGradient(g[i, : q + 1], emb[: q + 1]) for i, q in enumerate(targets)]


def internals(model, ids: torch.Tensor, rows: list[int], targets: list[int], attention: bool = True,
              gradients: bool = True, prefill: Prefill | None = None) -> Internals:
    """Attention rows ``rows`` and next-token-probability gradients at ``targets`` of ``ids`` (1-D).

    Runs positions ``0..max(rows + targets)`` once. ``attention``/``gradients`` False skip
    that part (no rows captured / a no-grad pass without the head).

    ``prefill``: the :class:`Prefill` of ``ids``'s prompt made for its generation. When it
    covers the request (every row and target at or after the last prompt position, the row
    captured, the graph kept when gradients are asked), the prompt is not run again: only
    positions ``P..max(rows + targets)`` are, over its cache. Otherwise the full pass runs.
    Either way the prefill is released by this call.
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
    if prefill is not None:
        try:
            if _prefill_covers(prefill, ids, rows, targets):
                return _internals_from_prefill(model, ids, rows, targets, prefill)
        finally:
            prefill.release()
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
            probs = _next_token_probabilities(_head(model, hidden[targets]), ids, targets)
    _sync(device)
    t1 = time.perf_counter()
    grads = _target_gradients(probs, [embeds], targets) if targets else []
    _sync(device)
    t2 = time.perf_counter()
    att = None
    if rows:
        att = torch.stack([store[i] for i in sorted(store)]).cpu()
        if att.shape[-1] < n:
            att = torch.nn.functional.pad(att, (0, n - att.shape[-1]))
    return Internals(rows, targets, att, grads, {"forward": t1 - t0, "backward": t2 - t1})


def _internals_from_prefill(model, ids: torch.Tensor, rows: list[int], targets: list[int],
                            pre: Prefill) -> Internals:
    """:func:`internals` from a covering prefill: rows and targets at ``P - 1`` are the
    prefill's; later ones come from one pass over ``P..stop - 1`` on top of its cache, whose
    keys and values carry the gradient of those targets back into the prompt's embeddings."""
    p, n = pre.length, len(ids)
    device = next(model.parameters()).device
    stop = max(rows + targets) + 1
    late_rows = [r for r in rows if r >= p]
    late_targets = sorted({q for q in targets if q >= p})
    store: dict[int, torch.Tensor] = {}
    late_embeds = None
    t0 = time.perf_counter()
    with torch.set_grad_enabled(bool(targets)):
        if stop > p:
            capture = (_capture_rows(model, [r - p for r in late_rows], store) if late_rows
                       else contextlib.nullcontext())
            with capture, torch.set_grad_enabled(bool(late_targets)):
                late_embeds = model.get_input_embeddings()(ids[None, p:stop].to(device)).detach()
                if late_targets:
                    late_embeds.requires_grad_(True)
                cache = {cache_kwarg(model.base_model.forward): pre.cache}
                hidden = model.base_model(inputs_embeds=late_embeds, use_cache=True,
                                          **cache).last_hidden_state[0]
                if late_targets:
                    late_logits = _head(model, hidden[[q - p for q in late_targets]]).float()
        if targets:
            logits = [pre.logits if q == p - 1 else late_logits[late_targets.index(q)] for q in targets]
            probs = _next_token_probabilities(torch.stack(logits), ids, targets)
    _sync(device)
    t1 = time.perf_counter()
    # Prompt positions get both paths: directly from the P - 1 logits and through the cache.
    grads = (_target_gradients(probs, [pre.embeds] + ([late_embeds] if late_targets else []), targets)
             if targets else [])
    _sync(device)
    t2 = time.perf_counter()
    att = None
    if rows:
        late = torch.stack([store[i] for i in sorted(store)]).cpu() if late_rows else None
        parts = [pre.row.cpu() if r == p - 1 else late[:, :, late_rows.index(r)][:, :, None] for r in rows]
        att = torch.cat([torch.nn.functional.pad(a, (0, n - a.shape[-1])) for a in parts], dim=2)
    return Internals(rows, targets, att, grads, {"forward": t1 - t0, "backward": t2 - t1,
                                                 "prefill": pre.seconds})
