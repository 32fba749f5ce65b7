"""Registry of the perturbation methods by name (``bert_perturbation``, ``shap_perturbation``,
``shap_text_perturbation``).

Every method has the same small contract: ``Method(generator, **options)`` and
``.attribute(task) -> Attribution``, plus ``.settings()`` (recorded in the result header).
"""

from __future__ import annotations

from collections.abc import Callable

from .bert_masking import METHOD as BERT
from .bert_masking import BertFiller, BertMasking
from .shap_method import METHOD as SHAP
from .shap_method import TEXT_METHOD as SHAP_TEXT
from .shap_method import ShapKernel, ShapPartition


def _bert(generator, fill_model: str = "bert-base-uncased", fill_device: str = "cpu",
          fill_batch_size: int = 32, smoothing=None, filler=None):
    filler = filler or BertFiller(fill_model, device=fill_device, batch_size=fill_batch_size)
    return BertMasking(generator, filler, smoothing=smoothing)


def _shap(generator, nsamples: int = 50, l1_reg="aic", mask_token: str = "[MASK]", seed: int = 0,
          smoothing=None, drop_punctuation: bool = False):
    return ShapKernel(generator, nsamples=nsamples, l1_reg=l1_reg, mask_token=mask_token,
                      drop_punctuation=drop_punctuation, smoothing=smoothing, seed=seed)


def _shap_text(generator, max_evals: int | None = None, mask_token: str = "[MASK]", smoothing=None,
               drop_punctuation: bool = False):
    return ShapPartition(generator, max_evals=max_evals, mask_token=mask_token,
                         drop_punctuation=drop_punctuation, smoothing=smoothing)


METHODS: dict[str, Callable] = {BERT: _bert, SHAP: _shap, SHAP_TEXT: _shap_text}
#: Generations per task of each method, in terms of n = scored words (with punctuation for SHAP).
GENERATIONS_PER_TASK = {BERT: "n + 1 (the paper: one per word, plus the original)",
                        SHAP: "at most n + 1 distinct prompts, whatever nsamples",
                        SHAP_TEXT: "up to max_evals (default max(50, 3 n))"}


def create(name: str, generator, **options):
    """The method ``name`` bound to ``generator``; an option the method does not take is an error."""
    try:
        factory = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown perturbation method {name!r}; choose from {sorted(METHODS)}") from None
    return factory(generator, **options)
