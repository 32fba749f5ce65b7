"""Small deterministic stand-ins for the perturbation tests: a task, a rule-based generator
whose output depends on which words the prompt contains, and a fixed fill-mask."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeTask:
    prompt: str
    region: tuple[int, int]
    model_prompt: str
    task_id: str = "t/0"
    reference: str = "return sorted(xs)"
    benchmark: str = "mbpp"


def mbpp_task(prompt: str, task_id: str = "t/0") -> FakeTask:
    return FakeTask(prompt, (0, len(prompt)), prompt + "\ndef function():", task_id)


class RuleGenerator:
    """Code = 'def f ( xs ) :' + one token per rule word found in the prompt.

    Every call and every prompt is recorded so tests can count generations.
    """

    name = "rule-model"

    def __init__(self, rules: dict[str, str]):
        self.rules = rules
        self.calls: list[list[str]] = []

    def generate(self, prompts: list[str], reference: str) -> list[str]:
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            words = p.split()
            extra = [tok for w, tok in self.rules.items() if w in words]
            out.append(" ".join(["def", "f", "(", "xs", ")", ":", *extra]))
        return out

    @property
    def prompts_seen(self) -> list[str]:
        return [p for c in self.calls for p in c]


class FixedFiller:
    """Fills every mask with the same word (stands in for BERT where its choice is irrelevant)."""

    name = "fixed-filler"
    mask_token = "[MASK]"

    def __init__(self, word: str = "thing"):
        self.word = word
        self.seen: list[str] = []

    def fill(self, texts):
        self.seen.extend(texts)
        return [self.word for _ in texts]
