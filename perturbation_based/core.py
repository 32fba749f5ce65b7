"""Pieces shared by the perturbation methods: the generator contract, replacing words in a
prompt and the code-change measure. The words themselves are :mod:`common.code_units`'.

A *generator* is the black box the methods perturb. Any object with

    name: str                    # model id used in result file names
    generate(prompts, reference) -> list[str]   # generated code, one per prompt

fits; ``reference`` is the task's reference solution, from which a HF backend derives its
token budget (a chat backend ignores it). The backends of :mod:`common.backends` (a local
Hugging Face model, OpenAI-compatible APIs) cache and batch.
"""

from __future__ import annotations

import warnings
from typing import Protocol

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu


class Generator(Protocol):
    name: str

    def generate(self, prompts: list[str], reference: str) -> list[str]: ...


def replace_spans(text: str, spans: list[tuple[int, int]], fills: list[str]) -> str:
    """``text`` with each (non-overlapping, sorted) span replaced by its fill."""
    out, last = [], 0
    for (s, e), fill in zip(spans, fills):
        out.append(text[last:s])
        out.append(fill)
        last = e
    out.append(text[last:])
    return "".join(out)


_SMOOTHING = {None: None, "none": None}


def code_change(original: str, perturbed: str, smoothing: str | None = None) -> float:
    """1 - sentence BLEU(original, perturbed) over whitespace tokens, NLTK default 4-gram weights.

    ``smoothing=None`` is the study's setting (NLTK defaults). Without smoothing NLTK gives BLEU 0
    whenever some n-gram order has no match, including identical code of fewer than four
    tokens; identical token sequences are therefore scored 0 change explicitly (BLEU of a text
    against itself is 1 by definition). NLTK's zero-overlap warning is silenced: it is the
    expected outcome for very different code, not an error. ``smoothing="method1"`` etc. select
    ``SmoothingFunction`` methods.
    """
    ref, hyp = original.split(), perturbed.split()
    if ref == hyp:
        return 0.0
    if not ref or not hyp:
        return 1.0
    fn = None if smoothing in _SMOOTHING else getattr(SmoothingFunction(), smoothing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bleu = sentence_bleu([ref], hyp, smoothing_function=fn)
    return float(1.0 - bleu)
