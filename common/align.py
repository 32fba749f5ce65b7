"""From a method's units (token texts or character offsets) to character spans and words.

Two paths:

* ``locate``: the published way. Each unit's text is searched in the prompt from the end of the
  previous match; a unit not found is dropped. ``spaceless=True`` searches in the prompt with
  spaces removed and uses the offsets unchanged (the published InCoder gradient rows; wrong
  otherwise, kept only to reproduce them).
* ``to_words``: model-agnostic. Token character spans from a tokenizer's offset mapping are
  spread onto the words (:func:`common.code_units.words`) of the scored region in proportion to
  the non-space characters they share, so every method reports on the same word units whatever
  its tokenizer.
"""

from __future__ import annotations

import numpy as np

from .code_units import words


def locate(prompt: str, units: list[str], spaceless: bool = False) -> list[tuple[int, int, int]]:
    """Locate unit texts left to right; return ``(unit index, start, end)`` for those found."""
    haystack = prompt.replace(" ", "") if spaceless else prompt
    out, current = [], 0
    for i, text in enumerate(units):
        start = haystack.find(text, current)
        if start < 0:
            continue
        end = start + len(text)
        if spaceless:  # the published map was the identity; clamp where it would have no key
            out.append((i, min(start, len(prompt) - 1), min(end, len(prompt) - 1)))
        else:
            out.append((i, start, end))
        current = end
    return out


def to_words(prompt: str, token_spans, scores, region: tuple[int, int] | None = None,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate token scores onto words of ``region``.

    ``token_spans``: ``(n_tokens, 2)`` character spans in ``prompt`` (offsets past the prompt,
    e.g. of generated tokens, are clipped away). Each token's score is spread evenly over its
    non-space characters; a word's score is the sum over its characters. Returns
    ``(word_spans, word_scores)``.
    """
    n = len(prompt)
    spans = np.clip(np.asarray(token_spans, dtype=np.int64).reshape(-1, 2), 0, n)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(spans) != len(scores):
        raise ValueError(f"{len(spans)} token spans but {len(scores)} scores")
    solid = np.fromiter((not c.isspace() for c in prompt), dtype=np.float64, count=n)
    solid_cum = np.concatenate([[0.0], np.cumsum(solid)])
    width = solid_cum[spans[:, 1]] - solid_cum[spans[:, 0]]
    density = np.divide(scores, width, out=np.zeros_like(scores), where=width > 0)
    diff = np.zeros(n + 1)
    np.add.at(diff, spans[:, 0], density)
    np.add.at(diff, spans[:, 1], -density)
    per_char = np.cumsum(diff[:n]) * solid
    char_cum = np.concatenate([[0.0], np.cumsum(per_char)])
    w = words(prompt, region)
    return w, char_cum[w[:, 1]] - char_cum[w[:, 0]]
