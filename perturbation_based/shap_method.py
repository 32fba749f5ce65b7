"""SHAP over word presence (``shap_perturbation``, study section 3), and a text-masker variant.

Paper mode (:class:`ShapKernel`): the features are the words of the scored region
(:func:`common.code_units.perturbation_units`; under ``definitions="paper"`` the study's NLTK
tokens with punctuation kept, as in the published files); a coalition ``z`` (1 = word present) becomes the
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

from dataclasses import dataclass

import numpy as np

from common.code_units import perturbation_units
from common.method import Attribution, Method, Options, TaskFailure

from .core import Generator, code_change, replace_spans

#: Numerical failures inside shap that leave one task unscored. Anything else raised while
#: explaining (a bug, an API error, a budget stop) propagates and stops the run.
SHAP_FAILURES = (np.linalg.LinAlgError, ValueError, ZeroDivisionError, FloatingPointError)

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
        self.error: BaseException | None = None  # raised by the generator inside shap
        self.original = self._codes([task.model_prompt])[0]

    def prompt_for(self, present: np.ndarray) -> str:
        absent = [s for s, keep in zip(self.spans, present) if not keep]
        return replace_spans(self.task.model_prompt, absent, [self.mask_token] * len(absent))

    def _codes(self, prompts: list[str]) -> list[str]:
        todo = list(dict.fromkeys(p for p in prompts if p not in self.codes))
        if todo:
            try:
                generated = self.generator.generate(todo, self.task.reference)
            except BaseException as exc:
                # shap may swallow exceptions of the model function: keep it to re-raise after
                self.error = exc
                raise
            for p, code in zip(todo, generated):
                self.codes[p] = code
        return [self.codes[p] for p in prompts]

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim == 1:
            rows = rows[None, :]
        prompts = [self.prompt_for(r > 0.5) for r in rows]
        codes = self._codes(prompts)
        return np.asarray([code_change(self.original, c, self.smoothing) for c in codes])


@dataclass(frozen=True)
class ShapOptions(Options):
    nsamples: int = 50
    l1_reg: str | bool = "aic"
    mask_token: str = "[MASK]"
    seed: int = 0
    smoothing: str | None = None


def _values(values, n: int, model: _CodeChangeModel) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (n,) or not np.isfinite(values).all():
        raise TaskFailure(f"SHAP returned {values.shape} values, non-finite or not one per word ({n})",
                          generation=model.original)
    return np.abs(values)


def _units(task, options) -> np.ndarray:
    # the published SHAP files kept punctuation tokens: so does the paper definition
    spans = perturbation_units(task.prompt, task.region, options.definitions, punctuation=True)
    if not len(spans):
        raise TaskFailure("the scored region has no words")
    return spans


class ShapKernel(Method):
    """Paper mode: KernelExplainer over word presence, background = single-word-masked rows."""

    name = METHOD
    family = "perturbation"
    needs = "generator"
    cost = "at most one generation per word plus the original, whatever nsamples"
    description = "SHAP KernelExplainer over word presence; importance = |SHAP value|"
    Options = ShapOptions

    def planned_prompts(self, task) -> list[str]:
        """The original and every single-word-masked prompt: every coalition the explainer asks
        about is one of these (see the module docstring), so the run loop can batch them across
        tasks before the task runs."""
        o = self.options
        spans = [tuple(s) for s in perturbation_units(task.prompt, task.region, o.definitions,
                                                      punctuation=True)]
        return [task.model_prompt, *(replace_spans(task.model_prompt, [s], [o.mask_token]) for s in spans)]

    def attribute(self, task, backend) -> Attribution:
        import shap

        o = self.options
        spans = [tuple(s) for s in _units(task, o)]
        model = _CodeChangeModel(backend, task, spans, o.mask_token, o.smoothing)
        n = len(spans)
        background = np.ones((n, n)) - np.eye(n)
        # KernelExplainer samples coalitions with numpy's global generator
        state = np.random.get_state()
        np.random.seed(o.seed)
        try:
            explainer = shap.KernelExplainer(model, background)
            values = explainer.shap_values(np.ones((1, n)), nsamples=o.nsamples, l1_reg=o.l1_reg,
                                           silent=True)
        except SHAP_FAILURES as exc:
            model.reraise()
            raise TaskFailure(f"SHAP failed: {type(exc).__name__}: {exc}",
                              generation=model.original) from exc
        finally:
            np.random.set_state(state)
        model.reraise()
        return Attribution(spans, _values(values, n, model), generation=model.original,
                           details={"n_generations": len(model.codes)})


def _word_tokenizer(options):
    """A callable in the form shap's Text masker accepts: ids and character offsets of the same
    words the other methods score."""
    def tokenize(s, return_offsets_mapping=True, **_):
        spans = perturbation_units(s, (0, len(s)), options.definitions, punctuation=True).tolist()
        return {"input_ids": list(range(1, len(spans) + 1)), "offset_mapping": spans}
    return tokenize


def _layout_text_masker(options):
    """shap's Text masker (its word hierarchy drives the Partition explainer), but a masked text
    keeps the prompt's layout: absent words are replaced in place. Stock ``Text`` rebuilds the
    string from token segments and glues a mask to the following word ("[MASK]sort")."""
    import shap

    tokenize = _word_tokenizer(options)

    class LayoutText(shap.maskers.Text):
        def __call__(self, mask, s):
            spans = tokenize(s)["offset_mapping"]
            absent = [sp for sp, keep in zip(spans, mask) if not keep]
            return (np.array([replace_spans(s, absent, [options.mask_token] * len(absent))]),)

    return LayoutText(tokenize, mask_token=options.mask_token, collapse_mask_token=False)


@dataclass(frozen=True)
class ShapTextOptions(Options):
    max_evals: int | None = None
    mask_token: str = "[MASK]"
    smoothing: str | None = None


class ShapPartition(Method):
    """Improved variant: shap's Text masker + Partition explainer over the region's words.

    Coalitions follow shap's word hierarchy (neighbouring words masked together), so a word's
    value reflects interactions the single-word background of the paper mode cannot see. Costs
    ``max_evals`` generations per task (default max(50, 3 n)).
    """

    name = TEXT_METHOD
    family = "perturbation"
    needs = "generator"
    cost = "up to max_evals generations (default max(50, 3 x words))"
    description = "SHAP Partition explainer with shap's Text masker (not in the paper)"
    Options = ShapTextOptions

    def attribute(self, task, backend) -> Attribution:
        import shap

        o = self.options
        spans = [tuple(s) for s in _units(task, o)]
        a, b = task.region
        model = _CodeChangeModel(backend, task, spans, o.mask_token, o.smoothing)

        def f(region_texts):
            prompts = [task.model_prompt[:a] + str(t) + task.model_prompt[b:] for t in region_texts]
            codes = model._codes(prompts)
            return np.asarray([code_change(model.original, c, o.smoothing) for c in codes])

        evals = o.max_evals or max(50, 3 * len(spans))
        try:
            explainer = shap.explainers.Partition(f, _layout_text_masker(o))
            explanation = explainer([task.prompt[a:b]], max_evals=evals, silent=True)
            values = explanation.values[0]
        except SHAP_FAILURES as exc:
            model.reraise()
            raise TaskFailure(f"SHAP failed: {type(exc).__name__}: {exc}",
                              generation=model.original) from exc
        model.reraise()
        return Attribution(spans, _values(values, len(spans), model), generation=model.original,
                           details={"n_generations": len(model.codes)})
