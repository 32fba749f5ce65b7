"""SHAP over word presence: exact values on a small game computed by hand, generation counts,
failures recorded (never fake scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.method import TaskFailure
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
    out = ShapKernel(l1_reg=False).attribute(task, gen)
    assert out.generation == ORIGINAL
    assert [task.prompt[a:b] for a, b in out.spans] == ["sort", "the", "numbers"]
    assert out.scores.tolist() == pytest.approx([F_SORT / 3, 0.0, F_NUMBERS / 3], abs=1e-9)


def test_coalitions_become_masked_prompts_and_each_prompt_is_generated_once():
    task = mbpp_task("Write a function to sort the numbers in a list")  # 10 words
    gen = RuleGenerator(RULES)
    out = ShapKernel().attribute(task, gen)  # paper settings: nsamples 50, AIC selection
    assert len(out.scores) == 10
    seen = gen.prompts_seen
    assert len(seen) == len(set(seen)) == out.details["n_generations"] == 11  # original + one per word
    masked = sorted(p for p in seen if "[MASK]" in p)
    assert "Write a function to [MASK] the numbers in a list\ndef function():" in masked
    assert all(p.count("[MASK]") == 1 for p in masked)
    scores = np.asarray(out.scores)
    assert (scores >= 0).all() and scores.argmax() == 4  # "sort" matters most
    # only "sort" and "numbers" change the code; selection keeps the others at (near) zero
    assert np.delete(scores, [4, 6]).max() < 0.1 * scores[4]


def test_punctuation_is_a_feature_under_the_paper_definitions_as_published():
    task = mbpp_task("Sort numbers.")
    out = ShapKernel(l1_reg=False, definitions="paper").attribute(task, RuleGenerator(RULES))
    assert [task.prompt[a:b] for a, b in out.spans] == ["Sort", "numbers", "."]
    out = ShapKernel(l1_reg=False).attribute(task, RuleGenerator(RULES))  # unified: words only
    assert [task.prompt[a:b] for a, b in out.spans] == ["Sort", "numbers"]


def test_same_seed_same_values():
    task = mbpp_task("Write a function to sort the numbers in a list")
    a = ShapKernel(seed=3).attribute(task, RuleGenerator(RULES))
    b = ShapKernel(seed=3).attribute(task, RuleGenerator(RULES))
    assert a.scores.tolist() == b.scores.tolist()


def test_shap_error_is_a_recorded_failure(monkeypatch):
    import shap

    def boom(self, *a, **k):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(shap.KernelExplainer, "shap_values", boom)
    with pytest.raises(TaskFailure, match="^SHAP failed: LinAlgError: singular matrix$") as failed:
        ShapKernel().attribute(mbpp_task("sort the numbers"), RuleGenerator(RULES))
    # a failure, never the published all-ones fallback; the generation is kept with it
    assert failed.value.generation == ORIGINAL


class Outage(RuntimeError):
    pass


def test_a_generator_error_inside_shap_is_not_a_task_failure(monkeypatch):
    # an API outage or a budget stop raised while shap calls the model must stop the run, even
    # if shap catches it on the way: it is re-raised, never recorded as "SHAP failed"
    import shap

    class Flaky(RuleGenerator):
        def generate(self, prompts, reference):
            if len(self.calls) >= 1:
                raise Outage("server down")
            return super().generate(prompts, reference)

    real = shap.KernelExplainer.shap_values

    def swallowing(self, *a, **k):
        try:
            return real(self, *a, **k)
        except Outage:
            raise ValueError("shap wrapped it") from None

    monkeypatch.setattr(shap.KernelExplainer, "shap_values", swallowing)
    with pytest.raises(Outage, match="server down"):
        ShapKernel().attribute(mbpp_task("sort the numbers"), Flaky(RULES))


def test_non_finite_shap_values_are_a_failure(monkeypatch):
    import shap

    monkeypatch.setattr(shap.KernelExplainer, "shap_values",
                        lambda self, X, **k: np.array([[np.nan, 0.0, 1.0]]))
    with pytest.raises(TaskFailure, match="non-finite"):
        ShapKernel().attribute(mbpp_task("sort the numbers"), RuleGenerator(RULES))


def test_partition_variant_ranks_the_word_that_matters_and_keeps_layout():
    from perturbation_based.shap_method import ShapPartition

    task = mbpp_task("Write a function to sort the numbers in a list.")
    gen = RuleGenerator(RULES)
    out = ShapPartition(max_evals=40, definitions="paper").attribute(task, gen)
    assert len(out.scores) == 11  # 10 words and the full stop
    scores = np.asarray(out.scores)
    assert scores.argmax() == 4 and scores[6] > 0  # "sort" first, "numbers" counts too
    # with few evaluations a neighbour of "numbers" may share its credit, never much of it
    assert np.delete(scores, [4, 6]).max() < scores[4] / 10
    assert out.details["n_generations"] == len(set(gen.prompts_seen)) <= 40 + 1
    # absent words are replaced in place: the rest of the text keeps its spacing
    assert "[MASK] [MASK] [MASK] [MASK] sort the numbers in a list.\ndef function():" in gen.prompts_seen


def test_partition_variant_records_shap_errors(monkeypatch):
    import shap

    from perturbation_based.shap_method import ShapPartition

    def boom(self, *a, **k):
        raise ValueError("bad masker")

    monkeypatch.setattr(shap.explainers.Partition, "__call__", boom)
    with pytest.raises(TaskFailure, match="^SHAP failed: ValueError: bad masker$"):
        ShapPartition().attribute(mbpp_task("sort the numbers"), RuleGenerator(RULES))
