"""SHAP over word presence: exact values on a small game computed by hand, generation counts,
failures recorded (never fake scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perturbation_based.shap_method import ShapKernel
from tests.perturbation_fakes import RuleGenerator, mbpp_task

RULES = {"sort": "return sorted ( xs )", "numbers": "nums"}
ORIGINAL = "def f ( xs ) : return sorted ( xs ) nums"  # 12 tokens


def change_without(hyp_precisions, hyp_len, ref_len=12):
    bp = math.exp(1 - ref_len / hyp_len)
    return 1 - bp * math.prod(hyp_precisions) ** 0.25


# masking "sort" leaves "def f ( xs ) : nums" (7 tokens): the n-grams across ": nums" are new
F_SORT = change_without([7 / 7, 5 / 6, 4 / 5, 3 / 4], 7)
# masking "numbers" leaves "def f ( xs ) : return sorted ( xs )" (11 tokens), all n-grams match
F_NUMBERS = change_without([1, 1, 1, 1], 11)


def test_exact_shapley_values_by_hand():
    # 3 words, nsamples 50 > 2^3 - 2 coalitions: KernelExplainer enumerates them all, and with no
    # feature selection its values are the exact Shapley values f(word masked) / n
    task = mbpp_task("sort the numbers")
    gen = RuleGenerator(RULES)
    out = ShapKernel(gen, l1_reg=False).attribute(task)
    assert out.failure is None and out.generation == ORIGINAL
    assert [task.prompt[a:b] for a, b in out.spans] == ["sort", "the", "numbers"]
    assert out.scores == pytest.approx([F_SORT / 3, 0.0, F_NUMBERS / 3], abs=1e-9)


def test_coalitions_become_masked_prompts_and_each_prompt_is_generated_once():
    task = mbpp_task("Write a function to sort the numbers in a list")  # 10 words
    gen = RuleGenerator(RULES)
    out = ShapKernel(gen).attribute(task)  # paper settings: nsamples 50, AIC selection
    assert out.failure is None and len(out.scores) == 10
    seen = gen.prompts_seen
    assert len(seen) == len(set(seen)) == out.n_generations == 11  # original + one per word
    masked = sorted(p for p in seen if "[MASK]" in p)
    assert "Write a function to [MASK] the numbers in a list\ndef function():" in masked
    assert all(p.count("[MASK]") == 1 for p in masked)
    scores = np.asarray(out.scores)
    assert (scores >= 0).all() and scores.argmax() == 4  # "sort" matters most
    # only "sort" and "numbers" change the code; selection keeps the others at (near) zero
    assert np.delete(scores, [4, 6]).max() < 0.1 * scores[4]


def test_punctuation_is_a_feature_by_default_as_published():
    task = mbpp_task("Sort numbers.")
    out = ShapKernel(RuleGenerator(RULES), l1_reg=False).attribute(task)
    assert [task.prompt[a:b] for a, b in out.spans] == ["Sort", "numbers", "."]
    out = ShapKernel(RuleGenerator(RULES), l1_reg=False, drop_punctuation=True).attribute(task)
    assert [task.prompt[a:b] for a, b in out.spans] == ["Sort", "numbers"]


def test_same_seed_same_values():
    task = mbpp_task("Write a function to sort the numbers in a list")
    a = ShapKernel(RuleGenerator(RULES), seed=3).attribute(task)
    b = ShapKernel(RuleGenerator(RULES), seed=3).attribute(task)
    assert a.scores == b.scores


def test_shap_error_is_a_recorded_failure(monkeypatch):
    import shap

    def boom(self, *a, **k):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(shap.KernelExplainer, "shap_values", boom)
    out = ShapKernel(RuleGenerator(RULES)).attribute(mbpp_task("sort the numbers"))
    assert out.failure == "SHAP failed: LinAlgError: singular matrix"
    assert out.scores == [] and out.spans == []  # never the published all-ones fallback
    assert out.generation == ORIGINAL


def test_non_finite_shap_values_are_a_failure(monkeypatch):
    import shap

    monkeypatch.setattr(shap.KernelExplainer, "shap_values",
                        lambda self, X, **k: np.array([[np.nan, 0.0, 1.0]]))
    out = ShapKernel(RuleGenerator(RULES)).attribute(mbpp_task("sort the numbers"))
    assert out.failure and "non-finite" in out.failure


def test_partition_variant_ranks_the_word_that_matters_and_keeps_layout():
    from perturbation_based.shap_method import ShapPartition

    task = mbpp_task("Write a function to sort the numbers in a list.")
    gen = RuleGenerator(RULES)
    out = ShapPartition(gen, max_evals=40).attribute(task)
    assert out.failure is None and len(out.scores) == 11  # 10 words and the full stop
    scores = np.asarray(out.scores)
    assert scores.argmax() == 4 and scores[6] > 0  # "sort" first, "numbers" counts too
    # with few evaluations a neighbour of "numbers" may share its credit, never much of it
    assert np.delete(scores, [4, 6]).max() < scores[4] / 10
    assert out.n_generations == len(set(gen.prompts_seen)) <= 40 + 1
    # absent words are replaced in place: the rest of the text keeps its spacing
    assert "[MASK] [MASK] [MASK] [MASK] sort the numbers in a list.\ndef function():" in gen.prompts_seen


def test_partition_variant_records_shap_errors(monkeypatch):
    import shap

    from perturbation_based.shap_method import ShapPartition

    def boom(self, *a, **k):
        raise ValueError("bad masker")

    monkeypatch.setattr(shap.explainers.Partition, "__call__", boom)
    out = ShapPartition(RuleGenerator(RULES)).attribute(mbpp_task("sort the numbers"))
    assert out.failure == "SHAP failed: ValueError: bad masker" and out.scores == []
