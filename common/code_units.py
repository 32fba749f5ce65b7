"""One definition of each unit the methods and the error analysis share.

Words of a prompt
    :func:`words`: maximal runs of word characters (letters, digits, ``_``), an apostrophe
    inside a word kept (``don't``, ``list's``). Every family reports scores on these units and
    the perturbation methods perturb them, so all twelve methods are scored on the same units.
    Why this unit and not NLTK's: every human keyword is such a word; NLTK splits contractions
    (``do`` + ``n't``), rewrites quotes (so its tokens are not substrings of the prompt) and
    keeps punctuation tokens the human labels never cover. The study's perturbation units
    (NLTK tokens) remain available as the ``paper`` definitions (:func:`nltk_words`).

The generated function
    :func:`function_span`: the function a generation writes. If the generation puts code in
    the block of the prompt's last ``def`` (the function to complete: HumanEval's signature and
    docstring, MBPP's ``def function():``), that block; otherwise the first top-level ``def``
    or ``class`` (with its decorators) the generation writes. A block runs while its logical
    lines are indented deeper than its header (continuation lines inside brackets or strings
    never end it; comment lines neither end nor extend it), so nested functions are inside and
    trailing examples (``print(f(3))``, ``if __name__ == ...``) are outside.

Reading and coding positions
    :func:`query_rows`: the two query positions (indices into ``prompt + generated`` token ids)
    a model-internal method reads. ``unified``: for both self-attention and gradient methods,
    the step that predicts the first generated token (reading: the last prompt position) and
    the step that predicts the last token of the generated function (coding). A gradient's
    target is the probability of the token that follows its query position; an attention row is
    that query's attention. ``paper``: what the published code did, which differs by family:
    self-attention read the row of the first generated token (reading) and of the function's
    last token (coding), one step later than the unified rows; gradients used the first and the
    last generated token, whatever the function.
"""

from __future__ import annotations

import io
import re
import string
import tokenize
from dataclasses import dataclass

import numpy as np

from .method import DEFINITIONS, TaskFailure

WORD = re.compile(r"\w+(?:['’]\w+)*")


# -- words ------------------------------------------------------------------------------------

def words(prompt: str, region: tuple[int, int] | None = None) -> np.ndarray:
    """Word spans (``int64`` array ``(n, 2)``, half-open, prompt coordinates) inside ``region``."""
    a, b = region if region is not None else (0, len(prompt))
    spans = [(m.start() + a, m.end() + a) for m in WORD.finditer(prompt[a:b])]
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def is_punctuation(token: str) -> bool:
    """Punctuation-only: ``.``, ``)``, ``'')``..."""
    return all(c in string.punctuation for c in token)


# NLTK rewrites double quotes; the text still has the original characters.
_QUOTE_FORMS = {"``": ('"', "``"), "''": ('"', "''")}


def nltk_words(prompt: str, region: tuple[int, int], drop_punctuation: bool) -> np.ndarray:
    """The study's perturbation units: NLTK word tokens of ``prompt[region]`` as spans.

    ``preserve_line=True`` skips sentence splitting (which needs the ``punkt`` download); the
    word tokens are the same. Tokens are located left to right; one NLTK rewrote beyond
    recognition is dropped (the study's rule for units that cannot be found).
    """
    from nltk.tokenize import word_tokenize

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
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def perturbation_units(prompt: str, region: tuple[int, int], definitions: str = "unified",
                       punctuation: bool = False) -> np.ndarray:
    """The words a perturbation method perturbs: :func:`words` (``unified``), or NLTK tokens
    (``paper``; ``punctuation`` keeps punctuation tokens, as the published SHAP files did)."""
    if definitions not in DEFINITIONS:
        raise ValueError(f"definitions must be one of {DEFINITIONS}, not {definitions!r}")
    if definitions == "paper":
        return nltk_words(prompt, region, drop_punctuation=not punctuation)
    return words(prompt, region)


# -- the generated function -------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionSpan:
    """The generated function, as character offsets into the *generation* text.

    ``kind``: ``body`` (the generation continues the block of the prompt's open ``def``;
    ``start`` is 0) or ``definition`` (the generation writes its own top-level ``def``/``class``;
    ``start`` is its first line, decorators included). ``end`` is one past the block's last
    non-space character.
    """

    start: int
    end: int
    kind: str


_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+\w+", re.M)
_TOP_DEFINITION = re.compile(r"^(?:@|(?:async[ \t]+)?def[ \t]+\w|class[ \t]+\w)", re.M)


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip())


