"""The one contract every attribution method fulfils (captum style: one algorithm per module).

A method is an object with a name, a family, a stage, what it needs from a backend, its cost
per task, typed options, and ``attribute(task, backend) -> Attribution``::

    class MyMethod(Method):
        name, family, stage, needs = "my_method", "gradient", "coding", MODEL
        cost = "one forward + one backward pass"

        def attribute(self, task, backend):
            example = backend.example(task)   # greedy generation, token offsets, shared passes
            ...
            return Attribution(spans, scores, generation=example.text)

The catalogue (``attention_alignment.catalogue``) lists every method; the run loop
(``attention_alignment.runner``) drives any of them over tasks and writes one result file per
method. This module imports nothing from the method folders.

Failure policy: a method raises :class:`TaskFailure` only for an expected per-task outcome
(prompt longer than the context, no function body, no words in the region, no code in the
answer); the run loop records it. Any other exception (a bug, a budget stop, an API error
after retries, Ctrl-C) propagates: nothing is recorded for the task in progress, the run stops
and a rerun resumes it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAMILIES = ("perturbation", "gradient", "self_attention")
STAGES = ("reading", "coding")
#: What a method needs from its backend: ``model`` = the internals of a local Hugging Face
#: model (attention, gradients); ``generator`` = any text generator (a local model or an
#: OpenAI-compatible API), treated as a black box.
NEEDS = ("model", "generator")
#: Definitions of the shared concepts (see :mod:`common.code_units`): ``unified`` (one word
#: unit and one reading/coding position for every family) or ``paper`` (what the published
#: code did, per family).
DEFINITIONS = ("unified", "paper")


class TaskFailure(Exception):
    """An expected per-task outcome that leaves the task unscored; the message is the reason
    recorded in the result file. ``generation`` is kept in the record when there is one."""

    def __init__(self, reason: str, generation: str | None = None):
        super().__init__(reason)
        self.generation = generation


@dataclass
class Attribution:
    """One task's attribution: half-open word spans in ``task.prompt`` and one score each.

    ``generation`` is the model's output for the unperturbed prompt; ``details`` holds what a
    method computed on the way (BERT fills, number of generations...): JSON-serialisable, it is
    written to the result file with the scores.
    """

    spans: np.ndarray
    scores: np.ndarray
    generation: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.spans = np.asarray(self.spans, dtype=np.int64).reshape(-1, 2)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.spans) != len(self.scores):
            raise ValueError(f"{len(self.spans)} spans but {len(self.scores)} scores")
        if not np.isfinite(self.scores).all():
            raise ValueError("non-finite attribution scores")


@dataclass(frozen=True)
class Options:
    """Options every method has. Subclasses add their own fields (typed, with defaults)."""

    definitions: str = "unified"

    def __post_init__(self):
        if self.definitions not in DEFINITIONS:
            raise ValueError(f"option definitions must be one of {DEFINITIONS}, not "
                             f"{self.definitions!r}")


class Method:
    """Base class of every method. Subclasses set the class (or instance) attributes below and
    implement :meth:`attribute`; options come as an instance of :attr:`Options`."""

    name: str = ""
    family: str = ""
    #: ``reading``/``coding`` for the model-internal methods; None for the perturbation methods
    stage: str | None = None
    needs: str = "model"
    #: Cost per task in words (the catalogue prints it)
    cost: str = ""
    #: ``paper`` for the published layer-0 reductions; ``true`` otherwise
    variant: str = "true"
    description: str = ""
    Options: type = Options

    def __init__(self, options: Options | None = None, **overrides):
        self.options = self.make_options(options, **overrides)

    def make_options(self, options: Options | None = None, **overrides) -> Options:
        base = options if options is not None else self.Options()
        if not isinstance(base, self.Options):
            raise TypeError(f"method {self.name}: options must be {self.Options.__name__}")
        known = {f.name for f in dataclasses.fields(self.Options)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"method {self.name} has no option {', '.join(unknown)}; its options: "
                             f"{', '.join(sorted(known))}")
        return dataclasses.replace(base, **overrides)

    def has_option(self, name: str) -> bool:
        return name in {f.name for f in dataclasses.fields(self.Options)}

    def configure(self, **options) -> Method:
        """A copy with some options changed (unknown options are an error naming them)."""
        clone = copy.copy(self)
        clone.options = self.make_options(self.options, **options)
        return clone

    def settings(self) -> dict:
        """Everything that changes the method's output: written to the result header and
        checked when a rerun appends to an existing file."""
        return {"name": self.name, **dataclasses.asdict(self.options)}

    def prepare(self) -> None:
        """Load what the method needs (e.g. a fill-mask model) before any task runs, so that a
        missing asset stops the run at once, not in the middle. Default: nothing."""

    def attribute(self, task, backend) -> Attribution:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def check(method: Method) -> Method:
    """Validate a method's declared attributes (the catalogue calls this for every entry)."""
    problems = []
    if not method.name or not method.name.replace("_", "").isalnum():
        problems.append(f"name {method.name!r} must be a non-empty identifier")
    if method.family not in FAMILIES:
        problems.append(f"family {method.family!r} not in {FAMILIES}")
    if method.stage not in (*STAGES, None):
        problems.append(f"stage {method.stage!r} not in {STAGES} or None")
    if method.needs not in NEEDS:
        problems.append(f"needs {method.needs!r} not in {NEEDS}")
    if not method.cost:
        problems.append("cost is empty")
    if problems:
        raise ValueError(f"method {method.name or type(method).__name__}: " + "; ".join(problems))
    return method
