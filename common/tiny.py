"""Tiny random-weight causal LMs of every architecture the study needs, offline.

One byte-level BPE tokenizer is trained with ``tokenizers`` on a small built-in corpus of
Python and English; each architecture (the five paper models' and Llama's) gets a two-layer
model from its transformers config. Everything is built once per process (a second or two)
and handed out as :class:`common.models.LoadedModel`.

For tests, benches and smoke runs of the notebooks: ``tiny_model("codegen")``, or the model
name ``tiny-<architecture>`` anywhere a model is named (``--model tiny-llama``). Their outputs
are meaningless: random weights.
"""

from __future__ import annotations

import functools

import torch

from common.models import LoadedModel

ARCHITECTURES = ("codegen", "gpt2", "gptj", "xglm", "gpt_neox", "llama")
#: Which paper model each tiny architecture stands for.
PAPER_ARCH = {"codegen": "codegen", "codeparrot": "gpt2", "gptj": "gptj", "incoder": "xglm",
              "polycoder": "gpt_neox"}
EOS = "<|endoftext|>"
VOCAB = 600
CONTEXT = 2048

_CORPUS = [
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n",
    "def is_even(n: int) -> bool:\n    return n % 2 == 0\n",
    "from typing import List\n\n\ndef sort_list(numbers: List[int]) -> List[int]:\n"
    "    \"\"\" Sort the given list of integers in ascending order.\n    >>> sort_list([3, 1, 2])\n"
    "    [1, 2, 3]\n    \"\"\"\n    return sorted(numbers)\n",
    "Write a function to find the maximum element of a list.\ndef function():\n",
    "Write a python function to count the number of vowels in a string.\n",
    "Write a function to check whether the given number is prime or not.\n",
    "for i in range(len(arr)):\n    if arr[i] > max_value:\n        max_value = arr[i]\n",
    "while left < right:\n    mid = (left + right) // 2\n    if nums[mid] == target:\n"
    "        return mid\n    elif nums[mid] < target:\n        left = mid + 1\n    else:\n"
    "        right = mid\nreturn -1\n",
    "Given a string s, return the first character that occurs only once, otherwise None.\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n"
    "        self.items.append(x)\n",
    "import math\nresult = [math.sqrt(x) for x in values if x >= 0]\nprint(result)\n",
    "Return True if all numbers in the list l are below threshold t.\n",
    "The quick brown fox jumps over the lazy dog; café, naïve, 🙂 — unicode too.\n",
]


@functools.cache
def tiny_tokenizer():
    """A fast byte-level BPE tokenizer trained offline (same pre-tokenisation as GPT-2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   bos_token=EOS, unk_token=EOS, model_max_length=CONTEXT)


def tiny_config(arch: str, context: int = CONTEXT, **overrides):
    """A two-layer, four-head config of ``arch`` with the tiny tokenizer's vocabulary."""
    import transformers as t

    vocab = len(tiny_tokenizer())
    eos = tiny_tokenizer().eos_token_id
    common = {"vocab_size": vocab, "bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos}
    if arch == "codegen":
        cfg = t.CodeGenConfig(n_layer=2, n_head=4, n_embd=32, rotary_dim=4, n_positions=context,
                              n_ctx=context, **common)
    elif arch == "gpt2":
        cfg = t.GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=context, **common)
    elif arch == "gptj":
        cfg = t.GPTJConfig(n_layer=2, n_head=4, n_embd=32, rotary_dim=4, n_positions=context, **common)
    elif arch == "xglm":
        cfg = t.XGLMConfig(num_layers=2, attention_heads=4, d_model=32, ffn_dim=64,
                           max_position_embeddings=context, decoder_start_token_id=eos, **common)
    elif arch == "gpt_neox":
        cfg = t.GPTNeoXConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32,
                              intermediate_size=64, max_position_embeddings=context, **common)
    elif arch == "llama":
        cfg = t.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            hidden_size=32, intermediate_size=64, max_position_embeddings=context,
                            **common)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; one of {ARCHITECTURES}")
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def build_model(arch: str, context: int = CONTEXT, attn_implementation: str = "eager",
                seed: int = 0, **overrides) -> LoadedModel:
    """A fresh tiny model (not cached): for tests that change its config or weights."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(arch, context, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn_implementation)
    # Random init gives near-uniform attention and logits; a larger spread makes attention
    # rows, gradients and greedy choices differ clearly between positions.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.eval()
    return LoadedModel(name=f"tiny-{arch.replace('_', '')}", model=model, tokenizer=tiny_tokenizer(),
                       device="cpu", dtype=torch.float32, source=f"tiny:{arch}")


@functools.cache
def tiny_model(arch: str) -> LoadedModel:
    """The session's shared tiny model of ``arch`` (do not modify it in a test)."""
    return build_model(arch)


def save_tiny(arch: str, folder) -> None:
    """Write a tiny model and its tokenizer as a local model folder (``load_model(folder)``)."""
    lm = tiny_model(arch)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