def _continuation_lines(code: str) -> set[int]:
    """0-based numbers of physical lines that continue a logical line (inside brackets, a
    multi-line string, or after a backslash). Incomplete code (a generation cut by its budget)
    is handled: every line after the point where tokenizing stops counts as a continuation."""
    cont: set[int] = set()
    depth = 0
    last_row = 0
    n_lines = code.count("\n") + 1
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            srow, erow = tok.start[0] - 1, tok.end[0] - 1
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth = max(0, depth - 1)
            if erow > srow:  # a token spanning lines: a multi-line string
                cont.update(range(srow + 1, erow + 1))
            if depth > 0 and tok.type == tokenize.NL:
                cont.add(erow + 1)
            last_row = max(last_row, erow)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        # an unterminated string or bracket runs to the end of the text
        cont.update(range(last_row + 1, n_lines))
    return cont


def _block_end(code: str, header: int) -> int:
    """End (exclusive, last non-space character) of the block whose header line starts at
    ``header``: following logical lines indented deeper than the header belong to it."""
    line_start = code.rfind("\n", 0, header) + 1
    tail = code[line_start:]
    base = _indent(tail.split("\n", 1)[0])
    cont = _continuation_lines(tail)
    lines = tail.split("\n")
    end = line_start + len(lines[0].rstrip())
    pos = line_start + len(lines[0]) + 1
    for n, line in enumerate(lines[1:], 1):
        stripped = line.strip()
        if stripped and (n in cont or (not stripped.startswith("#") and _indent(line) > base)):
            end = pos + len(line.rstrip())
        elif stripped and not stripped.startswith("#"):
            break
        pos += len(line) + 1
    return end


def _has_code(text: str) -> bool:
    """Some line holds more than blanks and a comment."""
    return any(line.split("#", 1)[0].strip() for line in text.split("\n"))


def function_span(prompt: str, generation: str) -> FunctionSpan | None:
    """The function ``generation`` writes as a continuation of ``prompt`` (see the module
    docstring), or None when it writes none."""
    code = prompt + generation
    p = len(prompt)
    heads = [m for m in _DEF.finditer(prompt)]
    if heads:
        end = _block_end(code, heads[-1].start())
        if end > p and _has_code(code[p:end]):
            return FunctionSpan(0, end - p, "body")
    # the first top-level definition that starts on a line of the generation (its first line
    # finishes the prompt's last line unless the prompt ends with a newline)
    if p == 0 or prompt.endswith("\n"):
        first_line = 0
    else:
        first_line = generation.find("\n") + 1
        if first_line == 0:
            return None
    for m in _TOP_DEFINITION.finditer(generation, first_line):
        start = m.start()
        if generation[start] == "@":  # decorators: the block is the definition they decorate
            nxt = re.compile(r"^(?:(?:async[ \t]+)?def|class)[ \t]+\w", re.M).search(generation, start)
            if nxt is None:
                return None
            header = nxt.start()
        else:
            header = start
        end = _block_end(generation, header)
        return FunctionSpan(start, end, "definition")
    return None


def last_token_of(char_ends: np.ndarray, char: int) -> int:
    """Index of the token holding character ``char - 1`` given each token's end offset
    (non-decreasing): the first token whose end reaches ``char``."""
    k = int(np.searchsorted(char_ends, char, side="left"))
    return min(k, len(char_ends) - 1)


# -- reading and coding positions -------------------------------------------------------------

@dataclass(frozen=True)
class Rows:
    """Query positions (indices into ``prompt + generated`` ids) of the two stages."""

    reading: int
    coding: int | None  # None: no generated function (the coding stage fails)

    def of(self, stage: str) -> int:
        if stage == "reading":
            return self.reading
        if self.coding is None:
            raise TaskFailure("generation has no function body (nothing generated inside the def "
                              "block and no def of its own)")
        return self.coding


def query_rows(prompt_len: int, n_new: int, function_last: int | None, family: str,
               definitions: str = "unified") -> Rows:
    """Reading and coding query rows (see the module docstring).

    ``function_last``: index among the generated tokens of the token holding the generated
    function's last character (None when there is no function). Gradient methods take the
    probability of the token *after* a row; self-attention methods take the row's attention.
    """
    if n_new < 1:
        raise TaskFailure("the model generated no token")
    if definitions not in DEFINITIONS:
        raise ValueError(f"definitions must be one of {DEFINITIONS}, not {definitions!r}")
    p = prompt_len
    if definitions == "unified":
        return Rows(p - 1, None if function_last is None else p - 1 + function_last)
    if family == "self_attention":
        return Rows(p, None if function_last is None else p + function_last)
    if family == "gradient":
        return Rows(p - 1, p + n_new - 2)
    raise ValueError(f"no paper positions for family {family!r}")
