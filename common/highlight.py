"""Show a prompt with a method's scores next to the human keywords (notebooks, reports).

Text form: ``«word»`` = in the method's top k, ``[word]`` = a human keyword (both may nest).
HTML form: every word shaded by its score, the top-k boxed, human keywords underlined.
PNG form (:func:`to_png`, ``Highlight.to_png``): the same drawn with matplotlib, for places that
drop HTML styles (GitHub's notebook viewer).
:class:`Highlight` is what ``AttributionResult.show()`` returns.
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass

import numpy as np

from .results import PromptScores


def segments(prompt: str, top_spans, keywords=(), region: tuple[int, int] | None = None,
             ) -> list[tuple[str, bool, str | None]]:
    """``prompt[region]`` cut at every boundary of a top-k span or keyword:
    ``(text, inside a top-k span, label)`` per piece.

    ``label`` is the label of the first keyword covering the piece ("" for a keyword given as a
    bare span), or None outside every keyword. Adjacent top-k units stay separate pieces, so a
    report can box each unit. Shared by the notebooks' highlighting and the error report.
    """
    a, b = region or (0, len(prompt))
    spans = [(int(s), int(e)) for s, e in top_spans]
    kws = [(kw.start, kw.end, kw.label) if hasattr(kw, "start") else (*kw, "") for kw in keywords]
    cuts = {a, b}
    for s, e, *_ in spans + kws:
        cuts.update(c for c in (s, e) if a <= c <= b)
    cuts = sorted(cuts)
    out = []
    for s, e in zip(cuts, cuts[1:]):
        label = next((name for ks, ke, name in kws if ks <= s and e <= ke), None)
        out.append((prompt[s:e], any(ts <= s and e <= te for ts, te in spans), label))
    return out


def _runs(prompt, ps, keywords, k, region):
    """Maximal runs of characters with the same (top-k, inside a human keyword) state."""
    runs: list[tuple[str, bool, bool]] = []
    for chunk, top, label in segments(prompt, ps.spans[ps.top_k(k)], keywords, region):
        state = (top, label is not None)
        if runs and runs[-1][1:] == state:
            runs[-1] = (runs[-1][0] + chunk, *state)
        else:
            runs.append((chunk, *state))
    return runs


def text(prompt: str, ps: PromptScores, keywords=(), k: int = 10,
         region: tuple[int, int] | None = None) -> str:
    """The (region of the) prompt with top-k words in «» and human keywords in []."""
    out, inside = [], False
    for chunk, top, human in _runs(prompt, ps, keywords, k, region):
        if human != inside:  # brackets around whole keyword runs, top-k marks inside them
            out.append("[" if human else "]")
            inside = human
        out.append(f"«{chunk}»" if top else chunk)
    return "".join(out) + ("]" if inside else "")


def _shade(scores: np.ndarray, spans: np.ndarray, a: int, b: int) -> list[tuple[int, int, float]]:
    """``(start, end, strength in [0, 1])`` of each unit inside ``[a, b)``, by score / max score."""
    top = float(scores.max()) if len(scores) else 0.0
    return [(int(s), int(e), (float(v) / top) if top > 0 else 0.0)
            for (s, e), v in zip(spans, scores) if s >= a and e <= b]


def to_html(prompt: str, ps: PromptScores, keywords=(), k: int = 10,
            region: tuple[int, int] | None = None) -> str:
    """HTML: each word's background shaded by its score (darker = higher), the top-k boxed,
    human keywords underlined."""
    a, b = region or (0, len(prompt))
    strength = np.zeros(len(prompt))
    for s, e, v in _shade(ps.scores, ps.spans, a, b):
        strength[s:e] = v
    parts = []
    for chunk, top, human, start in _runs_with_start(prompt, ps, keywords, k, region):
        pieces, pos = [], start
        # split the run where the shade changes, so each word keeps its own colour
        for piece in _split_by(strength, pos, chunk):
            alpha = strength[pos]
            text = html.escape(piece)
            if alpha > 0:
                text = f'<span style="background: rgba(230, 120, 20, {0.1 + 0.8 * alpha:.2f})">{text}</span>'
            pieces.append(text)
            pos += len(piece)
        chunk = "".join(pieces)
        if top:
            chunk = f'<span style="outline: 2px solid #b03030">{chunk}</span>'
        if human:
            chunk = f"<u>{chunk}</u>"
        parts.append(chunk)
    return (f'<pre style="white-space: pre-wrap">{"".join(parts).replace("</u><u>", "")}</pre>'
            f'<small><span style="background: rgba(230, 120, 20, 0.9)">shade</span> = score '
            f'(darker is higher); <span style="outline: 2px solid #b03030">boxed</span> = top-{k}; '
            f"<u>underlined</u> = human keyword</small>")


def _split_by(strength: np.ndarray, start: int, chunk: str) -> list[str]:
    out, cut = [], 0
    for i in range(1, len(chunk)):
        if strength[start + i] != strength[start + i - 1]:
            out.append(chunk[cut:i])
            cut = i
    out.append(chunk[cut:])
    return out


def _runs_with_start(prompt, ps, keywords, k, region):
    pos = (region or (0, len(prompt)))[0]
    for chunk, top, human in _runs(prompt, ps, keywords, k, region):
        yield chunk, top, human, pos
        pos += len(chunk)


SHADE = (230 / 255, 120 / 255, 20 / 255)
BOX = "#b03030"


def to_png(prompt: str, ps: PromptScores, keywords=(), k: int = 10,
           region: tuple[int, int] | None = None, title: str = "", columns: int = 96,
           path: str | os.PathLike | None = None, dpi: int = 150) -> bytes:
    """The highlight as a PNG image (bytes; also written to ``path`` when given): each word on
    a background shaded by its score, the top-k boxed, human keywords underlined, lines wrapped
    at ``columns`` characters. Drawn on a character grid with a monospace font, one text per
    word, so the shading lines up with the letters whatever the font's exact width."""
    import matplotlib

    if "inline" not in matplotlib.get_backend():  # headless unless a notebook shows figures
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    a, b = region or (0, len(prompt))
    strength = np.zeros(len(prompt))
    for s, e, v in _shade(ps.scores, ps.spans, a, b):
        strength[s:e] = v
    human = np.zeros(len(prompt), dtype=bool)
    for kw in keywords:
        ks, ke = (kw.start, kw.end) if hasattr(kw, "start") else kw
        human[max(ks, a):min(ke, b)] = True
    top = [(int(s), int(e)) for s, e in ps.spans[ps.top_k(k)] if s >= a and e <= b]
    # visual lines: (first character index, text), wrapped at `columns`
    lines, pos = [], a
    for raw in prompt[a:b].split("\n"):
        for cut in range(0, max(len(raw), 1), columns):
            lines.append((pos + cut, raw[cut:cut + columns]))
        pos += len(raw) + 1
    where = {}  # character index -> (line, column)
    for li, (start, text_) in enumerate(lines):
        for col in range(len(text_)):
            where[start + col] = (li, col)
    size = 9.0
    char_w, line_h = 0.62 * size / 72, 1.75 * size / 72  # inches
    ncols = max([len(t) for _, t in lines] + [40])
    fig = plt.figure(figsize=(ncols * char_w + 0.3, (len(lines) + 3.2) * line_h + 0.2))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.5, ncols + 0.5)
    ax.set_ylim(len(lines) + 1.2, -2.0)
    ax.axis("off")
    for li, (start, text_) in enumerate(lines):
        col = 0
        while col < len(text_):  # runs of equal shade -> one rectangle
            end = col
            while end < len(text_) and strength[start + end] == strength[start + col]:
                end += 1
            v = strength[start + col]
            if v > 0:
                ax.add_patch(Rectangle((col, li - 0.45), end - col, 0.9, color=(*SHADE, 0.1 + 0.8 * v),
                                       linewidth=0))
            col = end
        for col in range(len(text_)):
            if human[start + col]:
                ax.plot([col, col + 1], [li + 0.42, li + 0.42], color="black", linewidth=1.0)
        words = [(m_start, m_text) for m_start, m_text in _words_of(text_)]
        for wcol, word in words:
            ax.text(wcol, li, word, family="monospace", fontsize=size, va="center", ha="left")
    for s, e in top:  # one box per top-k unit (split where it wraps)
        cells = [where[c] for c in range(s, e) if c in where]
        for li in sorted({li for li, _ in cells}):
            cols = [c for line, c in cells if line == li]
            ax.add_patch(Rectangle((min(cols) - 0.1, li - 0.5), max(cols) - min(cols) + 1.2, 1.0,
                                   fill=False, edgecolor=BOX, linewidth=1.2))
    if title:
        ax.text(0, -1.3, title, fontsize=size, fontweight="bold", va="center", ha="left")
    ax.text(0, len(lines) + 0.6, f"shade = score (darker is higher); red box = top-{k}; underlined "
            f"= human keyword", fontsize=size - 1, color="#444444", va="center", ha="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        from .atomic import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
    return data


def _words_of(line: str) -> list[tuple[int, str]]:
    """``(column, text)`` of each run of non-space characters of a line."""
    out, col = [], 0
    while col < len(line):
        if line[col] == " ":
            col += 1
            continue
        end = line.find(" ", col)
        end = len(line) if end < 0 else end
        out.append((col, line[col:end]))
        col = end
    return out


def overlap(prompt: str, ps: PromptScores, keywords, k: int = 10) -> tuple[int, int]:
    """``(top-k words overlapping a human keyword, number of top-k words)``."""
    human = np.zeros(len(prompt), dtype=bool)
    for kw in keywords:
        a, b = (kw.start, kw.end) if hasattr(kw, "start") else kw
        human[a:b] = True
    idx = ps.top_k(k)
    return sum(bool(human[a:b].any()) for a, b in ps.spans[idx]), len(idx)


def tie_note(ps: PromptScores, k: int) -> str:
    """Says when the k-th and (k+1)-th scores tie, so the top-k is partly prompt order."""
    if len(ps.scores) <= k:
        return ""
    ordered = ps.scores[ps.top_k(len(ps.scores))]
    if ordered[k - 1] != ordered[k]:
        return ""
    tied = int((ps.scores == ordered[k - 1]).sum())
    return (f"{tied} words share the {k}th score ({ordered[k - 1]:.3g}): the top-{k} takes the "
            f"first of them in prompt order")


@dataclass
class Highlight:
    """One task of a result, shown: ``str()`` is text, notebooks render :meth:`_repr_html_`."""

    title: str
    prompt: str
    scores: PromptScores
    keywords: tuple = ()
    k: int = 10
    region: tuple[int, int] | None = None
    code: str = ""
    max_code: int = 600

    @property
    def head(self) -> str:
        hits, n = overlap(self.prompt, self.scores, self.keywords, self.k)
        head = f"{self.title}: {hits} of the top-{n} words overlap a human keyword"
        note = tie_note(self.scores, self.k)
        return head + (f" ({note})" if note else "")

    def _code(self) -> str:
        code = self.code[:self.max_code]
        return code + (" ..." if len(self.code) > self.max_code else "")

    def __str__(self) -> str:
        body = text(self.prompt, self.scores, self.keywords, self.k, self.region)
        out = f"{self.head}\n\n{body}"
        return out + (f"\n\ngenerated code:\n{self._code()}" if self.code else "")

    def _repr_html_(self) -> str:
        rich = (f"<b>{html.escape(self.head)}</b>"
                f"{to_html(self.prompt, self.scores, self.keywords, self.k, self.region)}")
        if self.code:
            rich += (f"<details><summary>generated code</summary><pre>{html.escape(self._code())}"
                     f"</pre></details>")
        return rich

    def __repr__(self) -> str:
        return str(self)

    def to_png(self, path: str | os.PathLike | None = None, columns: int = 96) -> bytes:
        """The highlight as a PNG (bytes; also written to ``path``): for GitHub and other
        viewers that drop HTML styles. In a notebook: ``Image(result.show().to_png())``."""
        return to_png(self.prompt, self.scores, self.keywords, self.k, self.region, self.head,
                      columns, path)


@dataclass
class Message:
    """A one-line answer where there is nothing to highlight (e.g. every task failed)."""

    text: str

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"
