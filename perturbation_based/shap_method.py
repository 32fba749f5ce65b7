"""SHAP over word presence (``shap_perturbation``, study section 3), and a text-masker variant.

Paper mode (:class:`ShapKernel`): the features are the NLTK tokens of the scored region
(punctuation kept, as in the published files); a coalition ``z`` (1 = word present) becomes the
prompt with every absent word replaced by ``[MASK]``; the model's value for ``z`` is the change
of the generated code, 1 - BLEU(original code, code for z). ``shap.KernelExplainer`` with the
single-word-masked variants as background explains the all-present vector with ``nsamples=50``;
importance = |SHAP value|.

Because each background row differs from the explained vector in one word only, every prompt the
explainer asks about is either the original or a single-word-masked one: at most n + 1 distinct
generations per task however many coalitions are sampled, all answered from one batch and the
generation cache. (The exact Shapley values of this game are f(one word masked) / n.)

Differences from the published code, on purpose: the published model function looked coalitions
up in the background matrix and fell back to the first background text when none matched (most
coalitions), joined tokens with spaces (losing the docstring layout) and gave every word
importance 1 when SHAP raised. Here each coalition is turned into its own prompt, the prompt's
layout is kept, and a SHAP error is a recorded failure.

``l1_reg="aic"`` matches what the study's shap version did by default (its ``"auto"`` meant AIC
feature selection when under 20% of coalitions are evaluated); shap 0.51 changed the default to
``num_features(10)``.

Improved variant (:class:`ShapPartition`, method ``shap_text_perturbation``): shap's own Text
masker over the same word tokens with the Partition explainer, which evaluates hierarchical
coalitions of neighbouring words (many words masked at once) instead of single-word removals.
"""

from __future__ import annotations

import numpy as np

from .core import Attribution, Generator, code_change, region_words, replace_spans

METHOD = "shap_perturbation"
TEXT_METHOD = "shap_text_perturbation"


class _CodeChangeModel:
    """Maps word-presence rows to code change, generating each distinct prompt once per task."""

    def __init__(self, generator: Generator, task, spans, mask_token: str, smoothing):
        self.generator = generator
        self.task = task
        self.spans = spans
        self.mask_token = mask_token
        self.smoothing = smoothing
        self.codes: dict[str, str] = {}
        self.original = self._codes([task.model_prompt])[0]

    def prompt_for(self, present: np.ndarray) -> str:
        absent = [s for s, keep in zip(self.spans, present) if not keep]
        return replace_spans(self.task.model_prompt, absent, [self.mask_token] * len(absent))

    def _codes(self, prompts: list[str]) -> list[str]:
        todo = list(dict.fromkeys(p for p in prompts if p not in self.codes))
        if todo:
            for p, code in zip(todo, self.generator.generate(todo, self.task.reference)):
                self.codes[p] = code
        return [self.codes[p] for p in prompts]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim == 1:
            rows = rows[None, :]
        prompts = [self.prompt_for(r > 0.5) for r in rows]
        codes = self._codes(prompts)
        return np.asarray([code_change(self.original, c, self.smoothing) for c in codes])


class ShapKernel:
    """Paper mode. ``attribute(task)`` -> |SHAP| per word, or a failure with the reason."""

    method = METHOD

    def __init__(self, generator: Generator, nsamples: int = 50, l1_reg="aic",
                 mask_token: str = "[MASK]", drop_punctuation: bool = False,
                 smoothing: str | None = None, seed: int = 0):
        self.generator = generator
        self.nsamples = nsamples
        self.l1_reg = l1_reg
        self.mask_token = mask_token
        self.drop_punctuation = drop_punctuation
        self.smoothing = smoothing
        self.seed = seed

    def settings(self) -> dict:
        return {"nsamples": self.nsamples, "l1_reg": self.l1_reg, "mask_token": self.mask_token,
                "drop_punctuation": self.drop_punctuation, "smoothing": self.smoothing,
                "seed": self.seed}

    def attribute(self, task) -> Attribution:
        import shap

        spans = region_words(task.prompt, task.region, self.drop_punctuation)
        if not spans:
            return Attribution([], [], failure="the scored region has no words")
        model = _CodeChangeModel(self.generator, task, spans, self.mask_token, self.smoothing)
        n = len(spans)
        background = np.ones((n, n)) - np.eye(n)
        # KernelExplainer samples coalitions with numpy's global generator
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            explainer = shap.KernelExplainer(model, background)
            values = explainer.shap_values(np.ones((1, n)), nsamples=self.nsamples,
                                           l1_reg=self.l1_reg, silent=True)
        except Exception as exc:  # noqa: BLE001 - any SHAP error is a recorded task failure
            return Attribution([], [], generation=model.original, n_generations=len(model.codes),
                               failure=f"SHAP failed: {type(exc).__name__}: {exc}")
        finally:
            np.random.set_state(state)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != (n,) or not np.isfinite(values).all():
            return Attribution([], [], generation=model.original, n_generations=len(model.codes),
                               failure=f"SHAP returned {values.shape} values, non-finite or not "
                                       f"one per word ({n})")
        return Attribution(spans, np.abs(values).tolist(), generation=model.original,
                           n_generations=len(model.codes))


