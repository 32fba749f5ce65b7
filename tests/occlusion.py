"""A thirteenth method in one module: the README's "Adding a method" example.

Occlusion: delete each word of the scored region in turn; a word matters as much as the
generated code changes without it (1 - BLEU, as BERT masking). A black box, so it runs on any
backend: a local model or an OpenAI-compatible API.
"""

from __future__ import annotations

from common.code_units import perturbation_units
from common.method import Attribution, Method, TaskFailure
from perturbation_based.core import code_change, replace_spans


class Occlusion(Method):
    name = "occlusion_perturbation"
    family = "perturbation"
    needs = "generator"
    cost = "one generation per word of the scored region, plus the original"
    description = "1 - BLEU(original code, code generated with one word deleted)"

    def attribute(self, task, backend) -> Attribution:
        spans = perturbation_units(task.prompt, task.region, self.options.definitions)
        if not len(spans):
            raise TaskFailure("the scored region has no words")
        prompts = [replace_spans(task.model_prompt, [tuple(s)], [""]) for s in spans]
        original, *changed = backend.generate([task.model_prompt, *prompts], task.reference)
        return Attribution(spans, [code_change(original, c) for c in changed], generation=original,
                           details={"n_generations": len(prompts) + 1})
