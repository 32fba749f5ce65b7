"""A Hugging Face causal LM as a perturbation-method generator: batched, cached greedy decoding.

Model loading and greedy generation are ``common.models`` (shared with the self-attention and
gradient methods); this module only adds what perturbation needs on top: the study's budget per
task (reference tokens + 20), one batched call for all perturbed prompts of a task, and the
on-disk generation cache keyed by (model, prompt text, settings), so repeated SHAP coalitions
and reruns never regenerate.
"""

from __future__ import annotations

from common.generation_cache import GenerationCache


class HFGenerator:
    """``generate(prompts, reference)`` -> greedy continuation of each prompt.

    ``model_id`` names the weights in cache keys; by default the loaded model's name and source.
    Use a distinct ``model_id`` (or an in-memory cache) for randomly initialised models.
    """

    def __init__(self, lm, cache: GenerationCache | None = None, batch_size: int = 8,
                 model_id: str | None = None, name: str | None = None):
        self.lm = lm
        self.name = name or lm.name
        self.model_id = model_id or f"{lm.name}|{getattr(lm, 'source', '')}|{getattr(lm, 'revision', None)}"
        self.cache = cache if cache is not None else GenerationCache(None)
        self.batch_size = batch_size
        self.generated = 0  # prompts actually run through the model (cache misses)

    def settings(self, budget: int) -> dict:
        # device type and dtype are keyed: greedy ties can break differently across them
        device = str(getattr(self.lm, "device", "cpu")).split(":")[0]
        return {"decoding": "greedy", "max_new_tokens": budget, "dtype": str(self.lm.dtype),
                "device": device}

    def budget(self, reference: str) -> int:
        from common import models
        return models.generation_budget(self.lm, reference)

    def generate(self, prompts: list[str], reference: str) -> list[str]:
        from common import models

        budget = self.budget(reference)
        settings = self.settings(budget)
        texts: dict[str, str] = {}
        todo = []
        for p in dict.fromkeys(prompts):
            hit = self.cache.get(self.model_id, settings, p)
            if hit is not None and isinstance(hit.get("text"), str):
                texts[p] = hit["text"]
            else:
                todo.append(p)
        if todo:
            for p, g in zip(todo, models.generate(self.lm, todo, budget, batch_size=self.batch_size)):
                self.cache.put(self.model_id, settings, p, {"text": g.text})
                texts[p] = g.text
            self.generated += len(todo)
        return [texts[p] for p in prompts]