def _nltk_tokenizer(drop_punctuation: bool):
    """A callable in the form shap's Text masker accepts: ids and character offsets of the same
    NLTK word units the other methods score."""
    def tokenize(s, return_offsets_mapping=True, **_):
        spans = region_words(s, (0, len(s)), drop_punctuation)
        return {"input_ids": list(range(1, len(spans) + 1)), "offset_mapping": spans}
    return tokenize


def _layout_text_masker(drop_punctuation: bool, mask_token: str):
    """shap's Text masker (its word hierarchy drives the Partition explainer), but a masked text
    keeps the prompt's layout: absent words are replaced in place. Stock ``Text`` rebuilds the
    string from token segments and glues a mask to the following word ("[MASK]sort")."""
    import shap

    class LayoutText(shap.maskers.Text):
        def __call__(self, mask, s):
            spans = region_words(s, (0, len(s)), drop_punctuation)
            absent = [sp for sp, keep in zip(spans, mask) if not keep]
            return (np.array([replace_spans(s, absent, [mask_token] * len(absent))]),)

    return LayoutText(_nltk_tokenizer(drop_punctuation), mask_token=mask_token,
                      collapse_mask_token=False)


class ShapPartition:
    """Improved variant: shap's Text masker + Partition explainer over the region's words.

    Coalitions follow shap's word hierarchy (neighbouring words masked together), so a word's
    value reflects interactions the single-word background of the paper mode cannot see. Costs
    ``max_evals`` generations per task (default max(50, 3 n)).
    """

    method = TEXT_METHOD

    def __init__(self, generator: Generator, max_evals: int | None = None, mask_token: str = "[MASK]",
                 drop_punctuation: bool = False, smoothing: str | None = None):
        self.generator = generator
        self.max_evals = max_evals
        self.mask_token = mask_token
        self.drop_punctuation = drop_punctuation
        self.smoothing = smoothing

    def settings(self) -> dict:
        return {"max_evals": self.max_evals, "mask_token": self.mask_token,
                "drop_punctuation": self.drop_punctuation, "smoothing": self.smoothing,
                "explainer": "Partition", "masker": "Text"}

    def attribute(self, task) -> Attribution:
        import shap

        spans = region_words(task.prompt, task.region, self.drop_punctuation)
        if not spans:
            return Attribution([], [], failure="the scored region has no words")
        a, b = task.region
        model = _CodeChangeModel(self.generator, task, spans, self.mask_token, self.smoothing)

        def f(region_texts):
            prompts = [task.model_prompt[:a] + str(t) + task.model_prompt[b:] for t in region_texts]
            codes = model._codes(prompts)
            return np.asarray([code_change(model.original, c, self.smoothing) for c in codes])

        evals = self.max_evals or max(50, 3 * len(spans))
        try:
            explainer = shap.explainers.Partition(f, _layout_text_masker(self.drop_punctuation,
                                                                         self.mask_token))
            explanation = explainer([task.prompt[a:b]], max_evals=evals, silent=True)
            values = np.asarray(explanation.values[0], dtype=np.float64).reshape(-1)
        except Exception as exc:  # noqa: BLE001 - any SHAP error is a recorded task failure
            return Attribution([], [], generation=model.original, n_generations=len(model.codes),
                               failure=f"SHAP failed: {type(exc).__name__}: {exc}")
        if values.shape != (len(spans),) or not np.isfinite(values).all():
            return Attribution([], [], generation=model.original, n_generations=len(model.codes),
                               failure=f"SHAP returned {values.shape} values, non-finite or not "
                                       f"one per word ({len(spans)})")
        return Attribution(spans, np.abs(values).tolist(), generation=model.original,
                           n_generations=len(model.codes))
