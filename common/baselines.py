"""Chance and no-model baselines, scored exactly like a method.

Units are the regex words of each prompt's scored region (``common.code_units.words(prompt,
task.region)``), so every baseline reports on the same units:

``baseline_random``
    k words drawn uniformly without replacement. Its *expected* precision, recall and alpha
    are exact (:func:`expected_random_stats`): the words of a prompt are disjoint, so every
    numerator is a sum of per-word terms times the inclusion probability min(k, n)/n, and the
    denominators (top-k units, human spans, 1-codes) do not depend on the draw. F1 is the F1
    of the expected precision and recall; :func:`simulate_random` checks it by seeded draws.
``baseline_first_k``
    the first k words of the region.
``baseline_rare_words``
    the k rarest content words: document frequency over the 1,138 task prompts (lower-cased
    words of the scored region; scikit-learn's English stop-word list removed, those words
    ranked last); ties in prompt order.
"""

from __future__ import annotations

import ast
import importlib.util
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from . import code_units
from .metrics import STAT_FIELDS, LabelIndex, Ranked, Scorer
from .results import PromptScores

MODEL = "baseline"
RANDOM, FIRST_K, RARE_WORDS = "baseline_random", "baseline_first_k", "baseline_rare_words"
METHODS = (RANDOM, FIRST_K, RARE_WORDS)


@cache
def _stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (a shap dependency). Read from its source file
    when it has the expected shape: importing ``sklearn`` pulls in scipy, seconds that would
    dominate scoring the whole table; otherwise imported."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    if spec is not None and spec.origin:
        try:
            tree = ast.parse((Path(spec.origin).parent / "feature_extraction" / "_stop_words.py")
                             .read_text(encoding="utf-8"))
            for node in tree.body:
                if (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and getattr(node.targets[0], "id", None) == "ENGLISH_STOP_WORDS"
                        and isinstance(node.value, ast.Call) and len(node.value.args) == 1):
                    words = ast.literal_eval(node.value.args[0])
                    if isinstance(words, list | set | tuple) and all(isinstance(w, str) for w in words):
                        return frozenset(words)
        except (OSError, SyntaxError, ValueError):
            pass
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    return frozenset(ENGLISH_STOP_WORDS)


def _words(ds) -> dict[str, np.ndarray]:
    """Prompt -> its region's word spans."""
    split = _split(ds)
    return {p: split[p, t.region][0] for p, t in ds.prompts().items()}


def _split(ds) -> dict[tuple[str, tuple[int, int]], tuple[np.ndarray, list[str]]]:
    """(prompt, region) of every task -> the region's word spans and lower-cased words."""
    return _region_words(tuple(dict.fromkeys((t.prompt, t.region) for t in ds.tasks)))


@lru_cache(maxsize=4)
def _region_words(regions: tuple[tuple[str, tuple[int, int]], ...]) -> dict:
    # the three baselines and both label versions share the prompts: split them once
    out = {}
    for p, region in regions:
        spans = code_units.words(p, region)
        out[p, region] = (spans, [p[a:b].lower() for a, b in spans.tolist()])
    return out


def first_k(ds) -> dict[str, PromptScores]:
    """Prompt -> the region's words scored by position (first word highest)."""
    out = {}
    for p, w in _words(ds).items():
        out[p] = PromptScores(w, -np.arange(len(w), dtype=np.float64))
    return out


def document_frequency(ds) -> Counter:
    """Lower-cased word -> number of tasks (all 1,138) whose scored region contains it."""
    split = _split(ds)
    df: Counter = Counter()
    for t in ds.tasks:
        df.update(set(split[t.prompt, t.region][1]))
    return df


def rare_words(ds) -> dict[str, PromptScores]:
    """Prompt -> the region's words scored by rarity (-document frequency); stop words get a
    score below every content word."""
    df = document_frequency(ds)
    stop = _stop_words()
    floor = -float(len(ds.tasks) + 1)
    split = _split(ds)
    out = {}
    for p, t in ds.prompts().items():
        spans, lower = split[p, t.region]
        scores = [floor if word in stop else -float(df[word]) for word in lower]
        out[p] = PromptScores(spans, np.asarray(scores, dtype=np.float64))
    return out


def random_units(ds) -> dict[str, PromptScores]:
    """Prompt -> the region's words, all scored 0 (the random baseline's units)."""
    return {p: PromptScores(w, np.zeros(len(w))) for p, w in _words(ds).items()}


def expected_random_stats(scorer: Scorer, k: int) -> np.ndarray:
    """Per-prompt statistics (:data:`common.metrics.STAT_FIELDS`) of a uniformly random
    top-k over ``scorer``'s units, in expectation. The units of a prompt must be disjoint
    (words are)."""
    every = scorer.prompt_stats(np.iinfo(np.int64).max)  # every unit selected
    n_units = every[:, 4]
    chosen = np.minimum(k, n_units)
    q = np.divide(chosen, n_units, out=np.zeros_like(n_units), where=n_units > 0)
    # with every unit selected, model code = 1 everywhere: n1 = human units + units
    human_units = every[:, 6] - n_units
    out = np.empty_like(every)
    out[:, 0] = q * every[:, 0]
    out[:, 1] = chosen
    out[:, 2] = q * every[:, 2]
    out[:, 3] = every[:, 3]
    out[:, 4] = n_units
    # disagreements: human units left out plus chosen units that are not human
    out[:, 5] = human_units + chosen - 2 * q * human_units
    out[:, 6] = human_units + chosen
    assert out.shape[1] == len(STAT_FIELDS)
    return out


def simulate_random(units: dict[str, PromptScores], index: LabelIndex, k: int, draws: int = 200,
                    seed: int = 0) -> dict[str, float]:
    """Mean precision, recall, F1 and alpha of ``draws`` seeded random top-k selections."""
    rng = np.random.default_rng(seed)
    totals = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "alpha": 0.0}
    for _ in range(draws):
        drawn = {p: PromptScores(u.spans, rng.random(len(u.spans))) for p, u in units.items()}
        s = Scorer(Ranked(drawn), index).score(k)
        for name in totals:
            totals[name] += getattr(s, name) / draws
    return totals


def expected_f1_single_prompt(n_units: int, n_human_words: int, k: int) -> float:
    """Closed form for one prompt whose human spans are exactly ``n_human_words`` of its
    ``n_units`` words: with X ~ Hypergeometric hits, P = X/k and R = X/h, so F1 = 2X/(k+h)
    is linear in X and E[F1] = 2 (k h / n) / (k + h)."""
    k = min(k, n_units)
    return 2 * (k * n_human_words / n_units) / (k + n_human_words)
