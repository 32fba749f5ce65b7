"""Pieces shared by the perturbation methods: word units, the code-change measure, the
generator contract and the per-task result.

A *generator* is the black box the methods perturb. Any object with

    name: str                    # model id used in result file names and cache keys
    generate(prompts, reference) -> list[str]   # generated code, one per prompt

fits; ``reference`` is the task's reference solution, from which a HF backend derives its
token budget (a chat backend ignores it). ``perturbation_based.hf``, ``common.chat`` and
``common.completions`` are the shipped backends; all cache and batch.
"""

from __future__ import annotations

import string
import warnings
from dataclasses import dataclass, field
from typing import Protocol

from nltk.tokenize import word_tokenize
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu


class Generator(Protocol):
    name: str

    def generate(self, prompts: list[str], reference: str) -> list[str]: ...


@dataclass
class Attribution:
    """One task's outcome: word spans in ``task.prompt`` and scores, or a failure reason."""

    spans: list[tuple[int, int]]
    scores: list[float]
    generation: str | None = None
    failure: str | None = None
    n_generations: int = 0  # distinct prompts the method asked the model for
    details: dict = field(default_factory=dict)


# NLTK rewrites double quotes; the text still has the original characters.
_QUOTE_FORMS = {"``": ('"', "``"), "''": ('"', "''")}


def is_punctuation(token: str) -> bool:
    """Punctuation-only (the study drops these for BERT masking): ``.``, ``)``, ``'')``..."""
    return all(c in string.punctuation for c in token)


def region_words(prompt: str, region: tuple[int, int], drop_punctuation: bool) -> list[tuple[int, int]]:
    """NLTK word tokens of ``prompt[region]`` as half-open spans of ``prompt``.

    ``preserve_line=True`` skips sentence splitting, which needs the ``punkt`` download; the word
    tokens are the same. Tokens are located left to right; one NLTK rewrote beyond recognition
    is dropped (the study's rule for units that cannot be found).
    """
    a, b = region
    text = prompt[a:b]
    spans, pos = [], 0
    for tok in word_tokenize(text, preserve_line=True):
        forms = _QUOTE_FORMS.get(tok, (tok,))
        hits = [(text.find(f, pos), f) for f in forms if text.find(f, pos) >= 0]
        if not hits:
            continue
        start, form = min(hits)
        pos = start + len(form)  # dropped punctuation still advances, so a later twin is found after it
        if not (drop_punctuation and is_punctuation(tok)):
            spans.append((a + start, a + start + len(form)))
    return spans


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
